/**
 * Upload admission, shared by the WebSocket protocol and the HTTP API: at most `uploadsMax` uploads run
 * at once on a node; past that an upload waits its turn in a bounded first-in-first-out queue, and past
 * the queue it is refused with BUSY and a retry-after. A waiting upload holds no body: the gateway reads
 * nothing from its socket (HTTP) and grants it no credit (WebSocket) until it is admitted, so memory stays
 * bounded however many wait. A waiter that goes away (its client disconnected) leaves the queue.
 */
import { JobError } from '../jobs/index.ts';

export interface AdmissionLimits {
  /** Uploads running at once on this node. */
  uploadsMax: number;
  /** Uploads waiting for a slot; one more is refused with BUSY. 0 turns the queue off. */
  uploadQueueMax: number;
  /** A waiting upload not admitted within this is refused with BUSY (its client may retry). */
  uploadQueueTimeoutMs: number;
  /**
   * Uploads (running and waiting) of one client address; one more is refused with TooManyUploadsError
   * (HTTP 429). Enforced only for anonymous clients (a node without a token), as connections per address.
   */
  uploadsPerAddressMax: number;
}

/** A slot, held until `release()`; releasing twice is a no-op (every end path may call it). */
export interface AdmissionTicket {
  release(): void;
}

export interface Waiter {
  /** Called with the waiter's 1-based place when it joins the queue and every time it moves up. */
  onPlace(place: number): void;
}

export interface QueuedAdmission {
  /** Resolves with a slot once admitted; rejects with BUSY when the queue is full or the wait timed out. */
  readonly admitted: Promise<AdmissionTicket>;
  /** Leaves the queue (the client went away); the promise then never resolves. */
  leave(): void;
}

export interface AdmissionStats {
  uploadsAdmitted: number;
  uploadsQueued: number;
  uploadsQueuedPeak: number;
  uploadsRefusedBusy: number;
}

export interface UploadAdmission {
  /** `address`: the client's, when uploads per address are limited (no token); undefined: not counted. */
  request(waiter: Waiter, address?: string): QueuedAdmission;
  stats(): AdmissionStats;
}

/** The error a refused upload gets: BUSY with a hint of when to try again. */
export class BusyError extends JobError {
  readonly retryAfterMs: number;

  constructor(message: string, retryAfterMs: number) {
    super('BUSY', message);
    this.retryAfterMs = retryAfterMs;
  }
}

/** One client address has its share of the node's uploads: HTTP 429, a WebSocket BUSY. */
export class TooManyUploadsError extends BusyError {}

/** The shortest and longest retry-after hint the node gives. */
const retryAfterMsMin = 1_000;
const retryAfterMsMax = 30_000;

interface Entry {
  waiter: Waiter;
  address: string | undefined;
  resolve(ticket: AdmissionTicket): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
  done: boolean;
}

function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`admission invariant broken: ${message}`);
}

/** The node's upload slots and their first-in-first-out queue; one per gateway, shared by both APIs. */
class AdmissionQueue implements UploadAdmission {
  readonly #node: string;
  readonly #limits: AdmissionLimits;
  readonly #queue: Entry[] = [];
  /** Uploads running or waiting per client address (only addresses that are counted). */
  readonly #byAddress = new Map<string, number>();
  #admitted = 0;
  #queuedPeak = 0;
  #refusedBusy = 0;

  constructor(node: string, limits: AdmissionLimits) {
    assert(limits.uploadsMax >= 1, `uploadsMax ${limits.uploadsMax}`);
    assert(limits.uploadQueueMax >= 0, `uploadQueueMax ${limits.uploadQueueMax}`);
    this.#node = node;
    this.#limits = limits;
  }

  request(waiter: Waiter, address?: string): QueuedAdmission {
    const limits = this.#limits;
    if (address !== undefined && (this.#byAddress.get(address) ?? 0) >= limits.uploadsPerAddressMax) {
      this.#refusedBusy++;
      const error = new TooManyUploadsError(`node ${this.#node} has ${limits.uploadsPerAddressMax} uploads of ${address} running or waiting, its limit per client address; finish some first`, this.#retryAfterMs());
      return refused(error);
    }
    if (this.#admitted < limits.uploadsMax && this.#queue.length === 0) {
      this.#countAddress(address, 1);
      return { admitted: Promise.resolve(this.#ticket(address)), leave() {} };
    }
    if (this.#queue.length >= limits.uploadQueueMax) {
      return refused(this.#busy(`node ${this.#node} has ${limits.uploadsMax} uploads in progress and ${this.#queue.length} waiting; try again later or another node`));
    }
    return this.#enqueue(waiter, address);
  }

  stats(): AdmissionStats {
    return { uploadsAdmitted: this.#admitted, uploadsQueued: this.#queue.length, uploadsQueuedPeak: this.#queuedPeak, uploadsRefusedBusy: this.#refusedBusy };
  }

  #enqueue(waiter: Waiter, address: string | undefined): QueuedAdmission {
    let entry!: Entry;
    const admittedPromise = new Promise<AdmissionTicket>((resolve, reject) => {
      entry = { waiter, address, resolve, reject, timer: undefined as unknown as NodeJS.Timeout, done: false };
    });
    this.#countAddress(address, 1);
    const timeoutMs = this.#limits.uploadQueueTimeoutMs;
    entry.timer = setTimeout(() => {
      this.#remove(entry);
      entry.reject(this.#busy(`node ${this.#node}: upload waited ${timeoutMs} ms in the admission queue without a free slot; try again later or another node`));
    }, timeoutMs);
    entry.timer.unref();
    this.#queue.push(entry);
    this.#queuedPeak = Math.max(this.#queuedPeak, this.#queue.length);
    waiter.onPlace(this.#queue.length);
    return { admitted: admittedPromise, leave: () => this.#remove(entry) };
  }

  /**
   * A guess of when a slot frees up: the longer the line ahead of the client, the longer it is told to
   * wait, so retries of a crowd do not all land at once (the client adds its own jitter on top).
   */
  #retryAfterMs(): number {
    const rounds = Math.ceil((this.#queue.length + 1) / this.#limits.uploadsMax);
    return Math.min(Math.max(rounds * retryAfterMsMin, retryAfterMsMin), retryAfterMsMax);
  }

  #countAddress(address: string | undefined, change: 1 | -1): void {
    if (address === undefined) return;
    const count = (this.#byAddress.get(address) ?? 0) + change;
    assert(count >= 0, `uploads of ${address} below zero`);
    if (count === 0) this.#byAddress.delete(address);
    else this.#byAddress.set(address, count);
  }

  #ticket(address: string | undefined): AdmissionTicket {
    this.#admitted++;
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.#admitted--;
        this.#countAddress(address, -1);
        assert(this.#admitted >= 0, 'more uploads released than admitted');
        this.#admitNext();
      },
    };
  }

  #admitNext(): void {
    while (this.#admitted < this.#limits.uploadsMax && this.#queue.length > 0) {
      const entry = this.#queue.shift()!;
      entry.done = true;
      clearTimeout(entry.timer);
      entry.resolve(this.#ticket(entry.address));
    }
    this.#tellPlaces();
  }

  #tellPlaces(): void {
    this.#queue.forEach((entry, index) => entry.waiter.onPlace(index + 1));
  }

  #remove(entry: Entry): void {
    if (entry.done) return;
    entry.done = true;
    clearTimeout(entry.timer);
    const at = this.#queue.indexOf(entry);
    assert(at >= 0, 'a waiting upload is not in the queue');
    this.#queue.splice(at, 1);
    this.#countAddress(entry.address, -1);
    this.#tellPlaces();
  }

  #busy(message: string): BusyError {
    this.#refusedBusy++;
    return new BusyError(message, this.#retryAfterMs());
  }
}

/** An upload refused before it joined the queue: nothing to leave. */
function refused(error: BusyError): QueuedAdmission {
  return { admitted: Promise.reject(error), leave() {} };
}

export function createUploadAdmission(node: string, limits: AdmissionLimits): UploadAdmission {
  return new AdmissionQueue(node, limits);
}
