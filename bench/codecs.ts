/**
 * Codecs side by side on one thread, same data, same chunks: the DCaS WASM kernel beside what a user
 * would pick instead from node:zlib. Every data set is cut into 4 MiB chunks, the way the .dcz
 * container cuts files, and each codec codes each chunk on its own (so none gains from a window
 * spanning chunks).
 *
 * A run codes every chunk with every codec, compress then decompress, the codecs back to back per chunk
 * in an order that rotates, so load from other processes falls on all of them alike. The first run
 * checks every round trip and is not timed (it also lets V8 tier up); the timed runs follow.
 */

import { brotliCompressSync, brotliDecompressSync, constants, deflateRawSync, gunzipSync, gzipSync, inflateRawSync, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import { loadKernel } from '../node/codec/kernel.ts';
import type { CodecFigures, CodecSection, DatasetFigures } from './results.ts';
import { megabytesPerSecond, spread } from './stats.ts';

export const codecChunkBytes = 4 * 1024 * 1024;
const brotliQuality = 4;
const zstdLevel = 3;

export interface Codec {
  name: string;
  description: string;
  compress(chunk: Uint8Array): Uint8Array;
  decompress(frame: Uint8Array, originalLength: number): Uint8Array;
}

export function benchCodecs(): Codec[] {
  const kernel = loadKernel();
  return [
    { name: 'dcas-kernel', description: 'DCaS WASM Huffman kernel (node/codec/kernel.ts)', compress: (chunk) => kernel.compress(chunk), decompress: (frame, length) => kernel.decompress(frame, length) },
    {
      name: 'zlib-huffman',
      description: 'node:zlib raw deflate, strategy Z_HUFFMAN_ONLY (Huffman coding only, no matching)',
      compress: (chunk) => deflateRawSync(chunk, { strategy: constants.Z_HUFFMAN_ONLY }),
      decompress: (frame) => inflateRawSync(frame),
    },
    { name: 'gzip-1', description: 'node:zlib gzip level 1', compress: (chunk) => gzipSync(chunk, { level: 1 }), decompress: (frame) => gunzipSync(frame) },
    { name: 'gzip-6', description: 'node:zlib gzip level 6 (the default)', compress: (chunk) => gzipSync(chunk, { level: 6 }), decompress: (frame) => gunzipSync(frame) },
    {
      name: `brotli-${brotliQuality}`,
      description: `node:zlib brotli quality ${brotliQuality} (of 0..11; a speed-leaning choice, default window)`,
      compress: (chunk) =>
        brotliCompressSync(chunk, { params: { [constants.BROTLI_PARAM_QUALITY]: brotliQuality, [constants.BROTLI_PARAM_SIZE_HINT]: chunk.length } }),
      decompress: (frame) => brotliDecompressSync(frame),
    },
    {
      name: `zstd-${zstdLevel}`,
      description: `node:zlib zstd level ${zstdLevel} (the zstd default)`,
      compress: (chunk) => zstdCompressSync(chunk, { params: { [constants.ZSTD_c_compressionLevel]: zstdLevel } }),
      decompress: (frame) => zstdDecompressSync(frame),
    },
  ];
}

function splitChunks(bytes: Uint8Array): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let offset = 0; offset < bytes.length; offset += codecChunkBytes) chunks.push(bytes.subarray(offset, Math.min(offset + codecChunkBytes, bytes.length)));
  return chunks;
}

interface RunTimes {
  compressSeconds: number[];
  decompressSeconds: number[];
  compressedBytes: number[];
}

function codeOnce(codecs: Codec[], chunks: Uint8Array[], run: number, check: boolean): RunTimes {
  const times: RunTimes = { compressSeconds: codecs.map(() => 0), decompressSeconds: codecs.map(() => 0), compressedBytes: codecs.map(() => 0) };
  chunks.forEach((chunk, chunkIndex) => {
    for (let step = 0; step < codecs.length; step++) {
      const index = (step + chunkIndex + run) % codecs.length;
      const codec = codecs[index];
      const started = performance.now();
      const frame = codec.compress(chunk);
      const compressed = performance.now();
      const decoded = codec.decompress(frame, chunk.length);
      const decompressed = performance.now();
      times.compressSeconds[index] += (compressed - started) / 1000;
      times.decompressSeconds[index] += (decompressed - compressed) / 1000;
      times.compressedBytes[index] += frame.length;
      if (check && !Buffer.from(decoded.buffer, decoded.byteOffset, decoded.length).equals(chunk)) {
        throw new Error(`${codec.name}: chunk ${chunkIndex} does not round-trip`);
      }
    }
  });
  return times;
}

export interface CodecBenchOptions {
  runs: number;
  /** Code at most this many bytes from the start of each data set (quick runs). */
  bytesMax: number;
  onProgress?: (message: string) => void;
}

export function benchDatasetCodecs(
  dataset: { name: string; description: string; bytes: Uint8Array },
  codecs: Codec[],
  options: CodecBenchOptions,
): DatasetFigures {
  const coded = dataset.bytes.subarray(0, Math.min(dataset.bytes.length, options.bytesMax));
  const chunks = splitChunks(coded);
  const checked = codeOnce(codecs, chunks, 0, true);
  const runs: RunTimes[] = [];
  for (let run = 1; run <= options.runs; run++) runs.push(codeOnce(codecs, chunks, run, false));
  const figures: CodecFigures[] = codecs.map((codec, index) => ({
    codec: codec.name,
    compressMBps: spread(runs.map((times) => megabytesPerSecond(coded.length, times.compressSeconds[index]))),
    decompressMBps: spread(runs.map((times) => megabytesPerSecond(coded.length, times.decompressSeconds[index]))),
    compressedBytes: checked.compressedBytes[index],
    ratio: checked.compressedBytes[index] / Math.max(coded.length, 1),
  }));
  options.onProgress?.(`codecs: ${dataset.name} (${(coded.length / 1e6).toFixed(1)} MB, ${options.runs} runs) done`);
  return { name: dataset.name, description: dataset.description, datasetBytes: dataset.bytes.length, codedBytes: coded.length, codecs: figures };
}

export function codecSectionHeader(codecs: Codec[], runs: number): Omit<CodecSection, 'datasets'> {
  return { chunkBytes: codecChunkBytes, runs, codecs: codecs.map(({ name, description }) => ({ name, description })) };
}
