/**
 * The gateway's WebSocket side (path /ws): one connection = hello, then requests. docs/PROTOCOL.md is
 * the specification; this file is its implementation.
 *
 * Rules that keep a node safe from its clients:
 * - Nothing but hello is read before the hello; a connection that sends none is closed (slow-loris).
 * - Upload bytes are accepted only against credit, and credit is granted back only after the jobs room
 *   took earlier bytes (`session.write` resolved), so the bytes a node holds for one upload never
 *   exceed the window however fast its client sends. Overrunning the credit closes the connection.
 * - Every size is capped: frames (by ws's maxPayload, before a payload is buffered), control messages,
 *   connections, uploads, watches, queued download bytes, bad messages per connection.
 * - What a node sends is capped too: every send checks the bytes already queued to that client, and a
 *   client over its budget is dropped (it is not reading); pongs are bounded by ws (maxPendingAutoPongs).
 *   A connection's requests run a few at a time; while more wait, its socket is not read.
 * - Idle sockets cannot lock others out: sockets before hello are counted apart from welcomed ones,
 *   per address, and a new one from a full address replaces that address's oldest.
 * - A failure in one connection is answered on that connection only; the process never crashes.
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { CodecError } from '../codec/index.ts';
import { ProposalError } from '../cluster/index.ts';
import { JobError, type JobService, type JobView, type UploadSession } from '../jobs/index.ts';
import { BusyError, type AdmissionStats, type AdmissionTicket, type QueuedAdmission, type UploadAdmission } from './admission.ts';
import type { TokenCheck } from './auth.ts';
import { parseClientMessage } from './messages.ts';
import type { GatewayMetrics, GatewayStats } from './metrics.ts';
import {
  closeCodes,
  CreditReceiver,
  errorCodes,
  protocolVersion,
  protocolVersionsSupported,
  type ClientMessage,
  type DownloadMessage,
  type ErrorCode,
  type ProtocolLimits,
  type RequestId,
  type ServerMessage,
  type UploadMessage,
  type WatchMessage,
} from '../protocol/index.ts';

export interface GatewayLimits extends ProtocolLimits {
  /** Welcomed (past hello) WebSocket connections; one more is refused at the upgrade with HTTP 503. */
  connectionsMax: number;
  /**
   * Welcomed connections from one client address, enforced only when the node has no token: then
   * clients are anonymous and the address is all that tells them apart. With a token, a welcomed
   * connection proved it holds it, and loopback clients all share 127.0.0.1, so only the total applies.
   */
  connectionsPerAddressMax: number;
  /** Connections not yet past hello, over all addresses; one more is refused with HTTP 503. */
  pendingConnectionsMax: number;
  /** Connections not yet past hello from one address; one more closes that address's oldest such. */
  pendingConnectionsPerAddressMax: number;
  /** Bytes queued to a client's socket beyond which the node stops sending to it and drops it. */
  replyBufferedBytesMax: number;
  /** Requests of one connection the node works on at once; more wait, and the socket is not read. */
  requestsInFlightMax: number;
  /** Requests of one connection waiting their turn; more closes the connection (BUSY). */
  requestsQueuedMax: number;
  /** A connection that has not said hello after this long is closed. */
  helloTimeoutMs: number;
  /** A watched job's updates are sent at most this often (the latest view wins). */
  watchIntervalMs: number;
  /** A download waits while more than this many bytes are queued to its client's socket. */
  downloadBufferedBytesMax: number;
  /** Uploads waiting for a slot past uploadsMax (config gateway.uploadQueueMax); one more gets BUSY. */
  uploadQueueMax: number;
  /** An upload waiting this long in the queue without a slot gets BUSY with a retry-after. */
  uploadQueueTimeoutMs: number;
  /**
   * Uploads running or waiting from one client address, only when the node has no token (as
   * connectionsPerAddressMax): one more is BUSY here, HTTP 429 in the REST API.
   */
  uploadsPerAddressMax: number;
  /** Request-level errors one connection may cause before it is closed. */
  badMessagesMax: number;
  /** Most jobs one `jobs` request lists. */
  jobsListMax: number;
}

export const defaultGatewayLimits: GatewayLimits = {
  frameBytesMax: 1024 * 1024,
  controlBytesMax: 64 * 1024,
  // Memory per upload is about this window plus one chunk being assembled (4 MiB by default); with
  // 16 uploads that stays within a node's memory bound. On loopback a 2 MiB window loses no speed.
  uploadWindowBytes: 2 * 1024 * 1024,
  uploadsMax: 16,
  watchesMax: 64,
  heartbeatMs: 15_000,
  uploadIdleMs: 60_000,
  connectionsMax: 512,
  connectionsPerAddressMax: 128,
  // A program that opens many connections at once (a load test) has them all pending for a round trip;
  // 64 covers such a burst, and idle sockets beyond it only ever replace each other.
  pendingConnectionsMax: 256,
  pendingConnectionsPerAddressMax: 64,
  // A reply is sent whole even when it alone is large (a long job list), so this bounds the backlog of
  // a client that does not read, not the size of one reply.
  replyBufferedBytesMax: 8 * 1024 * 1024,
  requestsInFlightMax: 16,
  requestsQueuedMax: 1_024,
  helloTimeoutMs: 5_000,
  watchIntervalMs: 100,
  downloadBufferedBytesMax: 1024 * 1024,
  // A waiting upload costs a socket and a few hundred bytes, no body: a queue many times uploadsMax is cheap.
  uploadQueueMax: 256,
  uploadQueueTimeoutMs: 120_000,
  uploadsPerAddressMax: 32,
  badMessagesMax: 16,
  jobsListMax: 1_000,
};

export interface WebSocketGatewayOptions {
  node: string;
  jobs: JobService | undefined;
  /** Upload slots and their queue, shared with the HTTP API. */
  admission: UploadAdmission;
  tokenCheck: TokenCheck;
  limits: GatewayLimits;
  logger: Logger;
  metrics: () => GatewayMetrics | undefined;
}

export interface WebSocketGateway {
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void;
  stats(): Omit<GatewayStats, keyof AdmissionStats> & { uploadBufferedBytesPeak: number };
  /** Closes every connection (1001), aborts unfinished uploads and waits for those aborts. */
  close(): Promise<void>;
}

type UploadPhase = 'receiving' | 'finishing' | 'failed' | 'aborted' | 'done';

interface UploadState {
  requestId: RequestId | undefined;
  jobId: string;
  session: UploadSession;
  /** The node's upload slot, given back when the upload leaves receiving/finishing. */
  ticket: AdmissionTicket;
  phase: UploadPhase;
  /** The credit window: bytes granted, received, buffered for `session.write`, owed back. */
  credit: CreditReceiver;
  /** Writes run one after another on this chain, in arrival order. */
  tail: Promise<void>;
  idleTimer: NodeJS.Timeout | undefined;
  failure: { code: ErrorCode; message: string } | undefined;
}

interface WatchState {
  requestId: RequestId | undefined;
  latest: JobView | undefined;
  timer: NodeJS.Timeout | undefined;
  sentAtMs: number;
  unsubscribe: (() => void) | undefined;
  stopped: boolean;
}

interface DownloadState {
  jobId: string;
  cancelled: boolean;
}

/** One socket's place in the admission counts, from the upgrade request until the socket closes. */
interface Admission {
  address: string;
  socket: Duplex;
  welcomed: boolean;
  released: boolean;
}

interface Connection {
  id: number;
  socket: WebSocket;
  remote: string;
  admission: Admission;
  /** Requests being worked on; beyond requestsInFlightMax the rest wait in `queued`. */
  requestsInFlight: number;
  queued: ClientMessage[];
  welcomed: boolean;
  closing: boolean;
  closed: boolean;
  alive: boolean;
  helloTimer: NodeJS.Timeout | undefined;
  badMessages: number;
  uploadStarting: boolean;
  /** An upload waiting in the admission queue; left when the connection closes. */
  queuedUpload: QueuedAdmission | undefined;
  upload: UploadState | undefined;
  download: DownloadState | undefined;
  watches: Map<string, WatchState>;
  closedPromise: Promise<void>;
}

class ConnectionClosed extends Error {}

/** The client's IP address; IPv4 clients of a dual-stack socket count as their IPv4 address. */
function clientAddress(request: IncomingMessage): string {
  const address = request.socket.remoteAddress ?? 'unknown';
  return address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
}

/** Answers an upgrade request with a plain HTTP error and closes the socket. */
export function refuseUpgrade(socket: Duplex, status: number, code: string, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  // A full node says when to come back, as the HTTP API does; clients add their own jitter.
  const retryAfter = status === 503 ? `Retry-After: ${upgradeRetryAfterSeconds}\r\n` : '';
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${retryAfter}Connection: close\r\n\r\n${body}`);
}

/** Seconds a client refused at the upgrade (node full) is told to wait before trying again. */
const upgradeRetryAfterSeconds = 2;
/**
 * Upload credit is granted back once the gateway owes at least window / creditGrantsPerWindow bytes (or
 * when the upload's buffer empties), so a full window comes back in about this many credit messages.
 */
const creditGrantsPerWindow = 8;
/** After a close frame, a peer that does not complete the close handshake is cut off after this long. */
const closeGraceMs = 2_000;

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`gateway invariant broken: ${message}`);
}

export function createWebSocketGateway(options: WebSocketGatewayOptions): WebSocketGateway {
  const { jobs, tokenCheck, limits, logger, node } = options;
  const server = new WebSocketServer({ noServer: true, maxPayload: limits.frameBytesMax, perMessageDeflate: false, clientTracking: false });
  const connections = new Set<Connection>();
  const pendingAborts = new Set<Promise<void>>();
  let uploadsActive = 0;
  let downloadsActive = 0;
  let uploadBufferedBytes = 0;
  let uploadBufferedBytesPeak = 0;
  let clientsDropped = 0;
  let stopping = false;

  const heartbeat = setInterval(() => {
    for (const connection of connections) {
      if (!connection.alive) {
        logger.info({ connection: connection.id, remote: connection.remote }, 'gateway: no pong within a heartbeat; dropping the connection');
        connection.socket.terminate();
        continue;
      }
      connection.alive = false;
      if (connection.socket.readyState === WebSocket.OPEN) connection.socket.ping();
    }
  }, limits.heartbeatMs);
  heartbeat.unref();

  // Sending.

  function send(connection: Connection, message: ServerMessage): void {
    if (message.type === 'error') options.metrics()?.protocolError(message.code);
    if (connection.socket.readyState !== WebSocket.OPEN || dropIfNotReading(connection)) return;
    connection.socket.send(JSON.stringify(message));
  }

  /**
   * Every send passes here: a client that lets more than its budget pile up in the node is not reading,
   * and buffering for it would grow the node's memory without bound. It is cut off at once (a close
   * frame would only queue behind the backlog), which also frees what was queued.
   */
  function dropIfNotReading(connection: Connection): boolean {
    const bufferedBytes = connection.socket.bufferedAmount;
    if (bufferedBytes <= limits.replyBufferedBytesMax) return false;
    if (!connection.closing) {
      clientsDropped++;
      logger.info({ connection: connection.id, remote: connection.remote, bufferedBytes }, 'gateway: client is not reading its replies; dropping it');
    }
    connection.closing = true;
    connection.socket.terminate();
    return true;
  }

  function sendError(connection: Connection, code: ErrorCode, message: string, context: { id?: RequestId; jobId?: string; retryAfterMs?: number } = {}): void {
    const frame: ServerMessage = { type: 'error', code, message };
    if (context.id !== undefined) frame.id = context.id;
    if (context.jobId !== undefined) frame.jobId = context.jobId;
    if (context.retryAfterMs !== undefined) frame.retryAfterMs = context.retryAfterMs;
    send(connection, frame);
  }

  /** An error about one request: the connection stays open, unless it keeps sending bad requests. */
  function rejectRequest(connection: Connection, code: ErrorCode, message: string, context: { id?: RequestId; jobId?: string } = {}): void {
    sendError(connection, code, message, context);
    if (code !== 'BAD_MESSAGE' && code !== 'OUT_OF_ORDER') return;
    connection.badMessages++;
    if (connection.badMessages >= limits.badMessagesMax) {
      closeFor(connection, 'BAD_MESSAGE', `${connection.badMessages} bad messages on one connection; closing it`, closeCodes.policyViolation);
    }
  }

  /** A protocol violation or a node-side end: an error frame, then the close handshake. */
  function closeFor(connection: Connection, code: ErrorCode, message: string, closeCode: number): void {
    if (connection.closing) return;
    sendError(connection, code, message);
    connection.closing = true;
    logger.info({ connection: connection.id, remote: connection.remote, code, reason: message }, 'gateway: closing a connection');
    if (connection.socket.readyState === WebSocket.OPEN) connection.socket.close(closeCode, code);
    // Read nothing more from a client being closed: one that floods would otherwise keep the node
    // parsing and discarding its frames until the grace period ends.
    connection.socket.pause();
    setTimeout(() => connection.socket.terminate(), closeGraceMs).unref();
  }

  /** Sends one download frame; waits while more than the bound is queued to this client. */
  function sendBinary(connection: Connection, frame: Uint8Array): Promise<void> {
    const socket = connection.socket;
    if (socket.readyState !== WebSocket.OPEN || dropIfNotReading(connection)) return Promise.reject(new ConnectionClosed());
    let written!: Promise<void>;
    written = new Promise<void>((resolve) => socket.send(frame, { binary: true }, () => resolve()));
    options.metrics()?.downloadBytes(frame.length);
    if (socket.bufferedAmount <= limits.downloadBufferedBytesMax) return Promise.resolve();
    // The callback of the last frame fires once everything before it left the process.
    return Promise.race([written, connection.closedPromise.then(() => Promise.reject(new ConnectionClosed()))]);
  }

  function describeError(error: unknown, what: string): { code: ErrorCode; message: string; retryAfterMs?: number } {
    if (error instanceof BusyError) return { code: 'BUSY', message: error.message, retryAfterMs: error.retryAfterMs };
    if (error instanceof JobError && (errorCodes as readonly string[]).includes(error.code)) return { code: error.code, message: error.message };
    // A node cut off from the majority knows no leader: its proposals time out. That is the cluster being
    // unavailable from here, not a bug, and a client should go to another gateway.
    if (error instanceof ProposalError && (error.code === 'NO_LEADER' || error.code === 'TIMEOUT')) {
      return { code: 'UNAVAILABLE', message: `${what} failed on node ${node}: it reaches no coordinator (${error.message}); try another node` };
    }
    if (error instanceof CodecError) {
      logger.error({ err: error }, `gateway: ${what} failed verification`);
      return { code: 'CORRUPT', message: error.message };
    }
    logger.error({ err: error }, `gateway: ${what} failed`);
    return { code: 'INTERNAL', message: `${what} failed on node ${node}; see its log` };
  }

  // Connections.

  // Admission. Sockets not yet past hello ("pending") and welcomed ones are counted apart, so idle
  // sockets can never take the slots of clients that proved themselves (docs/PROTOCOL.md, Limits).

  const pendingByAddress = new Map<string, Admission[]>();
  const welcomedByAddress = new Map<string, number>();
  let pendingCount = 0;
  let welcomedCount = 0;

  /** undefined when the socket may proceed, else why it is refused (HTTP 503). */
  function admit(admission: Admission): string | undefined {
    if (stopping) return `node ${node} is stopping`;
    if (welcomedCount >= limits.connectionsMax) return `node ${node} has ${limits.connectionsMax} connections open; try another node or later`;
    const fromAddress = pendingByAddress.get(admission.address) ?? [];
    if (fromAddress.length >= limits.pendingConnectionsPerAddressMax) {
      // The oldest has had the longest to say hello; a live client says it within a round trip.
      const oldest = fromAddress[0];
      logger.info({ remote: admission.address }, 'gateway: too many connections without hello from one address; closing the oldest');
      release(oldest);
      oldest.socket.destroy();
    } else if (pendingCount >= limits.pendingConnectionsMax) {
      return `node ${node} has ${limits.pendingConnectionsMax} connections waiting for hello; try again later`;
    }
    fromAddress.push(admission);
    pendingByAddress.set(admission.address, fromAddress);
    pendingCount++;
    return undefined;
  }

  function release(admission: Admission): void {
    if (admission.released) return;
    admission.released = true;
    if (admission.welcomed) {
      welcomedCount--;
      const left = (welcomedByAddress.get(admission.address) ?? 1) - 1;
      if (left === 0) welcomedByAddress.delete(admission.address);
      else welcomedByAddress.set(admission.address, left);
      return;
    }
    forgetPending(admission);
  }

  function forgetPending(admission: Admission): void {
    const fromAddress = pendingByAddress.get(admission.address) ?? [];
    const at = fromAddress.indexOf(admission);
    assert(at >= 0, `a pending connection from ${admission.address} is not counted`);
    fromAddress.splice(at, 1);
    if (fromAddress.length === 0) pendingByAddress.delete(admission.address);
    pendingCount--;
  }

  /** At hello: the socket moves from the pending count to the welcomed one, or gets why not. */
  function welcome(admission: Admission): string | undefined {
    if (admission.released) return `node ${node} closed this connection`;
    if (welcomedCount >= limits.connectionsMax) return `node ${node} has ${limits.connectionsMax} connections open; try another node or later`;
    const fromAddress = welcomedByAddress.get(admission.address) ?? 0;
    if (!tokenCheck.enabled && fromAddress >= limits.connectionsPerAddressMax) {
      return `node ${node} has ${limits.connectionsPerAddressMax} connections open from ${admission.address}; close some first`;
    }
    forgetPending(admission);
    admission.welcomed = true;
    welcomedCount++;
    welcomedByAddress.set(admission.address, fromAddress + 1);
    return undefined;
  }

  function handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const admission: Admission = { address: clientAddress(request), socket, welcomed: false, released: false };
    const refusal = admit(admission);
    if (refusal !== undefined) {
      refuseUpgrade(socket, 503, 'BUSY', refusal);
      return;
    }
    // One release path for every end: a handshake ws rejects, an eviction, a close, a crash.
    socket.once('close', () => release(admission));
    server.handleUpgrade(request, socket, head, (webSocket) => open(webSocket, request, admission));
  }

  function open(socket: WebSocket, request: IncomingMessage, admission: Admission): void {
    let markClosed!: () => void;
    const connection: Connection = {
      id: nextConnectionId++,
      socket,
      remote: `${request.socket.remoteAddress}:${request.socket.remotePort}`,
      admission,
      requestsInFlight: 0,
      queued: [],
      welcomed: false,
      closing: false,
      closed: false,
      alive: true,
      helloTimer: undefined,
      badMessages: 0,
      uploadStarting: false,
      queuedUpload: undefined,
      upload: undefined,
      download: undefined,
      watches: new Map(),
      closedPromise: new Promise<void>((resolve) => (markClosed = resolve)),
    };
    connections.add(connection);
    options.metrics()?.connectionOpened();
    connection.helloTimer = setTimeout(() => closeFor(connection, 'TIMEOUT', `no hello within ${limits.helloTimeoutMs} ms`, closeCodes.policyViolation), limits.helloTimeoutMs);
    socket.on('pong', () => (connection.alive = true));
    socket.on('error', (error) => {
      // ws has already started closing; a frame over maxPayload is refused here (close 1009).
      const tooBig = (error as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
      if (tooBig) options.metrics()?.protocolError('FRAME_TOO_LARGE');
      logger.info({ connection: connection.id, remote: connection.remote, err: error.message }, 'gateway: connection error');
    });
    socket.on('message', (data, isBinary) => {
      connection.alive = true;
      if (connection.closing) return;
      try {
        onFrame(connection, data, isBinary);
      } catch (error) {
        logger.error({ err: error, connection: connection.id }, 'gateway: a frame could not be handled');
        closeFor(connection, 'INTERNAL', `node ${node} failed to handle a frame; see its log`, closeCodes.internalError);
      }
    });
    socket.on('close', () => {
      connection.closed = true;
      connection.closing = true;
      connections.delete(connection);
      release(admission);
      markClosed();
      try {
        onClosed(connection);
      } catch (error) {
        logger.error({ err: error, connection: connection.id }, 'gateway: cleaning up a closed connection failed');
      }
    });
  }
  let nextConnectionId = 1;

  function onClosed(connection: Connection): void {
    clearTimeout(connection.helloTimer);
    connection.queuedUpload?.leave();
    connection.queuedUpload = undefined;
    const upload = connection.upload;
    connection.upload = undefined;
    if (upload !== undefined && upload.phase === 'receiving') endUpload(upload, 'aborted', 'client disconnected');
    if (connection.download !== undefined) connection.download.cancelled = true;
    for (const watch of connection.watches.values()) stopWatch(watch);
    connection.watches.clear();
  }

  function onFrame(connection: Connection, data: RawData, isBinary: boolean): void {
    const bytes = data as Buffer;
    if (!connection.welcomed && isBinary) {
      closeFor(connection, 'OUT_OF_ORDER', 'expected hello first, got a binary frame', closeCodes.policyViolation);
      return;
    }
    if (isBinary) {
      onUploadBytes(connection, bytes);
      return;
    }
    if (bytes.length > limits.controlBytesMax) {
      closeFor(connection, 'FRAME_TOO_LARGE', `a control message of ${bytes.length} bytes is over the limit of ${limits.controlBytesMax}`, closeCodes.messageTooBig);
      return;
    }
    const parsed = parseClientMessage(bytes.toString('utf8'));
    if (!connection.welcomed) {
      if (!parsed.ok) closeFor(connection, 'BAD_MESSAGE', parsed.message, closeCodes.policyViolation);
      else onHello(connection, parsed.message);
      return;
    }
    if (!parsed.ok) {
      rejectRequest(connection, 'BAD_MESSAGE', parsed.message, { id: parsed.id });
      return;
    }
    takeRequest(connection, parsed.message);
  }

  /**
   * A connection's requests run at most requestsInFlightMax at a time, in arrival order; while some
   * wait, the socket is not read, so a client that floods requests is slowed by TCP, not buffered for.
   */
  function takeRequest(connection: Connection, message: ClientMessage): void {
    if (connection.queued.length === 0 && connection.requestsInFlight < limits.requestsInFlightMax) {
      dispatch(connection, message);
      return;
    }
    if (connection.queued.length >= limits.requestsQueuedMax) {
      closeFor(connection, 'BUSY', `more than ${limits.requestsQueuedMax} requests waiting on one connection`, closeCodes.policyViolation);
      return;
    }
    connection.queued.push(message);
    connection.socket.pause();
  }

  function requestDone(connection: Connection): void {
    connection.requestsInFlight--;
    assert(connection.requestsInFlight >= 0, `connection ${connection.id}: more requests ended than started`);
    if (connection.closing) return;
    while (connection.queued.length > 0 && connection.requestsInFlight < limits.requestsInFlightMax) dispatch(connection, connection.queued.shift()!);
    if (connection.queued.length === 0) connection.socket.resume();
  }

  function onHello(connection: Connection, message: ClientMessage): void {
    if (message.type !== 'hello') {
      closeFor(connection, 'OUT_OF_ORDER', `expected hello first, got ${message.type}`, closeCodes.policyViolation);
      return;
    }
    if (!protocolVersionsSupported.includes(message.version)) {
      closeFor(connection, 'UNSUPPORTED_VERSION', `protocol version ${message.version} is not supported; node ${node} speaks ${protocolVersionsSupported.join(', ')}`, closeCodes.policyViolation);
      return;
    }
    if (!tokenCheck.matches(message.token)) {
      closeFor(connection, 'AUTH', message.token === undefined ? 'this node requires a token' : 'wrong token', closeCodes.policyViolation);
      return;
    }
    const refusal = welcome(connection.admission);
    if (refusal !== undefined) {
      closeFor(connection, 'BUSY', refusal, closeCodes.tryAgainLater);
      return;
    }
    clearTimeout(connection.helloTimer);
    connection.welcomed = true;
    const { frameBytesMax, controlBytesMax, uploadWindowBytes, uploadsMax, watchesMax, heartbeatMs, uploadIdleMs } = limits;
    send(connection, {
      type: 'welcome',
      version: protocolVersion,
      node,
      auth: tokenCheck.enabled ? 'token' : 'none',
      limits: { frameBytesMax, controlBytesMax, uploadWindowBytes, uploadsMax, watchesMax, heartbeatMs, uploadIdleMs },
    });
  }

  function dispatch(connection: Connection, message: ClientMessage): void {
    const context = { id: 'id' in message ? message.id : undefined };
    const run = (what: string, work: () => Promise<void>) => {
      connection.requestsInFlight++;
      return work()
        .catch((error: unknown) => {
          if (error instanceof ConnectionClosed) return;
          const { code, message: text, retryAfterMs } = describeError(error, what);
          sendError(connection, code, text, { ...context, jobId: 'jobId' in message ? message.jobId : undefined, retryAfterMs });
        })
        .finally(() => requestDone(connection));
    };
    if (jobs === undefined && message.type !== 'hello' && message.type !== 'unwatch' && message.type !== 'download-cancel') {
      rejectRequest(connection, 'NOT_READY', `node ${node} has no jobs service running yet`, context);
      return;
    }
    switch (message.type) {
      case 'hello':
        rejectRequest(connection, 'OUT_OF_ORDER', 'hello was already received on this connection', context);
        return;
      case 'upload':
        void run('starting the upload', () => startUpload(connection, message));
        return;
      case 'upload-end':
        endUploadRequest(connection, message.jobId, message.id);
        return;
      case 'upload-abort':
        abortUploadRequest(connection, message.jobId, message.reason, message.id);
        return;
      case 'watch':
        void run(`watching job ${message.jobId}`, () => startWatch(connection, message));
        return;
      case 'unwatch': {
        const jobIds = message.jobId === undefined ? [...connection.watches.keys()] : [message.jobId].filter((jobId) => connection.watches.has(jobId));
        for (const jobId of jobIds) {
          stopWatch(connection.watches.get(jobId)!);
          connection.watches.delete(jobId);
        }
        send(connection, { type: 'unwatched', id: message.id, jobIds });
        return;
      }
      case 'status':
        void run(`reading job ${message.jobId}`, () => getJob(message.jobId).then((job) => send(connection, { type: 'job', id: message.id, job })));
        return;
      case 'jobs': {
        const limit = Math.min(message.limit ?? limits.jobsListMax, limits.jobsListMax);
        void run('listing jobs', () => jobs!.listJobs({ limit }).then((list) => send(connection, { type: 'jobs', id: message.id, jobs: list.slice(0, limit) })));
        return;
      }
      case 'download':
        void run(`downloading job ${message.jobId}`, () => download(connection, message));
        return;
      case 'delete':
        void run(`deleting job ${message.jobId}`, () =>
          jobs!.deleteJob(message.jobId).then((deleted) => send(connection, { type: 'deleted', id: message.id, jobId: deleted.id, state: deleted.state, cancelled: deleted.cancelled })),
        );
        return;
      case 'download-cancel':
        // Idempotent: the download may have ended while this message was on its way.
        if (connection.download?.jobId === message.jobId) connection.download.cancelled = true;
        return;
    }
  }

  async function getJob(jobId: string): Promise<JobView> {
    const job = await jobs!.getJob(jobId);
    if (job === undefined) throw new JobError('NOT_FOUND', `job ${jobId}: not found on node ${node}`);
    return job;
  }

  // Uploads.

  async function startUpload(connection: Connection, message: UploadMessage): Promise<void> {
    const context = { id: message.id };
    if (connection.upload !== undefined || connection.uploadStarting) {
      const current = connection.upload;
      const detail = current?.phase === 'failed' ? `upload of job ${current.jobId} failed; send upload-abort for it first` : 'one upload at a time per connection';
      rejectRequest(connection, 'OUT_OF_ORDER', detail, context);
      return;
    }
    connection.uploadStarting = true;
    let ticket: AdmissionTicket | undefined;
    let session: UploadSession;
    try {
      ticket = await admitUpload(connection, message);
      if (ticket === undefined) return;
      session = await jobs!.startUpload({ fileName: message.fileName, mode: message.mode, chunkSize: message.chunkSize, size: message.size, codec: message.codec, format: message.format, image: message.image });
    } catch (error) {
      ticket?.release();
      throw error;
    } finally {
      connection.uploadStarting = false;
    }
    uploadsActive++;
    const upload: UploadState = {
      requestId: message.id,
      jobId: session.jobId,
      session,
      ticket,
      phase: 'receiving',
      credit: new CreditReceiver(limits.uploadWindowBytes, creditGrantsPerWindow),
      tail: Promise.resolve(),
      idleTimer: undefined,
      failure: undefined,
    };
    if (connection.closed) {
      endUpload(upload, 'aborted', 'client disconnected');
      return;
    }
    connection.upload = upload;
    armIdleTimer(connection, upload);
    logger.info({ connection: connection.id, job: upload.jobId, fileName: message.fileName, mode: message.mode, size: message.size }, 'gateway: upload started');
    send(connection, { type: 'upload-accepted', id: message.id, jobId: upload.jobId, credit: upload.credit.grantedBytes });
  }

  /**
   * A slot for the upload, after waiting in the node's queue if all are taken; the client hears its
   * place (`queued`) meanwhile. No credit is granted before the slot, so a waiting client sends no
   * bytes. undefined: the connection closed while waiting (the queue was left).
   */
  async function admitUpload(connection: Connection, message: UploadMessage): Promise<AdmissionTicket | undefined> {
    const address = tokenCheck.enabled ? undefined : connection.admission.address;
    const queued = options.admission.request({ onPlace: (place) => send(connection, { type: 'queued', id: message.id, place }) }, address);
    connection.queuedUpload = queued;
    try {
      const ticket = await Promise.race([queued.admitted, connection.closedPromise.then(() => undefined)]);
      if (ticket !== undefined && connection.closed) {
        ticket.release();
        return undefined;
      }
      return ticket;
    } finally {
      if (connection.queuedUpload === queued) connection.queuedUpload = undefined;
    }
  }

  function armIdleTimer(connection: Connection, upload: UploadState): void {
    clearTimeout(upload.idleTimer);
    upload.idleTimer = setTimeout(() => {
      if (upload.phase !== 'receiving') return;
      // While the jobs room still holds bytes, the client is waiting for credit: not its fault.
      if (upload.credit.bufferedBytes > 0) {
        armIdleTimer(connection, upload);
        return;
      }
      failUpload(connection, upload, { code: 'TIMEOUT', message: `upload of job ${upload.jobId}: nothing received for ${limits.uploadIdleMs} ms` });
    }, limits.uploadIdleMs);
    upload.idleTimer.unref();
  }

  function onUploadBytes(connection: Connection, bytes: Buffer): void {
    const upload = connection.upload;
    if (upload === undefined) {
      closeFor(connection, 'FLOW_CONTROL', 'a binary frame without an accepted upload (no credit)', closeCodes.policyViolation);
      return;
    }
    // An overrun is checked before data after upload-end, so a frame that is both gets FLOW_CONTROL.
    if (bytes.length > upload.credit.creditLeft) {
      closeFor(connection, 'FLOW_CONTROL', `upload of job ${upload.jobId}: a frame of ${bytes.length} bytes with ${upload.credit.creditLeft} bytes of credit left`, closeCodes.policyViolation);
      return;
    }
    if (upload.phase === 'finishing') {
      closeFor(connection, 'OUT_OF_ORDER', `upload of job ${upload.jobId}: data after upload-end`, closeCodes.policyViolation);
      return;
    }
    // Frames that were in flight when the upload failed are counted against the credit and dropped.
    const verdict = upload.credit.receive(bytes.length, upload.phase === 'receiving');
    assert(verdict.accepted, `job ${upload.jobId}: a frame within the credit was refused`);
    options.metrics()?.uploadBytes(bytes.length);
    if (upload.phase !== 'receiving') return;
    armIdleTimer(connection, upload);
    uploadBufferedBytes += bytes.length;
    uploadBufferedBytesPeak = Math.max(uploadBufferedBytesPeak, uploadBufferedBytes);
    upload.tail = upload.tail.then(() => writeUploadBytes(connection, upload, bytes));
  }

  /** One step of an upload's write chain; never rejects, so the chain keeps its accounting. */
  async function writeUploadBytes(connection: Connection, upload: UploadState, bytes: Buffer): Promise<void> {
    let written = false;
    let grantingBytes = 0;
    try {
      if (upload.phase === 'receiving' || upload.phase === 'finishing') {
        await upload.session.write(bytes);
        written = true;
      }
    } catch (error) {
      failUpload(connection, upload, describeError(error, `writing upload bytes of job ${upload.jobId}`));
    } finally {
      // Only bytes the jobs room took while the upload still receives come back as credit.
      grantingBytes = upload.credit.taken(bytes.length, written && upload.phase === 'receiving');
      uploadBufferedBytes -= bytes.length;
    }
    if (grantingBytes === 0) return;
    send(connection, { type: 'credit', jobId: upload.jobId, bytes: grantingBytes });
    armIdleTimer(connection, upload);
  }

  /** The upload fails; the connection stays open and drops its frames until upload-abort or upload-end. */
  function failUpload(connection: Connection, upload: UploadState, failure: { code: ErrorCode; message: string }, id = upload.requestId): void {
    if (upload.phase !== 'receiving' && upload.phase !== 'finishing') return;
    upload.failure = failure;
    sendError(connection, failure.code, failure.message, { id, jobId: upload.jobId });
    endUpload(upload, 'failed', failure.message);
  }

  /** Leaves the receiving/finishing phase for good: frees the node's upload slot, aborts the session after its writes. */
  function endUpload(upload: UploadState, phase: 'failed' | 'aborted' | 'done', reason: string): void {
    assert(upload.phase === 'receiving' || upload.phase === 'finishing', `job ${upload.jobId}: upload ended twice`);
    upload.phase = phase;
    clearTimeout(upload.idleTimer);
    uploadsActive--;
    upload.ticket.release();
    if (phase === 'done') return;
    logger.info({ job: upload.jobId, reason }, 'gateway: upload aborted');
    const aborted = upload.tail
      .then(() => upload.session.abort(reason))
      .catch((error: unknown) => logger.warn({ err: error, job: upload.jobId }, 'gateway: aborting an upload failed'));
    pendingAborts.add(aborted);
    void aborted.finally(() => pendingAborts.delete(aborted));
  }

  function endUploadRequest(connection: Connection, jobId: string, id: RequestId | undefined): void {
    const upload = connection.upload;
    if (upload === undefined || upload.jobId !== jobId) {
      rejectRequest(connection, 'OUT_OF_ORDER', `upload-end for job ${jobId}, which is not this connection's upload`, { id, jobId });
      return;
    }
    if (upload.phase === 'failed') {
      connection.upload = undefined;
      sendError(connection, upload.failure!.code, upload.failure!.message, { id, jobId });
      return;
    }
    if (upload.phase !== 'receiving') {
      rejectRequest(connection, 'OUT_OF_ORDER', `upload of job ${jobId} is already ending`, { id, jobId });
      return;
    }
    upload.phase = 'finishing';
    clearTimeout(upload.idleTimer);
    // From here a disconnect no longer aborts: the client sent everything it meant to.
    upload.tail = upload.tail.then(async () => {
      // Nothing more can arrive for this upload: the connection is free for the next one once this ends.
      const release = () => {
        if (connection.upload === upload) connection.upload = undefined;
      };
      if (upload.phase !== 'finishing') {
        // A write failed after upload-end was sent: answer the upload-end with that failure too.
        release();
        if (upload.failure !== undefined) sendError(connection, upload.failure.code, upload.failure.message, { id, jobId });
        return;
      }
      let job: JobView;
      try {
        job = await upload.session.finish();
      } catch (error) {
        failUpload(connection, upload, describeError(error, `finishing the upload of job ${jobId}`), id);
        release();
        return;
      }
      endUpload(upload, 'done', 'finished');
      release();
      logger.info({ connection: connection.id, job: jobId, bytes: upload.credit.receivedBytes }, 'gateway: upload finished');
      send(connection, { type: 'upload-done', id, job });
    });
  }

  function abortUploadRequest(connection: Connection, jobId: string, reason: string | undefined, id: RequestId | undefined): void {
    const upload = connection.upload;
    if (upload === undefined || upload.jobId !== jobId) {
      rejectRequest(connection, 'OUT_OF_ORDER', `upload-abort for job ${jobId}, which is not this connection's upload`, { id, jobId });
      return;
    }
    if (upload.phase === 'finishing') {
      rejectRequest(connection, 'OUT_OF_ORDER', `upload of job ${jobId} is already ending`, { id, jobId });
      return;
    }
    if (upload.phase === 'receiving') endUpload(upload, 'aborted', `client aborted the upload${reason ? `: ${reason}` : ''}`);
    connection.upload = undefined;
    send(connection, { type: 'upload-aborted', id, jobId });
  }

  // Watches.

  async function startWatch(connection: Connection, message: WatchMessage): Promise<void> {
    const { jobId, id } = message;
    const existing = connection.watches.get(jobId);
    if (existing !== undefined) {
      // Watching twice is not an error; the client gets the job now, as on a first watch.
      send(connection, { type: 'job', id, job: await getJob(jobId) });
      return;
    }
    if (connection.watches.size >= limits.watchesMax) {
      rejectRequest(connection, 'BUSY', `a connection may watch at most ${limits.watchesMax} jobs`, { id, jobId });
      return;
    }
    const watch: WatchState = { requestId: id, latest: undefined, timer: undefined, sentAtMs: 0, unsubscribe: undefined, stopped: false };
    connection.watches.set(jobId, watch);
    try {
      // No read before subscribing: the jobs room's watch subscribes first and then delivers the job
      // as it is, so a change between a read and a subscription cannot be lost here.
      const unsubscribe = await jobs!.watch(jobId, (job) => offerWatchedJob(connection, watch, job));
      if (watch.stopped) unsubscribe();
      else watch.unsubscribe = unsubscribe;
    } catch (error) {
      stopWatch(watch);
      if (connection.watches.get(jobId) === watch) connection.watches.delete(jobId);
      throw error;
    }
  }

  /** Keeps the latest view; sends at most one per interval, and waits while the client is behind. */
  function offerWatchedJob(connection: Connection, watch: WatchState, job: JobView): void {
    if (watch.stopped) return;
    watch.latest = job;
    if (watch.timer !== undefined) return;
    const flush = () => {
      watch.timer = undefined;
      if (watch.stopped || watch.latest === undefined) return;
      const waitMs = watch.sentAtMs + limits.watchIntervalMs - Date.now();
      const behind = connection.socket.bufferedAmount > limits.downloadBufferedBytesMax;
      if (waitMs > 0 || behind) {
        watch.timer = setTimeout(flush, Math.max(waitMs, limits.watchIntervalMs));
        return;
      }
      send(connection, { type: 'job', id: watch.requestId, job: watch.latest });
      watch.latest = undefined;
      watch.sentAtMs = Date.now();
    };
    flush();
  }

  function stopWatch(watch: WatchState): void {
    watch.stopped = true;
    clearTimeout(watch.timer);
    watch.timer = undefined;
    const unsubscribe = watch.unsubscribe;
    watch.unsubscribe = undefined;
    try {
      unsubscribe?.();
    } catch (error) {
      logger.warn({ err: error }, 'gateway: unsubscribing a watch failed');
    }
  }

  // Downloads.

  async function download(connection: Connection, message: DownloadMessage): Promise<void> {
    const { jobId, id, compressed } = message;
    if (connection.download !== undefined) {
      rejectRequest(connection, 'OUT_OF_ORDER', `one download at a time per connection; job ${connection.download.jobId} is downloading`, { id, jobId });
      return;
    }
    const state: DownloadState = { jobId, cancelled: false };
    connection.download = state;
    downloadsActive++;
    try {
      const source = await jobs!.openDownload(jobId, { compressed });
      if (connection.closed) {
        await source.stream[Symbol.asyncIterator]().return?.();
        return;
      }
      // The protocol promises the original's SHA-256 with either form; the jobs room may leave it to the job.
      const sha256 = source.sha256 ?? (await jobs!.getJob(jobId))?.sha256 ?? null;
      send(connection, { type: 'download-start', id, jobId, compressed, size: source.size, fileName: source.fileName, sha256 });
      let sentBytes = 0;
      for await (const piece of source.stream) {
        if (state.cancelled) break;
        for (let at = 0; at < piece.length && !state.cancelled; at += limits.frameBytesMax) {
          const frame = piece.subarray(at, at + limits.frameBytesMax);
          await sendBinary(connection, frame);
          sentBytes += frame.length;
        }
      }
      if (connection.closed) return;
      if (!state.cancelled && sentBytes !== source.size) {
        throw new Error(`download of job ${jobId}: the stream gave ${sentBytes} bytes, the jobs room announced ${source.size}`);
      }
      send(connection, { type: 'download-end', id, jobId, bytes: sentBytes, cancelled: state.cancelled });
    } finally {
      downloadsActive--;
      if (connection.download === state) connection.download = undefined;
    }
  }

  return {
    handleUpgrade,
    stats: () => ({
      connections: connections.size,
      connectionsPending: pendingCount,
      clientsDropped,
      uploadsActive,
      downloadsActive,
      watches: [...connections].reduce((sum, connection) => sum + connection.watches.size, 0),
      uploadBufferedBytes,
      uploadBufferedBytesPeak,
    }),
    async close() {
      stopping = true;
      clearInterval(heartbeat);
      const closing = [...connections].map((connection) => {
        closeFor(connection, 'UNAVAILABLE', `node ${node} is stopping`, closeCodes.goingAway);
        return connection.closedPromise;
      });
      await Promise.all(closing);
      await Promise.all([...pendingAborts]);
      server.close();
    },
  };
}
