/**
 * The coordinator's job logic, run only by the Raft leader: assign chunks to worker actors, watch
 * their leases, reassign what a dead or slow node held, park chunks that keep failing, and merge
 * finished jobs. Everything it decides goes through the replicated state; what it keeps in memory
 * (lease deadlines, merges under way) is rebuilt by a new leader from that state, so a coordinator
 * that dies mid-job is simply replaced and the job continues.
 */
import type { Logger } from 'pino';
import type { Member } from '../cluster/host/index.ts';
import type { ReplicatedState } from '../cluster/replicated.ts';
import type { JobsConfig } from '../config/index.ts';
import { activeJobIds, activeKey, casChunk, chunkKey, readChunks, readJob, updateJob, stamp, type ChunkRecord, type JobRecord } from './records.ts';
import type { Merger } from './merge.ts';

export interface SchedulerOptions {
  state: ReplicatedState;
  members: () => readonly Member[];
  merger: Merger;
  config: JobsConfig;
  logger: Logger;
  /** How often the scheduler looks at the state even when nothing changed (lease checks). */
  intervalMs?: number;
  /** Worker threads per node when a member's heartbeat does not say. */
  workersDefault?: number;
}

export interface Scheduler {
  start(): void;
  stop(): Promise<void>;
}

/** A node may take chunks while it is alive and has free slots. */
interface Capacity {
  name: string;
  free: number;
  queue: number;
}

export function createScheduler(options: SchedulerOptions): Scheduler {
  const { state, config, logger, merger } = options;
  const intervalMs = options.intervalMs ?? 250;
  const leases = new Map<string, number>();
  const merging = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;
  let round: Promise<void> | undefined;
  let again = false;
  let wasLeader = false;

  function trigger(): void {
    if (round !== undefined) {
      again = true;
      return;
    }
    round = tick()
      .catch((error: unknown) => logger.warn({ err: error }, 'scheduler: round failed; retrying'))
      .finally(() => {
        round = undefined;
        if (again) {
          again = false;
          trigger();
        }
      });
  }

  function capacities(assigned: Map<string, number>): Capacity[] {
    return options
      .members()
      .filter((member) => member.status === 'alive')
      .map((member) => {
        const workers = member.load?.workers ?? options.workersDefault ?? 1;
        const free = workers * config.inFlightPerWorker - (assigned.get(member.name) ?? 0);
        return { name: member.name, free, queue: member.load?.queue ?? 0 };
      })
      .filter((capacity) => capacity.free > 0);
  }

  async function tick(): Promise<void> {
    if (!state.isLeader()) {
      wasLeader = false;
      leases.clear();
      return;
    }
    const now = Date.now();
    if (!wasLeader) {
      // A new coordinator does not know when earlier assignments were made: give each a fresh lease.
      wasLeader = true;
      leases.clear();
    }
    const alive = new Set(options.members().filter((member) => member.status !== 'dead').map((member) => member.name));
    const assigned = new Map<string, number>();
    const pending: ChunkRecord[] = [];
    for (const id of await activeJobIds(state)) {
      const job = await readJob(state, id);
      if (job === undefined) continue;
      if (job.state === 'completed' || job.state === 'failed') {
        await retire(job.id);
        continue;
      }
      const chunks = await readChunks(state, id);
      if (await failIfDead(job, chunks)) continue;
      if (await failIfOrphaned(job, chunks)) continue;
      for (const chunk of chunks) {
        if (chunk.state === 'pending') pending.push(chunk);
        if (chunk.state !== 'assigned') continue;
        const key = chunkKey(chunk.job, chunk.index);
        const deadline = leases.get(key) ?? now + config.leaseMs;
        leases.set(key, deadline);
        if (!alive.has(chunk.node!) || now > deadline) {
          await release(chunk, alive.has(chunk.node!) ? `lease of ${config.leaseMs} ms lapsed on ${chunk.node}` : `node ${chunk.node} is dead`);
        } else {
          assigned.set(chunk.node!, (assigned.get(chunk.node!) ?? 0) + 1);
        }
      }
      // A job already 'merging' is merged again: its merge may have died with an earlier coordinator or
      // failed on a transient error, and the merger resumes from that state.
      const mergeable = job.state === 'processing' || job.state === 'merging';
      if (mergeable && job.chunks !== null && chunks.length === job.chunks && chunks.every((chunk) => chunk.state === 'done')) {
        startMerge(job);
      }
    }
    await assign(pending, capacities(assigned));
  }

  async function failIfDead(job: JobRecord, chunks: readonly ChunkRecord[]): Promise<boolean> {
    const dead = chunks.find((chunk) => chunk.state === 'dead');
    if (dead === undefined) return false;
    const reason = `chunk ${dead.index} failed ${dead.failures} times; last error: ${dead.lastError ?? 'unknown'}`;
    await updateJob(
      state,
      job.id,
      (current) => (current.state === 'failed' || current.state === 'completed' ? undefined : { ...stamp(current, 'failed'), error: reason }),
      () => chunks.map((chunk) => ({ op: 'del', key: chunkKey(chunk.job, chunk.index) }) as const),
    );
    await merger.cleanup(job.id);
    logger.warn({ job: job.id, chunk: dead.index }, 'scheduler: job failed');
    return true;
  }

  /** Removes a terminal job's staged blobs, then takes it off the active list. */
  async function retire(jobId: string): Promise<void> {
    await merger.cleanup(jobId);
    await state.propose({ guards: [{ key: activeKey(jobId), equals: true }], ops: [{ op: 'del', key: activeKey(jobId) }] });
  }

  /**
   * An upload lives in its gateway's memory: if that gateway restarted since the upload began (its start
   * time, like the job's timestamps, comes from its own clock), nobody will finish it. A gateway that
   * only looks dead may be paused or cut off and come back, so it gets a lease's time first.
   */
  async function failIfOrphaned(job: JobRecord, chunks: readonly ChunkRecord[]): Promise<boolean> {
    if (job.state !== 'uploading') return false;
    const gateway = options.members().find((member) => member.name === job.gateway);
    const uploadingSince = Date.parse(job.timestamps.uploading ?? '');
    const restarted = gateway !== undefined && Number.isFinite(uploadingSince) && gateway.startedAt > uploadingSince;
    const deadLongEnough = gateway !== undefined && gateway.status === 'dead' && gateway.heartbeatAgeMs > config.leaseMs;
    if (!restarted && !deadLongEnough) return false;
    const reason = `upload aborted: gateway ${job.gateway} ${restarted ? 'restarted' : `was unreachable for over ${config.leaseMs} ms`} during the upload`;
    await updateJob(
      state,
      job.id,
      (current) => (current.state === 'uploading' ? { ...stamp(current, 'failed'), error: reason } : undefined),
      () => chunks.map((chunk) => ({ op: 'del', key: chunkKey(chunk.job, chunk.index) }) as const),
    );
    logger.warn({ job: job.id, gateway: job.gateway }, 'scheduler: upload orphaned by its gateway; job failed');
    return true;
  }

  /** Takes a chunk back from its node; after too many failures it is parked as dead. */
  async function release(chunk: ChunkRecord, reason: string): Promise<void> {
    const failures = chunk.failures + 1;
    const next: ChunkRecord = {
      ...chunk,
      state: failures >= config.attemptsMax ? 'dead' : 'pending',
      node: null,
      failures,
      lastError: `chunk ${chunk.index}: ${reason}`,
    };
    leases.delete(chunkKey(chunk.job, chunk.index));
    if (await casChunk(state, chunk, next)) logger.info({ job: chunk.job, chunk: chunk.index, reason, failures }, 'scheduler: chunk released');
  }

  /** Gives each pending chunk to the node with the most free slots (ties: shortest queue). */
  async function assign(pending: readonly ChunkRecord[], nodes: Capacity[]): Promise<void> {
    const proposals: Promise<unknown>[] = [];
    for (const chunk of pending) {
      if (chunk.failures >= config.attemptsMax) {
        proposals.push(casChunk(state, chunk, { ...chunk, state: 'dead' }));
        continue;
      }
      nodes.sort((a, b) => b.free - a.free || a.queue - b.queue);
      const target = nodes[0];
      if (target === undefined || target.free <= 0) break;
      target.free--;
      const next: ChunkRecord = { ...chunk, state: 'assigned', node: target.name, attempt: chunk.attempt + 1, assignedAt: chunk.assignedAt ?? new Date().toISOString() };
      leases.set(chunkKey(chunk.job, chunk.index), Date.now() + config.leaseMs);
      proposals.push(casChunk(state, chunk, next));
    }
    await Promise.allSettled(proposals);
  }

  function startMerge(job: JobRecord): void {
    if (merging.has(job.id)) return;
    merging.add(job.id);
    merger
      .merge(job.id)
      .catch((error: unknown) => logger.warn({ err: error, job: job.id }, 'scheduler: merge failed; will retry'))
      .finally(() => merging.delete(job.id));
  }

  return {
    start() {
      unsubscribe = state.subscribe((change) => {
        if (change.applied) trigger();
      });
      timer = setInterval(trigger, intervalMs);
      trigger();
    },
    async stop() {
      unsubscribe?.();
      if (timer !== undefined) clearInterval(timer);
      await round;
    },
  };
}
