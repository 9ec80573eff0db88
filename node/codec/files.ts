/**
 * File-level compress and decompress. Output is written to a temporary file beside the target and
 * moved into place only when complete, so a failure never leaves a partial file under the final name.
 */
import { randomBytes } from 'node:crypto';
import { link, open, rename, stat, unlink } from 'node:fs/promises';
import { unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { chunkBytesDefault } from './format.ts';
import { decodeDcz, encodeDcz, fileChunks, fileSource, validateChunkBytes, type Progress } from './container.ts';
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
  /** A pool to use; without one, a pool of `threads` workers is made and closed for this call. */
  pool?: CodecPool;
  threads?: number;
  chunkBytes?: number;
  /** Replace an existing output file. */
  force?: boolean;
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

/** Writes `source` to `path` through a temporary file; returns the bytes written. */
export async function writeAtomically(path: string, source: AsyncIterable<Uint8Array>, force: boolean): Promise<number> {
  await refuseExisting(path, force);
  const partial = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.partial`);
  partialPaths.add(partial);
  try {
    const file = await open(partial, 'wx');
    let written = 0;
    try {
      for await (const piece of source) {
        await file.write(piece);
        written += piece.length;
      }
      await file.sync();
    } finally {
      await file.close();
    }
    if (force) await rename(partial, path);
    else await moveNoClobber(partial, path);
    return written;
  } finally {
    partialPaths.delete(partial);
    await unlink(partial).catch(() => {});
  }
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

async function withPool<T>(options: FileOptions, fn: (pool: CodecPool) => Promise<T>): Promise<T> {
  if (options.pool !== undefined) return fn(options.pool);
  const pool = createCodecPool({ threads: options.threads });
  try {
    return await fn(pool);
  } finally {
    await pool.close();
  }
}

export async function compressFile(input: string, output: string, options: FileOptions = {}): Promise<FileResult> {
  const totalBytes = await inputSize(input);
  const chunkBytes = validateChunkBytes(options.chunkBytes ?? chunkBytesDefault);
  await refuseExisting(output, options.force ?? false);
  const started = performance.now();
  return withPool(options, async (pool) => {
    let chunks = 0;
    const encoded = encodeDcz(fileChunks(input, chunkBytes), {
      pool,
      chunkBytes,
      owned: true,
      onProgress: (progress) => {
        chunks = progress.chunks;
        options.onProgress?.(progress, totalBytes);
      },
    });
    const compressedBytes = await writeAtomically(output, encoded, options.force ?? false);
    const seconds = (performance.now() - started) / 1000;
    return { input, output, originalBytes: totalBytes, compressedBytes, chunks, threads: pool.threads, seconds };
  });
}

export async function decompressFile(input: string, output: string, options: FileOptions = {}): Promise<FileResult> {
  const compressedBytes = await inputSize(input);
  await refuseExisting(output, options.force ?? false);
  const started = performance.now();
  return withPool(options, async (pool) => {
    const source = fileSource(await open(input, 'r'));
    try {
      let chunks = 0;
      const decoded = decodeDcz(source, {
        pool,
        onProgress: (progress) => {
          chunks = progress.chunks;
          options.onProgress?.(progress, compressedBytes);
        },
      });
      const originalBytes = await writeAtomically(output, decoded, options.force ?? false);
      const seconds = (performance.now() - started) / 1000;
      return { input, output, originalBytes, compressedBytes, chunks, threads: pool.threads, seconds };
    } finally {
      await source.close();
    }
  });
}
