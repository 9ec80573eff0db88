/**
 * One WebSocket connection of the gateway: its state, and every way the node speaks on it (replies,
 * errors, closes, download frames), each of which checks that the client still reads what it is sent.
 */
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';
import type { QueuedAdmission } from './admission.ts';
import { closeCodes, type ClientMessage, type ErrorCode, type RequestId, type ServerMessage } from '../protocol/index.ts';
import type { WebSocketParts } from './ws-parts.ts';
import type { DownloadState } from './ws-downloads.ts';
import type { UploadState } from './ws-uploads.ts';
import type { WatchState } from './ws-watches.ts';

/** After a close frame, a peer that does not complete the close handshake is cut off after this long. */
const closeGraceMs = 2_000;

/** A download frame could not be sent: the connection is closed or being closed. */
export class ConnectionClosed extends Error {}

/** One socket's place in the admission counts, from the upgrade request until the socket closes. */
export interface SocketAdmission {
  address: string;
  socket: Duplex;
  welcomed: boolean;
  released: boolean;
}

export interface ErrorContext {
  id?: RequestId;
  jobId?: string;
  retryAfterMs?: number;
}

export class Connection {
  readonly id: number;
  readonly socket: WebSocket;
  readonly remote: string;
  readonly admission: SocketAdmission;
  /** Requests being worked on; beyond requestsInFlightMax the rest wait in `queued`. */
  requestsInFlight = 0;
  readonly queued: ClientMessage[] = [];
  welcomed = false;
  closing = false;
  closed = false;
  alive = true;
  helloTimer: NodeJS.Timeout | undefined = undefined;
  badMessages = 0;
  uploadStarting = false;
  /** An upload waiting in the admission queue; left when the connection closes. */
  queuedUpload: QueuedAdmission | undefined = undefined;
  upload: UploadState | undefined = undefined;
  download: DownloadState | undefined = undefined;
  readonly watches = new Map<string, WatchState>();
  readonly closedPromise: Promise<void>;
  readonly #parts: WebSocketParts;
  #resolveClosed!: () => void;

  constructor(id: number, socket: WebSocket, remote: string, admission: SocketAdmission, parts: WebSocketParts) {
    this.id = id;
    this.socket = socket;
    this.remote = remote;
    this.admission = admission;
    this.#parts = parts;
    this.closedPromise = new Promise<void>((resolve) => (this.#resolveClosed = resolve));
  }

  /** The socket closed: whatever waits on `closedPromise` goes on. */
  markClosed(): void {
    this.#resolveClosed();
  }

  send(message: ServerMessage): void {
    if (message.type === 'error') this.#parts.metrics()?.protocolError(message.code);
    if (this.socket.readyState !== WebSocket.OPEN || this.#dropIfNotReading()) return;
    this.socket.send(JSON.stringify(message));
  }

  sendError(code: ErrorCode, message: string, context: ErrorContext = {}): void {
    const frame: ServerMessage = { type: 'error', code, message };
    if (context.id !== undefined) frame.id = context.id;
    if (context.jobId !== undefined) frame.jobId = context.jobId;
    if (context.retryAfterMs !== undefined) frame.retryAfterMs = context.retryAfterMs;
    this.send(frame);
  }

  /** An error about one request: the connection stays open, unless it keeps sending bad requests. */
  rejectRequest(code: ErrorCode, message: string, context: { id?: RequestId; jobId?: string } = {}): void {
    this.sendError(code, message, context);
    if (code !== 'BAD_MESSAGE' && code !== 'OUT_OF_ORDER') return;
    this.badMessages++;
    if (this.badMessages >= this.#parts.limits.badMessagesMax) {
      this.closeFor('BAD_MESSAGE', `${this.badMessages} bad messages on one connection; closing it`, closeCodes.policyViolation);
    }
  }

  /** A protocol violation or a node-side end: an error frame, then the close handshake. */
  closeFor(code: ErrorCode, message: string, closeCode: number): void {
    if (this.closing) return;
    this.sendError(code, message);
    this.closing = true;
    this.#parts.logger.info({ connection: this.id, remote: this.remote, code, reason: message }, 'gateway: closing a connection');
    if (this.socket.readyState === WebSocket.OPEN) this.socket.close(closeCode, code);
    // Read nothing more from a client being closed: one that floods would otherwise keep the node
    // parsing and discarding its frames until the grace period ends.
    this.socket.pause();
    setTimeout(() => this.socket.terminate(), closeGraceMs).unref();
  }

  /**
   * Sends one download frame; waits while more than the bound is queued to this client. `sent`, if
   * given, is called once the socket no longer holds the frame (written, or the connection gone).
   */
  sendBinary(frame: Uint8Array, sent?: () => void): Promise<void> {
    const socket = this.socket;
    if (socket.readyState !== WebSocket.OPEN || this.#dropIfNotReading()) return Promise.reject(new ConnectionClosed());
    // Counted first: once written, `sent` may free the frame.
    this.#parts.metrics()?.downloadBytes(frame.length);
    const written = new Promise<void>((resolve) =>
      socket.send(frame, { binary: true }, () => {
        sent?.();
        resolve();
      }),
    );
    if (socket.bufferedAmount <= this.#parts.limits.downloadBufferedBytesMax) return Promise.resolve();
    // The callback of the last frame fires once everything before it left the process.
    return Promise.race([written, this.closedPromise.then(() => Promise.reject(new ConnectionClosed()))]);
  }

  /**
   * Every send passes here: a client that lets more than its budget pile up in the node is not reading,
   * and buffering for it would grow the node's memory without bound. It is cut off at once (a close
   * frame would only queue behind the backlog), which also frees what was queued.
   */
  #dropIfNotReading(): boolean {
    const bufferedBytes = this.socket.bufferedAmount;
    if (bufferedBytes <= this.#parts.limits.replyBufferedBytesMax) return false;
    if (!this.closing) {
      this.#parts.counters.clientsDropped++;
      this.#parts.logger.info({ connection: this.id, remote: this.remote, bufferedBytes }, 'gateway: client is not reading its replies; dropping it');
    }
    this.closing = true;
    this.socket.terminate();
    return true;
  }
}
