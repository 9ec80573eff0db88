/**
 * File-level compress and decompress. Output is written to a temporary file beside the target and
 * moved into place only when complete, so a failure never leaves a partial file under the final name.
 */
import { randomBytes } from 'node:crypto';
import { link, lstat, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { unlinkSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { huffmanChoice, type CodecChoice } from './codecs.ts';
import type { OutputFormat } from './standard-formats.ts';
import { codecOfKind, decodeStandardFile, detectBytes, detectKind, type InputKind, type PieceDecoder } from './standard-decode.ts';
import { chunkBytesFor } from './format.ts';
import { decodeDcz, encodeDcz, fileChunks, fileSource, readDczLayout, validateChunkBytes, type ByteSource, type DczLayout, type Progress } from './container.ts';
import { CodecError } from './errors.ts';
import { compressThreaded, decompressThreaded } from './file-pipeline.ts';
import { codesOnLibuv, zlibPieceDecoder } from './file-zlib.ts';
import { createCodecPool, type CodecPool } from './pool.ts';
import { listingOf, threadsWithin, type DczListing } from './file-streams.ts';
import { CodedError } from '../errors.ts';

export type FileErrorCode = 'INPUT_MISSING' | 'INPUT_NOT_FILE' | 'INPUT_UNREADABLE' | 'OUTPUT_EXISTS' | 'OUTPUT_NOT_FILE' | 'OUTPUT_UNWRITABLE';

export class FileError extends CodedError<FileErrorCode> {}

export interface FileOptions {
  /**
   * A pool to code the chunks with, streaming them through this thread. Without one, `threads` file
   * codec threads start for this call and read and write the files themselves (file-pipeline.ts).
   */
  pool?: CodecPool;
  threads?: number;
  chunkBytes?: number;
  /** The codec and level to compress with; the Huffman kernel by default. Decompressing reads it from the file. */
  codec?: CodecChoice;
  /** What to write when compressing: a .dcz (the default) or a standard format of the codec's frames. */
  format?: OutputFormat;
  /** Replace an existing output file. */
  force?: boolean;
  /**
   * Flush the output to the disk (fsync) before moving it into place, so it survives a system crash;
   * off by default, as in gzip (--synchronous) and zstd, because it bounds output at the disk's speed.
   */
  synchronous?: boolean;
  /**
   * The calling thread codes the kernel's and store's chunks too, beside one codec thread fewer, and a
   * small input alone (file-threads.ts): what the CLI does, whose thread has nothing else to do. Off by
   * default: a server's event loop must stay free.
   */
  mainThread?: boolean;
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

/** System error codes in words, for messages that name the user's file instead of a temporary one. */
const errnoReasons: Record<string, string> = {
  ENOENT: 'no such file or folder',
  ENOTDIR: 'a part of the path is not a folder',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large for the file system',
  EISDIR: 'is a folder',
  EIO: 'input/output error',
};

/** Errors a write can meet that belong to the output whichever call raised them. */
const outputOnlyCodes = new Set(['ENOSPC', 'EDQUOT', 'EFBIG', 'EROFS']);

function errnoCode(error: unknown): string | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A system error on the output, retold naming `path` (the user's name, never the temporary one). */
function outputError(path: string, error: unknown): unknown {
  const reason = errnoReasons[errnoCode(error) ?? ''];
  return reason === undefined ? error : new FileError('OUTPUT_UNWRITABLE', `${path}: cannot write: ${reason}`);
}

/** The input's status; refuses what is not a regular file, naming `path` in words. */
export async function inputStat(path: string): Promise<Stats> {
  let info: Stats;
  try {
    info = await stat(path);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') throw new FileError('INPUT_MISSING', `${path}: no such file`);
    const reason = errnoReasons[errnoCode(error) ?? ''];
    throw reason === undefined ? error : new FileError('INPUT_UNREADABLE', `${path}: cannot read: ${reason}`);
  }
  if (!info.isFile()) throw new FileError('INPUT_NOT_FILE', `${path}: not a regular file`);
  return info;
}

async function openInput(path: string): Promise<FileHandle> {
  try {
    return await open(path, 'r');
  } catch (error) {
    const reason = errnoReasons[errnoCode(error) ?? ''];
    throw reason === undefined ? error : new FileError('INPUT_UNREADABLE', `${path}: cannot read: ${reason}`);
  }
}

function kindOf(info: Stats): string {
  if (info.isDirectory()) return 'a folder';
  if (info.isCharacterDevice() || info.isBlockDevice()) return 'a device';
  if (info.isFIFO()) return 'a FIFO';
  if (info.isSocket()) return 'a socket';
  if (info.isSymbolicLink()) return 'a symbolic link';
  return 'not a regular file';
}

/**
 * Refuses an existing output unless it is a regular file and `force` is given: the finished file is
 * renamed over the target, which would put a regular file where a device, a FIFO or a link was.
 */
async function refuseExisting(path: string, force: boolean): Promise<void> {
  let info: Stats;
  try {
    info = await lstat(path);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return;
    throw outputError(path, error);
  }
  if (!info.isFile()) throw new FileError('OUTPUT_NOT_FILE', `${path}: exists and is ${kindOf(info)}; dcas replaces only regular files`);
  if (!force) throw new FileError('OUTPUT_EXISTS', `${path}: already exists (use --force to replace it)`);
}

export interface OutputTarget {
  force: boolean;
  synchronous: boolean;
  /** The finished file's permission bits (its input's, as gzip and zstd keep them); default 0666 less the umask. */
  mode?: number;
  /** The finished file's access and modification times (its input's). */
  times?: { accessed: Date; modified: Date };
}

/** Permission bits only: set-user-ID, set-group-ID and sticky are dropped, as gzip does. */
const permissionBits = 0o777;

/** How an output keeps its input's mode and times. */
export function keepingInput(info: Stats): Pick<OutputTarget, 'mode' | 'times'> {
  return { mode: info.mode & permissionBits, times: { accessed: info.atime, modified: info.mtime } };
}

/**
 * Lets `fill` write a temporary file beside `path` (opened for reading too, so it can be read back while
 * written), flushes it to the disk if `synchronous`, and moves it to `path`; on any failure the temporary
 * file is removed, so `path` never holds a partial file. The temporary file has its final mode from its
 * creation, so the data is never readable by more people than the finished file allows.
 */
export async function fillAtomically<T>(path: string, options: OutputTarget, fill: (file: FileHandle) => Promise<T>): Promise<T> {
  const { force } = options;
  await refuseExisting(path, force);
  const partial = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.partial`);
  partialPaths.add(partial);
  try {
    const file = await open(partial, 'wx+', options.mode ?? 0o666).catch((error: unknown) => {
      throw outputError(path, error);
    });
    let result: T;
    try {
      // The umask may have taken bits away at creation; the input's mode is kept whole, as gzip does.
      if (options.mode !== undefined) await file.chmod(options.mode);
      result = await fill(file).catch((error: unknown) => {
        throw outputOnlyCodes.has(errnoCode(error) ?? '') ? outputError(path, error) : error;
      });
      if (options.times !== undefined) await file.utimes(options.times.accessed, options.times.modified);
      if (options.synchronous) await file.sync();
    } finally {
      await file.close();
    }
    await place(partial, path, force).catch((error: unknown) => {
      throw outputError(path, error);
    });
    return result;
  } finally {
    partialPaths.delete(partial);
    await unlink(partial).catch(() => {});
  }
}

/** Moves the finished file to `path`, checking again just before that the target is still replaceable. */
async function place(partial: string, path: string, force: boolean): Promise<void> {
  await refuseExisting(path, force);
  if (force) await rename(partial, path);
  else await moveNoClobber(partial, path);
}

/** Writes `source` to `path` through a temporary file (flushed to the disk unless told otherwise); returns the bytes written. */
export function writeAtomically(path: string, source: AsyncIterable<Uint8Array>, force: boolean, synchronous = true): Promise<number> {
  return fillAtomically(path, { force, synchronous }, (file) => writeAll(file, source, synchronous));
}

/**
 * A file flushed to the disk at its end is asked to sync every this many bytes while it is written, so
 * that its final fsync waits only for the tail (a 512 MB download: the disk writes while bytes arrive).
 */
const earlySyncBytes = 64 * 1024 * 1024;

async function writeAll(file: FileHandle, source: AsyncIterable<Uint8Array>, synchronous: boolean): Promise<number> {
  let written = 0;
  let syncedUpTo = 0;
  let syncing: Promise<void> | undefined;
  for await (const piece of source) {
    await file.write(piece);
    written += piece.length;
    if (synchronous && syncing === undefined && written - syncedUpTo >= earlySyncBytes) {
      syncedUpTo = written;
      // Its failure is the final fsync's to report.
      syncing = file.datasync().then(
        () => (syncing = undefined),
        () => (syncing = undefined),
      );
    }
  }
  await syncing;
  return written;
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

function target(options: FileOptions, input: Stats): OutputTarget {
  return { force: options.force ?? false, synchronous: options.synchronous ?? false, ...keepingInput(input) };
}

export async function compressFile(input: string, output: string, options: FileOptions = {}): Promise<FileResult> {
  const info = await inputStat(input);
  const totalBytes = info.size;
  const chunkBytes = validateChunkBytes(options.chunkBytes ?? chunkBytesFor(options.codec ?? huffmanChoice));
  await refuseExisting(output, options.force ?? false);
  const started = performance.now();
  const finish = (compressedBytes: number, chunks: number, threads: number): FileResult => {
    const seconds = (performance.now() - started) / 1000;
    return { input, output, originalBytes: totalBytes, compressedBytes, chunks, threads, seconds };
  };
  const onProgress = (progress: Progress) => options.onProgress?.(progress, totalBytes);
  if (options.pool === undefined) {
    const threads = threadsWithin(options.threads, { codec: options.codec ?? huffmanChoice, op: 'compress', chunkBytes });
    const file = await openInput(input);
    try {
      const coded = await fillAtomically(output, target(options, info), (out) => compressThreaded(file, totalBytes, out, { threads, chunkBytes, codec: options.codec, format: options.format, mainThread: options.mainThread, onProgress }));
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
    codec: options.codec,
    format: options.format,
    owned: true,
    onProgress: (progress) => {
      chunks = progress.chunks;
      onProgress(progress);
    },
  });
  const outputTarget = target(options, info);
  return finish(await fillAtomically(output, outputTarget, (file) => writeAll(file, encoded, outputTarget.synchronous)), chunks, pool.threads);
}

export async function decompressFile(input: string, output: string, options: FileOptions = {}): Promise<FileResult> {
  const info = await inputStat(input);
  const compressedBytes = info.size;
  await refuseExisting(output, options.force ?? false);
  const started = performance.now();
  const finish = (originalBytes: number, chunks: number, threads: number): FileResult => {
    const seconds = (performance.now() - started) / 1000;
    return { input, output, originalBytes, compressedBytes, chunks, threads, seconds };
  };
  const onProgress = (progress: Progress) => options.onProgress?.(progress, compressedBytes);
  const kind = await kindOfFile(input, compressedBytes);
  if (kind !== undefined && kind !== 'dcz') {
    const decode = (decoder: PieceDecoder) => decompressStandard(kind, input, output, { decoder, onProgress, target: target(options, info), compressedBytes }, finish);
    if (options.pool !== undefined) return decode(options.pool);
    // zlib's formats (.zst, .gz) on libuv's threads: no codec thread to start.
    const threads = threadsWithin(options.threads);
    return codesOnLibuv(codecOfKind(kind)) ? decode(zlibPieceDecoder(threads)) : withPool(threads, options.mainThread, decode);
  }
  if (options.pool === undefined) {
    const threads = threadsWithin(options.threads);
    const file = await openInput(input);
    try {
      const layout = await layoutOrUndefined(file, compressedBytes);
      if (layout !== undefined) {
        const decoded = await fillAtomically(output, target(options, info), (out) => decompressThreaded(file, layout, out, { threads, mainThread: options.mainThread, onProgress }));
        return finish(decoded.outputBytes, decoded.chunks, decoded.threads);
      }
    } finally {
      await file.close();
    }
    // The index or trailer is damaged: the streaming decoder reads from the front and says where.
    return withPool(threads, options.mainThread, (pool) => decompressStreaming(input, output, { pool, onProgress, target: target(options, info) }, finish));
  }
  return decompressStreaming(input, output, { pool: options.pool, onProgress, target: target(options, info) }, finish);
}

/** The format a file's first bytes name, or undefined (then the .dcz reader says what is wrong). */
async function kindOfFile(path: string, size: number): Promise<InputKind | undefined> {
  const file = await openInput(path);
  try {
    const head = new Uint8Array(Math.min(detectBytes, size));
    await file.read(head, 0, head.length, 0);
    return detectKind(head);
  } finally {
    await file.close();
  }
}

async function decompressStandard(
  kind: Exclude<InputKind, 'dcz'>,
  input: string,
  output: string,
  options: { decoder: PieceDecoder; target: OutputTarget; onProgress: (progress: Progress) => void; compressedBytes: number },
  finish: (originalBytes: number, chunks: number, threads: number) => FileResult,
): Promise<FileResult> {
  const file = await openInput(input);
  try {
    const decoded = await fillAtomically(output, options.target, (out) => decodeStandardFile(kind, file, options.compressedBytes, out, options.decoder, options.onProgress));
    return finish(decoded.originalBytes, decoded.pieces, options.decoder.threads);
  } finally {
    await file.close();
  }
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

async function withPool<T>(threads: number, mainThread: boolean | undefined, fn: (pool: CodecPool) => Promise<T>): Promise<T> {
  const pool = createCodecPool({ threads, mainThread });
  try {
    return await fn(pool);
  } finally {
    await pool.close();
  }
}

async function decompressStreaming(
  input: string,
  output: string,
  options: { pool: CodecPool; target: OutputTarget; onProgress: (progress: Progress) => void },
  finish: (originalBytes: number, chunks: number, threads: number) => FileResult,
): Promise<FileResult> {
  const source = fileSource(await openInput(input));
  try {
    let chunks = 0;
    const decoded = decodeDcz(source, {
      pool: options.pool,
      onProgress: (progress) => {
        chunks = progress.chunks;
        options.onProgress(progress);
      },
    });
    return finish(await fillAtomically(output, options.target, (file) => writeAll(file, decoded, options.target.synchronous)), chunks, options.pool.threads);
  } finally {
    await source.close();
  }
}

/** A file to read from its start as a ByteSource, with the same checks and messages as the file commands. */
export async function inputSource(path: string): Promise<ByteSource> {
  await inputStat(path);
  return fileSource(await openInput(path));
}

/** The chunks, sizes, codec and SHA-256 of a .dcz, from its header, index and trailer alone. */
export async function listDczFile(path: string): Promise<DczListing> {
  const info = await inputStat(path);
  const file = await openInput(path);
  try {
    return listingOf(await readDczLayout(file, info.size), info.size);
  } finally {
    await file.close();
  }
}
