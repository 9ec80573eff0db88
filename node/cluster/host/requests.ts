/**
 * Requests between members: one stream per call, a request frame, then a response frame whose first
 * byte says ok (0) or error (1, followed by the remote's message).
 */

import { peerIdFromString } from '@libp2p/peer-id';
import { lpStream } from '@libp2p/utils';
import type { Connection, Stream } from '@libp2p/interface';
import { HostError } from './errors.ts';
import { raftProtocol } from './raft-messages.ts';
import type { TransportContext } from './transport.ts';
import type { Member, RequestHandler, RequestOptions } from './types.ts';

const protocolRegex = /^\/dcas\/[a-z0-9][a-z0-9._/-]{0,99}$/;
const responseOk = 0;
const responseError = 1;

function checkProtocol(protocol: string): void {
  if (!protocolRegex.test(protocol) || protocol === raftProtocol) {
    throw new HostError('BAD_PROTOCOL', `protocol "${protocol}": expected /dcas/<name>/<version>, not ${raftProtocol}`);
  }
}

/** The member a request may go to, or the error that says why it may not. */
function requestTarget(context: TransportContext, what: string, toName: string, bytes: Uint8Array): Member {
  const { limits } = context;
  if (toName === context.selfName) throw new HostError('SELF', `${what}: a node does not request from itself`);
  if (!context.running) throw new HostError('NOT_STARTED', `${what}: the host is not running`);
  if (bytes.length > limits.frameBytesMax) {
    throw new HostError('FRAME_TOO_LARGE', `${what}: ${bytes.length} bytes exceeds the frame limit of ${limits.frameBytesMax}`);
  }
  const member = context.member(toName);
  if (member === undefined) throw new HostError('UNKNOWN_MEMBER', `${what}: no member has that name`);
  if (member.status === 'dead') throw new HostError('MEMBER_DEAD', `${what}: the member is dead`);
  return member;
}

/** Sends one request to a member and returns its response payload. */
export async function request(context: TransportContext, toName: string, protocol: string, bytes: Uint8Array, options: RequestOptions = {}): Promise<Uint8Array> {
  checkProtocol(protocol);
  const what = `request ${protocol} to "${toName}"`;
  const member = requestTarget(context, what, toName, bytes);
  const timeoutMs = options.timeoutMs ?? context.limits.requestTimeoutMs;
  const timeout = AbortSignal.timeout(timeoutMs);
  const signal = options.signal === undefined ? timeout : AbortSignal.any([timeout, options.signal]);
  const gaveUp = (stage: string) =>
    timeout.aborted ? new HostError('TIMEOUT', `${what}: ${stage} within ${timeoutMs} ms`) : new HostError('ABORTED', `${what}: abandoned by the caller`);
  let stream: Stream;
  try {
    stream = await context.libp2p.dialProtocol(peerIdFromString(member.peerId), protocol, { signal });
  } catch (error) {
    if (signal.aborted) throw gaveUp('no connection');
    if ((error as Error).name === 'UnsupportedProtocolError') throw new HostError('NO_HANDLER', `${what}: the member does not handle it`);
    throw new HostError('UNREACHABLE', `${what}: ${(error as Error).message}`);
  }
  let response: Uint8Array;
  try {
    const framed = lpStream(stream, { maxDataLength: context.limits.frameBytesMax + 1 });
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

/** The handlers of this node's request protocols, and the serving of each request stream. */
export class RequestServer {
  readonly #context: TransportContext;
  readonly #handlers = new Map<string, RequestHandler>();

  constructor(context: TransportContext) {
    this.#context = context;
  }

  protocols(): string[] {
    return [...this.#handlers.keys()];
  }

  handle(protocol: string, handler: RequestHandler): void {
    checkProtocol(protocol);
    if (this.#handlers.has(protocol)) throw new HostError('BAD_PROTOCOL', `protocol "${protocol}" already has a handler`);
    this.#handlers.set(protocol, handler);
    if (this.#context.running) void this.#register(protocol, handler);
  }

  /** Registers every handler with libp2p; called at start. */
  async registerAll(): Promise<void> {
    for (const [protocol, handler] of this.#handlers) await this.#register(protocol, handler);
  }

  async #register(protocol: string, handler: RequestHandler): Promise<void> {
    await this.#context.libp2p.handle(protocol, (stream, connection) => this.#serve(protocol, handler, stream, connection));
  }

  async #serve(protocol: string, handler: RequestHandler, stream: Stream, connection: Connection): Promise<void> {
    const { limits, log } = this.#context;
    const framed = lpStream(stream, { maxDataLength: limits.frameBytesMax });
    try {
      const requestBytes = (await framed.read({ signal: AbortSignal.timeout(limits.requestReadTimeoutMs) })).subarray();
      const fromName = this.#context.nameOf(connection.remotePeer.toString());
      const response = fromName === undefined ? errorResponse('the requester is not a known member yet') : await this.#answer(protocol, handler, fromName, requestBytes);
      await framed.write(response, { signal: AbortSignal.timeout(limits.writeTimeoutMs) });
      await stream.close({ signal: AbortSignal.timeout(limits.writeTimeoutMs) });
    } catch (error) {
      log.debug({ protocol, err: error }, 'serving a request failed');
      stream.abort(error as Error);
    }
  }

  /** The handler's answer as a response frame; a handler that throws answers with its message. */
  async #answer(protocol: string, handler: RequestHandler, fromName: string, requestBytes: Uint8Array): Promise<Uint8Array> {
    try {
      const result = await handler(fromName, requestBytes);
      return result.length > this.#context.limits.frameBytesMax ? errorResponse(`response of ${result.length} bytes exceeds the frame limit`) : okResponse(result);
    } catch (error) {
      this.#context.log.debug({ protocol, from: fromName, err: error }, 'request handler threw');
      return errorResponse((error as Error).message ?? String(error));
    }
  }
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
