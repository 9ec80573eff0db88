/**
 * How jobs and chunks live in the replicated state, and the guarded commands that change them.
 *
 * Keys:
 *   jobs/<id>                 JobRecord, for every job ever accepted
 *   active/<id>               true until the job ended and its staged blobs are gone (what the scheduler scans)
 *   chunks/<id>/<index>       ChunkRecord while the job is active (folded into the job when it ends)
 *
 * Every change is a compare-and-set: the command carries the record as the proposer read it, and
 * applies only if that is still the record when the log reaches it. So a stale reader, a duplicate
 * completion or two leaders' worth of proposals can never both win: the log decides, identically on
 * every node.
 */
import type { ReplicatedState } from '../cluster/index.ts';
import { choiceOf, codecByName, huffmanChoice, type CodecChoice, type ImageMode, type ImageQuality, type OutputFormat, type TextCounts } from '../codec/index.ts';
import type { StateOp, StateValue } from '../storage/index.ts';
import { chunkCasCommand, chunksCreateCommand, jobCasCommand, jobCreateCommand, stampAt, type Command } from './core/index.ts';
import { chunkPrefix, jobKey } from './core/keys.ts';
import type { ImageEntryView, JobMode, JobState } from './types.ts';

export type ChunkState = 'pending' | 'assigned' | 'done' | 'dead';

export interface JobRecord {
  id: string;
  state: JobState;
  mode: JobMode;
  fileName: string;
  chunkSize: number;
  gateway: string;
  /** Final chunk count; null while uploading. */
  chunks: number | null;
  originalSize: number | null;
  /** For mode "compress": the .dcz once merged. For mode "decompress": the uploaded .dcz. */
  compressedSize: number | null;
  sha256: string | null;
  mime: string | null;
  /** The codec's registry name ("zstd"); records written before codecs say "dcas-huffman-v1". */
  codec: string;
  /** The codec's level; absent in records written before codecs (Huffman, no levels). */
  level?: number;
  /** The compressed object's format; absent in records written before formats (a .dcz). */
  format?: OutputFormat;
  /** Lines and words of the original (`wc -l -w`), set when a compress job completed; absent before. */
  lines?: number | null;
  words?: number | null;
  timestamps: Partial<Record<JobState, string>>;
  /** Set when completed: chunks coded per node, and the object holding the result. */
  chunkNodes: Record<string, number>;
  output: string | null;
  error: string | null;
  /** Seconds from the first chunk assigned to the last chunk done; set when completed. */
  processSeconds: number | null;
  /** Mode "images": how each image is coded; absent for other modes. */
  image?: ImageCoding;
  /** Mode "images", once completed: each image's bytes in and out, in input order (its chunks fold into it). */
  images?: ImageEntryView[];
}

/** How an images job codes each image (validated at upload). */
export interface ImageCoding {
  mode: ImageMode;
  /** The quality range asked for; null: the mode's default. */
  quality: ImageQuality | null;
  strip: boolean;
}

/** What an image chunk knows of its image: its entry name, and once coded its output bytes and why it was kept. */
export interface ImageChunkFacts {
  name: string;
  /** Bytes of the image in the output archive (not counting the tar header). */
  outputBytes: number | null;
  /** True when the input went into the archive as it was: it did not shrink, or it could not be coded (error). */
  kept: boolean;
  /** Why the image could not be coded ("CORRUPT_IMAGE: ..."); null when it was. */
  error: string | null;
}

export interface ChunkRecord {
  job: string;
  index: number;
  state: ChunkState;
  /** Incremented on every assignment; output blobs and completions are keyed by it. */
  attempt: number;
  node: string | null;
  /** Attempts used up: failures the worker reported, and lapses on workers that had proven themselves. */
  failures: number;
  /** Every lease that lapsed on this chunk, whoever held it (absent until the first; bounded by the scheduler). */
  lapses?: number;
  lastError: string | null;
  /**
   * The staged input: original bytes (compress) or a whole chunk record of a .dcz (decompress). A chunk
   * its gateway coded itself (recorded "done" from the start) has none: the key is where it would be.
   * Gateways code locally only when originals are not kept, so a merge that keeps them finds them all.
   */
  input: string;
  inputBytes: number;
  originalBytes: number;
  /** CRC32C of the chunk's original bytes (known at upload for decompress; set on completion for compress). */
  checksum: number | null;
  output: string | null;
  outputBytes: number | null;
  /** Line and word counts of the chunk's original bytes, set on completion of a compress chunk. */
  text?: TextCounts | null;
  /** ISO time of the first assignment and of completion, for phase times. */
  assignedAt: string | null;
  doneAt: string | null;
  /** Mode "images": the image this chunk is (one task per image); absent for other modes. */
  image?: ImageChunkFacts;
}

/** How a job's chunks are coded and merged. */
export interface JobCoding {
  choice: CodecChoice;
  format: OutputFormat;
}

/** The job's codec, level and format; a record from before codecs reads as Huffman in a .dcz. */
export function codingOf(job: Pick<JobRecord, 'codec' | 'level' | 'format'>): JobCoding {
  const codec = codecByName(job.codec);
  const choice = codec === undefined ? huffmanChoice : choiceOf(codec.id, job.level ?? codec.levelDefault);
  return { choice, format: job.format ?? 'dcz' };
}

export { activeKey, blobKeys, chunkKey, chunkPrefix, jobKey } from './core/keys.ts';

export const jobIdPattern = /^[a-z0-9]{8,40}$/;

export async function readJob(state: ReplicatedState, id: string): Promise<JobRecord | undefined> {
  return (await state.get(jobKey(id))) as unknown as JobRecord | undefined;
}

export async function readChunks(state: ReplicatedState, id: string): Promise<ChunkRecord[]> {
  return (await state.list(chunkPrefix(id))).map(([, value]) => value as unknown as ChunkRecord);
}

export async function activeJobIds(state: ReplicatedState): Promise<string[]> {
  return (await state.list('active/')).map(([key]) => key.slice('active/'.length));
}

export function createJobOps(job: JobRecord): Command {
  return jobCreateCommand(job);
}

/**
 * Replaces a job record if it is still `before`. A terminal job stays under active/ until the
 * coordinator has removed its staged blobs (scheduler), so a coordinator that dies in between leaves
 * that cleanup to the next one.
 */
export async function casJob(state: ReplicatedState, before: JobRecord, after: JobRecord, extra: StateOp[] = []): Promise<boolean> {
  return (await state.propose(jobCasCommand(before, after, extra))).applied;
}

/** Replaces a chunk record if it is still `before` (absent when `before` is null). */
export async function casChunk(state: ReplicatedState, before: ChunkRecord | null, after: ChunkRecord): Promise<boolean> {
  return (await state.propose(chunkCasCommand(before, after))).applied;
}

/**
 * Records new chunks in one command, all or none: each must still be absent when the log reaches it, and
 * the job still `job`, as its gateway created it.
 * A gateway proposes what arrived while its previous proposal was in flight, so a large upload costs
 * a few dozen log entries rather than one per chunk.
 */
export async function createChunks(state: ReplicatedState, job: JobRecord, records: readonly ChunkRecord[]): Promise<boolean> {
  return (await state.propose(chunksCreateCommand(job, records))).applied;
}

/**
 * Read-modify-write of a job with retries: `change` gets the current record and returns the new one,
 * or undefined to leave it. Returns the record as written, or undefined if `change` declined.
 */
export async function updateJob(state: ReplicatedState, id: string, change: (job: JobRecord) => JobRecord | undefined, extra?: (job: JobRecord) => StateOp[]): Promise<JobRecord | undefined> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const before = await readJob(state, id);
    if (before === undefined) throw new Error(`job ${id} does not exist`);
    const after = change(structuredClone(before));
    if (after === undefined) return undefined;
    if (await casJob(state, before, after, extra?.(after) ?? [])) return after;
  }
  throw new Error(`job ${id}: too many concurrent changes; giving up after 20 attempts`);
}

export function stamp(job: JobRecord, state: JobState): JobRecord {
  return stampAt(job, state, Date.now());
}
