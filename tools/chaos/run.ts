/**
 * A chaos run: a local cluster of real node processes (3 voters, 2 workers) under a steady stream of
 * uploads while a seeded fault schedule kills (-9) and restarts nodes, the coordinator included, and
 * pauses processes (SIGSTOP, then SIGCONT) so peers see them cut off. At the end, with every node back,
 * it checks what users rely on: every acknowledged job reached a terminal state (a failed one with a
 * reason), every completed job downloads byte-identical to what was uploaded and its .dcz decodes, no
 * job's output changed after it completed, and no staged blob is left behind for a completed job.
 *
 * The schedule is seeded; timing is not (processes race), so a seed replays the same faults and the
 * same uploads, not the same interleaving.
 */

import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type DcasClient, type JobView } from '../../node/client/index.ts';
import { createCodecPool, decompress, type CodecPool } from '../../node/index.ts';
import type { ClusterStatusView } from '../../node/runtime/node.ts';
import { createTestCluster, waitFor, type TestCluster } from '../cluster.ts';
import { randomBytesSeeded, seededRandom, textLike } from '../data.ts';

export interface ChaosOptions {
  durationMs: number;
  seed: number;
  uploadBytesMin: number;
  uploadBytesMax: number;
  /** Concurrent uploaders, chosen from this range by the seed. */
  uploadersMin: number;
  uploadersMax: number;
  /** A coordinator kill every [min, max] ms. */
  coordinatorKillMsMin: number;
  coordinatorKillMsMax: number;
  /** Any other fault (kill or pause of a random node) every [min, max] ms. */
  faultMsMin: number;
  faultMsMax: number;
  /** How long a killed node stays down, or a paused node stays paused: [min, max] ms. */
  downMsMin: number;
  downMsMax: number;
  /** After the faults: how long acknowledged jobs may take to settle. */
  settleTimeoutMs: number;
  log: (line: string) => void;
}

export const chaosDefaults: ChaosOptions = {
  durationMs: 10 * 60_000,
  seed: 1,
  uploadBytesMin: 64 * 1024,
  uploadBytesMax: 8 * 1024 * 1024,
  uploadersMin: 2,
  uploadersMax: 4,
  coordinatorKillMsMin: 20_000,
  coordinatorKillMsMax: 30_000,
  faultMsMin: 6_000,
  faultMsMax: 12_000,
  downMsMin: 2_000,
  downMsMax: 5_000,
  settleTimeoutMs: 300_000,
  log: () => {},
};

export interface ChaosSummary {
  seed: number;
  /** Seconds of faults and uploads. */
  durationSeconds: number;
  /** Seconds after that: recovery, settling and every check. */
  settleSeconds: number;
  uploaders: number;
  jobs: {
    acknowledged: number;
    completed: number;
    failed: number;
    failedByReason: Record<string, number>;
    /** Acknowledged jobs that never reached a terminal state, or failed without a reason. */
    lost: number;
    /** Completed jobs whose download differs, whose .dcz does not decode, or whose output changed. */
    corrupted: number;
    /** Completed jobs with staged blobs left behind. */
    stagingLeftovers: number;
    /** Temporary files of writers killed mid-write in staging folders of completed jobs (not blobs; the store sweeps them after an hour). */
    stagingTempFiles: number;
    /** Completed jobs that a node behind the log later showed in an earlier state (reads are not linearizable). */
    staleViews: number;
    /** Uploads that failed before acknowledgement (not counted as jobs), by error. */
    unacknowledgedByError: Record<string, number>;
    /** Unacknowledged uploads whose job completed anyway (verified like the others). */
    unacknowledgedCompleted: number;
    /** Where the jobs of unacknowledged uploads ended up (a gateway that died mid-upload leaves one behind). */
    unacknowledgedByState: Record<string, number>;
    uploadedBytes: number;
  };
  faults: {
    kills: { voter: number; worker: number };
    coordinatorKills: number;
    stops: { voter: number; worker: number };
  };
  failovers: number;
  newCoordinatorMs: { max: number; median: number; count: number };
  /** Coordinator kills after which no new coordinator showed up in time. */
  electionsTimedOut: number;
  /** One line per broken invariant, with the job and evidence. */
  problems: string[];
}

/** How often the coordinator sweeps staged blobs left under ended jobs; the final check waits up to 3 sweeps. */
const stagingSweepMs = 5_000;

const voterNames = ['node1', 'node2', 'node3'];
const workerNames = ['node4', 'node5'];
const nodeNames = [...voterNames, ...workerNames];
const chunkSizes = [64 * 1024, 128 * 1024, 256 * 1024];
const electionTimeoutMs = 30_000;
const rejoinTimeoutMs = 60_000;
const uploadTimeoutMs = 180_000;
const uploadAttemptsMax = 6;
/** An uploader waits this long for its job before sending the next (keeps the backlog bounded). */
const uploaderWaitMs = 60_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`chaos: ${message}`);
}

/** Uniform integer in [min, max]. */
function between(random: () => number, min: number, max: number): number {
  return min + Math.floor(random() * (max - min + 1));
}

function pick<T>(random: () => number, items: readonly T[]): T {
  assert(items.length > 0, 'pick from an empty list');
  return items[Math.floor(random() * items.length)]!;
}

/** Error messages grouped: ids and numbers stripped so "chunk 17 of job 3f2a" and "chunk 4 of job 9c" count together. */
function reasonKey(message: string): string {
  return message
    .replace(/[0-9a-f]{8,}(-[0-9a-f]{4,})*/gi, '<id>')
    .replace(/\d+/g, 'N')
    .slice(0, 160);
}

function count(map: Record<string, number>, key: string): void {
  map[key] = (map[key] ?? 0) + 1;
}

interface TrackedJob {
  id: string;
  acknowledged: boolean;
  sha256: string;
  size: number;
  fileName: string;
  gateway: string;
  /** The last view seen. */
  view: JobView | undefined;
  /** Every distinct (sha256, compressedSize) seen while completed. */
  outputs: Set<string>;
  /** Seen completed, then later in an earlier state (a node behind the log answered). */
  regressed: boolean;
  uploadError: string | undefined;
}

type DownKind = 'killed' | 'stopped' | 'rejoining';

/** The shared state of one run. */
interface Run {
  options: ChaosOptions;
  cluster: TestCluster;
  jobs: Map<string, TrackedJob>;
  down: Map<string, DownKind>;
  stopping: boolean;
  summary: ChaosSummary;
  /** Restarts and resumes still in flight. */
  recoveries: Set<Promise<void>>;
  /** Kill of a coordinator to a new one agreed by the surviving voters, per coordinator kill. */
  newCoordinatorMs: number[];
}

const upNodes = (run: Run) => nodeNames.filter((name) => !run.down.has(name));
const votersDown = (run: Run) => voterNames.filter((name) => run.down.has(name)).length;

async function readJson<T>(url: string, timeoutMs = 2_000): Promise<T | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return response.ok ? ((await response.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

/** The coordinator a majority of the answering up nodes name, if any. */
async function coordinatorNow(run: Run, names = upNodes(run)): Promise<{ name: string; term: number } | undefined> {
  const views = (await Promise.all(names.map((name) => run.cluster.status(name)))).filter((view): view is ClusterStatusView => view !== undefined);
  const votes = new Map<string, number>();
  for (const view of views) if (view.coordinator !== null) votes.set(view.coordinator, (votes.get(view.coordinator) ?? 0) + 1);
  const [best] = [...votes.entries()].sort((a, b) => b[1] - a[1]);
  if (best === undefined || best[1] * 2 <= views.length) return undefined;
  return { name: best[0], term: Math.max(...views.filter((view) => view.coordinator === best[0]).map((view) => view.term)) };
}

// ---------------------------------------------------------------------------------------------
// Workload

function uploadSource(random: () => number, options: ChaosOptions): { bytes: Uint8Array; chunkSize: number; kind: string } {
  // Log-uniform sizes: many small jobs, some big ones with many chunks.
  const logMin = Math.log(options.uploadBytesMin);
  const logMax = Math.log(options.uploadBytesMax);
  const size = Math.round(Math.exp(logMin + random() * (logMax - logMin)));
  const seed = Math.floor(random() * 2 ** 31);
  const kind = random() < 0.75 ? 'text' : 'random';
  const bytes = kind === 'text' ? textLike(size, seed) : randomBytesSeeded(size, seed);
  return { bytes, chunkSize: pick(random, chunkSizes), kind };
}

async function uploadOnce(run: Run, bytes: Uint8Array, fileName: string, chunkSize: number, gateway: string): Promise<JobView> {
  let client: DcasClient | undefined;
  let jobId: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    const upload = (async () => {
      client = await connect({ server: run.cluster.gateway(gateway), connectTimeoutMs: 5_000, requestTimeoutMs: 30_000 });
      return client.upload(bytes, { fileName, chunkSize, onProgress: (progress) => (jobId = progress.jobId) });
    })();
    upload.catch(() => {});
    return await Promise.race([
      upload,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`upload timed out after ${uploadTimeoutMs} ms`)), uploadTimeoutMs);
      }),
    ]);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw Object.assign(new Error(message), { jobId });
  } finally {
    clearTimeout(timer);
    await (client as DcasClient | undefined)?.close().catch(() => {});
  }
}

/** Uploads one source, retrying connection errors through other gateways; records what happened. */
async function uploadWithRetries(run: Run, random: () => number, uploader: number, serial: number): Promise<TrackedJob | undefined> {
  const { bytes, chunkSize, kind } = uploadSource(random, run.options);
  const fileName = `chaos-${uploader}-${serial}-${kind}.bin`;
  const digest = sha256(bytes);
  for (let attempt = 0; attempt < uploadAttemptsMax && !run.stopping; attempt++) {
    const candidates = upNodes(run);
    if (candidates.length === 0) {
      await sleep(500);
      continue;
    }
    const gateway = pick(random, candidates);
    try {
      const view = await uploadOnce(run, bytes, fileName, chunkSize, gateway);
      const job = track(run, view.id, { acknowledged: true, sha256: digest, size: bytes.length, fileName, gateway });
      job.view = view;
      run.summary.jobs.uploadedBytes += bytes.length;
      return job;
    } catch (error) {
      const message = (error as Error).message;
      count(run.summary.jobs.unacknowledgedByError, reasonKey(message));
      const jobId = (error as { jobId?: string }).jobId;
      if (jobId !== undefined) track(run, jobId, { acknowledged: false, sha256: digest, size: bytes.length, fileName, gateway }).uploadError = message;
      await sleep(between(random, 200, 1_000));
    }
  }
  return undefined;
}

function track(run: Run, id: string, fields: Pick<TrackedJob, 'acknowledged' | 'sha256' | 'size' | 'fileName' | 'gateway'>): TrackedJob {
  const existing = run.jobs.get(id);
  if (existing !== undefined) {
    // The same id twice would mean two uploads were given one job.
    assert(existing.sha256 === fields.sha256, `job ${id} was handed out for two different uploads`);
    existing.acknowledged ||= fields.acknowledged;
    return existing;
  }
  const job: TrackedJob = { id, ...fields, view: undefined, outputs: new Set(), regressed: false, uploadError: undefined };
  run.jobs.set(id, job);
  return job;
}

async function uploaderLoop(run: Run, uploader: number): Promise<void> {
  const random = seededRandom(run.options.seed * 1_000 + uploader);
  for (let serial = 0; !run.stopping; serial++) {
    const job = await uploadWithRetries(run, random, uploader, serial);
    // Wait for the job before the next, so the backlog stays bounded; faults may slow it down.
    const waitUntil = Date.now() + uploaderWaitMs;
    while (job !== undefined && !isTerminal(job) && !run.stopping && Date.now() < waitUntil) await sleep(250);
  }
}

const isTerminal = (job: TrackedJob) => job.view?.state === 'completed' || job.view?.state === 'failed';

// ---------------------------------------------------------------------------------------------
// Observers: job views over time and coordinator changes

function observe(job: TrackedJob, view: JobView): void {
  assert(view.id === job.id, `view of ${view.id} for job ${job.id}`);
  if (view.state === 'completed') job.outputs.add(`${view.sha256}/${view.compressedSize}`);
  else if (job.outputs.size > 0) job.regressed = true;
  job.view = view;
}

async function pollJobs(run: Run): Promise<void> {
  const candidates = upNodes(run);
  if (candidates.length === 0) return;
  const node = candidates[Math.floor(Math.random() * candidates.length)]!;
  const listed = await readJson<{ jobs: JobView[] }>(`${run.cluster.gateway(node)}/jobs?limit=1000`, 5_000);
  if (listed === undefined) return;
  const seen = new Set<string>();
  for (const view of listed.jobs) {
    const job = run.jobs.get(view.id);
    if (job === undefined) continue;
    seen.add(view.id);
    observe(job, view);
  }
  // Past the list's limit: ask for the unfinished ones one by one.
  for (const job of run.jobs.values()) {
    if (seen.has(job.id) || isTerminal(job)) continue;
    const view = await readJson<JobView>(`${run.cluster.gateway(node)}/jobs/${job.id}`);
    if (view !== undefined) observe(job, view);
  }
}

async function jobPoller(run: Run, until: () => boolean): Promise<void> {
  while (!until()) {
    await pollJobs(run);
    await sleep(1_000);
  }
}

async function coordinatorWatcher(run: Run, until: () => boolean): Promise<void> {
  let last: string | undefined;
  while (!until()) {
    const now = await coordinatorNow(run);
    if (now !== undefined) {
      if (last !== undefined && now.name !== last) {
        run.summary.failovers++;
        run.options.log(`failover: ${last} -> ${now.name} (term ${now.term})`);
      }
      last = now.name;
    }
    await sleep(500);
  }
}

// ---------------------------------------------------------------------------------------------
// Faults

const roleOf = (name: string): 'voter' | 'worker' => (voterNames.includes(name) ? 'voter' : 'worker');

/** Waits until a node that came back answers with a coordinator, then counts it as up again. */
async function rejoin(run: Run, name: string): Promise<void> {
  run.down.set(name, 'rejoining');
  try {
    await waitFor(`${name} to rejoin`, rejoinTimeoutMs, async () => ((await run.cluster.status(name))?.coordinator ? true : undefined));
  } catch (error) {
    run.summary.problems.push(`${name} did not rejoin within ${rejoinTimeoutMs} ms: ${(error as Error).message.split('\n')[0]}`);
  }
  run.down.delete(name);
}

function recover(run: Run, work: Promise<void>): void {
  const tracked = work.finally(() => run.recoveries.delete(tracked));
  run.recoveries.add(tracked);
}

async function kill(run: Run, name: string, downMs: number): Promise<void> {
  assert(!run.down.has(name), `kill of ${name}, which is already down`);
  run.down.set(name, 'killed');
  await run.cluster.stop(name, 'SIGKILL');
  run.summary.faults.kills[roleOf(name)]++;
  recover(
    run,
    (async () => {
      await sleep(downMs);
      run.cluster.start(name);
      await rejoin(run, name);
    })(),
  );
}

function pause(run: Run, name: string, downMs: number): void {
  const pid = run.cluster.pid(name);
  assert(pid !== undefined, `pause of ${name}, which is not running`);
  assert(!run.down.has(name), `pause of ${name}, which is already down`);
  run.down.set(name, 'stopped');
  process.kill(pid, 'SIGSTOP');
  run.summary.faults.stops[roleOf(name)]++;
  recover(
    run,
    (async () => {
      await sleep(downMs);
      process.kill(pid, 'SIGCONT');
      await rejoin(run, name);
    })(),
  );
}

/** Kills the coordinator and measures how long until the survivors agree on a new one. */
async function killCoordinator(run: Run, random: () => number): Promise<boolean> {
  const before = await coordinatorNow(run);
  // A stale view may name a node that is down right now; the schedule tries again shortly.
  if (before === undefined || run.down.has(before.name)) return false;
  const downMs = between(random, run.options.downMsMin, run.options.downMsMax);
  const killedAt = Date.now();
  await kill(run, before.name, downMs);
  run.summary.faults.coordinatorKills++;
  const survivors = voterNames.filter((name) => !run.down.has(name));
  try {
    const { elapsedMs, value } = await waitFor('a new coordinator', electionTimeoutMs, async () => {
      const now = await coordinatorNow(run, survivors);
      return now !== undefined && now.name !== before.name ? now : undefined;
    });
    const ms = Date.now() - killedAt;
    run.newCoordinatorMs.push(ms);
    run.options.log(`coordinator ${before.name} killed; ${value.name} leads term ${value.term} after ${ms} ms (poll ${elapsedMs} ms)`);
  } catch {
    run.summary.electionsTimedOut++;
    run.summary.problems.push(`no new coordinator within ${electionTimeoutMs} ms after ${before.name} was killed`);
  }
  return true;
}

/** A kill or a pause of a random up node, never taking down a second voter. */
async function randomFault(run: Run, random: () => number): Promise<void> {
  const downMs = between(random, run.options.downMsMin, run.options.downMsMax);
  const candidates = upNodes(run).filter((name) => roleOf(name) === 'worker' || votersDown(run) === 0);
  if (candidates.length === 0) return;
  const name = pick(random, candidates);
  if (random() < 0.5) {
    run.options.log(`kill -9 ${name} (${roleOf(name)}) for ${downMs} ms`);
    await kill(run, name, downMs);
  } else {
    run.options.log(`SIGSTOP ${name} (${roleOf(name)}) for ${downMs} ms`);
    pause(run, name, downMs);
  }
}

async function faultSchedule(run: Run, endAt: number): Promise<void> {
  const random = seededRandom(run.options.seed);
  const { options } = run;
  let nextCoordinatorKill = Date.now() + between(random, options.coordinatorKillMsMin, options.coordinatorKillMsMax);
  let nextFault = Date.now() + between(random, options.faultMsMin, options.faultMsMax);
  while (Date.now() < endAt) {
    await sleep(Math.max(0, Math.min(nextCoordinatorKill, nextFault, endAt) - Date.now()));
    if (Date.now() >= endAt) break;
    if (Date.now() >= nextCoordinatorKill) {
      // The coordinator is a voter: kill it only when every other voter is up, so a majority remains.
      if (votersDown(run) > 0) {
        await sleep(200);
        continue;
      }
      if (!(await killCoordinator(run, random))) {
        await sleep(500);
        continue;
      }
      nextCoordinatorKill = Date.now() + between(random, options.coordinatorKillMsMin, options.coordinatorKillMsMax);
    } else {
      await randomFault(run, random);
      nextFault = Date.now() + between(random, options.faultMsMin, options.faultMsMax);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Checks at the end

async function downloadAll(client: DcasClient, jobId: string, compressed: boolean): Promise<Buffer> {
  const pieces: Uint8Array[] = [];
  for await (const piece of await client.download(jobId, { compressed })) pieces.push(piece);
  return Buffer.concat(pieces);
}

/** Downloads a completed job both ways and checks the bytes; returns problems found. */
async function verifyCompleted(run: Run, client: DcasClient, pool: CodecPool, job: TrackedJob): Promise<string[]> {
  const view = job.view!;
  const problems: string[] = [];
  const where = `job ${job.id} (${job.fileName}, ${job.size} bytes, gateway ${job.gateway}${job.acknowledged ? '' : ', unacknowledged'})`;
  if (job.outputs.size > 1) problems.push(`${where}: completed with different outputs: ${[...job.outputs].join(' vs ')}`);
  if (view.sha256 !== job.sha256) problems.push(`${where}: job sha256 ${view.sha256} != uploaded ${job.sha256}`);
  if (view.originalSize !== job.size) problems.push(`${where}: originalSize ${view.originalSize} != uploaded ${job.size}`);
  try {
    const original = await downloadAll(client, job.id, false);
    if (sha256(original) !== job.sha256) problems.push(`${where}: download sha256 ${sha256(original)} (${original.length} bytes) != uploaded ${job.sha256}`);
    const dcz = await downloadAll(client, job.id, true);
    if (dcz.length !== view.compressedSize) problems.push(`${where}: .dcz is ${dcz.length} bytes, job says ${view.compressedSize}`);
    const decoded = await decompress(dcz, { pool });
    if (sha256(decoded) !== job.sha256) problems.push(`${where}: .dcz decodes to sha256 ${sha256(decoded)} != uploaded ${job.sha256}`);
  } catch (error) {
    problems.push(`${where}: download or decode failed: ${(error as Error).message}`);
  }
  return problems;
}

/** Staged blobs and, apart, the hidden temporary files of writers that died before their rename. */
async function stagedFiles(run: Run, jobId: string): Promise<{ blobs: string[]; temps: string[] }> {
  const entries = await readdir(join(run.cluster.dataDir, 'blobs', 'staging', jobId), { recursive: true, withFileTypes: true }).catch(() => []);
  const names = entries.filter((entry) => entry.isFile()).map((entry) => entry.name);
  return { blobs: names.filter((name) => !name.startsWith('.')), temps: names.filter((name) => name.startsWith('.')) };
}

/** Every voter must report the same terminal outcome for every job. */
async function compareVoters(run: Run): Promise<void> {
  const lists = await Promise.all(voterNames.map((name) => readJson<{ jobs: JobView[] }>(`${run.cluster.gateway(name)}/jobs?limit=1000`, 10_000)));
  const outcome = (view: JobView) => `${view.state}/${view.sha256}/${view.compressedSize}`;
  for (const job of run.jobs.values()) {
    if (!isTerminal(job)) continue;
    const outcomes = new Set(lists.map((list) => list?.jobs.find((view) => view.id === job.id)).filter((view) => view !== undefined).map(outcome));
    if (outcomes.size > 1) run.summary.problems.push(`job ${job.id}: voters disagree: ${[...outcomes].join(' vs ')}`);
  }
}

async function settleAndCheck(run: Run): Promise<void> {
  const { summary } = run;
  const acknowledged = [...run.jobs.values()].filter((job) => job.acknowledged);
  try {
    await waitFor('every acknowledged job to reach a terminal state', run.options.settleTimeoutMs, async () => {
      await pollJobs(run);
      return acknowledged.every(isTerminal) ? true : undefined;
    });
  } catch {
    // Counted as lost below.
  }
  await pollJobs(run);
  summary.jobs.acknowledged = acknowledged.length;
  for (const job of acknowledged) {
    if (!isTerminal(job)) {
      summary.jobs.lost++;
      summary.problems.push(`job ${job.id} (${job.fileName}): acknowledged but ${job.view?.state ?? 'never seen'} after settling (${job.view?.chunksDone}/${job.view?.chunks} chunks)`);
    } else if (job.view!.state === 'failed') {
      summary.jobs.failed++;
      if (!job.view!.error) {
        summary.jobs.lost++;
        summary.problems.push(`job ${job.id}: failed without a reason`);
      } else count(summary.jobs.failedByReason, reasonKey(job.view!.error));
    } else summary.jobs.completed++;
  }
  await compareVoters(run);

  const completed = [...run.jobs.values()].filter((job) => job.view?.state === 'completed');
  summary.jobs.unacknowledgedCompleted = completed.filter((job) => !job.acknowledged).length;
  for (const job of run.jobs.values()) if (!job.acknowledged) count(summary.jobs.unacknowledgedByState, job.view?.state ?? 'not found');
  // A process killed between writing a staged blob and removing it leaves it for the coordinator's sweep.
  await waitFor('the staging of completed jobs to be swept', 3 * stagingSweepMs, async () => {
    for (const job of completed) if ((await stagedFiles(run, job.id)).blobs.length > 0) return undefined;
    return true;
  }).catch(() => {});
  const pool = createCodecPool({ threads: 1 });
  const client = await connect({ server: run.cluster.gateway(pick(Math.random, nodeNames)), requestTimeoutMs: 60_000 });
  try {
    for (const job of completed) {
      const problems = await verifyCompleted(run, client, pool, job);
      if (problems.length > 0) summary.jobs.corrupted++;
      summary.problems.push(...problems);
      if (job.regressed) summary.jobs.staleViews++;
      const staged = await stagedFiles(run, job.id);
      summary.jobs.stagingTempFiles += staged.temps.length;
      if (staged.blobs.length > 0) {
        summary.jobs.stagingLeftovers++;
        summary.problems.push(`job ${job.id}: completed, yet ${staged.blobs.length} staged blobs remain (${staged.blobs.slice(0, 3).join(', ')})`);
      }
    }
  } finally {
    await client.close().catch(() => {});
    await pool.close();
  }
}

// ---------------------------------------------------------------------------------------------

function emptySummary(options: ChaosOptions, uploaders: number): ChaosSummary {
  return {
    seed: options.seed,
    durationSeconds: 0,
    settleSeconds: 0,
    uploaders,
    jobs: {
      acknowledged: 0,
      completed: 0,
      failed: 0,
      failedByReason: {},
      lost: 0,
      corrupted: 0,
      stagingLeftovers: 0,
      stagingTempFiles: 0,
      staleViews: 0,
      unacknowledgedByError: {},
      unacknowledgedCompleted: 0,
      unacknowledgedByState: {},
      uploadedBytes: 0,
    },
    faults: { kills: { voter: 0, worker: 0 }, coordinatorKills: 0, stops: { voter: 0, worker: 0 } },
    failovers: 0,
    newCoordinatorMs: { max: 0, median: 0, count: 0 },
    electionsTimedOut: 0,
    problems: [],
  };
}

/** 3 voters and 2 worker-only nodes; jobs with short leases so a dead node's chunks move on quickly. */
async function startCluster(): Promise<TestCluster> {
  const cluster = await createTestCluster({
    nodes: nodeNames.length,
    overrides: { jobs: { leaseMs: 5_000, attemptsMax: 10, stagingSweepMs } },
    edit: (config) => ({ ...config, voters: voterNames, role: voterNames.includes(config.name) ? 'voter' : 'worker' }),
  });
  for (const name of nodeNames) cluster.start(name);
  await waitFor('5 alive members and one coordinator', 90_000, () => cluster.agreed(nodeNames.length), () => cluster.logs());
  return cluster;
}

/** Resumes every paused node: a stopped process ignores SIGKILL's cleanup until it runs again. */
function resumeAll(run: Run): void {
  for (const name of nodeNames) {
    const pid = run.cluster.pid(name);
    if (pid === undefined) continue;
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // Already gone.
    }
  }
}

export async function runChaos(input: Partial<ChaosOptions> = {}): Promise<ChaosSummary> {
  const options: ChaosOptions = { ...chaosDefaults, ...input };
  assert(options.durationMs > 0, `durationMs must be positive, got ${options.durationMs}`);
  assert(options.uploadBytesMin <= options.uploadBytesMax, 'uploadBytesMin above uploadBytesMax');
  const uploaders = between(seededRandom(options.seed ^ 0x5eed), options.uploadersMin, options.uploadersMax);
  const started = Date.now();
  const cluster = await startCluster();
  const run: Run = { options, cluster, jobs: new Map(), down: new Map(), stopping: false, summary: emptySummary(options, uploaders), recoveries: new Set(), newCoordinatorMs: [] };
  let observing = true;
  const onExit = () => {
    resumeAll(run);
  };
  process.once('exit', onExit);
  try {
    options.log(`cluster up in ${((Date.now() - started) / 1000).toFixed(1)} s; ${uploaders} uploaders, seed ${options.seed}`);
    const faultsStarted = Date.now();
    const endAt = faultsStarted + options.durationMs;
    const watchers = [jobPoller(run, () => !observing), coordinatorWatcher(run, () => !observing)];
    const loops = Array.from({ length: uploaders }, (_, index) => uploaderLoop(run, index + 1));
    await faultSchedule(run, endAt);
    run.summary.durationSeconds = Math.round((Date.now() - faultsStarted) / 1000);
    run.stopping = true;
    options.log('faults stop; waiting for uploads in flight and for every node to come back');
    await Promise.all(loops);
    while (run.recoveries.size > 0) await Promise.all([...run.recoveries]);
    await waitFor('every node back with one coordinator', 120_000, () => cluster.agreed(nodeNames.length), () => cluster.logs());
    await settleAndCheck(run);
    observing = false;
    await Promise.all(watchers);
    const times = run.newCoordinatorMs.sort((a, b) => a - b);
    run.summary.newCoordinatorMs = { max: times.at(-1) ?? 0, median: times[Math.floor(times.length / 2)] ?? 0, count: times.length };
    run.summary.settleSeconds = Math.round((Date.now() - faultsStarted) / 1000) - run.summary.durationSeconds;
    return run.summary;
  } finally {
    observing = false;
    run.stopping = true;
    resumeAll(run);
    await cluster.destroy();
    process.off('exit', onExit);
  }
}

/** True when the run found no lost or corrupted job and no other broken invariant. */
export function chaosPassed(summary: ChaosSummary): boolean {
  return summary.jobs.lost === 0 && summary.jobs.corrupted === 0 && summary.jobs.stagingLeftovers === 0 && summary.problems.length === 0;
}

export function formatSummary(summary: ChaosSummary): string {
  const { jobs, faults } = summary;
  const reasons = (map: Record<string, number>) =>
    Object.entries(map)
      .sort((a, b) => b[1] - a[1])
      .map(([reason, n]) => `\n    ${n} × ${reason}`)
      .join('') || ' none';
  return [
    `chaos run, seed ${summary.seed}: ${summary.durationSeconds} s of faults and uploads (then ${summary.settleSeconds} s to recover, settle and check), ${summary.uploaders} uploaders, ${(jobs.uploadedBytes / 2 ** 20).toFixed(1)} MiB acknowledged`,
    `jobs: ${jobs.acknowledged} acknowledged, ${jobs.completed} completed, ${jobs.failed} failed, lost ${jobs.lost}, corrupted ${jobs.corrupted}, staging leftovers ${jobs.stagingLeftovers}`,
    `  failed by reason:${reasons(jobs.failedByReason)}`,
    `  uploads not acknowledged (retried elsewhere), by error:${reasons(jobs.unacknowledgedByError)}`,
    `  staging temp files of killed writers (swept by the store after 1 h): ${jobs.stagingTempFiles}; completed jobs a lagging node later showed in an earlier state: ${jobs.staleViews}`,
    `  unacknowledged uploads whose job completed anyway (verified too): ${jobs.unacknowledgedCompleted}; their jobs by state:${reasons(jobs.unacknowledgedByState)}`,
    `faults: kills ${faults.kills.voter + faults.kills.worker} (voter ${faults.kills.voter}, worker ${faults.kills.worker}), coordinator kills ${faults.coordinatorKills}, SIGSTOPs ${faults.stops.voter + faults.stops.worker} (voter ${faults.stops.voter}, worker ${faults.stops.worker})`,
    `failovers observed: ${summary.failovers}; time to new coordinator after a coordinator kill: max ${summary.newCoordinatorMs.max} ms, median ${summary.newCoordinatorMs.median} ms (${summary.newCoordinatorMs.count} kills), timed out ${summary.electionsTimedOut}`,
    summary.problems.length > 0 ? `problems:\n${summary.problems.map((line) => `  ${line}`).join('\n')}` : 'problems: none',
    chaosPassed(summary) ? 'PASS: nothing lost, nothing corrupted' : 'FAIL',
  ].join('\n');
}
