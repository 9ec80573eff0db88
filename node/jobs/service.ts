/**
 * The jobs room on one node: the JobService the gateway calls, plus this node's worker actor and,
 * while this node leads, the coordinator's scheduler and merger.
 */
import type { Logger } from 'pino';
import type { Member } from '../cluster/index.ts';
import type { ReplicatedState } from '../cluster/index.ts';
import type { CodecPool, ImagePool } from '../codec/index.ts';
import type { JobsConfig } from '../config/index.ts';
import type { BlobStore } from '../storage/index.ts';
import type { SpaceGuard } from '../storage/index.ts';
import { deleteJob } from './delete.ts';
import { Downloads, type JobPeers } from './download.ts';
import { handBackChunks } from './hand-back.ts';
import { createMerger } from './merge.ts';
import { jobIdPattern, readChunks, readJob, type JobRecord } from './records.ts';
import { createScheduler, type Scheduler } from './scheduler.ts';
import { startUploadSession } from './upload.ts';
import { ChunkMemory } from './upload-chunks.ts';
import { toView } from './view.ts';
import { watchJob } from './watch.ts';
import { createWorker, type Worker, type WorkerStats } from './worker.ts';
import { JobError, type Download, type DownloadRequest, type JobDeleted, type JobMetrics, type JobService, type JobState, type JobView, type UploadRequest, type UploadSession } from './types.ts';

export { parseDecodeRequest, type DecodeRequest, type JobPeers } from './download.ts';
export { toView } from './view.ts';

export interface JobServiceOptions {
  node: string;
  /** Peers to share download decoding with; without them the gateway decodes alone. */
  peers?: JobPeers;
  state: ReplicatedState;
  blobs: BlobStore;
  /** Free space on this node's disks: new uploads are refused with INSUFFICIENT_STORAGE when it runs low. */
  space: SpaceGuard;
  pool: CodecPool;
  /** The node's image pool, created on first use: images jobs code their images on it. */
  imagePool?: () => ImagePool;
  config: JobsConfig;
  logger: Logger;
  members: () => readonly Member[];
}

export interface RunningJobService extends JobService {
  start(): Promise<void>;
  /** Stops coding, hands back the chunks this node still holds, then stops the coordinator and the worker. */
  stop(): Promise<void>;
  workerStats(): WorkerStats;
  /** Whether this node takes chunks: `jobs.code`, until it starts stopping. Its heartbeat advertises it. */
  codes(): boolean;
  /** Takes no more chunks from now on (a stop follows): called first so the heartbeat can say so at once. */
  stopCoding(): void;
}

const jobStates: JobState[] = ['pending', 'uploading', 'processing', 'merging', 'completed', 'failed'];

function checkId(id: string): void {
  if (!jobIdPattern.test(id)) throw new JobError('NOT_FOUND', `no job ${JSON.stringify(id.slice(0, 64))}: job ids are 16 lowercase hex characters`);
}

/** Every job's state, kept current from the applied log: the metrics count jobs by state without reading them. */
class JobStateCounts {
  readonly #stateById = new Map<string, JobState>();
  #unsubscribe: (() => void) | undefined;

  async start(state: ReplicatedState): Promise<void> {
    for (const [, value] of await state.list('jobs/')) this.#note(value as unknown as JobRecord);
    this.#unsubscribe = state.subscribe((change) => {
      if (!change.applied) return;
      for (const op of change.command.ops) {
        if (op.op === 'put' && op.key.startsWith('jobs/')) this.#note(op.value as unknown as JobRecord);
      }
    });
  }

  stop(): void {
    this.#unsubscribe?.();
  }

  counts(): Record<JobState, number> {
    const jobsByState = Object.fromEntries(jobStates.map((name) => [name, 0])) as Record<JobState, number>;
    for (const jobState of this.#stateById.values()) jobsByState[jobState]++;
    return jobsByState;
  }

  #note(job: JobRecord): void {
    this.#stateById.set(job.id, job.state);
  }
}

class NodeJobService implements RunningJobService {
  readonly #options: JobServiceOptions;
  readonly #worker: Worker;
  readonly #scheduler: Scheduler;
  readonly #downloads: Downloads;
  readonly #jobStates = new JobStateCounts();
  #coding: boolean;
  #uploads = 0;
  /** The chunk buffers of this node's uploads, bounded together. */
  readonly #chunkMemory = new ChunkMemory();

  constructor(options: JobServiceOptions) {
    const { node, state, blobs, pool, config, logger } = options;
    this.#options = options;
    const merger = createMerger({ state, blobs, logger, keepOriginal: config.keepOriginal });
    this.#worker = createWorker({ name: node, state, blobs, pool, imagePool: options.imagePool, logger, concurrency: pool.threads * config.inFlightPerWorker });
    this.#scheduler = createScheduler({ state, members: options.members, merger, blobs, config, logger });
    this.#coding = config.code;
    this.#downloads = new Downloads({ blobs, pool, logger, peers: options.peers });
  }

  async start(): Promise<void> {
    await this.#jobStates.start(this.#options.state);
    // A node that does not code never starts its worker: it takes no assignment, and compressHere finds no slot.
    if (this.#coding) await this.#worker.start();
    this.#scheduler.start();
  }

  async stop(): Promise<void> {
    const { state, node, logger, config } = this.#options;
    this.#jobStates.stop();
    this.#coding = false;
    await this.#scheduler.stop();
    // The worker takes nothing more from here (stop() turns it off before its first await). Every chunk
    // it holds goes back, those it is coding too: their runs finish but lose their compare-and-set and
    // delete their output, so the cluster does not wait for this node's slowest chunk.
    const workerStopped = this.#worker.stop();
    if (config.code) await handBackChunks(state, node, logger);
    await workerStopped;
  }

  workerStats(): WorkerStats {
    return this.#worker.stats();
  }

  codes(): boolean {
    return this.#coding;
  }

  stopCoding(): void {
    this.#coding = false;
  }

  async startUpload(request: UploadRequest): Promise<UploadSession> {
    const { node, state, blobs, config, logger, space, members } = this.#options;
    if (this.#uploads >= config.uploadsMax) throw new JobError('BUSY', `this node is serving ${this.#uploads} uploads, its limit; retry later or use another node`);
    this.#uploads++;
    let session;
    try {
      const worker = this.#worker;
      session = await startUploadSession(request, { node, state, blobs, config, logger, space, chunkMemory: this.#chunkMemory, onEnd: () => this.#uploads--, compressHere: worker.compressHere, slotFreed: worker.slotFreed, peersElsewhere: () => this.#downloads.peersElsewhere(), members });
    } catch (error) {
      this.#uploads--;
      throw error;
    }
    const staging = session;
    return {
      jobId: staging.jobId,
      write: (bytes) => staging.write(bytes),
      finish: async () => toView(await staging.finish(), await readChunks(state, staging.jobId)),
      abort: (reason) => staging.abort(reason),
    } satisfies UploadSession;
  }

  async getJob(id: string): Promise<JobView | undefined> {
    if (!jobIdPattern.test(id)) return undefined;
    return this.#view(id);
  }

  async deleteJob(id: string): Promise<JobDeleted> {
    checkId(id);
    const { state, blobs, logger } = this.#options;
    return deleteJob({ state, blobs, logger }, id);
  }

  async listJobs(listOptions: { limit?: number } = {}): Promise<JobView[]> {
    const { state } = this.#options;
    const limit = Math.min(listOptions.limit ?? 1000, 10_000);
    const jobs = (await state.list('jobs/')).map(([, value]) => value as unknown as JobRecord);
    jobs.sort((a, b) => (b.timestamps.pending ?? '').localeCompare(a.timestamps.pending ?? ''));
    return Promise.all(jobs.slice(0, limit).map(async (job) => toView(job, job.state === 'completed' || job.state === 'failed' ? [] : await readChunks(state, job.id))));
  }

  async watch(id: string, listener: (job: JobView) => void): Promise<() => void> {
    checkId(id);
    return watchJob(this.#options.state, id, (jobId) => this.#view(jobId), listener);
  }

  async openDownload(id: string, request: DownloadRequest): Promise<Download> {
    return this.#downloads.open(await this.#completedJob(id), request);
  }

  metrics(): JobMetrics {
    const stats = this.#worker.stats();
    return {
      jobsByState: this.#jobStates.counts(),
      chunksCoded: stats.chunksCoded,
      bytesIn: stats.bytesIn,
      bytesOut: stats.bytesOut + this.#downloads.bytesServed,
      kernelMBps: stats.kernelMBps,
      queueDepth: stats.queued,
      inFlight: stats.inFlight,
      chunksDecoded: this.#downloads.chunksDecoded,
    };
  }

  async #view(id: string): Promise<JobView | undefined> {
    const { state } = this.#options;
    const job = await readJob(state, id);
    if (job === undefined) return undefined;
    return toView(job, job.state === 'completed' ? [] : await readChunks(state, id));
  }

  async #completedJob(id: string): Promise<JobRecord> {
    checkId(id);
    const job = await readJob(this.#options.state, id);
    if (job === undefined) throw new JobError('NOT_FOUND', `no job ${id}`);
    if (job.state !== 'completed') throw new JobError('NOT_READY', `job ${id} is ${job.state}${job.error ? `: ${job.error}` : ''}; only completed jobs can be downloaded`);
    return job;
  }
}

export function createJobService(options: JobServiceOptions): RunningJobService {
  return new NodeJobService(options);
}
