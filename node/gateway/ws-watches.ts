/**
 * Watches over the WebSocket protocol: a connection follows up to watchesMax jobs; each watched job's
 * updates are sent at most once per watchIntervalMs (the latest view wins), and not while the client is
 * behind on reading.
 */
import type { JobView } from '../jobs/index.ts';
import type { RequestId, UnwatchMessage, WatchMessage } from '../protocol/index.ts';
import type { Connection } from './ws-connection.ts';
import { getJob, type WebSocketParts } from './ws-parts.ts';

export interface WatchState {
  requestId: RequestId | undefined;
  latest: JobView | undefined;
  timer: NodeJS.Timeout | undefined;
  sentAtMs: number;
  unsubscribe: (() => void) | undefined;
  stopped: boolean;
}

export class WebSocketWatches {
  readonly #parts: WebSocketParts;

  constructor(parts: WebSocketParts) {
    this.#parts = parts;
  }

  async start(connection: Connection, message: WatchMessage): Promise<void> {
    const { jobId, id } = message;
    const watchesMax = this.#parts.limits.watchesMax;
    const existing = connection.watches.get(jobId);
    if (existing !== undefined) {
      // Watching twice is not an error; the client gets the job now, as on a first watch.
      connection.send({ type: 'job', id, job: await getJob(this.#parts, jobId) });
      return;
    }
    if (connection.watches.size >= watchesMax) {
      connection.rejectRequest('BUSY', `a connection may watch at most ${watchesMax} jobs`, { id, jobId });
      return;
    }
    const watch: WatchState = { requestId: id, latest: undefined, timer: undefined, sentAtMs: 0, unsubscribe: undefined, stopped: false };
    connection.watches.set(jobId, watch);
    try {
      // No read before subscribing: the jobs room's watch subscribes first and then delivers the job
      // as it is, so a change between a read and a subscription cannot be lost here.
      const unsubscribe = await this.#parts.jobs!.watch(jobId, (job) => this.#offer(connection, watch, job));
      if (watch.stopped) unsubscribe();
      else watch.unsubscribe = unsubscribe;
    } catch (error) {
      this.#stop(watch);
      if (connection.watches.get(jobId) === watch) connection.watches.delete(jobId);
      throw error;
    }
  }

  unwatch(connection: Connection, message: UnwatchMessage): void {
    const jobIds = message.jobId === undefined ? [...connection.watches.keys()] : [message.jobId].filter((jobId) => connection.watches.has(jobId));
    for (const jobId of jobIds) {
      this.#stop(connection.watches.get(jobId)!);
      connection.watches.delete(jobId);
    }
    connection.send({ type: 'unwatched', id: message.id, jobIds });
  }

  onClosed(connection: Connection): void {
    for (const watch of connection.watches.values()) this.#stop(watch);
    connection.watches.clear();
  }

  /** Keeps the latest view; sends at most one per interval, and waits while the client is behind. */
  #offer(connection: Connection, watch: WatchState, job: JobView): void {
    if (watch.stopped) return;
    watch.latest = job;
    if (watch.timer !== undefined) return;
    const { watchIntervalMs, downloadBufferedBytesMax } = this.#parts.limits;
    const flush = () => {
      watch.timer = undefined;
      if (watch.stopped || watch.latest === undefined) return;
      const waitMs = watch.sentAtMs + watchIntervalMs - Date.now();
      const behind = connection.socket.bufferedAmount > downloadBufferedBytesMax;
      if (waitMs > 0 || behind) {
        watch.timer = setTimeout(flush, Math.max(waitMs, watchIntervalMs));
        return;
      }
      connection.send({ type: 'job', id: watch.requestId, job: watch.latest });
      watch.latest = undefined;
      watch.sentAtMs = Date.now();
    };
    flush();
  }

  #stop(watch: WatchState): void {
    watch.stopped = true;
    clearTimeout(watch.timer);
    watch.timer = undefined;
    const unsubscribe = watch.unsubscribe;
    watch.unsubscribe = undefined;
    try {
      unsubscribe?.();
    } catch (error) {
      this.#parts.logger.warn({ err: error }, 'gateway: unsubscribing a watch failed');
    }
  }
}
