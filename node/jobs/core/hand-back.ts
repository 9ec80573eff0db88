/**
 * A worker that stops gracefully hands its work back, and a node that does not code takes none. Pure:
 * the worker's shell (service.ts) reads the records and proposes what this returns; the coordinator asks
 * `codes` before giving a member chunks.
 */
import type { ChunkRecord } from '../records.ts';
import type { MemberFacts } from './coordinator.ts';
import { assertChunkMove, assertJobs } from './invariants.ts';

/**
 * The chunk back to pending, held by nobody, for the coordinator to give to another worker now rather
 * than when its lease lapses. A hand-back is no failure: it uses no attempt and counts no lapse.
 */
export function handedBackChunk(chunk: ChunkRecord, node: string): ChunkRecord {
  assertJobs(chunk.state === 'assigned', `chunk ${chunk.index} of job ${chunk.job}: handing back a ${chunk.state} chunk`);
  assertJobs(chunk.node === node, `chunk ${chunk.index} of job ${chunk.job}: ${node} hands back a chunk held by ${chunk.node}`);
  const after: ChunkRecord = { ...chunk, state: 'pending', node: null, lastError: `chunk ${chunk.index}: handed back by ${node} as it stopped` };
  assertChunkMove(chunk, after);
  return after;
}

/** Of these chunk records, the ones `node` holds, each with the record it becomes when handed back. */
export function chunksToHandBack(chunks: readonly ChunkRecord[], node: string): Array<{ before: ChunkRecord; after: ChunkRecord }> {
  return chunks.filter((chunk) => chunk.state === 'assigned' && chunk.node === node).map((chunk) => ({ before: chunk, after: handedBackChunk(chunk, node) }));
}

/**
 * Whether the coordinator may give this member chunks: a member whose heartbeat advertises no worker
 * threads (`jobs.code: false`, or one stopping) codes nothing. A heartbeat that does not say is trusted
 * to code (nodes before this field).
 */
export function codes(member: Pick<MemberFacts, 'load'>): boolean {
  return member.load?.workers !== 0;
}
