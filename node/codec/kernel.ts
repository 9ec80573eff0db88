/**
 * Loader of the WebAssembly Huffman kernel (assembly/, format in docs/KERNEL.md). Each `loadKernel()`
 * makes its own instance with its own linear memory, so every worker thread owns one. A call copies its
 * whole input into wasm memory once, runs one export, and copies the result out once.
 */

import { readFileSync } from 'node:fs';
import { CodecError } from './errors.ts';
import type { TextCounts } from './text-counts.ts';

export interface Kernel {
  /**
   * Codes one chunk into a self-delimiting kernel frame (a fresh Uint8Array the caller owns). With
   * `headroom`, the frame starts that many bytes into the result and the bytes before it are unwritten
   * (room for a container's chunk header, without a second copy of the frame). With `into`, a spare
   * buffer the caller owns, the result views `into` from its start when the frame fits there, and
   * otherwise a fresh buffer with room for the largest frame of this input, so that it fits next time.
   */
  compress(input: Uint8Array, headroom?: number, into?: ArrayBuffer): Uint8Array;
  /**
   * Decodes a frame made by compress; originalLength comes from the container. Throws
   * CodecError('CORRUPT_BLOCK' | 'TOO_LARGE'), never any other error type.
   */
  decompress(frame: Uint8Array, originalLength: number, into?: ArrayBuffer): Uint8Array;
  /**
   * The zero-copy form, for callers that read input straight into kernel memory: lays out room for
   * `inputBytes` in and `outputBytes` out, and returns the input area to fill. Every view this kernel
   * returns is valid only until its next call.
   */
  stageInput(inputBytes: number, outputBytes: number): Uint8Array;
  /** The largest frame `length` bytes can code into: the output room to stage for compressStaged. */
  frameBytesMax(length: number): number;
  /** Codes the `length` staged bytes; returns a view of the frame in kernel memory. */
  compressStaged(length: number): Uint8Array;
  /** Decodes the staged `frameLength`-byte frame; returns a view of the `originalLength` bytes in kernel memory. */
  decompressStaged(frameLength: number, originalLength: number): Uint8Array;
  /** Line and word counts of a chunk, as `wc -l -w` in the C locale (assembly/text.ts, text-counts.ts). */
  countText(input: Uint8Array): TextCounts;
}

/** Largest chunk the kernel codes in one call. */
export const chunkBytesMax = 64 * 1024 * 1024;

interface KernelExports {
  memory: { buffer: ArrayBuffer };
  prepare(inputBytes: number, outputBytes: number): number;
  output(): number;
  frameBytesMax(length: number): number;
  compress(length: number): number;
  decompress(frameLength: number, length: number): number;
  failedBlock(): number;
  failedStream(): number;
  countText(length: number): void;
  // A WASM export returns one number; the kernel's other results (these counts, failedBlock/failedStream)
  // wait in its globals, read right after the call that set them, on the same thread.
  countedLines: { value: number };
  countedWords: { value: number };
  countedEdges: { value: number };
}

/** The slice of the WebAssembly JS API used here (tsconfig's libs do not declare it). */
interface WebAssemblyApi {
  Module: new (bytes: Uint8Array) => KernelModule;
  Instance: new (module: object, imports: object) => { exports: object };
}
const wasm = (globalThis as unknown as { WebAssembly: WebAssemblyApi }).WebAssembly;

/** A compiled kernel: structured-cloneable, so one compilation serves every worker thread. */
export type KernelModule = object;

const wasmUrl = new URL('../../build/kernel.wasm', import.meta.url);
let compiled: KernelModule | undefined;

/** The kernel compiled once per thread that asks; post it to workers instead of compiling there again. */
export function compileKernel(): KernelModule {
  if (compiled === undefined) {
    let bytes: Buffer;
    try {
      bytes = readFileSync(wasmUrl);
    } catch (error) {
      throw new Error(`cannot read the kernel at ${wasmUrl.pathname} (run npm run build:kernel): ${String(error)}`);
    }
    compiled = new wasm.Module(bytes);
  }
  return compiled;
}

/** What each decoder status (assembly/decode.ts) means; the block and stream are prefixed. */
const failures: Record<number, string> = {
  [-1]: 'frame is shorter than its 5-byte header',
  [-2]: 'frame has an unknown version byte',
  [-3]: "frame header's length differs from the original length",
  [-4]: 'block header runs past the end of the frame',
  [-5]: 'block length field exceeds 128 KiB',
  [-6]: "block runs past the chunk's original length",
  [-7]: 'block runs past the end of the frame',
  [-8]: 'table has a code length above 11 or nonzero padding bits',
  [-9]: 'table is not a complete prefix code',
  [-10]: 'repeat block has no earlier table to repeat',
  [-11]: 'overruns its length',
  [-12]: 'ends before its last byte',
  [-13]: 'has nonzero padding bits',
  [-14]: 'frame has bytes after its last block',
};

function failureMessage(status: number, block: number, stream: number): string {
  const what = failures[status] ?? `fails with status ${status}`;
  if (stream >= 0) return `block ${block}: stream ${stream} ${what}`;
  if (block >= 0) return `block ${block}: ${what}`;
  return what;
}

const blockBytesMax = 128 * 1024;

/**
 * The raw blocks of a frame that holds only raw blocks (incompressible data), each checked as the kernel
 * checks it: [frame offset, length] pairs; undefined for any other frame, which the kernel then decodes
 * or rejects. Copying such blocks straight out takes one copy instead of three through wasm memory.
 */
function storedBlocks(frame: Uint8Array, originalLength: number): Array<[number, number]> | undefined {
  // Raw blocks leave the frame longer than the chunk; a coded frame is almost always shorter.
  if (frame.length < 5 + originalLength || frame[0] !== 1) return undefined;
  if ((frame[1] | (frame[2] << 8) | (frame[3] << 16) | (frame[4] << 24)) >>> 0 !== originalLength) return undefined;
  const blocks: Array<[number, number]> = [];
  let at = 5;
  let decoded = 0;
  while (decoded < originalLength) {
    if (at + 3 > frame.length) return undefined;
    const header = frame[at] | (frame[at + 1] << 8) | (frame[at + 2] << 16);
    const length = (header >> 2) + 1;
    if ((header & 3) !== 0 || length > blockBytesMax || length > originalLength - decoded) return undefined;
    at += 3;
    if (at + length > frame.length) return undefined;
    blocks.push([at, length]);
    at += length;
    decoded += length;
  }
  return at === frame.length ? blocks : undefined;
}

function checkedLength(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new CodecError('TOO_LARGE', `${what} ${value} is not a byte count`);
  }
  if (value > chunkBytesMax) {
    throw new CodecError('TOO_LARGE', `${what} ${value} exceeds the kernel's chunk limit of ${chunkBytesMax} bytes`);
  }
  return value;
}

/**
 * Memory of its own (transferable to another thread) for a result. Every byte of it is written before it
 * is returned (but a headroom the caller fills), so the allocation skips zero-filling.
 */
function ownedBytes(length: number): Uint8Array {
  const owned = Buffer.allocUnsafeSlow(length);
  return new Uint8Array(owned.buffer, owned.byteOffset, length);
}

/** The original bytes of a frame of raw blocks (storedBlocks), copied straight out of the frame. */
function joinedBlocks(frame: Uint8Array, blocks: Array<[number, number]>, originalLength: number): Uint8Array {
  const result = ownedBytes(originalLength);
  let decoded = 0;
  for (const [at, length] of blocks) {
    result.set(frame.subarray(at, at + length), decoded);
    decoded += length;
  }
  return result;
}

/** A kernel instance with memory of its own; `module` is a compiled kernel posted from another thread. */
export function loadKernel(module: KernelModule = compileKernel()): Kernel {
  return new WasmKernel(module);
}

/** One instance of the kernel and its linear memory; every view it returns is valid until its next call. */
class WasmKernel implements Kernel {
  readonly #exports: KernelExports;

  constructor(module: KernelModule) {
    const instance = new wasm.Instance(module, {});
    this.#exports = instance.exports as unknown as KernelExports;
  }

  compress(input: Uint8Array, headroom = 0, into?: ArrayBuffer): Uint8Array {
    checkedLength(input.length, 'chunk of');
    const frameBytesMax = this.#exports.frameBytesMax(input.length) >>> 0;
    this.#stage(input, frameBytesMax);
    const length = this.#compressStaged(input.length).length;
    if (into === undefined) return this.#copyOut(length, headroom);
    const fits = into.byteLength >= headroom + length;
    return this.#copyOut(length, headroom, fits ? new Uint8Array(into, 0, headroom + length) : ownedBytes(headroom + frameBytesMax).subarray(0, headroom + length));
  }

  /** `into`: a spare buffer for the decoded bytes, used when they fit (else a new one). */
  decompress(frame: Uint8Array, originalLength: number, into?: ArrayBuffer): Uint8Array {
    this.#checkFrame(frame.length, originalLength);
    const stored = storedBlocks(frame, originalLength);
    if (stored !== undefined) return joinedBlocks(frame, stored, originalLength);
    this.#stage(frame, originalLength);
    const length = this.#decompressStaged(frame.length, originalLength).length;
    const fits = into !== undefined && into.byteLength >= length;
    return this.#copyOut(length, 0, fits ? new Uint8Array(into, 0, length) : undefined);
  }

  countText(input: Uint8Array): TextCounts {
    checkedLength(input.length, 'chunk of');
    this.#stage(input, 0);
    const kernel = this.#exports;
    kernel.countText(input.length);
    const edges = kernel.countedEdges.value;
    return {
      lines: kernel.countedLines.value >>> 0,
      words: kernel.countedWords.value >>> 0,
      startsInWord: (edges & 1) !== 0,
      endsInWord: (edges & 2) !== 0,
      transparent: (edges & 4) !== 0,
    };
  }

  /** Sizes the buffers; throws TOO_LARGE if memory cannot grow. */
  stageInput(inputBytes: number, outputBytes: number): Uint8Array {
    const address = this.#exports.prepare(inputBytes, outputBytes) >>> 0;
    if (address === 0) {
      throw new CodecError('TOO_LARGE', `kernel memory cannot hold ${inputBytes} + ${outputBytes} bytes`);
    }
    return new Uint8Array(this.#exports.memory.buffer, address, inputBytes);
  }

  frameBytesMax(length: number): number {
    return this.#exports.frameBytesMax(checkedLength(length, 'chunk of')) >>> 0;
  }

  compressStaged(length: number): Uint8Array {
    return this.#compressStaged(checkedLength(length, 'chunk of'));
  }

  decompressStaged(frameLength: number, originalLength: number): Uint8Array {
    this.#checkFrame(frameLength, originalLength);
    return this.#decompressStaged(frameLength, originalLength);
  }

  /** Sizes the buffers and copies `input` in. */
  #stage(input: Uint8Array, outputBytes: number): void {
    this.stageInput(input.length, outputBytes).set(input);
  }

  #outputView(length: number): Uint8Array {
    return new Uint8Array(this.#exports.memory.buffer, this.#exports.output() >>> 0, length);
  }

  /** The result, copied `headroom` bytes into `result` (by default memory of its own, just large enough). */
  #copyOut(length: number, headroom = 0, result = ownedBytes(headroom + length)): Uint8Array {
    result.set(this.#outputView(length), headroom);
    return result;
  }

  /** Codes the staged input; the frame stays in kernel memory. */
  #compressStaged(length: number): Uint8Array {
    const frameBytesMax = this.#exports.frameBytesMax(length) >>> 0;
    const frameLength = this.#exports.compress(length) >>> 0;
    if (frameLength > frameBytesMax) throw new Error(`kernel wrote ${frameLength} bytes, more than its bound ${frameBytesMax}`);
    return this.#outputView(frameLength);
  }

  /** Decodes the staged frame; the original bytes stay in kernel memory. */
  #decompressStaged(frameLength: number, originalLength: number): Uint8Array {
    let status: number;
    try {
      status = this.#exports.decompress(frameLength, originalLength);
    } catch (error) {
      // The decoder is meant to be total; a trap here is a kernel bug, reported as a corrupt block.
      throw new CodecError('CORRUPT_BLOCK', `kernel trapped while decoding: ${String(error)}`);
    }
    if (status !== 0) {
      throw new CodecError('CORRUPT_BLOCK', failureMessage(status, this.#exports.failedBlock(), this.#exports.failedStream()));
    }
    return this.#outputView(originalLength);
  }

  /** Checks a frame's length against the original length before any of it is staged. */
  #checkFrame(frameLength: number, originalLength: number): void {
    checkedLength(originalLength, 'original length');
    const frameBytesMax = this.#exports.frameBytesMax(originalLength) >>> 0;
    if (frameLength > frameBytesMax) {
      throw new CodecError('CORRUPT_BLOCK', `frame of ${frameLength} bytes is longer than any frame of ${originalLength} bytes (${frameBytesMax})`);
    }
  }
}
