/**
 * Heartbeats sent straight to every connected peer, one long-lived stream each, as length-prefixed
 * frames (`/dcas/heartbeat/1.0.0`).
 *
 * The connection already authenticates its peer (Noise, under the private network's key), so a frame
 * needs no signature of its own: the receiver takes the sender's peer id from the connection, and
 * membership drops a heartbeat that claims another. Gossip carried every heartbeat before, each signed
 * and checked: on the scaling bench a worker host's main thread spent a third of its time in gossipsub
 * (signing, checking, its caches and control messages). Gossip now only announces (membership.ts).
 *
 * Nothing is queued or retried: a beat that finds the previous write to a peer unfinished skips that
 * peer, and a stream that breaks is dropped and opened again on the next beat.
 */

import { LengthPrefixedDecoder, lpStream } from '@libp2p/utils';
import type { LengthPrefixedStream } from '@libp2p/utils';
import type { Connection, Libp2p, Stream } from '@libp2p/interface';
import type { Logger } from 'pino';
import { heartbeatBytesMax } from './heartbeat.ts';

export const heartbeatProtocol = '/dcas/heartbeat/1.0.0';

/**
 * How long a beat's sends may take (opening a stream, then writing the frame) before a peer is skipped
 * until the next beat. One timer serves all of a beat's peers: with one per peer and beat, each node of a
 * 7-node cluster started 12 a second, and each that fired built an abort error with its stack trace.
 */
const streamTimeoutMs = 2_000;

interface Channel {
  stream: Stream;
  writer: LengthPrefixedStream<Stream>;
}

export interface DirectHeartbeatsComponents {
  libp2p: Libp2p;
  log: Logger;
  /** A frame from `fromPeerId`, the connection's authenticated peer. */
  receive(bytes: Uint8Array, fromPeerId: string): void;
  /** Counted once per frame that could not be sent. */
  counters: { publishFailures: number };
}

export class DirectHeartbeats {
  readonly #components: DirectHeartbeatsComponents;
  readonly #channels = new Map<string, Channel>(); // peer id → its open stream, until the stream closes
  readonly #sending = new Set<string>(); // peers with a stream being opened or a frame being written
  #running = false;

  constructor(components: DirectHeartbeatsComponents) {
    this.#components = components;
  }

  async start(): Promise<void> {
    this.#running = true;
    await this.#components.libp2p.handle(heartbeatProtocol, (stream, connection) => this.#read(stream, connection));
  }

  async stop(): Promise<void> {
    this.#running = false;
    for (const channel of this.#channels.values()) channel.stream.abort(new Error('membership stopped'));
    this.#channels.clear();
    await this.#components.libp2p.unhandle(heartbeatProtocol);
  }

  /** Sends `bytes` to every connected peer; returns at once. */
  send(bytes: Uint8Array): void {
    if (!this.#running) return;
    const connections = new Map<string, Connection>(); // one per peer
    for (const connection of this.#components.libp2p.getConnections()) {
      if (connection.status === 'open') connections.set(connection.remotePeer.toString(), connection);
    }
    if (connections.size === 0) return;
    const signal = AbortSignal.timeout(streamTimeoutMs);
    for (const [peerId, connection] of connections) void this.#sendTo(peerId, connection, bytes, signal);
  }

  /** One frame to one peer, skipped while the previous one is still under way. */
  async #sendTo(peerId: string, connection: Connection, bytes: Uint8Array, signal: AbortSignal): Promise<void> {
    if (this.#sending.has(peerId)) return;
    this.#sending.add(peerId);
    try {
      const channel = this.#channels.get(peerId) ?? (await this.#open(peerId, connection, signal));
      await channel?.writer.write(bytes, { signal });
    } catch (error) {
      this.#components.counters.publishFailures += 1;
      this.#components.log.debug({ peerId, err: error }, 'heartbeat stream broke; opened again on the next beat');
      this.#channels.get(peerId)?.stream.abort(new Error('heartbeat stream dropped'));
      this.#channels.delete(peerId);
    } finally {
      this.#sending.delete(peerId);
    }
  }

  async #open(peerId: string, connection: Connection, signal: AbortSignal): Promise<Channel | undefined> {
    const stream = await connection.newStream(heartbeatProtocol, { signal });
    if (!this.#running) {
      stream.abort(new Error('membership stopped'));
      return undefined;
    }
    const channel: Channel = { stream, writer: lpStream(stream, { maxDataLength: heartbeatBytesMax }) };
    stream.addEventListener('close', () => {
      if (this.#channels.get(peerId) === channel) this.#channels.delete(peerId);
    });
    this.#channels.set(peerId, channel);
    return channel;
  }

  async #read(stream: Stream, connection: Connection): Promise<void> {
    const fromPeerId = connection.remotePeer.toString();
    const decoder = new LengthPrefixedDecoder({ maxDataLength: heartbeatBytesMax, maxBufferSize: heartbeatBytesMax + 16 });
    try {
      for await (const chunk of stream) {
        for (const frame of decoder.decode(chunk)) this.#components.receive(frame.subarray(), fromPeerId);
      }
    } catch (error) {
      this.#components.log.debug({ from: fromPeerId, err: error }, 'inbound heartbeat stream failed');
      stream.abort(error as Error);
    }
  }
}
