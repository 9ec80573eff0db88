/**
 * The coordinator's decisions as a pure state machine: given the active jobs with their chunks, the
 * members and the time, it returns what to propose and what to do (clean up, merge), in order. It keeps
 * in memory only what a new coordinator can rebuild from the state: lease deadlines, worker health and
 * the merges it started. No timers, sockets, disk, clock or randomness: scheduler.ts runs it on a timer
 * and on every applied change, and the simulation (node/jobs/sim) runs it against seeded faults.
 */
import type { Member } from '../../cluster/index.ts';
import type { StateOp } from '../../storage/index.ts';
import type { ChunkRecord, JobRecord } from '../records.ts';
import { allowance, lapseCountsAgainstChunk, planAssignments, recordCompletion, recordLapse, type HealthBook, type HealthPolicy, type WorkerSlots } from '../worker-health.ts';
import { chunkCasCommand, deleteChunkOps, jobCasCommand, retireCommand, type Command } from './commands.ts';
import { assertChunkMove, assertJobs } from './invariants.ts';
import { chunkKey } from './keys.ts';
import { codes } from './hand-back.ts';
import { failedJob } from './transitions.ts';

/** A worker's slots and the threads behind them. */
type ThreadedSlots = WorkerSlots & { threads: number };

/** What the coordinator needs of a member. */
export type MemberFacts = Pick<Member, 'name' | 'status' | 'startedAt' | 'heartbeatAgeMs'> & { load?: Partial<Pick<Member['load'], 'workers' | 'queue'>> };

export interface CoordinatorConfig {
  leaseMs: number;
  attemptsMax: number;
  inFlightPerWorker: number;
  /** Worker threads per node when a member's heartbeat does not say. */
  workersDefault: number;
}

export interface JobSnapshot {
  job: JobRecord;
  chunks: readonly ChunkRecord[];
}

/**
 * One thing to do. A `required` proposal that loses its compare-and-set ends its job's plan: what follows
 * depends on it (the next round decides again).
 */
export type Step =
  | { kind: 'propose'; command: Command; required?: boolean; log?: { message: string; fields: Record<string, unknown>; level: 'info' | 'warn' } }
  | { kind: 'cleanup'; job: string }
  | { kind: 'merge'; job: string };

export interface RoundPlan {
  /** Per job, steps to run one after another. */
  jobs: Array<{ job: string; steps: Step[] }>;
  /** Assignments (and chunks parked dead before assignment): independent, proposed together. */
  assignments: Command[];
  /** Of those, the chunks moved from a worker's queue to an idle worker (the tail of a job), for the log. */
  moves: Array<{ job: string; chunk: number; from: string; to: string }>;
}

/**
 * A chunk whose lease lapses this many times per attempt it may fail is parked as dead, whoever held
 * it: lapses on unproven workers do not use up attempts (worker-health.ts), but must not loop forever.
 */
export const lapsesPerAttemptMax = 4;
/** The longest quarantine of a worker whose leases keep lapsing, in leases. */
const quarantineLeasesMax = 16;
/** Merges one coordinator runs at once; more wait for a later round. */
const mergesMax = 64;

export class Coordinator {
  readonly #config: CoordinatorConfig;
  readonly #leases = new Map<string, number>();
  readonly #merging = new Set<string>();
  readonly #health: HealthBook = new Map();
  readonly #healthPolicy: HealthPolicy;

  constructor(config: CoordinatorConfig) {
    assertJobs(config.leaseMs > 0, 'coordinator: leaseMs must be positive');
    assertJobs(config.attemptsMax > 0, 'coordinator: attemptsMax must be positive');
    this.#config = config;
    this.#healthPolicy = { quarantineMsBase: config.leaseMs, quarantineMsMax: config.leaseMs * quarantineLeasesMax };
  }

  /** This node stopped (or started) leading: earlier assignments get a fresh lease, as nobody knows when they were made. */
  leadershipChanged(): void {
    this.#leases.clear();
  }

  /** Completions as the log applies them: each one is a lease its worker served. */
  observe(ops: readonly StateOp[]): void {
    for (const op of ops) {
      if (op.op !== 'put' || !op.key.startsWith('chunks/')) continue;
      const chunk = op.value as unknown as ChunkRecord;
      if (chunk.state === 'done' && chunk.node !== null) recordCompletion(this.#health, chunk.node);
    }
  }

  /** A merge this coordinator started has ended, either way; a later round may start it again. */
  mergeEnded(jobId: string): void {
    this.#merging.delete(jobId);
  }

  /** Everything to do now for the active jobs. */
  round(jobs: readonly JobSnapshot[], members: readonly MemberFacts[], nowMs: number): RoundPlan {
    const alive = new Set(members.filter((member) => member.status !== 'dead').map((member) => member.name));
    const assigned = new Map<string, ChunkRecord[]>();
    const pending: ChunkRecord[] = [];
    const plan: RoundPlan = { jobs: [], assignments: [], moves: [] };
    for (const { job, chunks } of jobs) {
      const ending = this.#endingSteps(job, chunks, members, nowMs);
      const steps = ending ?? this.#leaseSteps(chunks, alive, assigned, pending, nowMs);
      const merge = ending === undefined ? this.#mergeStep(job, chunks) : undefined;
      if (merge !== undefined) steps.push(merge);
      if (steps.length > 0) plan.jobs.push({ job: job.id, steps });
    }
    const workers = this.#workerSlots(members, assigned);
    plan.assignments = pending.length > 0 ? this.#assign(pending, workers, nowMs) : this.#rebalance(assigned, workers, plan.moves, nowMs);
    return plan;
  }

  /** A job that ends this round (retired, failed for a dead chunk, orphaned by its gateway): its steps; undefined otherwise. */
  #endingSteps(job: JobRecord, chunks: readonly ChunkRecord[], members: readonly MemberFacts[], nowMs: number): Step[] | undefined {
    // A terminal job stays active until its staged blobs are gone, so a coordinator that dies between
    // the two leaves the cleanup to the next one. Chunk records created after its failure read them
    // (an upload's last batch) go with it.
    if (job.state === 'completed' || job.state === 'failed') return [{ kind: 'cleanup', job: job.id }, { kind: 'propose', command: retireCommand(job.id, chunks) }];
    const dead = chunks.find((chunk) => chunk.state === 'dead');
    if (dead !== undefined) return [...failSteps(job, chunks, deadChunkReason(dead), nowMs, 'scheduler: job failed'), { kind: 'cleanup', job: job.id }];
    const orphaned = orphanReason(job, members, this.#config.leaseMs);
    if (orphaned !== undefined) return failSteps(job, chunks, orphaned, nowMs, 'scheduler: upload orphaned by its gateway; job failed');
    return undefined;
  }

  /** Leases: a chunk held by a dead node or past its deadline is taken back; the rest count as held. */
  #leaseSteps(chunks: readonly ChunkRecord[], alive: ReadonlySet<string>, assigned: Map<string, ChunkRecord[]>, pending: ChunkRecord[], nowMs: number): Step[] {
    const steps: Step[] = [];
    for (const chunk of chunks) {
      if (chunk.state === 'pending') pending.push(chunk);
      if (chunk.state !== 'assigned') continue;
      const node = chunk.node!;
      const key = chunkKey(chunk.job, chunk.index);
      const deadlineMs = this.#leases.get(key) ?? nowMs + this.#config.leaseMs;
      this.#leases.set(key, deadlineMs);
      if (!alive.has(node)) {
        steps.push(this.#release(chunk, `node ${node} is dead`, { usesAttempt: true, lapsed: false }));
      } else if (nowMs > deadlineMs) {
        const usesAttempt = lapseCountsAgainstChunk(this.#health, node);
        recordLapse(this.#health, node, nowMs, this.#healthPolicy);
        steps.push(this.#release(chunk, `lease of ${this.#config.leaseMs} ms lapsed on ${node}`, { usesAttempt, lapsed: true }));
      } else {
        assigned.set(node, [...(assigned.get(node) ?? []), chunk]);
      }
    }
    return steps;
  }

  /**
   * Takes a chunk back from its node; after too many failures (or lapses) it is parked as dead.
   * `usesAttempt`: this counts as one of the chunk's attempts; `lapsed`: its lease lapsed.
   */
  #release(chunk: ChunkRecord, reason: string, how: { usesAttempt: boolean; lapsed: boolean }): Step {
    const failures = chunk.failures + (how.usesAttempt ? 1 : 0);
    const lapses = (chunk.lapses ?? 0) + (how.lapsed ? 1 : 0);
    const exhausted = failures >= this.#config.attemptsMax || lapses >= this.#config.attemptsMax * lapsesPerAttemptMax;
    const next: ChunkRecord = { ...chunk, state: exhausted ? 'dead' : 'pending', node: null, failures, lastError: `chunk ${chunk.index}: ${reason}` };
    if (how.lapsed) next.lapses = lapses;
    assertChunkMove(chunk, next);
    this.#leases.delete(chunkKey(chunk.job, chunk.index));
    return { kind: 'propose', command: chunkCasCommand(chunk, next), log: { level: 'info', message: 'scheduler: chunk released', fields: { job: chunk.job, chunk: chunk.index, reason, failures } } };
  }

  /**
   * A job whose chunks are all done is merged. One already 'merging' is merged again: its merge may have
   * died with an earlier coordinator or failed on a transient error, and the merger resumes from that
   * state (without this, such jobs stayed 'merging' forever; found by the chaos run).
   */
  #mergeStep(job: JobRecord, chunks: readonly ChunkRecord[]): Step | undefined {
    const mergeable = job.state === 'processing' || job.state === 'merging';
    if (!mergeable || job.chunks === null || chunks.length !== job.chunks || !chunks.every((chunk) => chunk.state === 'done')) return undefined;
    if (this.#merging.has(job.id) || this.#merging.size >= mergesMax) return undefined;
    this.#merging.add(job.id);
    return { kind: 'merge', job: job.id };
  }

  #workerSlots(members: readonly MemberFacts[], assigned: ReadonlyMap<string, readonly ChunkRecord[]>): ThreadedSlots[] {
    return members
      .filter((member) => member.status === 'alive' && codes(member))
      .map((member) => {
        const threads = member.load?.workers ?? this.#config.workersDefault;
        return { name: member.name, threads, slots: threads * this.#config.inFlightPerWorker, inFlight: assigned.get(member.name)?.length ?? 0, queue: member.load?.queue ?? 0 };
      });
  }

  /**
   * The tail of a job: nothing is pending, yet a worker has an idle thread while another holds more
   * chunks than it has threads (each thread holds `inFlightPerWorker` so it never waits between chunks;
   * the extra ones wait in its queue). The chunk that waits longest is given to the idle worker, the
   * most recently assigned of the fullest holder, as a new attempt: the holder drops it from its queue
   * when the move is applied, and had it begun, its completion loses its guard and its output is
   * dropped, as after a lapsed lease. Without this a worker slower than the rest could end a job with a
   * chunk still waiting behind its running one while another worker stood idle. A taker gets no more
   * than its idle threads and its slow-start allowance (worker-health.ts).
   */
  #rebalance(assigned: Map<string, ChunkRecord[]>, workers: readonly ThreadedSlots[], moves: RoundPlan['moves'], nowMs: number): Command[] {
    const commands: Command[] = [];
    const surplus = (worker: ThreadedSlots) => (assigned.get(worker.name)?.length ?? 0) - worker.threads;
    for (const taker of workers) {
      for (let room = Math.min(-surplus(taker), allowance(this.#health, taker, nowMs)); room > 0; room -= 1) {
        const giver = workers.filter((worker) => surplus(worker) > 0).sort((a, b) => surplus(b) - surplus(a) || a.name.localeCompare(b.name))[0];
        if (giver === undefined) return commands;
        const held = assigned.get(giver.name)!;
        const chunk = this.#latestAssigned(held);
        held.splice(held.indexOf(chunk), 1);
        const next: ChunkRecord = { ...chunk, node: taker.name, attempt: chunk.attempt + 1 };
        assertChunkMove(chunk, next);
        this.#leases.set(chunkKey(chunk.job, chunk.index), nowMs + this.#config.leaseMs);
        assigned.set(taker.name, [...(assigned.get(taker.name) ?? []), next]);
        commands.push(chunkCasCommand(chunk, next));
        moves.push({ job: chunk.job, chunk: chunk.index, from: giver.name, to: taker.name });
      }
    }
    return commands;
  }

  /** Of a worker's chunks, the one it was given last (its lease ends last; then the highest index): the last in its queue. */
  #latestAssigned(held: readonly ChunkRecord[]): ChunkRecord {
    const deadline = (chunk: ChunkRecord) => this.#leases.get(chunkKey(chunk.job, chunk.index)) ?? 0;
    return held.reduce((latest, chunk) => (deadline(chunk) > deadline(latest) || (deadline(chunk) === deadline(latest) && chunk.index > latest.index) ? chunk : latest));
  }

  /** Gives pending chunks to the workers that earned them (worker-health.ts decides who). */
  #assign(pending: readonly ChunkRecord[], workers: readonly WorkerSlots[], nowMs: number): Command[] {
    const commands: Command[] = [];
    const assignable: ChunkRecord[] = [];
    for (const chunk of pending) {
      if (chunk.failures >= this.#config.attemptsMax) commands.push(chunkCasCommand(chunk, { ...chunk, state: 'dead' }));
      else assignable.push(chunk);
    }
    const plan = planAssignments(assignable.length, workers, this.#health, nowMs);
    for (const [i, target] of plan.entries()) {
      const chunk = assignable[i];
      const next: ChunkRecord = { ...chunk, state: 'assigned', node: target, attempt: chunk.attempt + 1, assignedAt: chunk.assignedAt ?? new Date(nowMs).toISOString() };
      assertChunkMove(chunk, next);
      this.#leases.set(chunkKey(chunk.job, chunk.index), nowMs + this.#config.leaseMs);
      commands.push(chunkCasCommand(chunk, next));
    }
    return commands;
  }
}

function failSteps(job: JobRecord, chunks: readonly ChunkRecord[], reason: string, nowMs: number, message: string): Step[] {
  const after = failedJob(job, reason, nowMs);
  if (after === undefined) return [];
  return [{ kind: 'propose', command: jobCasCommand(job, after, deleteChunkOps(chunks)), required: true, log: { level: 'warn', message, fields: { job: job.id, gateway: job.gateway, reason } } }];
}

function deadChunkReason(dead: ChunkRecord): string {
  const lapses = dead.lapses ?? 0;
  return `chunk ${dead.index} failed ${dead.failures} times${lapses > 0 ? ` (its lease lapsed ${lapses} times)` : ''}; last error: ${dead.lastError ?? 'unknown'}`;
}

/**
 * An upload lives in its gateway's memory: if that gateway restarted since the upload began (its start
 * time, like the job's timestamps, comes from its own clock), nobody will finish it. A gateway that only
 * looks dead may be paused or cut off and come back, so it gets a lease's time first. Without this,
 * such jobs stayed 'uploading' with their staged blobs forever (found by the chaos run).
 */
export function orphanReason(job: JobRecord, members: readonly MemberFacts[], leaseMs: number): string | undefined {
  if (job.state !== 'uploading') return undefined;
  const gateway = members.find((member) => member.name === job.gateway);
  const uploadingSince = Date.parse(job.timestamps.uploading ?? '');
  const restarted = gateway !== undefined && Number.isFinite(uploadingSince) && gateway.startedAt > uploadingSince;
  const deadLongEnough = gateway !== undefined && gateway.status === 'dead' && gateway.heartbeatAgeMs > leaseMs;
  if (!restarted && !deadLongEnough) return undefined;
  return `upload aborted: gateway ${job.gateway} ${restarted ? 'restarted' : `was unreachable for over ${leaseMs} ms`} during the upload`;
}
