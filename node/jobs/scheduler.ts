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
import type { StateOp } from '../storage/state-store.ts';
import type { JobsConfig } from '../config/index.ts';
import { activeJobIds, activeKey, casChunk, chunkKey, readChunks, readJob, updateJob, stamp, type ChunkRecord, type JobRecord } from './records.ts';
import type { Merger } from './merge.ts';
import { lapseCountsAgainstChunk, planAssignments, recordCompletion, recordLapse, type HealthBook, type HealthPolicy, type WorkerSlots } from './worker-health.ts';

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

/**
 * A chunk whose lease lapses this many times per attempt it may fail is parked as dead, whoever held
 * it: lapses on unproven workers do not use up attempts (worker-health.ts), but must not loop forever.
 */
const lapsesPerAttemptMax = 4;
/** The longest quarantine of a worker whose leases keep lapsing, in leases. */
const quarantineLeasesMax = 16;

export function createScheduler(options: SchedulerOptions): Scheduler {
  const { state, config, logger, merger } = options;
  const intervalMs = options.intervalMs ?? 250;
  const leases = new Map<string, number>();
  const merging = new Set<string>();
  const health: HealthBook = new Map();
  const healthPolicy: HealthPolicy = { quarantineMsBase: config.leaseMs, quarantineMsMax: config.leaseMs * quarantineLeasesMax };
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

  function workerSlots(assigned: Map<string, number>): WorkerSlots[] {
    return options
      .members()
      .filter((member) => member.status === 'alive')
      .map((member) => {
        const workers = member.load?.workers ?? options.workersDefault ?? 1;
        return { name: member.name, slots: workers * config.inFlightPerWorker, inFlight: assigned.get(member.name) ?? 0, queue: member.load?.queue ?? 0 };
      });
  }

  /** Completions as the log applies them: each one is a lease its worker served. */
  function observeCompletions(ops: readonly StateOp[]): void {
    for (const op of ops) {
      if (op.op !== 'put' || !op.key.startsWith('chunks/')) continue;
      const chunk = op.value as unknown as ChunkRecord;
      if (chunk.state === 'done' && chunk.node !== null) recordCompletion(health, chunk.node);
    }
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
        if (!alive.has(chunk.node!)) {
          await release(chunk, `node ${chunk.node} is dead`, { usesAttempt: true, lapsed: false });
        } else if (now > deadline) {
          const usesAttempt = lapseCountsAgainstChunk(health, chunk.node!);
          recordLapse(health, chunk.node!, now, healthPolicy);
          await release(chunk, `lease of ${config.leaseMs} ms lapsed on ${chunk.node}`, { usesAttempt, lapsed: true });
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
    await assign(pending, workerSlots(assigned), now);
  }

  async function failIfDead(job: JobRecord, chunks: readonly ChunkRecord[]): Promise<boolean> {
    const dead = chunks.find((chunk) => chunk.state === 'dead');
    if (dead === undefined) return false;
    const lapses = dead.lapses ?? 0;
    const reason = `chunk ${dead.index} failed ${dead.failures} times${lapses > 0 ? ` (its lease lapsed ${lapses} times)` : ''}; last error: ${dead.lastError ?? 'unknown'}`;
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

  /**
   * Takes a chunk back from its node; after too many failures (or lapses) it is parked as dead.
   * `usesAttempt`: this counts as one of the chunk's attempts; `lapsed`: its lease lapsed.
   */
  async function release(chunk: ChunkRecord, reason: string, how: { usesAttempt: boolean; lapsed: boolean }): Promise<void> {
    const { lapsed } = how;
    const failures = chunk.failures + (how.usesAttempt ? 1 : 0);
    const lapses = (chunk.lapses ?? 0) + (lapsed ? 1 : 0);
    const exhausted = failures >= config.attemptsMax || lapses >= config.attemptsMax * lapsesPerAttemptMax;
    const next: ChunkRecord = {
      ...chunk,
      state: exhausted ? 'dead' : 'pending',
      node: null,
      failures,
      lastError: `chunk ${chunk.index}: ${reason}`,
    };
    if (lapsed) next.lapses = lapses;
    leases.delete(chunkKey(chunk.job, chunk.index));
    if (await casChunk(state, chunk, next)) logger.info({ job: chunk.job, chunk: chunk.index, reason, failures }, 'scheduler: chunk released');
  }

  /** Gives pending chunks to the workers that earned them (worker-health.ts decides who). */
  async function assign(pending: readonly ChunkRecord[], workers: readonly WorkerSlots[], now: number): Promise<void> {
    const proposals: Promise<unknown>[] = [];
    const assignable: ChunkRecord[] = [];
    for (const chunk of pending) {
      if (chunk.failures >= config.attemptsMax) proposals.push(casChunk(state, chunk, { ...chunk, state: 'dead' }));
      else assignable.push(chunk);
    }
    const plan = planAssignments(assignable.length, workers, health, now);
    for (const [i, target] of plan.entries()) {
      const chunk = assignable[i];
      const next: ChunkRecord = { ...chunk, state: 'assigned', node: target, attempt: chunk.attempt + 1, assignedAt: chunk.assignedAt ?? new Date().toISOString() };
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
        if (!change.applied) return;
        observeCompletions(change.command.ops);
        trigger();
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
