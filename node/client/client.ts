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
import { stat } from 'node:fs/promises';
import { FileError, writeAtomically } from '../codec/index.ts';
import type { JobView } from '../jobs/index.ts';
import type {
  ClientMessage,
  DeletedMessage,
  DownloadEndMessage,
  DownloadStartMessage,
  ErrorMessage,
  JobMessage,
  JobsListMessage,
  ServerMessage,
  UploadAcceptedMessage,
  UploadDoneMessage,
} from '../protocol/index.ts';
import { Connection, deadlinePassed, errorFrom, webSocketUrl } from './connection.ts';
import { DcasClientError } from './errors.ts';
import { Requests } from './requests.ts';
import { serial } from './turns.ts';
import { Uploads } from './uploads.ts';
import { Watches } from './watches.ts';
import { withRetry } from './retry.ts';
import type { ConnectOptions, DcasClient, DownloadOptions, DownloadResult, DownloadStream, UploadOptions, Watch } from './types.ts';

/** A download pauses the socket above this many unconsumed bytes and resumes below the low mark. */
const downloadQueueBytesHigh = 4 * 1024 * 1024;
const downloadQueueBytesLow = 1024 * 1024;

interface ActiveDownload {
  requestId: number;
  started: boolean;
  onStart(message: DownloadStartMessage): void;
  onBytes(bytes: Buffer): void;
  onEnd(message: DownloadEndMessage): void;
  onError(error: Error): void;
}

/** What the client does with each kind of message from the node; a kind without a handler is a reply. */
type MessageHandlers = { [Type in ServerMessage['type']]?: (message: Extract<ServerMessage, { type: Type }>) => void };

function dispatch(handlers: MessageHandlers, message: ServerMessage, requests: Requests): void {
  // Own keys only: a node's "type" of "hasOwnProperty" must not find Object.prototype's.
  const handler = Object.hasOwn(handlers, message.type) ? (handlers[message.type] as (message: ServerMessage) => void) : undefined;
  if (handler !== undefined) handler(message);
  else requests.settle((message as { id?: unknown }).id, message);
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

async function connectTo(options: ConnectOptions): Promise<DcasClient> {
  const connection = await Connection.open(options);
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  const welcome = connection.welcome;
  const requests = new Requests(connection, requestTimeoutMs);
  const uploads = new Uploads(connection, requests, { retry: options.retry, deadlineAtMs: options.deadlineAtMs, requestTimeoutMs });
  const watches = new Watches(connection, requests);
  let activeDownload: ActiveDownload | undefined;
  const downloadTurn = serial();
  const send = (message: ClientMessage) => connection.send(message);

  function onError(message: ErrorMessage): void {
    const error = errorFrom(message);
    const aboutUpload = uploads.onError(message.jobId, error);
    const aboutDownload = activeDownload !== undefined && message.id === activeDownload.requestId;
    if (aboutDownload) activeDownload!.onError(error);
    const answered = requests.settle(message.id, message);
    if (!answered && !aboutUpload && !aboutDownload && message.id === undefined) connection.closingError = error;
  }

  const handlers: MessageHandlers = {
    error: onError,
    queued: (message) => requests.queued(message),
    credit: (message) => uploads.onCredit(message),
    job(message) {
      requests.settle(message.id, message);
      watches.deliver(message.job);
    },
    'download-start'(message) {
      if (activeDownload !== undefined && message.id === activeDownload.requestId) activeDownload.onStart(message);
    },
    'download-end'(message) {
      if (activeDownload !== undefined && message.id === activeDownload.requestId) activeDownload.onEnd(message);
    },
  };

  connection.listen({
    onMessage: (message) => dispatch(handlers, message, requests),
    onBinary(bytes) {
      if (activeDownload?.started) activeDownload.onBytes(bytes);
    },
    onClose(closedError) {
      requests.rejectAll(closedError);
      uploads.onClosed(closedError);
      activeDownload?.onError(closedError);
      watches.onClosed(closedError);
    },
  });

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
    const setPaused = (value: boolean) => connection.backpressure.pause(value);
    const finish = () => {
      if (activeDownload === active) activeDownload = undefined;
      setPaused(false);
      release();
    };
    const active: ActiveDownload = {
      requestId: requests.nextId(),
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
      if (!connection.closed) send({ type: 'download-cancel', jobId });
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
    server: connection.server,
    gateways: () => connection.gateways,
    limits: welcome.limits,
    auth: welcome.auth,
    upload: (source, uploadOptions = {}) => uploads.upload(source, uploadOptions),
    async status(jobId) {
      return (await requests.request<JobMessage>({ type: 'status', id: requests.nextId(), jobId }, 'job')).job;
    },
    async jobs(listOptions = {}) {
      return (await requests.request<JobsListMessage>({ type: 'jobs', id: requests.nextId(), limit: listOptions.limit }, 'jobs')).jobs;
    },
    watch: (jobId, onJob) => watches.watch(jobId, onJob),
    async delete(jobId) {
      const deleted = await requests.request<DeletedMessage>({ type: 'delete', id: requests.nextId(), jobId }, 'deleted');
      return { jobId: deleted.jobId, state: deleted.state, cancelled: deleted.cancelled };
    },
    waitForCompletion: (jobId, waitOptions) => watches.waitForCompletion(jobId, waitOptions),
    download,
    downloadToFile,
    close: () => connection.close(),
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
