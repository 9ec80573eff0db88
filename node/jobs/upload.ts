/**
 * An upload on the gateway node that received it: bytes in, staged chunks and chunk records out.
 *
 * `write` feeds a stream with a small high-water mark, so the client's bytes wait in the socket (its
 * flow-control credit), not in this process. A consumer loop cuts the stream into chunks (compress)
 * or parses it as a .dcz, record by record (decompress), stages each chunk in the blob store, and
 * proposes its chunk record; the coordinator starts assigning chunks while the upload goes on.
 * The request's checks are in upload-checks.ts, the consumer loops in upload-consumers.ts, the staging
 * and local coding of chunks in upload-chunks.ts, and the batched chunk records in record-proposer.ts.
 */
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { Member, ReplicatedState } from '../cluster/index.ts';
import { choiceOf, CodecError, ImageError } from '../codec/index.ts';
import type { JobsConfig } from '../config/index.ts';
import type { BlobStore, SpaceGuard } from '../storage/index.ts';
import { failedJob, newJobRecord, uploadFinishedJob } from './core/index.ts';
import { createRecordProposer, type RecordProposer } from './record-proposer.ts';
import { blobKeys, chunkKey, createJobOps, readChunks, readJob, updateJob, type JobCoding, type JobRecord } from './records.ts';
import { JobError, type UploadRequest } from './types.ts';
import { cutOffReason, newJobId, storageJobError, validateCoding, validateImageCoding, validateUploadRequest } from './upload-checks.ts';
import { UploadChunks, type ChunkMemory } from './upload-chunks.ts';
import { consumers } from './upload-consumers.ts';
import type { Worker } from './worker.ts';

/** An upload as the jobs room runs it; the service turns the finished record into a JobView. */
export interface StagingSession {
  readonly jobId: string;
  write(bytes: Uint8Array): Promise<void>;
  finish(): Promise<JobRecord>;
  abort(reason: string): Promise<void>;
}

export interface UploadContext {
  node: string;
  state: ReplicatedState;
  blobs: BlobStore;
  config: JobsConfig;
  logger: Logger;
  /** Free space on this node's disks, checked before the upload is accepted and before each chunk is staged. */
  space: SpaceGuard;
  /** Called when the session ends, either way. */
  onEnd: () => void;
  /** The node's chunk buffers, shared by its uploads (upload-chunks.ts); without one, each upload's own. */
  chunkMemory?: ChunkMemory;
  /** This node's worker: chunks it has a free slot for are coded here, where their bytes already are. */
  compressHere?: Worker['compressHere'];
  slotFreed?: Worker['slotFreed'];
  /**
   * True when a live peer runs on another machine. Only then is a chunk worth staging raw while this
   * node's slots are busy: a peer on this machine shares its cores, so the upload waits for a slot.
   */
  peersElsewhere?: () => boolean;
  /** This node's membership view (itself included): whether a majority of the voters is still alive. */
  members?: () => readonly Pick<Member, 'name' | 'status'>[];
}

/**
 * Refuses new work while this node cannot persist Raft state, or when an upload of `bytes` would eat
 * into the disk reserve. A declared size counts twice: the staged original and its coded result.
 */
async function checkRoomForUpload(context: UploadContext, bytes: number, fileName: string): Promise<void> {
  const failure = context.state.storageFailure();
  if (failure !== null) throw new JobError(failure.code === 'INSUFFICIENT_STORAGE' ? 'INSUFFICIENT_STORAGE' : 'UNAVAILABLE', `upload of ${fileName} refused: ${failure.message}`);
  const cutOff = context.members === undefined ? undefined : cutOffReason(context.state.leader(), context.state.status().voters, context.members());
  if (cutOff !== undefined) throw new JobError('UNAVAILABLE', `upload of ${fileName} refused: ${cutOff}`);
  try {
    await context.space.check(bytes * 2, `upload of ${fileName}`);
  } catch (error) {
    throw storageJobError(error, context.state) ?? error;
  }
}

/** tar-stream's errors for a malformed archive, as the job's reason; undefined for any other error. */
function tarFailure(error: unknown): string | undefined {
  const message = (error as Error)?.message ?? '';
  return /^(Invalid tar header|Unexpected end of data|Invalid header)/i.test(message) ? `not a valid tar of images: ${message}` : undefined;
}


/** The reason a failed upload's job records, from the error that failed it. */
function failureReason(error: unknown, full: JobError | undefined): string {
  if (full !== undefined) return `INSUFFICIENT_STORAGE: ${full.message}`;
  if (error instanceof CodecError) return `not a valid .dcz: ${error.message}`;
  return tarFailure(error) ?? (error as Error).message;
}

/** What an upload session is about: its request, its job and how its chunks are coded. */
interface UploadPlan {
  request: UploadRequest;
  id: string;
  job: JobRecord;
  chunkSize: number;
  coding: JobCoding;
}

/**
 * How long a failed upload keeps trying to record its failure: past a few elections. It bounds how long a
 * stopping gateway waits for its aborted uploads when no leader answers; a gateway that restarts or stays
 * unreachable has its uploads failed by the coordinator instead (orphanReason).
 */
const failureRecordMs = 30_000;

/**
 * A running upload: `write` feeds the input stream, a consumer loop (one per mode) stages its chunks, and
 * `finish` or `abort` ends it; any failure fails the job, drops its chunk records and its staged blobs.
 */
class UploadRun implements StagingSession {
  readonly jobId: string;
  readonly #request: UploadRequest;
  readonly #context: UploadContext;
  readonly #input = new PassThrough({ highWaterMark: 1024 * 1024 });
  readonly #records: RecordProposer;
  readonly #chunks: UploadChunks;
  readonly #consumed: Promise<Partial<JobRecord>>;
  #received = 0;
  #ended = false;

  constructor(plan: UploadPlan, context: UploadContext) {
    this.jobId = plan.id;
    this.#request = plan.request;
    this.#context = context;
    this.#records = createRecordProposer(context.state, plan.job);
    const { node, blobs, space, config, compressHere, slotFreed, peersElsewhere, chunkMemory: memory } = context;
    this.#chunks = new UploadChunks({ jobId: plan.id, node, blobs, space, config, records: this.#records, coding: plan.coding, compressHere, slotFreed, peersElsewhere, chunkBytes: plan.chunkSize, memory });
    const consumer = consumers[plan.request.mode];
    this.#consumed = consumer({ jobId: plan.id, input: this.#input, chunkSize: plan.chunkSize, state: context.state, chunks: this.#chunks, records: this.#records, received: () => this.#received }).then(async (fields) => {
      await this.#records.drain();
      return fields;
    });
    this.#consumed.then(
      () => this.#chunks.close(),
      () => {
        this.#input.destroy();
        this.#chunks.close();
      },
    );
  }

  async write(bytes: Uint8Array): Promise<void> {
    const { uploadBytesMax } = this.#context.config;
    const size = this.#request.size;
    if (this.#ended) throw new JobError('BAD_INPUT', `upload ${this.jobId} has ended`);
    this.#received += bytes.length;
    if (this.#received > uploadBytesMax) return this.#failed(new JobError('TOO_LARGE', `upload exceeds this node's limit of ${uploadBytesMax} bytes`));
    if (size !== undefined && this.#received > size) return this.#failed(new JobError('BAD_INPUT', `upload sent more than its declared ${size} bytes`));
    if (!this.#input.write(bytes)) {
      // A consumer that stopped destroys the stream, so the wait for 'drain' fails with an AbortError:
      // the consumer's own error (it may still be waiting for chunks coded here) is the reason.
      const drained = once(this.#input, 'drain').then(
        () => undefined,
        () => this.#consumed.then(() => undefined),
      );
      await Promise.race([drained, this.#consumed.then(() => undefined)]).catch(this.#failed);
    }
  }

  async finish(): Promise<JobRecord> {
    const { state, logger } = this.#context;
    const id = this.jobId;
    const size = this.#request.size;
    if (this.#ended) throw new JobError('BAD_INPUT', `upload ${id} has ended`);
    if (size !== undefined && this.#received !== size) return this.#failed(new JobError('BAD_INPUT', `upload ended after ${this.#received} of its declared ${size} bytes`));
    this.#input.end();
    const fields = await this.#consumed.catch(this.#failed);
    const processing = await updateJob(state, id, (current) => uploadFinishedJob(current, fields, this.#chunks.count, Date.now())).catch(this.#failed);
    this.#end();
    if (processing === undefined) {
      const current = await readJob(state, id);
      throw new JobError('BAD_INPUT', `upload ${id} cannot finish: the job is ${current?.state ?? 'gone'}${current?.error ? ` (${current.error})` : ''}`);
    }
    logger.info({ job: id, chunks: this.#chunks.count, bytes: this.#received, mode: this.#request.mode }, 'upload: complete');
    return processing;
  }

  async abort(reason: string): Promise<void> {
    if (this.#ended) return;
    this.#context.logger.info({ job: this.jobId, reason }, 'upload: aborted');
    await this.#fail(`upload aborted: ${reason}`);
  }

  #end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#context.onEnd();
  }

  async #fail(reason: string): Promise<void> {
    const { state, blobs, logger } = this.#context;
    const id = this.jobId;
    this.#end();
    this.#input.destroy();
    // A consumer waiting for a chunk buffer stops waiting.
    this.#chunks.close();
    // Wait until the consumer has stopped: a chunk it was staging must not land after the cleanup.
    await this.#consumed.catch(() => {});
    await this.#records.settle();
    await this.#recordFailure(reason);
    await blobs.deletePrefix(blobKeys.stagingPrefix(id), { abandonWrites: true }).catch((error: unknown) => logger.warn({ err: error, job: id }, 'upload: could not remove staged blobs'));
  }

  /**
   * The job fails with its chunk records. Retried (a leader change drops proposals) until it lands or
   * failureRecordMs passed: a job left 'uploading' under a live gateway is one no coordinator fails
   * (found by the jobs simulation).
   */
  async #recordFailure(reason: string): Promise<void> {
    const { state, logger } = this.#context;
    const id = this.jobId;
    const deadline = Date.now() + failureRecordMs;
    for (let delayMs = 250; ; delayMs = Math.min(delayMs * 2, 5_000)) {
      try {
        // Deleted meanwhile: nothing left to fail.
        if ((await readJob(state, id)) === undefined) return;
        const chunkKeys = (await readChunks(state, id)).map((chunk) => chunkKey(id, chunk.index));
        await updateJob(
          state,
          id,
          (current) => failedJob(current, reason, Date.now()),
          () => chunkKeys.map((key) => ({ op: 'del', key }) as const),
        );
        return;
      } catch (error) {
        const giveUp = Date.now() + delayMs > deadline;
        logger.warn({ err: error, job: id }, giveUp ? 'upload: could not record the failure; giving up' : 'upload: could not record the failure; retrying');
        if (giveUp) return;
        await sleep(delayMs, undefined, { ref: false });
      }
    }
  }

  // Handed to .catch on its own, so bound here.
  readonly #failed = async (error: unknown): Promise<never> => {
    const full = storageJobError(error, this.#context.state);
    const reason = failureReason(error, full);
    await this.#fail(reason);
    const bad = error instanceof CodecError || error instanceof ImageError || tarFailure(error) !== undefined;
    throw full ?? (error instanceof JobError ? error : new JobError(bad ? 'BAD_INPUT' : 'UNAVAILABLE', reason));
  };
}

export async function startUploadSession(request: UploadRequest, context: UploadContext): Promise<StagingSession> {
  const { fileName, chunkSize } = validateUploadRequest(request, context.config);
  const imageCoding = validateImageCoding(request);
  const coding = imageCoding === undefined ? validateCoding(request) : { choice: choiceOf(2, 0), format: 'dcz' as const };
  if (request.mode === 'decompress' && (request.codec !== undefined || request.format !== undefined)) {
    throw new JobError('BAD_INPUT', 'codec and format are for mode "compress"; a decompress job reads them from its .dcz');
  }
  await checkRoomForUpload(context, request.size ?? 0, fileName);
  const id = newJobId();
  const job = newJobRecord({ id, mode: request.mode, fileName, chunkSize, gateway: context.node, codec: coding.choice.codec.name, level: coding.choice.level, format: coding.format, ...(imageCoding === undefined ? {} : { image: imageCoding }) }, Date.now());
  const created = await context.state.propose(createJobOps(job));
  if (!created.applied) throw new JobError('UNAVAILABLE', `job id ${id} collided; retry the upload`);
  return new UploadRun({ request, id, job, chunkSize, coding }, context);
}
