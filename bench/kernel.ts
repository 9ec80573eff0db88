/**
 * Single-thread benchmark of the WASM Huffman kernel against zlib's Huffman-only deflate, on the data
 * sets of bench/data.ts cut into 4 MiB chunks the way the container cuts files.
 *
 *   node bench/kernel.ts [--runs N] [--data mail,elf,random] [--clock wall|cpu] [--json]
 *
 * Speeds are MB/s (10^6 bytes) of original bytes, through the public API (copies in and out included).
 * A run codes every chunk once with each codec, the two back to back per chunk (which goes first
 * alternates), so load from other processes hits both alike. Reported per codec and direction: the
 * median run with min..max, and `best`, the sum over chunks of each chunk's fastest time across runs,
 * which estimates the speed of an unloaded machine. Targets are checked on both. `--clock cpu` times with
 * this process's CPU time instead of the wall clock, which time slices lost to other processes on a
 * shared machine do not inflate.
 */

import { deflateRawSync, inflateRawSync, constants } from 'node:zlib';
import { parseArgs } from 'node:util';
import { loadKernel } from '../node/codec/kernel.ts';
import { dataset, datasetNames, type DatasetName } from './data.ts';

const chunkBytes = 4 * 1024 * 1024;
/** Hard requirements of the kernel, relative to zlib Huffman-only in the same run. */
const targets = { compressSpeedup: 4, decompressSpeedup: 3, sizeRatioMax: 1 };

const codecNames = ['kernel', 'zlib'] as const;
type CodecName = (typeof codecNames)[number];
const directions = ['compress', 'decompress'] as const;
type Direction = (typeof directions)[number];

interface Codec {
  compress(chunk: Uint8Array): Uint8Array;
  decompress(frame: Uint8Array, originalLength: number): Uint8Array;
}

interface Speed {
  median: number;
  min: number;
  max: number;
  best: number;
}

interface CodecResult {
  compressMBps: Speed;
  decompressMBps: Speed;
  compressedBytes: number;
  ratio: number;
}

interface Verdict {
  median: number;
  best: number;
  met: boolean;
}

interface DatasetResult {
  name: DatasetName;
  originalBytes: number;
  chunks: number;
  runs: number;
  kernel: CodecResult;
  zlib: CodecResult;
  compressSpeedup: Verdict;
  decompressSpeedup: Verdict;
  sizeVsZlib: { value: number; met: boolean };
}

function zlibHuffmanOnly(): Codec {
  return {
    compress: (chunk) => deflateRawSync(chunk, { strategy: constants.Z_HUFFMAN_ONLY }),
    decompress: (frame) => inflateRawSync(frame),
  };
}

function splitChunks(bytes: Uint8Array): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length; offset += chunkBytes) {
    chunks.push(bytes.subarray(offset, Math.min(offset + chunkBytes, bytes.length)));
  }
  return chunks;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Seconds per chunk, per codec and direction, of one run; sizes of the frames. */
type Timings = Record<CodecName, Record<Direction, number[]>>;

type Clock = () => number;

/** Seconds on the wall clock or of this process's CPU time (user and system). */
const clocks: Record<string, Clock> = {
  wall: () => Number(process.hrtime.bigint()) / 1e9,
  cpu: () => {
    const usage = process.cpuUsage();
    return (usage.user + usage.system) / 1e6;
  },
};

function timeRun(codecs: Record<CodecName, Codec>, chunks: Uint8Array[], clock: Clock, check: boolean): { timings: Timings; compressedBytes: Record<CodecName, number> } {
  const timings: Timings = { kernel: { compress: [], decompress: [] }, zlib: { compress: [], decompress: [] } };
  const compressedBytes = { kernel: 0, zlib: 0 };
  chunks.forEach((chunk, index) => {
    const order: CodecName[] = index % 2 === 0 ? ['kernel', 'zlib'] : ['zlib', 'kernel'];
    for (const name of order) {
      const started = clock();
      const frame = codecs[name].compress(chunk);
      const compressed = clock();
      const decoded = codecs[name].decompress(frame, chunk.length);
      const decompressed = clock();
      timings[name].compress.push(compressed - started);
      timings[name].decompress.push(decompressed - compressed);
      compressedBytes[name] += frame.length;
      if (check && !Buffer.from(decoded.buffer, decoded.byteOffset, decoded.length).equals(chunk)) {
        throw new Error(`${name}: chunk ${index} does not round-trip`);
      }
    }
  });
  return { timings, compressedBytes };
}

function verdict(kernel: Speed, zlib: Speed, target: number): Verdict {
  const speedup = { median: kernel.median / zlib.median, best: kernel.best / zlib.best };
  return { ...speedup, met: speedup.median >= target && speedup.best >= target };
}

async function benchmark(name: DatasetName, runs: number, clock: Clock): Promise<DatasetResult> {
  const { bytes } = await dataset(name);
  const chunks = splitChunks(bytes);
  const codecs = { kernel: loadKernel(), zlib: zlibHuffmanOnly() };
  // A warm-up run checks every round trip and lets V8 tier the kernel up; then the timed runs.
  const { compressedBytes } = timeRun(codecs, chunks, clock, true);
  const runTimings: Timings[] = [];
  for (let run = 0; run < runs; run++) runTimings.push(timeRun(codecs, chunks, clock, false).timings);
  const speed = (codec: CodecName, direction: Direction): Speed => {
    const perRun = runTimings.map((timings) => bytes.length / 1e6 / timings[codec][direction].reduce((sum, seconds) => sum + seconds, 0));
    const fastest = chunks.reduce((sum, _, index) => sum + Math.min(...runTimings.map((timings) => timings[codec][direction][index])), 0);
    return { median: median(perRun), min: Math.min(...perRun), max: Math.max(...perRun), best: bytes.length / 1e6 / fastest };
  };
  const result = (codec: CodecName): CodecResult => ({
    compressMBps: speed(codec, 'compress'),
    decompressMBps: speed(codec, 'decompress'),
    compressedBytes: compressedBytes[codec],
    ratio: compressedBytes[codec] / bytes.length,
  });
  const kernel = result('kernel');
  const zlib = result('zlib');
  const sizeVsZlib = kernel.compressedBytes / zlib.compressedBytes;
  return {
    name, originalBytes: bytes.length, chunks: chunks.length, runs, kernel, zlib,
    compressSpeedup: verdict(kernel.compressMBps, zlib.compressMBps, targets.compressSpeedup),
    decompressSpeedup: verdict(kernel.decompressMBps, zlib.decompressMBps, targets.decompressSpeedup),
    sizeVsZlib: { value: sizeVsZlib, met: sizeVsZlib <= targets.sizeRatioMax },
  };
}

function formatSpeed(speed: Speed): string {
  const spread = `${speed.median.toFixed(0)} (${speed.min.toFixed(0)}..${speed.max.toFixed(0)})`;
  return `${spread.padStart(17)} ${speed.best.toFixed(0).padStart(5)}`;
}

function printTable(results: DatasetResult[], clock: string): void {
  console.log(`4 MiB chunks, one thread, ${clock} clock, MB/s of original bytes: median run (min..max) and best (fastest run per chunk)\n`);
  console.log(`${'data'.padEnd(7)} ${'MB'.padStart(6)}  ${'codec'.padEnd(7)} ${'compress'.padStart(17)} ${'best'.padStart(5)}  ${'decompress'.padStart(17)} ${'best'.padStart(5)}  ratio`);
  for (const result of results) {
    for (const codec of codecNames) {
      const row = result[codec];
      const label = codec === 'kernel' ? 'dcas' : 'zlib-h';
      console.log(`${result.name.padEnd(7)} ${(result.originalBytes / 1e6).toFixed(1).padStart(6)}  ${label.padEnd(7)} ${formatSpeed(row.compressMBps)}  ${formatSpeed(row.decompressMBps)}  ${row.ratio.toFixed(4)}`);
    }
  }
  console.log(`\nzlib-h = zlib deflateRawSync/inflateRawSync with Z_HUFFMAN_ONLY. Targets: compress >= ${targets.compressSpeedup}x zlib-h, decompress >= ${targets.decompressSpeedup}x zlib-h, size <= zlib-h's\n`);
  const mark = (met: boolean) => (met ? 'ok  ' : 'MISS');
  for (const result of results) {
    const c = result.compressSpeedup;
    const d = result.decompressSpeedup;
    console.log(`${result.name.padEnd(7)} compress ${c.median.toFixed(2)}x (best ${c.best.toFixed(2)}x) ${mark(c.met)}  decompress ${d.median.toFixed(2)}x (best ${d.best.toFixed(2)}x) ${mark(d.met)}  size ${result.sizeVsZlib.value.toFixed(4)} of zlib-h ${mark(result.sizeVsZlib.met)}`);
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      data: { type: 'string', default: datasetNames.join(',') },
      clock: { type: 'string', default: 'wall' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`usage: node bench/kernel.ts [--runs N] [--data ${datasetNames.join(',')}] [--clock wall|cpu] [--json]
The WASM Huffman kernel against zlib's Huffman-only deflate on one thread, 4 MiB chunks, MB/s of original
bytes: the median run and the best per chunk; --clock cpu times with this process's CPU time.
`);
    return;
  }
  const clock = clocks[values.clock];
  if (clock === undefined) throw new Error(`--clock ${values.clock} is not one of ${Object.keys(clocks).join(', ')}`);
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 100) throw new Error(`--runs ${values.runs} is not an integer in 1..100`);
  const names = values.data.split(',').filter((name) => name !== '');
  for (const name of names) {
    if (!(datasetNames as readonly string[]).includes(name)) throw new Error(`unknown data set ${name}; known: ${datasetNames.join(', ')}`);
  }
  const results: DatasetResult[] = [];
  for (const name of names as DatasetName[]) results.push(await benchmark(name, runs, clock));
  if (values.json) console.log(JSON.stringify({ chunkBytes, runs, clock: values.clock, targets, results }, null, 2));
  else printTable(results, values.clock);
}

await main();
