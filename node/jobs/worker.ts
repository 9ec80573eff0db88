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
import { CodecError, format, ImageError, imageQualityDefault, jpegQualityDefault, type CodecPool, type ImageOptions, type ImagePool, type TextCounts } from '../codec/index.ts';
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

export function createWorker(options: WorkerOptions): Worker {
  const { name, state, blobs, pool, logger } = options;
  const queue: ChunkRecord[] = [];
  const seen = new Set<string>();
  const stats: WorkerStats = { chunksCoded: 0, bytesIn: 0, bytesOut: 0, inFlight: 0, queued: 0, kernelMBps: 0 };
  const recent: Array<{ bytes: number; seconds: number }> = [];
  let running = false;
  let unsubscribe: (() => void) | undefined;
  const idle = new Set<Promise<void>>();
  const slotWaiters: Array<() => void> = [];

  function offer(chunk: ChunkRecord): void {
    if (chunk.state !== 'assigned' || chunk.node !== name) return;
    const id = taskId(chunk);
    if (seen.has(id)) return;
    seen.add(id);
    queue.push(chunk);
    pump();
  }

  /** Wakes whoever waits for a slot (slotFreed) once the queue has had its turn. */
  function wakeSlotWaiters(): void {
    for (const resolve of slotWaiters.splice(0)) resolve();
  }

  function pump(): void {
    while (running && stats.inFlight < options.concurrency && queue.length > 0) {
      const chunk = queue.shift()!;
      stats.inFlight++;
      const work = run(chunk).finally(() => {
        stats.inFlight--;
        seen.delete(taskId(chunk));
        idle.delete(work);
        pump();
      });
      idle.add(work);
    }
    stats.queued = queue.length;
    if (!running || stats.inFlight < options.concurrency) wakeSlotWaiters();
  }

  /**
   * Codes original bytes with the job's codec, counting its lines and words on the same codec thread:
   * a whole .dcz chunk record (header and frame) for a .dcz, the bare frame, member or stream for a
   * standard format. `input` is transferred.
   */
  async function compress(input: Uint8Array, coding: JobCoding): Promise<Coded> {
    const originalBytes = input.length;
    const { frame, checksum, text } = await pool.compress(input, coding.choice, { countText: true });
    const output = coding.format === 'dcz' ? Buffer.concat([format.encodeChunkHeader({ originalBytes, compressedBytes: frame.length, checksum }), frame]) : frame;
    return { output, checksum, originalBytes, text: text ?? null };
  }

  function noteCoded(bytesIn: number, coded: Coded, seconds: number): void {
    stats.chunksCoded++;
    stats.bytesIn += bytesIn;
    stats.bytesOut += coded.output.length;
    recent.push({ bytes: coded.originalBytes, seconds });
    if (recent.length > 32) recent.shift();
    const total = recent.reduce((sum, sample) => ({ bytes: sum.bytes + sample.bytes, seconds: sum.seconds + sample.seconds }), { bytes: 0, seconds: 0 });
    stats.kernelMBps = total.bytes / 1e6 / Math.max(total.seconds, 1e-9);
  }

  /**
   * Optimises one image of a batch and writes it as its whole tar entry: the smaller image, or the input
   * when it did not shrink or is not a codable image (imageFaultCodes). The checksum is the image's CRC32C.
   */
  async function codeImage(chunk: ChunkRecord, input: Uint8Array, coding: ImageCoding): Promise<Coded> {
    if (options.imagePool === undefined) throw new Error('this node has no image pool');
    const name = chunk.image?.name ?? `${chunk.index}`;
    let image: Uint8Array = input;
    let kept = true;
    let error: string | null = null;
    try {
      const result = await options.imagePool().optimize(input, imageOptionsOf(coding));
      image = result.bytes;
      kept = result.kept;
    } catch (failure) {
      if (!(failure instanceof ImageError) || !imageFaultCodes.has(failure.code)) throw failure;
      error = `${failure.code}: ${failure.message}`;
      logger.info({ job: chunk.job, image: name, code: failure.code }, 'worker: image kept as it was');
    }
    const output = await tarEntry(name, image);
    return { output, checksum: crc32c(image), originalBytes: input.length, text: null, image: { name, outputBytes: image.length, kept, error } };
  }

  async function code(chunk: ChunkRecord, job: JobRecord): Promise<Coded> {
    const { mode } = job;
    const coding = codingOf(job);
    const input = await blobs.get(chunk.input);
    if (mode === 'images') {
      if (job.image === undefined) throw new Error(`images job ${job.id} has no image options recorded`);
      return codeImage(chunk, input, job.image);
    }
    if (mode === 'compress') return compress(input, coding);
    // A staged .dcz chunk record: its header was checked at upload; the frame is decoded and verified here.
    const codecId = coding.choice.codec.id;
    const fields = format.decodeChunkHeader(input.subarray(0, format.chunkHeaderBytes), chunk.index, format.chunkBytesMax, codecId);
    const original = await pool.decompress(input.subarray(format.chunkHeaderBytes), fields.originalBytes, fields.checksum, `chunk ${chunk.index}`, coding.choice);
    return { output: original, checksum: fields.checksum, originalBytes: fields.originalBytes, text: null };
  }

  async function stageOutput(chunk: Pick<ChunkRecord, 'job' | 'index' | 'attempt'>, run: string, coded: Coded): Promise<string> {
    const outputKey = chunkOutputKey(chunk, run);
    await blobs.put(outputKey, coded.output);
    return outputKey;
  }

  /** Runs `work` in one of the worker's slots, taken now; undefined when every slot is busy. */
  function inFreeSlot<T>(work: () => Promise<T>): Promise<T> | undefined {
    // Assigned chunks waiting here come first: their leases are running.
    if (!running || stats.inFlight >= options.concurrency || queue.length > 0) return undefined;
    stats.inFlight++;
    const done = work().finally(() => {
      stats.inFlight--;
      idle.delete(settled);
      pump();
    });
    const settled = done.then(
      () => {},
      () => {},
    );
    idle.add(settled);
    return done;
  }

  async function run(chunk: ChunkRecord): Promise<void> {
    const job = await readJob(state, chunk.job);
    if (!chunkWorthRunning(job)) return;
    const started = performance.now();
    let outputKey: string | undefined;
    try {
      const coded = await code(chunk, job);
      const seconds = (performance.now() - started) / 1000;
      outputKey = await stageOutput(chunk, randomBytes(4).toString('hex'), coded);
      const won = await casChunk(state, chunk, completedChunk(chunk, { output: outputKey, outputBytes: coded.output.length, checksum: coded.checksum, originalBytes: coded.originalBytes, text: coded.text, ...(coded.image === undefined ? {} : { image: coded.image }) }, Date.now()));
      if (won) noteCoded(chunk.inputBytes, coded, seconds);
      // Someone else's attempt won (this lease lapsed and the chunk moved on): drop our output.
      const orphan = outputToDeleteAfterCompletion(won, outputKey);
      if (orphan !== undefined) await blobs.delete(orphan).catch(() => {});
    } catch (error) {
      const reason = error instanceof CodecError ? error.message : `${(error as Error).name}: ${(error as Error).message}`;
      logger.warn({ job: chunk.job, chunk: chunk.index, attempt: chunk.attempt, err: error }, 'worker: chunk failed');
      await casChunk(state, chunk, failedChunk(chunk, reason)).catch((proposeError: unknown) => logger.warn({ err: proposeError }, 'worker: could not record a chunk failure'));
      if (outputKey !== undefined) await dropUndecidedOutput(chunk, outputKey);
    }
  }

  /** After a completion whose outcome is unknown: removes its output once the chunk has moved past it (core decides). */
  async function dropUndecidedOutput(chunk: ChunkRecord, outputKey: string): Promise<void> {
    const now = (await state.get(chunkKey(chunk.job, chunk.index)).catch(() => chunk)) as unknown as ChunkRecord | undefined;
    const orphan = outputToDeleteAfterUnknownCompletion(chunk, now, outputKey);
    if (orphan !== undefined) await blobs.delete(orphan).catch(() => {});
  }

  function onChange(change: StateChange): void {
    if (!change.applied) return;
    for (const op of change.command.ops) {
      if (op.op === 'put' && op.key.startsWith('chunks/')) offer(op.value as unknown as ChunkRecord);
    }
  }

  return {
    async start() {
      running = true;
      unsubscribe = state.subscribe(onChange);
      // Assignments made while this node was down are still in the state: pick them up.
      for (const id of await activeJobIds(state)) {
        for (const chunk of await readChunks(state, id)) offer(chunk);
      }
    },
    async stop() {
      running = false;
      wakeSlotWaiters();
      unsubscribe?.();
      await Promise.allSettled([...idle]);
    },
    stats: () => ({ ...stats, queued: queue.length }),
    compressHere(job, index, bytes, coding) {
      const inputBytes = bytes.length;
      const started = performance.now();
      // The slot is a codec thread's turn: it is given back before the (fsynced) write, which is I/O.
      const running = inFreeSlot(() => compress(bytes, coding));
      return running?.then(async (coded) => {
        noteCoded(inputBytes, coded, (performance.now() - started) / 1000);
        const output = await stageOutput({ job, index, attempt: localAttempt }, randomBytes(4).toString('hex'), coded);
        return { output, outputBytes: coded.output.length, checksum: coded.checksum, originalBytes: coded.originalBytes, attempt: localAttempt, text: coded.text };
      });
    },
    async slotFreed() {
      if (!running) return false;
      if (stats.inFlight < options.concurrency && queue.length === 0) return true;
      await new Promise<void>((resolve) => slotWaiters.push(resolve));
      return running;
    },
  };
}
