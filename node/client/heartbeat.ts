/**
 * Two things that decide whether the client reads its socket and whether it trusts a silent one: the
 * heartbeat watchdog and download backpressure. Each keeps its own state.
 *
 * How they interact: backpressure stops reading the socket while a download's consumer is behind, and a
 * socket that is not read delivers no pings either, so the watchdog would take a slow consumer for a dead
 * node. Backpressure therefore suspends the watchdog for exactly as long as it holds the socket paused,
 * and resuming starts a fresh three-heartbeat wait. The price: a node that dies during a pause is noticed
 * three heartbeats after reading resumes, not sooner (an overall deadline, if set, still applies). The
 * node has its own rule for the same situation: a client that stops reading for about two heartbeats is
 * dropped as dead (docs/PROTOCOL.md, "Flow control is TCP's").
 */
import type { WebSocket } from 'ws';

/** Hearing nothing, not even a ping, for this many heartbeats means the node or the path to it is gone. */
const silentHeartbeatsMax = 3;

export class HeartbeatWatchdog {
  /** The node's ping interval, from its welcome; 0 until then (and from a node that does not ping). */
  #heartbeatMs = 0;
  #timer: NodeJS.Timeout | undefined;
  /** Set by backpressure while the socket is paused. */
  #suspended = false;
  /** The connection closed: nothing to watch any more. */
  #stopped = false;
  readonly #onSilence: () => void;

  constructor(onSilence: () => void) {
    this.#onSilence = onSilence;
  }

  /** The welcome said how often the node pings. */
  start(heartbeatMs: number): void {
    this.#heartbeatMs = heartbeatMs;
    this.feed();
  }

  /** Something arrived (a ping or a message): the wait starts again. */
  feed(): void {
    clearTimeout(this.#timer);
    if (this.#heartbeatMs === 0 || this.#stopped || this.#suspended) return;
    this.#timer = setTimeout(this.#onSilence, this.#heartbeatMs * silentHeartbeatsMax);
    this.#timer.unref();
  }

  suspend(suspended: boolean): void {
    this.#suspended = suspended;
    this.feed();
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
  }
}

/** Download backpressure: the socket is not read while a download's consumer is behind. */
export class Backpressure {
  #paused = false;
  readonly #socket: WebSocket;
  readonly #watchdog: HeartbeatWatchdog;

  constructor(socket: WebSocket, watchdog: HeartbeatWatchdog) {
    this.#socket = socket;
    this.#watchdog = watchdog;
  }

  pause(paused: boolean): void {
    if (this.#paused === paused) return;
    this.#paused = paused;
    if (paused) this.#socket.pause();
    else this.#socket.resume();
    this.#watchdog.suspend(paused);
  }
}
