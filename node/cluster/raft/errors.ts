import { CodedError } from '../../errors.ts';

/**
 * A broken Raft invariant means this node's state can no longer be trusted: continuing could
 * acknowledge or apply something that contradicts the rest of the cluster. So the core throws
 * loudly instead of limping on, and the wrapper should stop the node.
 */
export class RaftInvariantError extends CodedError<'RAFT_INVARIANT'> {
  constructor(message: string) {
    super('RAFT_INVARIANT', message);
  }
}

/** Throws a RaftInvariantError with `sentence` unless `condition` holds. */
export function invariant(condition: boolean, sentence: string | (() => string)): asserts condition {
  if (!condition) {
    throw new RaftInvariantError(typeof sentence === 'string' ? sentence : sentence());
  }
}

/** A caller passed something the core cannot accept (bad config, bad persisted state). */
export class RaftUsageError extends CodedError<'RAFT_USAGE'> {
  constructor(message: string) {
    super('RAFT_USAGE', message);
  }
}
