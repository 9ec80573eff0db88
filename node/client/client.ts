/**
 * The DCaS client: one WebSocket connection to a node's gateway, speaking docs/PROTOCOL.md.
 *
 * Requests carry an id and are matched to their replies, so status, list and watch calls may overlap.
 * Uploads run one at a time per client (the protocol allows one per connection), as do downloads;
 * further calls wait their turn. Memory stays bounded both ways: an upload never has more than the
 * node's credit in flight, and a download pauses the socket while its consumer is behind, so TCP
 * slows the node down instead of this process buffering the file.
 *
 * This file connects (with failover and retry) and composes one part per concern: connection.ts
 * (handshake, heartbeat watchdog, deadline, close), requests.ts, uploads.ts, watches.ts and
 * downloads.ts; it routes each message from the node to the part it is about.
 */
import type { JobView } from '../jobs/index.ts';
import type { DeletedMessage, ErrorMessage, JobMessage, JobsListMessage, ServerMessage } from '../protocol/index.ts';
import { Connection, deadlinePassed, errorFrom, webSocketUrl } from './connection.ts';
import { DcasClientError } from './errors.ts';
import { Downloads } from './downloads.ts';
import { Requests } from './requests.ts';
import { Uploads } from './uploads.ts';
import { Watches } from './watches.ts';
import { withRetry } from './retry.ts';
import type { ConnectOptions, DcasClient } from './types.ts';

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

/** One connected client, one part per concern. */
interface Parts {
  connection: Connection;
  requests: Requests;
  uploads: Uploads;
  watches: Watches;
  downloads: Downloads;
}

async function connectTo(options: ConnectOptions): Promise<DcasClient> {
  const connection = await Connection.open(options);
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000;
  const requests = new Requests(connection, requestTimeoutMs);
  const parts: Parts = {
    connection,
    requests,
    uploads: new Uploads(connection, requests, { retry: options.retry, deadlineAtMs: options.deadlineAtMs, requestTimeoutMs }),
    watches: new Watches(connection, requests),
    downloads: new Downloads(connection, requests, requestTimeoutMs),
  };
  const handlers = messageHandlers(parts);
  connection.listen({
    onMessage: (message) => dispatch(handlers, message, requests),
    onBinary: (bytes) => parts.downloads.onBytes(bytes),
    onClose(closedError) {
      requests.rejectAll(closedError);
      parts.uploads.onClosed(closedError);
      parts.downloads.onClosed(closedError);
      parts.watches.onClosed(closedError);
    },
  });
  return clientOf(parts);
}

function messageHandlers(parts: Parts): MessageHandlers {
  return {
    error: (message) => onErrorMessage(parts, message),
    queued: (message) => parts.requests.queued(message),
    credit: (message) => parts.uploads.onCredit(message),
    job(message) {
      parts.requests.settle(message.id, message);
      parts.watches.deliver(message.job);
    },
    'download-start': (message) => parts.downloads.onStart(message),
    'download-end': (message) => parts.downloads.onEnd(message),
  };
}

/** An error frame fails what it is about; one about nothing in particular is the node's last word before it closes. */
function onErrorMessage(parts: Parts, message: ErrorMessage): void {
  const error = errorFrom(message);
  const aboutUpload = parts.uploads.onError(message.jobId, error);
  const aboutDownload = parts.downloads.onError(message.id, error);
  const answered = parts.requests.settle(message.id, message);
  if (!answered && !aboutUpload && !aboutDownload && message.id === undefined) parts.connection.closingError = error;
}

function clientOf({ connection, requests, uploads, watches, downloads }: Parts): DcasClient {
  const welcome = connection.welcome;
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
    download: (jobId, downloadOptions) => downloads.download(jobId, downloadOptions),
    downloadToFile: (jobId, path, fileOptions) => downloads.downloadToFile(jobId, path, fileOptions),
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
