/**
 * File-level compress and decompress. Output is written to a temporary file beside the target and
 * moved into place only when complete, so a failure never leaves a partial file under the final name.
 */
import { randomBytes } from 'node:crypto';
import { link, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { unlinkSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { chunkBytesDefault } from './format.ts';
import { decodeDcz, encodeDcz, fileChunks, fileSource, readDczLayout, validateChunkBytes, type DczLayout, type Progress } from './container.ts';
import { CodecError } from './errors.ts';
import { compressThreaded, decompressThreaded } from './file-pipeline.ts';
import { createCodecPool, type CodecPool } from './pool.ts';

export type FileErrorCode = 'INPUT_MISSING' | 'INPUT_NOT_FILE' | 'OUTPUT_EXISTS';

export class FileError extends Error {
  readonly code: FileErrorCode;

  constructor(code: FileErrorCode, message: string) {
    super(message);
    this.name = 'FileError';
    this.code = code;
  }
}

export interface FileOptions {
  /**
   * A pool to code the chunks with, streaming them through this thread. Without one, `threads` file
   * codec threads start for this call and read and write the files themselves (file-pipeline.ts).
   */
  pool?: CodecPool;
  threads?: number;
  chunkBytes?: number;
  /** Replace an existing output file. */
  force?: boolean;
  /**
   * Flush the output to the disk (fsync) before moving it into place, so it survives a system crash;
   * off by default, as in gzip (--synchronous) and zstd, because it bounds output at the disk's speed.
   */
  synchronous?: boolean;
  onProgress?: (progress: Progress, totalBytes: number) => void;
}

export interface FileResult {
  input: string;
  output: string;
  originalBytes: number;
  compressedBytes: number;
  chunks: number;
  threads: number;
  seconds: number;
}

/** Temporary files being written now; a signal handler removes them before the process exits. */
const partialPaths = new Set<string>();

export function removePartialFilesSync(): void {
  for (const path of partialPaths) {
    try {
      unlinkSync(path);
    } catch {
      // Already gone: nothing to clean.
    }
  }
  partialPaths.clear();
}

async function inputSize(path: string): Promise<number> {
  try {
    const info = await stat(path);
    if (!info.isFile()) throw new FileError('INPUT_NOT_FILE', `${path}: not a regular file`);
    return info.size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new FileError('INPUT_MISSING', `${path}: no such file`);
    throw error;
  }
}

async function refuseExisting(path: string, force: boolean): Promise<void> {
  if (force) return;
  try {
    await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  throw new FileError('OUTPUT_EXISTS', `${path}: already exists (use --force to replace it)`);
}

/**
 * Lets `fill` write a temporary file beside `path` (opened for reading too, so it can be read back while
 * written), flushes it to the disk if `synchronous`, and moves it to `path`; on any failure the temporary
 * file is removed, so `path` never holds a partial file.
 */
export async function fillAtomically<T>(path: string, options: { force: boolean; synchronous: boolean }, fill: (file: FileHandle) => Promise<T>): Promise<T> {
  const { force } = options;
  await refuseExisting(path, force);
  const partial = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.partial`);
  partialPaths.add(partial);
  try {
    const file = await open(partial, 'wx+');
    let result: T;
    try {
      result = await fill(file);
      if (options.synchronous) await file.sync();
    } finally {
      await file.close();
    }
    if (force) await rename(partial, path);
    else await moveNoClobber(partial, path);
    return result;
  } finally {
    partialPaths.delete(partial);
    await unlink(partial).catch(() => {});
  }
}

/** Writes `source` to `path` through a temporary file (flushed to the disk unless told otherwise); returns the bytes written. */
export function writeAtomically(path: string, source: AsyncIterable<Uint8Array>, force: boolean, synchronous = true): Promise<number> {
  return fillAtomically(path, { force, synchronous }, async (file) => {
    let written = 0;
    for await (const piece of source) {
      await file.write(piece);
      written += piece.length;
    }
    return written;
  });
}

/** A hard link fails if the target exists, which closes the race between the check and the move. */
async function moveNoClobber(from: string, to: string): Promise<void> {
  try {
    await link(from, to);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new FileError('OUTPUT_EXISTS', `${to}: already exists (use --force to replace it)`);
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV') throw error;
    await refuseExisting(to, false);
    await rename(from, to);
  }
}

function target(options: FileOptions): { force: boolean; synchronous: boolean } {
  return { force: options.force ?? false, synchronous: options.synchronous ?? false };
}

export async function compressFile(input: string, output: string, options: FileOptions = {}): Promise<FileResult> {
  const totalBytes = await inputSize(input);
  const chunkBytes = validateChunkBytes(options.chunkBytes ?? chunkBytesDefault);
  await refuseExisting(output, options.force ?? false);
  const started = performance.now();
  const finish = (compressedBytes: number, chunks: number, threads: number): FileResult => {
    const seconds = (performance.now() - started) / 1000;
    return { input, output, originalBytes: totalBytes, compressedBytes, chunks, threads, seconds };
  };
  const onProgress = (progress: Progress) => options.onProgress?.(progress, totalBytes);
  if (options.pool === undefined) {
    const threads = options.threads ?? availableParallelism();
    const file = await open(input, 'r');
    try {
      const coded = await fillAtomically(output, target(options), (out) => compressThreaded(file, totalBytes, out, { threads, chunkBytes, onProgress }));
      return finish(coded.outputBytes, coded.chunks, coded.threads);
    } finally {
      await file.close();
    }
  }
  const pool = options.pool;
  let chunks = 0;
  const encoded = encodeDcz(fileChunks(input, chunkBytes), {
    pool,
    chunkBytes,
    owned: true,
    onProgress: (progress) => {
      chunks = progress.chunks;
      onProgress(progress);
    },
  });
  return finish(await writeAtomically(output, encoded, options.force ?? false, options.synchronous ?? false), chunks, pool.threads);
}

export async function decompressFile(input: string, output: string, options: FileOptions = {}): Promise<FileResult> {
  const compressedBytes = await inputSize(input);
  await refuseExisting(output, options.force ?? false);
  const started = performance.now();
  const finish = (originalBytes: number, chunks: number, threads: number): FileResult => {
    const seconds = (performance.now() - started) / 1000;
    return { input, output, originalBytes, compressedBytes, chunks, threads, seconds };
  };
  const onProgress = (progress: Progress) => options.onProgress?.(progress, compressedBytes);
  if (options.pool === undefined) {
    const threads = options.threads ?? availableParallelism();
    const file = await open(input, 'r');
    try {
      const layout = await layoutOrUndefined(file, compressedBytes);
      if (layout !== undefined) {
        const decoded = await fillAtomically(output, target(options), (out) => decompressThreaded(file, layout, out, { threads, onProgress }));
        return finish(decoded.outputBytes, decoded.chunks, decoded.threads);
      }
    } finally {
      await file.close();
    }
    // The index or trailer is damaged: the streaming decoder reads from the front and says where.
    return withPool(threads, (pool) => decompressStreaming(input, output, { ...options, pool, onProgress }, finish));
  }
  return decompressStreaming(input, output, { ...options, pool: options.pool, onProgress }, finish);
}

/** The file's layout, or undefined if its tail is damaged (the streaming decoder then names the damage). */
async function layoutOrUndefined(file: FileHandle, size: number): Promise<DczLayout | undefined> {
  try {
    return await readDczLayout(file, size);
  } catch (error) {
    if (error instanceof CodecError) return undefined;
    throw error;
  }
}

async function withPool<T>(threads: number, fn: (pool: CodecPool) => Promise<T>): Promise<T> {
  const pool = createCodecPool({ threads });
  try {
    return await fn(pool);
  } finally {
    await pool.close();
  }
}

async function decompressStreaming(
  input: string,
  output: string,
  options: { pool: CodecPool; force?: boolean; synchronous?: boolean; onProgress: (progress: Progress) => void },
  finish: (originalBytes: number, chunks: number, threads: number) => FileResult,
): Promise<FileResult> {
  const source = fileSource(await open(input, 'r'));
  try {
    let chunks = 0;
    const decoded = decodeDcz(source, {
      pool: options.pool,
      onProgress: (progress) => {
        chunks = progress.chunks;
        options.onProgress(progress);
      },
    });
    return finish(await writeAtomically(output, decoded, options.force ?? false, options.synchronous ?? false), chunks, options.pool.threads);
  } finally {
    await source.close();
  }
}
