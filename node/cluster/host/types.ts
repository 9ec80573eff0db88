/**
 * The shapes the host room shares with the rest of the node: members as gossip sees them, what the
 * node reports about itself in heartbeats, and the host's public interface.
 */

import type { NodeRole } from '../../config/index.ts';

/** How recently a member was heard from: alive < suspectMs ≤ suspect < deadMs ≤ dead. */
export type MemberStatus = 'alive' | 'suspect' | 'dead';

export interface LoadInfo {
  /** Worker threads the node runs. */
  workers: number;
  /** Chunks being coded right now. */
  inFlight: number;
  /** Chunks assigned and waiting for a worker. */
  queue: number;
}

export interface RaftInfo {
  term: number;
  /** The Raft layer's name for its role ("leader", "follower", "candidate", …). */
  role: string;
  /** The leader's node name, or null when none is known. */
  leader: string | null;
}

/** What the node wiring reports for the next heartbeat; fields left out keep their defaults. */
export interface StatusReport {
  load?: Partial<LoadInfo>;
  raft?: RaftInfo;
  /** The gateway's WebSocket URL, when it differs from the configured host:port. */
  gateway?: string;
}

export type StatusProvider = () => StatusReport;

/** One member of the cluster as this node sees it (itself included, with `self: true`). */
export interface Member {
  name: string;
  peerId: string;
  role: NodeRole;
  /** WebSocket URL of the member's gateway, e.g. ws://127.0.0.1:7701. */
  gateway: string;
  /** The libp2p addresses the member listens on (with /p2p/<peer id>). */
  addresses: string[];
  status: MemberStatus;
  self: boolean;
  load: LoadInfo;
  raft: RaftInfo | undefined;
  /** Heartbeat sequence number within one run of the member. */
  seq: number;
  /** When the member's current run started (epoch ms, its clock). */
  startedAt: number;
  /** Milliseconds since its last heartbeat arrived here (0 for self). */
  heartbeatAgeMs: number;
}

export type MemberEventType = 'member:up' | 'member:down' | 'member:changed';

/**
 * up: first heard of, or heard again after being dead. down: became dead. changed: status
 * (alive ↔ suspect), peer id, role, gateway, addresses, raft info or run changed. Load alone does not
 * count as a change: it moves with every heartbeat.
 */
export type MemberListener = (member: Member, previous: Member | undefined) => void;

export type MessageListener = (fromName: string, bytes: Uint8Array) => void;

/** A request handler: gets the requester's name and payload, returns the response payload. */
export type RequestHandler = (fromName: string, bytes: Uint8Array) => Uint8Array | Promise<Uint8Array>;

export interface RequestOptions {
  /** Give up after this long (dial + request + response). Default 5000 ms. */
  timeoutMs?: number;
  /**
   * Give up when this aborts. A silent peer (a cut link, a paused process) resets nothing, so a caller
   * that learns the wait is pointless (another leader was elected) must be able to stop waiting.
   */
  signal?: AbortSignal;
}

export interface Host {
  readonly name: string;
  /** The peer id (available after start). */
  readonly peerId: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** The multiaddrs this host listens on, each ending in /p2p/<peer id> (after start). */
  addresses(): string[];

  /** Every member known, self first, then by name. */
  members(): Member[];
  member(name: string): Member | undefined;
  on(event: MemberEventType, listener: MemberListener): () => void;
  /** Sets the callback that fills load and raft info into each heartbeat. */
  setStatusProvider(provider: StatusProvider): void;
  /** Publishes a heartbeat now (e.g. when the Raft role changed) instead of at the next interval. */
  announce(): void;

  /**
   * Queues `bytes` for `toName` on the Raft protocol. Fire and forget: returns false when the message
   * was dropped at once (member unknown or dead, peer unreachable, queue full). Delivery is in order
   * per peer while a stream lasts; messages in flight when a stream breaks are lost.
   */
  send(toName: string, bytes: Uint8Array): boolean;
  onMessage(listener: MessageListener): () => void;
  /** One request, one response on `protocol` (which starts with /dcas/). */
  request(toName: string, protocol: string, bytes: Uint8Array, options?: RequestOptions): Promise<Uint8Array>;
  handle(protocol: string, handler: RequestHandler): void;
}
