/**
 * The jobs room's shells, as the simulation runs them: the coordinator loop, the merger, the worker and
 * the gateway's upload, each a few awaits around the same core functions production calls. Blob contents
 * are strings: a chunk's input `in:<job>:<i>`, its coded output `coded(<input>)`.
 */
import type { StateValue } from '../../storage/index.ts';
import {
  activeKey,
  assertMergeable,
  blobKeys,
  chunkCasCommand,
  chunkOutputKey,
  chunksCreateCommand,
  chunkWorthRunning,
  completedChunk,
  Coordinator,
  deleteChunkOps,
  failedChunk,
  failedJob,
  jobCasCommand,
  jobCreateCommand,
  jobKey,
  mergeCleansUp,
  mergeFailureCleansUp,
  completedJob,
  mergingJob,
  newJobRecord,
  outputToDeleteAfterCompletion,
  outputToDeleteAfterUnknownCompletion,
  chunkKey,
  pendingChunk,
  stagedJobId,
  StagingSweeper,
  uploadFinishedJob,
  type Command,
  type JobSnapshot,
  type Step,
} from '../core/index.ts';
import type { ChunkRecord, JobRecord } from '../records.ts';
import type { SimNode, World } from './world.ts';

export const leaseMs = 2_000;
export const coordinatorIntervalMs = 250;
/** How often a coordinator sweeps staged blobs left under ended jobs (jobs.stagingSweepMs). */
export const stagingSweepMs = 5_000;
const workerIntervalMs = 100;
/** Chunks one simulated worker codes at once. */
const workerSlots = 2;
/** The chance that coding one chunk fails (a codec error). */
const codeFailureChance = 0.02;

export const config = { leaseMs, attemptsMax: 5, inFlightPerWorker: 2, workersDefault: 1 };

const asJob = (value: StateValue | undefined) => value as unknown as JobRecord | undefined;
const asChunk = (value: StateValue | undefined) => value as unknown as ChunkRecord;

export function readJobNow(world: World, id: string): JobRecord | undefined {
  return structuredClone(asJob(world.state.get(jobKey(id))));
}

export function readChunksNow(world: World, id: string): ChunkRecord[] {
  return world.keys(`chunks/${id}/`).map((key) => structuredClone(asChunk(world.state.get(key))));
}

/** One node's run: its coordinator's memory and its worker's, both lost on a crash. */
export interface NodeRun {
  node: SimNode;
  run: number;
  coordinator: Coordinator;
  sweeper: StagingSweeper;
  wasLeader: boolean;
  running: Set<string>;
  /** Blobs this run wrote that no record owns yet: outputs whose completion is undecided, inputs not yet recorded. */
  blobsUndecided: Set<string>;
}

const alive = (run: NodeRun) => run.node.up && run.node.run === run.run;

/** Read-modify-write of a job with a bounded number of retries, as records.updateJob. */
async function updateJob(world: World, node: SimNode, id: string, change: (job: JobRecord) => JobRecord | undefined, extra: () => Command['ops'] = () => []): Promise<JobRecord | undefined> {
  for (let attempt = 0; attempt < 20; attempt += 1) {
    const before = await world.step(node, () => readJobNow(world, id));
    if (before === undefined) throw new Error(`job ${id} does not exist`);
    const after = change(structuredClone(before));
    if (after === undefined) return undefined;
    if (await world.propose(node, jobCasCommand(before, after, extra()))) return after;
  }
  throw new Error(`job ${id}: too many concurrent changes`);
}

function deletePrefix(world: World, node: SimNode, prefix: string): Promise<void> {
  return world.step(node, () => {
    for (const key of [...world.blobs.keys()]) if (key.startsWith(prefix)) world.blobs.delete(key);
  });
}

/** The coordinator loop of one node run: a round every interval while it leads. */
export async function coordinatorLoop(world: World, self: NodeRun): Promise<void> {
  for (;;) {
    await world.step(self.node, () => undefined, coordinatorIntervalMs);
    const leader = world.leader === self.node;
    if (leader !== self.wasLeader) {
      self.coordinator.leadershipChanged();
      self.sweeper.leadershipChanged();
    }
    self.wasLeader = leader;
    if (!leader) continue;
    if (self.sweeper.due(world.nowMs)) await sweep(world, self);
    const snapshot = await world.step(self.node, () => activeSnapshot(world));
    const plan = self.coordinator.round(snapshot, world.members(), world.nowMs);
    for (const { steps } of plan.jobs) await runSteps(world, self, steps).catch((error: unknown) => world.note(`${self.node.name} round: ${(error as Error).message}`));
    await Promise.allSettled(plan.assignments.map((command) => world.propose(self.node, command)));
  }
}

/** As scheduler.ts's sweep: list staging, read each job's record and whether it is active, remove the strays. */
async function sweep(world: World, self: NodeRun): Promise<void> {
  const staged = await world.step(self.node, () => {
    const ids = new Set([...world.blobs.keys()].map(stagedJobId).filter((id) => id !== undefined));
    return [...ids].map((id) => ({ id, record: readJobNow(world, id), active: world.state.has(activeKey(id)) }));
  });
  const strays = self.sweeper.sweep(staged, world.nowMs);
  for (const id of strays) await deletePrefix(world, self.node, blobKeys.stagingPrefix(id));
  if (strays.length > 0) world.note(`${self.node.name} swept the staging of ${strays.join(', ')}`);
}

function activeSnapshot(world: World): JobSnapshot[] {
  return world.keys('active/').flatMap((key) => {
    const job = readJobNow(world, key.slice('active/'.length));
    if (job === undefined) return [];
    return [{ job, chunks: readChunksNow(world, job.id) }];
  });
}

async function runSteps(world: World, self: NodeRun, steps: readonly Step[]): Promise<void> {
  for (const step of steps) {
    if (step.kind === 'cleanup') await deletePrefix(world, self.node, blobKeys.stagingPrefix(step.job));
    else if (step.kind === 'merge') {
      world.note(`${self.node.name} merges ${step.job}`);
      void merge(world, self, step.job)
        .catch((error: unknown) => world.note(`${self.node.name} merge of ${step.job} failed: ${(error as Error).message}`))
        .finally(() => self.coordinator.mergeEnded(step.job));
    } else {
      const applied = await world.propose(self.node, step.command);
      if (applied && step.log !== undefined) world.note(`${self.node.name} ${step.log.message}: ${JSON.stringify(step.log.fields)}`);
      if (!applied && step.required === true) return;
    }
  }
}

/** As merge.ts: header, tail, one compose of header, outputs and tail; then the completion, then cleanup. */
async function merge(world: World, self: NodeRun, id: string): Promise<void> {
  const staged = [blobKeys.header(id), blobKeys.tail(id)];
  try {
    await mergeSteps(world, self, id);
  } finally {
    // Until the merge ended, a crash of this run leaves its header and tail behind if the job ended meanwhile.
    for (const key of staged) self.blobsUndecided.delete(key);
  }
}

async function mergeSteps(world: World, self: NodeRun, id: string): Promise<void> {
  const node = self.node;
  const current = await world.step(node, () => readJobNow(world, id));
  if (current === undefined || mergingJob(current, world.nowMs) === undefined) return;
  const merging = current.state === 'merging' ? current : await updateJob(world, node, id, (job) => (job.state === 'processing' ? mergingJob(job, world.nowMs) : undefined));
  if (merging === undefined) return;
  const chunks = await world.step(node, () => readChunksNow(world, id));
  assertMergeable(merging, chunks);
  await world.step(node, () => world.blobs.set(blobKeys.header(id), `header:${id}`));
  self.blobsUndecided.add(blobKeys.header(id));
  await world.step(node, () => world.blobs.set(blobKeys.tail(id), `tail:${id}`));
  self.blobsUndecided.add(blobKeys.tail(id));
  const sources = [blobKeys.header(id), ...chunks.map((chunk) => chunk.output!), blobKeys.tail(id)];
  const size = await world.step(node, () => compose(world, sources, blobKeys.dcz(id))).catch(async (error: unknown) => {
    if (mergeFailureCleansUp(await world.step(node, () => readJobNow(world, id)))) await deletePrefix(world, node, blobKeys.stagingPrefix(id));
    throw error;
  });
  const completed = await updateJob(world, node, id, (job) => completedJob(job, chunks, { size, output: blobKeys.dcz(id) }, world.nowMs), () => deleteChunkOps(chunks));
  if (mergeCleansUp(completed !== undefined)) await deletePrefix(world, node, blobKeys.stagingPrefix(id));
}

function compose(world: World, sources: readonly string[], target: string): number {
  const parts = sources.map((key) => {
    const part = world.blobs.get(key);
    if (part === undefined) throw new Error(`compose: ${key} is missing`);
    return part;
  });
  world.blobs.set(target, parts.join('|'));
  return parts.join('|').length;
}

/** The worker loop of one node run: picks up the chunks assigned to it, as worker.ts does from the log. */
export async function workerLoop(world: World, self: NodeRun): Promise<void> {
  for (;;) {
    await world.step(self.node, () => undefined, workerIntervalMs);
    const mine = world.keys('chunks/').map((key) => asChunk(world.state.get(key))).filter((chunk) => chunk.state === 'assigned' && chunk.node === self.node.name);
    for (const chunk of mine) {
      const task = `${chunk.job}/${chunk.index}/${chunk.attempt}`;
      if (self.running.has(task) || self.running.size >= workerSlots) continue;
      self.running.add(task);
      void codeChunk(world, self, structuredClone(chunk)).finally(() => self.running.delete(task));
    }
  }
}

async function codeChunk(world: World, self: NodeRun, chunk: ChunkRecord): Promise<void> {
  const node = self.node;
  if (!chunkWorthRunning(await world.step(node, () => readJobNow(world, chunk.job)))) return;
  let outputKey: string | undefined;
  try {
    const input = await world.step(node, () => world.blobs.get(chunk.input));
    if (input === undefined) throw new Error(`${chunk.input} is missing`);
    const coded = await world.step(node, () => `coded(${input})`, world.random.int(50, 600));
    if (world.random.chance(codeFailureChance)) throw new Error('codec error');
    const key = chunkOutputKey(chunk, String(world.random.nextUint32()));
    outputKey = key;
    await world.step(node, () => world.blobs.set(key, coded));
    world.note(`${node.name} wrote ${outputKey}`);
    // Until its completion is decided, a crash of this run leaves the output behind (see abandoned in simulation.ts).
    self.blobsUndecided.add(outputKey);
    const done = completedChunk(chunk, { output: outputKey, outputBytes: coded.length, checksum: 1, originalBytes: input.length }, world.nowMs);
    const won = await world.propose(node, chunkCasCommand(chunk, done));
    world.note(`${node.name} ${won ? 'completed' : 'lost'} ${outputKey}`);
    const orphan = outputToDeleteAfterCompletion(won, outputKey);
    if (orphan !== undefined) await world.step(node, () => world.blobs.delete(orphan));
  } catch (error) {
    world.note(`${node.name} chunk ${chunk.index} of ${chunk.job} attempt ${chunk.attempt} failed: ${(error as Error).message}`);
    await world.propose(node, chunkCasCommand(chunk, failedChunk(chunk, (error as Error).message))).catch(() => false);
    if (outputKey !== undefined) await dropUndecidedOutput(world, node, chunk, outputKey);
  }
  if (outputKey !== undefined) self.blobsUndecided.delete(outputKey);
}

async function dropUndecidedOutput(world: World, node: SimNode, chunk: ChunkRecord, outputKey: string): Promise<void> {
  const now = await world.step(node, () => structuredClone(world.state.get(chunkKey(chunk.job, chunk.index)) as unknown as ChunkRecord | undefined));
  const orphan = outputToDeleteAfterUnknownCompletion(chunk, now, outputKey);
  if (orphan !== undefined) await world.step(node, () => world.blobs.delete(orphan));
}

/** What the simulated client learned of its upload. */
export interface UploadOutcome {
  id: string;
  chunks: number;
  finished: boolean;
}

/** A client uploading `chunks` chunks through `node`, aborting with a small chance; the gateway may die under it. */
export async function upload(world: World, self: NodeRun, id: string, chunks: number, outcome: UploadOutcome): Promise<void> {
  try {
    await uploadChunks(world, self, id, chunks, outcome);
  } catch (error) {
    // As upload.ts: a failed upload fails its job and removes its staged blobs, once; an error doing so is only logged.
    world.note(`upload ${id} failed: ${(error as Error).message}`);
    await abortUpload(world, self.node, id, (error as Error).message).catch((abortError: unknown) => world.note(`upload ${id}: could not record the failure: ${(abortError as Error).message}`));
  }
}

async function uploadChunks(world: World, self: NodeRun, id: string, chunks: number, outcome: UploadOutcome): Promise<void> {
  const node = self.node;
  const job = newJobRecord({ id, mode: 'compress', fileName: `${id}.bin`, chunkSize: 1, gateway: node.name, codec: 'huffman', level: 0, format: 'dcz' }, world.nowMs);
  if (!(await world.propose(node, jobCreateCommand(job)))) return;
  for (let index = 0; index < chunks; index += 1) {
    const input = `in:${id}:${index}`;
    await world.step(node, () => world.blobs.set(blobKeys.input(id, index), input), world.random.int(5, 200));
    // Until its record is created, a crash of this run leaves the staged input behind if the job ended meanwhile.
    self.blobsUndecided.add(blobKeys.input(id, index));
    if (world.random.chance(0.03)) return abortUpload(world, node, id, 'upload aborted: client went away');
    const recorded = await world.propose(node, chunksCreateCommand(job, [pendingChunk(id, index, input.length, { originalBytes: input.length, checksum: null })]));
    if (!recorded) throw new Error(`job ${id}: chunk ${index} not recorded: the job ended`);
    self.blobsUndecided.delete(blobKeys.input(id, index));
  }
  const fields = { originalSize: chunks, sha256: id, mime: 'application/octet-stream', compressedSize: null };
  const processing = await updateJob(world, node, id, (current) => uploadFinishedJob(current, fields, chunks, world.nowMs));
  outcome.finished = processing !== undefined;
}

/**
 * The client went away: as upload.ts's fail, the job fails with its chunk records (retried until it
 * lands, as #recordFailure, here for up to 30 s, a second apart), then staged blobs go.
 */
async function abortUpload(world: World, node: SimNode, id: string, reason: string): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      const chunks = await world.step(node, () => readChunksNow(world, id));
      await updateJob(world, node, id, (current) => failedJob(current, reason, world.nowMs), () => deleteChunkOps(chunks));
      break;
    } catch (error) {
      if (attempt >= 30) throw error;
      world.note(`upload ${id}: could not record the failure: ${(error as Error).message}; retrying`);
      await world.step(node, () => undefined, 1_000);
    }
  }
  await deletePrefix(world, node, blobKeys.stagingPrefix(id));
}

export function isAlive(run: NodeRun): boolean {
  return alive(run);
}
