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

/** How long opening a stream or writing one frame may take before the peer is skipped until the next beat. */
const streamTimeoutMs = 2_000;

interface Channel {
  stream: Stream;
  writer: LengthPrefixedStream<Stream>;
  writing: boolean;
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
  readonly #channels = new Map<string, Channel>(); // peer id → its open stream
  readonly #opening = new Set<string>();
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
    const peers = new Set<string>();
    for (const connection of this.#components.libp2p.getConnections()) {
      if (connection.status === 'open') peers.add(connection.remotePeer.toString());
    }
    for (const peerId of this.#channels.keys()) if (!peers.has(peerId)) this.#drop(peerId);
    for (const peerId of peers) void this.#sendTo(peerId, bytes);
  }

  async #sendTo(peerId: string, bytes: Uint8Array): Promise<void> {
    if (this.#opening.has(peerId)) return;
    let channel = this.#channels.get(peerId);
    if (channel?.writing === true) return;
    try {
      channel ??= await this.#open(peerId);
      if (channel === undefined) return;
      channel.writing = true;
      await channel.writer.write(bytes, { signal: AbortSignal.timeout(streamTimeoutMs) });
      channel.writing = false;
    } catch (error) {
      this.#components.counters.publishFailures += 1;
      this.#components.log.debug({ peerId, err: error }, 'heartbeat stream broke; opened again on the next beat');
      this.#drop(peerId);
    }
  }

  async #open(peerId: string): Promise<Channel | undefined> {
    const connection = this.#components.libp2p.getConnections().find((candidate) => candidate.status === 'open' && candidate.remotePeer.toString() === peerId);
    if (connection === undefined) return undefined;
    this.#opening.add(peerId);
    try {
      const stream = await connection.newStream(heartbeatProtocol, { signal: AbortSignal.timeout(streamTimeoutMs) });
      if (!this.#running) {
        stream.abort(new Error('membership stopped'));
        return undefined;
      }
      const channel: Channel = { stream, writer: lpStream(stream, { maxDataLength: heartbeatBytesMax }), writing: false };
      stream.addEventListener('close', () => {
        if (this.#channels.get(peerId) === channel) this.#channels.delete(peerId);
      });
      this.#channels.set(peerId, channel);
      return channel;
    } finally {
      this.#opening.delete(peerId);
    }
  }

  #drop(peerId: string): void {
    const channel = this.#channels.get(peerId);
    if (channel === undefined) return;
    this.#channels.delete(peerId);
    channel.stream.abort(new Error('heartbeat stream dropped'));
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
