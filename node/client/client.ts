/**
 * The DCaS client: one WebSocket connection to a node's gateway, speaking docs/PROTOCOL.md.
 *
 * Requests carry an id and are matched to their replies, so status, list and watch calls may overlap.
 * Uploads run one at a time per client (the protocol allows one per connection), as do downloads;
 * further calls wait their turn. Memory stays bounded both ways: an upload never has more than the
 * node's credit in flight, and a download pauses the socket while its consumer is behind, so TCP
 * slows the node down instead of this process buffering the file.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { WebSocket } from 'ws';
import { FileError, writeAtomically } from '../codec/index.ts';
import type { JobMode, JobView } from '../jobs/index.ts';
import {
  closeCodes,
  protocolVersion,
  webSocketPath,
  type ClientMessage,
  type DeletedMessage,
  type DownloadEndMessage,
  type DownloadStartMessage,
  type ErrorMessage,
  type JobMessage,
  type JobsListMessage,
  type ProtocolLimits,
  type ServerMessage,
  type UploadAcceptedMessage,
  type UploadDoneMessage,
  type WelcomeMessage,
} from '../protocol/index.ts';
import { DcasClientError } from './errors.ts';
import { isRetryable, withRetry, type RetryOptions } from './retry.ts';

export interface ConnectOptions {
  /** A node's gateway: http://host:port, https://…, ws://host:port or ws://host:port/ws. */
  server: string;
  /** Other gateways of the same cluster, tried in order when `server` cannot be reached or is full. */
  fallbackServers?: readonly string[];
  /**
   * An overall deadline (epoch ms) for everything this client does: connecting, every request, watches
   * and transfers. When it passes, whatever is still waiting rejects with TIMEOUT and the connection
   * closes. Without it, a call can wait as long as the node keeps the connection alive.
   */
  deadlineAtMs?: number;
  token?: string;
  /** Handshake and hello together. Default 10 s. */
  connectTimeoutMs?: number;
  /** How long a request waits for its reply (status, jobs, upload start, download start). Default 30 s. */
  requestTimeoutMs?: number;
  /**
   * BUSY and UNAVAILABLE (connecting, or starting an upload) are retried with exponential backoff and
   * jitter, never sooner than the node's retry-after, until `deadlineAtMs` (or a few attempts without
   * one). false: fail at the first refusal.
   */
  retry?: RetryOptions | false;
}

export interface UploadProgress {
  jobId: string;
  /** Bytes sent so far. */
  bytes: number;
  /** The upload's size when known. */
  totalBytes: number | null;
}

export interface UploadOptions {
  /** The name the job records; default: the source path's base name (required for streams). */
  fileName?: string;
  /** "compress" (default) or "decompress" (the source is a .dcz). */
  mode?: JobMode;
  chunkSize?: number;
  /** "NAME[:LEVEL]" from the codec registry (mode "compress"); default: huffman, or the format's codec. */
  codec?: string;
  /** dcz (default), zst, gz, xz or bz2 (mode "compress"). */
  format?: string;
  /** Mode "images" (the source is a tar of images; see uploadImages): how each image is coded. */
  image?: { mode: string; quality?: string; strip?: boolean };
  /** The size in bytes, if known; for a path it is read from the file. */
  size?: number;
  onProgress?: (progress: UploadProgress) => void;
  /** The upload waits in the node's admission queue at this place (1 is next); called as it moves. */
  onQueued?: (place: number) => void;
}

export interface DownloadOptions {
  /** true: the .dcz as stored; false (default): the original bytes. */
  compressed?: boolean;
  onProgress?: (bytes: number, totalBytes: number) => void;
}

export interface DownloadStream extends AsyncIterable<Uint8Array> {
  readonly jobId: string;
  readonly compressed: boolean;
  readonly size: number;
  readonly fileName: string;
  /** SHA-256 (hex) of the original file. */
  readonly sha256: string | null;
  /** Stops the download; needed only when the stream is not read to its end or broken out of. */
  cancel(): Promise<void>;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  /** SHA-256 (hex) of the bytes written. */
  sha256: string;
  /** true when the file is the original and its SHA-256 matched the job's. */
  verified: boolean;
}

export interface Watch {
  stop(): Promise<void>;
}

export interface DcasClient {
  /** The node's name, from its welcome. */
  readonly node: string;
  /** The gateway this client is connected to, as it was given. */
  readonly server: string;
  /**
   * The WebSocket URLs of the cluster's gateways (its members' `gateway`), read from the node's
   * /cluster right after connecting, for failing over later; empty if that read failed.
   */
  gateways(): Promise<string[]>;
  readonly limits: ProtocolLimits;
  /** "token" when the node checked the token; "none" when it has auth off. */
  readonly auth: 'token' | 'none';
  upload(source: string | Uint8Array | AsyncIterable<Uint8Array>, options?: UploadOptions): Promise<JobView>;
  status(jobId: string): Promise<JobView>;
  jobs(options?: { limit?: number }): Promise<JobView[]>;
  /** Calls `onJob` with the job now and on every change; resolves once the first view arrived. */
  watch(jobId: string, onJob: (job: JobView) => void): Promise<Watch>;
  /** Follows the job until it is completed or failed and returns that view (a failed job is not an error). */
  waitForCompletion(jobId: string, options?: { onJob?: (job: JobView) => void }): Promise<JobView>;
  download(jobId: string, options?: DownloadOptions): Promise<DownloadStream>;
  /** Removes the job and its blobs; a job being coded or merged is cancelled. CONFLICT while it uploads. */
  delete(jobId: string): Promise<{ jobId: string; state: JobView['state']; cancelled: boolean }>;
  /** Writes through a temporary file moved into place when complete and, for originals, verified. */
  downloadToFile(jobId: string, path: string, options?: DownloadOptions & { force?: boolean }): Promise<DownloadResult>;
  close(): Promise<void>;
}

export const terminalStates: ReadonlySet<string> = new Set(['completed', 'failed']);

/** ws://host:port/ws for any of the accepted server spellings. */
export function webSocketUrl(server: string): string {
  let url: URL;
  try {
    url = new URL(server);
  } catch {
    throw new DcasClientError('BAD_ARGUMENT', `${server}: not a URL (example: http://127.0.0.1:7701)`);
  }
  const schemes: Record<string, string> = { 'http:': 'ws:', 'https:': 'wss:', 'ws:': 'ws:', 'wss:': 'wss:' };
  const scheme = schemes[url.protocol];
  if (scheme === undefined) throw new DcasClientError('BAD_ARGUMENT', `${server}: expected an http://, https://, ws:// or wss:// URL`);
  const path = url.pathname === '' || url.pathname === '/' ? webSocketPath : url.pathname;
  return `${scheme}//${url.host}${path}`;
}

/** Bytes sent per upload frame: the node's limit, capped so progress and credit stay fine-grained. */
const uploadFrameBytesMax = 1024 * 1024;
/** A download pauses the socket above this many unconsumed bytes and resumes below the low mark. */
const downloadQueueBytesHigh = 4 * 1024 * 1024;
const downloadQueueBytesLow = 1024 * 1024;
/** Largest message accepted from a node (a list of many jobs is the biggest). */
const messageBytesMax = 64 * 1024 * 1024;
const finishTimeoutMs = 300_000;

function errorFrom(message: ErrorMessage): DcasClientError {
  const retryAfterMs = typeof message.retryAfterMs === 'number' && message.retryAfterMs > 0 ? message.retryAfterMs : undefined;
  return new DcasClientError(message.code, message.message, message.jobId, retryAfterMs);
}

interface Pending {
  expect: ServerMessage['type'];
  /** The node said the request is waiting its turn (queued): restart the reply timer. */
  extend(): void;
  onQueued?: (place: number) => void;
  resolve(message: ServerMessage): void;
  reject(error: Error): void;
}

interface ActiveUpload {
  jobId: string;
  credit: number;
  failure: DcasClientError | undefined;
  wake: (() => void) | undefined;
}

interface ActiveDownload {
  requestId: number;
  started: boolean;
  onStart(message: DownloadStartMessage): void;
  onBytes(bytes: Buffer): void;
  onEnd(message: DownloadEndMessage): void;
  onError(error: Error): void;
}

interface Watcher {
  onJob(job: JobView): void;
  onClose(error: Error): void;
}

/** Runs tasks one after another. */
function serial(): <T>(task: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return (task) => {
    const run = tail.then(task, task);
    tail = run.catch(() => {});
    return run;
  };
}

/** Errors after which another gateway of the cluster may do better. */
const failoverCodes: ReadonlySet<string> = new Set(['UNREACHABLE', 'BUSY', 'UNAVAILABLE', 'DISCONNECTED']);

/**
 * Connects to `server`, or when it cannot be reached (refused, full, stopping), to each of
 * `fallbackServers` in turn. Errors that another node would repeat (AUTH, a bad URL) end the search.
 */
export async function connect(options: ConnectOptions): Promise<DcasClient> {
  if (options.retry === false) return connectOnce(options);
  return withRetry(() => connectOnce(options), options.deadlineAtMs, options.retry);
}

async function connectOnce(options: ConnectOptions): Promise<DcasClient> {
  const servers = [options.server, ...(options.fallbackServers ?? [])];
  let firstError: unknown;
  for (const server of servers) {
    try {
      return await connectTo({ ...options, server });
    } catch (error) {
      const retry = error instanceof DcasClientError && failoverCodes.has(error.code) && !deadlinePassed(options.deadlineAtMs);
      if (!retry) throw error;
      firstError ??= error;
    }
  }
  if (servers.length === 1) throw firstError;
  const error = firstError as DcasClientError;
  throw new DcasClientError(error.code, `${error.message} (and ${servers.length - 1} other gateways of the cluster)`, undefined, error.retryAfterMs);
}

function deadlinePassed(deadlineAtMs: number | undefined): boolean {
  return deadlineAtMs !== undefined && Date.now() >= deadlineAtMs;
}

function deadlineError(deadlineAtMs: number): DcasClientError {
  return new DcasClientError('TIMEOUT', `gave up at the deadline (${new Date(deadlineAtMs).toISOString()}); raise --timeout to wait longer`);
}

/** GET /cluster on the gateway: its members' gateway URLs. Never throws; an empty list when unknown. */
async function readClusterGateways(server: string, token: string | undefined, timeoutMs: number): Promise<string[]> {
  try {
    const base = webSocketUrl(server).replace(/^ws/, 'http').replace(/\/ws$/, '');
    const response = await fetch(`${base}/cluster`, { headers: token === undefined ? {} : { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) return [];
    const body = (await response.json()) as { members?: Array<{ gateway?: unknown }> };
    return (body.members ?? []).map((member) => member.gateway).filter((gateway): gateway is string => typeof gateway === 'string').slice(0, 64);
  } catch {
    return [];
  }
}

async function connectTo(options: ConnectOptions): Promise<DcasClient> {
  const url = webSocketUrl(options.server);
  const deadlineAtMs = options.deadlineAtMs;
  if (deadlinePassed(deadlineAtMs)) throw deadlineError(deadlineAtMs!);
  const connectTimeoutMs = Math.min(options.connectTimeoutMs ?? 10_000, deadlineAtMs === undefined ? Infinity : Math.max(deadlineAtMs - Date.now(), 1));
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  const socket = new WebSocket(url, { maxPayload: messageBytesMax, handshakeTimeout: connectTimeoutMs, perMessageDeflate: false });
  const pending = new Map<number, Pending>();
  const watchers = new Map<string, Set<Watcher>>();
  const latestJob = new Map<string, JobView>();
  let nextRequestId = 1;
  let upload: ActiveUpload | undefined;
  let activeDownload: ActiveDownload | undefined;
  /** The node's last word before it closed the connection, if it said one. */
  let closingError: DcasClientError | undefined;
  let closed = false;
  let closedError: DcasClientError | undefined;
  let watchdog: NodeJS.Timeout | undefined;
  let heartbeatMs = 0;
  let paused = false;
  const uploadTurn = serial();
  const downloadTurn = serial();

  // Hearing nothing, not even a ping, for three heartbeats means the node or the path to it is gone.
  const feedWatchdog = () => {
    clearTimeout(watchdog);
    if (heartbeatMs === 0 || closed || paused) return;
    watchdog = setTimeout(() => socket.terminate(), heartbeatMs * 3);
    watchdog.unref();
  };
  socket.on('ping', feedWatchdog);

  const welcome = await new Promise<WelcomeMessage>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new DcasClientError('UNREACHABLE', `${options.server}: no welcome within ${connectTimeoutMs} ms`));
    }, connectTimeoutMs);
    const fail = (error: DcasClientError) => {
      clearTimeout(timer);
      reject(error);
    };
    socket.once('unexpected-response', (_request, response) => {
      let text = '';
      response.on('data', (data: Buffer) => (text += data.toString('utf8').slice(0, 4096)));
      response.on('end', () => {
        let body: { error?: { code?: string; message?: string } } | undefined;
        try {
          body = JSON.parse(text);
        } catch {
          body = undefined;
        }
        const code = body?.error?.code === 'BUSY' ? 'BUSY' : 'UNREACHABLE';
        const retryAfterSeconds = Number(response.headers['retry-after']);
        const retryAfterMs = Number.isFinite(retryAfterSeconds) && retryAfterSeconds > 0 ? retryAfterSeconds * 1000 : undefined;
        fail(new DcasClientError(code, `${options.server}: ${body?.error?.message ?? `HTTP ${response.statusCode} instead of a WebSocket upgrade`}`, undefined, retryAfterMs));
      });
      response.on('error', () => fail(new DcasClientError('UNREACHABLE', `${options.server}: HTTP ${response.statusCode}`)));
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'ECONNREFUSED' ? 'connection refused (is a node running there?)' : error.message;
      fail(new DcasClientError('UNREACHABLE', `cannot reach ${options.server}: ${reason}`));
    });
    socket.once('open', () => socket.send(JSON.stringify({ type: 'hello', version: protocolVersion, ...(options.token === undefined ? {} : { token: options.token }) })));
    socket.once('message', (data, isBinary) => {
      const message = isBinary ? undefined : (parse(data as Buffer) as ServerMessage | undefined);
      if (message?.type === 'welcome') {
        clearTimeout(timer);
        resolve(message);
      } else if (message?.type === 'error') {
        fail(errorFrom(message));
      } else {
        fail(new DcasClientError('PROTOCOL', `${options.server}: expected a welcome, got ${isBinary ? 'binary data' : String(data).slice(0, 80)}`));
      }
    });
    socket.once('close', (code) => fail(new DcasClientError('UNREACHABLE', `${options.server}: closed the connection before the welcome (code ${code})`)));
  });
  socket.removeAllListeners('unexpected-response');
  socket.removeAllListeners('message');
  socket.removeAllListeners('close');
  socket.removeAllListeners('error');
  heartbeatMs = welcome.limits.heartbeatMs;
  feedWatchdog();
  // Read while the node is there, for a failover when it is gone.
  const clusterGateways = readClusterGateways(options.server, options.token, Math.min(connectTimeoutMs, 5_000));
  let deadlineTimer: NodeJS.Timeout | undefined;
  if (deadlineAtMs !== undefined) {
    deadlineTimer = setTimeout(() => {
      closingError = deadlineError(deadlineAtMs);
      socket.terminate();
    }, Math.max(deadlineAtMs - Date.now(), 0));
  }

  function parse(data: Buffer): unknown {
    try {
      return JSON.parse(data.toString('utf8'));
    } catch {
      return undefined;
    }
  }

  function send(message: ClientMessage): void {
    if (closed) throw closedError!;
    socket.send(JSON.stringify(message));
  }

  function request<T extends ServerMessage>(message: ClientMessage & { id: number }, expect: T['type'], timeoutMs = requestTimeoutMs, onQueued?: (place: number) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (closed) {
        reject(closedError);
        return;
      }
      const timer = setTimeout(() => {
        pending.delete(message.id);
        reject(new DcasClientError('TIMEOUT', `${message.type}: no answer from ${welcome.node} within ${timeoutMs} ms`));
      }, timeoutMs);
      pending.set(message.id, {
        expect,
        // A queued request waits as long as the node keeps it queued: the node bounds that wait
        // (its queue timeout answers BUSY), and the heartbeat watchdog catches a node that went silent.
        extend: () => clearTimeout(timer),
        onQueued,
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      send(message);
    });
  }

  function settle(id: unknown, message: ServerMessage): boolean {
    if (typeof id !== 'number') return false;
    const waiting = pending.get(id);
    if (waiting === undefined) return false;
    pending.delete(id);
    if (message.type === 'error') waiting.reject(errorFrom(message));
    else if (message.type === waiting.expect) waiting.resolve(message);
    else waiting.reject(new DcasClientError('PROTOCOL', `expected ${waiting.expect} from ${welcome.node}, got ${message.type}`));
    return true;
  }

  function deliverJob(job: JobView): void {
    latestJob.set(job.id, job);
    for (const watcher of watchers.get(job.id) ?? []) watcher.onJob(job);
  }

  function onMessage(message: ServerMessage): void {
    switch (message.type) {
      case 'error': {
        const error = errorFrom(message);
        const aboutUpload = upload !== undefined && message.jobId === upload.jobId;
        if (aboutUpload) {
          upload!.failure = error;
          upload!.wake?.();
        }
        const aboutDownload = activeDownload !== undefined && message.id === activeDownload.requestId;
        if (aboutDownload) activeDownload!.onError(error);
        const answered = settle(message.id, message);
        if (!answered && !aboutUpload && !aboutDownload && message.id === undefined) closingError = error;
        return;
      }
      case 'queued': {
        const waiting = typeof message.id === 'number' ? pending.get(message.id) : undefined;
        waiting?.extend();
        waiting?.onQueued?.(message.place);
        return;
      }
      case 'credit':
        if (upload !== undefined && upload.jobId === message.jobId) {
          upload.credit += message.bytes;
          upload.wake?.();
        }
        return;
      case 'job':
        settle(message.id, message);
        deliverJob(message.job);
        return;
      case 'download-start':
        if (activeDownload !== undefined && message.id === activeDownload.requestId) activeDownload.onStart(message);
        return;
      case 'download-end':
        if (activeDownload !== undefined && message.id === activeDownload.requestId) activeDownload.onEnd(message);
        return;
      default:
        settle((message as { id?: unknown }).id, message);
    }
  }

  socket.on('message', (data, isBinary) => {
    feedWatchdog();
    if (isBinary) {
      if (activeDownload?.started) activeDownload.onBytes(data as Buffer);
      return;
    }
    const message = parse(data as Buffer) as ServerMessage | undefined;
    if (message === undefined || typeof message !== 'object' || typeof message.type !== 'string') return;
    onMessage(message);
  });
  socket.on('error', () => {
    // The close event follows and carries what the caller needs.
  });
  socket.on('close', (code, reason) => {
    closed = true;
    clearTimeout(watchdog);
    clearTimeout(deadlineTimer);
    const detail = reason.length > 0 ? `: ${reason.toString('utf8')}` : '';
    closedError =
      closingError ??
      (code === closeCodes.messageTooBig
        ? new DcasClientError('FRAME_TOO_LARGE', `${welcome.node} refused a frame as too large (close 1009)`)
        : new DcasClientError('DISCONNECTED', `connection to ${welcome.node} closed (code ${code}${detail})`));
    for (const waiting of pending.values()) waiting.reject(closedError);
    pending.clear();
    if (upload !== undefined) {
      upload.failure ??= closedError;
      upload.wake?.();
    }
    activeDownload?.onError(closedError);
    for (const set of watchers.values()) for (const watcher of set) watcher.onClose(closedError);
    watchers.clear();
  });

  // Uploads.

  async function* framesOf(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
    const frameBytes = Math.min(welcome.limits.frameBytesMax, uploadFrameBytesMax);
    for await (const piece of source) {
      for (let at = 0; at < piece.length; at += frameBytes) yield piece.subarray(at, at + frameBytes);
    }
  }

  async function openSource(source: string | Uint8Array | AsyncIterable<Uint8Array>, uploadOptions: UploadOptions) {
    if (typeof source === 'string') {
      let size: number;
      try {
        const info = await stat(source);
        if (!info.isFile()) throw new DcasClientError('BAD_ARGUMENT', `${source}: not a regular file`);
        size = info.size;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new DcasClientError('BAD_ARGUMENT', `${source}: no such file`);
        throw error;
      }
      return { fileName: uploadOptions.fileName ?? basename(source), size: uploadOptions.size ?? size, bytes: createReadStream(source, { highWaterMark: uploadFrameBytesMax }) as AsyncIterable<Uint8Array> };
    }
    if (uploadOptions.fileName === undefined) throw new DcasClientError('BAD_ARGUMENT', 'upload: a fileName is needed when the source is not a path');
    if (source instanceof Uint8Array) {
      return { fileName: uploadOptions.fileName, size: uploadOptions.size ?? source.length, bytes: (async function* () { yield source; })() };
    }
    return { fileName: uploadOptions.fileName, size: uploadOptions.size, bytes: source };
  }

  function waitForCredit(active: ActiveUpload): Promise<void> {
    return new Promise<void>((resolve) => {
      active.wake = () => {
        active.wake = undefined;
        resolve();
      };
    });
  }

  /**
   * An upload the node refused with BUSY or UNAVAILABLE is tried again after a backoff, on this
   * connection, while it is open: any time for a path or a buffer (read again from the start), and for
   * a stream only if none of it was read yet (the refusal came before upload-accepted).
   */
  function uploadRetrying(source: string | Uint8Array | AsyncIterable<Uint8Array>, uploadOptions: UploadOptions): Promise<JobView> {
    if (options.retry === false) return runUpload(source, uploadOptions, () => {});
    const replayable = typeof source === 'string' || source instanceof Uint8Array;
    let consumed = false;
    return withRetry(() => runUpload(source, uploadOptions, () => (consumed = true)), deadlineAtMs, options.retry, () => !closed && (replayable || !consumed));
  }

  async function runUpload(source: string | Uint8Array | AsyncIterable<Uint8Array>, uploadOptions: UploadOptions, onConsumed: () => void): Promise<JobView> {
    const opened = await openSource(source, uploadOptions);
    let accepted: UploadAcceptedMessage;
    try {
      accepted = await request<UploadAcceptedMessage>(
        { type: 'upload', id: nextRequestId++, fileName: opened.fileName, mode: uploadOptions.mode ?? 'compress', chunkSize: uploadOptions.chunkSize, size: opened.size, codec: uploadOptions.codec, format: uploadOptions.format, image: uploadOptions.image },
        'upload-accepted',
        requestTimeoutMs,
        uploadOptions.onQueued,
      );
    } catch (error) {
      // The file this attempt opened is closed; a retry opens it again.
      if (typeof source === 'string') (opened.bytes as unknown as { destroy(): void }).destroy();
      throw error;
    }
    const active: ActiveUpload = { jobId: accepted.jobId, credit: accepted.credit, failure: undefined, wake: undefined };
    upload = active;
    let ending = false;
    try {
      let sentBytes = 0;
      onConsumed();
      for await (const frame of framesOf(opened.bytes)) {
        let at = 0;
        while (at < frame.length) {
          if (active.failure !== undefined) throw active.failure;
          if (active.credit === 0) {
            await waitForCredit(active);
            continue;
          }
          const length = Math.min(active.credit, frame.length - at);
          if (closed) throw closedError!;
          socket.send(frame.subarray(at, at + length), { binary: true });
          active.credit -= length;
          at += length;
          sentBytes += length;
          uploadOptions.onProgress?.({ jobId: active.jobId, bytes: sentBytes, totalBytes: opened.size ?? null });
        }
      }
      if (active.failure !== undefined) throw active.failure;
      ending = true;
      const done = await request<UploadDoneMessage>({ type: 'upload-end', id: nextRequestId++, jobId: active.jobId }, 'upload-done', finishTimeoutMs);
      return done.job;
    } catch (error) {
      // Free the connection for the next upload unless the node already ended this one.
      if (!ending && !closed) {
        const reason = error instanceof Error ? error.message.slice(0, 200) : 'client error';
        socket.send(JSON.stringify({ type: 'upload-abort', id: nextRequestId++, jobId: active.jobId, reason }));
      }
      if (error instanceof DcasClientError && error.jobId === undefined) throw new DcasClientError(error.code, error.message, active.jobId);
      throw error;
    } finally {
      upload = undefined;
    }
  }

  // Watches.

  async function watch(jobId: string, onJob: (job: JobView) => void, onClose: (error: Error) => void = () => {}): Promise<Watch> {
    const watcher: Watcher = { onJob, onClose };
    let set = watchers.get(jobId);
    const first = set === undefined;
    if (set === undefined) {
      set = new Set();
      watchers.set(jobId, set);
    }
    set.add(watcher);
    try {
      if (first) await request<JobMessage>({ type: 'watch', id: nextRequestId++, jobId }, 'job');
      else if (latestJob.has(jobId)) onJob(latestJob.get(jobId)!);
    } catch (error) {
      set.delete(watcher);
      if (set.size === 0 && watchers.get(jobId) === set) watchers.delete(jobId);
      throw error;
    }
    let stopped = false;
    return {
      async stop() {
        if (stopped) return;
        stopped = true;
        set.delete(watcher);
        if (set.size > 0 || watchers.get(jobId) !== set) return;
        watchers.delete(jobId);
        latestJob.delete(jobId);
        if (!closed) await request({ type: 'unwatch', id: nextRequestId++, jobId }, 'unwatched').catch(() => {});
      },
    };
  }

  async function waitForCompletion(jobId: string, waitOptions: { onJob?: (job: JobView) => void } = {}): Promise<JobView> {
    let settle!: { resolve: (job: JobView) => void; reject: (error: Error) => void };
    const outcome = new Promise<JobView>((resolve, reject) => (settle = { resolve, reject }));
    const handle = await watch(
      jobId,
      (job) => {
        waitOptions.onJob?.(job);
        if (terminalStates.has(job.state)) settle.resolve(job);
      },
      (error) => settle.reject(error),
    );
    try {
      return await outcome;
    } finally {
      await handle.stop();
    }
  }

  // Downloads.

  async function openDownload(jobId: string, downloadOptions: DownloadOptions, release: () => void): Promise<DownloadStream> {
    const compressed = downloadOptions.compressed ?? false;
    const queue: Buffer[] = [];
    let queuedBytes = 0;
    let receivedBytes = 0;
    let ended: DownloadEndMessage | undefined;
    let failure: Error | undefined;
    let wake: (() => void) | undefined;
    let abandoned = false;
    let start!: { resolve: (message: DownloadStartMessage) => void; reject: (error: Error) => void };
    const started = new Promise<DownloadStartMessage>((resolve, reject) => (start = { resolve, reject }));
    const setPaused = (value: boolean) => {
      if (paused === value) return;
      paused = value;
      if (value) socket.pause();
      else socket.resume();
      feedWatchdog();
    };
    const finish = () => {
      if (activeDownload === active) activeDownload = undefined;
      setPaused(false);
      release();
    };
    const active: ActiveDownload = {
      requestId: nextRequestId++,
      started: false,
      onStart(message) {
        active.started = true;
        start.resolve(message);
      },
      onBytes(bytes) {
        if (abandoned) return;
        queue.push(bytes);
        queuedBytes += bytes.length;
        receivedBytes += bytes.length;
        if (queuedBytes > downloadQueueBytesHigh) setPaused(true);
        wake?.();
      },
      onEnd(message) {
        ended = message;
        if (abandoned) finish();
        wake?.();
      },
      onError(error) {
        failure ??= error;
        start.reject(error);
        finish();
        wake?.();
      },
    };
    activeDownload = active;
    try {
      send({ type: 'download', id: active.requestId, jobId, compressed });
    } catch (error) {
      finish();
      throw error;
    }
    const timer = setTimeout(() => active.onError(new DcasClientError('TIMEOUT', `download of job ${jobId}: no answer within ${requestTimeoutMs} ms`, jobId)), requestTimeoutMs);
    let header: DownloadStartMessage;
    try {
      header = await started;
    } finally {
      clearTimeout(timer);
    }
    /** The consumer stopped early (break, throw, cancel): tell the node, drop what still arrives, free the turn at download-end. */
    const abandon = () => {
      if (ended !== undefined || failure !== undefined) {
        finish();
        return;
      }
      if (abandoned) return;
      abandoned = true;
      queue.length = 0;
      queuedBytes = 0;
      setPaused(false);
      if (!closed) send({ type: 'download-cancel', jobId });
    };
    async function* pieces(): AsyncGenerator<Uint8Array> {
      let deliveredBytes = 0;
      try {
        for (;;) {
          const piece = queue.shift();
          if (piece !== undefined) {
            queuedBytes -= piece.length;
            if (queuedBytes < downloadQueueBytesLow) setPaused(false);
            deliveredBytes += piece.length;
            downloadOptions.onProgress?.(deliveredBytes, header.size);
            yield piece;
            continue;
          }
          if (failure !== undefined) throw failure;
          if (ended !== undefined) break;
          await new Promise<void>((resolve) => (wake = resolve));
          wake = undefined;
        }
        if (ended.cancelled || receivedBytes !== header.size || ended.bytes !== header.size) {
          throw new DcasClientError('SIZE_MISMATCH', `download of job ${jobId}: ${receivedBytes} bytes arrived, ${header.size} announced`, jobId);
        }
      } finally {
        abandon();
      }
    }
    let iterated = false;
    return {
      jobId,
      compressed,
      size: header.size,
      fileName: header.fileName,
      sha256: header.sha256,
      async cancel() {
        abandon();
      },
      [Symbol.asyncIterator]() {
        if (iterated) throw new DcasClientError('BAD_ARGUMENT', `download of job ${jobId}: a download stream can be read once`);
        iterated = true;
        const generator = pieces();
        // A generator that never started skips its finally on return(); abandon() covers that case.
        return {
          next: () => generator.next(),
          return: async (value?: unknown) => {
            abandon();
            return generator.return(value as undefined);
          },
          throw: (error?: unknown) => generator.throw(error),
          [Symbol.asyncIterator]() {
            return this;
          },
        };
      },
    };
  }

  function download(jobId: string, downloadOptions: DownloadOptions = {}): Promise<DownloadStream> {
    // The turn is held until the stream ends, is cancelled or fails, not merely until it opens.
    return new Promise<DownloadStream>((resolve, reject) => {
      void downloadTurn(
        () =>
          new Promise<void>((release) => {
            openDownload(jobId, downloadOptions, release).then(resolve, (error: unknown) => {
              release();
              reject(error);
            });
          }),
      );
    });
  }

  async function downloadToFile(jobId: string, path: string, fileOptions: DownloadOptions & { force?: boolean } = {}): Promise<DownloadResult> {
    const force = fileOptions.force ?? false;
    if (!force) {
      const exists = await stat(path).then(() => true, () => false);
      if (exists) throw new DcasClientError('OUTPUT_EXISTS', `${path}: already exists (use --force to replace it)`, jobId);
    }
    const stream = await download(jobId, fileOptions);
    const expected = stream.compressed ? null : stream.sha256;
    const hash = createHash('sha256');
    let bytes = 0;
    const iterator = stream[Symbol.asyncIterator]();
    async function* verified(): AsyncGenerator<Uint8Array> {
      for (;;) {
        const step = await iterator.next();
        if (step.done) break;
        hash.update(step.value);
        bytes += step.value.length;
        yield step.value;
      }
      // Thrown before writeAtomically syncs and moves the file: an unverified file never gets the final name.
      if (expected !== null && hash.copy().digest('hex') !== expected) {
        throw new DcasClientError('CHECKSUM_MISMATCH', `job ${jobId}: the downloaded file's SHA-256 is not the job's ${expected}`, jobId);
      }
    }
    try {
      await writeAtomically(path, verified(), force);
    } catch (error) {
      if (error instanceof FileError && error.code === 'OUTPUT_EXISTS') throw new DcasClientError('OUTPUT_EXISTS', error.message, jobId);
      throw error;
    } finally {
      await iterator.return?.();
    }
    return { path, bytes, sha256: hash.digest('hex'), verified: expected !== null };
  }

  return {
    node: welcome.node,
    server: options.server,
    gateways: () => clusterGateways,
    limits: welcome.limits,
    auth: welcome.auth,
    upload: (source, uploadOptions = {}) => uploadTurn(() => uploadRetrying(source, uploadOptions)),
    async status(jobId) {
      return (await request<JobMessage>({ type: 'status', id: nextRequestId++, jobId }, 'job')).job;
    },
    async jobs(listOptions = {}) {
      return (await request<JobsListMessage>({ type: 'jobs', id: nextRequestId++, limit: listOptions.limit }, 'jobs')).jobs;
    },
    watch: (jobId, onJob) => watch(jobId, onJob),
    async delete(jobId) {
      const deleted = await request<DeletedMessage>({ type: 'delete', id: nextRequestId++, jobId }, 'deleted');
      return { jobId: deleted.jobId, state: deleted.state, cancelled: deleted.cancelled };
    },
    waitForCompletion,
    download,
    downloadToFile,
    async close() {
      if (closed) return;
      const done = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      closingError ??= new DcasClientError('DISCONNECTED', 'the client was closed');
      socket.close(closeCodes.normal);
      const timer = setTimeout(() => socket.terminate(), 2_000);
      await done;
      clearTimeout(timer);
    },
  };
}

/** The same gateway however it was spelled (http:// or ws://, with or without /ws). */
function sameGateway(a: string, b: string): boolean {
  try {
    return webSocketUrl(a) === webSocketUrl(b);
  } catch {
    return false;
  }
}

/**
 * Follows a job to its end like `client.waitForCompletion`, across gateways: when the connection is
 * lost (the node stopped, crashed or became unreachable), it connects to another gateway of the
 * cluster (from `client.gateways()`) and watches again, until the job ends or `options.deadlineAtMs`.
 * A job is the cluster's, not one gateway's, so any member can report it.
 */
export async function followJob(client: DcasClient, options: ConnectOptions, jobId: string, onJob?: (job: JobView) => void): Promise<JobView> {
  let current = client;
  const opened: DcasClient[] = [];
  const tried = [client.server];
  const known = new Set<string>();
  try {
    for (;;) {
      try {
        return await current.waitForCompletion(jobId, { onJob });
      } catch (error) {
        if (!(error instanceof DcasClientError) || !failoverCodes.has(error.code) || deadlinePassed(options.deadlineAtMs)) throw error;
        for (const gateway of await current.gateways()) known.add(gateway);
        const candidates = [...known].filter((gateway) => !tried.some((server) => sameGateway(server, gateway)));
        if (candidates.length === 0) throw error;
        current = await connect({ ...options, server: candidates[0], fallbackServers: candidates.slice(1) });
        opened.push(current);
        tried.push(current.server);
      }
    }
  } finally {
    for (const other of opened) await other.close().catch(() => {});
  }
}
