/**
 * The Raft consensus core as a pure state machine, in the manner of etcd's raft library.
 *
 * Inputs: `step(message)`, `tick()`, `propose(data)`, `compact(index, data)`, `setLearners(ids)`.
 * Output: `ready()` hands out what to persist, send and apply; `advance(ready)` says it was done.
 * The core never touches a socket, a timer, a clock or a disk, and draws randomness only from the
 * injected `config.random`, so one seed replays one history exactly.
 *
 * References are to the Raft paper (Ongaro and Ousterhout, "In Search of an Understandable
 * Consensus Algorithm", extended version) and to Ongaro's thesis for pre-vote and check-quorum.
 */
import { invariant, RaftUsageError } from './errors.ts';
import { noopEntry, RaftLog } from './log.ts';
import { Progress } from './progress.ts';
import type {
  AppendRequest,
  AppendResponse,
  Entry,
  HardState,
  Heartbeat,
  InstallSnapshot,
  Message,
  NodeId,
  PersistedState,
  PreVoteRequest,
  ProgressStatus,
  ProposeResult,
  RaftConfig,
  RaftStatus,
  Ready,
  Role,
  Snapshot,
  SoftState,
  VoteRequest,
} from './types.ts';

interface Limits {
  electionTicks: number;
  heartbeatTicks: number;
  learnerHeartbeatTicks: number;
  preVote: boolean;
  checkQuorum: boolean;
  appendEntriesMax: number;
  appendBytesMax: number;
  inflightAppendsMax: number;
  uncommittedBytesMax: number;
  proposalBytesMax: number;
  applyBytesMax: number;
  outboxMessagesMax: number;
  snapshotTicksMax: number;
}

/** Counted per entry on top of its data, so a flood of empty proposals is bounded too. */
const entryOverheadBytes = 64;

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RaftUsageError(`raft config: ${name} must be a positive integer, got ${value}`);
  return value;
}

function resolveLimits(config: RaftConfig): Limits {
  const electionTicks = positiveInteger('electionTicks', config.electionTicks);
  const heartbeatTicks = positiveInteger('heartbeatTicks', config.heartbeatTicks);
  if (heartbeatTicks >= electionTicks) throw new RaftUsageError(`raft config: heartbeatTicks (${heartbeatTicks}) must be below electionTicks (${electionTicks})`);
  const appendBytesMax = positiveInteger('appendBytesMax', config.appendBytesMax ?? 1 << 20);
  return {
    electionTicks,
    heartbeatTicks,
    learnerHeartbeatTicks: positiveInteger('learnerHeartbeatTicks', config.learnerHeartbeatTicks ?? electionTicks),
    preVote: config.preVote ?? true,
    checkQuorum: config.checkQuorum ?? true,
    appendEntriesMax: positiveInteger('appendEntriesMax', config.appendEntriesMax ?? 64),
    appendBytesMax,
    inflightAppendsMax: positiveInteger('inflightAppendsMax', config.inflightAppendsMax ?? 16),
    uncommittedBytesMax: positiveInteger('uncommittedBytesMax', config.uncommittedBytesMax ?? 64 << 20),
    proposalBytesMax: positiveInteger('proposalBytesMax', config.proposalBytesMax ?? appendBytesMax),
    applyBytesMax: positiveInteger('applyBytesMax', config.applyBytesMax ?? 8 << 20),
    outboxMessagesMax: positiveInteger('outboxMessagesMax', config.outboxMessagesMax ?? 4096),
    snapshotTicksMax: positiveInteger('snapshotTicksMax', config.snapshotTicksMax ?? 2 * electionTicks),
  };
}

function isFromLeader(message: Message): message is AppendRequest | Heartbeat | InstallSnapshot {
  return message.type === 'append' || message.type === 'heartbeat' || message.type === 'install-snapshot';
}

export class RaftCore {
  readonly id: NodeId;
  readonly #limits: Limits;
  readonly #random: () => number;
  readonly #voters: ReadonlySet<NodeId>;
  #learners: Set<NodeId>;

  #term: number;
  #vote: NodeId | null;
  #role: Role = 'follower';
  #leader: NodeId | null = null;
  readonly #log: RaftLog;

  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #learnerHeartbeatElapsed = 0;
  #electionTimeout = 0;
  /** Votes received in the current (pre-)campaign, voters only. */
  readonly #votes = new Map<NodeId, boolean>();
  /** Leader only: every other voter and learner. */
  readonly #progress = new Map<NodeId, Progress>();
  #uncommittedBytes = 0;

  #messages: Message[] = [];
  #outboxDropped = 0;
  #softStateReported: SoftState;
  #hardStateReported: HardState;
  /** The highest entry index the storage holds, to tell it when new entries overwrite old ones. */
  #storedLastIndex: number;
  /** The lowest index overwritten since the last ready(); such entries must be written again. */
  #truncatedSinceReady = Number.POSITIVE_INFINITY;
  /** Readys whose entries were overwritten (or replaced by a snapshot) while being persisted. */
  #overwrittenWhilePersisting = 0;
  #readyOutstanding: Ready | null = null;

  constructor(config: RaftConfig, persisted: PersistedState) {
    this.id = config.id;
    this.#limits = resolveLimits(config);
    this.#random = config.random;
    if (config.voters.length === 0) throw new RaftUsageError('raft config: voters must name at least one node');
    this.#voters = new Set(config.voters);
    if (this.#voters.size !== config.voters.length) throw new RaftUsageError(`raft config: voters has duplicates: ${config.voters.join(', ')}`);
    this.#learners = new Set();
    this.#assignLearners(config.learners ?? []);

    const { hardState, snapshot, entries } = persisted;
    this.#term = hardState.term;
    this.#vote = hardState.vote;
    this.#log = RaftLog.restore(snapshot, entries, hardState.commit, config.applied);
    this.#storedLastIndex = this.#log.lastIndex();
    this.#hardStateReported = { term: this.#term, vote: this.#vote, commit: this.#log.committed };
    this.#softStateReported = { leader: null, role: 'follower' };
    this.#resetElectionTimeout();
  }

  // ---------------------------------------------------------------------------------------------
  // Read-only accessors.

  get role(): Role {
    return this.#role;
  }

  get term(): number {
    return this.#term;
  }

  get leader(): NodeId | null {
    return this.#leader;
  }

  get commitIndex(): number {
    return this.#log.committed;
  }

  get appliedIndex(): number {
    return this.#log.applied;
  }

  get lastIndex(): number {
    return this.#log.lastIndex();
  }

  get snapshotIndex(): number {
    return this.#log.snapshotIndex;
  }

  get isVoter(): boolean {
    return this.#voters.has(this.id);
  }

  /** The entry at `index` if it is in the in-memory log (not compacted); for diagnostics and tests. */
  entryAt(index: number): Entry | undefined {
    return this.#log.entry(index);
  }

  status(): RaftStatus {
    let progress: Record<NodeId, ProgressStatus> | null = null;
    if (this.#role === 'leader') {
      progress = {};
      for (const [id, pr] of this.#progress) progress[id] = pr.status();
    }
    return {
      id: this.id,
      role: this.#role,
      term: this.#term,
      vote: this.#vote,
      leader: this.#leader,
      commit: this.#log.committed,
      applied: this.#log.applied,
      lastIndex: this.#log.lastIndex(),
      lastTerm: this.#log.lastTerm(),
      snapshotIndex: this.#log.snapshotIndex,
      outboxDropped: this.#outboxDropped,
      overwrittenWhilePersisting: this.#overwrittenWhilePersisting,
      voters: [...this.#voters],
      learners: [...this.#learners],
      progress,
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Inputs.

  /** One unit of logical time. The wrapper calls it on a timer (for example every 100 ms). */
  tick(): void {
    if (this.#role === 'leader') {
      this.#tickLeader();
    } else {
      this.#electionElapsed += 1;
      if (this.#canCampaign() && this.#electionElapsed >= this.#electionTimeout) {
        this.#electionElapsed = 0;
        this.#campaign(this.#limits.preVote);
      }
    }
  }

  /**
   * Appends `data` to the log if this node leads; otherwise returns an error value that names the
   * leader (if known) so the wrapper can forward the proposal. Success means appended, not committed.
   */
  propose(data: Uint8Array): ProposeResult {
    if (this.#role !== 'leader') {
      const known = this.#leader === null ? 'no leader is known yet' : `the leader is ${this.#leader}`;
      return { ok: false, error: { code: 'not-leader', leader: this.#leader, message: `node ${this.id} is not the leader; ${known}` } };
    }
    if (data.byteLength > this.#limits.proposalBytesMax) {
      return { ok: false, error: { code: 'too-large', leader: this.id, message: `proposal of ${data.byteLength} bytes exceeds proposalBytesMax ${this.#limits.proposalBytesMax}` } };
    }
    const cost = data.byteLength + entryOverheadBytes;
    if (this.#uncommittedBytes + cost > this.#limits.uncommittedBytesMax) {
      return { ok: false, error: { code: 'busy', leader: this.id, message: `leader ${this.id} has ${this.#uncommittedBytes} uncommitted bytes; retry after some commit` } };
    }
    const entry: Entry = { index: this.#log.lastIndex() + 1, term: this.#term, type: 'normal', data };
    this.#appendOwn(entry);
    return { ok: true, index: entry.index, term: entry.term };
  }

  step(message: Message): void {
    invariant(message.to === this.id, () => `node ${this.id} was handed a ${message.type} addressed to ${message.to}`);
    if (message.term > this.#term) {
      if (!this.#acceptHigherTerm(message)) return;
    } else if (message.term < this.#term) {
      this.#answerLowerTerm(message);
      return;
    }
    if (message.type === 'vote-request' || message.type === 'pre-vote-request') {
      this.#handleVoteRequest(message);
      return;
    }
    switch (this.#role) {
      case 'leader':
        this.#stepLeader(message);
        break;
      case 'candidate':
      case 'pre-candidate':
        this.#stepCandidate(message);
        break;
      case 'follower':
        this.#stepFollower(message);
        break;
    }
  }

  /**
   * The application has applied everything up to `index` and serialized that state as `data`.
   * The core drops its log up to `index` and will send `data` to followers that fell behind it.
   * Returns the snapshot (with the term of entry `index`) for the caller to persist; after that it
   * may delete its stored entries up to `index`. Only indices already advanced past
   * (`appliedIndex`) can be compacted. Returns null if `index` is not beyond the current snapshot.
   */
  compact(index: number, data: Uint8Array): Snapshot | null {
    return this.#log.compact(index, data);
  }

  /**
   * Replaces the set of learners (non-voting members that receive the log). Call it on every node,
   * or at least on the leader; voters cannot become learners (the voter set is static).
   */
  setLearners(ids: readonly NodeId[]): void {
    this.#assignLearners(ids);
    if (this.#role !== 'leader') return;
    for (const id of [...this.#progress.keys()]) {
      if (!this.#voters.has(id) && !this.#learners.has(id)) this.#progress.delete(id);
    }
    for (const id of this.#learners) {
      if (id !== this.id && !this.#progress.has(id)) {
        this.#progress.set(id, new Progress(this.#log.lastIndex() + 1, this.#limits.inflightAppendsMax, true));
        this.#sendAppend(id, true);
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Output.

  hasReady(): boolean {
    if (this.#readyOutstanding !== null) return false;
    const log = this.#log;
    return (
      this.#messages.length > 0 ||
      log.pendingSnapshot !== null ||
      log.unstableFrom <= log.lastIndex() ||
      log.committed > log.applied ||
      this.#role !== this.#softStateReported.role ||
      this.#leader !== this.#softStateReported.leader ||
      this.#hardStateChanged()
    );
  }

  /**
   * Hands out the next batch of work (see the Ready type for the order in which to do it). Only one
   * Ready may be outstanding: call `advance` with it before asking for the next one. Inputs may be
   * stepped in between; what they produce goes into the next Ready.
   */
  ready(): Ready {
    invariant(this.#readyOutstanding === null, `node ${this.id}: ready() was called again before advance() of the previous Ready`);
    const log = this.#log;
    const softChanged = this.#role !== this.#softStateReported.role || this.#leader !== this.#softStateReported.leader;
    const entries = log.unstableEntries();
    const first = entries[0];
    const snapshot = log.pendingSnapshot;
    const ready: Ready = {
      softState: softChanged ? { leader: this.#leader, role: this.#role } : null,
      hardState: this.#hardStateChanged() ? { term: this.#term, vote: this.#vote, commit: log.committed } : null,
      snapshot,
      truncateIndex: snapshot === null && first !== undefined && first.index <= this.#storedLastIndex ? first.index : null,
      entries,
      messages: this.#messages,
      committedEntries: log.nextCommittedEntries(this.#limits.applyBytesMax),
    };
    this.#messages = [];
    this.#truncatedSinceReady = Number.POSITIVE_INFINITY;
    this.#readyOutstanding = ready;
    return ready;
  }

  /** Everything in `ready` was persisted, sent and applied. */
  advance(ready: Ready): void {
    invariant(ready === this.#readyOutstanding, `node ${this.id}: advance() was given a Ready that is not the outstanding one`);
    this.#readyOutstanding = null;
    const log = this.#log;
    if (ready.softState !== null) this.#softStateReported = ready.softState;
    if (ready.hardState !== null) this.#hardStateReported = ready.hardState;
    if (ready.snapshot !== null) {
      this.#storedLastIndex = ready.snapshot.index;
      if (log.pendingSnapshot === ready.snapshot) log.pendingSnapshot = null;
      if (log.applied < ready.snapshot.index) log.applied = ready.snapshot.index;
    }
    const lastWritten = ready.entries[ready.entries.length - 1];
    if (lastWritten !== undefined) {
      this.#storedLastIndex = lastWritten.index;
      this.#markStable(lastWritten);
    }
    const lastApplied = ready.committedEntries[ready.committedEntries.length - 1];
    if (lastApplied !== undefined) {
      invariant(lastApplied.index > log.applied, () => `node ${this.id}: applied index would go back from ${log.applied} to ${lastApplied.index}`);
      log.applied = lastApplied.index;
    }
    if (this.#role === 'leader' && this.#maybeCommit()) this.#broadcastAppend();
  }

  // ---------------------------------------------------------------------------------------------
  // Terms (Raft §5.1) with the pre-vote and check-quorum rules of Ongaro's thesis §9.6.

  /** Returns false if the message must be ignored. */
  #acceptHigherTerm(message: Message): boolean {
    if (message.type === 'vote-request' || message.type === 'pre-vote-request') {
      // Check-quorum lease: a node that heard from a live leader within the minimum election timeout
      // ignores campaigns, so a node returning from a partition cannot depose a healthy leader.
      // Pre-vote alone implies the same rule for pre-votes (thesis §9.6), even without check-quorum.
      const leaseRule = this.#limits.checkQuorum || message.type === 'pre-vote-request';
      const inLease = leaseRule && this.#leader !== null && this.#electionElapsed < this.#limits.electionTicks;
      if (inLease) return false;
    }
    if (message.type === 'pre-vote-request') return true; // a pre-vote never changes our term
    if (message.type === 'pre-vote-response' && message.granted) return true; // granted for a future term
    this.#becomeFollower(message.term, isFromLeader(message) ? message.from : null);
    return true;
  }

  #answerLowerTerm(message: Message): void {
    if ((this.#limits.checkQuorum || this.#limits.preVote) && (message.type === 'append' || message.type === 'heartbeat')) {
      // A stale leader (say, healed from a partition) learns our higher term and steps down. Without
      // this it would never hear of the new term, because pre-vote keeps our term from rising.
      this.#send({ type: 'heartbeat-response', from: this.id, to: message.from, term: this.#term });
    } else if (message.type === 'pre-vote-request') {
      this.#send({ type: 'pre-vote-response', from: this.id, to: message.from, term: this.#term, granted: false });
    }
  }

  #becomeFollower(term: number, leader: NodeId | null): void {
    this.#reset(term);
    this.#role = 'follower';
    this.#leader = leader;
  }

  #becomePreCandidate(): void {
    invariant(this.#role !== 'leader', () => `leader ${this.id} tried to become a pre-candidate`);
    // Term and vote stay as they are: a pre-vote changes nothing durable.
    this.#votes.clear();
    this.#progress.clear();
    this.#role = 'pre-candidate';
    this.#leader = null;
    this.#resetElectionTimeout(); // so failed pre-campaigns of several nodes do not stay in step
  }

  #becomeCandidate(): void {
    invariant(this.#role !== 'leader', () => `leader ${this.id} tried to become a candidate`);
    this.#reset(this.#term + 1);
    this.#vote = this.id;
    this.#role = 'candidate';
  }

  #becomeLeader(): void {
    invariant(this.#role === 'candidate', () => `node ${this.id} became leader from role ${this.#role}`);
    this.#reset(this.#term);
    this.#role = 'leader';
    this.#leader = this.id;
    const next = this.#log.lastIndex() + 1;
    for (const id of this.#voters) {
      if (id !== this.id) this.#progress.set(id, new Progress(next, this.#limits.inflightAppendsMax, false));
    }
    for (const id of this.#learners) {
      if (id !== this.id) this.#progress.set(id, new Progress(next, this.#limits.inflightAppendsMax, true));
    }
    // Raft §5.4.2: a leader commits entries of earlier terms only by committing one of its own,
    // so it appends an empty entry at once rather than waiting for a client.
    this.#appendOwn(noopEntry(next, this.#term));
  }

  #reset(term: number): void {
    invariant(term >= this.#term, () => `node ${this.id}: term would go back from ${this.#term} to ${term}`);
    if (term !== this.#term) {
      this.#term = term;
      this.#vote = null;
    }
    this.#leader = null;
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    this.#learnerHeartbeatElapsed = 0;
    this.#resetElectionTimeout();
    this.#votes.clear();
    this.#progress.clear();
    this.#uncommittedBytes = 0;
  }

  #resetElectionTimeout(): void {
    const base = this.#limits.electionTicks;
    this.#electionTimeout = base + Math.floor(this.#random() * base);
  }

  // ---------------------------------------------------------------------------------------------
  // Elections (Raft §5.2, §5.4.1).

  #canCampaign(): boolean {
    return this.#voters.has(this.id);
  }

  #campaign(preVote: boolean): void {
    if (preVote) {
      this.#becomePreCandidate();
    } else {
      this.#becomeCandidate();
    }
    const campaignTerm = preVote ? this.#term + 1 : this.#term;
    if (this.#poll(this.id, true)) return;
    const lastLogIndex = this.#log.lastIndex();
    const lastLogTerm = this.#log.lastTerm();
    for (const id of this.#voters) {
      if (id === this.id) continue;
      const type = preVote ? 'pre-vote-request' : 'vote-request';
      this.#send({ type, from: this.id, to: id, term: campaignTerm, lastLogIndex, lastLogTerm });
    }
  }

  /** Records a vote; returns true if the campaign ended (won or lost). */
  #poll(from: NodeId, granted: boolean): boolean {
    if (!this.#voters.has(from)) return false;
    if (!this.#votes.has(from)) this.#votes.set(from, granted);
    let yes = 0;
    let no = 0;
    for (const vote of this.#votes.values()) {
      if (vote) yes += 1;
      else no += 1;
    }
    const quorum = this.#quorum();
    if (yes >= quorum) {
      if (this.#role === 'pre-candidate') {
        this.#campaign(false);
      } else {
        this.#becomeLeader();
      }
      return true;
    }
    if (no >= quorum) {
      this.#becomeFollower(this.#term, null);
      return true;
    }
    return false;
  }

  #handleVoteRequest(message: VoteRequest | PreVoteRequest): void {
    const preVote = message.type === 'pre-vote-request';
    const responseType = preVote ? 'pre-vote-response' : 'vote-response';
    // Raft §5.2: at most one vote per term; pre-votes for a later term bind nothing.
    const canVote =
      this.#vote === message.from ||
      (this.#vote === null && this.#leader === null) ||
      (preVote && message.term > this.#term);
    const grant =
      canVote &&
      this.#voters.has(this.id) &&
      this.#voters.has(message.from) &&
      this.#log.isUpToDate(message.lastLogIndex, message.lastLogTerm);
    if (!grant) {
      this.#send({ type: responseType, from: this.id, to: message.from, term: this.#term, granted: false });
      return;
    }
    // A granted response carries the requested term, so the campaigner counts it in that term.
    this.#send({ type: responseType, from: this.id, to: message.from, term: message.term, granted: true });
    if (!preVote) {
      invariant(message.term === this.#term, () => `node ${this.id} voting in term ${message.term} while in term ${this.#term}`);
      this.#vote = message.from;
      this.#electionElapsed = 0;
    }
  }

  #stepCandidate(message: Message): void {
    if (isFromLeader(message)) {
      // Someone won this term (Raft §5.2): follow it and handle the message as a follower.
      this.#becomeFollower(this.#term, message.from);
      this.#stepFollower(message);
      return;
    }
    const expected = this.#role === 'pre-candidate' ? 'pre-vote-response' : 'vote-response';
    if (message.type === expected) this.#poll(message.from, message.granted);
  }

  // ---------------------------------------------------------------------------------------------
  // Followers (Raft §5.3, §7).

  #stepFollower(message: Message): void {
    if (!isFromLeader(message)) return;
    this.#electionElapsed = 0;
    this.#leader = message.from;
    switch (message.type) {
      case 'append':
        this.#handleAppend(message);
        break;
      case 'heartbeat':
        this.#handleHeartbeat(message);
        break;
      case 'install-snapshot':
        this.#handleSnapshot(message);
        break;
    }
  }

  #handleAppend(message: AppendRequest): void {
    const log = this.#log;
    const reply = { type: 'append-response' as const, from: this.id, to: message.from, term: this.#term };
    if (message.prevLogIndex < log.committed) {
      // Everything up to our commit already matches any leader's log (Raft §5.4.3).
      this.#send({ ...reply, success: true, index: log.committed, hintIndex: 0, hintTerm: 0 });
      return;
    }
    const lastNew = log.maybeAppend(message.prevLogIndex, message.prevLogTerm, message.entries, (index) => this.#noteTruncation(index));
    if (lastNew !== null) {
      log.commitTo(Math.min(message.commit, lastNew));
      this.#send({ ...reply, success: true, index: lastNew, hintIndex: 0, hintTerm: 0 });
      return;
    }
    const hint = log.findConflictByTerm(Math.min(message.prevLogIndex, log.lastIndex()), message.prevLogTerm);
    this.#send({ ...reply, success: false, index: message.prevLogIndex, hintIndex: hint.index, hintTerm: hint.term });
  }

  #handleHeartbeat(message: Heartbeat): void {
    this.#log.commitTo(message.commit);
    this.#send({ type: 'heartbeat-response', from: this.id, to: message.from, term: this.#term });
  }

  #handleSnapshot(message: InstallSnapshot): void {
    const log = this.#log;
    const snapshot = message.snapshot;
    const reply = { type: 'append-response' as const, from: this.id, to: message.from, term: this.#term, hintIndex: 0, hintTerm: 0 };
    if (snapshot.index <= log.committed) {
      this.#send({ ...reply, success: true, index: log.committed });
      return;
    }
    if (log.matchTerm(snapshot.index, snapshot.term)) {
      // Our log already holds the snapshot's last entry, so it matches the leader up to there.
      log.commitTo(snapshot.index);
      this.#send({ ...reply, success: true, index: snapshot.index });
      return;
    }
    log.restoreSnapshot(snapshot);
    this.#truncatedSinceReady = Math.min(this.#truncatedSinceReady, snapshot.index);
    this.#send({ ...reply, success: true, index: snapshot.index });
  }

  #noteTruncation(index: number): void {
    const log = this.#log;
    this.#truncatedSinceReady = Math.min(this.#truncatedSinceReady, index);
    if (index < log.unstableFrom) log.unstableFrom = index;
  }

  /** Called when the storage confirms entries up to `written`; they are stable unless since overwritten. */
  #markStable(written: Entry): void {
    const log = this.#log;
    if (written.index >= this.#truncatedSinceReady || log.pendingSnapshot !== null) {
      // Overwritten while the write was in flight (by a newer leader's entries, or a snapshot that
      // will replace the storage): the storage holds stale entries, so they stay unstable.
      this.#overwrittenWhilePersisting += 1;
      return;
    }
    if (!log.matchTerm(written.index, written.term)) return;
    if (written.index >= log.unstableFrom) log.unstableFrom = written.index + 1;
  }

  // ---------------------------------------------------------------------------------------------
  // Leaders (Raft §5.3, §5.4.2, thesis §6.2 check-quorum).

  #tickLeader(): void {
    this.#electionElapsed += 1;
    this.#heartbeatElapsed += 1;
    if (this.#electionElapsed >= this.#limits.electionTicks) {
      this.#electionElapsed = 0;
      if (this.#limits.checkQuorum && !this.#quorumActive()) {
        this.#becomeFollower(this.#term, null);
        return;
      }
    }
    for (const [id, pr] of this.#progress) {
      if (pr.state !== 'snapshot') continue;
      pr.snapshotTicks += 1;
      // The snapshot or its acknowledgement was lost: fall back to probing, which resends it.
      if (pr.snapshotTicks >= this.#limits.snapshotTicksMax) {
        pr.becomeProbe();
        this.#sendAppend(id, true);
      }
    }
    this.#learnerHeartbeatElapsed += 1;
    const voters = this.#heartbeatElapsed >= this.#limits.heartbeatTicks;
    const learners = this.#learnerHeartbeatElapsed >= this.#limits.learnerHeartbeatTicks;
    if (voters) this.#heartbeatElapsed = 0;
    if (learners) this.#learnerHeartbeatElapsed = 0;
    if (voters || learners) this.#broadcastHeartbeat(voters, learners);
  }

  /** True if a quorum of voters (counting us) was heard from this round; starts a new round. */
  #quorumActive(): boolean {
    let active = this.#voters.has(this.id) ? 1 : 0;
    for (const [id, pr] of this.#progress) {
      if (pr.recentActive && this.#voters.has(id)) active += 1;
      pr.recentActive = false;
    }
    return active >= this.#quorum();
  }

  #stepLeader(message: Message): void {
    invariant(!isFromLeader(message), () => `leader ${this.id} received a ${message.type} from ${message.from} in its own term ${this.#term}: two leaders in one term`);
    const pr = this.#progress.get(message.from);
    if (pr === undefined) return;
    if (message.type === 'append-response') {
      this.#handleAppendResponse(message, pr);
    } else if (message.type === 'heartbeat-response') {
      pr.heardFrom();
      if (pr.match < this.#log.lastIndex()) this.#sendAppend(message.from, true);
    }
  }

  #handleAppendResponse(message: AppendResponse, pr: Progress): void {
    pr.recentActive = true;
    if (!message.success) {
      const leaderHint = message.hintTerm > 0 ? this.#log.findConflictByTerm(message.hintIndex, message.hintTerm).index : message.hintIndex;
      if (pr.maybeDecrementTo(message.index, leaderHint)) {
        if (pr.state === 'replicate') pr.becomeProbe();
        this.#sendAppend(message.from, true);
      }
      return;
    }
    invariant(message.index <= this.#log.lastIndex(), () => `leader ${this.id}: ${message.from} acknowledged index ${message.index} beyond the leader's last ${this.#log.lastIndex()}`);
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(message.index)) {
      if (wasPaused && !pr.isPaused()) this.#sendAppend(message.from, false);
      return;
    }
    if (pr.state === 'probe') {
      pr.becomeReplicate();
    } else if (pr.state === 'snapshot' && pr.match >= pr.pendingSnapshotIndex) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === 'replicate') {
      pr.acknowledge(message.index);
    }
    if (this.#maybeCommit()) {
      this.#broadcastAppend();
    } else if (wasPaused) {
      // The follower waited on us; tell it at least our commit index.
      this.#sendAppend(message.from, true);
    }
    while (this.#sendAppend(message.from, false)) {
      // Keep streaming while the follower's flow window has room and entries remain.
    }
  }

  /** Raft §5.3 and §5.4.2: commit the highest index stored on a quorum, if it is of our term. */
  #maybeCommit(): boolean {
    const log = this.#log;
    const matches: number[] = [];
    for (const id of this.#voters) {
      if (id === this.id) {
        matches.push(log.unstableFrom - 1); // our own entries count once durable
      } else {
        matches.push(this.#progress.get(id)!.match);
      }
    }
    matches.sort((a, b) => b - a);
    const candidate = matches[this.#quorum() - 1]!;
    if (candidate <= log.committed || log.term(candidate) !== this.#term) return false;
    const previous = log.committed;
    log.commitTo(candidate);
    for (let index = previous + 1; index <= candidate; index += 1) {
      const entry = log.entry(index);
      if (entry !== undefined && entry.term === this.#term) this.#uncommittedBytes -= entry.data.byteLength + entryOverheadBytes;
    }
    if (this.#uncommittedBytes < 0) this.#uncommittedBytes = 0;
    return true;
  }

  #appendOwn(entry: Entry): void {
    this.#log.appendOwn(entry);
    this.#uncommittedBytes += entry.data.byteLength + entryOverheadBytes;
    // Learners get the entry once it is committed (#sendAppend): nothing is new for them yet.
    this.#broadcastAppend(false);
  }

  /**
   * Sends new entries, or at least the new commit index, to every voter whose flow allows, and to the
   * learners too when `learners` (the commit index moved, so they have entries to take).
   */
  #broadcastAppend(learners = true): void {
    for (const [id, pr] of this.#progress) if (learners || !pr.learner) this.#sendAppend(id, true);
  }

  /**
   * Heartbeats to the voters, the learners or both: learners less often (`learnerHeartbeatTicks`), since
   * they never campaign. Measured on an idle local cluster of 5 voters and 2 learners: each learner used
   * 0.047-0.048 cores instead of 0.051-0.056 (one run each; the scaling bench's four-host time did not
   * move beyond its noise).
   */
  #broadcastHeartbeat(voters: boolean, learners: boolean): void {
    const commit = this.#log.committed;
    for (const [id, pr] of this.#progress) {
      if (!(this.#learners.has(id) ? learners : voters)) continue;
      this.#send({ type: 'heartbeat', from: this.id, to: id, term: this.#term, commit: Math.min(pr.match, commit) });
    }
  }

  /** Sends the next append (or the snapshot) to `to` if its flow allows; returns true if it sent. */
  #sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.#progress.get(to)!;
    if (pr.isPaused()) return false;
    const log = this.#log;
    const prevLogIndex = pr.next - 1;
    const prevLogTerm = log.term(prevLogIndex);
    if (prevLogTerm === undefined) return this.#sendSnapshot(to, pr);
    // A learner takes only committed entries: it votes on nothing, and applies only what is committed,
    // so it gets each entry and the commit index that covers it in one append instead of an append for
    // the entry and another for its commit (each persisted, answered and parsed). Four worker hosts
    // coding one job: half the appends and LevelDB writes on each worker, none later.
    const sendableTo = pr.learner ? Math.min(log.lastIndex(), log.committed) : log.lastIndex();
    const entries = pr.next <= sendableTo ? log.slice(pr.next, sendableTo, this.#limits.appendEntriesMax, this.#limits.appendBytesMax) : [];
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.#send({ type: 'append', from: this.id, to, term: this.#term, prevLogIndex, prevLogTerm, entries, commit: log.committed });
    const last = entries[entries.length - 1];
    if (last !== undefined) {
      pr.sentEntries(last.index);
    } else if (pr.state === 'probe') {
      pr.probeSent = true;
    }
    return true;
  }

  #sendSnapshot(to: NodeId, pr: Progress): boolean {
    const snapshot = this.#log.snapshot;
    invariant(snapshot !== null, () => `leader ${this.id} needs a snapshot for ${to} (next ${pr.next}) but has none`);
    this.#send({ type: 'install-snapshot', from: this.id, to, term: this.#term, snapshot });
    pr.becomeSnapshot(snapshot.index);
    return true;
  }

  // ---------------------------------------------------------------------------------------------
  // Helpers.

  #send(message: Message): void {
    if (this.#messages.length >= this.#limits.outboxMessagesMax) {
      this.#outboxDropped += 1;
      return;
    }
    this.#messages.push(message);
  }

  #quorum(): number {
    return Math.floor(this.#voters.size / 2) + 1;
  }

  #hardStateChanged(): boolean {
    const reported = this.#hardStateReported;
    return reported.term !== this.#term || reported.vote !== this.#vote || reported.commit !== this.#log.committed;
  }

  #assignLearners(ids: readonly NodeId[]): void {
    for (const id of ids) {
      if (this.#voters.has(id)) throw new RaftUsageError(`raft: ${id} is a voter and cannot also be a learner`);
    }
    this.#learners = new Set(ids);
  }
}
