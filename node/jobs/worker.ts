/**
 * The worker actor of a node: codes the chunks the coordinator assigned to this node.
 *
 * Assignments arrive through the replicated log (every node applies it), so a worker needs no
 * separate message: it sees `chunks/<job>/<i>` become { state: assigned, node: <me>, attempt: k }.
 * It reads the staged input, codes it on the node's worker threads, writes the output under a key
 * that includes the attempt, and proposes a completion guarded on the very assignment it served.
 * A late or duplicate completion fails its guard and changes nothing.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { ReplicatedState } from '../cluster/index.ts';
import { crc32c } from '@node-rs/crc32';
import { codecHuffmanId, CodecError, format, freeBuffer, ImageError, SpareBuffers, imageQualityDefault, jpegQualityDefault, type CodecPool, type ImageOptions, type ImagePool, type TextCounts } from '../codec/index.ts';
import type { BlobStore } from '../storage/index.ts';
import type { StateChange } from '../storage/index.ts';
import { chunkOutputKey, chunkWorthRunning, completedChunk, failedChunk, outputToDeleteAfterCompletion, outputToDeleteAfterUnknownCompletion } from './core/index.ts';
import { activeJobIds, casChunk, chunkKey, codingOf, readChunks, readJob, type ChunkRecord, type ImageChunkFacts, type ImageCoding, type JobCoding, type JobRecord } from './records.ts';
import { tarEntry } from './tar.ts';

export interface WorkerOptions {
  name: string;
  state: ReplicatedState;
  blobs: BlobStore;
  pool: CodecPool;
  /** The node's image pool, created on first use (images jobs only). */
  imagePool?: () => ImagePool;
  logger: Logger;
  /** Chunks coded at once on this node. */
  concurrency: number;
}

export interface WorkerStats {
  chunksCoded: number;
  bytesIn: number;
  bytesOut: number;
  inFlight: number;
  queued: number;
  /** MB/s of original bytes over the recent chunks, as the kernel ran them (thread time, not wall). */
  kernelMBps: number;
}

/** A chunk coded where it arrived, its output staged: what its gateway records as done. */
export interface CodedHere {
  output: string;
  outputBytes: number;
  checksum: number;
  originalBytes: number;
  attempt: number;
  text: TextCounts | null;
  /** The chunk's original bytes, handed back by the codec thread: the upload's to reuse for a later chunk. */
  input?: Uint8Array;
}

export interface Worker {
  start(): Promise<void>;
  stop(): Promise<void>;
  stats(): WorkerStats;
  /**
   * Locality: codes original bytes this node's gateway holds in memory, in one of the worker's own
   * slots, and stages only the coded chunk record, sparing the raw bytes a trip through the blob store
   * and another node. Undefined when every slot is busy: the caller stages the raw bytes instead, for
   * whichever node the coordinator picks. `bytes` is transferred to a codec thread.
   */
  compressHere(job: string, index: number, bytes: Uint8Array, coding: JobCoding): Promise<CodedHere> | undefined;
  /** Resolves when a slot may be free for compressHere: true, or false once the worker has stopped. */
  slotFreed(): Promise<boolean>;
}

interface Coded {
  output: Uint8Array;
  checksum: number;
  originalBytes: number;
  /** Counted while compressing; null when decoding. */
  text: TextCounts | null;
  /** An image's facts once coded (images jobs). */
  image?: ImageChunkFacts;
  /** The original bytes handed back by the codec thread (compress with `giveBack`). */
  input?: Uint8Array;
  /** A Huffman frame: its buffer goes to the spare buffers once written. */
  spare?: boolean;
}

/**
 * Image errors that say the image itself is bad (not a PNG, truncated, a bomb, animated): coding it again
 * anywhere fails the same way, so the image goes into the archive as it was, with the reason recorded.
 * Anything else (a full queue, a crashed thread) fails the attempt and the coordinator retries it.
 */
const imageFaultCodes: ReadonlySet<string> = new Set(['NOT_IMAGE', 'WRONG_IMAGE_FORMAT', 'TRUNCATED_IMAGE', 'CORRUPT_IMAGE', 'ANIMATED_IMAGE', 'IMAGE_TOO_LARGE', 'TOO_MANY_PIXELS']);

/** The options the image pool takes for an images job's coding. */
function imageOptionsOf(coding: ImageCoding): ImageOptions {
  const quality = coding.quality ?? (coding.mode === 'jpeg' ? { min: 0, max: jpegQualityDefault } : imageQualityDefault);
  return { mode: coding.mode, quality, keepMetadata: !coding.strip };
}

/** A chunk coded by its gateway counts as the first assignment of the chunk, to that gateway. */
const localAttempt = 1;

const taskId = (chunk: ChunkRecord) => `${chunk.job}/${chunk.index}/${chunk.attempt}`;

/** What coding a chunk needs: the node's codec threads, its image pool, and a logger for images kept as they were. */
interface CodingContext {
  blobs: BlobStore;
  pool: CodecPool;
  imagePool?: () => ImagePool;
  logger: Logger;
  spares: SpareBuffers;
}

/**
 * Spare frame buffers kept for the next chunks: as many as a worker has frames coding and waiting for
 * their write, and at most as many bytes as an upload's chunk memory (upload-chunks.ts), so that large
 * chunks (up to 64 MiB) keep none. They stay with the node between jobs: at most 24 MiB.
 */
const spareFramesMax = 4;
const spareBytesMax = 24 * 1024 * 1024;

/**
 * Codes original bytes with the job's codec, counting its lines and words on the same codec thread:
 * a whole .dcz chunk record (header and frame) for a .dcz, the bare frame, member or stream for a
 * standard format. `input` is transferred.
 */
async function compress(context: CodingContext, input: Uint8Array, coding: JobCoding, giveBack = false): Promise<Coded> {
  const originalBytes = input.length;
  // Only the Huffman kernel codes into a spare buffer; other codecs make frames of their own.
  const spare = coding.choice.codec.id === codecHuffmanId;
  const into = spare ? context.spares.take() : undefined;
  const coded = await context.pool.compress(input, coding.choice, { countText: true, record: coding.format === 'dcz', giveBack, into });
  return { output: coded.frame, checksum: coded.checksum, originalBytes, text: coded.text ?? null, input: coded.input, spare };
}

/**
 * Optimises one image of a batch and writes it as its whole tar entry: the smaller image, or the input
 * when it did not shrink or is not a codable image (imageFaultCodes). The checksum is the image's CRC32C.
 */
async function codeImage(context: CodingContext, chunk: ChunkRecord, input: Uint8Array, coding: ImageCoding): Promise<Coded> {
  if (context.imagePool === undefined) throw new Error('this node has no image pool');
  const name = chunk.image?.name ?? `${chunk.index}`;
  let image: Uint8Array = input;
  let kept = true;
  let error: string | null = null;
  try {
    const result = await context.imagePool().optimize(input, imageOptionsOf(coding));
    image = result.bytes;
    kept = result.kept;
  } catch (failure) {
    if (!(failure instanceof ImageError) || !imageFaultCodes.has(failure.code)) throw failure;
    error = `${failure.code}: ${failure.message}`;
    context.logger.info({ job: chunk.job, image: name, code: failure.code }, 'worker: image kept as it was');
  }
  const output = await tarEntry(name, image);
  return { output, checksum: crc32c(image), originalBytes: input.length, text: null, image: { name, outputBytes: image.length, kept, error } };
}

/** Codes an assigned chunk's staged input as its job's mode says. */
async function code(context: CodingContext, chunk: ChunkRecord, job: JobRecord): Promise<Coded> {
  const { mode } = job;
  const coding = codingOf(job);
  const input = await context.blobs.get(chunk.input);
  if (mode === 'images') {
    if (job.image === undefined) throw new Error(`images job ${job.id} has no image options recorded`);
    return codeImage(context, chunk, input, job.image);
  }
  if (mode === 'compress') return compress(context, input, coding);
  // A staged .dcz chunk record: its header was checked at upload; the frame is decoded and verified here.
  const codecId = coding.choice.codec.id;
  const fields = format.decodeChunkHeader(input.subarray(0, format.chunkHeaderBytes), chunk.index, format.chunkBytesMax, codecId);
  const original = await context.pool.decompress(input.subarray(format.chunkHeaderBytes), fields.originalBytes, fields.checksum, `chunk ${chunk.index}`, coding.choice);
  return { output: original, checksum: fields.checksum, originalBytes: fields.originalBytes, text: null };
}

/**
 * Stages a coded chunk under a key of its own run, then frees its bytes or keeps a Huffman frame's buffer
 * for the next frame: nothing reads them again, and freed now they spare the collector (codec/buffers.ts).
 * Read `coded.output.length` before this.
 */
async function stageOutput(context: CodingContext, chunk: Pick<ChunkRecord, 'job' | 'index' | 'attempt'>, coded: Coded): Promise<string> {
  const outputKey = chunkOutputKey(chunk, randomBytes(4).toString('hex'));
  await context.blobs.put(outputKey, coded.output);
  if (coded.spare === true) context.spares.give(coded.output);
  else freeBuffer(coded.output);
  return outputKey;
}

/** Chunks the kernel rate is averaged over. */
const rateSamplesMax = 32;

/** The worker's counters, and the kernel's rate over its recent chunks. */
class CodingStats {
  readonly stats: WorkerStats = { chunksCoded: 0, bytesIn: 0, bytesOut: 0, inFlight: 0, queued: 0, kernelMBps: 0 };
  readonly #recent: Array<{ bytes: number; seconds: number }> = [];

  noteCoded(bytesIn: number, bytesOut: number, originalBytes: number, seconds: number): void {
    const stats = this.stats;
    stats.chunksCoded++;
    stats.bytesIn += bytesIn;
    stats.bytesOut += bytesOut;
    this.#recent.push({ bytes: originalBytes, seconds });
    if (this.#recent.length > rateSamplesMax) this.#recent.shift();
    const total = this.#recent.reduce((sum, sample) => ({ bytes: sum.bytes + sample.bytes, seconds: sum.seconds + sample.seconds }), { bytes: 0, seconds: 0 });
    stats.kernelMBps = total.bytes / 1e6 / Math.max(total.seconds, 1e-9);
  }
}

/** The worker actor: a queue of this node's assignments served in `concurrency` slots, which compressHere shares. */
class NodeWorker implements Worker {
  readonly #options: WorkerOptions;
  readonly #coding: CodingContext;
  readonly #queue: ChunkRecord[] = [];
  readonly #seen = new Set<string>();
  readonly #counters = new CodingStats();
  readonly #idle = new Set<Promise<void>>();
  readonly #slotWaiters: Array<() => void> = [];
  #running = false;
  #unsubscribe: (() => void) | undefined;

  constructor(options: WorkerOptions) {
    this.#options = options;
    this.#coding = { blobs: options.blobs, pool: options.pool, imagePool: options.imagePool, logger: options.logger, spares: new SpareBuffers(spareFramesMax, spareBytesMax) };
  }

  get #stats(): WorkerStats {
    return this.#counters.stats;
  }

  async start(): Promise<void> {
    const { state } = this.#options;
    this.#running = true;
    this.#unsubscribe = state.subscribe((change) => this.#onChange(change));
    // Assignments made while this node was down are still in the state: pick them up.
    for (const id of await activeJobIds(state)) {
      for (const chunk of await readChunks(state, id)) this.#offer(chunk);
    }
  }

  async stop(): Promise<void> {
    this.#running = false;
    this.#wakeSlotWaiters();
    this.#unsubscribe?.();
    await Promise.allSettled([...this.#idle]);
  }

  stats(): WorkerStats {
    return { ...this.#stats, queued: this.#queue.length };
  }

  // compressHere and slotFreed are handed to the upload session on their own, so they are bound here.
  readonly compressHere = (job: string, index: number, bytes: Uint8Array, coding: JobCoding): Promise<CodedHere> | undefined => {
    const inputBytes = bytes.length;
    const started = performance.now();
    // The slot is a codec thread's turn: it is given back before the (fsynced) write, which is I/O.
    const running = this.#inFreeSlot(() => compress(this.#coding, bytes, coding, true));
    return running?.then(async (coded) => {
      const outputBytes = coded.output.length;
      this.#counters.noteCoded(inputBytes, outputBytes, coded.originalBytes, (performance.now() - started) / 1000);
      const output = await stageOutput(this.#coding, { job, index, attempt: localAttempt }, coded);
      return { output, outputBytes, checksum: coded.checksum, originalBytes: coded.originalBytes, attempt: localAttempt, text: coded.text, input: coded.input };
    });
  };

  readonly slotFreed = async (): Promise<boolean> => {
    if (!this.#running) return false;
    if (this.#stats.inFlight < this.#options.concurrency && this.#queue.length === 0) return true;
    await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
    return this.#running;
  };

  #onChange(change: StateChange): void {
    if (!change.applied) return;
    for (const op of change.command.ops) {
      if (op.op === 'put' && op.key.startsWith('chunks/')) this.#offer(op.value as unknown as ChunkRecord);
    }
  }

  #offer(chunk: ChunkRecord): void {
    if (chunk.state !== 'assigned' || chunk.node !== this.#options.name) {
      this.#unqueue(chunk);
      return;
    }
    const id = taskId(chunk);
    if (this.#seen.has(id)) return;
    this.#seen.add(id);
    this.#queue.push(chunk);
    this.#pump();
  }

  /** A queued chunk that moved on before its turn (the coordinator gave it to an idle worker, or it lapsed) is not coded here. */
  #unqueue(chunk: ChunkRecord): void {
    const at = this.#queue.findIndex((queued) => queued.job === chunk.job && queued.index === chunk.index);
    if (at < 0) return;
    this.#seen.delete(taskId(this.#queue[at]!));
    this.#queue.splice(at, 1);
    this.#pump();
  }

  /** Wakes whoever waits for a slot (slotFreed) once the queue has had its turn. */
  #wakeSlotWaiters(): void {
    for (const resolve of this.#slotWaiters.splice(0)) resolve();
  }

  #pump(): void {
    const stats = this.#stats;
    const { concurrency } = this.#options;
    while (this.#running && stats.inFlight < concurrency && this.#queue.length > 0) {
      const chunk = this.#queue.shift()!;
      stats.inFlight++;
      const work = this.#run(chunk).finally(() => {
        stats.inFlight--;
        this.#seen.delete(taskId(chunk));
        this.#idle.delete(work);
        this.#pump();
      });
      this.#idle.add(work);
    }
    stats.queued = this.#queue.length;
    if (!this.#running || stats.inFlight < concurrency) this.#wakeSlotWaiters();
  }

  /** Runs `work` in one of the worker's slots, taken now; undefined when every slot is busy. */
  #inFreeSlot<T>(work: () => Promise<T>): Promise<T> | undefined {
    const stats = this.#stats;
    // Assigned chunks waiting here come first: their leases are running.
    if (!this.#running || stats.inFlight >= this.#options.concurrency || this.#queue.length > 0) return undefined;
    stats.inFlight++;
    const done = work().finally(() => {
      stats.inFlight--;
      this.#idle.delete(settled);
      this.#pump();
    });
    const settled = done.then(
      () => {},
      () => {},
    );
    this.#idle.add(settled);
    return done;
  }

  async #run(chunk: ChunkRecord): Promise<void> {
    const { state, blobs, logger } = this.#options;
    const job = await readJob(state, chunk.job);
    if (!chunkWorthRunning(job)) return;
    const started = performance.now();
    let outputKey: string | undefined;
    try {
      const coded = await code(this.#coding, chunk, job);
      const seconds = (performance.now() - started) / 1000;
      const outputBytes = coded.output.length;
      outputKey = await stageOutput(this.#coding, chunk, coded);
      const won = await casChunk(state, chunk, completedChunk(chunk, { output: outputKey, outputBytes, checksum: coded.checksum, originalBytes: coded.originalBytes, text: coded.text, ...(coded.image === undefined ? {} : { image: coded.image }) }, Date.now()));
      if (won) this.#counters.noteCoded(chunk.inputBytes, outputBytes, coded.originalBytes, seconds);
      // Someone else's attempt won (this lease lapsed and the chunk moved on): drop our output.
      const orphan = outputToDeleteAfterCompletion(won, outputKey);
      if (orphan !== undefined) await blobs.delete(orphan).catch(() => {});
    } catch (error) {
      const reason = error instanceof CodecError ? error.message : `${(error as Error).name}: ${(error as Error).message}`;
      logger.warn({ job: chunk.job, chunk: chunk.index, attempt: chunk.attempt, err: error }, 'worker: chunk failed');
      await casChunk(state, chunk, failedChunk(chunk, reason)).catch((proposeError: unknown) => logger.warn({ err: proposeError }, 'worker: could not record a chunk failure'));
      if (outputKey !== undefined) await this.#dropUndecidedOutput(chunk, outputKey);
    }
  }

  /** After a completion whose outcome is unknown: removes its output once the chunk has moved past it (core decides). */
  async #dropUndecidedOutput(chunk: ChunkRecord, outputKey: string): Promise<void> {
    const now = (await this.#options.state.get(chunkKey(chunk.job, chunk.index)).catch(() => chunk)) as unknown as ChunkRecord | undefined;
    const orphan = outputToDeleteAfterUnknownCompletion(chunk, now, outputKey);
    if (orphan !== undefined) await this.#options.blobs.delete(orphan).catch(() => {});
  }
}

export function createWorker(options: WorkerOptions): Worker {
  return new NodeWorker(options);
}
