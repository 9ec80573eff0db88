/**
 * The shapes the Raft core shares with its wrappers (storage, transport) and with the simulation.
 * Every value here is plain data: strings, numbers, booleans, null, Uint8Array, arrays and plain
 * objects, so a transport can encode a Message and a store can encode an Entry without knowing
 * anything about the core.
 */

/** A node is named by the string its configuration gives it (for example `node-a`). */
export type NodeId = string;

export type Role = 'follower' | 'pre-candidate' | 'candidate' | 'leader';

/** `noop` is the empty entry a new leader appends to commit the entries of earlier terms. */
export type EntryType = 'normal' | 'noop';

export interface Entry {
  index: number;
  term: number;
  type: EntryType;
  data: Uint8Array;
}

/** The state that must be durable before any message that depends on it leaves the node. */
export interface HardState {
  term: number;
  vote: NodeId | null;
  commit: number;
}

/** The application's state as of `index` (inclusive); `term` is the term of the entry at `index`. */
export interface Snapshot {
  index: number;
  term: number;
  data: Uint8Array;
}

/** Volatile state a wrapper may show (for `cluster status`), reported in Ready only when it changes. */
export interface SoftState {
  leader: NodeId | null;
  role: Role;
}

/** What a restarting node reads back from stable storage to rebuild its core. */
export interface PersistedState {
  hardState: HardState;
  /** The last snapshot persisted (from `compact` or from a Ready), or null if none was ever taken. */
  snapshot: Snapshot | null;
  /** The stored entries, contiguous, starting right after the snapshot's index (or at 1). */
  entries: readonly Entry[];
}

/**
 * The work the core hands out. Handle its fields in this order, then call `advance(ready)`:
 *  1. Persist, atomically if the store can (one LevelDB batch):
 *     - `snapshot`, if set: store it and discard every stored entry (the log restarts after it);
 *     - `truncateIndex`, if set: discard every stored entry with an index >= truncateIndex;
 *     - `entries`: append them;
 *     - `hardState`, if set: store it.
 *  2. Send `messages`. Never before step 1 finished: a vote or an acknowledgement that leaves
 *     before the state it promises is durable can elect two leaders or lose a committed entry.
 *  3. Apply: if `snapshot` is set, replace the application's state with `snapshot.data`; then apply
 *     `committedEntries` in order (skip `noop` entries; they carry no data).
 *  4. `advance(ready)`.
 * `ReadyDriver` in driver.ts does exactly this and is the way production and the simulation drive the
 * core (`handleReady` in ready.ts is the same for a synchronous store).
 */
export interface Ready {
  softState: SoftState | null;
  hardState: HardState | null;
  snapshot: Snapshot | null;
  truncateIndex: number | null;
  entries: readonly Entry[];
  messages: readonly Message[];
  committedEntries: readonly Entry[];
}

interface MessageBase {
  from: NodeId;
  to: NodeId;
  term: number;
}

/** A candidate asks for a vote; `term` is the candidate's new term. */
export interface VoteRequest extends MessageBase {
  type: 'vote-request';
  lastLogIndex: number;
  lastLogTerm: number;
}

/**
 * Would you vote for me? Sent before a candidate raises its term, so a node that was cut off cannot
 * disrupt a healthy leader. `term` is the term the sender would campaign in (its term + 1).
 */
export interface PreVoteRequest extends MessageBase {
  type: 'pre-vote-request';
  lastLogIndex: number;
  lastLogTerm: number;
}

export interface VoteResponse extends MessageBase {
  type: 'vote-response';
  granted: boolean;
}

export interface PreVoteResponse extends MessageBase {
  type: 'pre-vote-response';
  granted: boolean;
}

export interface AppendRequest extends MessageBase {
  type: 'append';
  prevLogIndex: number;
  prevLogTerm: number;
  entries: Entry[];
  commit: number;
}

/**
 * On success `index` is the follower's last index known to match the leader's log. On rejection
 * `index` is the rejected `prevLogIndex`, and (`hintIndex`, `hintTerm`) is the follower's largest
 * entry at or below it whose term is at most the leader's `prevLogTerm`, so the leader can skip a
 * whole conflicting term in one round trip instead of one entry per round trip.
 */
export interface AppendResponse extends MessageBase {
  type: 'append-response';
  success: boolean;
  index: number;
  hintIndex: number;
  hintTerm: number;
}

/** `commit` is min(leader commit, what the leader knows the follower has), so it is always safe. */
export interface Heartbeat extends MessageBase {
  type: 'heartbeat';
  commit: number;
}

export interface HeartbeatResponse extends MessageBase {
  type: 'heartbeat-response';
}

export interface InstallSnapshot extends MessageBase {
  type: 'install-snapshot';
  snapshot: Snapshot;
}

export type Message =
  | VoteRequest
  | PreVoteRequest
  | VoteResponse
  | PreVoteResponse
  | AppendRequest
  | AppendResponse
  | Heartbeat
  | HeartbeatResponse
  | InstallSnapshot;

export type MessageType = Message['type'];

export interface RaftConfig {
  id: NodeId;
  /** The voting members; static for the life of the cluster. May or may not include `id`. */
  voters: readonly NodeId[];
  /** Non-voting members that receive the log; change at runtime with `setLearners`. */
  learners?: readonly NodeId[];
  /** Base election timeout in ticks; each node waits a random count in [base, 2 * base). */
  electionTicks: number;
  /** A leader sends heartbeats every this many ticks; must be less than electionTicks. */
  heartbeatTicks: number;
  /** Uniform in [0, 1). The only source of randomness in the core, so a seed replays exactly. */
  random: () => number;
  /** Default true. */
  preVote?: boolean;
  /** Default true. A leader that hears from no quorum for electionTicks steps down. */
  checkQuorum?: boolean;
  /** Default 64 entries per AppendEntries message (at least one entry is always sent). */
  appendEntriesMax?: number;
  /** Default 1 MiB of entry data per AppendEntries message (at least one entry is always sent). */
  appendBytesMax?: number;
  /** Default 16 AppendEntries messages in flight to one follower. */
  inflightAppendsMax?: number;
  /** Default 64 MiB of proposed but not yet committed data on a leader; beyond it proposals fail. */
  uncommittedBytesMax?: number;
  /** Default appendBytesMax: the largest `data` one proposal may carry. */
  proposalBytesMax?: number;
  /** Default 8 MiB of committed entry data per Ready (at least one entry is always handed out). */
  applyBytesMax?: number;
  /**
   * Default 4096 messages waiting for the next Ready; beyond it new messages are dropped, which Raft
   * tolerates like any network loss (a wrapper that stops calling ready() must not exhaust memory).
   */
  outboxMessagesMax?: number;
  /** Default 2 * electionTicks: a snapshot not acknowledged within this many ticks is sent again. */
  snapshotTicksMax?: number;
  /**
   * Default electionTicks: an idle leader's heartbeat to a learner goes out every this many ticks. A
   * learner never campaigns, so it needs no heartbeat to hold off an election; entries and commit
   * advances reach it at once as they do voters, and a heartbeat only re-offers what it may have missed.
   */
  learnerHeartbeatTicks?: number;
  /** The index the application has already applied (default: the snapshot's index, or 0). */
  applied?: number;
}

export type ProposalErrorCode = 'not-leader' | 'too-large' | 'busy';

/** Why a proposal was not appended; `leader` names the node to forward it to, if one is known. */
export interface ProposalError {
  code: ProposalErrorCode;
  leader: NodeId | null;
  message: string;
}

export type ProposeResult =
  | { ok: true; index: number; term: number }
  | { ok: false; error: ProposalError };

export type ProgressState = 'probe' | 'replicate' | 'snapshot';

export interface ProgressStatus {
  match: number;
  next: number;
  state: ProgressState;
  recentActive: boolean;
  learner: boolean;
}

export interface RaftStatus {
  id: NodeId;
  role: Role;
  term: number;
  vote: NodeId | null;
  leader: NodeId | null;
  commit: number;
  applied: number;
  lastIndex: number;
  lastTerm: number;
  snapshotIndex: number;
  /** Messages dropped because the outbox was full (see outboxMessagesMax); should stay 0. */
  outboxDropped: number;
  /**
   * Readys whose entries a newer leader overwrote (or a snapshot replaced) while they were being
   * persisted; the core writes those indexes again. Nonzero only when inputs arrive during a persist.
   */
  overwrittenWhilePersisting: number;
  voters: NodeId[];
  learners: NodeId[];
  /** Replication progress of every other member, on the leader only. */
  progress: Record<NodeId, ProgressStatus> | null;
}
