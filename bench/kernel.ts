/**
 * Single-thread benchmark of the WASM Huffman kernel against zlib's Huffman-only deflate, on the data
 * sets of bench/data.ts cut into 4 MiB chunks the way the container cuts files.
 *
 *   node bench/kernel.ts [--runs N] [--data mail,elf,random] [--json]
 *
 * Speeds are MB/s (10^6 bytes) of original bytes; each run times every chunk of a data set once with
 * each codec; the table shows the median run with the min..max beside it.
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

const codecNames = ['kernel', 'zlib'] as const;
type CodecName = (typeof codecNames)[number];

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

interface PassResult {
  compressSeconds: number;
  decompressSeconds: number;
  compressedBytes: number;
}

/**
 * One timed pass over all chunks. Every chunk is coded by both codecs back to back (which goes first
 * alternates), so a burst of load from other processes hits both alike. The warm-up pass also checks
 * that every chunk round-trips.
 */
function timePass(codecs: Record<CodecName, Codec>, chunks: Uint8Array[], check: boolean): Record<CodecName, PassResult> {
  const results = {
    kernel: { compressSeconds: 0, decompressSeconds: 0, compressedBytes: 0 },
    zlib: { compressSeconds: 0, decompressSeconds: 0, compressedBytes: 0 },
  };
  chunks.forEach((chunk, index) => {
    const order: CodecName[] = index % 2 === 0 ? ['kernel', 'zlib'] : ['zlib', 'kernel'];
    for (const name of order) {
      const started = process.hrtime.bigint();
      const frame = codecs[name].compress(chunk);
      const compressed = process.hrtime.bigint();
      const decoded = codecs[name].decompress(frame, chunk.length);
      const decompressed = process.hrtime.bigint();
      results[name].compressSeconds += Number(compressed - started) / 1e9;
      results[name].decompressSeconds += Number(decompressed - compressed) / 1e9;
      results[name].compressedBytes += frame.length;
      if (check && !Buffer.from(decoded.buffer, decoded.byteOffset, decoded.length).equals(chunk)) {
        throw new Error(`${name}: chunk ${index} does not round-trip`);
      }
    }
  });
  return results;
}

async function benchmark(name: DatasetName, runs: number): Promise<DatasetResult> {
  const { bytes } = await dataset(name);
  const chunks = splitChunks(bytes);
  const codecs = { kernel: loadKernel(), zlib: zlibHuffmanOnly() };
  const samples = {
    kernel: { compress: [] as number[], decompress: [] as number[], compressedBytes: 0 },
    zlib: { compress: [] as number[], decompress: [] as number[], compressedBytes: 0 },
  };
  // A warm-up pass (the round-trip check; it also lets V8 tier the kernel up), then the timed runs.
  for (let run = -1; run < runs; run++) {
    const pass = timePass(codecs, chunks, run === -1);
    if (run === -1) continue;
    for (const which of codecNames) {
      samples[which].compress.push(bytes.length / 1e6 / pass[which].compressSeconds);
      samples[which].decompress.push(bytes.length / 1e6 / pass[which].decompressSeconds);
      samples[which].compressedBytes = pass[which].compressedBytes;
    }
  }
  const result = (which: CodecName): CodecResult => ({
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
