/**
 * What a file codec thread does with one task, on whichever thread runs it: a codec thread
 * (file-worker.ts), or the main thread while its codec threads start (file-threads.ts). It reads its
 * chunk straight from the input file into kernel memory, codes it there, and (decoding) checks and
 * writes the result straight to the output file at its place. File descriptors are per process, so
 * every thread shares the main thread's. Errors go back as values: a thrown error loses its class and
 * code crossing threads.
 */
import { readSync, writeSync } from 'node:fs';
import { crc32c } from '@node-rs/crc32';
import { compressChunk, decompressChunk, prepareCoder } from './coders.ts';
import { choiceOf, codecHuffmanId } from './codecs.ts';
import { CodecError, type CodecErrorCode } from './errors.ts';
import { checkChunkHeader, chunkHeaderBytes } from './format.ts';
import { loadKernel, type KernelModule } from './kernel.ts';

export interface FileWorkerData {
  kernelModule: KernelModule;
  inputFd: number;
  /** -1 when the thread only compresses (frames go back to the main thread, which writes them in order). */
  outputFd: number;
  chunkBytes: number;
  /** The codec and level of every chunk (codecs.ts); the Huffman kernel codes in its own memory, the others through coders.ts. */
  codec: number;
  level: number;
}

export type FileTask =
  /** `spare`: a buffer of an earlier frame, written out and handed back, to hold this frame without a new allocation. */
  | { id: number; op: 'compress'; position: number; length: number; spare?: ArrayBuffer }
  | { id: number; op: 'decompress'; chunk: number; position: number; originalBytes: number; compressedBytes: number; checksum: number; outputPosition: number };

export type FileTaskResult =
  /** `frame` may view only the start of its buffer (a spare is sized for the largest frame). */
  | { id: number; ok: true; frame?: Uint8Array; checksum?: number }
  | { id: number; ok: false; code: CodecErrorCode; message: string }
  /** A system error (ENOSPC, EIO, ...) or the input changing under the reader; errno as Node names it. */
  | { id: number; ok: false; code: 'IO'; errno: string; message: string };

/** A codec thread's first message, once its kernel and codec are loaded; every later one is a FileTaskResult. */
export const fileWorkerReady = 'ready';

/** Runs one task to its result; tasks of one runner run one after another (they share its buffers). */
export type FileTaskRunner = (task: FileTask) => Promise<FileTaskResult>;

/** Fills `view` from `fd` at `position`; a short file is the caller's error to name. */
function readFully(fd: number, view: Uint8Array, position: number): number {
  let filled = 0;
  while (filled < view.length) {
    const bytesRead = readSync(fd, view, filled, view.length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}

function writeFully(fd: number, view: Uint8Array, position: number): void {
  let written = 0;
  while (written < view.length) written += writeSync(fd, view, written, view.length - written, position + written);
}

function inputChanged(task: Extract<FileTask, { op: 'compress' }>, bytesRead: number): FileTaskResult {
  return { id: task.id, ok: false, code: 'IO', errno: 'INPUT_CHANGED', message: `input changed while being read: ended at byte ${task.position + bytesRead}, expected ${task.position + task.length}` };
}

/** A thread's runner: its own kernel instance and scratch buffer, made ready (the codec's library loaded) before it answers. */
export async function createFileTaskRunner(data: FileWorkerData): Promise<FileTaskRunner> {
  const kernel = loadKernel(data.kernelModule);
  const choice = choiceOf(data.codec, data.level);
  await prepareCoder(choice.codec.name);
  let scratchBuffer = new ArrayBuffer(0);

  /**
   * The runner's one buffer for what a codec other than the kernel reads (a chunk to code, a frame to
   * decode): every codec consumes its input before the call returns, and tasks run one at a time, so
   * the buffer is reused from chunk to chunk. Fresh memory per chunk cost a page fault per 4 KiB.
   */
  function scratch(length: number): Uint8Array {
    if (scratchBuffer.byteLength < length) scratchBuffer = Buffer.allocUnsafeSlow(Math.max(length, data.chunkBytes)).buffer as ArrayBuffer;
    return new Uint8Array(scratchBuffer, 0, length);
  }

  /**
   * The frame copied into memory the main thread can own: the spare it handed back if that is large
   * enough (fresh memory costs page faults on every chunk), else new memory sized for any frame of a chunk.
   */
  function ownedCopy(view: Uint8Array, spare: ArrayBuffer | undefined): Uint8Array {
    const buffer = spare !== undefined && spare.byteLength >= view.length ? spare : Buffer.allocUnsafeSlow(Math.max(view.length, kernel.frameBytesMax(data.chunkBytes))).buffer;
    const owned = new Uint8Array(buffer, 0, view.length);
    owned.set(view);
    return owned;
  }

  /** Another codec than the kernel: the chunk is read into the scratch buffer and coded from there (the frame is the codec's own memory). */
  async function compressOther(task: Extract<FileTask, { op: 'compress' }>): Promise<FileTaskResult> {
    const input = scratch(task.length);
    const bytesRead = readFully(data.inputFd, input, task.position);
    if (bytesRead !== task.length) return inputChanged(task, bytesRead);
    const checksum = crc32c(input);
    return { id: task.id, ok: true, frame: await compressChunk(choice, input), checksum };
  }

  function compress(task: Extract<FileTask, { op: 'compress' }>): FileTaskResult {
    const input = kernel.stageInput(task.length, kernel.frameBytesMax(task.length));
    const bytesRead = readFully(data.inputFd, input, task.position);
    if (bytesRead !== task.length) return inputChanged(task, bytesRead);
    const checksum = crc32c(input);
    return { id: task.id, ok: true, frame: ownedCopy(kernel.compressStaged(task.length), task.spare), checksum };
  }

  function decompress(task: Extract<FileTask, { op: 'decompress' }>): FileTaskResult {
    const label = `chunk ${task.chunk}`;
    const header = new Uint8Array(chunkHeaderBytes);
    const headerBytes = readFully(data.inputFd, header, task.position);
    checkChunkHeader(header.subarray(0, headerBytes), task.chunk, task.position, task, data.chunkBytes, data.codec);
    const huffman = data.codec === codecHuffmanId;
    const frame = huffman ? kernel.stageInput(task.compressedBytes, task.originalBytes) : scratch(task.compressedBytes);
    if (readFully(data.inputFd, frame, task.position + chunkHeaderBytes) !== task.compressedBytes) throw new CodecError('TRUNCATED', `${label}: truncated`);
    let decoded: Uint8Array;
    try {
      decoded = huffman ? kernel.decompressStaged(task.compressedBytes, task.originalBytes) : decompressChunk(choice, frame, task.originalBytes);
    } catch (error) {
      if (error instanceof CodecError) throw new CodecError(error.code, `${label}: ${error.message}`);
      throw error;
    }
    if (crc32c(decoded) !== task.checksum) throw new CodecError('CHECKSUM_MISMATCH', `${label}: checksum mismatch: decoded bytes differ from what was written`);
    writeFully(data.outputFd, decoded, task.outputPosition);
    return { id: task.id, ok: true };
  }

  return async (task) => {
    try {
      if (task.op === 'decompress') return decompress(task);
      return data.codec === codecHuffmanId ? compress(task) : await compressOther(task);
    } catch (error) {
      if (error instanceof CodecError) return { id: task.id, ok: false, code: error.code, message: error.message };
      const errno = (error as NodeJS.ErrnoException).code;
      return { id: task.id, ok: false, code: 'IO', errno: typeof errno === 'string' ? errno : 'EIO', message: (error as Error).message ?? String(error) };
    }
  };
}
