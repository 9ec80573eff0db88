/**
 * Point-to-point messages between members, addressed by node name.
 *
 * Raft messages (`send`) go on one long-lived stream per peer, as varint length-prefixed frames, fed
 * from a bounded queue. The transport never retries a message: when a peer is unreachable or its
 * stream breaks, queued messages are dropped and Raft's own retransmission takes over. Failed dials
 * back off, so a dead peer costs one dial per backoff period, not one per message.
 *
 * Requests (`request`/`handle`) open one stream per call: a request frame, then a response frame
 * whose first byte says ok (0) or error (1, followed by the remote's message).
 */

import { performance } from 'node:perf_hooks';
import { peerIdFromString } from '@libp2p/peer-id';
import { LengthPrefixedDecoder, lpStream } from '@libp2p/utils';
import type { LengthPrefixedStream } from '@libp2p/utils';
import type { Connection, Libp2p, Stream } from '@libp2p/interface';
import type { Logger } from 'pino';
import { HostError } from './errors.ts';
import type { Member, MessageListener, RequestHandler, RequestOptions } from './types.ts';

export const raftProtocol = '/dcas/raft/1.0.0';
const protocolRegex = /^\/dcas\/[a-z0-9][a-z0-9._/-]{0,99}$/;

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

const responseOk = 0;
const responseError = 1;

export function createTransport(components: TransportComponents): Transport {
  const { libp2p, selfName } = components;
  const limits: TransportLimits = { ...defaultTransportLimits, ...components.limits };
  const log = components.logger.child({ room: 'transport' });
  const channels = new Map<string, Channel>();
  const messageListeners = new Set<MessageListener>();
  const handlers = new Map<string, RequestHandler>();
  const counters: TransportStats = { sent: 0, received: 0, dropped: 0 };
  let running = false;

  // ---- Raft messages, outbound ----

  function send(toName: string, bytes: Uint8Array): boolean {
    if (toName === selfName) throw new HostError('SELF', `send to "${toName}": a node does not message itself`);
    if (bytes.length > limits.frameBytesMax) {
      throw new HostError('FRAME_TOO_LARGE', `send to "${toName}": ${bytes.length} bytes exceeds the frame limit of ${limits.frameBytesMax}`);
    }
    const member = components.member(toName);
    if (!running || member === undefined || member.status === 'dead') return drop(1);
    const channel = channelFor(member);
    if (performance.now() < channel.retryAtMs) return drop(1);
    if (channel.queue.length >= limits.queueFramesMax || channel.queuedBytes + bytes.length > limits.queueBytesMax) {
      log.debug({ to: toName, queued: channel.queue.length }, 'outbound queue full; message dropped');
      return drop(1);
    }
    channel.queue.push(bytes);
    channel.queuedBytes += bytes.length;
    if (!channel.pumping) void pump(channel);
    return true;
  }

  function drop(count: number): false {
    counters.dropped += count;
    return false;
  }

  function channelFor(member: Member): Channel {
    let channel = channels.get(member.name);
    if (channel !== undefined && channel.peerId !== member.peerId) {
      // The name now belongs to another peer id (a restart with a fresh identity).
      closeChannel(channel);
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
        backoffMs: limits.retryBackoffMsMin,
      };
      channels.set(member.name, channel);
    }
    return channel;
  }

  async function pump(channel: Channel) {
    channel.pumping = true;
    try {
      while (running && channels.get(channel.name) === channel && channel.queue.length > 0) {
        const writer = channel.writer ?? (await openChannelStream(channel));
        if (writer === undefined) {
          dropQueue(channel);
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

  async function openChannelStream(channel: Channel): Promise<LengthPrefixedStream<Stream> | undefined> {
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

  function dropQueue(channel: Channel) {
    counters.dropped += channel.queue.length;
    channel.queue = [];
    channel.queuedBytes = 0;
  }

  function resetStream(channel: Channel, error: Error) {
    channel.stream?.abort(error);
    channel.stream = undefined;
    channel.writer = undefined;
  }

  function closeChannel(channel: Channel) {
    dropQueue(channel);
    channels.delete(channel.name);
    const stream = channel.stream;
    channel.stream = undefined;
    channel.writer = undefined;
    stream?.close().catch((error: unknown) => stream.abort(error as Error));
  }

  // ---- Raft messages, inbound ----

  async function onRaftStream(stream: Stream, connection: Connection) {
    const peerId = connection.remotePeer.toString();
    const decoder = new LengthPrefixedDecoder({ maxDataLength: limits.frameBytesMax, maxBufferSize: limits.frameBytesMax + 16 });
    try {
      for await (const chunk of stream) {
        for (const frame of decoder.decode(chunk)) {
          // Looked up per frame: the first frames may beat the sender's first heartbeat here.
          const fromName = components.nameOf(peerId);
          if (fromName === undefined) {
            counters.dropped += 1;
            continue;
          }
          counters.received += 1;
          deliver(fromName, frame.subarray());
        }
      }
    } catch (error) {
      log.debug({ from: peerId, err: error }, 'inbound raft stream failed');
      stream.abort(error as Error);
    }
  }

  function deliver(fromName: string, bytes: Uint8Array) {
    for (const listener of messageListeners) {
      try {
        listener(fromName, bytes);
      } catch (error) {
        log.error({ err: error, from: fromName }, 'message listener threw');
      }
    }
  }

  // ---- Requests ----

  function checkProtocol(protocol: string) {
    if (!protocolRegex.test(protocol) || protocol === raftProtocol) {
      throw new HostError('BAD_PROTOCOL', `protocol "${protocol}": expected /dcas/<name>/<version>, not ${raftProtocol}`);
    }
  }

  async function request(toName: string, protocol: string, bytes: Uint8Array, options: RequestOptions = {}): Promise<Uint8Array> {
    checkProtocol(protocol);
    const what = `request ${protocol} to "${toName}"`;
    if (toName === selfName) throw new HostError('SELF', `${what}: a node does not request from itself`);
    if (!running) throw new HostError('NOT_STARTED', `${what}: the host is not running`);
    if (bytes.length > limits.frameBytesMax) {
      throw new HostError('FRAME_TOO_LARGE', `${what}: ${bytes.length} bytes exceeds the frame limit of ${limits.frameBytesMax}`);
    }
    const member = components.member(toName);
    if (member === undefined) throw new HostError('UNKNOWN_MEMBER', `${what}: no member has that name`);
    if (member.status === 'dead') throw new HostError('MEMBER_DEAD', `${what}: the member is dead`);

    const timeoutMs = options.timeoutMs ?? limits.requestTimeoutMs;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]);
    const gaveUp = (stage: string) =>
      timeout.aborted ? new HostError('TIMEOUT', `${what}: ${stage} within ${timeoutMs} ms`) : new HostError('ABORTED', `${what}: abandoned by the caller`);
    let stream: Stream;
    try {
      stream = await libp2p.dialProtocol(peerIdFromString(member.peerId), protocol, { signal });
    } catch (error) {
      if (signal.aborted) throw gaveUp('no connection');
      if ((error as Error).name === 'UnsupportedProtocolError') throw new HostError('NO_HANDLER', `${what}: the member does not handle it`);
      throw new HostError('UNREACHABLE', `${what}: ${(error as Error).message}`);
    }
    let response: Uint8Array;
    try {
      const framed = lpStream(stream, { maxDataLength: limits.frameBytesMax + 1 });
      await framed.write(bytes, { signal });
      response = (await framed.read({ signal })).subarray();
      await stream.close({ signal });
    } catch (error) {
      stream.abort(error as Error);
      if (signal.aborted) throw gaveUp('no response');
      throw new HostError('UNREACHABLE', `${what}: ${(error as Error).message}`);
    }
    if (response.length === 0) throw new HostError('REMOTE_ERROR', `${what}: empty response`);
    if (response[0] === responseOk) return response.subarray(1);
    throw new HostError('REMOTE_ERROR', `${what}: ${new TextDecoder().decode(response.subarray(1))}`);
  }

  function handle(protocol: string, handler: RequestHandler) {
    checkProtocol(protocol);
    if (handlers.has(protocol)) throw new HostError('BAD_PROTOCOL', `protocol "${protocol}" already has a handler`);
    handlers.set(protocol, handler);
    if (running) void registerHandler(protocol, handler);
  }

  async function registerHandler(protocol: string, handler: RequestHandler) {
    await libp2p.handle(protocol, (stream, connection) => serveRequest(protocol, handler, stream, connection));
  }

  async function serveRequest(protocol: string, handler: RequestHandler, stream: Stream, connection: Connection) {
    const framed = lpStream(stream, { maxDataLength: limits.frameBytesMax });
    try {
      const requestBytes = (await framed.read({ signal: AbortSignal.timeout(limits.requestReadTimeoutMs) })).subarray();
      const fromName = components.nameOf(connection.remotePeer.toString());
      let response: Uint8Array;
      if (fromName === undefined) {
        response = errorResponse('the requester is not a known member yet');
      } else {
        try {
          const result = await handler(fromName, requestBytes);
          response = result.length > limits.frameBytesMax ? errorResponse(`response of ${result.length} bytes exceeds the frame limit`) : okResponse(result);
        } catch (error) {
          log.debug({ protocol, from: fromName, err: error }, 'request handler threw');
          response = errorResponse((error as Error).message ?? String(error));
        }
      }
      await framed.write(response, { signal: AbortSignal.timeout(limits.writeTimeoutMs) });
      await stream.close({ signal: AbortSignal.timeout(limits.writeTimeoutMs) });
    } catch (error) {
      log.debug({ protocol, err: error }, 'serving a request failed');
      stream.abort(error as Error);
    }
  }

  // ---- Lifecycle ----

  async function start() {
    running = true;
    await libp2p.handle(raftProtocol, onRaftStream);
    for (const [protocol, handler] of handlers) await registerHandler(protocol, handler);
  }

  async function stop() {
    running = false;
    for (const channel of [...channels.values()]) closeChannel(channel);
    await libp2p.unhandle([raftProtocol, ...handlers.keys()]);
  }

  return {
    start,
    stop,
    send,
    onMessage(listener) {
      messageListeners.add(listener);
      return () => messageListeners.delete(listener);
    },
    request,
    handle,
    stats: () => ({ ...counters }),
  };
}

function okResponse(payload: Uint8Array): Uint8Array {
  const response = new Uint8Array(payload.length + 1);
  response[0] = responseOk;
  response.set(payload, 1);
  return response;
}

function errorResponse(message: string): Uint8Array {
  const text = new TextEncoder().encode(message.slice(0, 1000));
  const response = new Uint8Array(text.length + 1);
  response[0] = responseError;
  response.set(text, 1);
  return response;
}
