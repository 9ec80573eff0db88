/**
 * Requests and their replies: each request carries an id, and the reply (or an error frame) with that
 * id settles it, so status, list, watch and upload calls may overlap on one connection.
 */
import type { ClientMessage, QueuedMessage, ServerMessage } from '../protocol/index.ts';
import { errorFrom, type Connection } from './connection.ts';
import { DcasClientError } from './errors.ts';

interface Pending {
  expect: ServerMessage['type'];
  /** The node said the request is waiting its turn (queued): stop the reply timer. */
  extend(): void;
  onQueued?: (place: number) => void;
  resolve(message: ServerMessage): void;
  reject(error: Error): void;
}

export class Requests {
  readonly #connection: Connection;
  /** How long a request waits for its reply unless it says otherwise. */
  readonly #timeoutMs: number;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;

  constructor(connection: Connection, timeoutMs: number) {
    this.#connection = connection;
    this.#timeoutMs = timeoutMs;
  }

  /** A fresh request id (also for messages that expect no reply, such as upload-abort). */
  nextId(): number {
    return this.#nextId++;
  }

  request<T extends ServerMessage>(message: ClientMessage & { id: number }, expect: T['type'], timeoutMs = this.#timeoutMs, onQueued?: (place: number) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#connection.closed) {
        reject(this.#connection.closedError);
        return;
      }
      const timer = setTimeout(() => {
        this.#pending.delete(message.id);
        reject(new DcasClientError('TIMEOUT', `${message.type}: no answer from ${this.#connection.welcome.node} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(message.id, {
        expect,
        // A queued request waits as long as the node keeps it queued: the node bounds that wait
        // (its queue timeout answers BUSY), and the heartbeat watchdog catches a node that went silent.
        extend: () => clearTimeout(timer),
        onQueued,
        resolve: (reply) => {
          clearTimeout(timer);
          resolve(reply as T);
        },
        reject: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      this.#connection.send(message);
    });
  }

  /** A reply (or error frame) for request `id`; false when no request waits for it. */
  settle(id: unknown, message: ServerMessage): boolean {
    if (typeof id !== 'number') return false;
    const waiting = this.#pending.get(id);
    if (waiting === undefined) return false;
    this.#pending.delete(id);
    if (message.type === 'error') waiting.reject(errorFrom(message));
    else if (message.type === waiting.expect) waiting.resolve(message);
    else waiting.reject(new DcasClientError('PROTOCOL', `expected ${waiting.expect} from ${this.#connection.welcome.node}, got ${message.type}`));
    return true;
  }

  queued(message: QueuedMessage): void {
    const waiting = typeof message.id === 'number' ? this.#pending.get(message.id) : undefined;
    waiting?.extend();
    waiting?.onQueued?.(message.place);
  }

  /** The connection closed: every request still waiting fails with `error`. */
  rejectAll(error: DcasClientError): void {
    for (const waiting of this.#pending.values()) waiting.reject(error);
    this.#pending.clear();
  }
}
