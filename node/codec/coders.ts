/**
 * The codecs other than the Huffman kernel, as codec threads run them: one chunk in, one coded chunk
 * out, each a complete frame, member or stream of its standard format (a zstd frame with its content
 * checksum, a gzip member, an xz stream, a bzip2 stream), so chunks concatenate into files the standard
 * tools read. Imported only by thread modules: zlib's one-shot calls and bzip2 block the calling thread.
 */
import { brotliCompressSync, brotliDecompressSync, gunzipSync, gzipSync, zstdCompressSync, zstdDecompressSync } from 'node:zlib';
import type * as Lzma from '@napi-rs/lzma';
import { CodecError } from './errors.ts';
import { xzPresetOf, type CodecChoice } from './codecs.ts';
import { sizedMember } from './gzip-members.ts';
import { zlibCompressOptions, zlibDecompressOptions } from './zlib-options.ts';

interface Bzip2Module {
  compressBZ2(data: Uint8Array, blockSize: number, workFactor: number): { error?: number | string; output?: Uint8Array };
  decompressBZ2(data: Uint8Array, small: number): { error?: number | string; output?: Uint8Array };
}

let bzip2: Bzip2Module | undefined;
let lzma: typeof Lzma | undefined;

/**
 * Loads what `codecName` needs before the first chunk arrives, and only that: a Huffman thread loads no
 * addon (its start-up time is part of every command's). libbzip2-wasm's module object is thenable:
 * awaiting it would resolve it with itself forever, so its `then` is called by hand and the instance is
 * taken without awaiting the module object.
 */
export async function prepareCoder(codecName: string): Promise<void> {
  if (codecName === 'xz' && lzma === undefined) lzma = await import('@napi-rs/lzma');
  if (codecName !== 'bzip2' || bzip2 !== undefined) return;
  const { default: load } = await import('libbzip2-wasm');
  const pending = load() as { then(resolve: (module: Bzip2Module) => void): void };
  bzip2 = await new Promise<Bzip2Module>((resolve) => {
    pending.then((module) => {
      delete (module as { then?: unknown }).then;
      resolve(module);
    });
  });
}

/**
 * A fresh Uint8Array over the result's own memory, never a view into zlib's shared pool, with `headroom`
 * unwritten bytes before it (compressChunk).
 */
function own(bytes: Uint8Array, headroom = 0): Uint8Array {
  if (headroom === 0 && bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength) return new Uint8Array(bytes.buffer, 0, bytes.byteLength);
  return copied(bytes, headroom);
}

/** `bytes` copied into memory of their own, `headroom` unwritten bytes before them. */
function copied(bytes: Uint8Array, headroom = 0): Uint8Array {
  const owned = Buffer.allocUnsafeSlow(headroom + bytes.length);
  owned.set(bytes, headroom);
  return new Uint8Array(owned.buffer, 0, owned.length);
}

function loadedBzip2(): Bzip2Module {
  if (bzip2 === undefined) throw new Error('bzip2 used before prepareCoder loaded it');
  return bzip2;
}

function loadedLzma(): typeof Lzma {
  if (lzma === undefined) throw new Error('xz used before prepareCoder loaded it');
  return lzma;
}

/** The preset @napi-rs/lzma's one-shot xz coder uses (its DEFAULT_PRESET). */
const xzOneShotPreset = 6;

/**
 * One xz stream. The one-shot xz.compressSync ignores presets (measured: presets 0, 6 and 9 gave the
 * same bytes) but codes exactly as preset 6 does (same bytes), on this thread, and frees its coder on
 * return. For other presets the stream call codes the same bytes as an XzCompressor but frees its coder
 * at the end, where an XzCompressor's stays until a collection finds its small JS object (@napi-rs/lzma
 * 1.5.3, measured: RSS +55 MB per 4 MiB chunk; a 64 MiB text at preset 3 on 12 MiB chunks left a
 * process at 481 MB, 398 MB with the stream call). The stream call codes on the addon's own threads,
 * which keep some memory after each chunk (docs/FORMAT.md: about 12 MB a 12 MiB chunk at preset 3).
 * Presets above 6 code as 6 (codecs.ts xzPresetOf).
 */
async function compressXz(level: number, data: Uint8Array, headroom: number): Promise<Uint8Array> {
  const preset = xzPresetOf(level);
  // The addon's buffers are external memory, which cannot be transferred: the stream is copied out.
  if (preset === xzOneShotPreset) return copied(loadedLzma().xz.compressSync(data), headroom);
  const input = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(data);
      controller.close();
    },
  });
  const parts: Uint8Array[] = [];
  for await (const part of loadedLzma().xz.compressStream(input, { preset })) parts.push(part);
  return joined(parts, headroom);
}

/** The parts in one buffer of their own, `headroom` unwritten bytes before them. */
function joined(parts: readonly Uint8Array[], headroom: number): Uint8Array {
  const out = new Uint8Array(headroom + parts.reduce((bytes, part) => bytes + part.length, 0));
  let at = headroom;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * Codes one chunk with `choice` (any codec but huffman, which the kernel codes in place). With
 * `headroom`, the coded bytes start that far into the result, the bytes before them unwritten: the
 * copy out of the codec's memory, made anyway, leaves room for a container's chunk header.
 */
export async function compressChunk(choice: CodecChoice, data: Uint8Array, headroom = 0): Promise<Uint8Array> {
  const { level } = choice;
  switch (choice.codec.name) {
    case 'store':
      return copied(data, headroom);
    case 'zstd':
      return own(zstdCompressSync(data, zlibCompressOptions(choice, data.length)), headroom);
    case 'gzip':
      return sizedMember(gzipSync(data, zlibCompressOptions(choice, data.length)), data.length, headroom);
    case 'brotli':
      return own(brotliCompressSync(data, zlibCompressOptions(choice, data.length)), headroom);
    case 'xz':
      return compressXz(level, data, headroom);
    case 'bzip2': {
      const result = loadedBzip2().compressBZ2(data, level, 30);
      // `error` is 0 (BZ_OK) on success, a libbzip2 status or message otherwise.
      if (result.output === undefined || (result.error !== undefined && result.error !== 0)) throw new CodecError('CORRUPT_BLOCK', `bzip2 could not code the chunk: ${result.error ?? 'no output'}`);
      return copied(result.output, headroom);
    }
    case 'huffman':
      throw new Error('compressChunk: the Huffman kernel codes its chunks itself');
  }
}

/**
 * Decodes one coded chunk; any failure is CORRUPT_BLOCK naming the codec, and the length must be
 * `originalBytes`, or at most `pieceBytesMax` when the file does not record it (a bzip2 stream).
 */
export function decompressChunk(choice: CodecChoice, frame: Uint8Array, originalBytes: number | undefined): Uint8Array {
  let data: Uint8Array;
  try {
    data = decodeFrame(choice, frame, originalBytes);
  } catch (error) {
    if (error instanceof CodecError) throw error;
    throw new CodecError('CORRUPT_BLOCK', `${choice.codec.name} frame does not decode: ${(error as Error).message ?? String(error)}`);
  }
  if (originalBytes !== undefined && data.length !== originalBytes) throw new CodecError('CORRUPT_BLOCK', `${choice.codec.name} frame decodes to ${data.length} bytes, expected ${originalBytes}`);
  return data;
}

function decodeFrame(choice: CodecChoice, frame: Uint8Array, originalBytes: number | undefined): Uint8Array {
  const options = zlibDecompressOptions(originalBytes);
  switch (choice.codec.name) {
    case 'store':
      return new Uint8Array(frame);
    case 'zstd':
      return own(zstdDecompressSync(frame, options));
    case 'gzip':
      return own(gunzipSync(frame, options));
    case 'brotli':
      return own(brotliDecompressSync(frame, options));
    case 'xz':
      // The addon's buffer is external memory, which cannot be transferred to another thread: copied.
      return new Uint8Array(loadedLzma().xz.decompressSync(frame));
    case 'bzip2': {
      const result = loadedBzip2().decompressBZ2(frame, 0);
      if (result.output === undefined || (result.error !== undefined && result.error !== 0)) throw new CodecError('CORRUPT_BLOCK', `bzip2 frame does not decode: ${result.error ?? 'no output'}`);
      return new Uint8Array(result.output);
    }
    case 'huffman':
      throw new Error('decompressChunk: the Huffman kernel decodes its chunks itself');
  }
}
