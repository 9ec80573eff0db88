/**
 * The REST API under /v1 (docs/PROTOCOL.md, "HTTP API"): jobs listed, read, uploaded as a streaming
 * request body, followed as Server-Sent Events and downloaded with HTTP Range; the cluster's status; the
 * OpenAPI document; CORS for the origins in `gateway.cors.origins`. Same token as the WebSocket protocol.
 * http.ts has already checked Host, Origin and the path's shape before a request gets here.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { JobError, type JobService, type JobState, type JobView } from '../jobs/index.ts';
import { BusyError, TooManyUploadsError, type AdmissionTicket, type UploadAdmission } from './admission.ts';
import type { ImagesRoute } from './images-route.ts';
import { openApiDocument } from './openapi.ts';
import { normaliseOrigin } from './origin.ts';
import { jobIdPattern } from '../protocol/index.ts';
import { dropIfNotReading, fail, jobErrorStatus, send } from './reply.ts';

export interface RestApiOptions {
  node: string;
  jobs?: JobService;
  /** Upload slots and their queue, shared with the WebSocket protocol. */
  admission: UploadAdmission;
  /** Count uploads per client address (the node has no token, so the address is all that tells clients apart). */
  uploadsPerAddress: boolean;
  clusterStatus(): unknown;
  authorized(request: IncomingMessage): boolean;
  /** config gateway.cors.origins: pages on these origins get CORS headers. */
  allowedOrigins?: readonly string[];
  /** A streaming upload whose client sends nothing for this long is dropped. */
  uploadIdleMs: number;
  /** SSE streams send a comment this often so proxies and the idle timeout keep them open. */
  heartbeatMs: number;
  logger: Logger;
  /** POST /v1/images (images-route.ts). */
  images: ImagesRoute;
}

export interface RestApi {
  handle(request: IncomingMessage, response: ServerResponse, path: string, url: URL): Promise<void>;
}

export const restPrefix = '/v1';
/** Event streams open at once on this node; one more is answered 503 with Retry-After. */
const eventStreamsMax = 256;
const jobsListMax = 1_000;
const fileNameBytesMax = 255;
/** Seconds a client is told to wait after a 503 (busy, not ready) before trying again. */
const retryAfterSeconds = '5';
const corsMethods = 'GET, HEAD, POST, PUT, DELETE, OPTIONS';
const corsHeaders = 'authorization, content-type, last-event-id, range';
const corsExposed = 'location, etag, content-length, content-range, content-disposition, accept-ranges, retry-after';
const uploadParameters = new Set(['name', 'mode', 'chunkSize', 'wait', 'codec', 'format']);
const stateRank: Record<JobState, number> = { pending: 0, uploading: 1, processing: 2, merging: 3, completed: 4, failed: 5 };

class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Record<string, string>;

  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

function fromJobError(error: JobError): HttpError {
  if (error instanceof TooManyUploadsError) return new HttpError(429, 'TOO_MANY_REQUESTS', error.message, { 'retry-after': String(Math.ceil(error.retryAfterMs / 1000)) });
  const status = jobErrorStatus[error.code] ?? 500;
  const retryAfter = error instanceof BusyError ? String(Math.ceil(error.retryAfterMs / 1000)) : retryAfterSeconds;
  return new HttpError(status, error.code, error.message, status === 503 ? { 'retry-after': retryAfter } : {});
}

/** A single `bytes=` range of a body of `size` bytes as [start, end); undefined when absent; throws 416. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined {
  if (header === undefined) return undefined;
  const unsatisfiable = (why: string) => new HttpError(416, 'RANGE_NOT_SATISFIABLE', `Range ${JSON.stringify(header.slice(0, 80))}: ${why}`, { 'content-range': `bytes */${size}` });
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null) throw unsatisfiable('expected one range, bytes=FIRST-LAST, bytes=FIRST- or bytes=-SUFFIX');
  const [first, last] = [match[1], match[2]];
  if (first === '' && last === '') throw unsatisfiable('no first or last byte');
  if (first === '') {
    const suffix = Math.min(Number(last), size);
    if (suffix === 0) throw unsatisfiable(`an empty suffix of a ${size}-byte body`);
    return { start: size - suffix, end: size };
  }
  const start = Number(first);
  const end = last === '' ? size : Math.min(Number(last) + 1, size);
  if (start >= size) throw unsatisfiable(`starts at ${start}, the body has ${size} bytes`);
  if (end <= start) throw unsatisfiable('the last byte is before the first');
  return { start, end };
}

/** Monotone progress of a job, so a resumed event stream never repeats or goes back. */
function progressId(job: JobView): string {
  return `${stateRank[job.state]}.${job.chunksDone}.${job.uploadedBytes}`;
}

function newer(id: string, than: string | undefined): boolean {
  if (than === undefined) return true;
  const a = id.split('.').map(Number);
  const b = than.split('.').map(Number);
  if (b.length !== 3 || b.some((part) => !Number.isSafeInteger(part))) return true;
  for (let index = 0; index < 3; index++) if (a[index] !== b[index]) return a[index] > b[index];
  return false;
}

const ended = (job: JobView) => job.state === 'completed' || job.state === 'failed';

function decodedName(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'BAD_REQUEST', `file name ${JSON.stringify(segment.slice(0, 80))}: not valid percent-encoding`);
  }
}

function contentDisposition(fileName: string): string {
  const plain = fileName.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${plain}"; filename*=UTF-8''${encodeURIComponent(fileName)}`;
}

async function writeWithBackpressure(response: ServerResponse, piece: Uint8Array): Promise<void> {
  if (response.write(piece)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      response.off('drain', done);
      response.off('close', done);
      resolve();
    };
    response.on('drain', done);
    response.on('close', done);
  });
}

export function createRestApi(options: RestApiOptions): RestApi {
  const { node, jobs, logger } = options;
  const origins = new Set((options.allowedOrigins ?? []).map((entry) => normaliseOrigin(entry)).filter((entry) => entry !== undefined));
  let eventStreams = 0;

  function service(): JobService {
    if (jobs === undefined) throw new HttpError(503, 'NOT_READY', `node ${node} has no jobs service running yet`, { 'retry-after': retryAfterSeconds });
    return jobs;
  }

  async function jobOrNotFound(id: string): Promise<JobView> {
    const job = await service().getJob(id);
    if (job === undefined) throw new HttpError(404, 'NOT_FOUND', `job ${id}: not found on node ${node}`);
    return job;
  }

  /** CORS headers go on every answer to a listed origin, errors included, so the page can read them. */
  function applyCors(request: IncomingMessage, response: ServerResponse): boolean {
    const origin = request.headers.origin === undefined ? undefined : normaliseOrigin(request.headers.origin);
    if (origin === undefined || !origins.has(origin)) return false;
    response.setHeader('access-control-allow-origin', origin);
    response.setHeader('vary', 'Origin');
    response.setHeader('access-control-expose-headers', corsExposed);
    return true;
  }

  function preflight(request: IncomingMessage, response: ServerResponse, corsAllowed: boolean): void {
    if (corsAllowed) {
      response.setHeader('access-control-allow-methods', corsMethods);
      response.setHeader('access-control-allow-headers', corsHeaders);
      response.setHeader('access-control-max-age', '600');
    }
    response.writeHead(204, { allow: corsMethods });
    response.end();
  }

  async function route(request: IncomingMessage, response: ServerResponse, path: string, url: URL): Promise<void> {
    const method = request.method ?? 'GET';
    const parts = path.slice(restPrefix.length).split('/').filter((part) => part !== '');
    const read = method === 'GET' || method === 'HEAD';
    const allow = (allowed: string) => new HttpError(405, 'METHOD_NOT_ALLOWED', `${method} is not allowed on ${path}`, { allow: allowed });
    if (parts.length === 1 && parts[0] === 'openapi.json') {
      if (!read) throw allow('GET, HEAD');
      send(response, 200, openApiDocument);
      return;
    }
    if (!options.authorized(request)) throw new HttpError(401, 'AUTH', 'this node requires Authorization: Bearer <token>', { 'www-authenticate': 'Bearer realm="dcas"' });
    if (parts.length === 1 && parts[0] === 'cluster') {
      if (!read) throw allow('GET, HEAD');
      send(response, 200, options.clusterStatus());
      return;
    }
    if (parts.length === 1 && parts[0] === 'images') return options.images.handle(request, response, url);
    if (parts[0] !== 'jobs' || parts.length > 3) throw new HttpError(404, 'NOT_FOUND', `no such path: ${path}`);
    if (parts.length === 1) {
      if (method === 'POST') return upload(request, response, url, url.searchParams.get('name') ?? 'upload');
      if (!read) throw allow('GET, HEAD, POST');
      const limit = Math.min(Math.max(Number(url.searchParams.get('limit')) || jobsListMax, 1), jobsListMax);
      send(response, 200, { jobs: (await service().listJobs({ limit })).slice(0, limit) });
      return;
    }
    if (parts.length === 2 && method === 'PUT') return upload(request, response, url, decodedName(parts[1]));
    const id = parts[1];
    if (!jobIdPattern.test(id)) throw new HttpError(400, 'BAD_REQUEST', `not a job id: ${JSON.stringify(id.slice(0, 80))} (letters, digits, "-" and "_", 1 to 64)`);
    if (parts.length === 2) {
      if (method === 'DELETE') {
        send(response, 200, await service().deleteJob(id));
        return;
      }
      if (!read) throw allow('GET, HEAD, PUT, DELETE');
      send(response, 200, await jobOrNotFound(id));
      return;
    }
    if (!read) throw allow('GET, HEAD');
    if (parts[2] === 'events' && method === 'HEAD') {
      await jobOrNotFound(id);
      response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store' });
      response.end();
      return;
    }
    if (parts[2] === 'events') return events(request, response, id);
    if (parts[2] === 'original' || parts[2] === 'compressed') return download(request, response, id, parts[2] === 'compressed');
    throw new HttpError(404, 'NOT_FOUND', `no such path: ${path}`);
  }

  function uploadRequest(url: URL, fileName: string) {
    for (const key of url.searchParams.keys()) {
      if (!uploadParameters.has(key)) throw new HttpError(400, 'BAD_REQUEST', `unknown query parameter ${JSON.stringify(key.slice(0, 40))}; expected one of ${[...uploadParameters].join(', ')}`);
    }
    if (fileName === '' || Buffer.byteLength(fileName) > fileNameBytesMax || /[/\\\0]/.test(fileName)) {
      throw new HttpError(400, 'BAD_REQUEST', `file name ${JSON.stringify(fileName.slice(0, 80))}: 1 to ${fileNameBytesMax} bytes without "/", "\\" or NUL`);
    }
    const mode = url.searchParams.get('mode') ?? 'compress';
    if (mode !== 'compress' && mode !== 'decompress') throw new HttpError(400, 'BAD_REQUEST', `mode ${JSON.stringify(mode.slice(0, 40))}: expected compress or decompress`);
    const chunkText = url.searchParams.get('chunkSize');
    const chunkSize = chunkText === null ? undefined : Number(chunkText);
    if (chunkSize !== undefined && !Number.isSafeInteger(chunkSize)) throw new HttpError(400, 'BAD_REQUEST', `chunkSize ${JSON.stringify(chunkText!.slice(0, 40))}: expected a whole number of bytes`);
    const wait = url.searchParams.get('wait');
    if (wait !== null && wait !== 'true' && wait !== 'false') throw new HttpError(400, 'BAD_REQUEST', `wait ${JSON.stringify(wait.slice(0, 40))}: expected true or false`);
    // codec and format are checked by the jobs room against the registry, as the WebSocket upload's are.
    const codec = url.searchParams.get('codec') ?? undefined;
    const format = url.searchParams.get('format') ?? undefined;
    return { fileName, mode, chunkSize, wait: wait === 'true', codec, format } as const;
  }

  /**
   * The request body is the file. Each piece is written to the jobs room before the next is read, so the
   * socket is not read while the room is busy: TCP pushes back on the client, whatever it sends.
   */
  async function upload(request: IncomingMessage, response: ServerResponse, url: URL, fileName: string): Promise<void> {
    const parameters = uploadRequest(url, fileName);
    const lengthHeader = request.headers['content-length'];
    const size = lengthHeader === undefined ? undefined : Number(lengthHeader);
    // Refused before its body is read: closing after the answer stops the client from sending the body.
    response.setHeader('connection', 'close');
    const ticket = await admitUpload(request);
    if (ticket === undefined) return;
    let job: JobView | undefined;
    try {
      job = await receiveUpload(request, response, parameters, size);
    } finally {
      ticket.release();
    }
    if (job === undefined) return;
    if (parameters.wait) job = await untilEnded(response, job);
    send(response, 201, job, { location: `${restPrefix}/jobs/${job.id}` });
  }

  /**
   * A slot for an HTTP upload, after waiting in the node's queue if all are taken. Its body is not read
   * meanwhile (TCP holds the client back), and the request's idle timeout is lifted: the queue's own
   * timeout bounds the wait. undefined: the client went away while waiting.
   */
  async function admitUpload(request: IncomingMessage): Promise<AdmissionTicket | undefined> {
    const address = request.socket.remoteAddress?.replace(/^::ffff:/, '') ?? 'unknown';
    const queued = options.admission.request({ onPlace: () => {} }, options.uploadsPerAddress ? address : undefined);
    request.setTimeout(0);
    let onClose!: () => void;
    const gone = new Promise<undefined>((resolve) => request.socket.once('close', (onClose = () => resolve(undefined))));
    try {
      const ticket = await Promise.race([queued.admitted, gone]);
      if (ticket !== undefined && !request.socket.destroyed) return ticket;
      queued.leave();
      ticket?.release();
      return undefined;
    } finally {
      request.socket.off('close', onClose);
    }
  }

  /** The body streamed into a new job; undefined when the client went away (the job is failed). */
  async function receiveUpload(request: IncomingMessage, response: ServerResponse, parameters: ReturnType<typeof uploadRequest>, size: number | undefined): Promise<JobView | undefined> {
    const { fileName } = parameters;
    const session = await service().startUpload({ fileName: parameters.fileName, mode: parameters.mode, chunkSize: parameters.chunkSize, size, codec: parameters.codec, format: parameters.format });
    response.removeHeader('connection');
    request.setTimeout(options.uploadIdleMs, () => request.destroy(new Error(`no bytes for ${options.uploadIdleMs} ms`)));
    let job: JobView;
    try {
      for await (const piece of request) await session.write(piece as Buffer);
      job = await session.finish();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      await session.abort(`HTTP upload of ${fileName}: ${reason}`).catch(() => {});
      response.setHeader('connection', 'close');
      if (request.destroyed && !(error instanceof JobError)) {
        logger.info({ job: session.jobId, reason }, 'rest: an HTTP upload ended early; the job is failed');
        response.destroy();
        return undefined;
      }
      throw error;
    }
    request.setTimeout(0);
    return job;
  }

  /** The job once it completed or failed; while waiting the socket may idle (the client chose to wait). */
  async function untilEnded(response: ServerResponse, job: JobView): Promise<JobView> {
    if (ended(job)) return job;
    let stop: (() => void) | undefined;
    try {
      return await new Promise<JobView>((resolve, reject) => {
        response.once('close', () => reject(new Error('the client went away while waiting')));
        service()
          .watch(job.id, (next) => {
            if (ended(next)) resolve(next);
          })
          .then((unsubscribe) => (stop = unsubscribe), reject);
      });
    } finally {
      stop?.();
    }
  }

  /**
   * Server-Sent Events: `state` when the job enters a state, `progress` when chunks or uploaded bytes move,
   * each with the whole job. Event ids are the job's progress, so `Last-Event-ID` resumes without repeats.
   */
  async function events(request: IncomingMessage, response: ServerResponse, id: string): Promise<void> {
    if (eventStreams >= eventStreamsMax) throw new HttpError(503, 'BUSY', `node ${node} has ${eventStreamsMax} event streams open; try again later`, { 'retry-after': retryAfterSeconds });
    const lastHeader = request.headers['last-event-id'];
    let lastId = typeof lastHeader === 'string' ? lastHeader.slice(0, 64) : undefined;
    let lastState: JobState | undefined;
    let headersSent = false;
    eventStreams++;
    let heartbeat: NodeJS.Timeout | undefined;
    let unsubscribe: (() => void) | undefined;
    const close = () => {
      if (heartbeat !== undefined) clearInterval(heartbeat);
      unsubscribe?.();
      unsubscribe = undefined;
      heartbeat = undefined;
    };
    response.once('close', () => {
      if (heartbeat !== undefined || unsubscribe !== undefined) eventStreams--;
      close();
    });
    const deliver = (job: JobView) => {
      if (response.destroyed || dropIfNotReading(response)) return;
      const eventId = progressId(job);
      if (newer(eventId, lastId)) {
        const type = job.state !== lastState ? 'state' : 'progress';
        response.write(`id: ${eventId}\nevent: ${type}\ndata: ${JSON.stringify(job)}\n\n`);
        lastId = eventId;
      }
      lastState = job.state;
      if (ended(job)) response.end();
    };
    try {
      await jobOrNotFound(id);
      response.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no' });
      headersSent = true;
      response.write(`retry: 2000\n\n`);
      heartbeat = setInterval(() => response.write(': keep-alive\n\n'), options.heartbeatMs);
      unsubscribe = await service().watch(id, deliver);
      if (response.writableEnded || response.destroyed) close();
    } catch (error) {
      close();
      eventStreams--;
      if (headersSent) {
        logger.debug({ err: error, job: id }, 'rest: event stream failed');
        response.destroy();
        return;
      }
      throw error;
    }
  }

  async function download(request: IncomingMessage, response: ServerResponse, id: string, compressed: boolean): Promise<void> {
    const job = await jobOrNotFound(id);
    if (job.state !== 'completed') throw new HttpError(409, 'NOT_READY', `job ${id} is ${job.state}; only completed jobs can be downloaded`);
    // Opening reads nothing yet (the stream is lazy): it tells the size a Range is checked against.
    const whole = await service().openDownload(id, { compressed });
    const etag = `"${job.sha256 ?? id}${compressed ? '.dcz' : ''}"`;
    const headers: Record<string, string> = {
      'content-type': compressed ? 'application/octet-stream' : (job.mime ?? 'application/octet-stream'),
      'content-disposition': contentDisposition(whole.fileName),
      etag,
      'accept-ranges': 'bytes',
      'cache-control': 'no-cache',
    };
    const closeWhole = () => whole.stream[Symbol.asyncIterator]().return?.(undefined);
    if (request.headers['if-none-match'] === etag) {
      await closeWhole();
      response.writeHead(304, headers);
      response.end();
      return;
    }
    const range = parseRange(request.headers.range, whole.size);
    if (range !== undefined || request.method === 'HEAD') await closeWhole();
    const source = range === undefined ? whole : await service().openDownload(id, { compressed, range });
    if (range !== undefined) headers['content-range'] = `bytes ${range.start}-${range.end - 1}/${whole.size}`;
    response.writeHead(range === undefined ? 200 : 206, { ...headers, 'content-length': String(source.size) });
    if (request.method === 'HEAD') {
      response.end();
      return;
    }
    let sentBytes = 0;
    for await (const piece of source.stream) {
      if (response.destroyed) break;
      await writeWithBackpressure(response, piece);
      sentBytes += piece.length;
    }
    if (!response.destroyed && sentBytes !== source.size) {
      logger.error({ job: id, sentBytes, size: source.size }, 'rest: a download gave a different number of bytes than announced');
      response.destroy();
      return;
    }
    response.end();
  }

  return {
    async handle(request, response, path, url) {
      const corsAllowed = applyCors(request, response);
      if (request.method === 'OPTIONS') {
        preflight(request, response, corsAllowed);
        return;
      }
      try {
        await route(request, response, path, url);
      } catch (error) {
        const known = error instanceof HttpError ? error : error instanceof JobError ? fromJobError(error) : undefined;
        if (known === undefined) throw error;
        if (response.headersSent) {
          response.destroy();
          return;
        }
        fail(response, known.status, known.code, known.message, known.headers);
      }
    },
  };
}
