/**
 * The .dcz container: writing and reading in one streaming pass, and random access by chunk.
 * Chunks are coded by a CodecPool in parallel; output order is always chunk order.
 * Memory stays bounded: at most `inFlightMax` chunks (input and frame) are held at once.
 */
import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import { crc32c } from '@node-rs/crc32';
import { choiceOf, huffmanChoice, type CodecChoice } from './codecs.ts';
import { CodecError } from './errors.ts';
import { framingOf, type OutputFormat } from './standard-formats.ts';
import {
  chunkBytesFor,
  chunkBytesMax,
  chunkBytesMin,
  chunkHeaderBytes,
  decodeChunkHeader,
  decodeHeader,
  decodeIndex,
  decodeTrailer,
  encodeChunkHeader,
  encodeHeader,
  encodeIndex,
  encodeTrailer,
  formatVersion,
  frameBytesMax,
  headerBytes,
  indexBytes,
  indexEntryBytes,
  indexHeaderBytes,
  tagChunk,
  tagIndex,
  trailerBytes,
  type ChunkEntry,
  type FileHeader,
  type Trailer,
} from './format.ts';
import type { CodecPool } from './pool.ts';

export interface Progress {
  /** Original (uncompressed) bytes processed so far. */
  originalBytes: number;
  /** Container bytes produced or consumed so far. */
  containerBytes: number;
  chunks: number;
}

export interface EncodeOptions {
  pool: CodecPool;
  /** The codec every chunk is coded with; the Huffman kernel by default. */
  codec?: CodecChoice;
  /** A .dcz (the default), or a standard format of the codec's frames (standard-formats.ts). */
  format?: OutputFormat;
  chunkBytes?: number;
  /**
   * The source already yields fresh chunks of exactly chunkBytes (the last may be shorter) that the
   * encoder owns and may hand to worker threads, as fileChunks makes them: no re-cutting, no copy.
   * Otherwise the source's bytes are copied, so the caller's buffers are never touched.
   */
  owned?: boolean;
  /** Chunks held in memory at once; defaults to twice the pool's threads. */
  inFlightMax?: number;
  onProgress?: (progress: Progress) => void;
}

export interface DecodeOptions {
  pool: CodecPool;
  inFlightMax?: number;
  onProgress?: (progress: Progress) => void;
}

export function validateChunkBytes(chunkBytes: number): number {
  if (!Number.isInteger(chunkBytes) || chunkBytes < chunkBytesMin || chunkBytes > chunkBytesMax) {
    throw new CodecError('TOO_LARGE', `chunk size ${chunkBytes} is outside ${chunkBytesMin}..${chunkBytesMax} bytes`);
  }
  return chunkBytes;
}

/**
 * Maps `source` through `fn` with at most `inFlightMax` results pending, yielding them in source
 * order. Reading and dispatching run ahead in the background while the consumer is busy with a
 * result (writing it, say), so slow consumers and slow sources overlap instead of taking turns.
 * A rejection, or a failure of the source, is raised when its turn comes; rejections behind it are
 * swallowed, not left unhandled.
 */
export async function* mapOrdered<T, R>(
  source: AsyncIterable<T>,
  fn: (item: T, index: number) => Promise<R>,
  inFlightMax: number,
): AsyncGenerator<R> {
  const iterator = source[Symbol.asyncIterator]();
  const pending: Promise<R>[] = [];
  let index = 0;
  let exhausted = false;
  let failure: { error: unknown } | undefined;
  let filling: Promise<void> | undefined;
  let wake: (() => void) | undefined;

  async function fill(): Promise<void> {
    try {
      while (!exhausted && pending.length < inFlightMax) {
        const next = await iterator.next();
        if (next.done === true || exhausted) {
          exhausted = true;
          break;
        }
        const promise = fn(next.value, index++);
        promise.catch(() => {});
        pending.push(promise);
        wake?.();
      }
    } catch (error) {
      failure = { error };
      exhausted = true;
    } finally {
      filling = undefined;
      wake?.();
    }
  }

  const refill = () => {
    if (filling === undefined && !exhausted && pending.length < inFlightMax) filling = fill();
  };

  try {
    for (;;) {
      refill();
      const next = pending.shift();
      if (next !== undefined) {
        const result = await next;
        refill();
        yield result;
        continue;
      }
      if (exhausted && filling === undefined) {
        if (failure !== undefined) throw failure.error;
        return;
      }
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    exhausted = true;
    await filling;
    await iterator.return?.();
  }
}

/**
 * Re-cuts a byte stream into exactly `chunkBytes`-long pieces (the last may be shorter, in memory of its
 * own). Each full piece is a buffer from `nextBuffer`, fresh by default, every byte of it overwritten;
 * a buffer is asked for when bytes for it have come, and may be waited for.
 */
export async function* rechunk(
  source: AsyncIterable<Uint8Array>,
  chunkBytes: number,
  nextBuffer: () => Uint8Array | Promise<Uint8Array> = () => new Uint8Array(chunkBytes),
): AsyncGenerator<Uint8Array> {
  let piece: Uint8Array | undefined;
  let filled = 0;
  for await (const input of source) {
    let at = 0;
    while (at < input.length) {
      piece ??= await nextBuffer();
      const take = Math.min(chunkBytes - filled, input.length - at);
      piece.set(input.subarray(at, at + take), filled);
      filled += take;
      at += take;
      if (filled === chunkBytes) {
        yield piece;
        piece = undefined;
        filled = 0;
      }
    }
  }
  if (piece !== undefined && filled > 0) yield piece.slice(0, filled);
}

/** Reads a file as fresh, exactly `chunkBytes`-long pieces without an intermediate copy. */
export async function* fileChunks(path: string, chunkBytes: number): AsyncGenerator<Uint8Array> {
  const file = await open(path, 'r');
  try {
    for (;;) {
      const piece = new Uint8Array(chunkBytes);
      let filled = 0;
      while (filled < chunkBytes) {
        const { bytesRead } = await file.read(piece, filled, chunkBytes - filled, null);
        if (bytesRead === 0) break;
        filled += bytesRead;
      }
      if (filled === 0) return;
      yield filled === chunkBytes ? piece : piece.slice(0, filled);
      if (filled < chunkBytes) return;
    }
  } finally {
    await file.close();
  }
}

/** Encodes original bytes into a .dcz byte stream, or a standard format's (`options.format`). */
export async function* encodeDcz(source: AsyncIterable<Uint8Array>, options: EncodeOptions): AsyncGenerator<Uint8Array> {
  const choice = options.codec ?? huffmanChoice;
  const chunkBytes = validateChunkBytes(options.chunkBytes ?? chunkBytesFor(choice));
  const inFlightMax = options.inFlightMax ?? options.pool.threads * 2;
  const framing = framingOf(options.format ?? 'dcz', choice, chunkBytes);
  const hash = createHash('sha256');
  const entries: ChunkEntry[] = [];
  const progress: Progress = { originalBytes: 0, containerBytes: 0, chunks: 0 };

  async function* hashed(): AsyncGenerator<Uint8Array> {
    for await (const piece of options.owned ? source : rechunk(source, chunkBytes)) {
      if (options.owned && piece.length > chunkBytes) throw new RangeError(`encodeDcz: an owned chunk of ${piece.length} bytes exceeds ${chunkBytes}`);
      if (framing.needsSha256) hash.update(piece);
      yield piece;
    }
  }

  let offset = 0;
  for (const piece of framing.start()) {
    yield piece;
    offset += piece.length;
  }
  const coded = mapOrdered(hashed(), async (piece) => ({ originalBytes: piece.length, ...(await options.pool.compress(piece, choice)) }), inFlightMax);
  for await (const chunk of coded) {
    const entry = { offset, originalBytes: chunk.originalBytes, compressedBytes: chunk.frame.length, checksum: chunk.checksum };
    entries.push(entry);
    for (const piece of framing.beforeFrame(entry)) {
      yield piece;
      offset += piece.length;
    }
    yield chunk.frame;
    offset += chunk.frame.length;
    progress.originalBytes += chunk.originalBytes;
    progress.containerBytes = offset;
    progress.chunks = entries.length;
    options.onProgress?.(progress);
  }
  progress.containerBytes = offset;
  for (const piece of framing.end(entries, offset, progress.originalBytes, framing.needsSha256 ? hash.digest() : undefined)) {
    yield piece;
    progress.containerBytes += piece.length;
  }
  options.onProgress?.(progress);
}

/** Sequential reads of exact lengths from a file or a stream. */
export interface ByteSource {
  /** Reads exactly `length` bytes, or returns what there was if the source ended first. */
  read(length: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

export function fileSource(file: FileHandle): ByteSource {
  let position = 0;
  return {
    async read(length) {
      const out = new Uint8Array(length);
      let filled = 0;
      while (filled < length) {
        const { bytesRead } = await file.read(out, filled, length - filled, position);
        if (bytesRead === 0) break;
        filled += bytesRead;
        position += bytesRead;
      }
      return filled === length ? out : out.subarray(0, filled);
    },
    close: () => file.close(),
  };
}

export function streamSource(stream: AsyncIterable<Uint8Array>): ByteSource {
  const iterator = stream[Symbol.asyncIterator]();
  let buffered: Uint8Array[] = [];
  let bufferedBytes = 0;
  let done = false;
  return {
    async read(length) {
      while (bufferedBytes < length && !done) {
        const next = await iterator.next();
        if (next.done) done = true;
        else if (next.value.length > 0) {
          buffered.push(next.value);
          bufferedBytes += next.value.length;
        }
      }
      const out = new Uint8Array(Math.min(length, bufferedBytes));
      let filled = 0;
      while (filled < out.length) {
        const first = buffered[0];
        const take = Math.min(first.length, out.length - filled);
        out.set(first.subarray(0, take), filled);
        filled += take;
        if (take === first.length) buffered.shift();
        else buffered[0] = first.subarray(take);
      }
      bufferedBytes -= filled;
      return out;
    },
    async close() {
      buffered = [];
      await iterator.return?.();
    },
  };
}

async function readExactly(source: ByteSource, length: number, what: string): Promise<Uint8Array> {
  const bytes = await source.read(length);
  if (bytes.length !== length) {
    throw new CodecError('TRUNCATED', `${what}: truncated: needs ${length} bytes, the file ends after ${bytes.length}`);
  }
  return bytes;
}

function tagOf(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0, true);
}

function sameEntry(a: ChunkEntry, b: ChunkEntry): boolean {
  return a.offset === b.offset && a.originalBytes === b.originalBytes && a.compressedBytes === b.compressedBytes && a.checksum === b.checksum;
}

/**
 * Decodes a .dcz byte stream into original bytes, verifying every chunk's CRC32C, the index
 * against the chunks seen, and the whole output's SHA-256 and length against the trailer.
 */
export async function* decodeDcz(source: ByteSource, options: DecodeOptions): AsyncGenerator<Uint8Array> {
  const inFlightMax = options.inFlightMax ?? options.pool.threads * 2;
  const header = decodeHeader(await source.read(headerBytes), { anyCodec: true });
  const choice = headerChoice(header);
  const entries: ChunkEntry[] = [];
  const progress: Progress = { originalBytes: 0, containerBytes: headerBytes, chunks: 0 };
  let offset = headerBytes;
  let indexTag: Uint8Array | undefined;

  async function* frames(): AsyncGenerator<{ entry: ChunkEntry; frame: Uint8Array; label: string }> {
    for (;;) {
      const label = `chunk ${entries.length}`;
      const tag = await source.read(4);
      if (tag.length < 4) {
        const where = entries.length === 0 ? 'the header' : `chunk ${entries.length - 1}`;
        throw new CodecError('TRUNCATED', `file truncated after ${where}: index and trailer are missing`);
      }
      if (tagOf(tag) === tagIndex) {
        indexTag = tag;
        return;
      }
      if (tagOf(tag) !== tagChunk) throw new CodecError('CORRUPT_CONTAINER', `${label} (offset ${offset}): expected a chunk or the index, found neither`);
      const rest = await readExactly(source, chunkHeaderBytes - 4, `${label} header`);
      const headerBytesRead = new Uint8Array(chunkHeaderBytes);
      headerBytesRead.set(tag, 0);
      headerBytesRead.set(rest, 4);
      const fields = decodeChunkHeader(headerBytesRead, entries.length, header.chunkBytes, header.codec);
      const entry = { offset, ...fields };
      const previous = entries.at(-1);
      if (previous !== undefined && previous.originalBytes !== header.chunkBytes) {
        throw new CodecError('CORRUPT_CONTAINER', `chunk ${entries.length - 1}: holds ${previous.originalBytes} bytes but is not the last chunk`);
      }
      const frame = await readExactly(source, entry.compressedBytes, label);
      entries.push(entry);
      offset += chunkHeaderBytes + entry.compressedBytes;
      yield { entry, frame, label };
    }
  }

  const hash = createHash('sha256');
  const decoded = mapOrdered(frames(), ({ entry, frame, label }) => options.pool.decompress(frame, entry.originalBytes, entry.checksum, label, choice), inFlightMax);
  for await (const data of decoded) {
    hash.update(data);
    progress.originalBytes += data.length;
    progress.chunks += 1;
    progress.containerBytes = offset;
    options.onProgress?.(progress);
    yield data;
  }
  if (indexTag === undefined) throw new Error('decodeDcz: chunk stream ended without reaching the index');
  await verifyTail(source, header, entries, offset, indexTag, progress.originalBytes, hash.digest());
}

async function verifyTail(
  source: ByteSource,
  header: FileHeader,
  entries: readonly ChunkEntry[],
  indexOffset: number,
  indexTag: Uint8Array,
  originalBytes: number,
  sha256: Uint8Array,
): Promise<void> {
  const countBytes = await readExactly(source, 4, 'index');
  const count = new DataView(countBytes.buffer, countBytes.byteOffset, 4).getUint32(0, true);
  if (count !== entries.length) throw new CodecError('CORRUPT_CONTAINER', `index: lists ${count} chunks, the file holds ${entries.length}`);
  const rest = await readExactly(source, count * indexEntryBytes + 4, 'index');
  const indexBytesRead = new Uint8Array(indexBytes(count));
  indexBytesRead.set(indexTag, 0);
  indexBytesRead.set(countBytes, 4);
  indexBytesRead.set(rest, indexHeaderBytes);
  const listed = decodeIndex(indexBytesRead);
  listed.forEach((entry, i) => {
    if (!sameEntry(entry, entries[i])) throw new CodecError('CORRUPT_CONTAINER', `index: entry ${i} does not match chunk ${i}`);
  });
  const trailer = decodeTrailer(await source.read(trailerBytes));
  checkTrailer(trailer, entries.length, indexOffset, originalBytes);
  if (!Buffer.from(trailer.sha256).equals(sha256)) {
    throw new CodecError('CHECKSUM_MISMATCH', 'trailer: SHA-256 of the decoded file does not match the recorded one');
  }
  const extra = await source.read(1);
  if (extra.length !== 0) throw new CodecError('CORRUPT_CONTAINER', 'trailer: unexpected bytes after the end of the container');
}

function checkTrailer(trailer: Trailer, chunkCount: number, indexOffset: number, originalBytes: number): void {
  if (trailer.chunkCount !== chunkCount) throw new CodecError('CORRUPT_CONTAINER', `trailer: records ${trailer.chunkCount} chunks, the index lists ${chunkCount}`);
  if (trailer.indexOffset !== indexOffset) throw new CodecError('CORRUPT_CONTAINER', `trailer: index offset ${trailer.indexOffset} is wrong (index is at ${indexOffset})`);
  if (trailer.originalBytes !== originalBytes) {
    throw new CodecError('CORRUPT_CONTAINER', `trailer: records ${trailer.originalBytes} original bytes, the chunks hold ${originalBytes}`);
  }
}

/** A .dcz file opened for random access: chunk i is read and decoded without touching the others. */
export interface DczReader {
  readonly header: FileHeader;
  readonly trailer: Trailer;
  readonly entries: readonly ChunkEntry[];
  /** The raw chunk record (header and frame) as stored, for copying chunks between containers. */
  readFrame(chunk: number): Promise<Uint8Array>;
  readChunk(chunk: number, pool: CodecPool): Promise<Uint8Array>;
  close(): Promise<void>;
}

/** The parts of a .dcz that locate its chunks: header, trailer and index, checked against each other and the file's size. */
export interface DczLayout {
  readonly header: FileHeader;
  readonly trailer: Trailer;
  readonly entries: readonly ChunkEntry[];
}

async function readAt(file: FileHandle, position: number, length: number, what: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  const { bytesRead } = await file.read(out, 0, length, position);
  if (bytesRead !== length) throw new CodecError('TRUNCATED', `${what}: truncated`);
  return out;
}

/** Reads and checks a .dcz's header, trailer and index from an open file of `size` bytes; chunks are not read. */
export async function readDczLayout(file: FileHandle, size: number): Promise<DczLayout> {
  const header = decodeHeader(await readAt(file, 0, Math.min(headerBytes, size), 'header'), { anyCodec: true });
  if (size < headerBytes + indexBytes(0) + trailerBytes) throw new CodecError('TRUNCATED', 'file is shorter than an empty .dcz');
  const trailer = decodeTrailer(await readAt(file, size - trailerBytes, trailerBytes, 'trailer'));
  const indexLength = indexBytes(trailer.chunkCount);
  if (trailer.indexOffset + indexLength + trailerBytes !== size) throw new CodecError('CORRUPT_CONTAINER', 'trailer: index offset and chunk count do not match the file size');
  const entries = decodeIndex(await readAt(file, trailer.indexOffset, indexLength, 'index'));
  let expected = headerBytes;
  let originalBytes = 0;
  entries.forEach((entry, i) => {
    if (entry.offset !== expected) throw new CodecError('CORRUPT_CONTAINER', `index: chunk ${i} offset ${entry.offset} should be ${expected}`);
    if (entry.originalBytes === 0 || entry.originalBytes > header.chunkBytes || entry.compressedBytes > frameBytesMax(entry.originalBytes, header.codec)) {
      throw new CodecError('CORRUPT_CONTAINER', `index: chunk ${i} has impossible lengths`);
    }
    if (i < entries.length - 1 && entry.originalBytes !== header.chunkBytes) {
      throw new CodecError('CORRUPT_CONTAINER', `index: chunk ${i} holds ${entry.originalBytes} bytes but is not the last chunk`);
    }
    expected += chunkHeaderBytes + entry.compressedBytes;
    originalBytes += entry.originalBytes;
  });
  checkTrailer(trailer, entries.length, expected, originalBytes);
  return { header, trailer, entries };
}

export async function openDcz(path: string): Promise<DczReader> {
  const file = await open(path, 'r');
  try {
    const { size } = await file.stat();
    const { header, trailer, entries } = await readDczLayout(file, size);
    const readFrame = async (chunk: number): Promise<Uint8Array> => {
      const entry = entries[chunk];
      if (entry === undefined) throw new RangeError(`chunk ${chunk} does not exist (the file has ${entries.length})`);
      return readAt(file, entry.offset, chunkHeaderBytes + entry.compressedBytes, `chunk ${chunk}`);
    };
    return {
      header,
      trailer,
      entries,
      readFrame,
      async readChunk(chunk, pool) {
        const record = await readFrame(chunk);
        const fields = decodeChunkHeader(record.subarray(0, chunkHeaderBytes), chunk, header.chunkBytes, header.codec);
        const entry = entries[chunk];
        if (fields.compressedBytes !== entry.compressedBytes || fields.originalBytes !== entry.originalBytes || fields.checksum !== entry.checksum) {
          throw new CodecError('CORRUPT_CONTAINER', `chunk ${chunk}: header does not match the index`);
        }
        return pool.decompress(record.slice(chunkHeaderBytes), entry.originalBytes, entry.checksum, `chunk ${chunk}`, headerChoice(header));
      },
      close: () => file.close(),
    };
  } catch (error) {
    await file.close();
    throw error;
  }
}

/** The codec and level a checked header names (decodeHeader refused any it does not know). */
export function headerChoice(header: FileHeader): CodecChoice {
  return choiceOf(header.codec, header.level ?? 0);
}

/** CRC32C as the container uses it, for rooms that verify chunks outside a pool. */
export function checksumOf(bytes: Uint8Array): number {
  return crc32c(bytes);
}
