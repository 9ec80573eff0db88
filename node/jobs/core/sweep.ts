/**
 * Staged blobs that outlived their job. A job stays active until its coordinator removed its staging
 * (coordinator.ts), but a process can still write there afterwards and die before removing what it wrote:
 * a deposed coordinator's merge (its header and tail), a worker's losing run. No round sees a retired job
 * again, so the coordinator sweeps: every `sweepMs` it lists the staging folders and removes those of jobs
 * that ended and were retired. A folder whose job has no record at all (deleted, or an upload whose record
 * this node has not applied yet) goes only when it was also without a record at the previous sweep.
 * Pure, as the coordinator: the scheduler and the simulation list, read and delete.
 */
import type { JobRecord } from '../records.ts';
import { assertJobs } from './invariants.ts';
import { jobEnded } from './transitions.ts';

/** What the sweep knows of a job id found under staging/: its record (undefined: none) and whether it is active. */
export interface StagedJob {
  id: string;
  record: JobRecord | undefined;
  active: boolean;
}

export class StagingSweeper {
  readonly #sweepMs: number;
  #lastMs = Number.NEGATIVE_INFINITY;
  /** Job ids found staged without a record at the last sweep. */
  #missing = new Set<string>();

  constructor(sweepMs: number) {
    assertJobs(sweepMs > 0, 'sweeper: sweepMs must be positive');
    this.#sweepMs = sweepMs;
  }

  /** Whether a sweep is due; a new coordinator sweeps on its first round. */
  due(nowMs: number): boolean {
    return nowMs - this.#lastMs >= this.#sweepMs;
  }

  /** This node stopped (or started) leading: what it saw missing may be stale, and its next round sweeps. */
  leadershipChanged(): void {
    this.#missing.clear();
    this.#lastMs = Number.NEGATIVE_INFINITY;
  }

  /** The job ids whose staging to remove now, given every job id found under staging/. */
  sweep(staged: readonly StagedJob[], nowMs: number): string[] {
    this.#lastMs = nowMs;
    const missingBefore = this.#missing;
    this.#missing = new Set(staged.filter((job) => job.record === undefined).map((job) => job.id));
    return staged.filter((job) => !job.active && (job.record === undefined ? missingBefore.has(job.id) : jobEnded(job.record))).map((job) => job.id);
  }
}

/** The job id of a staged blob key (`staging/<id>/...`), or undefined for a key outside staging. */
export function stagedJobId(key: string): string | undefined {
  const match = /^staging\/([^/]+)\//.exec(key);
  return match?.[1];
}
