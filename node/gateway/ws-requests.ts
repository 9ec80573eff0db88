/**
 * A welcomed connection's requests: run at most requestsInFlightMax at a time, in arrival order, each by
 * the handler of its type. While some wait, the socket is not read, so a client that floods requests is
 * slowed by TCP, not buffered for.
 */
import { closeCodes, type ClientMessage } from '../protocol/index.ts';
import { ConnectionClosed, type Connection } from './ws-connection.ts';
import type { WebSocketDownloads } from './ws-downloads.ts';
import { assert, describeError, getJob, type WebSocketParts } from './ws-parts.ts';
import type { WebSocketUploads } from './ws-uploads.ts';
import type { WebSocketWatches } from './ws-watches.ts';

type Handlers = { [Type in ClientMessage['type']]: (connection: Connection, message: Extract<ClientMessage, { type: Type }>) => void };

/** Requests a node answers before its jobs service runs: they need none. */
const withoutJobs: ReadonlySet<ClientMessage['type']> = new Set(['hello', 'unwatch', 'download-cancel']);

export class WebSocketRequests {
  readonly #parts: WebSocketParts;
  readonly #handlers: Handlers;

  constructor(parts: WebSocketParts, uploads: WebSocketUploads, watches: WebSocketWatches, downloads: WebSocketDownloads) {
    this.#parts = parts;
    const jobs = () => parts.jobs!;
    this.#handlers = {
      hello: (connection, message) => connection.rejectRequest('OUT_OF_ORDER', 'hello was already received on this connection', { id: message.id }),
      upload: (connection, message) => this.#run(connection, message, 'starting the upload', () => uploads.start(connection, message)),
      'upload-end': (connection, message) => uploads.end(connection, message),
      'upload-abort': (connection, message) => uploads.abort(connection, message),
      watch: (connection, message) => this.#run(connection, message, `watching job ${message.jobId}`, () => watches.start(connection, message)),
      unwatch: (connection, message) => watches.unwatch(connection, message),
      status: (connection, message) =>
        this.#run(connection, message, `reading job ${message.jobId}`, () => getJob(parts, message.jobId).then((job) => connection.send({ type: 'job', id: message.id, job }))),
      jobs: (connection, message) => {
        const limit = Math.min(message.limit ?? parts.limits.jobsListMax, parts.limits.jobsListMax);
        this.#run(connection, message, 'listing jobs', () => jobs().listJobs({ limit }).then((list) => connection.send({ type: 'jobs', id: message.id, jobs: list.slice(0, limit) })));
      },
      download: (connection, message) => this.#run(connection, message, `downloading job ${message.jobId}`, () => downloads.start(connection, message)),
      delete: (connection, message) =>
        this.#run(connection, message, `deleting job ${message.jobId}`, () =>
          jobs().deleteJob(message.jobId).then((deleted) => connection.send({ type: 'deleted', id: message.id, jobId: deleted.id, state: deleted.state, cancelled: deleted.cancelled })),
        ),
      'download-cancel': (connection, message) => downloads.cancel(connection, message),
    };
  }

  /** A request of a welcomed connection: runs now if there is room, else waits its turn. */
  take(connection: Connection, message: ClientMessage): void {
    const { requestsInFlightMax, requestsQueuedMax } = this.#parts.limits;
    if (connection.queued.length === 0 && connection.requestsInFlight < requestsInFlightMax) {
      this.#dispatch(connection, message);
      return;
    }
    if (connection.queued.length >= requestsQueuedMax) {
      connection.closeFor('BUSY', `more than ${requestsQueuedMax} requests waiting on one connection`, closeCodes.policyViolation);
      return;
    }
    connection.queued.push(message);
    connection.socket.pause();
  }

  #done(connection: Connection): void {
    connection.requestsInFlight--;
    assert(connection.requestsInFlight >= 0, `connection ${connection.id}: more requests ended than started`);
    if (connection.closing) return;
    while (connection.queued.length > 0 && connection.requestsInFlight < this.#parts.limits.requestsInFlightMax) this.#dispatch(connection, connection.queued.shift()!);
    if (connection.queued.length === 0) connection.socket.resume();
  }

  #dispatch(connection: Connection, message: ClientMessage): void {
    if (this.#parts.jobs === undefined && !withoutJobs.has(message.type)) {
      connection.rejectRequest('NOT_READY', `node ${this.#parts.node} has no jobs service running yet`, { id: message.id });
      return;
    }
    // The table's type ties each handler to its message type; the lookup by `message.type` keeps that tie.
    const handler = this.#handlers[message.type] as (connection: Connection, message: ClientMessage) => void;
    handler(connection, message);
  }

  /** Runs a request that does asynchronous work; its failure becomes an error frame about that request. */
  #run(connection: Connection, message: ClientMessage, what: string, work: () => Promise<void>): void {
    connection.requestsInFlight++;
    void work()
      .catch((error: unknown) => {
        if (error instanceof ConnectionClosed) return;
        const { code, message: text, retryAfterMs } = describeError(this.#parts, error, what);
        connection.sendError(code, text, { id: message.id, jobId: 'jobId' in message ? message.jobId : undefined, retryAfterMs });
      })
      .finally(() => this.#done(connection));
  }
}
