/**
 * The jobs core: every decision of the jobs room as pure functions and one pure state machine (the
 * coordinator), with invariants asserted. Its shells (scheduler, worker, merge, upload) do the I/O.
 */
export { Coordinator, lapsesPerAttemptMax, orphanReason, type CoordinatorConfig, type JobSnapshot, type MemberFacts, type RoundPlan, type Step } from './coordinator.ts';
export { asValue, chunkCasCommand, chunksCreateCommand, deleteChunkOps, jobCasCommand, jobCreateCommand, retireCommand, type Command } from './commands.ts';
export { assertChunkMove, assertChunkRecord, assertJobMove, assertJobs, JobInvariantError } from './invariants.ts';
export { activeKey, blobKeys, chunkKey, chunkPrefix, jobKey } from './keys.ts';
export * from './transitions.ts';
export { chunksToHandBack, codes, handedBackChunk } from './hand-back.ts';
export { stagedJobId, StagingSweeper, type StagedJob } from './sweep.ts';
