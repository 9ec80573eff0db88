/**
 * What must hold of every job and chunk record the core proposes and the simulation observes. A broken
 * invariant throws JobInvariantError at once (the process stops loudly rather than limping on); each
 * check is separate so the message says which rule broke.
 */
import type { JobState } from '../types.ts';
import type { ChunkRecord, JobRecord } from '../records.ts';
import { CodedError } from '../../errors.ts';

export class JobInvariantError extends CodedError<'JOB_INVARIANT'> {
  constructor(message: string) {
    super('JOB_INVARIANT', message);
  }
}

export function assertJobs(condition: boolean, message: string): asserts condition {
  if (!condition) throw new JobInvariantError(message);
}

/** The states a job may move to from each state (staying put is always allowed). */
const jobMoves: Record<JobState, readonly JobState[]> = {
  pending: ['uploading', 'failed'],
  uploading: ['processing', 'failed'],
  processing: ['merging', 'failed'],
  merging: ['completed', 'failed'],
  completed: [],
  failed: [],
};

export function assertJobMove(before: JobRecord, after: JobRecord): void {
  assertJobs(before.id === after.id, `job ${before.id}: a change may not rename it to ${after.id}`);
  assertJobs(before.state === after.state || jobMoves[before.state].includes(after.state), `job ${before.id}: ${before.state} may not become ${after.state}`);
}

export function assertChunkRecord(chunk: ChunkRecord): void {
  const label = `chunk ${chunk.index} of job ${chunk.job}`;
  assertJobs(Number.isSafeInteger(chunk.attempt) && chunk.attempt >= 0, `${label}: attempt ${chunk.attempt} is not a count`);
  assertJobs(chunk.state !== 'assigned' || chunk.node !== null, `${label}: assigned to no node`);
  assertJobs(chunk.state !== 'pending' || chunk.node === null, `${label}: pending yet held by ${chunk.node}`);
  assertJobs(chunk.state !== 'done' || chunk.output !== null, `${label}: done without an output`);
  assertJobs(chunk.state !== 'done' || chunk.checksum !== null, `${label}: done without a checksum`);
}

/** A chunk change keeps its identity, never lowers its attempt, and never undoes a completion. */
export function assertChunkMove(before: ChunkRecord, after: ChunkRecord): void {
  const label = `chunk ${before.index} of job ${before.job}`;
  assertJobs(before.job === after.job && before.index === after.index, `${label}: a change may not move it`);
  assertJobs(after.attempt >= before.attempt, `${label}: attempt went back from ${before.attempt} to ${after.attempt}`);
  assertJobs(before.state !== 'done' || after.state === 'done', `${label}: a done chunk became ${after.state}`);
  assertJobs(before.state !== 'dead' || after.state === 'dead', `${label}: a dead chunk became ${after.state}`);
  assertChunkRecord(after);
}
