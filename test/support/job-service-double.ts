/**
 * A TEST DOUBLE of the jobs room (node/jobs): an in-memory JobService for testing the gateway, the
 * client and the CLI without the cluster. It keeps uploaded bytes in memory, "processes" a job on a
 * timer (or when a test says so), and serves downloads from memory. It checks nothing the real jobs
 * room checks beyond the declared size; end-to-end tests with the real service live with the jobs room.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  JobError,
  type Download,
  type DownloadRequest,
  type JobDeleted,
  type JobMetrics,
  type JobService,
  type JobState,
  type JobView,
  type UploadRequest,
  type UploadSession,
} from '../../node/jobs/types.ts';

export interface JobServiceDoubleOptions {
  /** Called before each write resolves; a test can hold writes back to see backpressure. */
  beforeWrite?: (jobId: string, bytes: Uint8Array) => Promise<void>;
  /** Makes startUpload fail with this error. */
  startUploadError?: JobError;
  /** Completes jobs by itself after finish, one chunk per tick; false leaves them "processing". */
  autoProcessTickMs?: number | false;
  /** Fails the job when the upload's bytes start with this text (simulates a kernel failure). */
  failMarker?: string;
  /** Called for each piece a download stream yields, as the gateway pulls it. */
  onDownloadPiece?: (jobId: string, bytes: Uint8Array) => void;
  /** Called when a download stream ends or is closed early. */
  onDownloadClosed?: (jobId: string) => void;
  /** Pieces a download stream yields. */
  downloadPieceBytes?: number;
}

interface StoredJob {
  view: JobView;
  pieces: Buffer[];
  listeners: Set<(job: JobView) => void>;
}

export interface JobServiceDouble extends JobService {
  readonly aborts: Array<{ jobId: string; reason: string }>;
  readonly writes: Array<{ jobId: string; bytes: number }>;
  readonly startedUploads: number;
  bytesOf(jobId: string): Buffer;
  listenerCount(jobId: string): number;
  update(jobId: string, patch: Partial<JobView>): void;
  complete(jobId: string): void;
  fail(jobId: string, error: string): void;
  /** Stops the processing timers. */
  close(): void;
}

/** The "compressed" form the double serves: the original bytes with each byte inverted. */
export function fakeCompressed(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i] ^ 0xff;
  return out;
}

/** A new job's view as the double first shows it: uploading, nothing known yet. */
function uploadingView(jobId: string, request: UploadRequest, chunkSize: number): JobView {
  return {
    id: jobId,
    state: 'uploading',
    mode: request.mode,
    fileName: request.fileName,
    originalSize: null,
    compressedSize: null,
    ratio: null,
    sha256: null,
    mime: null,
    codec: 'huffman',
    level: 0,
    format: 'dcz',
    lines: null,
    words: null,
    chunkSize,
    chunks: 0,
    chunksDone: 0,
    uploadedBytes: 0,
    chunkNodes: {},
    timestamps: { pending: new Date().toISOString(), uploading: new Date().toISOString() },
    phases: { uploadSeconds: null, processSeconds: null, mergeSeconds: null },
    error: null,
    gateway: 'double',
  };
}

class InMemoryJobService implements JobServiceDouble {
  readonly aborts: Array<{ jobId: string; reason: string }> = [];
  readonly writes: Array<{ jobId: string; bytes: number }> = [];
  readonly #options: JobServiceDoubleOptions;
  readonly #jobs = new Map<string, StoredJob>();
  readonly #timers = new Set<NodeJS.Timeout>();
  readonly #tickMs: number | false;
  #startedUploads = 0;
  #chunksCoded = 0;

  constructor(options: JobServiceDoubleOptions) {
    this.#options = options;
    this.#tickMs = options.autoProcessTickMs ?? 10;
  }

  get startedUploads(): number {
    return this.#startedUploads;
  }

  async startUpload(request: UploadRequest): Promise<UploadSession> {
    if (this.#options.startUploadError) throw this.#options.startUploadError;
    this.#startedUploads++;
    const jobId = randomBytes(8).toString('hex');
    const chunkSize = request.chunkSize ?? 4 * 1024 * 1024;
    const job: StoredJob = { pieces: [], listeners: new Set(), view: uploadingView(jobId, request, chunkSize) };
    this.#jobs.set(jobId, job);
    return this.#session(job, request, chunkSize);
  }

  async getJob(id: string): Promise<JobView | undefined> {
    const job = this.#jobs.get(id);
    return job === undefined ? undefined : structuredClone(job.view);
  }

  async deleteJob(id: string): Promise<JobDeleted> {
    const job = this.#stored(id);
    if (job.view.state === 'uploading') throw new JobError('CONFLICT', `job ${id} is still uploading`);
    this.#jobs.delete(id);
    return { id, state: job.view.state, cancelled: job.view.state === 'processing' || job.view.state === 'merging' };
  }

  async listJobs(listOptions?: { limit?: number }): Promise<JobView[]> {
    return [...this.#jobs.values()].slice(0, listOptions?.limit ?? Infinity).map((job) => structuredClone(job.view));
  }

  async watch(id: string, listener: (job: JobView) => void): Promise<() => void> {
    const job = this.#stored(id);
    job.listeners.add(listener);
    listener(structuredClone(job.view));
    return () => job.listeners.delete(listener);
  }

  async openDownload(id: string, request: DownloadRequest): Promise<Download> {
    const job = this.#stored(id);
    if (job.view.state !== 'completed') throw new JobError('NOT_READY', `job ${id}: ${job.view.state}, not completed`);
    const original = Buffer.concat(job.pieces);
    const bytes = request.compressed ? fakeCompressed(original) : original;
    return { size: bytes.length, fileName: request.compressed ? `${job.view.fileName}.dcz` : job.view.fileName, sha256: job.view.sha256, stream: this.#stream(id, bytes), done: () => {} };
  }

  metrics(): JobMetrics {
    const jobsByState: Record<JobState, number> = { pending: 0, uploading: 0, processing: 0, merging: 0, completed: 0, failed: 0 };
    for (const job of this.#jobs.values()) jobsByState[job.view.state]++;
    return { jobsByState, chunksCoded: this.#chunksCoded, bytesIn: 0, bytesOut: 0, kernelMBps: 123.5, queueDepth: 2, inFlight: 1, chunksDecoded: 0 };
  }

  bytesOf(jobId: string): Buffer {
    return Buffer.concat(this.#stored(jobId).pieces);
  }

  listenerCount(jobId: string): number {
    return this.#stored(jobId).listeners.size;
  }

  update(jobId: string, patch: Partial<JobView>): void {
    this.#changed(this.#stored(jobId), patch);
  }

  complete(jobId: string): void {
    this.#complete(this.#stored(jobId));
  }

  fail(jobId: string, error: string): void {
    this.#changed(this.#stored(jobId), { state: 'failed', error });
  }

  close(): void {
    for (const timer of this.#timers) clearInterval(timer);
    this.#timers.clear();
  }

  #session(job: StoredJob, request: UploadRequest, chunkSize: number): UploadSession {
    const jobId = job.view.id;
    return {
      jobId,
      write: async (bytes) => {
        await this.#options.beforeWrite?.(jobId, bytes);
        if (job.view.state !== 'uploading') throw new JobError('BAD_INPUT', `job ${jobId}: not uploading`);
        const uploadedBytes = job.view.uploadedBytes + bytes.length;
        if (request.size !== undefined && uploadedBytes > request.size) throw new JobError('TOO_LARGE', `job ${jobId}: more than the declared ${request.size} bytes`);
        job.pieces.push(Buffer.from(bytes));
        this.writes.push({ jobId, bytes: bytes.length });
        this.#changed(job, { uploadedBytes, chunks: Math.ceil(uploadedBytes / chunkSize) });
      },
      finish: async () => this.#finish(job, request, chunkSize),
      abort: async (reason) => {
        this.aborts.push({ jobId, reason });
        if (job.view.state !== 'failed') this.#changed(job, { state: 'failed', error: reason });
      },
    };
  }

  #finish(job: StoredJob, request: UploadRequest, chunkSize: number): JobView {
    const jobId = job.view.id;
    const original = Buffer.concat(job.pieces);
    if (request.size !== undefined && original.length !== request.size) throw new JobError('BAD_INPUT', `job ${jobId}: ${original.length} bytes arrived, ${request.size} declared`);
    const sha256 = createHash('sha256').update(original).digest('hex');
    this.#changed(job, { state: 'processing', originalSize: original.length, sha256, mime: 'application/octet-stream', chunks: Math.max(1, Math.ceil(original.length / chunkSize)) });
    const failMarker = this.#options.failMarker;
    if (failMarker !== undefined && original.subarray(0, failMarker.length).toString() === failMarker) {
      setTimeout(() => this.#changed(job, { state: 'failed', error: `chunk 0 of job ${jobId}: kernel failed` }), this.#tickMs || 0);
    } else {
      this.#process(job);
    }
    return structuredClone(job.view);
  }

  async *#stream(id: string, bytes: Buffer): AsyncGenerator<Uint8Array> {
    const pieceBytes = this.#options.downloadPieceBytes ?? 300 * 1024;
    try {
      for (let at = 0; at < bytes.length; at += pieceBytes) {
        const piece = bytes.subarray(at, at + pieceBytes);
        this.#options.onDownloadPiece?.(id, piece);
        yield piece;
      }
    } finally {
      this.#options.onDownloadClosed?.(id);
    }
  }

  #changed(job: StoredJob, patch: Partial<JobView>): void {
    job.view = { ...job.view, ...patch };
    const now = new Date().toISOString();
    if (patch.state !== undefined && job.view.timestamps[patch.state] === undefined) job.view.timestamps = { ...job.view.timestamps, [patch.state]: now };
    for (const listener of job.listeners) listener(structuredClone(job.view));
  }

  #stored(jobId: string): StoredJob {
    const job = this.#jobs.get(jobId);
    if (job === undefined) throw new JobError('NOT_FOUND', `job ${jobId}: not found`);
    return job;
  }

  #process(job: StoredJob): void {
    if (this.#tickMs === false) return;
    const timer = setInterval(() => {
      if (job.view.state !== 'processing') {
        clearInterval(timer);
        this.#timers.delete(timer);
        return;
      }
      this.#chunksCoded++;
      if (job.view.chunksDone + 1 < job.view.chunks) {
        this.#changed(job, { chunksDone: job.view.chunksDone + 1 });
        return;
      }
      clearInterval(timer);
      this.#timers.delete(timer);
      this.#complete(job);
    }, this.#tickMs);
    this.#timers.add(timer);
  }

  #complete(job: StoredJob): void {
    const original = Buffer.concat(job.pieces);
    this.#changed(job, { state: 'merging', chunksDone: job.view.chunks });
    this.#changed(job, { state: 'completed', compressedSize: original.length, ratio: original.length === 0 ? null : 1 });
  }
}

export function createJobServiceDouble(options: JobServiceDoubleOptions = {}): JobServiceDouble {
  return new InMemoryJobService(options);
}
