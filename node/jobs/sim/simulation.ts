/**
 * One seeded history of the jobs core: a few nodes, a few uploads, and faults (crashes between any two
 * writes, restarts, leader changes mid-merge, gateways dying mid-upload, slow nodes, dropped proposals,
 * lost compare-and-set races) for a while; then the cluster heals and must finish every job. Invariants
 * are checked on every applied command, after every event, and at the end.
 */
import { setImmediate } from 'node:timers/promises';
import type { StateValue } from '../../storage/index.ts';
import { assertChunkMove, assertChunkRecord, assertJobMove, Coordinator, JobInvariantError, StagingSweeper, type Command } from '../core/index.ts';
import type { ChunkRecord, JobRecord } from '../records.ts';
import { config, coordinatorLoop, readJobNow, stagingSweepMs, upload, workerLoop, type NodeRun, type UploadOutcome } from './actors.ts';
import { eventsMax, World, type SimNode } from './world.ts';

export interface JobsSimOptions {
  nodes: number;
  jobs: number;
  /** Simulated time during which faults happen, then the cluster heals. */
  faultMs: number;
  /** Simulated time the healed cluster gets to end every job. */
  settleMs: number;
  trace: boolean;
}

export const defaultJobsSimOptions: JobsSimOptions = { nodes: 3, jobs: 3, faultMs: 15_000, settleMs: 120_000, trace: false };

/** Simulated time after every job ended for what is still in flight to finish. */
const quietMs = 30_000;

export interface JobsSimResult {
  seed: number;
  /** The first invariant that broke, or null. */
  violation: string | null;
  stats: { completed: number; failed: number; crashes: number; blobsAbandonedByCrashes: number; leaderChanges: number; events: number; simulatedMs: number };
  trace: string[];
}

class Simulation {
  readonly world: World;
  readonly runs = new Map<SimNode, NodeRun>();
  readonly uploads: UploadOutcome[] = [];
  violation: string | null = null;
  /**
   * Blobs written by a run that crashed before a record owned them (an output whose completion was
   * undecided, a staged input not yet recorded, a merge's header and tail). If its job ended first, no
   * cleanup comes after them: the coordinator's staging sweep must remove them (core/sweep.ts).
   */
  readonly abandoned = new Set<string>();
  crashes = 0;
  leaderChanges = 0;

  readonly options: JobsSimOptions;

  constructor(seed: number, options: JobsSimOptions) {
    this.options = options;
    this.world = new World(seed, options.nodes);
    this.world.onApply = (command, before) => this.checkApply(command, before);
    for (const node of this.world.nodes) this.boot(node);
    this.world.leader = this.world.random.pick(this.world.nodes);
  }

  boot(node: SimNode): void {
    const run: NodeRun = { node, run: node.run, coordinator: new Coordinator(config), sweeper: new StagingSweeper(stagingSweepMs), wasLeader: false, running: new Set(), blobsUndecided: new Set() };
    this.runs.set(node, run);
    void coordinatorLoop(this.world, run);
    void workerLoop(this.world, run);
  }

  checkApply(command: Command, before: Map<string, StateValue | undefined>): void {
    for (const run of this.runs.values()) if (run.node.up && run.node.run === run.run) run.coordinator.observe(command.ops);
    for (const op of command.ops) {
      if (op.op !== 'put') continue;
      const previous = before.get(op.key);
      this.guard(() => {
        if (op.key.startsWith('chunks/')) previous === undefined ? assertChunkRecord(op.value as unknown as ChunkRecord) : assertChunkMove(previous as unknown as ChunkRecord, op.value as unknown as ChunkRecord);
        if (op.key.startsWith('jobs/') && previous !== undefined) assertJobMove(previous as unknown as JobRecord, op.value as unknown as JobRecord);
      });
    }
  }

  guard(check: () => void): void {
    if (this.violation !== null) return;
    try {
      check();
    } catch (error) {
      if (!(error instanceof JobInvariantError)) throw error;
      this.violation = error.message;
    }
  }

  /** After every event: the output of every done chunk of a live job is where its record says. */
  checkOutputs(): void {
    for (const key of this.world.keys('chunks/')) {
      const chunk = this.world.state.get(key) as unknown as ChunkRecord;
      if (chunk.state !== 'done') continue;
      const job = readJobNow(this.world, chunk.job);
      if (job?.state !== 'processing' && job?.state !== 'merging') continue;
      if (!this.world.blobs.has(chunk.output!)) this.violation ??= `chunk ${chunk.index} of job ${chunk.job} is done but its output ${chunk.output} is gone`;
    }
  }

  scheduleUploads(): void {
    for (let i = 0; i < this.options.jobs; i += 1) {
      const id = `job${String(i).padStart(5, '0')}`;
      const outcome: UploadOutcome = { id, chunks: this.world.random.int(1, 6), finished: false };
      this.uploads.push(outcome);
      const gateway = this.world.random.pick(this.world.nodes);
      this.world.schedule(undefined, this.world.random.int(0, this.options.faultMs / 2), () => {
        const run = this.runs.get(gateway)!;
        if (gateway.up) void upload(this.world, run, id, outcome.chunks, outcome).catch((error: unknown) => this.world.note(`upload ${id}: ${(error as Error).message}`));
      });
    }
  }

  /** One fault, then the next one later, until the fault window closes. */
  fault(): void {
    const { world } = this;
    if (world.nowMs - Date.UTC(2026, 0, 1) > this.options.faultMs) return this.heal();
    const node = world.random.pick(world.nodes);
    const roll = world.random.next();
    if (roll < 0.35 && node.up) {
      for (const key of this.runs.get(node)!.blobsUndecided) this.abandoned.add(key);
      world.crash(node);
      this.crashes += 1;
    } else if (roll < 0.6 && !node.up) {
      world.restart(node);
      this.boot(node);
    } else if (roll < 0.85) {
      this.elect();
    } else {
      node.slow = !node.slow;
      world.note(`${node.name} ${node.slow ? 'slow' : 'fast again'}`);
    }
    world.schedule(undefined, world.random.int(50, 800), () => this.fault());
  }

  elect(): void {
    const candidates = this.world.nodes.filter((node) => node.up);
    this.world.leader = candidates.length === 0 ? undefined : this.world.random.pick(candidates);
    this.leaderChanges += 1;
    this.world.note(`leader ${this.world.leader?.name ?? 'none'}`);
  }

  heal(): void {
    for (const node of this.world.nodes) {
      node.slow = false;
      if (!node.up) {
        this.world.restart(node);
        this.boot(node);
      }
    }
    if (this.world.leader === undefined) this.elect();
    this.world.note('healed');
  }

  settled(): boolean {
    return this.world.keys('active/').length === 0 && this.uploads.every((outcome) => this.world.state.has(`jobs/${outcome.id}`) || !outcome.finished);
  }
}

/** At the end: every job ended, nothing staged or recorded is left behind, every completed job is whole. */
function checkEnd(sim: Simulation): string | null {
  const { world } = sim;
  const active = world.keys('active/');
  if (active.length > 0) {
    const states = active.map((key) => `${key.slice(7)} ${readJobNow(world, key.slice(7))?.state ?? 'missing'}`);
    return `liveness: ${active.length} jobs still active after the cluster healed: ${states.join(', ')}`;
  }
  const chunks = world.keys('chunks/');
  if (chunks.length > 0) return `chunk records outlived their jobs: ${chunks.slice(0, 3).join(', ')}`;
  const staged = [...world.blobs.keys()].filter((key) => key.startsWith('staging/'));
  if (staged.length > 0) return `staged blobs outlived their jobs: ${staged.slice(0, 3).join(', ')}`;
  for (const outcome of sim.uploads) {
    const job = readJobNow(world, outcome.id);
    if (job?.state !== 'completed') continue;
    if (job.chunks !== outcome.chunks) return `job ${outcome.id} completed with ${job.chunks} chunks; its client sent ${outcome.chunks}`;
    const pieces = Array.from({ length: outcome.chunks }, (_, index) => `coded(in:${outcome.id}:${index})`);
    const expected = [`header:${outcome.id}`, ...pieces, `tail:${outcome.id}`].join('|');
    if (world.blobs.get(job.output ?? '') !== expected) return `job ${outcome.id}: its .dcz is not its chunks in order`;
  }
  return null;
}

/** Runs one seed to its end (or its first broken invariant). */
export async function runJobsSeed(seed: number, overrides: Partial<JobsSimOptions> = {}): Promise<JobsSimResult> {
  const options = { ...defaultJobsSimOptions, ...overrides };
  const sim = new Simulation(seed, options);
  const { world } = sim;
  sim.scheduleUploads();
  world.schedule(undefined, world.random.int(50, 800), () => sim.fault());
  const startMs = world.nowMs;
  let endMs = startMs + options.faultMs + options.settleMs;
  let settled = false;
  while (sim.violation === null && world.nowMs < endMs && world.eventsRun < eventsMax) {
    if (!world.runNext()) break;
    // The actors are async functions: let the event's continuation run up to its next await.
    await setImmediate();
    sim.checkOutputs();
    if (!settled && world.nowMs > startMs + options.faultMs && sim.settled()) {
      // Work still in flight (a slow worker's losing run, a losing merge) gets time to finish and clean up.
      settled = true;
      endMs = world.nowMs + quietMs;
    }
  }
  sim.violation ??= checkEnd(sim);
  const jobs = sim.uploads.map((outcome) => readJobNow(world, outcome.id)?.state);
  return {
    seed,
    violation: sim.violation,
    stats: {
      completed: jobs.filter((state) => state === 'completed').length,
      failed: jobs.filter((state) => state === 'failed').length,
      crashes: sim.crashes,
      blobsAbandonedByCrashes: sim.abandoned.size,
      leaderChanges: sim.leaderChanges,
      events: world.eventsRun,
      simulatedMs: world.nowMs - startMs,
    },
    trace: world.trace,
  };
}

export interface JobsCampaignSummary {
  seedsRun: number;
  violations: JobsSimResult[];
  completed: number;
  failed: number;
  crashes: number;
  leaderChanges: number;
}

export async function runJobsCampaign(seedStart: number, seedCount: number, overrides: Partial<JobsSimOptions> = {}, onResult?: (result: JobsSimResult) => void): Promise<JobsCampaignSummary> {
  const summary: JobsCampaignSummary = { seedsRun: 0, violations: [], completed: 0, failed: 0, crashes: 0, leaderChanges: 0 };
  for (let seed = seedStart; seed < seedStart + seedCount; seed += 1) {
    const result = await runJobsSeed(seed, overrides);
    summary.seedsRun += 1;
    if (result.violation !== null) summary.violations.push(result);
    summary.completed += result.stats.completed;
    summary.failed += result.stats.failed;
    summary.crashes += result.stats.crashes;
    summary.leaderChanges += result.stats.leaderChanges;
    onResult?.(result);
  }
  return summary;
}
