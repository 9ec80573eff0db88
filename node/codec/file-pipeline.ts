/**
 * Compress and decompress between files on threads that do their own I/O (file-threads.ts): each codec
 * thread reads its chunk straight into kernel memory; decoding threads also check it and write it at its
 * place in the output, so decoded bytes never cross threads; the SHA-256 runs on a thread of its own,
 * beside the coding, or here (a small file, two coding threads at most, or zlib's coders holding the
 * bytes, file-zlib.ts). This thread hands out chunk positions, codes chunks itself for the kernel and
 * store, and, compressing, writes frames in order.
 * Memory stays bounded: at most the coders' `inFlightMax` chunks are in flight (2 or 3 per coding thread).
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { freeBuffer } from './buffers.ts';
import { huffmanChoice, type CodecChoice } from './codecs.ts';
import { headerChoice, mapOrdered, type DczLayout, type Progress } from './container.ts';
import { CodecError } from './errors.ts';
import { startFileThreads, startSha, type FileThreads, type FileThreadsOptions } from './file-threads.ts';
import { codesOnLibuv, startZlibCoders } from './file-zlib.ts';
import { chunkHeaderBytes, type ChunkEntry } from './format.ts';
import { framingOf, type OutputFormat } from './standard-formats.ts';

export interface ThreadedOptions {
  threads: number;
  /** The main thread codes too (file-threads.ts FileThreadsOptions.mainThread). */
  mainThread?: boolean;
  onProgress?: (progress: Progress) => void;
}

export interface ThreadedResult {
  /** Bytes written to the output. */
  outputBytes: number;
  chunks: number;
  /** Codec threads used: no more than there were chunks. */
  threads: number;
}

/** No more codec threads than chunks: each costs tens of milliseconds to start. */
function threadsFor(chunks: number, threadsMax: number): number {
  return Math.max(1, Math.min(chunks, threadsMax));
}

/** zlib's codecs code on libuv's thread pool (file-zlib.ts); the others on codec threads of their own. */
function startCoders(options: FileThreadsOptions & { codec: CodecChoice }): FileThreads {
  return codesOnLibuv(options.codec) ? startZlibCoders(options) : startFileThreads(options);
}

async function* indices(count: number): AsyncGenerator<number> {
  for (let i = 0; i < count; i++) yield i;
}

/** Codes the `totalBytes` of `input` into a .dcz (or a standard format) written to `output` from its start. */
export async function compressThreaded(
  input: FileHandle,
  totalBytes: number,
  output: FileHandle,
  options: ThreadedOptions & { chunkBytes: number; codec?: CodecChoice; format?: OutputFormat },
): Promise<ThreadedResult> {
  const { chunkBytes } = options;
  const codec = options.codec ?? huffmanChoice;
  const framing = framingOf(options.format ?? 'dcz', codec, chunkBytes);
  const chunkCount = Math.ceil(totalBytes / chunkBytes);
  // zlib's coders read on this thread and hand their input over, hashed here as it comes (`given`);
  // otherwise the file is read again to hash it (`sha`).
  const given = framing.needsSha256 && codesOnLibuv(codec) ? createHash('sha256') : undefined;
  const coders = startCoders({ threads: threadsFor(chunkCount, options.threads), totalBytes, inputFd: input.fd, outputFd: -1, chunkBytes, codec, mainThread: options.mainThread });
  const sha = framing.needsSha256 && given === undefined ? startSha(input.fd, totalBytes, coders) : undefined;
  try {
    const start = framing.start();
    await output.writev(start);
    let offset = byteLength(start);
    const entries: ChunkEntry[] = [];
    const progress: Progress = { originalBytes: 0, containerBytes: offset, chunks: 0 };
    const code = async (chunk: number) => {
      const originalBytes = Math.min(chunkBytes, totalBytes - chunk * chunkBytes);
      return { originalBytes, ...(await coders.compress(chunk * chunkBytes, originalBytes)) };
    };
    for await (const { originalBytes, frame, checksum, input } of mapOrdered(indices(chunkCount), code, coders.inFlightMax)) {
      if (input !== undefined) given?.update(input);
      const entry = { offset, originalBytes, compressedBytes: frame.length, checksum };
      entries.push(entry);
      const before = framing.beforeFrame(entry);
      await output.writev([...before, frame]);
      offset += byteLength(before) + frame.length;
      // Last: a recycled frame may be freed (its views read as empty).
      coders.recycle(frame, input);
      progress.originalBytes += originalBytes;
      progress.containerBytes = offset;
      progress.chunks = entries.length;
      sha?.hashUpTo(progress.originalBytes);
      options.onProgress?.(progress);
    }
    const end = framing.end(entries, offset, totalBytes, given !== undefined ? new Uint8Array(given.digest()) : await sha?.digest());
    await output.writev(end);
    progress.containerBytes = offset + byteLength(end);
    options.onProgress?.(progress);
    return { outputBytes: progress.containerBytes, chunks: entries.length, threads: coders.threads };
  } finally {
    await Promise.all([coders.close(), sha?.close()]);
  }
}

function byteLength(pieces: readonly Uint8Array[]): number {
  return pieces.reduce((sum, piece) => sum + piece.length, 0);
}

/**
 * Decodes the .dcz `input`, whose layout was read and checked, into `output`: every chunk's header
 * against the index, its CRC32C, and the whole output's SHA-256 against the trailer.
 */
export async function decompressThreaded(input: FileHandle, layout: DczLayout, output: FileHandle, options: ThreadedOptions): Promise<ThreadedResult> {
  const { header, trailer, entries } = layout;
  const choice = headerChoice(header);
  // Bytes zlib's coders decoded on this thread are hashed as they are (`given`); others are read back from the output.
  const given = codesOnLibuv(choice) ? createHash('sha256') : undefined;
  const coders = startCoders({ threads: threadsFor(entries.length, options.threads), totalBytes: trailer.originalBytes, inputFd: input.fd, outputFd: output.fd, chunkBytes: header.chunkBytes, codec: choice, mainThread: options.mainThread });
  const sha = given === undefined ? startSha(output.fd, trailer.originalBytes, coders) : undefined;
  try {
    const progress: Progress = { originalBytes: 0, containerBytes: 0, chunks: 0 };
    const decode = async (chunk: number) => {
      const entry = entries[chunk];
      const { originalBytes, compressedBytes, checksum } = entry;
      const decoded = await coders.decompress({ op: 'decompress', chunk, position: entry.offset, originalBytes, compressedBytes, checksum, outputPosition: chunk * header.chunkBytes });
      return { entry, decoded };
    };
    // Chunks land in the output out of order; they are hashed in order as each run of them completes.
    for await (const { entry, decoded } of mapOrdered(indices(entries.length), decode, coders.inFlightMax)) {
      progress.originalBytes += entry.originalBytes;
      progress.containerBytes = entry.offset + chunkHeaderBytes + entry.compressedBytes;
      progress.chunks += 1;
      if (decoded !== undefined) {
        given?.update(decoded);
        // Written and hashed: its memory goes back at once for the next chunk's, not when the collector finds it.
        freeBuffer(decoded);
      }
      sha?.hashUpTo(progress.originalBytes);
      options.onProgress?.(progress);
    }
    const digest = given !== undefined ? given.digest() : await sha!.digest();
    if (!Buffer.from(trailer.sha256).equals(digest)) {
      throw new CodecError('CHECKSUM_MISMATCH', 'trailer: SHA-256 of the decoded file does not match the recorded one');
    }
    return { outputBytes: progress.originalBytes, chunks: entries.length, threads: coders.threads };
  } finally {
    await Promise.all([coders.close(), sha?.close()]);
  }
}
