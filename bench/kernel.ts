/**
 * Single-thread benchmark of the WASM Huffman kernel against zlib's Huffman-only deflate, on the data
 * sets of bench/data.ts cut into 4 MiB chunks the way the container cuts files.
 *
 *   node bench/kernel.ts [--runs N] [--data mail,elf,random] [--json]
 *
 * Speeds are MB/s (10^6 bytes) of original bytes; each run times every chunk of a data set once; the
 * table shows the median run with the min..max beside it.
 */

import { deflateRawSync, inflateRawSync, constants } from 'node:zlib';
import { parseArgs } from 'node:util';
import { loadKernel } from '../node/codec/kernel.ts';
import { dataset, datasetNames, type DatasetName } from './data.ts';

const chunkBytes = 4 * 1024 * 1024;
/** Hard requirements of the kernel, relative to zlib Huffman-only in the same run. */
const targets = { compressSpeedup: 4, decompressSpeedup: 3, sizeRatioMax: 1 };

interface Spread {
  median: number;
  min: number;
  max: number;
}

interface CodecResult {
  compressMBps: Spread;
  decompressMBps: Spread;
  compressedBytes: number;
  ratio: number;
}

interface DatasetResult {
  name: DatasetName;
  originalBytes: number;
  chunks: number;
  runs: number;
  kernel: CodecResult;
  zlib: CodecResult;
  compressSpeedup: number;
  decompressSpeedup: number;
  sizeVsZlib: number;
  meetsTargets: { compress: boolean; decompress: boolean; size: boolean };
}

interface Codec {
  compress(chunk: Uint8Array): Uint8Array;
  decompress(frame: Uint8Array, originalLength: number): Uint8Array;
}

function zlibHuffmanOnly(): Codec {
  return {
    compress: (chunk) => deflateRawSync(chunk, { strategy: constants.Z_HUFFMAN_ONLY }),
    decompress: (frame) => inflateRawSync(frame),
  };
}

function spread(values: number[]): Spread {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  const median = sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
  return { median, min: sorted[0], max: sorted[sorted.length - 1] };
}

function splitChunks(bytes: Uint8Array): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length; offset += chunkBytes) {
    chunks.push(bytes.subarray(offset, Math.min(offset + chunkBytes, bytes.length)));
  }
  return chunks;
}

function megabytesPerSecond(bytes: number, nanoseconds: bigint): number {
  return bytes / 1e6 / (Number(nanoseconds) / 1e9);
}

/** One timed pass over all chunks: compress all, then decompress all (checked against the input once). */
function timePass(codec: Codec, chunks: Uint8Array[], check: boolean): { compress: number; decompress: number; compressedBytes: number } {
  const originalBytes = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  const frames: Uint8Array[] = new Array(chunks.length);
  const compressStart = process.hrtime.bigint();
  for (let i = 0; i < chunks.length; i++) frames[i] = codec.compress(chunks[i]);
  const compressEnd = process.hrtime.bigint();
  const decoded: Uint8Array[] = new Array(chunks.length);
  for (let i = 0; i < chunks.length; i++) decoded[i] = codec.decompress(frames[i], chunks[i].length);
  const decompressEnd = process.hrtime.bigint();
  if (check) {
    for (let i = 0; i < chunks.length; i++) {
      if (!Buffer.from(decoded[i]).equals(chunks[i])) throw new Error(`chunk ${i} does not round-trip`);
    }
  }
  return {
    compress: megabytesPerSecond(originalBytes, compressEnd - compressStart),
    decompress: megabytesPerSecond(originalBytes, decompressEnd - compressEnd),
    compressedBytes: frames.reduce((sum, frame) => sum + frame.length, 0),
  };
}

async function benchmark(name: DatasetName, runs: number): Promise<DatasetResult> {
  const { bytes } = await dataset(name);
  const chunks = splitChunks(bytes);
  const codecs = { kernel: loadKernel(), zlib: zlibHuffmanOnly() };
  const samples = {
    kernel: { compress: [] as number[], decompress: [] as number[], compressedBytes: 0 },
    zlib: { compress: [] as number[], decompress: [] as number[], compressedBytes: 0 },
  };
  // Warm-up pass (also the round-trip check), then runs alternating the codecs so both see the same noise.
  for (let run = -1; run < runs; run++) {
    for (const which of ['kernel', 'zlib'] as const) {
      const pass = timePass(codecs[which], chunks, run === -1);
      if (run === -1) continue;
      samples[which].compress.push(pass.compress);
      samples[which].decompress.push(pass.decompress);
      samples[which].compressedBytes = pass.compressedBytes;
    }
  }
  const result = (which: 'kernel' | 'zlib'): CodecResult => ({
    compressMBps: spread(samples[which].compress),
    decompressMBps: spread(samples[which].decompress),
    compressedBytes: samples[which].compressedBytes,
    ratio: samples[which].compressedBytes / bytes.length,
  });
  const kernel = result('kernel');
  const zlib = result('zlib');
  const compressSpeedup = kernel.compressMBps.median / zlib.compressMBps.median;
  const decompressSpeedup = kernel.decompressMBps.median / zlib.decompressMBps.median;
  const sizeVsZlib = kernel.compressedBytes / zlib.compressedBytes;
  return {
    name, originalBytes: bytes.length, chunks: chunks.length, runs, kernel, zlib,
    compressSpeedup, decompressSpeedup, sizeVsZlib,
    meetsTargets: {
      compress: compressSpeedup >= targets.compressSpeedup,
      decompress: decompressSpeedup >= targets.decompressSpeedup,
      size: sizeVsZlib <= targets.sizeRatioMax,
    },
  };
}

function formatSpread(value: Spread): string {
  return `${value.median.toFixed(0).padStart(5)} (${value.min.toFixed(0)}..${value.max.toFixed(0)})`.padEnd(18);
}

function printTable(results: DatasetResult[]): void {
  console.log(`chunks of ${chunkBytes / 1024 / 1024} MiB, single thread, MB/s of original bytes: median (min..max)\n`);
  console.log(`${'data'.padEnd(7)} ${'MB'.padStart(6)}  ${'codec'.padEnd(7)} ${'compress'.padEnd(18)} ${'decompress'.padEnd(18)} ratio`);
  for (const result of results) {
    for (const which of ['kernel', 'zlib'] as const) {
      const codec = result[which];
      const label = which === 'kernel' ? 'dcas' : 'zlib-h';
      console.log(`${result.name.padEnd(7)} ${(result.originalBytes / 1e6).toFixed(1).padStart(6)}  ${label.padEnd(7)} ${formatSpread(codec.compressMBps)} ${formatSpread(codec.decompressMBps)} ${codec.ratio.toFixed(4)}`);
    }
  }
  console.log(`\ntargets: compress >= ${targets.compressSpeedup}x zlib, decompress >= ${targets.decompressSpeedup}x zlib, size <= zlib's\n`);
  for (const result of results) {
    const mark = (ok: boolean) => (ok ? 'ok  ' : 'MISS');
    console.log(`${result.name.padEnd(7)} compress ${result.compressSpeedup.toFixed(2)}x ${mark(result.meetsTargets.compress)}  decompress ${result.decompressSpeedup.toFixed(2)}x ${mark(result.meetsTargets.decompress)}  size ${result.sizeVsZlib.toFixed(4)} of zlib ${mark(result.meetsTargets.size)}`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      data: { type: 'string', default: datasetNames.join(',') },
      json: { type: 'boolean', default: false },
    },
  });
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 100) throw new Error(`--runs ${values.runs} is not an integer in 1..100`);
  const names = values.data.split(',').filter((name) => name !== '');
  for (const name of names) {
    if (!(datasetNames as readonly string[]).includes(name)) throw new Error(`unknown data set ${name}; known: ${datasetNames.join(', ')}`);
  }
  const results: DatasetResult[] = [];
  for (const name of names as DatasetName[]) results.push(await benchmark(name, runs));
  if (values.json) console.log(JSON.stringify({ chunkBytes, targets, results }, null, 2));
  else printTable(results);
}

await main();
