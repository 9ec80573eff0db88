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
 *
 * This file is the connection lifecycle (upgrade, hello, auth, heartbeat, close); each concern beside it:
 * ws-connection.ts (one connection and its sending), ws-slots.ts (connection admission), ws-requests.ts
 * (the request queue and handlers), ws-uploads.ts, ws-watches.ts, ws-downloads.ts, ws-parts.ts (what
 * they share, and the counters behind `stats()`).
 */
import { STATUS_CODES, type IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import type { JobService } from '../jobs/index.ts';
import type { AdmissionStats, UploadAdmission } from './admission.ts';
import type { TokenCheck } from './auth.ts';
import { parseClientMessage } from './messages.ts';
import type { GatewayMetrics, GatewayStats } from './metrics.ts';
import { closeCodes, protocolVersion, protocolVersionsSupported, type ClientMessage } from '../protocol/index.ts';
import { Connection, type SocketAdmission } from './ws-connection.ts';
import { WebSocketDownloads } from './ws-downloads.ts';
import type { GatewayLimits } from './ws-limits.ts';
import { GatewayCounters, type WebSocketParts } from './ws-parts.ts';
import { WebSocketRequests } from './ws-requests.ts';
import { ConnectionSlots } from './ws-slots.ts';
import { WebSocketUploads } from './ws-uploads.ts';
import { WebSocketWatches } from './ws-watches.ts';

export { defaultGatewayLimits, type GatewayLimits } from './ws-limits.ts';

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

/** The connection lifecycle; each request goes to WebSocketRequests, which hands it to its concern. */
class WebSocketGatewayServer implements WebSocketGateway {
  readonly #parts: WebSocketParts;
  readonly #tokenCheck: TokenCheck;
  readonly #server: WebSocketServer;
  readonly #connections = new Set<Connection>();
  readonly #slots: ConnectionSlots;
  readonly #uploads: WebSocketUploads;
  readonly #watches: WebSocketWatches;
  readonly #downloads: WebSocketDownloads;
  readonly #requests: WebSocketRequests;
  readonly #heartbeat: NodeJS.Timeout;
  #nextConnectionId = 1;

  constructor(options: WebSocketGatewayOptions) {
    const { node, jobs, limits, logger, metrics, tokenCheck } = options;
    this.#parts = { node, jobs, limits, logger, metrics, counters: new GatewayCounters() };
    this.#tokenCheck = tokenCheck;
    this.#server = new WebSocketServer({ noServer: true, maxPayload: limits.frameBytesMax, perMessageDeflate: false, clientTracking: false });
    this.#slots = new ConnectionSlots(node, limits, !tokenCheck.enabled, logger);
    this.#uploads = new WebSocketUploads(this.#parts, options.admission, tokenCheck);
    this.#watches = new WebSocketWatches(this.#parts);
    this.#downloads = new WebSocketDownloads(this.#parts);
    this.#requests = new WebSocketRequests(this.#parts, this.#uploads, this.#watches, this.#downloads);
    this.#heartbeat = setInterval(() => this.#beat(), limits.heartbeatMs);
    this.#heartbeat.unref();
  }

  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const admission: SocketAdmission = { address: clientAddress(request), socket, welcomed: false, released: false };
    const refusal = this.#slots.admit(admission);
    if (refusal !== undefined) {
      refuseUpgrade(socket, 503, 'BUSY', refusal);
      return;
    }
    // One release path for every end: a handshake ws rejects, an eviction, a close, a crash.
    socket.once('close', () => this.#slots.release(admission));
    this.#server.handleUpgrade(request, socket, head, (webSocket) => this.#open(webSocket, request, admission));
  }

  stats(): ReturnType<WebSocketGateway['stats']> {
    const counters = this.#parts.counters;
    return {
      connections: this.#connections.size,
      connectionsPending: this.#slots.pendingCount,
      clientsDropped: counters.clientsDropped,
      uploadsActive: counters.uploadsActive,
      downloadsActive: counters.downloadsActive,
      watches: [...this.#connections].reduce((sum, connection) => sum + connection.watches.size, 0),
      uploadBufferedBytes: counters.uploadBufferedBytes,
      uploadBufferedBytesPeak: counters.uploadBufferedBytesPeak,
    };
  }

  async close(): Promise<void> {
    this.#slots.stop();
    clearInterval(this.#heartbeat);
    const closing = [...this.#connections].map((connection) => {
      connection.closeFor('UNAVAILABLE', `node ${this.#parts.node} is stopping`, closeCodes.goingAway);
      return connection.closedPromise;
    });
    await Promise.all(closing);
    await this.#uploads.settled();
    this.#server.close();
  }

  /** A connection that did not answer the last ping is gone; the others get the next one. */
  #beat(): void {
    for (const connection of this.#connections) {
      if (!connection.alive) {
        this.#parts.logger.info({ connection: connection.id, remote: connection.remote }, 'gateway: no pong within a heartbeat; dropping the connection');
        connection.socket.terminate();
        continue;
      }
      connection.alive = false;
      if (connection.socket.readyState === WebSocket.OPEN) connection.socket.ping();
    }
  }

  #open(socket: WebSocket, request: IncomingMessage, admission: SocketAdmission): void {
    const { limits, logger, node } = this.#parts;
    const connection = new Connection(this.#nextConnectionId++, socket, `${request.socket.remoteAddress}:${request.socket.remotePort}`, admission, this.#parts);
    this.#connections.add(connection);
    this.#parts.metrics()?.connectionOpened();
    connection.helloTimer = setTimeout(() => connection.closeFor('TIMEOUT', `no hello within ${limits.helloTimeoutMs} ms`, closeCodes.policyViolation), limits.helloTimeoutMs);
    socket.on('pong', () => (connection.alive = true));
    socket.on('error', (error) => {
      // ws has already started closing; a frame over maxPayload is refused here (close 1009).
      const tooBig = (error as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH';
      if (tooBig) this.#parts.metrics()?.protocolError('FRAME_TOO_LARGE');
      logger.info({ connection: connection.id, remote: connection.remote, err: error.message }, 'gateway: connection error');
    });
    socket.on('message', (data, isBinary) => {
      connection.alive = true;
      if (connection.closing) return;
      try {
        this.#onFrame(connection, data, isBinary);
      } catch (error) {
        logger.error({ err: error, connection: connection.id }, 'gateway: a frame could not be handled');
        connection.closeFor('INTERNAL', `node ${node} failed to handle a frame; see its log`, closeCodes.internalError);
      }
    });
    socket.on('close', () => this.#onClose(connection));
  }

  #onClose(connection: Connection): void {
    connection.closed = true;
    connection.closing = true;
    this.#connections.delete(connection);
    this.#slots.release(connection.admission);
    connection.markClosed();
    try {
      clearTimeout(connection.helloTimer);
      this.#uploads.onClosed(connection);
      this.#downloads.onClosed(connection);
      this.#watches.onClosed(connection);
    } catch (error) {
      this.#parts.logger.error({ err: error, connection: connection.id }, 'gateway: cleaning up a closed connection failed');
    }
  }

  #onFrame(connection: Connection, data: RawData, isBinary: boolean): void {
    const bytes = data as Buffer;
    const controlBytesMax = this.#parts.limits.controlBytesMax;
    if (!connection.welcomed && isBinary) {
      connection.closeFor('OUT_OF_ORDER', 'expected hello first, got a binary frame', closeCodes.policyViolation);
      return;
    }
    if (isBinary) {
      this.#uploads.onBytes(connection, bytes);
      return;
    }
    if (bytes.length > controlBytesMax) {
      connection.closeFor('FRAME_TOO_LARGE', `a control message of ${bytes.length} bytes is over the limit of ${controlBytesMax}`, closeCodes.messageTooBig);
      return;
    }
    const parsed = parseClientMessage(bytes.toString('utf8'));
    if (!connection.welcomed) {
      if (!parsed.ok) connection.closeFor('BAD_MESSAGE', parsed.message, closeCodes.policyViolation);
      else this.#onHello(connection, parsed.message);
      return;
    }
    if (!parsed.ok) {
      connection.rejectRequest('BAD_MESSAGE', parsed.message, { id: parsed.id });
      return;
    }
    this.#requests.take(connection, parsed.message);
  }

  #onHello(connection: Connection, message: ClientMessage): void {
    const { node, limits } = this.#parts;
    const tokenCheck = this.#tokenCheck;
    if (message.type !== 'hello') {
      connection.closeFor('OUT_OF_ORDER', `expected hello first, got ${message.type}`, closeCodes.policyViolation);
      return;
    }
    if (!protocolVersionsSupported.includes(message.version)) {
      connection.closeFor('UNSUPPORTED_VERSION', `protocol version ${message.version} is not supported; node ${node} speaks ${protocolVersionsSupported.join(', ')}`, closeCodes.policyViolation);
      return;
    }
    if (!tokenCheck.matches(message.token)) {
      connection.closeFor('AUTH', message.token === undefined ? 'this node requires a token' : 'wrong token', closeCodes.policyViolation);
      return;
    }
    const refusal = this.#slots.welcome(connection.admission);
    if (refusal !== undefined) {
      connection.closeFor('BUSY', refusal, closeCodes.tryAgainLater);
      return;
    }
    clearTimeout(connection.helloTimer);
    connection.welcomed = true;
    const { frameBytesMax, controlBytesMax, uploadWindowBytes, uploadsMax, watchesMax, heartbeatMs, uploadIdleMs } = limits;
    connection.send({
      type: 'welcome',
      version: protocolVersion,
      node,
      auth: tokenCheck.enabled ? 'token' : 'none',
      limits: { frameBytesMax, controlBytesMax, uploadWindowBytes, uploadsMax, watchesMax, heartbeatMs, uploadIdleMs },
    });
  }
}

export function createWebSocketGateway(options: WebSocketGatewayOptions): WebSocketGateway {
  return new WebSocketGatewayServer(options);
}
