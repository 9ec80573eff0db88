/**
 * Raft messages between members: one long-lived stream per peer, as varint length-prefixed frames, fed
 * from a bounded queue. Nothing is retried here: when a peer is unreachable or its stream breaks,
 * queued messages are dropped and Raft's own retransmission takes over. Failed dials back off, so a
 * dead peer costs one dial per backoff period, not one per message.
 */

import { performance } from 'node:perf_hooks';
import { peerIdFromString } from '@libp2p/peer-id';
import { LengthPrefixedDecoder, lpStream } from '@libp2p/utils';
import type { LengthPrefixedStream } from '@libp2p/utils';
import type { Connection, Stream } from '@libp2p/interface';
import { HostError } from './errors.ts';
import type { TransportContext } from './transport.ts';
import type { Member, MessageListener } from './types.ts';

export const raftProtocol = '/dcas/raft/1.0.0';

/** The outbound side of the Raft protocol towards one member. */
interface Channel {
  name: string;
  peerId: string;
  queue: Uint8Array[];
  queuedBytes: number;
  stream: Stream | undefined;
  writer: LengthPrefixedStream<Stream> | undefined;
  pumping: boolean;
  retryAtMs: number;
  backoffMs: number;
}

/** Outbound Raft messages: a channel (stream, queue, dial backoff) per member. */
export class RaftOutbound {
  readonly #context: TransportContext;
  readonly #channels = new Map<string, Channel>();

  constructor(context: TransportContext) {
    this.#context = context;
  }

  send(toName: string, bytes: Uint8Array): boolean {
    const { limits, counters } = this.#context;
    if (toName === this.#context.selfName) throw new HostError('SELF', `send to "${toName}": a node does not message itself`);
    if (bytes.length > limits.frameBytesMax) {
      throw new HostError('FRAME_TOO_LARGE', `send to "${toName}": ${bytes.length} bytes exceeds the frame limit of ${limits.frameBytesMax}`);
    }
    const member = this.#context.member(toName);
    if (!this.#context.running || member === undefined || member.status === 'dead') return drop(counters);
    const channel = this.#channelFor(member);
    if (performance.now() < channel.retryAtMs) return drop(counters);
    if (channel.queue.length >= limits.queueFramesMax || channel.queuedBytes + bytes.length > limits.queueBytesMax) {
      this.#context.log.debug({ to: toName, queued: channel.queue.length }, 'outbound queue full; message dropped');
      return drop(counters);
    }
    channel.queue.push(bytes);
    channel.queuedBytes += bytes.length;
    if (!channel.pumping) void this.#pump(channel);
    return true;
  }

  /** Closes every channel, dropping what is queued. */
  closeAll(): void {
    for (const channel of [...this.#channels.values()]) this.#close(channel);
  }

  #channelFor(member: Member): Channel {
    let channel = this.#channels.get(member.name);
    if (channel !== undefined && channel.peerId !== member.peerId) {
      // The name now belongs to another peer id (a restart with a fresh identity).
      this.#close(channel);
      channel = undefined;
    }
    if (channel === undefined) {
      channel = {
        name: member.name,
        peerId: member.peerId,
        queue: [],
        queuedBytes: 0,
        stream: undefined,
        writer: undefined,
        pumping: false,
        retryAtMs: 0,
        backoffMs: this.#context.limits.retryBackoffMsMin,
      };
      this.#channels.set(member.name, channel);
    }
    return channel;
  }

  async #pump(channel: Channel): Promise<void> {
    const { counters, limits, log } = this.#context;
    channel.pumping = true;
    try {
      while (this.#context.running && this.#channels.get(channel.name) === channel && channel.queue.length > 0) {
        const writer = channel.writer ?? (await this.#openStream(channel));
        if (writer === undefined) {
          dropQueue(channel, counters);
          return;
        }
        const frame = channel.queue.shift()!;
        channel.queuedBytes -= frame.length;
        try {
          await writer.write(frame, { signal: AbortSignal.timeout(limits.writeTimeoutMs) });
          counters.sent += 1;
        } catch (error) {
          log.debug({ to: channel.name, err: error }, 'raft stream broke; message dropped');
          counters.dropped += 1;
          resetStream(channel, error as Error);
        }
      }
    } finally {
      channel.pumping = false;
    }
  }

  async #openStream(channel: Channel): Promise<LengthPrefixedStream<Stream> | undefined> {
    const { libp2p, limits, log } = this.#context;
    try {
      const stream = await libp2p.dialProtocol(peerIdFromString(channel.peerId), raftProtocol, {
        signal: AbortSignal.timeout(limits.dialTimeoutMs),
      });
      stream.addEventListener('close', () => {
        if (channel.stream === stream) {
          channel.stream = undefined;
          channel.writer = undefined;
        }
      });
      channel.stream = stream;
      channel.writer = lpStream(stream, { maxDataLength: limits.frameBytesMax });
      channel.backoffMs = limits.retryBackoffMsMin;
      channel.retryAtMs = 0;
      return channel.writer;
    } catch (error) {
      channel.retryAtMs = performance.now() + channel.backoffMs;
      log.debug({ to: channel.name, err: error, retryInMs: channel.backoffMs }, 'cannot open raft stream');
      channel.backoffMs = Math.min(channel.backoffMs * 2, limits.retryBackoffMsMax);
      return undefined;
    }
  }

  #close(channel: Channel): void {
    dropQueue(channel, this.#context.counters);
    this.#channels.delete(channel.name);
    const stream = channel.stream;
    channel.stream = undefined;
    channel.writer = undefined;
    stream?.close().catch((error: unknown) => stream.abort(error as Error));
  }
}

function drop(counters: TransportContext['counters']): false {
  counters.dropped += 1;
  return false;
}

function dropQueue(channel: Channel, counters: TransportContext['counters']): void {
  counters.dropped += channel.queue.length;
  channel.queue = [];
  channel.queuedBytes = 0;
}

function resetStream(channel: Channel, error: Error): void {
  channel.stream?.abort(error);
  channel.stream = undefined;
  channel.writer = undefined;
}

/** Inbound Raft messages: frames from each peer's stream, handed to the listeners by member name. */
export class RaftInbound {
  readonly #context: TransportContext;
  readonly #listeners = new Set<MessageListener>();

  constructor(context: TransportContext) {
    this.#context = context;
  }

  onMessage(listener: MessageListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async receive(stream: Stream, connection: Connection): Promise<void> {
    const { limits, counters } = this.#context;
    const peerId = connection.remotePeer.toString();
    const decoder = new LengthPrefixedDecoder({ maxDataLength: limits.frameBytesMax, maxBufferSize: limits.frameBytesMax + 16 });
    try {
      for await (const chunk of stream) {
        for (const frame of decoder.decode(chunk)) {
          // Looked up per frame: the first frames may beat the sender's first heartbeat here.
          const fromName = this.#context.nameOf(peerId);
          if (fromName === undefined) {
            counters.dropped += 1;
            continue;
          }
          counters.received += 1;
          this.#deliver(fromName, frame.subarray());
        }
      }
    } catch (error) {
      this.#context.log.debug({ from: peerId, err: error }, 'inbound raft stream failed');
      stream.abort(error as Error);
    }
  }

  #deliver(fromName: string, bytes: Uint8Array): void {
    for (const listener of this.#listeners) {
      try {
        listener(fromName, bytes);
      } catch (error) {
        this.#context.log.error({ err: error, from: fromName }, 'message listener threw');
      }
    }
  }
}
