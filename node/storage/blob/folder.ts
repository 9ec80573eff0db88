/**
 * The folder blob store: one file per blob at <root>/<key>, shared by the node processes of one
 * machine (in a local cluster it plays the part object storage plays in a real deployment).
 *
 * A blob file is the blob's bytes followed by a footer: a JSON document {version, size, crc32c,
 * metadata}, its length (u32 BE), its own CRC32C (u32 BE) and the magic "DCASBLOB". The blob's
 * bytes sit at their own offsets, so ranged reads are positional reads of the file.
 *
 * Why a footer and not a sidecar file: with a sidecar, publishing a blob takes two renames (data,
 * then sidecar), and two processes writing one key can interleave them so that the key ends with
 * one writer's bytes and the other writer's CRC, a blob that fails every read. With the footer,
 * one rename publishes bytes, CRC and metadata together.
 *
 * Writes fill a temporary ".<name>.tmp-<pid>-<random>" beside the target, append the footer,
 * fsync, and rename it over the key. A crash leaves only a temporary file, which list() never
 * shows and deletePrefix() sweeps once it is an hour old. Names starting with "." are never keys
 * (keys.ts), so temporary files cannot collide with blobs.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rename, rm, rmdir, stat, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { checkedStore, type BlobBackend } from './checked.ts';
import { checkRangeWithin, crc32cHex } from './keys.ts';
import { BlobError, type BlobInfo, type BlobStore, type DeletePrefixOptions, type ReadRange } from './types.ts';

export interface FolderStoreOptions {
  /** The shared folder; created on first write. */
  root: string;
  /** fsync each blob before renaming it into place, so a power cut cannot leave an empty file under a key (default true). */
  fsync?: boolean;
  /** Bytes per read, per streamed chunk and per write buffer (default 1 MiB). */
  ioChunkBytes?: number;
}

const footerMagic = Buffer.from('DCASBLOB', 'latin1');
/** Footer bytes after the JSON: its length, its CRC32C, the magic. */
const footerTailBytes = 4 + 4 + footerMagic.length;
/** Metadata is at most 8 KiB (keys.ts); this bounds what a damaged length field can make us read. */
const footerJsonBytesMax = 64 * 1024;
const footerVersion = 1;
/** One read at open usually holds the whole footer. */
const footerReadBytes = 4096;
/** A temporary file untouched this long belongs to a writer that died. */
const tempStaleMs = 60 * 60 * 1000;
const tempNamePattern = /^\..+\.tmp-\d+-[0-9a-f]{12}$/;
/** A concurrent delete may remove an empty folder between our mkdir and our open; try again this often. */
const createAttemptsMax = 5;
/** Blobs hold users' files: readable by this node's user only (as are the folders above them). */
const fileMode = 0o600;
const folderMode = 0o700;

type Metadata = Record<string, string>;

interface Footer {
  size: number;
  crc32c: number;
  metadata: Record<string, string>;
}

interface OpenBlob {
  file: FileHandle;
  footer: Footer;
}

/** Positional writes through one reused buffer, counting bytes and CRC32C on the way. */
interface Sink {
  write(chunk: Uint8Array): Promise<void>;
  /**
   * Starts writing `chunk` as it is, once the write started before it has ended, and returns without
   * waiting for it: the caller may reuse `chunk` only after its next writeBehind (or flush) returns.
   */
  writeBehind(chunk: Uint8Array): Promise<void>;
  flush(): Promise<void>;
  /** The datasync started while writing, if one is under way (it never fails: the final fsync reports). */
  earlySync(): Promise<void>;
  size(): number;
  crc(): number;
}

export function createFolderStore(options: FolderStoreOptions): BlobStore {
  return checkedStore(new FolderBackend(options));
}

/** The folder store's work once checkedStore has checked the arguments. */
class FolderBackend implements BlobBackend {
  readonly kind = 'folder';
  readonly #rootPath: string;
  readonly #fsync: boolean;
  readonly #ioChunkBytes: number;

  constructor(options: FolderStoreOptions) {
    this.#rootPath = resolve(options.root);
    this.#fsync = options.fsync ?? true;
    this.#ioChunkBytes = options.ioChunkBytes ?? 1 << 20;
    if (!Number.isSafeInteger(this.#ioChunkBytes) || this.#ioChunkBytes < 4096) throw new Error(`folder store: ioChunkBytes must be an integer >= 4096, got ${this.#ioChunkBytes}`);
  }

  describe(action: string, key: string): string {
    return `folder store ${action} ${JSON.stringify(key)}`;
  }

  describePrefix(action: string, prefix: string): string {
    return `folder store ${action} ${JSON.stringify(prefix)}`;
  }

  put(key: string, data: Uint8Array, metadata: Metadata, where: string): Promise<BlobInfo> {
    return this.#writeBlob(key, metadata, where, (sink) => sink.write(data));
  }

  putStream(key: string, source: AsyncIterable<Uint8Array>, metadata: Metadata, where: string): Promise<BlobInfo> {
    return this.#writeBlob(key, metadata, where, async (sink) => {
      for await (const chunk of source) {
        if (!(chunk instanceof Uint8Array)) throw new BlobError('IO', `${where}: the source yielded a ${typeof chunk}, not a Uint8Array`);
        await sink.write(chunk);
      }
    });
  }

  async get(key: string, where: string): Promise<Uint8Array> {
    const { file, footer } = await this.#openBlobOrFail(key, where);
    try {
      const data = Buffer.allocUnsafe(footer.size);
      await readFully(file, data, 0, where);
      const crc = crc32c(data);
      if (crc !== footer.crc32c) throw checksumMismatch(where, footer.crc32c, crc);
      return data;
    } finally {
      await file.close();
    }
  }

  async *getStream(key: string, range: ReadRange | undefined, where: string): AsyncGenerator<Uint8Array> {
    const { file, footer } = await this.#openBlobOrFail(key, where);
    try {
      if (range !== undefined) checkRangeWithin(range, footer.size, where);
      const start = range?.start ?? 0;
      const end = range?.end ?? footer.size;
      let crc = 0;
      for (let at = start; at < end; ) {
        const chunk = Buffer.allocUnsafe(Math.min(this.#ioChunkBytes, end - at));
        await readFully(file, chunk, at, where);
        if (range === undefined) crc = crc32c(chunk, crc);
        at += chunk.length;
        yield chunk;
      }
      if (range === undefined && crc !== footer.crc32c) throw checksumMismatch(where, footer.crc32c, crc);
    } finally {
      await file.close();
    }
  }

  async getRange(key: string, range: ReadRange, where: string): Promise<Uint8Array> {
    const { file, footer } = await this.#openBlobOrFail(key, where);
    try {
      checkRangeWithin(range, footer.size, where);
      const data = Buffer.allocUnsafe(range.end - range.start);
      await readFully(file, data, range.start, where);
      return data;
    } finally {
      await file.close();
    }
  }

  async stat(key: string, where: string): Promise<BlobInfo | undefined> {
    const opened = await this.#openBlob(key, where);
    if (opened === undefined) return undefined;
    await opened.file.close();
    const { size, crc32c: crc, metadata } = opened.footer;
    return { key, size, crc32c: crc, metadata };
  }

  list(prefix: string): Promise<string[]> {
    return this.#listKeys(prefix);
  }

  async delete(key: string, where: string): Promise<void> {
    await this.#removeBlob(key, where);
  }

  async deletePrefix(prefix: string, options: DeletePrefixOptions | undefined, where: string): Promise<number> {
    let removed = 0;
    const sweep = options?.abandonWrites ? (path: string) => sweepTemp(path, 0) : (path: string) => sweepTemp(path, tempStaleMs);
    for (const key of await this.#listKeys(prefix, sweep)) {
      if (await this.#removeBlob(key, where)) removed++;
    }
    return removed;
  }

  /**
   * Reads each source into one of two buffers while the other is being written: reads and writes
   * overlap (composing 717 MB from 256 blobs here: 1.04 s one after the other).
   */
  compose(sources: readonly string[], destination: string, metadata: Metadata, where: string): Promise<BlobInfo> {
    return this.#writeBlob(destination, metadata, where, async (sink) => {
      const buffers = [Buffer.allocUnsafe(this.#ioChunkBytes), Buffer.allocUnsafe(this.#ioChunkBytes)];
      let turn = 0;
      const nextBuffer = () => buffers[turn++ % 2];
      for (const source of sources) await this.#copyVerified(source, nextBuffer, sink, `${where}: source ${JSON.stringify(source)}`);
    });
  }

  #pathOf(key: string): string {
    return join(this.#rootPath, ...key.split('/'));
  }

  async #openBlob(key: string, where: string): Promise<OpenBlob | undefined> {
    let file: FileHandle;
    try {
      file = await open(this.#pathOf(key), 'r');
    } catch (error) {
      if (isCode(error, 'ENOENT', 'ENOTDIR')) return undefined;
      throw ioError(where, error);
    }
    try {
      const info = await file.stat();
      if (!info.isFile()) {
        await file.close();
        return undefined; // a folder: the key is a prefix of blobs, not a blob
      }
      return { file, footer: await readFooter(file, info.size, `${where} (${this.#pathOf(key)})`) };
    } catch (error) {
      await file.close().catch(() => {});
      throw error instanceof BlobError ? error : ioError(where, error);
    }
  }

  async #openBlobOrFail(key: string, where: string): Promise<OpenBlob> {
    const opened = await this.#openBlob(key, where);
    if (opened === undefined) throw new BlobError('NOT_FOUND', `${where}: no such blob`);
    return opened;
  }

  /** Creates the temporary file beside the key's path, and the folders above it. */
  async #createTemp(key: string, where: string): Promise<{ file: FileHandle; tempPath: string }> {
    const path = this.#pathOf(key);
    const folder = dirname(path);
    for (let attempt = 1; ; attempt++) {
      const tempPath = join(folder, `.${basename(path)}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
      try {
        await mkdir(folder, { recursive: true, mode: folderMode });
        return { file: await open(tempPath, 'wx', fileMode), tempPath };
      } catch (error) {
        if (isCode(error, 'ENOENT') && attempt < createAttemptsMax) continue;
        if (isCode(error, 'ENOTDIR', 'EEXIST')) throw new BlobError('BAD_KEY', `${where}: a folder segment of the key is already a blob`);
        throw ioError(where, error);
      }
    }
  }

  /** Fills a temporary file, appends the footer, makes it durable and renames it over the key. */
  async #writeBlob(key: string, metadata: Metadata, where: string, fill: (sink: Sink) => Promise<void>): Promise<BlobInfo> {
    const { file, tempPath } = await this.#createTemp(key, where);
    let footer: Footer;
    try {
      const sink = createSink(file, this.#ioChunkBytes, where, this.#fsync);
      await fill(sink); // a source's own error passes through unchanged
      await sink.flush();
      footer = { size: sink.size(), crc32c: sink.crc(), metadata };
      const encoded = encodeFooter(footer);
      await guardIo(where, async () => {
        await writeFully(file, encoded, footer.size, where);
        await sink.earlySync();
        if (this.#fsync) await file.sync();
        await file.close();
      });
    } catch (error) {
      await file.close().catch(() => {});
      await rm(tempPath, { force: true });
      throw error;
    }
    try {
      await rename(tempPath, this.#pathOf(key));
    } catch (error) {
      await rm(tempPath, { force: true });
      if (isCode(error, 'EISDIR', 'ENOTEMPTY', 'EEXIST')) throw new BlobError('BAD_KEY', `${where}: the key is a folder holding other blobs`);
      throw ioError(where, error);
    }
    return { key, size: footer.size, crc32c: footer.crc32c, metadata: { ...metadata } };
  }

  /** Removes a blob file and then the folders it leaves empty; false when there was none. */
  async #removeBlob(key: string, where: string): Promise<boolean> {
    const path = this.#pathOf(key);
    try {
      await unlink(path);
    } catch (error) {
      if (isCode(error, 'ENOENT', 'ENOTDIR', 'EISDIR', 'EPERM')) return false;
      throw ioError(where, error);
    }
    for (let folder = dirname(path); folder.startsWith(this.#rootPath + sep); folder = dirname(folder)) {
      try {
        await rmdir(folder);
      } catch {
        break; // not empty (or already gone): folders above it are not empty either
      }
    }
    return true;
  }

  /** Visits the blob files under a prefix; `onHidden` sees the hidden files in visited folders. */
  async #walk(folderKey: string, prefix: string, onKey: (key: string) => void, onHidden?: (path: string) => Promise<void>): Promise<void> {
    let entries;
    try {
      entries = await readdir(folderKey === '' ? this.#rootPath : this.#pathOf(folderKey), { withFileTypes: true });
    } catch (error) {
      if (isCode(error, 'ENOENT', 'ENOTDIR')) return;
      throw ioError(`folder store list ${JSON.stringify(prefix)}`, error);
    }
    for (const entry of entries) {
      const key = folderKey === '' ? entry.name : `${folderKey}/${entry.name}`;
      if (entry.name.startsWith('.')) {
        if (onHidden !== undefined) await onHidden(join(entry.parentPath, entry.name));
      } else if (entry.isDirectory()) {
        const below = `${key}/`;
        if (below.startsWith(prefix) || prefix.startsWith(below)) await this.#walk(key, prefix, onKey, onHidden);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        onKey(key);
      }
    }
  }

  async #listKeys(prefix: string, onHidden?: (path: string) => Promise<void>): Promise<string[]> {
    const keys: string[] = [];
    const slash = prefix.lastIndexOf('/');
    await this.#walk(slash < 0 ? '' : prefix.slice(0, slash), prefix, (key) => keys.push(key), onHidden);
    // Plain code-unit order: for keys (ASCII only) it is GCS's byte order, so both stores list alike.
    return keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  /** Streams one source blob into the sink, checking the source's own CRC32C on the way; each piece is read into `nextBuffer()`. */
  async #copyVerified(source: string, nextBuffer: () => Buffer, sink: Sink, where: string): Promise<void> {
    const { file, footer } = await this.#openBlobOrFail(source, where);
    try {
      let crc = 0;
      for (let at = 0; at < footer.size; ) {
        const buffer = nextBuffer();
        const piece = buffer.subarray(0, Math.min(buffer.length, footer.size - at));
        await readFully(file, piece, at, where);
        crc = crc32c(piece, crc);
        await sink.writeBehind(piece);
        at += piece.length;
      }
      if (crc !== footer.crc32c) throw checksumMismatch(where, footer.crc32c, crc);
    } finally {
      await file.close();
    }
  }
}

/** Removes a writer's temporary file once it is older than `ageMsMin` (0: whatever its age). */
async function sweepTemp(path: string, ageMsMin: number): Promise<void> {
  if (!tempNamePattern.test(basename(path))) return;
  try {
    const info = await stat(path);
    if (Date.now() - info.mtimeMs >= ageMsMin) await rm(path, { force: true });
  } catch {
    // Gone already: its writer finished or another sweeper was first.
  }
}

/**
 * While a long blob is written, the disk is asked to take what is written so far every this many
 * bytes, so that its final fsync waits only for the tail.
 */
const earlySyncBytes = 64 * 1024 * 1024;

function createSink(file: FileHandle, bufferBytes: number, where: string, durable: boolean): Sink {
  const buffer = Buffer.allocUnsafe(bufferBytes);
  let buffered = 0;
  let position = 0;
  let crc = 0;
  // The write writeBehind started and has not waited for; its failure is thrown by the next call.
  let behind: Promise<void> = Promise.resolve();
  let behindFailure: unknown;
  let syncedUpTo = 0;
  let syncing: Promise<void> | undefined;

  /** Starts a datasync of what is written when another earlySyncBytes are; its failure is the final fsync's to find. */
  function syncEarly(): void {
    if (!durable || syncing !== undefined || position - syncedUpTo < earlySyncBytes) return;
    syncedUpTo = position;
    syncing = file.datasync().then(
      () => (syncing = undefined),
      () => (syncing = undefined),
    );
  }

  async function flush(): Promise<void> {
    await behind;
    if (behindFailure !== undefined) throw behindFailure;
    if (buffered === 0) return;
    await writeFully(file, buffer.subarray(0, buffered), position, where);
    position += buffered;
    buffered = 0;
  }

  return {
    async writeBehind(chunk: Uint8Array): Promise<void> {
      await flush();
      crc = crc32c(chunk, crc);
      behind = writeFully(file, chunk, position, where).then(syncEarly, (error: unknown) => {
        behindFailure = error;
      });
      position += chunk.length;
    },
    async write(chunk: Uint8Array): Promise<void> {
      crc = crc32c(chunk, crc);
      if (buffered + chunk.length <= buffer.length) {
        buffer.set(chunk, buffered);
        buffered += chunk.length;
        if (buffered === buffer.length) await flush();
        return;
      }
      await flush();
      if (chunk.length >= buffer.length) {
        await writeFully(file, chunk, position, where);
        position += chunk.length;
      } else {
        buffer.set(chunk, 0);
        buffered = chunk.length;
      }
    },
    flush,
    earlySync: () => syncing ?? Promise.resolve(),
    size: () => position + buffered,
    crc: () => crc,
  };
}

function encodeFooter(footer: Footer): Buffer {
  const json = Buffer.from(JSON.stringify({ version: footerVersion, size: footer.size, crc32c: footer.crc32c, metadata: footer.metadata }));
  if (json.length > footerJsonBytesMax) throw new BlobError('BAD_METADATA', `footer of ${json.length} bytes is larger than ${footerJsonBytesMax}`);
  const tail = Buffer.alloc(footerTailBytes);
  tail.writeUInt32BE(json.length, 0);
  tail.writeUInt32BE(crc32c(json), 4);
  footerMagic.copy(tail, 8);
  return Buffer.concat([json, tail]);
}

/** Reads and checks the footer of a blob file of `fileSize` bytes. */
async function readFooter(file: FileHandle, fileSize: number, where: string): Promise<Footer> {
  const damaged = (problem: string): never => {
    throw new BlobError('CHECKSUM_MISMATCH', `${where}: blob file footer damaged: ${problem}`);
  };
  if (fileSize < footerTailBytes) damaged(`file of ${fileSize} bytes is shorter than a footer`);
  const end = Buffer.allocUnsafe(Math.min(fileSize, footerReadBytes));
  await readFully(file, end, fileSize - end.length, where);
  const tail = end.subarray(end.length - footerTailBytes);
  if (!tail.subarray(8).equals(footerMagic)) damaged('no footer magic');
  const jsonBytes = tail.readUInt32BE(0);
  const jsonCrc = tail.readUInt32BE(4);
  if (jsonBytes > footerJsonBytesMax || jsonBytes + footerTailBytes > fileSize) damaged(`footer length ${jsonBytes} does not fit`);
  let json: Buffer;
  if (jsonBytes + footerTailBytes <= end.length) {
    json = end.subarray(end.length - footerTailBytes - jsonBytes, end.length - footerTailBytes);
  } else {
    json = Buffer.allocUnsafe(jsonBytes);
    await readFully(file, json, fileSize - footerTailBytes - jsonBytes, where);
  }
  if (crc32c(json) !== jsonCrc) damaged('footer CRC32C does not match');
  const parsed = JSON.parse(json.toString('utf8')) as { version?: unknown; size?: unknown; crc32c?: unknown; metadata?: unknown };
  if (parsed.version !== footerVersion) damaged(`unknown footer version ${String(parsed.version)}`);
  const { size, crc32c: crc, metadata } = parsed;
  if (typeof size !== 'number' || size !== fileSize - footerTailBytes - jsonBytes) damaged(`size ${String(size)} does not match the file`);
  if (typeof crc !== 'number' || !Number.isInteger(crc) || crc < 0 || crc > 0xffffffff) damaged('no CRC32C');
  if (typeof metadata !== 'object' || metadata === null) damaged('no metadata');
  return { size: size as number, crc32c: crc as number, metadata: metadata as Record<string, string> };
}

async function readFully(file: FileHandle, target: Uint8Array, position: number, where: string): Promise<void> {
  for (let done = 0; done < target.length; ) {
    const { bytesRead } = await guardIo(where, () => file.read(target, done, target.length - done, position + done));
    // Blob files are never changed in place once renamed, so a short file was damaged from outside.
    if (bytesRead === 0) throw new BlobError('CHECKSUM_MISMATCH', `${where}: blob file ends ${target.length - done} bytes early`);
    done += bytesRead;
  }
}

async function writeFully(file: FileHandle, source: Uint8Array, position: number, where: string): Promise<void> {
  for (let done = 0; done < source.length; ) {
    const { bytesWritten } = await guardIo(where, () => file.write(source, done, source.length - done, position + done));
    done += bytesWritten;
  }
}

/** Runs a file-system step, turning its failure into an IO BlobError that says where. */
async function guardIo<T>(where: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    throw ioError(where, error);
  }
}

function checksumMismatch(where: string, stored: number, read: number): BlobError {
  return new BlobError('CHECKSUM_MISMATCH', `${where}: checksum mismatch: stored CRC32C ${crc32cHex(stored)}, bytes read give ${crc32cHex(read)}`);
}

function isCode(error: unknown, ...codes: string[]): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && codes.includes(code);
}

function ioError(where: string, error: unknown): BlobError {
  if (error instanceof BlobError) return error;
  if (isCode(error, 'ENOSPC', 'EDQUOT')) return new BlobError('INSUFFICIENT_STORAGE', `${where}: the disk is full: ${(error as Error).message}`);
  return new BlobError('IO', `${where}: ${error instanceof Error ? error.message : String(error)}`);
}
