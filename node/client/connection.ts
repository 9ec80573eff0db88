/**
 * One WebSocket connection to a node's gateway: the handshake (hello, then welcome or a refusal), the
 * heartbeat watchdog, the overall deadline, and the close that ends everything still waiting. What the
 * messages mean is the other files' concern; this one hands them on (`listen`).
 */
import { WebSocket } from 'ws';
import { randomFillSync } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIPv4 } from 'node:net';
import {
  closeCodes,
  protocolVersion,
  webSocketPath,
  type ClientMessage,
  type ErrorMessage,
  type ServerMessage,
  type WelcomeMessage,
} from '../protocol/index.ts';
import { DcasClientError } from './errors.ts';
import { Backpressure, HeartbeatWatchdog } from './heartbeat.ts';
import type { ConnectOptions } from './types.ts';

/** Largest message accepted from a node (a list of many jobs is the biggest). */
const messageBytesMax = 64 * 1024 * 1024;

/**
 * Masking keys for the frames a client sends. RFC 6455 masks them so that an intermediary reading the
 * bytes as HTTP cannot be fed bytes a script chose; on a connection to a loopback address nothing lies
 * between client and node, so its frames carry a zero key, which `ws` sends as they are and the node
 * reads as they are (no masked copy of each frame, no XOR pass on either side: the copies alone were half
 * a 512 MB upload's client CPU here). Every other connection gets a random key per frame, as the RFC asks.
 */
export class FrameMasks {
  #loopback = false;

  /** The connection is made: its peer's address decides the keys. */
  connected(remoteAddress: string | undefined): void {
    this.#loopback = isLoopback(remoteAddress);
  }

  readonly generate = (mask: Buffer): void => {
    if (this.#loopback) mask.fill(0);
    else randomFillSync(mask);
  };
}

/** 127.0.0.0/8, ::1, or 127.x as an IPv4-mapped IPv6 address. */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  const v4 = address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address;
  return address === '::1' || (isIPv4(v4) && v4.startsWith('127.'));
}

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

export function errorFrom(message: ErrorMessage): DcasClientError {
  const retryAfterMs = typeof message.retryAfterMs === 'number' && message.retryAfterMs > 0 ? message.retryAfterMs : undefined;
  return new DcasClientError(message.code, message.message, message.jobId, retryAfterMs);
}

export function deadlinePassed(deadlineAtMs: number | undefined): boolean {
  return deadlineAtMs !== undefined && Date.now() >= deadlineAtMs;
}

export function deadlineError(deadlineAtMs: number): DcasClientError {
  return new DcasClientError('TIMEOUT', `gave up at the deadline (${new Date(deadlineAtMs).toISOString()}); raise --timeout to wait longer`);
}

/** What the rest of the client hears from the connection once it is open. */
export interface ConnectionEvents {
  onMessage(message: ServerMessage): void;
  onBinary(bytes: Buffer): void;
  /** The connection is gone; `error` is what everything still waiting rejects with. */
  onClose(error: DcasClientError): void;
}

export class Connection {
  /** The gateway as it was given. */
  readonly server: string;
  readonly welcome: WelcomeMessage;
  readonly backpressure: Backpressure;
  /** The WebSocket URLs of the cluster's gateways, read right after connecting (empty if that failed). */
  readonly gateways: Promise<string[]>;
  /** The node's last word before it closed the connection, if it said one (or the client's own reason). */
  closingError: DcasClientError | undefined;
  readonly #socket: WebSocket;
  readonly #watchdog: HeartbeatWatchdog;
  #deadlineTimer: NodeJS.Timeout | undefined;
  #closedError: DcasClientError | undefined;

  /** Connects, says hello and waits for the welcome; rejects with UNREACHABLE, BUSY, AUTH, TIMEOUT… */
  static async open(options: ConnectOptions): Promise<Connection> {
    const url = webSocketUrl(options.server);
    const deadlineAtMs = options.deadlineAtMs;
    if (deadlinePassed(deadlineAtMs)) throw deadlineError(deadlineAtMs!);
    const connectTimeoutMs = Math.min(options.connectTimeoutMs ?? 10_000, deadlineAtMs === undefined ? Infinity : Math.max(deadlineAtMs - Date.now(), 1));
    const masks = new FrameMasks();
    const socket = new WebSocket(url, { maxPayload: messageBytesMax, handshakeTimeout: connectTimeoutMs, perMessageDeflate: false, generateMask: masks.generate });
    socket.once('upgrade', (response) => masks.connected(response.socket.remoteAddress));
    const watchdog = new HeartbeatWatchdog(() => socket.terminate());
    socket.on('ping', () => watchdog.feed());
    const welcome = await handshake(socket, options, connectTimeoutMs);
    socket.removeAllListeners('unexpected-response');
    socket.removeAllListeners('message');
    socket.removeAllListeners('close');
    socket.removeAllListeners('error');
    watchdog.start(welcome.limits.heartbeatMs);
    // Read while the node is there, for a failover when it is gone.
    const gateways = readClusterGateways(options.server, options.token, Math.min(connectTimeoutMs, 5_000));
    return new Connection(options, socket, welcome, watchdog, gateways);
  }

  private constructor(options: ConnectOptions, socket: WebSocket, welcome: WelcomeMessage, watchdog: HeartbeatWatchdog, gateways: Promise<string[]>) {
    this.server = options.server;
    this.welcome = welcome;
    this.gateways = gateways;
    this.#socket = socket;
    this.#watchdog = watchdog;
    this.backpressure = new Backpressure(socket, watchdog);
    const deadlineAtMs = options.deadlineAtMs;
    if (deadlineAtMs !== undefined) {
      this.#deadlineTimer = setTimeout(() => {
        this.closingError = deadlineError(deadlineAtMs);
        socket.terminate();
      }, Math.max(deadlineAtMs - Date.now(), 0));
    }
  }

  get closed(): boolean {
    return this.#closedError !== undefined;
  }

  /** Why the connection closed; only once it has. */
  get closedError(): DcasClientError {
    if (this.#closedError === undefined) throw new Error('the connection is still open');
    return this.#closedError;
  }

  /** Called once, right after `open`, before anything can arrive. */
  listen(events: ConnectionEvents): void {
    this.#socket.on('message', (data, isBinary) => {
      this.#watchdog.feed();
      if (isBinary) {
        events.onBinary(data as Buffer);
        return;
      }
      const message = parse(data as Buffer) as ServerMessage | null | undefined;
      if (message === undefined || message === null || typeof message !== 'object' || typeof message.type !== 'string') return;
      events.onMessage(message);
    });
    this.#socket.on('error', () => {
      // The close event follows and carries what the caller needs.
    });
    this.#socket.on('close', (code, reason) => {
      this.#watchdog.stop();
      clearTimeout(this.#deadlineTimer);
      this.#closedError = this.closingError ?? this.#closeError(code, reason);
      events.onClose(this.#closedError);
    });
  }

  #closeError(code: number, reason: Buffer): DcasClientError {
    const node = this.welcome.node;
    if (code === closeCodes.messageTooBig) return new DcasClientError('FRAME_TOO_LARGE', `${node} refused a frame as too large (close 1009)`);
    const detail = reason.length > 0 ? `: ${reason.toString('utf8')}` : '';
    return new DcasClientError('DISCONNECTED', `connection to ${node} closed (code ${code}${detail})`);
  }

  send(message: ClientMessage): void {
    if (this.closed) throw this.closedError;
    this.#socket.send(JSON.stringify(message));
  }

  /** Sends one binary frame; `written`, if given, is called once the socket no longer needs `bytes` (written or failed). */
  sendBinary(bytes: Uint8Array, written?: () => void): void {
    if (this.closed) throw this.closedError;
    this.#socket.send(bytes, { binary: true }, written);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const done = new Promise<void>((resolve) => this.#socket.once('close', () => resolve()));
    this.closingError ??= new DcasClientError('DISCONNECTED', 'the client was closed');
    this.#socket.close(closeCodes.normal);
    const timer = setTimeout(() => this.#socket.terminate(), 2_000);
    await done;
    clearTimeout(timer);
  }
}

function parse(data: Buffer): unknown {
  try {
    return JSON.parse(data.toString('utf8'));
  } catch {
    return undefined;
  }
}

/** Hello, then the welcome; a refusal (HTTP instead of the upgrade, an error frame, a close) rejects. */
function handshake(socket: WebSocket, options: ConnectOptions, connectTimeoutMs: number): Promise<WelcomeMessage> {
  return new Promise<WelcomeMessage>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.terminate();
      reject(new DcasClientError('UNREACHABLE', `${options.server}: no welcome within ${connectTimeoutMs} ms`));
    }, connectTimeoutMs);
    const fail = (error: DcasClientError) => {
      clearTimeout(timer);
      reject(error);
    };
    socket.once('unexpected-response', (_request, response) => void refusalOf(options.server, response).then(fail));
    socket.once('error', (error: NodeJS.ErrnoException) => {
      const reason = error.code === 'ECONNREFUSED' ? 'connection refused (is a node running there?)' : error.message;
      fail(new DcasClientError('UNREACHABLE', `cannot reach ${options.server}: ${reason}`));
    });
    socket.once('open', () => socket.send(JSON.stringify({ type: 'hello', version: protocolVersion, ...(options.token === undefined ? {} : { token: options.token }) })));
    socket.once('message', (data, isBinary) => {
      const message = isBinary ? undefined : (parse(data as Buffer) as ServerMessage | null | undefined);
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
}

/** An HTTP answer instead of the upgrade: BUSY (with its Retry-After) when the node is full, else UNREACHABLE. */
function refusalOf(server: string, response: IncomingMessage): Promise<DcasClientError> {
  return new Promise<DcasClientError>((resolve) => {
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
      resolve(new DcasClientError(code, `${server}: ${body?.error?.message ?? `HTTP ${response.statusCode} instead of a WebSocket upgrade`}`, undefined, retryAfterMs));
    });
    response.on('error', () => resolve(new DcasClientError('UNREACHABLE', `${server}: HTTP ${response.statusCode}`)));
  });
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
