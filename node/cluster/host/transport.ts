/**
 * Point-to-point messages between members, addressed by node name.
 *
 * Raft messages (`send`) go on one long-lived stream per peer, as varint length-prefixed frames, fed
 * from a bounded queue. The transport never retries a message: when a peer is unreachable or its
 * stream breaks, queued messages are dropped and Raft's own retransmission takes over. Failed dials
 * back off, so a dead peer costs one dial per backoff period, not one per message
 * (`raft-messages.ts`).
 *
 * Requests (`request`/`handle`) open one stream per call: a request frame, then a response frame
 * whose first byte says ok (0) or error (1, followed by the remote's message) (`requests.ts`).
 */

import type { Libp2p } from '@libp2p/interface';
import type { Logger } from 'pino';
import { raftProtocol, RaftInbound, RaftOutbound } from './raft-messages.ts';
import { request, RequestServer } from './requests.ts';
import type { Member, MessageListener, RequestHandler, RequestOptions } from './types.ts';

export { raftProtocol } from './raft-messages.ts';

export interface TransportLimits {
  /** Largest payload of a message, request or response. */
  frameBytesMax: number;
  /** Messages waiting for one peer; beyond it new messages are dropped. */
  queueFramesMax: number;
  /** Bytes waiting for one peer; beyond it new messages are dropped. */
  queueBytesMax: number;
  dialTimeoutMs: number;
  /** A frame write that waits longer than this for the peer to drain means the peer is stuck. */
  writeTimeoutMs: number;
  retryBackoffMsMin: number;
  retryBackoffMsMax: number;
  requestTimeoutMs: number;
  /** How long a request handler waits for the request frame after the stream opened. */
  requestReadTimeoutMs: number;
}

export const defaultTransportLimits: TransportLimits = {
  frameBytesMax: 4 * 1024 * 1024,
  queueFramesMax: 1024,
  queueBytesMax: 16 * 1024 * 1024,
  dialTimeoutMs: 2000,
  writeTimeoutMs: 5000,
  retryBackoffMsMin: 100,
  retryBackoffMsMax: 2000,
  requestTimeoutMs: 5000,
  requestReadTimeoutMs: 10_000,
};

export interface TransportComponents {
  libp2p: Libp2p;
  selfName: string;
  /** The member record for a name, as membership sees it. */
  member(name: string): Member | undefined;
  /** The member name behind a peer id, if a heartbeat named it. */
  nameOf(peerId: string): string | undefined;
  logger: Logger;
  limits?: Partial<TransportLimits>;
}

export interface TransportStats {
  sent: number;
  received: number;
  /** Messages dropped: unknown/dead member, unreachable peer, full queue or broken stream. */
  dropped: number;
}

export interface Transport {
  start(): Promise<void>;
  stop(): Promise<void>;
  send(toName: string, bytes: Uint8Array): boolean;
  onMessage(listener: MessageListener): () => void;
  request(toName: string, protocol: string, bytes: Uint8Array, options?: RequestOptions): Promise<Uint8Array>;
  handle(protocol: string, handler: RequestHandler): void;
  stats(): TransportStats;
}

/** What the transport's parts share: the host, the limits, the counters and whether it runs. */
export interface TransportContext extends Omit<TransportComponents, 'logger' | 'limits'> {
  log: Logger;
  limits: TransportLimits;
  counters: TransportStats;
  running: boolean;
}

export function createTransport(components: TransportComponents): Transport {
  const { libp2p } = components;
  const context: TransportContext = {
    libp2p,
    selfName: components.selfName,
    member: (name) => components.member(name),
    nameOf: (peerId) => components.nameOf(peerId),
    log: components.logger.child({ room: 'transport' }),
    limits: { ...defaultTransportLimits, ...components.limits },
    counters: { sent: 0, received: 0, dropped: 0 },
    running: false,
  };
  const outbound = new RaftOutbound(context);
  const inbound = new RaftInbound(context);
  const server = new RequestServer(context);
  return {
    async start() {
      context.running = true;
      await libp2p.handle(raftProtocol, (stream, connection) => inbound.receive(stream, connection));
      await server.registerAll();
    },
    async stop() {
      context.running = false;
      outbound.closeAll();
      await libp2p.unhandle([raftProtocol, ...server.protocols()]);
    },
    send: (toName, bytes) => outbound.send(toName, bytes),
    onMessage: (listener) => inbound.onMessage(listener),
    request: (toName, protocol, bytes, options) => request(context, toName, protocol, bytes, options),
    handle: (protocol, handler) => server.handle(protocol, handler),
    stats: () => ({ ...context.counters }),
  };
}
