/** The errors the replicated state raises: a proposal that failed, and a node that cannot persist. */
import { CodedError } from '../errors.ts';

export type ProposalErrorCode = 'TIMEOUT' | 'NO_LEADER' | 'REJECTED' | 'STOPPED' | 'STORAGE_FAILED';

export class ProposalError extends CodedError<ProposalErrorCode> {}

/** INSUFFICIENT_STORAGE: the disk is full (ENOSPC). STORAGE_FAILED: any other write error. */
export type StorageFailureCode = 'INSUFFICIENT_STORAGE' | 'STORAGE_FAILED';

/**
 * This node could not persist Raft state (or apply committed entries). Raised to the runtime instead
 * of exiting: until a retry succeeds the node neither acks appends nor votes (nothing it would send
 * leaves before its state is on disk), but it keeps serving reads of what it applied, and stays a
 * member, so freeing space brings it back without a restart.
 */
export class StorageFailure extends CodedError<StorageFailureCode> {}

export function isNoSpaceError(error: unknown): boolean {
  const text = `${(error as NodeJS.ErrnoException)?.code ?? ''} ${(error as Error)?.message ?? ''} ${((error as Error)?.cause as Error | undefined)?.message ?? ''}`;
  return /ENOSPC|No space left on device/i.test(text);
}
