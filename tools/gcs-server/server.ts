/**
 * A Google Cloud Storage JSON-API server on loopback, for tests, CI and benchmarks: the subset that
 * @google-cloud/storage v7 sends, answered the way GCS answers it.
 *
 *   GET    /storage/v1/b/:bucket                     bucket resource
 *   POST   /storage/v1/b?project=…                   create a bucket
 *   GET    /storage/v1/b/:bucket/o                   list: prefix, delimiter, maxResults, pageToken
 *   GET    /storage/v1/b/:bucket/o/:object           object resource (generation=… pins one)
 *   GET    /storage/v1/b/:bucket/o/:object?alt=media bytes; also under /download/…; Range → 206
 *   DELETE /storage/v1/b/:bucket/o/:object
 *   POST   /storage/v1/b/:bucket/o/:object/compose   1 to 32 sources
 *   POST   /upload/storage/v1/b/:bucket/o            uploadType=media|multipart|resumable (uploads.ts)
 *   PUT    /upload/storage/v1/b/:bucket/o?upload_id= resumable session bytes or status; DELETE cancels
 * Object names arrive URL-encoded in paths ("a%2Fb"). Downloads carry x-goog-hash (crc32c, and md5
 * except for composite objects) and x-goog-stored-content-encoding, which the client needs to
 * validate. Errors are GCS's JSON documents. There is no authentication: loopback only.
 *
 * Faults: failNext / failFor answer a status (503 by default) instead of serving, after reading
 * the request body; resetNext destroys the connection; cutNext serves but drops the connection
 * after some bytes of the response body. A filter picks which requests they hit.
 */

import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { HttpError, badRequest, drain, notFound, readJson, sendError, sendJson } from './http.ts';
import { openObjectStore, type ObjectResource, type ObjectStore } from './objects.ts';
import { checkObjectName, createUploads, type Uploads } from './uploads.ts';

export interface GcsServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0: any free port. */
  port?: number;
  /** Where objects live (kept, and found again by the next server on it); default a fresh temporary folder that stop() removes. */
  root?: string;
  /** Buckets created at start when missing. */
  buckets?: readonly string[];
  /** Most entries per list page (GCS: 1000); tests make it small to exercise paging. */
  listPageSizeMax?: number;
  /** Largest multipart upload body, parsed in memory (default 64 MiB). */
  multipartBytesMax?: number;
  /** Largest object (default 5 TiB, as GCS). */
  objectBytesMax?: number;
  /** Open resumable sessions (default 1000). */
  sessionsMax?: number;
  /** A resumable session untouched this long is dropped (default 1 hour). */
  sessionIdleMsMax?: number;
}

/** What a fault filter sees of a request. `operation` is e.g. "objects.compose", "uploads.session". */
export interface RequestFacts {
  method: string;
  path: string;
  operation: string;
}

export type RequestFilter = (request: RequestFacts) => boolean;

export interface GcsFaults {
  /** The next `count` matching requests are answered `status` (default 503). */
  failNext(count: number, status?: number, when?: RequestFilter): void;
  /** Matching requests during the next `ms` milliseconds are answered `status` (default 503). */
  failFor(ms: number, status?: number, when?: RequestFilter): void;
  /** The next `count` matching requests have their connection destroyed (a reset, no answer). */
  resetNext(count: number, when?: RequestFilter): void;
  /** The next `count` matching streamed responses (downloads) stop after `bodyBytes` bytes of body: the connection drops. */
  cutNext(count: number, bodyBytes: number, when?: RequestFilter): void;
  /** Flips one stored byte of an object, leaving its CRC32C and MD5 as they were. */
  corrupt(bucket: string, name: string, offset?: number): Promise<void>;
  /** Forgets every pending fault. */
  clear(): void;
}

export interface GcsServerStats {
  requests: number;
  faultsInjected: number;
  /** Requests per operation name. */
  operations: Record<string, number>;
}

export interface GcsServer {
  /** e.g. "http://127.0.0.1:41234": the client's apiEndpoint. */
  readonly url: string;
  readonly port: number;
  readonly root: string;
  readonly faults: GcsFaults;
  readonly stats: GcsServerStats;
  stop(): Promise<void>;
}

type FaultAnswer = number | 'reset' | { cutAfterBytes: number };

interface FaultRule {
  answer: FaultAnswer;
  remaining: number;
  untilMs: number;
  when: RequestFilter | undefined;
}

interface Route {
  operation: string;
  run: () => Promise<void>;
}

const jsonBytesMax = 1 << 20;
/** GCS's limit on sources per compose request. */
export const composeSourcesMax = 32;

export async function startGcsServer(options: GcsServerOptions = {}): Promise<GcsServer> {
  const ownRoot = options.root === undefined;
  const root = options.root ?? (await mkdtemp(join(tmpdir(), 'dcas-gcs-')));
  const store = await openObjectStore(root);
  for (const bucket of options.buckets ?? []) {
    if (store.bucket(bucket) === undefined) await store.createBucket(bucket);
  }
  const parts: ServerParts = {
    store,
    uploads: createUploads(store, {
      multipartBytesMax: options.multipartBytesMax ?? 64 << 20,
      objectBytesMax: options.objectBytesMax ?? 5 * 2 ** 40,
      sessionsMax: options.sessionsMax ?? 1000,
      sessionIdleMsMax: options.sessionIdleMsMax ?? 60 * 60 * 1000,
    }),
    listPageSizeMax: options.listPageSizeMax ?? 1000,
    stats: { requests: 0, faultsInjected: 0, operations: {} },
    faults: new FaultRules(store),
  };
  const inFlight = new Set<Promise<void>>();
  const server = createServer({ keepAlive: true }, (req, res) => {
    const handling = handle(parts, req, res).catch((error: unknown) => answerError(req, res, error));
    inFlight.add(handling);
    void handling.finally(() => inFlight.delete(handling));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    url: `http://${host}:${address.port}`,
    port: address.port,
    root,
    faults: parts.faults,
    stats: parts.stats,
    async stop() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      // Handlers whose connections were just cut finish (failing) before their files go away.
      await Promise.allSettled(inFlight);
      await parts.uploads.close();
      if (ownRoot) await rm(root, { recursive: true, force: true });
    },
  };
}

/** What serving a request needs. */
interface ServerParts {
  store: ObjectStore;
  uploads: Uploads;
  listPageSizeMax: number;
  stats: GcsServerStats;
  faults: FaultRules;
}

/** The faults tests asked for, each taken by the requests it matches until it runs out or expires. */
class FaultRules implements GcsFaults {
  readonly #store: ObjectStore;
  #rules: FaultRule[] = [];

  constructor(store: ObjectStore) {
    this.#store = store;
  }

  failNext(count: number, status = 503, when?: RequestFilter): void {
    this.#rules.push({ answer: status, remaining: count, untilMs: Infinity, when });
  }

  failFor(ms: number, status = 503, when?: RequestFilter): void {
    this.#rules.push({ answer: status, remaining: Infinity, untilMs: Date.now() + ms, when });
  }

  resetNext(count: number, when?: RequestFilter): void {
    this.#rules.push({ answer: 'reset', remaining: count, untilMs: Infinity, when });
  }

  cutNext(count: number, bodyBytes: number, when?: RequestFilter): void {
    this.#rules.push({ answer: { cutAfterBytes: bodyBytes }, remaining: count, untilMs: Infinity, when });
  }

  corrupt(bucket: string, name: string, offset = 0): Promise<void> {
    return this.#store.corrupt(bucket, name, offset);
  }

  clear(): void {
    this.#rules = [];
  }

  /** The fault the first matching rule answers this request with (using up one of its count), if any. */
  take(facts: RequestFacts): FaultAnswer | undefined {
    const now = Date.now();
    this.#rules = this.#rules.filter((rule) => rule.remaining > 0 && now < rule.untilMs);
    for (const rule of this.#rules) {
      if (rule.when !== undefined && !rule.when(facts)) continue;
      rule.remaining--;
      return rule.answer;
    }
    return undefined;
  }
}

async function handle(parts: ServerParts, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const { stats } = parts;
  stats.requests++;
  const method = req.method ?? 'GET';
  const url = new URL(req.url ?? '/', 'http://localhost');
  let route: Route | undefined;
  try {
    route = routeOf(method, url, req, res, parts.store, parts.uploads, parts.listPageSizeMax);
  } catch (error) {
    return answerError(req, res, error);
  }
  if (route === undefined) {
    await drain(req);
    return sendError(res, 404, 'notFound', `Not Found: ${method} ${url.pathname}`);
  }
  stats.operations[route.operation] = (stats.operations[route.operation] ?? 0) + 1;
  const fault = parts.faults.take({ method, path: url.pathname, operation: route.operation });
  if (fault === 'reset') {
    stats.faultsInjected++;
    req.socket.destroy();
    return;
  }
  if (typeof fault === 'object') {
    stats.faultsInjected++;
    cutAfter(res, fault.cutAfterBytes);
  } else if (fault !== undefined) {
    stats.faultsInjected++;
    await drain(req);
    return sendError(res, fault, reasonOf(fault), `Injected fault: ${route.operation} answered ${fault}`);
  }
  try {
    await route.run();
  } catch (error) {
    await answerError(req, res, error);
  }
}

/** Which operation a request is, and how to serve it; undefined for paths the API does not have. */
function routeOf(method: string, url: URL, req: IncomingMessage, res: ServerResponse, store: ObjectStore, uploads: Uploads, listPageSizeMax: number): Route | undefined {
  const path = url.pathname;
  const query = url.searchParams;
  const present = (resource: ObjectResource): unknown => presentObject(resource, `http://${req.headers.host ?? 'localhost'}`);
  const api = /^\/(storage|upload\/storage|download\/storage)\/v1\/b(?:\/([^/]+)(\/o(?:\/(.+))?)?)?$/.exec(path);
  if (api === null) return undefined;
  const [, kind, bucketText, objectsPart, objectText] = api;
  const bucket = bucketText === undefined ? undefined : decodePart(bucketText);
  const hasObjects = objectsPart !== undefined;

  if (kind === 'upload/storage') {
    if (bucket === undefined || !hasObjects || objectText !== undefined) return undefined;
    const uploadId = query.get('upload_id');
    if (uploadId !== null) return { operation: 'uploads.session', run: () => uploads.session(req, res, uploadId, present) };
    if (method !== 'POST') return undefined;
    return { operation: 'uploads.insert', run: () => uploads.insert(req, res, bucket, query, present) };
  }
  if (kind === 'download/storage') {
    if (bucket === undefined || objectText === undefined || method !== 'GET') return undefined;
    const name = decodePart(objectText);
    return { operation: 'objects.download', run: () => download(req, res, store, bucket, name, query) };
  }
  if (bucket === undefined) {
    if (method !== 'POST') return undefined;
    return { operation: 'buckets.insert', run: async () => sendJson(res, 200, await store.createBucket(String((await readJson(req, jsonBytesMax)).name ?? ''))) };
  }
  if (!hasObjects) {
    if (method !== 'GET') return undefined;
    return { operation: 'buckets.get', run: async () => sendJson(res, 200, bucketOrFail(store, bucket)) };
  }
  if (objectText === undefined) {
    if (method !== 'GET') return undefined;
    return { operation: 'objects.list', run: async () => list(res, store, bucket, query, listPageSizeMax, present) };
  }
  if (method === 'POST' && objectText.endsWith('/compose')) {
    const name = decodePart(objectText.slice(0, -'/compose'.length));
    return { operation: 'objects.compose', run: () => compose(req, res, store, bucket, name, query, present) };
  }
  const name = decodePart(objectText);
  if (method === 'GET' && query.get('alt') === 'media') return { operation: 'objects.download', run: () => download(req, res, store, bucket, name, query) };
  if (method === 'GET') {
    return {
      operation: 'objects.get',
      run: async () => {
        const { resource, file } = await store.open(bucket, name, query.get('generation') ?? undefined);
        await file.close();
        sendJson(res, 200, present(resource));
      },
    };
  }
  if (method === 'DELETE') {
    return {
      operation: 'objects.delete',
      run: async () => {
        bucketOrFail(store, bucket);
        if (!(await store.delete(bucket, name))) throw notFound(`No such object: ${bucket}/${name}`);
        res.writeHead(204);
        res.end();
      },
    };
  }
  return undefined;
}

async function list(res: ServerResponse, store: ObjectStore, bucket: string, query: URLSearchParams, pageSizeMax: number, present: (resource: ObjectResource) => unknown): Promise<void> {
  bucketOrFail(store, bucket);
  const asked = query.get('maxResults');
  const maxResults = asked === null ? pageSizeMax : Number(asked);
  if (!Number.isSafeInteger(maxResults) || maxResults < 1) throw badRequest(`Invalid value for maxResults: ${asked}`);
  const token = query.get('pageToken');
  const page = store.list(bucket, {
    prefix: query.get('prefix') ?? '',
    delimiter: query.get('delimiter') ?? '',
    after: token === null || token === '' ? undefined : Buffer.from(token, 'base64url').toString('utf8'),
    maxResults: Math.min(maxResults, pageSizeMax),
  });
  sendJson(res, 200, {
    kind: 'storage#objects',
    ...(page.items.length === 0 ? {} : { items: page.items.map(present) }),
    ...(page.prefixes.length === 0 ? {} : { prefixes: page.prefixes }),
    ...(page.last === undefined ? {} : { nextPageToken: Buffer.from(page.last).toString('base64url') }),
  });
}

async function download(req: IncomingMessage, res: ServerResponse, store: ObjectStore, bucket: string, name: string, query: URLSearchParams): Promise<void> {
  await drain(req);
  const { resource, file } = await store.open(bucket, name, query.get('generation') ?? undefined);
  try {
    const size = Number(resource.size);
    const range = parseRange(req.headers.range, size);
    const hashes = [`crc32c=${resource.crc32c}`, ...(resource.md5Hash === undefined ? [] : [`md5=${resource.md5Hash}`])].join(',');
    const headers: Record<string, string> = {
      'Content-Type': resource.contentType,
      'Accept-Ranges': 'bytes',
      ETag: resource.etag,
      'Last-Modified': new Date(resource.updated).toUTCString(),
      'x-goog-hash': hashes,
      'x-goog-generation': resource.generation,
      'x-goog-metageneration': resource.metageneration,
      'x-goog-stored-content-encoding': 'identity',
      'x-goog-stored-content-length': resource.size,
    };
    if (range === 'unsatisfiable') {
      return sendError(res, 416, 'requestedRangeNotSatisfiable', `The requested range cannot be satisfied: ${req.headers.range} of ${size} bytes`, { 'Content-Range': `bytes */${size}` });
    }
    const { start, end } = range ?? { start: 0, end: size - 1 };
    if (range !== undefined) headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
    headers['Content-Length'] = String(end - start + 1);
    res.writeHead(range === undefined ? 200 : 206, headers);
    if (end < start) {
      res.end();
      return;
    }
    // The client may hang up mid-body; that ends this download and nothing else.
    await pipeline(file.createReadStream({ start, end, autoClose: false }), res).catch(() => res.destroy());
  } finally {
    await file.close();
  }
}

async function compose(req: IncomingMessage, res: ServerResponse, store: ObjectStore, bucket: string, name: string, query: URLSearchParams, present: (resource: ObjectResource) => unknown): Promise<void> {
  checkObjectName(name);
  bucketOrFail(store, bucket);
  const body = await readJson(req, jsonBytesMax);
  const sources = body.sourceObjects;
  if (!Array.isArray(sources) || sources.length === 0) throw new HttpError(400, 'required', 'Required: sourceObjects');
  if (sources.length > composeSourcesMax) {
    throw badRequest(`The number of source components provided (${sources.length}) exceeds the maximum (${composeSourcesMax})`);
  }
  const parsed = sources.map((source: unknown) => {
    const { name: sourceName, generation } = (source ?? {}) as { name?: unknown; generation?: unknown };
    if (typeof sourceName !== 'string' || sourceName === '') throw new HttpError(400, 'required', 'Required: sourceObjects[].name');
    return { name: sourceName, ...(generation === undefined ? {} : { generation: String(generation) }) };
  });
  const destination = (body.destination ?? {}) as { contentType?: unknown; metadata?: unknown };
  const contentType = typeof destination.contentType === 'string' ? destination.contentType : 'application/octet-stream';
  const metadata = typeof destination.metadata === 'object' && destination.metadata !== null ? (destination.metadata as Record<string, string>) : undefined;
  const resource = await store.compose(bucket, parsed, name, { contentType, metadata }, query.get('ifGenerationMatch') ?? undefined);
  sendJson(res, 200, present(resource));
}

/** A single "bytes=a-b", "bytes=a-" or "bytes=-n" range, inclusive; undefined means the whole object. */
function parseRange(header: string | undefined, size: number): { start: number; end: number } | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null || (match[1] === '' && match[2] === '')) return undefined; // unsupported forms: serve it all, as HTTP allows
  if (match[1] === '') {
    const suffix = Number(match[2]);
    return suffix === 0 || size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(match[1]);
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1);
  if (start >= size || end < start) return 'unsatisfiable';
  return { start, end };
}

/** Lets `bodyBytes` bytes of the response body out, then drops the connection. */
function cutAfter(res: ServerResponse, bodyBytes: number): void {
  let left = bodyBytes;
  const write = res.write.bind(res) as (chunk: Buffer, done?: () => void) => boolean;
  res.write = ((chunk: string | Uint8Array): boolean => {
    if (left === 0) return false;
    const bytes = Buffer.from(chunk);
    if (bytes.length < left) {
      left -= bytes.length;
      return write(bytes);
    }
    write(bytes.subarray(0, left), () => res.destroy());
    left = 0;
    return false;
  }) as typeof res.write;
}

function presentObject(resource: ObjectResource, base: string): unknown {
  const path = `/b/${encodeURIComponent(resource.bucket)}/o/${encodeURIComponent(resource.name)}`;
  return {
    ...resource,
    selfLink: `${base}/storage/v1${path}`,
    mediaLink: `${base}/download/storage/v1${path}?generation=${resource.generation}&alt=media`,
  };
}

function bucketOrFail(store: ObjectStore, bucket: string): unknown {
  const resource = store.bucket(bucket);
  if (resource === undefined) throw notFound(`The specified bucket does not exist: ${bucket}`);
  return resource;
}

function decodePart(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw badRequest(`Invalid percent-encoding in path: ${text}`);
  }
}

function reasonOf(status: number): string {
  if (status === 429) return 'rateLimitExceeded';
  if (status === 503) return 'backendError';
  if (status >= 500) return 'internalError';
  return 'invalid';
}

async function answerError(req: IncomingMessage, res: ServerResponse, error: unknown): Promise<void> {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  await drain(req);
  if (error instanceof HttpError) return sendError(res, error.status, error.reason, error.message);
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ENOENT') return sendError(res, 404, 'notFound', 'No such object (removed while being read)');
  sendError(res, 500, 'internalError', error instanceof Error ? error.message : String(error));
}
