/**
 * The WebSocket gateway's limits (docs/PROTOCOL.md, "Limits"): the protocol's own, which a client hears in
 * welcome, and the node-side bounds that keep a node safe from its clients.
 */
import type { ProtocolLimits } from '../protocol/index.ts';

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
