/**
 * Merging a job's coded chunks into its final objects in the blob store.
 *
 * Mode "compress": the workers wrote each chunk as a whole .dcz chunk record (header and frame), so
 * the .dcz is the concatenation  header · record 0 · … · record N-1 · index+trailer, composed by the
 * store (GCS compose in rounds, or a streaming concatenation in the folder store). In a standard format
 * each chunk is a bare frame, member or stream, and only a .zst has a tail (its seek table).
 * Mode "decompress": the decoded chunks concatenate into the original, whose SHA-256 is checked
 * against the uploaded trailer's; the uploaded .dcz is recomposed from its staged chunk records too.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { isNoSpaceError, type ReplicatedState } from '../cluster/index.ts';
import { format, framingOf } from '../codec/index.ts';
import type { BlobStore } from '../storage/index.ts';
import { assertMergeable, completedJob, deleteChunkOps, mergeCleansUp, mergeFailedJob, mergeFailureCleansUp, mergingJob } from './core/index.ts';
import { blobKeys, codingOf, readChunks, readJob, updateJob, type ChunkRecord, type JobRecord } from './records.ts';
import { tarEnd } from './tar.ts';

export interface Merger {
  /** Merges a job whose chunks are all done; safe to call again after a crash or a leader change. */
  merge(jobId: string): Promise<void>;
  /** Removes a job's staged blobs. */
  cleanup(jobId: string): Promise<void>;
}

export interface MergerOptions {
  state: ReplicatedState;
  blobs: BlobStore;
  logger: Logger;
  keepOriginal: boolean;
}

/** A coded chunk as the merge lays it out: its bytes in the blob store, and what the index says of it. */
interface MergedPiece {
  bytes: number;
  originalBytes: number;
  checksum: number;
}

/**
 * The bytes around already-coded chunks, written as blobs: for a .dcz its header and tail (index and
 * trailer), for a .zst its seek table, for an empty file in a standard format the empty piece its tool
 * writes (standard-formats.ts's framing, the one `dcas compress` uses). For a standard format, also the
 * pieces index the format does not carry (blobKeys.pieces). Returns the blobs to put before and after
 * the chunks, and the whole object's expected size.
 */
async function writeFramingParts(blobs: BlobStore, job: JobRecord, pieces: readonly MergedPiece[], originalSize: number, sha256: string): Promise<{ before: string[]; after: string[]; size: number }> {
  const coding = codingOf(job);
  const framing = framingOf(coding.format, coding.choice, job.chunkSize);
  const header = Buffer.concat(framing.start());
  // A .dcz entry's offset is its chunk header's and its length the frame's; a standard piece is all frame.
  const frameOffset = coding.format === 'dcz' ? format.chunkHeaderBytes : 0;
  let offset = header.length;
  const entries = pieces.map((piece) => {
    const entry = { offset, originalBytes: piece.originalBytes, compressedBytes: piece.bytes - frameOffset, checksum: piece.checksum };
    offset += piece.bytes;
    return entry;
  });
  const tail = Buffer.concat(framing.end(entries, offset, originalSize, Buffer.from(sha256, 'hex')));
  const before = header.length > 0 ? [blobKeys.header(job.id)] : [];
  const after = tail.length > 0 ? [blobKeys.tail(job.id)] : [];
  if (header.length > 0) await blobs.put(blobKeys.header(job.id), header);
  if (tail.length > 0) await blobs.put(blobKeys.tail(job.id), tail);
  if (coding.format !== 'dcz') await blobs.put(blobKeys.pieces(job.id), format.encodeIndex(entries));
  return { before, after, size: offset + tail.length };
}

async function sha256Of(blobs: BlobStore, key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const piece of blobs.getStream(key)) hash.update(piece);
  return hash.digest('hex');
}

/**
 * A merge failure that is final for the job, as the job's error; undefined for one worth retrying. A
 * full disk is final: retrying the merge forever would hold its staged blobs, the very space that
 * failing the job gives back.
 */
function permanentMergeFailure(jobId: string, error: unknown): string | undefined {
  const full = isNoSpaceError(error) || (error as { code?: string }).code === 'INSUFFICIENT_STORAGE';
  if (!(error as { permanent?: boolean }).permanent && !full) return undefined;
  return full ? `INSUFFICIENT_STORAGE: merging job ${jobId} ran out of disk space: ${(error as Error).message}` : (error as Error).message;
}

/** What the mode-specific merges need: the blob store and whether originals are kept. */
interface MergeContext {
  blobs: BlobStore;
  keepOriginal: boolean;
}

/** What one merge made: the object's size and the key a download reads. */
interface MergeResult {
  size: number;
  output: string;
}

async function mergeCompressed({ blobs, keepOriginal }: MergeContext, job: JobRecord, chunks: readonly ChunkRecord[]): Promise<MergeResult> {
  const parts = await writeFramingParts(
    blobs,
    job,
    chunks.map((chunk) => ({ bytes: chunk.outputBytes!, originalBytes: chunk.originalBytes, checksum: chunk.checksum! })),
    job.originalSize!,
    job.sha256!,
  );
  const sources = [...parts.before, ...chunks.map((chunk) => chunk.output!), ...parts.after];
  const info = await blobs.compose(sources, blobKeys.dcz(job.id), { metadata: { job: job.id, fileName: job.fileName } });
  if (info.size !== parts.size) throw new Error(`job ${job.id}: merged ${codingOf(job).format} has ${info.size} bytes, expected ${parts.size}`);
  if (keepOriginal) {
    await blobs.compose(chunks.map((chunk) => chunk.input), blobKeys.original(job.id), { metadata: { job: job.id, fileName: job.fileName } });
  }
  return { size: info.size, output: blobKeys.dcz(job.id) };
}

/** Images mode: each chunk's output is a whole tar entry, so the archive is the entries in order and an end marker. */
async function mergeImages({ blobs }: MergeContext, job: JobRecord, chunks: readonly ChunkRecord[]): Promise<MergeResult> {
  const end = tarEnd();
  await blobs.put(blobKeys.tail(job.id), end);
  const expected = chunks.reduce((sum, chunk) => sum + chunk.outputBytes!, end.length);
  const info = await blobs.compose([...chunks.map((chunk) => chunk.output!), blobKeys.tail(job.id)], blobKeys.dcz(job.id), { metadata: { job: job.id, fileName: job.fileName } });
  if (info.size !== expected) throw new Error(`job ${job.id}: merged tar has ${info.size} bytes, expected ${expected}`);
  return { size: info.size, output: blobKeys.dcz(job.id) };
}

async function mergeDecompressed({ blobs }: MergeContext, job: JobRecord, chunks: readonly ChunkRecord[]): Promise<MergeResult> {
  const info = await blobs.compose(chunks.map((chunk) => chunk.output!), blobKeys.original(job.id), { metadata: { job: job.id, fileName: job.fileName } });
  if (info.size !== job.originalSize) throw new Error(`job ${job.id}: decoded ${info.size} bytes, the .dcz trailer says ${job.originalSize}`);
  const sha256 = await sha256Of(blobs, blobKeys.original(job.id));
  if (sha256 !== job.sha256) {
    await blobs.delete(blobKeys.original(job.id));
    throw Object.assign(new Error(`job ${job.id}: SHA-256 of the decoded file does not match the .dcz trailer`), { permanent: true });
  }
  const parts = await writeFramingParts(
    blobs,
    job,
    chunks.map((chunk) => ({ bytes: chunk.inputBytes, originalBytes: chunk.originalBytes, checksum: chunk.checksum! })),
    job.originalSize!,
    job.sha256!,
  );
  await blobs.compose([...parts.before, ...chunks.map((chunk) => chunk.input), ...parts.after], blobKeys.dcz(job.id));
  return { size: info.size, output: blobKeys.original(job.id) };
}

const mergers = { compress: mergeCompressed, decompress: mergeDecompressed, images: mergeImages };

/** The merge's I/O shell: core decides each step (mergingJob, completedJob, the clean-ups); this reads, composes and proposes. */
class BlobMerger implements Merger {
  readonly #state: ReplicatedState;
  readonly #logger: Logger;
  readonly #context: MergeContext;

  constructor(options: MergerOptions) {
    this.#state = options.state;
    this.#logger = options.logger;
    this.#context = { blobs: options.blobs, keepOriginal: options.keepOriginal };
  }

  async cleanup(jobId: string): Promise<void> {
    const removed = await this.#context.blobs.deletePrefix(blobKeys.stagingPrefix(jobId), { abandonWrites: true });
    this.#logger.debug({ job: jobId, removed }, 'merge: staged blobs removed');
  }

  async merge(jobId: string): Promise<void> {
    const merging = await this.#merging(jobId);
    if (merging === undefined) return;
    const chunks = await readChunks(this.#state, jobId);
    assertMergeable(merging, chunks);
    let result: MergeResult;
    try {
      result = await mergers[merging.mode](this.#context, merging, chunks);
    } catch (error) {
      return this.#failed(jobId, error);
    }
    await this.#complete(jobId, chunks, result);
  }

  /** The job in state merging (moved there from processing if need be), or undefined when it is not to be merged. */
  async #merging(jobId: string): Promise<JobRecord | undefined> {
    const current = await readJob(this.#state, jobId);
    if (current === undefined || mergingJob(current, Date.now()) === undefined) return undefined;
    if (current.state === 'merging') return current;
    return updateJob(this.#state, jobId, (job) => (job.state === 'processing' ? mergingJob(job, Date.now()) : undefined));
  }

  /** A failed merge: rethrown when worth retrying, else recorded as the job's failure. */
  async #failed(jobId: string, error: unknown): Promise<void> {
    const reason = permanentMergeFailure(jobId, error);
    if (reason === undefined) {
      if (mergeFailureCleansUp(await readJob(this.#state, jobId))) await this.cleanup(jobId);
      throw error;
    }
    await updateJob(this.#state, jobId, (job) => mergeFailedJob(job, reason, Date.now()));
    await this.cleanup(jobId);
  }

  async #complete(jobId: string, chunks: readonly ChunkRecord[], result: MergeResult): Promise<void> {
    const { blobs } = this.#context;
    if ((await readJob(this.#state, jobId)) === undefined) {
      // Deleted (cancelled) while this merge composed: nothing will ever refer to what it made.
      await Promise.all([blobs.delete(blobKeys.dcz(jobId)), blobs.delete(blobKeys.pieces(jobId)), blobs.delete(blobKeys.original(jobId)), this.cleanup(jobId)]);
      return;
    }
    const completed = await updateJob(this.#state, jobId, (job) => completedJob(job, chunks, result, Date.now()), () => deleteChunkOps(chunks));
    if (mergeCleansUp(completed !== undefined)) await this.cleanup(jobId);
    if (completed !== undefined) this.#logger.info({ job: jobId, chunks: chunks.length, size: result.size }, 'merge: job completed');
  }
}

export function createMerger(options: MergerOptions): Merger {
  return new BlobMerger(options);
}
