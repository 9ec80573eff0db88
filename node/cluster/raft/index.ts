/**
 * The Raft consensus core (pure: no I/O, no timers, no ambient randomness). The only file other
 * rooms import. See core.ts for the inputs and types.ts for the Ready contract.
 */
export { RaftCore } from './core.ts';
export { handleReady } from './ready.ts';
export { ReadyDriver } from './driver.ts';
export type { ReadyEffects, ReadyEffectsAsync } from './ready.ts';
export { RaftInvariantError, RaftUsageError } from './errors.ts';
export type {
  AppendRequest,
  AppendResponse,
  Entry,
  EntryType,
  HardState,
  Heartbeat,
  HeartbeatResponse,
  InstallSnapshot,
  Message,
  MessageType,
  NodeId,
  PersistedState,
  PreVoteRequest,
  PreVoteResponse,
  ProgressState,
  ProgressStatus,
  ProposalError,
  ProposalErrorCode,
  ProposeResult,
  RaftConfig,
  RaftStatus,
  Ready,
  Role,
  Snapshot,
  SoftState,
  VoteRequest,
  VoteResponse,
} from './types.ts';

/** The state of a node that never ran: pass it to the constructor on first start. */
export const emptyPersistedState = (): import('./types.ts').PersistedState => ({
  hardState: { term: 0, vote: null, commit: 0 },
  snapshot: null,
  entries: [],
});
