/**
 * The guarded commands the jobs room proposes, built without touching the log. Every change is a
 * compare-and-set: the command carries the record as the proposer read it and applies only if that is
 * still the record when the log reaches it, so two coordinators or a duplicate completion cannot both win.
 */
import type { StateOp, StateValue } from '../../storage/index.ts';
import type { ChunkRecord, JobRecord } from '../records.ts';
import { activeKey, chunkKey, jobKey } from './keys.ts';

export interface Command {
  guards: Array<{ key: string; equals: StateValue }>;
  ops: StateOp[];
}

export const asValue = (record: JobRecord | ChunkRecord) => record as unknown as StateValue;

/** A new job: its record and its place on the active list, if the id is still free. */
export function jobCreateCommand(job: JobRecord): Command {
  return {
    guards: [{ key: jobKey(job.id), equals: null }],
    ops: [
      { op: 'put', key: jobKey(job.id), value: asValue(job) },
      { op: 'put', key: activeKey(job.id), value: true },
    ],
  };
}

/** Replaces a job record if it is still `before`, with `extra` ops in the same entry. */
export function jobCasCommand(before: JobRecord, after: JobRecord, extra: StateOp[] = []): Command {
  return { guards: [{ key: jobKey(before.id), equals: asValue(before) }], ops: [{ op: 'put', key: jobKey(after.id), value: asValue(after) }, ...extra] };
}

/** Replaces a chunk record if it is still `before` (absent when `before` is null). */
export function chunkCasCommand(before: ChunkRecord | null, after: ChunkRecord): Command {
  const key = chunkKey(after.job, after.index);
  return { guards: [{ key, equals: before === null ? null : asValue(before) }], ops: [{ op: 'put', key, value: asValue(after) }] };
}

/**
 * New chunk records of an upload, all or none: each must still be absent, and the job still the record
 * its gateway created (uploading). A proposal from a gateway that died can still commit after the
 * coordinator failed its orphaned job; without the job guard it left chunk records of an ended job behind
 * forever (found by the jobs simulation).
 */
export function chunksCreateCommand(job: JobRecord, records: readonly ChunkRecord[]): Command {
  const keys = records.map((record) => chunkKey(record.job, record.index));
  return {
    guards: [{ key: jobKey(job.id), equals: asValue(job) }, ...keys.map((key) => ({ key, equals: null }))],
    ops: records.map((record, i) => ({ op: 'put', key: keys[i], value: asValue(record) })),
  };
}

/** Takes an ended job off the active list (once its staged blobs are gone), with any chunk records it left. */
export function retireCommand(jobId: string, chunks: readonly Pick<ChunkRecord, 'job' | 'index'>[] = []): Command {
  return { guards: [{ key: activeKey(jobId), equals: true }], ops: [{ op: 'del', key: activeKey(jobId) }, ...deleteChunkOps(chunks)] };
}

/** Deletes chunk records: an ended job folds them into its own record. */
export function deleteChunkOps(chunks: readonly Pick<ChunkRecord, 'job' | 'index'>[]): StateOp[] {
  return chunks.map((chunk) => ({ op: 'del', key: chunkKey(chunk.job, chunk.index) }) as const);
}
