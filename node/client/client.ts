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
import { Watches } from './watches.ts';
import { withRetry } from './retry.ts';
import type { ConnectOptions, DcasClient, DownloadOptions, DownloadResult, DownloadStream, UploadOptions, Watch } from './types.ts';

/** Bytes sent per upload frame: the node's limit, capped so progress and credit stay fine-grained. */
const uploadFrameBytesMax = 1024 * 1024;
/** A download pauses the socket above this many unconsumed bytes and resumes below the low mark. */
const downloadQueueBytesHigh = 4 * 1024 * 1024;
const downloadQueueBytesLow = 1024 * 1024;
const finishTimeoutMs = 300_000;

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

/** Runs tasks one after another. */
function serial(): <T>(task: () => Promise<T>) => Promise<T> {
  let tail: Promise<unknown> = Promise.resolve();
  return (task) => {
    const run = tail.then(task, task);
    tail = run.catch(() => {});
    return run;
  };
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
  const deadlineAtMs = options.deadlineAtMs;
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  const welcome = connection.welcome;
  const requests = new Requests(connection, requestTimeoutMs);
  const watches = new Watches(connection, requests);
  let upload: ActiveUpload | undefined;
  let activeDownload: ActiveDownload | undefined;
  const uploadTurn = serial();
  const downloadTurn = serial();
  const send = (message: ClientMessage) => connection.send(message);

  function onError(message: ErrorMessage): void {
    const error = errorFrom(message);
    const aboutUpload = upload !== undefined && message.jobId === upload.jobId;
    if (aboutUpload) {
      upload!.failure = error;
      upload!.wake?.();
    }
    const aboutDownload = activeDownload !== undefined && message.id === activeDownload.requestId;
    if (aboutDownload) activeDownload!.onError(error);
    const answered = requests.settle(message.id, message);
    if (!answered && !aboutUpload && !aboutDownload && message.id === undefined) connection.closingError = error;
  }

  const handlers: MessageHandlers = {
    error: onError,
    queued: (message) => requests.queued(message),
    credit(message) {
      if (upload !== undefined && upload.jobId === message.jobId) {
        upload.credit += message.bytes;
        upload.wake?.();
      }
    },
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
      if (upload !== undefined) {
        upload.failure ??= closedError;
        upload.wake?.();
      }
      activeDownload?.onError(closedError);
      watches.onClosed(closedError);
    },
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
    return withRetry(() => runUpload(source, uploadOptions, () => (consumed = true)), deadlineAtMs, options.retry, () => !connection.closed && (replayable || !consumed));
  }

  async function runUpload(source: string | Uint8Array | AsyncIterable<Uint8Array>, uploadOptions: UploadOptions, onConsumed: () => void): Promise<JobView> {
    const opened = await openSource(source, uploadOptions);
    let accepted: UploadAcceptedMessage;
    try {
      accepted = await requests.request<UploadAcceptedMessage>(
        { type: 'upload', id: requests.nextId(), fileName: opened.fileName, mode: uploadOptions.mode ?? 'compress', chunkSize: uploadOptions.chunkSize, size: opened.size, codec: uploadOptions.codec, format: uploadOptions.format, image: uploadOptions.image },
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
          connection.sendBinary(frame.subarray(at, at + length));
          active.credit -= length;
          at += length;
          sentBytes += length;
          uploadOptions.onProgress?.({ jobId: active.jobId, bytes: sentBytes, totalBytes: opened.size ?? null });
        }
      }
      if (active.failure !== undefined) throw active.failure;
      ending = true;
      const done = await requests.request<UploadDoneMessage>({ type: 'upload-end', id: requests.nextId(), jobId: active.jobId }, 'upload-done', finishTimeoutMs);
      return done.job;
    } catch (error) {
      // Free the connection for the next upload unless the node already ended this one.
      if (!ending && !connection.closed) {
        const reason = error instanceof Error ? error.message.slice(0, 200) : 'client error';
        send({ type: 'upload-abort', id: requests.nextId(), jobId: active.jobId, reason });
      }
      if (error instanceof DcasClientError && error.jobId === undefined) throw new DcasClientError(error.code, error.message, active.jobId);
      throw error;
    } finally {
      upload = undefined;
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
    upload: (source, uploadOptions = {}) => uploadTurn(() => uploadRetrying(source, uploadOptions)),
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
