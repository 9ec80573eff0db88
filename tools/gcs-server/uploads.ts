/**
 * Object uploads, the three ways the JSON API takes them on POST /upload/storage/v1/b/:bucket/o:
 *   uploadType=media      the body is the object's bytes;
 *   uploadType=multipart  a multipart/related body: a JSON resource part, then the bytes;
 *   uploadType=resumable  a session: POST answers a Location (the session URI); then PUTs carry
 *                         byte ranges (Content-Range "bytes first-last/total", total "*" until the
 *                         last), answered 308 with "Range: bytes=0-n" while incomplete and 200 with
 *                         the object at the end; "bytes *\/*" asks how much arrived; DELETE cancels.
 * Bytes go to an incoming file as they arrive, with their CRC32C and MD5; a request that breaks off
 * leaves the session as it was before it. An X-Goog-Hash header, when sent, is checked at the end.
 */

import { createHash, randomUUID, type Hash } from 'node:crypto';
import { open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { crc32c } from '@node-rs/crc32';
import { HttpError, badRequest, drain, notFound, readBody, readJson, sendError, sendJson } from './http.ts';
import { crc32cToBase64, writeFully, type ObjectResource, type ObjectStore } from './objects.ts';

export interface UploadLimits {
  /** Largest multipart body (it is parsed in memory). */
  multipartBytesMax: number;
  /** Largest object any upload may create. */
  objectBytesMax: number;
  /** Open resumable sessions; the least recently used goes first when a new one needs room. */
  sessionsMax: number;
  /** A session untouched this long is dropped. */
  sessionIdleMsMax: number;
}

/** How an object resource is answered (with links that name this server). */
export type Present = (resource: ObjectResource) => unknown;

export interface Uploads {
  /** POST /upload/storage/v1/b/:bucket/o */
  insert(req: IncomingMessage, res: ServerResponse, bucket: string, query: URLSearchParams, present: Present): Promise<void>;
  /** PUT or DELETE on a session URI (…/o?uploadType=resumable&upload_id=…). */
  session(req: IncomingMessage, res: ServerResponse, uploadId: string, present: Present): Promise<void>;
  /** Removes every session's incoming file. */
  close(): Promise<void>;
}

interface Session {
  id: string;
  bucket: string;
  name: string;
  contentType: string;
  metadata: Record<string, string> | undefined;
  ifGenerationMatch: string | undefined;
  path: string;
  /** Bytes persisted so far, and their hashes. */
  received: number;
  crc: number;
  md5: Hash;
  busy: boolean;
  touchedMs: number;
  finished: ObjectResource | undefined;
}

/** What a PUT's Content-Range asks: a status check, or bytes from `first` (to `last`, or to the body's end). */
type ContentRange =
  | { kind: 'status'; total: number | undefined }
  | { kind: 'bytes'; first: number; last: number | 'rest'; total: number | undefined };

const resumeIncomplete = 308;
const jsonBytesMax = 1 << 20;

export function createUploads(store: ObjectStore, limits: UploadLimits): Uploads {
  return new SessionUploads(store, limits);
}

/** Uploads into `store`, with the open resumable sessions as the one piece of state. */
class SessionUploads implements Uploads {
  readonly #store: ObjectStore;
  readonly #limits: UploadLimits;
  readonly #sessions = new Map<string, Session>();

  constructor(store: ObjectStore, limits: UploadLimits) {
    this.#store = store;
    this.#limits = limits;
  }

  async insert(req: IncomingMessage, res: ServerResponse, bucket: string, query: URLSearchParams, present: Present): Promise<void> {
    if (this.#store.bucket(bucket) === undefined) throw notFound(`The specified bucket does not exist: ${bucket}`);
    const uploadType = query.get('uploadType') ?? 'media';
    if (uploadType === 'resumable') return this.#startSession(req, res, bucket, query);
    if (uploadType === 'media') {
      const contentType = headerText(req, 'content-type') ?? 'application/octet-stream';
      const resource = await this.#oneShot(req, bucket, query.get('name') ?? '', contentType, undefined, req as AsyncIterable<Buffer>, query);
      return sendJson(res, 200, present(resource));
    }
    if (uploadType === 'multipart') {
      const { resource: fields, data, dataContentType } = parseMultipart(req, await readBody(req, this.#limits.multipartBytesMax));
      const name = query.get('name') ?? (typeof fields.name === 'string' ? fields.name : '');
      const contentType = typeof fields.contentType === 'string' ? fields.contentType : dataContentType;
      const resource = await this.#oneShot(req, bucket, name, contentType, stringMap(fields.metadata), data, query);
      return sendJson(res, 200, present(resource));
    }
    throw badRequest(`Invalid uploadType: ${uploadType}`);
  }

  async session(req: IncomingMessage, res: ServerResponse, uploadId: string, present: Present): Promise<void> {
    const session = this.#sessions.get(uploadId);
    if (session === undefined) throw notFound(`No upload session ${uploadId} (expired, cancelled or never started)`);
    if (req.method === 'DELETE') {
      await drain(req);
      await this.#dropSession(session);
      return sendError(res, 499, 'clientClosedRequest', 'Upload cancelled');
    }
    if (req.method !== 'PUT') throw new HttpError(405, 'methodNotAllowed', `${req.method} is not allowed on an upload session`);
    // The client sends one request at a time; a second one means an earlier one is still draining.
    if (session.busy) throw new HttpError(503, 'backendError', `upload session ${uploadId} is busy with another request`);
    session.busy = true;
    try {
      await this.#put(req, res, session, present);
    } finally {
      session.busy = false;
      session.touchedMs = Date.now();
    }
  }

  async close(): Promise<void> {
    for (const session of [...this.#sessions.values()]) await this.#dropSession(session);
  }

  async #dropSession(session: Session): Promise<void> {
    this.#sessions.delete(session.id);
    if (session.finished === undefined) await rm(session.path, { force: true });
  }

  async #makeRoom(): Promise<void> {
    const now = Date.now();
    for (const session of this.#sessions.values()) {
      if (!session.busy && now - session.touchedMs > this.#limits.sessionIdleMsMax) await this.#dropSession(session);
    }
    while (this.#sessions.size >= this.#limits.sessionsMax) {
      const oldest = [...this.#sessions.values()].filter((s) => !s.busy).sort((a, b) => a.touchedMs - b.touchedMs)[0];
      if (oldest === undefined) throw new HttpError(429, 'rateLimitExceeded', `more than ${this.#limits.sessionsMax} resumable uploads in progress`);
      await this.#dropSession(oldest);
    }
  }

  async #startSession(req: IncomingMessage, res: ServerResponse, bucket: string, query: URLSearchParams): Promise<void> {
    const body = await readJson(req, jsonBytesMax);
    const name = query.get('name') ?? (typeof body.name === 'string' ? body.name : '');
    checkObjectName(name);
    const declaredBytes = Number(req.headers['x-upload-content-length'] ?? 0);
    if (declaredBytes > this.#limits.objectBytesMax) throw tooLarge(this.#limits.objectBytesMax);
    await this.#makeRoom();
    const id = randomUUID().replaceAll('-', '');
    const session: Session = {
      id, bucket, name,
      contentType: headerText(req, 'x-upload-content-type') ?? (typeof body.contentType === 'string' ? body.contentType : 'application/octet-stream'),
      metadata: stringMap(body.metadata),
      ifGenerationMatch: query.get('ifGenerationMatch') ?? undefined,
      path: this.#store.incomingPath(), received: 0, crc: 0, md5: createHash('md5'), busy: false, touchedMs: Date.now(), finished: undefined,
    };
    await writeFile(session.path, new Uint8Array(0));
    this.#sessions.set(id, session);
    const base = `http://${req.headers.host ?? 'localhost'}`;
    const location = `${base}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
    res.writeHead(200, { Location: location, 'X-GUploader-UploadID': id, 'Content-Length': 0 });
    res.end();
  }

  async #finish(session: Session, req: IncomingMessage): Promise<ObjectResource> {
    const md5Base64 = session.md5.copy().digest('base64');
    try {
      checkClientHashes(req, session.crc, md5Base64);
    } catch (error) {
      await this.#dropSession(session); // GCS ends a session whose bytes do not match the client's hashes
      throw error;
    }
    const object = { contentType: session.contentType, metadata: session.metadata, size: session.received, crc32c: session.crc, md5Base64 };
    session.finished = await this.#store.commit(session.bucket, session.name, session.path, object, session.ifGenerationMatch);
    return session.finished;
  }

  /** One PUT on a session: a status check, or bytes, possibly the last ones. */
  async #put(req: IncomingMessage, res: ServerResponse, session: Session, present: Present): Promise<void> {
    const range = parseContentRange(req.headers['content-range']);
    if (session.finished !== undefined) {
      await drain(req);
      return sendJson(res, 200, present(session.finished));
    }
    if (range.kind === 'bytes') {
      if (range.first > session.received) {
        throw badRequest(`Invalid request. The server has ${session.received} bytes of this upload, but the Content-Range starts at ${range.first}`);
      }
      await this.#receiveRange(req, session, range);
    } else {
      await drain(req);
    }
    const total = range.total ?? (range.kind === 'bytes' && range.last === 'rest' ? session.received : undefined);
    if (total !== undefined && session.received > total) throw badRequest(`Invalid request. ${session.received} bytes received but the upload declares ${total}`);
    if (total !== undefined && session.received === total) return sendJson(res, 200, present(await this.#finish(session, req)));
    const headers: Record<string, string> = { 'Content-Length': '0' };
    if (session.received > 0) headers.Range = `bytes=0-${session.received - 1}`;
    res.writeHead(resumeIncomplete, headers);
    res.end();
  }

  /** Appends a PUT's bytes to the session, all or nothing. Bytes the session already has are skipped. */
  async #receiveRange(req: IncomingMessage, session: Session, range: { first: number; last: number | 'rest' }): Promise<void> {
    const expected = range.last === 'rest' ? undefined : range.last - range.first + 1;
    if (expected !== undefined && expected < 0) throw badRequest(`Invalid Content-Range: last byte ${range.last} before first ${range.first}`);
    const file = await open(session.path, 'r+');
    const hashes = { crc: session.crc, md5: session.md5.copy(), received: session.received };
    try {
      const bodyBytes = await appendBody(req, file, range.first, hashes, this.#limits.objectBytesMax);
      if (expected !== undefined && bodyBytes !== expected) throw badRequest(`Invalid request. The body has ${bodyBytes} bytes but the Content-Range says ${expected}`);
      session.received = hashes.received;
      session.crc = hashes.crc;
      session.md5 = hashes.md5;
    } catch (error) {
      await file.truncate(session.received).catch(() => {});
      throw error;
    } finally {
      await file.close();
    }
  }

  async #oneShot(req: IncomingMessage, bucket: string, name: string, contentType: string, metadata: Record<string, string> | undefined, data: AsyncIterable<Buffer> | Buffer, query: URLSearchParams): Promise<ObjectResource> {
    checkObjectName(name);
    const path = this.#store.incomingPath();
    const file = await open(path, 'w');
    const hashes = { crc: 0, md5: createHash('md5'), received: 0 };
    try {
      await appendBody(Buffer.isBuffer(data) ? [data] : data, file, 0, hashes, this.#limits.objectBytesMax);
      await file.close();
      const md5Base64 = hashes.md5.digest('base64');
      checkClientHashes(req, hashes.crc, md5Base64);
      const object = { contentType, metadata, size: hashes.received, crc32c: hashes.crc, md5Base64 };
      return await this.#store.commit(bucket, name, path, object, query.get('ifGenerationMatch') ?? undefined);
    } catch (error) {
      await file.close().catch(() => {});
      await rm(path, { force: true });
      throw error;
    }
  }
}

/**
 * Writes body bytes from offset `first` of the object; bytes before `hashes.received` are already
 * stored and are skipped. Returns the body's length.
 */
async function appendBody(body: AsyncIterable<Buffer> | Iterable<Buffer>, file: FileHandle, first: number, hashes: { crc: number; md5: Hash; received: number }, objectBytesMax: number): Promise<number> {
  let bodyBytes = 0;
  let skip = hashes.received - first;
  for await (const chunk of body) {
    bodyBytes += chunk.length;
    let piece = chunk;
    if (skip > 0) {
      const skipped = Math.min(skip, piece.length);
      piece = piece.subarray(skipped);
      skip -= skipped;
    }
    if (piece.length === 0) continue;
    if (hashes.received + piece.length > objectBytesMax) throw tooLarge(objectBytesMax);
    await writeFully(file, piece, hashes.received);
    hashes.received += piece.length;
    hashes.crc = crc32c(piece, hashes.crc);
    hashes.md5.update(piece);
  }
  return bodyBytes;
}

function parseContentRange(header: string | undefined): ContentRange {
  // No Content-Range: the body is the whole object.
  if (header === undefined) return { kind: 'bytes', first: 0, last: 'rest', total: undefined };
  const match = /^bytes (?:(\*)|(\d+)-(\d+|-1|\*))\/(\d+|\*)$/.exec(header.trim());
  if (match === null) throw badRequest(`Invalid Content-Range header: ${header}`);
  const total = match[4] === '*' ? undefined : Number(match[4]);
  if (match[1] === '*') return { kind: 'status', total };
  const last = match[3] === '*' ? 'rest' : Number(match[3]);
  return { kind: 'bytes', first: Number(match[2]), last, total };
}

interface MultipartUpload {
  resource: Record<string, unknown>;
  data: Buffer;
  dataContentType: string;
}

/** Splits a multipart/related body: a JSON part (the object resource), then the media part. */
function parseMultipart(req: IncomingMessage, body: Buffer): MultipartUpload {
  const contentType = req.headers['content-type'] ?? '';
  const boundary = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  if (!contentType.toLowerCase().startsWith('multipart/related') || boundary === null) throw badRequest('multipart upload without a multipart/related boundary');
  const delimiter = Buffer.from(`--${boundary[1] ?? boundary[2]}`);
  const parts: { headers: string; body: Buffer }[] = [];
  let at = body.indexOf(delimiter);
  while (at >= 0) {
    at += delimiter.length;
    if (body.subarray(at, at + 2).toString() === '--') break; // the closing delimiter
    const headersEnd = body.indexOf('\r\n\r\n', at);
    if (headersEnd < 0) break;
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), headersEnd + 4);
    if (next < 0) throw badRequest('multipart body ends inside a part');
    parts.push({ headers: body.subarray(at, headersEnd).toString('latin1'), body: body.subarray(headersEnd + 4, next) });
    at = next + 2;
  }
  if (parts.length !== 2) throw badRequest(`multipart upload has ${parts.length} parts, expected 2 (resource, media)`);
  let resource: unknown;
  try {
    resource = parts[0].body.length === 0 ? {} : JSON.parse(parts[0].body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'parseError', 'the multipart resource part is not JSON');
  }
  if (typeof resource !== 'object' || resource === null) throw badRequest('the multipart resource part is not a JSON object');
  const dataContentType = /content-type:\s*([^\r\n]+)/i.exec(parts[1].headers)?.[1] ?? 'application/octet-stream';
  return { resource: resource as Record<string, unknown>, data: parts[1].body, dataContentType };
}

/** Checks an X-Goog-Hash header ("crc32c=<b64>,md5=<b64>"), when the client sent one. */
function checkClientHashes(req: IncomingMessage, crc: number, md5Base64: string): void {
  const header = headerText(req, 'x-goog-hash');
  if (header === undefined) return;
  for (const pair of header.split(',')) {
    const equals = pair.indexOf('=');
    const kind = pair.slice(0, equals).trim().toLowerCase();
    const value = pair.slice(equals + 1).trim();
    const ours = kind === 'crc32c' ? crc32cToBase64(crc) : kind === 'md5' ? md5Base64 : undefined;
    if (ours !== undefined && ours !== value) {
      throw badRequest(`Provided ${kind.toUpperCase()} "${value}" doesn't match calculated ${kind.toUpperCase()} "${ours}".`);
    }
  }
}

export function checkObjectName(name: string): void {
  if (name === '') throw new HttpError(400, 'required', 'Required: object name');
  if (Buffer.byteLength(name) > 1024) throw badRequest('The object name is longer than 1024 bytes');
  if (name === '.' || name === '..' || /[\r\n]/.test(name)) throw badRequest(`Invalid object name: ${JSON.stringify(name)}`);
}

function headerText(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

function stringMap(value: unknown): Record<string, string> | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const map: Record<string, string> = {};
  for (const [key, entry] of Object.entries(value)) {
    if (entry !== null && entry !== undefined) map[key] = String(entry);
  }
  return map;
}

function tooLarge(bytesMax: number): HttpError {
  return new HttpError(413, 'uploadTooLarge', `object larger than this server's limit of ${bytesMax} bytes`);
}
