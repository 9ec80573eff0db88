/**
 * Watches: the node sends a job's view now and on every change. Several watches of one job share one
 * `watch` request; the last one to stop sends `unwatch`.
 */
import type { JobView } from '../jobs/index.ts';
import type { JobMessage } from '../protocol/index.ts';
import type { Connection } from './connection.ts';
import type { DcasClientError } from './errors.ts';
import type { Requests } from './requests.ts';
import type { Watch } from './types.ts';

export const terminalStates: ReadonlySet<string> = new Set(['completed', 'failed']);

interface Watcher {
  onJob(job: JobView): void;
  onClose(error: Error): void;
}

export class Watches {
  readonly #connection: Connection;
  readonly #requests: Requests;
  readonly #watchers = new Map<string, Set<Watcher>>();
  /** The last view of each watched job, for a second watch of it (the node sends it only once). */
  readonly #latestJob = new Map<string, JobView>();

  constructor(connection: Connection, requests: Requests) {
    this.#connection = connection;
    this.#requests = requests;
  }

  async watch(jobId: string, onJob: (job: JobView) => void, onClose: (error: Error) => void = () => {}): Promise<Watch> {
    const watcher: Watcher = { onJob, onClose };
    let set = this.#watchers.get(jobId);
    const first = set === undefined;
    if (set === undefined) {
      set = new Set();
      this.#watchers.set(jobId, set);
    }
    set.add(watcher);
    try {
      if (first) await this.#requests.request<JobMessage>({ type: 'watch', id: this.#requests.nextId(), jobId }, 'job');
      else if (this.#latestJob.has(jobId)) onJob(this.#latestJob.get(jobId)!);
    } catch (error) {
      set.delete(watcher);
      if (set.size === 0 && this.#watchers.get(jobId) === set) this.#watchers.delete(jobId);
      throw error;
    }
    let stopped = false;
    const watchers = set;
    return {
      stop: async () => {
        if (stopped) return;
        stopped = true;
        await this.#stop(jobId, watchers, watcher);
      },
    };
  }

  async #stop(jobId: string, set: Set<Watcher>, watcher: Watcher): Promise<void> {
    set.delete(watcher);
    if (set.size > 0 || this.#watchers.get(jobId) !== set) return;
    this.#watchers.delete(jobId);
    this.#latestJob.delete(jobId);
    if (!this.#connection.closed) await this.#requests.request({ type: 'unwatch', id: this.#requests.nextId(), jobId }, 'unwatched').catch(() => {});
  }

  /** Follows the job until it is completed or failed and returns that view (a failed job is not an error). */
  async waitForCompletion(jobId: string, waitOptions: { onJob?: (job: JobView) => void } = {}): Promise<JobView> {
    let settle!: { resolve: (job: JobView) => void; reject: (error: Error) => void };
    const outcome = new Promise<JobView>((resolve, reject) => (settle = { resolve, reject }));
    const handle = await this.watch(
      jobId,
      (job) => {
        waitOptions.onJob?.(job);
        if (terminalStates.has(job.state)) settle.resolve(job);
      },
      (error) => settle.reject(error),
    );
    try {
      return await outcome;
    } finally {
      await handle.stop();
    }
  }

  /** A job view arrived (the reply to `watch` or `status`, or a change). */
  deliver(job: JobView): void {
    this.#latestJob.set(job.id, job);
    for (const watcher of this.#watchers.get(job.id) ?? []) watcher.onJob(job);
  }

  onClosed(error: DcasClientError): void {
    for (const set of this.#watchers.values()) for (const watcher of set) watcher.onClose(error);
    this.#watchers.clear();
  }
}
