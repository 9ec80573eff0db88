/**
 * The coordinator's I/O shell, run only by the Raft leader: on a timer and on every applied change it
 * reads the active jobs, asks the pure Coordinator (core/coordinator.ts) what to do — assign chunks,
 * take back lapsed leases, park dead chunks, fail orphaned uploads, merge, clean up — and does it.
 * Everything decided goes through the replicated state; what the Coordinator keeps in memory (lease
 * deadlines, merges under way) is rebuilt by a new leader from that state, so a coordinator that dies
 * mid-job is simply replaced and the job continues.
 */
import type { Logger } from 'pino';
import type { Member, ReplicatedState } from '../cluster/index.ts';
import type { JobsConfig } from '../config/index.ts';
import type { BlobStore } from '../storage/index.ts';
import { Coordinator, stagedJobId, StagingSweeper, type JobSnapshot, type RoundPlan, type StagedJob, type Step } from './core/index.ts';
import type { Merger } from './merge.ts';
import { activeJobIds, readChunks, readJob } from './records.ts';

export interface SchedulerOptions {
  state: ReplicatedState;
  members: () => readonly Member[];
  merger: Merger;
  /** Where the sweep lists staged blobs (the merger removes them). */
  blobs: BlobStore;
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

/** The active jobs with their chunk records, as the coordinator decides on them. */
async function readActive(state: ReplicatedState): Promise<JobSnapshot[]> {
  const jobs: JobSnapshot[] = [];
  for (const id of await activeJobIds(state)) {
    const job = await readJob(state, id);
    if (job === undefined) continue;
    jobs.push({ job, chunks: await readChunks(state, id) });
  }
  return jobs;
}

/** Every job id with blobs under staging/, with its record and whether it is active. */
async function readStaged(state: ReplicatedState, blobs: BlobStore): Promise<StagedJob[]> {
  const ids = new Set((await blobs.list('staging/')).map(stagedJobId).filter((id) => id !== undefined));
  const active = new Set(await activeJobIds(state));
  const staged: StagedJob[] = [];
  for (const id of ids) staged.push({ id, record: await readJob(state, id), active: active.has(id) });
  return staged;
}

/** Removes the staging of jobs that ended and were retired (core/sweep.ts); runs beside the rounds. */
async function sweepStaging({ state, blobs, merger, logger }: SchedulerOptions, sweeper: StagingSweeper): Promise<void> {
  try {
    const strays = sweeper.sweep(await readStaged(state, blobs), Date.now());
    for (const id of strays) await merger.cleanup(id);
    if (strays.length > 0) logger.info({ jobs: strays }, 'scheduler: removed staged blobs left under ended jobs');
  } catch (error) {
    logger.warn({ err: error }, 'scheduler: staging sweep failed; will retry');
  }
}

/** A round's assignments, independent of one another, proposed together; moves at the tail of a job are logged. */
async function proposeAssignments({ state, logger }: SchedulerOptions, plan: RoundPlan): Promise<void> {
  for (const move of plan.moves) logger.info(move, 'scheduler: chunk moved from a queue to an idle worker');
  await Promise.allSettled(plan.assignments.map((command) => state.propose(command)));
}

export function createScheduler(options: SchedulerOptions): Scheduler {
  const { state, config, logger, merger } = options;
  const intervalMs = options.intervalMs ?? 250;
  const coordinator = new Coordinator({ leaseMs: config.leaseMs, attemptsMax: config.attemptsMax, inFlightPerWorker: config.inFlightPerWorker, workersDefault: options.workersDefault ?? 1 });
  let timer: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;
  let round: Promise<void> | undefined;
  let again = false;
  let wasLeader = false;
  const sweeper = new StagingSweeper(config.stagingSweepMs);
  let sweeping: Promise<void> | undefined;

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

  async function tick(): Promise<void> {
    const leader = state.isLeader();
    if (leader !== wasLeader) {
      coordinator.leadershipChanged();
      sweeper.leadershipChanged();
    }
    wasLeader = leader;
    if (!leader) return;
    if (sweeping === undefined && sweeper.due(Date.now())) sweeping = sweepStaging(options, sweeper).finally(() => (sweeping = undefined));
    const plan = coordinator.round(await readActive(state), options.members(), Date.now());
    for (const { steps } of plan.jobs) await run(steps);
    await proposeAssignments(options, plan);
  }

  /** Runs one job's steps in order; a required proposal that loses ends them. */
  async function run(steps: readonly Step[]): Promise<void> {
    for (const step of steps) {
      if (step.kind === 'cleanup') await merger.cleanup(step.job);
      else if (step.kind === 'merge') startMerge(step.job);
      else {
        const applied = (await state.propose(step.command)).applied;
        if (applied && step.log !== undefined) logger[step.log.level](step.log.fields, step.log.message);
        if (!applied && step.required === true) return;
      }
    }
  }

  function startMerge(jobId: string): void {
    merger
      .merge(jobId)
      .catch((error: unknown) => logger.warn({ err: error, job: jobId }, 'scheduler: merge failed; will retry'))
      .finally(() => coordinator.mergeEnded(jobId));
  }

  return {
    start() {
      unsubscribe = state.subscribe((change) => {
        if (!change.applied) return;
        coordinator.observe(change.command.ops);
        trigger();
      });
      timer = setInterval(trigger, intervalMs);
      trigger();
    },
    async stop() {
      unsubscribe?.();
      if (timer !== undefined) clearInterval(timer);
      await round;
      await sweeping;
    },
  };
}
