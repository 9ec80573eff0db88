/**
 * The GCS blob store: the blob under <key> is the object <prefix>/<key> of one bucket, reached
 * through @google-cloud/storage (real GCS with Application Default Credentials unless credentials
 * or a key file are given; or any JSON-API endpoint, such as our loopback server, via apiEndpoint).
 *
 * Atomicity: GCS makes an object visible only when its upload completes, and replaces objects
 * whole, so a blob is absent or whole. put() is one simple upload; putStream() a resumable upload
 * sent in uploadChunkBytes requests (the client keeps one chunk in memory, which bounds memory and
 * lets it resend that chunk after a failure). A putStream whose source fails never sends its last
 * chunk, so the session never completes and nothing appears under the key.
 *
 * CRC32C: on writes the client hashes what it sends and compares with the object GCS made
 * (validation 'crc32c'), and we compare our own CRC32C and size with the returned resource as well.
 * A whole read compares the bytes received with the CRC32C in the download's x-goog-hash header,
 * which is the object's crc32c field for the very generation the bytes came from (no race with a
 * concurrent overwrite). Ranged reads are not checked: callers check their chunks.
 *
 * Retries: the client's, with exponential backoff, for 408/429/5xx and connection resets. The
 * idempotency strategy is RetryAlways so uploads, compose and delete retry too; every write here
 * may safely run twice (same bytes or sources under the same name). Two client bugs (v7.22, with
 * teeny-request 9.0.0) are worked around:
 *  - A retried streaming download can throw ERR_STREAM_UNABLE_TO_PIPE as an unhandled rejection,
 *    which ends the process (googleapis/google-cloud-node#8670). Downloads therefore use a second
 *    client with auto-retry off, and retry here: before the first byte, or resuming with a ranged
 *    request pinned to the generation already being read.
 *  - node-fetch 2 (under teeny-request) never ends nor fails a body whose connection drops before
 *    its Content-Length: a download would wait forever. Downloads therefore give up on a response
 *    that sends nothing for readIdleMsMax, and resume.
 *  - When a resumable chunk fails and the status check that follows fails too, the client starts
 *    over from offset 0 and aborts ("The offset is lower than the number of bytes written"):
 *    Upload.continueUploading runs startUploading although getAndSetOffset already scheduled a
 *    retry. Status checks are therefore retried by gaxios itself, through the interceptor hook the
 *    client applies to every upload request.
 *
 * Compose: GCS takes at most 32 sources per call, so larger lists are composed in rounds into
 * intermediate objects under "<prefix>/.dcas-compose/<uuid>/" (no key starts with ".", so they are
 * never listed as blobs), deleted at the end.
 */

import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32c } from '@node-rs/crc32';
import { IdempotencyStrategy, RETRYABLE_ERR_FN_DEFAULT, Storage, type ApiError, type Bucket, type CRC32CValidator, type File, type StorageOptions } from '@google-cloud/storage';
import { checkedStore, type BlobBackend } from './checked.ts';
import { checkRangeWithin, crc32cFromBase64, crc32cHex, crc32cToBase64, keyProblem } from './keys.ts';
import { BlobError, type BlobInfo, type BlobStore, type DeletePrefixOptions, type ReadRange } from './types.ts';

export interface GcsRetryOptions {
  /** Retries after the first attempt (default 6). */
  retriesMax?: number;
  /**
   * Longest wait between attempts (default 32 s, at least 1 s). The client waits 2^n seconds plus
   * up to 1 s of jitter, capped by this. The floor is the client's: its upload retries start at
   * 1 s and refuse a cap below that. Tests use 1 s.
   */
  delayMsMax?: number;
  /** Growth of the wait per retry (default 2). */
  delayMultiplier?: number;
  /** Give up once an operation has taken this long (default 10 minutes). */
  totalMsMax?: number;
}

export interface GcsStoreOptions {
  bucket: string;
  /** Object name prefix; "dcas" and "dcas/" both put blob "a/b" at "dcas/a/b". Default none. */
  prefix?: string;
  /** A JSON-API endpoint other than Google's, e.g. "http://127.0.0.1:4443". */
  apiEndpoint?: string;
  /** Send credentials to apiEndpoint too (a proxy in front of real GCS). Default false. */
  authWithCustomEndpoint?: boolean;
  projectId?: string;
  /** A service account key file; without it and `credentials`, Application Default Credentials. */
  keyFilename?: string;
  credentials?: StorageOptions['credentials'];
  retry?: GcsRetryOptions;
  /** Bytes per resumable-upload request, a multiple of 256 KiB (default 8 MiB). */
  uploadChunkBytes?: number;
  /** Compose calls or deletes in flight at once (default 8). */
  parallelMax?: number;
  /** A download that receives nothing for this long is dropped and resumed (default 60 s). */
  readIdleMsMax?: number;
}

/** GCS's limit on sources per compose call. */
export const composeSourcesMax = 32;
const uploadChunkQuantum = 256 * 1024;
const contentType = 'application/octet-stream';

type Metadata = Record<string, string>;

/** The object resource fields this store reads. */
interface ObjectResource {
  name?: string;
  generation?: string | number;
  size?: string | number;
  crc32c?: string;
  metadata?: Record<string, unknown>;
}

export function createGcsStore(options: GcsStoreOptions): BlobStore {
  return checkedStore(new GcsBackend(options));
}

/** The options with their defaults filled in and checked. */
interface GcsSettings {
  uploadChunkBytes: number;
  delayMsMax: number;
  parallelMax: number;
  readIdleMsMax: number;
  objectPrefix: string;
  retriesMax: number;
  delayMultiplier: number;
  totalMsMax: number;
}

function settingsOf(options: GcsStoreOptions): GcsSettings {
  const retry = options.retry ?? {};
  const uploadChunkBytes = options.uploadChunkBytes ?? 8 << 20;
  if (!Number.isSafeInteger(uploadChunkBytes) || uploadChunkBytes <= 0 || uploadChunkBytes % uploadChunkQuantum !== 0) {
    throw new Error(`gcs store: uploadChunkBytes must be a positive multiple of ${uploadChunkQuantum}, got ${uploadChunkBytes}`);
  }
  const delayMsMax = retry.delayMsMax ?? 32_000;
  if (!(delayMsMax >= 1000)) throw new Error(`gcs store: retry.delayMsMax must be at least 1000 (the client's first upload retry waits 1 s), got ${delayMsMax}`);
  return {
    uploadChunkBytes,
    delayMsMax,
    parallelMax: options.parallelMax ?? 8,
    readIdleMsMax: options.readIdleMsMax ?? 60_000,
    objectPrefix: normalizePrefix(options.prefix ?? ''),
    retriesMax: retry.retriesMax ?? 6,
    delayMultiplier: retry.delayMultiplier ?? 2,
    totalMsMax: retry.totalMsMax ?? 600_000,
  };
}

function clientOptionsOf(options: GcsStoreOptions, settings: GcsSettings, autoRetry: boolean): StorageOptions {
  return {
    ...(options.apiEndpoint === undefined ? {} : { apiEndpoint: options.apiEndpoint, useAuthWithCustomEndpoint: options.authWithCustomEndpoint ?? false }),
    ...(options.projectId === undefined ? {} : { projectId: options.projectId }),
    ...(options.keyFilename === undefined ? {} : { keyFilename: options.keyFilename }),
    ...(options.credentials === undefined ? {} : { credentials: options.credentials }),
    retryOptions: {
      autoRetry,
      maxRetries: settings.retriesMax,
      maxRetryDelay: settings.delayMsMax / 1000,
      retryDelayMultiplier: settings.delayMultiplier,
      totalTimeout: settings.totalMsMax / 1000,
      idempotencyStrategy: IdempotencyStrategy.RetryAlways,
    },
    crc32cGenerator: nativeCrc32cValidator,
  };
}

/** The GCS store's work once checkedStore has checked the arguments. */
class GcsBackend implements BlobBackend {
  readonly kind = 'gcs';
  readonly #settings: GcsSettings;
  readonly #bucket: Bucket;
  /** Downloads only: the client's stream retries can crash the process (see the top of this file). */
  readonly #downloadBucket: Bucket;
  readonly #location: string;

  constructor(options: GcsStoreOptions) {
    this.#settings = settingsOf(options);
    this.#bucket = new Storage(clientOptionsOf(options, this.#settings, true)).bucket(options.bucket);
    this.#downloadBucket = new Storage(clientOptionsOf(options, this.#settings, false)).bucket(options.bucket);
    this.#location = `gs://${options.bucket}/${this.#settings.objectPrefix}`;
  }

  describe(action: string, key: string): string {
    return `gcs store ${action} ${JSON.stringify(key)} (${this.#location}${key})`;
  }

  describePrefix(action: string, prefix: string): string {
    return `gcs store ${action} ${JSON.stringify(prefix)} (${this.#location}${prefix})`;
  }

  /** Writes a whole blob (arguments already checked by checkedStore). */
  async put(key: string, data: Uint8Array, metadata: Metadata, where: string): Promise<BlobInfo> {
    const file = this.#bucket.file(this.#nameOf(key));
    try {
      await file.save(Buffer.from(data.buffer, data.byteOffset, data.byteLength), { resumable: false, validation: 'crc32c', metadata: { contentType, metadata } });
    } catch (error) {
      throw toBlobError(where, error);
    }
    return this.#checkWritten(key, file.metadata as ObjectResource, data.byteLength, crc32c(data), where);
  }

  async putStream(key: string, source: AsyncIterable<Uint8Array>, metadata: Metadata, where: string): Promise<BlobInfo> {
    let size = 0;
    let crc = 0;
    let sourceFailure: { error: unknown } | undefined;
    async function* counted(): AsyncGenerator<Buffer> {
      try {
        for await (const chunk of source) {
          if (!(chunk instanceof Uint8Array)) throw new BlobError('IO', `${where}: the source yielded a ${typeof chunk}, not a Uint8Array`);
          crc = crc32c(chunk, crc);
          size += chunk.length;
          yield Buffer.from(chunk); // a copy: the client holds chunks until GCS acknowledges them
        }
      } catch (error) {
        sourceFailure = { error };
        throw error;
      }
    }
    const file = this.#bucket.file(this.#nameOf(key));
    retryStatusChecks(file, this.#settings.retriesMax, this.#settings.delayMsMax);
    const upload = file.createWriteStream({ resumable: true, chunkSize: this.#settings.uploadChunkBytes, validation: 'crc32c', metadata: { contentType, metadata } });
    try {
      await pipeline(Readable.from(counted(), { highWaterMark: 1 }), upload);
    } catch (error) {
      if (sourceFailure !== undefined) throw sourceFailure.error;
      throw toBlobError(where, error);
    }
    return this.#checkWritten(key, file.metadata as ObjectResource, size, crc, where);
  }

  async get(key: string, where: string): Promise<Uint8Array> {
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of this.#download(key, undefined, where)) {
      chunks.push(chunk);
      size += chunk.length;
    }
    return Buffer.concat(chunks, size);
  }

  getStream(key: string, range: ReadRange | undefined, where: string): AsyncIterable<Uint8Array> {
    return range === undefined ? this.#download(key, undefined, where) : this.#readRange(key, range, where);
  }

  async getRange(key: string, range: ReadRange, where: string): Promise<Uint8Array> {
    const data = Buffer.allocUnsafe(range.end - range.start);
    let at = 0;
    for await (const chunk of this.#readRange(key, range, where)) {
      data.set(chunk, at);
      at += chunk.length;
    }
    return data;
  }

  async stat(key: string, where: string): Promise<BlobInfo | undefined> {
    try {
      const [resource] = await this.#bucket.file(this.#nameOf(key)).getMetadata();
      return infoOf(key, resource as ObjectResource, where);
    } catch (error) {
      if (statusOf(error) === 404) return undefined;
      throw toBlobError(where, error);
    }
  }

  async list(prefix: string, where: string): Promise<string[]> {
    const { objectPrefix } = this.#settings;
    const keys: string[] = [];
    let pageToken: string | undefined;
    try {
      for (;;) {
        const [files, next] = await this.#bucket.getFiles({ prefix: objectPrefix + prefix, autoPaginate: false, ...(pageToken === undefined ? {} : { pageToken }) });
        for (const file of files) {
          const key = file.name.slice(objectPrefix.length);
          if (keyProblem(key) === '') keys.push(key); // skips compose intermediates and foreign objects
        }
        const nextToken = (next as { pageToken?: string } | null | undefined)?.pageToken;
        if (nextToken === undefined || nextToken === '') break;
        if (nextToken === pageToken) throw new BlobError('IO', `${where}: the server returned the same page token twice`);
        pageToken = nextToken;
      }
    } catch (error) {
      throw toBlobError(where, error);
    }
    return keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }

  async delete(key: string, where: string): Promise<void> {
    try {
      await this.#bucket.file(this.#nameOf(key)).delete({ ignoreNotFound: true });
    } catch (error) {
      throw toBlobError(where, error);
    }
  }

  async deletePrefix(prefix: string, _options: DeletePrefixOptions | undefined, where: string): Promise<number> {
    let removed = 0;
    await forEachLimited(await this.list(prefix, where), this.#settings.parallelMax, async (key) => {
      try {
        await this.#bucket.file(this.#nameOf(key)).delete();
        removed++;
      } catch (error) {
        if (statusOf(error) !== 404) throw toBlobError(this.describe('deletePrefix: delete', key), error); // 404: someone else removed it
      }
    });
    return removed;
  }

  async compose(sources: readonly string[], destination: string, metadata: Metadata, where: string): Promise<BlobInfo> {
    if (sources.length === 0) return this.put(destination, new Uint8Array(0), metadata, where); // GCS wants 1 to 32 sources
    const { objectPrefix, parallelMax } = this.#settings;
    const scratch = `${objectPrefix}.dcas-compose/${randomUUID()}/`;
    const intermediates: string[] = [];
    try {
      let layer = sources.map((source) => this.#nameOf(source));
      for (let round = 1; layer.length > composeSourcesMax; round++) {
        const groups = splitEvenly(layer, Math.ceil(layer.length / composeSourcesMax));
        const next: string[] = groups.map((_, index) => `${scratch}${round}-${index}`);
        intermediates.push(...next);
        await forEachLimited(groups.map((group, index) => ({ group, target: next[index] })), parallelMax, ({ group, target }) => this.#composeCall(group, target, {}));
        layer = next;
      }
      return infoOf(destination, await this.#composeCall(layer, this.#nameOf(destination), metadata), where);
    } catch (error) {
      throw toBlobError(where, error);
    } finally {
      await forEachLimited(intermediates, parallelMax, (name) => this.#bucket.file(name).delete({ ignoreNotFound: true }).then(() => {})).catch(() => {});
    }
  }

  #nameOf(key: string): string {
    return this.#settings.objectPrefix + key;
  }

  #backoffMs(attempt: number): number {
    const { delayMsMax, delayMultiplier } = this.#settings;
    return Math.min(delayMsMax, 250 * delayMultiplier ** attempt) * (0.5 + Math.random() / 2);
  }

  /** Checks what GCS says it stored against what we sent; removes that generation if they differ. */
  async #checkWritten(key: string, resource: ObjectResource, size: number, crc: number, where: string): Promise<BlobInfo> {
    const info = infoOf(key, resource, where);
    if (info.size === size && info.crc32c === crc) return info;
    await this.#bucket.file(this.#nameOf(key)).delete({ ifGenerationMatch: resource.generation, ignoreNotFound: true }).catch(() => {});
    throw new BlobError('CHECKSUM_MISMATCH', `${where}: GCS stored ${info.size} bytes with CRC32C ${crc32cHex(info.crc32c)}, we sent ${size} bytes with CRC32C ${crc32cHex(crc)}`);
  }

  /**
   * Downloads a blob or a range of it; a whole download is checked against the object's CRC32C.
   * Transient failures are retried; after some bytes arrived, the rest is asked for by range from
   * the same generation, so the bytes and the CRC32C always belong to one object version.
   */
  async *#download(key: string, range: ReadRange | undefined, where: string): AsyncGenerator<Uint8Array> {
    const start = range?.start ?? 0;
    let end = range?.end; // exclusive; for a whole read, known from the first response
    let position = start;
    let crc = 0;
    let first: DownloadFacts | undefined;
    for (let attempt = 0; end === undefined || position < end; attempt++) {
      const file = this.#downloadBucket.file(this.#nameOf(key), first === undefined ? {} : { generation: Number(first.generation) });
      const stream = range === undefined && first === undefined
        ? file.createReadStream({ validation: 'crc32c' })
        : file.createReadStream({ start: position, ...(end === undefined ? {} : { end: end - 1 }), validation: false }); // GCS ranges end inclusive
      let facts: DownloadFacts | undefined;
      stream.on('response', (response: { headers?: Record<string, unknown> }) => {
        facts = downloadFacts(response.headers ?? {});
      });
      try {
        for await (const chunk of withIdleLimit(stream, this.#settings.readIdleMsMax)) {
          if (first === undefined && facts !== undefined) {
            first = facts;
            if (range === undefined) end = facts.size;
          }
          if (range === undefined) crc = crc32c(chunk, crc);
          position += chunk.length;
          yield chunk;
        }
        if (first === undefined && facts !== undefined) first = facts; // an empty body
        break;
      } catch (error) {
        if ((error as { code?: unknown }).code === 'CONTENT_DOWNLOAD_MISMATCH') {
          const stored = first?.crc32c ?? facts?.crc32c;
          throw new BlobError('CHECKSUM_MISMATCH', `${where}: checksum mismatch: the bytes received do not match the stored CRC32C ${stored === undefined ? '(none sent)' : crc32cHex(stored)}`);
        }
        if (first !== undefined && statusOf(error) === 404) throw new BlobError('IO', `${where}: the blob was replaced or deleted while being read`);
        if (!isTransient(error) || attempt >= this.#settings.retriesMax) throw toBlobError(where, error);
        await sleep(this.#backoffMs(attempt));
      }
    }
    if (range === undefined) {
      const stored = first?.crc32c;
      if (stored === undefined) throw new BlobError('CHECKSUM_MISMATCH', `${where}: the download carried no CRC32C to check against`);
      if (stored !== crc) throw new BlobError('CHECKSUM_MISMATCH', `${where}: checksum mismatch: stored CRC32C ${crc32cHex(stored)}, bytes read give ${crc32cHex(crc)}`);
    } else if (position !== range.end) {
      throw new BlobError('BAD_RANGE', `${where}: range [${range.start}, ${range.end}) runs past the end of the blob (${first?.size ?? 'fewer'} bytes)`);
    }
  }

  /** A range of zero bytes needs no download, only the blob's existence and size. */
  async #checkEmptyRange(key: string, range: ReadRange, where: string): Promise<void> {
    const info = await this.stat(key, where);
    if (info === undefined) throw new BlobError('NOT_FOUND', `${where}: no such blob`);
    checkRangeWithin(range, info.size, where);
  }

  async *#readRange(key: string, range: ReadRange, where: string): AsyncGenerator<Uint8Array> {
    if (range.start === range.end) return await this.#checkEmptyRange(key, range, where);
    yield* this.#download(key, range, where);
  }

  /** One compose call: at most 32 object names into `target`, with the destination's metadata. */
  async #composeCall(names: readonly string[], target: string, metadata: Metadata): Promise<ObjectResource> {
    // bucket.combine() would drop custom metadata; the JSON API's compose takes a destination resource.
    const [body] = await this.#bucket.file(target).request({
      method: 'POST',
      uri: '/compose',
      json: { destination: { contentType, metadata }, sourceObjects: names.map((name) => ({ name })) },
    });
    return body as ObjectResource;
  }
}

/** The CRC32C validator the client uses for uploads and downloads, on @node-rs/crc32 (native, fast). */
function nativeCrc32cValidator(): CRC32CValidator {
  let value = 0;
  return {
    update: (data: Buffer) => {
      value = crc32c(data, value);
    },
    validate: (expected: string) => expected === crc32cToBase64(value),
    toString: () => crc32cToBase64(value),
  };
}

function infoOf(key: string, resource: ObjectResource, where: string): BlobInfo {
  const size = Number(resource.size);
  const crc = typeof resource.crc32c === 'string' ? crc32cFromBase64(resource.crc32c) : undefined;
  if (!Number.isSafeInteger(size) || size < 0) throw new BlobError('IO', `${where}: object resource has no valid size (${String(resource.size)})`);
  if (crc === undefined) throw new BlobError('IO', `${where}: object resource has no valid crc32c (${String(resource.crc32c)})`);
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(resource.metadata ?? {})) {
    if (value !== null && value !== undefined) metadata[name] = String(value);
  }
  return { key, size, crc32c: crc, metadata };
}

/** What a download's response headers say about the object version being read. */
interface DownloadFacts {
  generation: string | undefined;
  /** From x-goog-hash ("crc32c=<b64>,md5=<b64>"). */
  crc32c: number | undefined;
  /** The whole object's size. */
  size: number | undefined;
}

function downloadFacts(headers: Record<string, unknown>): DownloadFacts {
  const text = (name: string): string => {
    const value = headers[name];
    return Array.isArray(value) ? value.join(',') : typeof value === 'string' ? value : '';
  };
  let crc: number | undefined;
  for (const pair of text('x-goog-hash').split(',')) {
    const equals = pair.indexOf('=');
    if (pair.slice(0, equals).trim() === 'crc32c') crc = crc32cFromBase64(pair.slice(equals + 1).trim());
  }
  const size = Number(text('x-goog-stored-content-length') || (/\/(\d+)$/.exec(text('content-range'))?.[1] ?? text('content-length')));
  return { generation: text('x-goog-generation') || undefined, crc32c: crc, size: Number.isSafeInteger(size) ? size : undefined };
}

/**
 * Lets gaxios retry the status checks of this file's resumable uploads ("Content-Range: bytes *\/*"),
 * and nothing else: the client's own recovery breaks when a status check fails (top of this file).
 */
function retryStatusChecks(file: File, retriesMax: number, delayMsMax: number): void {
  const retryConfig = {
    retryDelay: 250,
    maxRetryDelay: delayMsMax,
    shouldRetry: (error: { config?: { headers?: unknown; retryConfig?: { currentRetryAttempt?: number } }; response?: { status?: number } }): boolean => {
      const headers = (error.config?.headers ?? {}) as Record<string, unknown>;
      const range = Object.entries(headers).find(([name]) => name.toLowerCase() === 'content-range')?.[1];
      const status = error.response?.status;
      const transient = status === undefined || status === 408 || status === 429 || status >= 500;
      return range === 'bytes */*' && transient && (error.config?.retryConfig?.currentRetryAttempt ?? 0) < retriesMax;
    },
  };
  file.interceptors.push({ request: (requestOptions) => ({ ...requestOptions, retryConfig }) as unknown as ReturnType<File['interceptors'][number]['request']> });
}

/** The stream's chunks, failing with a transient ETIMEDOUT when one takes longer than `idleMsMax` to come. */
async function* withIdleLimit(stream: Readable, idleMsMax: number): AsyncGenerator<Buffer> {
  const chunks = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const idle = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(Object.assign(new Error(`no data for ${idleMsMax} ms`), { code: 'ETIMEDOUT' })), idleMsMax);
      });
      // Racing also handles the abandoned next() if it rejects once the stream is destroyed below.
      const next = await Promise.race([chunks.next(), idle]).finally(() => clearTimeout(timer));
      if (next.done === true) return;
      yield next.value;
    }
  } finally {
    stream.destroy();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function normalizePrefix(prefix: string): string {
  if (prefix.startsWith('/')) throw new Error(`gcs store: prefix ${JSON.stringify(prefix)} must not start with "/"`);
  if (Buffer.byteLength(prefix) > 200) throw new Error('gcs store: prefix longer than 200 bytes');
  return prefix === '' || prefix.endsWith('/') ? prefix : `${prefix}/`;
}

function statusOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

const connectionCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ERR_STREAM_PREMATURE_CLOSE', 'UND_ERR_SOCKET']);

function toBlobError(where: string, error: unknown): BlobError {
  if (error instanceof BlobError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error && error.message !== '' ? error.message : String(error);
  const text = serverMessage(message).replace(/\s+/g, ' ').slice(0, 500);
  if (code === 404) return new BlobError('NOT_FOUND', `${where}: not found (${text})`);
  if (code === 416) return new BlobError('BAD_RANGE', `${where}: range runs past the end of the blob`);
  if (code === 'CONTENT_DOWNLOAD_MISMATCH' || code === 'FILE_NO_UPLOAD') return new BlobError('CHECKSUM_MISMATCH', `${where}: checksum mismatch: ${text}`);
  if (isTransient(error)) return new BlobError('UNAVAILABLE', `${where}: ${text}`);
  return new BlobError('IO', `${where}: ${text}`);
}

/** 408, 429, 5xx, a dropped connection, or the client's own "retries ran out". */
function isTransient(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return (
    RETRYABLE_ERR_FN_DEFAULT(error as ApiError) ||
    (typeof code === 'string' && connectionCodes.has(code)) ||
    /Retry (limit|total time limit) exceeded|socket hang up|ECONNREFUSED|ECONNRESET|premature close/i.test(message)
  );
}

/** The message inside a JSON API error document, when the client passed the whole body on. */
function serverMessage(message: string): string {
  if (!message.startsWith('{')) return message;
  try {
    const parsed = JSON.parse(message) as { error?: { message?: unknown } };
    return typeof parsed.error?.message === 'string' ? parsed.error.message : message;
  } catch {
    return message;
  }
}

/** Splits `items` into `count` runs in order, their lengths differing by at most one. */
function splitEvenly<T>(items: readonly T[], count: number): T[][] {
  const runs: T[][] = [];
  for (let run = 0, at = 0; run < count; run++) {
    const length = Math.floor(items.length / count) + (run < items.length % count ? 1 : 0);
    runs.push(items.slice(at, at + length));
    at += length;
  }
  return runs;
}

/** Runs `step` over `items` with at most `limit` in flight; the first failure rejects (after the others settle). */
async function forEachLimited<T>(items: readonly T[], limit: number, step: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (next < items.length && failure === undefined) {
      const item = items[next++];
      try {
        await step(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure !== undefined) throw failure.error;
}
