/**
 * The record changes the workers, the merger and the gateways propose, as pure functions of the
 * records they read and the time they are given. Their I/O shells (worker.ts, merge.ts, upload.ts)
 * write blobs and propose; what the records become, and what a lost compare-and-set means, is decided here.
 */
import { isDeepStrictEqual } from 'node:util';
import { joinTextCounts, type OutputFormat, type TextCounts } from '../../codec/index.ts';
import type { JobMode, JobState } from '../types.ts';
import type { ChunkRecord, ImageCoding, JobRecord } from '../records.ts';
import type { ImageEntryView } from '../types.ts';
import { assertChunkMove, assertJobMove, assertJobs } from './invariants.ts';
import { blobKeys } from './keys.ts';

/** The job entering `state` at `nowMs` (its timestamp recorded). */
export function stampAt(job: JobRecord, state: JobState, nowMs: number): JobRecord {
  return { ...job, state, timestamps: { ...job.timestamps, [state]: new Date(nowMs).toISOString() } };
}

/** Whether a job has reached its end, either way. */
export const jobEnded = (job: JobRecord) => job.state === 'completed' || job.state === 'failed';

/** A job failed for `reason`, or undefined if it already ended (the first ending stands). */
export function failedJob(job: JobRecord, reason: string, nowMs: number): JobRecord | undefined {
  if (jobEnded(job)) return undefined;
  const after = { ...stampAt(job, 'failed', nowMs), error: reason };
  assertJobMove(job, after);
  return after;
}

/** A new upload's job record, created by the gateway `node`. */
export function newJobRecord(
  fields: { id: string; mode: JobMode; fileName: string; chunkSize: number; gateway: string; codec: string; level: number; format: OutputFormat; image?: ImageCoding },
  nowMs: number,
): JobRecord {
  const pending: JobRecord = {
    ...fields,
    state: 'pending',
    chunks: null,
    originalSize: null,
    compressedSize: null,
    sha256: null,
    mime: null,
    lines: null,
    words: null,
    timestamps: {},
    chunkNodes: {},
    output: null,
    error: null,
    processSeconds: null,
  };
  return stampAt(stampAt(pending, 'pending', nowMs), 'uploading', nowMs);
}

/** A staged chunk waiting for the coordinator. */
export function pendingChunk(job: string, index: number, inputBytes: number, fields: Pick<ChunkRecord, 'originalBytes' | 'checksum' | 'image'>): ChunkRecord {
  return {
    ...(fields.image === undefined ? {} : { image: fields.image }),
    job,
    index,
    state: 'pending',
    attempt: 0,
    node: null,
    failures: 0,
    lastError: null,
    input: blobKeys.input(job, index),
    inputBytes,
    originalBytes: fields.originalBytes,
    checksum: fields.checksum,
    output: null,
    outputBytes: null,
    assignedAt: null,
    doneAt: null,
  };
}

/** The upload is all in: the job moves on to processing with what the gateway learned, or undefined if it ended meanwhile. */
export function uploadFinishedJob(job: JobRecord, fields: Partial<JobRecord>, chunks: number, nowMs: number): JobRecord | undefined {
  if (job.state !== 'uploading') return undefined;
  const after = { ...stampAt(job, 'processing', nowMs), ...fields, chunks };
  assertJobMove(job, after);
  return after;
}

/** What a worker learned by coding a chunk. */
export interface ChunkCoded {
  output: string;
  outputBytes: number;
  checksum: number;
  originalBytes: number;
  /** Line and word counts of a compressed chunk's original; null when not counted (a decompress job). */
  text?: TextCounts | null;
  /** An image chunk's facts, its output bytes and kept/error now known. */
  image?: ChunkRecord['image'];
}

/**
 * Where one run of a chunk's attempt writes its output. A restarted node runs its still-assigned attempt
 * again, and a run whose completion loses deletes its own output, so the key is per run, never per
 * attempt: otherwise the loser deletes the winner's committed output (found by the chaos run).
 */
export function chunkOutputKey(chunk: Pick<ChunkRecord, 'job' | 'index' | 'attempt'>, run: string): string {
  return blobKeys.output(chunk.job, chunk.index, chunk.attempt, run);
}

/** Whether a worker should code an assigned chunk of this job at all. */
export function chunkWorthRunning(job: JobRecord | undefined): job is JobRecord {
  return job !== undefined && !jobEnded(job);
}

/** The completion a worker proposes, guarded on the very assignment it served. */
export function completedChunk(chunk: ChunkRecord, coded: ChunkCoded, nowMs: number): ChunkRecord {
  assertJobs(chunk.state === 'assigned', `chunk ${chunk.index} of job ${chunk.job}: completing a ${chunk.state} chunk`);
  const after: ChunkRecord = { ...chunk, state: 'done', ...coded, doneAt: new Date(nowMs).toISOString() };
  assertChunkMove(chunk, after);
  return after;
}

/** A worker's failure: back to pending, one attempt used. */
export function failedChunk(chunk: ChunkRecord, reason: string): ChunkRecord {
  const after: ChunkRecord = { ...chunk, state: 'pending', node: null, failures: chunk.failures + 1, lastError: `chunk ${chunk.index}: ${reason}` };
  assertChunkMove(chunk, after);
  return after;
}

/** A completion that lost its compare-and-set: the output it staged is nobody's, so it is deleted. */
export function outputToDeleteAfterCompletion(won: boolean, outputKey: string): string | undefined {
  return won ? undefined : outputKey;
}

/**
 * A completion whose outcome is unknown (its proposal failed: a timeout, a leader change) may still be
 * applied later, so its output may be the winner's and must stay; unless the chunk record has moved past
 * the one the completion is guarded on. Records never return to an earlier value (attempts only grow; done
 * and dead are final), so then the completion can never apply and the output is nobody's. Without this a
 * dropped completion of a job that then ended left its output behind (found by the jobs simulation).
 */
export function outputToDeleteAfterUnknownCompletion(guarded: ChunkRecord, chunkNow: ChunkRecord | undefined, outputKey: string): string | undefined {
  if (chunkNow === undefined) return outputKey;
  if (isDeepStrictEqual(chunkNow, guarded) || chunkNow.output === outputKey) return undefined;
  return outputKey;
}

/** The job entering 'merging', or undefined when it is not ready (a job already merging is resumed as it is). */
export function mergingJob(job: JobRecord, nowMs: number): JobRecord | undefined {
  if (job.state === 'merging') return job;
  if (job.state !== 'processing') return undefined;
  return stampAt(job, 'merging', nowMs);
}

/** Throws unless every chunk of the job is done: a merge must never start early. */
export function assertMergeable(job: JobRecord, chunks: readonly ChunkRecord[]): void {
  if (chunks.length !== job.chunks || chunks.some((chunk) => chunk.state !== 'done')) throw new Error(`job ${job.id}: merge started before every chunk was done`);
}

/** A compress job's line and word totals, its chunks' counts joined in order (a word across a boundary once). */
function textTotals(job: JobRecord, chunks: readonly ChunkRecord[]): { lines: number | null; words: number | null } {
  if (job.mode !== 'compress' || chunks.some((chunk) => chunk.text == null)) return { lines: null, words: null };
  return joinTextCounts(chunks.map((chunk) => chunk.text!));
}

/** An images job's per-image sizes in input order, folded from its chunks when it completes. */
export function imageEntries(chunks: readonly ChunkRecord[]): ImageEntryView[] {
  return chunks.map((chunk) => ({
    name: chunk.image?.name ?? `${chunk.index}`,
    inputBytes: chunk.inputBytes,
    outputBytes: chunk.image?.outputBytes ?? null,
    kept: chunk.image?.kept ?? false,
    error: chunk.image?.error ?? null,
  }));
}

function chunkNodes(chunks: readonly ChunkRecord[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const chunk of chunks) if (chunk.node !== null) counts[chunk.node] = (counts[chunk.node] ?? 0) + 1;
  return counts;
}

function processSeconds(chunks: readonly ChunkRecord[]): number | null {
  const assigned = chunks.map((chunk) => Date.parse(chunk.assignedAt ?? '')).filter(Number.isFinite);
  const done = chunks.map((chunk) => Date.parse(chunk.doneAt ?? '')).filter(Number.isFinite);
  if (assigned.length === 0 || done.length === 0) return null;
  return Math.max(0, (Math.max(...done) - Math.min(...assigned)) / 1000);
}

/** The merged job, or undefined if it is no longer merging (another coordinator ended it). */
export function completedJob(job: JobRecord, chunks: readonly ChunkRecord[], result: { size: number; output: string }, nowMs: number): JobRecord | undefined {
  if (job.state !== 'merging') return undefined;
  const after: JobRecord = {
    ...stampAt(job, 'completed', nowMs),
    compressedSize: job.mode === 'decompress' ? job.compressedSize : result.size,
    output: result.output,
    chunkNodes: chunkNodes(chunks),
    ...textTotals(job, chunks),
    processSeconds: processSeconds(chunks),
    ...(job.mode === 'images' ? { images: imageEntries(chunks) } : {}),
  };
  assertJobMove(job, after);
  return after;
}

/** A merge that failed for good (a full disk, a checksum): the job fails, or undefined if it is no longer merging. */
export function mergeFailedJob(job: JobRecord, reason: string, nowMs: number): JobRecord | undefined {
  return job.state === 'merging' ? failedJob(job, reason, nowMs) : undefined;
}

/**
 * Whether a merge removes the job's staged blobs once it recorded its outcome. Also when it lost: another
 * coordinator finished the job first and may have cleaned up already, and what this merge staged (header,
 * tail) would otherwise outlive the job (found by the chaos run).
 */
export function mergeCleansUp(_won: boolean): boolean {
  return true;
}

/**
 * Whether a merge that failed on an error worth retrying removes the job's staged blobs: only when the job
 * ended meanwhile. Another coordinator finished it (and may have retired it), so the header and tail this
 * merge wrote after that cleanup would outlive the job (found by the jobs simulation).
 */
export function mergeFailureCleansUp(jobNow: JobRecord | undefined): boolean {
  return jobNow === undefined || jobEnded(jobNow);
}
