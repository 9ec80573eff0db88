/**
 * Test support for the gateway: a real gateway (HTTP + ws) on a free port, backed by the jobs-room test
 * double, and a raw WebSocket peer that records every frame, for tests that speak the protocol by hand.
 */
import { pino } from 'pino';
import { WebSocket } from 'ws';
import { createGateway, type Gateway, type GatewayLimits } from '../../node/gateway/index.ts';
import { createJobServiceDouble, type JobServiceDouble, type JobServiceDoubleOptions } from './job-service-double.ts';

export interface TestGateway {
  gateway: Gateway;
  jobs: JobServiceDouble;
  url: string;
  wsUrl: string;
  stop(): Promise<void>;
}

export interface TestGatewayOptions {
  token?: string;
  limits?: Partial<GatewayLimits>;
  jobs?: JobServiceDoubleOptions;
  withoutJobs?: boolean;
  allowedHosts?: string[];
  allowedOrigins?: string[];
}

export async function startTestGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const jobs = createJobServiceDouble(options.jobs);
  const gateway = createGateway({
    host: '127.0.0.1',
    port: 0,
    node: 'node-test',
    logger: pino({ level: process.env.DCAS_TEST_LOG ?? 'silent' }),
    jobs: options.withoutJobs ? undefined : jobs,
    token: options.token,
    limits: options.limits,
    allowedHosts: options.allowedHosts,
    allowedOrigins: options.allowedOrigins,
    raftStatus: () => ({ term: 7, role: 'leader' }),
    routes: {
      health: () => ({ ok: true, node: 'node-test' }),
      ready: () => ({ ready: true }),
      clusterStatus: () => ({ node: 'node-test', coordinator: 'node-test', term: 7, members: [] }),
      state: async (prefix, limit) => ({ entries: { [`${prefix}x`]: 1 }, limit }),
    },
  });
  await gateway.start();
  return {
    gateway,
    jobs,
    url: gateway.url(),
    wsUrl: gateway.wsUrl(),
    async stop() {
      jobs.close();
      await settleClosingPeers();
      await gateway.stop();
    },
  };
}

/** Peers whose test closed them and whose close handshake may still be under way. */
const closingPeers = new Set<Promise<unknown>>();
/** Bounds the wait for a closing peer; the gateway's stop cuts off any still closing after its own grace. */
const closingPeerWaitMsMax = 1_000;

/**
 * Lets the close handshakes the tests started finish before the gateway stops: a connection still
 * closing when it stops is closed again by the gateway, which reads nothing more from it and waits out
 * its close grace (2 s) before cutting it off, a pure wait in every test that ends that way.
 */
async function settleClosingPeers(): Promise<void> {
  const closing = [...closingPeers];
  closingPeers.clear();
  if (closing.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((resolve) => (timer = setTimeout(resolve, closingPeerWaitMsMax)));
  await Promise.race([Promise.all(closing), bound]);
  clearTimeout(timer);
}

export type Frame = { kind: 'json'; message: any } | { kind: 'binary'; bytes: Buffer };

/** A WebSocket peer that queues every frame it receives, for tests that speak the protocol by hand. */
export interface RawPeer {
  socket: WebSocket;
  /** The next frame, or a failure after `timeoutMs`. */
  next(timeoutMs?: number): Promise<Frame>;
  /** The next JSON message (binary frames before it are an error). */
  nextJson(timeoutMs?: number): Promise<any>;
  /** Skips frames until a JSON message of this type arrives. */
  until(type: string, timeoutMs?: number): Promise<any>;
  send(message: unknown): void;
  sendBinary(bytes: Uint8Array): void;
  closed: Promise<{ code: number; reason: string }>;
  close(): void;
}

export async function openPeer(url: string, headers: Record<string, string> = {}): Promise<RawPeer> {
  const socket = new WebSocket(url, { maxPayload: 64 * 1024 * 1024, headers });
  const frames: Frame[] = [];
  const waiters: Array<() => void> = [];
  socket.on('message', (data, isBinary) => {
    const bytes = data as Buffer;
    frames.push(isBinary ? { kind: 'binary', bytes } : { kind: 'json', message: JSON.parse(bytes.toString('utf8')) });
    waiters.splice(0).forEach((wake) => wake());
  });
  socket.on('error', () => {});
  const closed = new Promise<{ code: number; reason: string }>((resolve) => socket.on('close', (code, reason) => {
    waiters.splice(0).forEach((wake) => wake());
    resolve({ code, reason: reason.toString() });
  }));
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
    socket.once('unexpected-response', (_request, response) => reject(new Error(`HTTP ${response.statusCode}`)));
  });
  async function next(timeoutMs = 3_000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    while (frames.length === 0) {
      if (socket.readyState === WebSocket.CLOSED) throw new Error('peer: connection closed while waiting for a frame');
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`peer: no frame within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return frames.shift()!;
  }
  return {
    socket,
    next,
    async nextJson(timeoutMs) {
      const frame = await next(timeoutMs);
      if (frame.kind !== 'json') throw new Error(`peer: expected a JSON message, got ${frame.bytes.length} binary bytes`);
      return frame.message;
    },
    async until(type, timeoutMs = 3_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const frame = await next(Math.max(deadline - Date.now(), 1));
        if (frame.kind === 'json' && frame.message.type === type) return frame.message;
      }
    },
    send: (message) => socket.send(typeof message === 'string' ? message : JSON.stringify(message)),
    sendBinary: (bytes) => socket.send(bytes, { binary: true }),
    closed,
    close: () => {
      socket.close();
      closingPeers.add(closed);
    },
  };
}

/** Opens a peer and completes the hello. */
export async function openWelcomedPeer(url: string, token?: string): Promise<RawPeer> {
  const peer = await openPeer(url);
  peer.send({ type: 'hello', version: 1, ...(token === undefined ? {} : { token }) });
  const welcome = await peer.nextJson();
  if (welcome.type !== 'welcome') throw new Error(`peer: expected welcome, got ${JSON.stringify(welcome)}`);
  return peer;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Waits until `condition` holds, polling; fails after `timeoutMs`. */
export async function eventually(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await sleep(10);
  }
}

/** Fails unless `promise` rejects (with a message matching `pattern`, if given); returns the error. */
export async function rejects(promise: Promise<unknown>, pattern?: RegExp): Promise<Error> {
  let error: Error | undefined;
  try {
    await promise;
  } catch (caught) {
    error = caught as Error;
  }
  if (error === undefined) throw new Error('expected a rejection, but the promise resolved');
  if (pattern !== undefined && !pattern.test(error.message)) throw new Error(`expected a rejection matching ${pattern}, got: ${error.message}`);
  return error;
}
