/**
 * The replicated state machine the job layer uses: propose a command, learn when it is committed and
 * applied, read the applied key-value state, subscribe to changes.
 *
 * This is the thin I/O wrapper around the pure Raft core: it owns the clock (a tick timer), the disk
 * (LevelDB through RaftStorage and the StateStore) and the network (a transport). Readys go through
 * the core's ReadyDriver, the same code the simulation runs: persist, then send, then apply, then
 * advance; messages and ticks keep stepping the core while a persist is awaited.
 */
import { randomUUID } from 'node:crypto';
import { decode, encode } from 'cborg';
import type { Level } from 'level';
import type { Logger } from 'pino';
import { RaftCore, ReadyDriver, type Message, type NodeId, type RaftStatus, type Ready } from './raft/index.ts';
import { createRaftStorage, type RaftStorage } from './raft-storage.ts';
import { parseProposalFrame, parseRaftMessage, senderProblem } from './frames.ts';
import { Applier } from './applier.ts';
import { ProposalError, type ProposalErrorCode, type StorageFailure } from './replicated-errors.ts';
import { StorageRetry } from './storage-retry.ts';
import {
  encodeCommand,
  openStateStore,
  validateCommand,
  type ApplyResult,
  type StateChange,
  type StateCommand,
  type StateStore,
  type StateValue,
} from '../storage/index.ts';

export { isNoSpaceError, ProposalError, StorageFailure, type ProposalErrorCode, type StorageFailureCode } from './replicated-errors.ts';

/** What the replicated state needs from the network: messages by node name, and one request/response. */
export interface RaftTransport {
  send(to: NodeId, bytes: Uint8Array): void;
  onMessage(handler: (from: NodeId, bytes: Uint8Array) => void): void;
  request(to: NodeId, protocol: string, bytes: Uint8Array, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<Uint8Array>;
  handle(protocol: string, handler: (from: NodeId, bytes: Uint8Array) => Promise<Uint8Array>): void;
}

export interface ReplicatedStateOptions {
  id: NodeId;
  voters: readonly NodeId[];
  learners?: readonly NodeId[];
  db: Level<string, unknown>;
  transport: RaftTransport;
  logger: Logger;
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  /** Take a snapshot and compact the log after this many applied entries. */
  snapshotEntries?: number;
  /** Default for `propose`: how long to wait for a command to be committed and applied. */
  proposeTimeoutMs?: number;
  random?: () => number;
  /** Called once when persisting starts failing, and once when a retry succeeded (with null). */
  onStorageFailure?: (failure: StorageFailure | null) => void;
}

export interface ProposeOptions {
  timeoutMs?: number;
}

export type Proposal = Omit<StateCommand, 'id'>;

export interface ReplicatedState {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Resolves once the command is committed and applied on this node (wherever it was proposed). */
  propose(proposal: Proposal, options?: ProposeOptions): Promise<ApplyResult>;
  get(key: string): Promise<StateValue | undefined>;
  list(prefix: string, limit?: number): Promise<Array<[string, StateValue]>>;
  /** Called for every command applied on this node, in log order. Returns an unsubscribe function. */
  subscribe(listener: (change: StateChange) => void): () => void;
  setLearners(ids: readonly NodeId[]): void;
  /** Why this node cannot persist Raft state right now, or null when it can. */
  storageFailure(): StorageFailure | null;
  status(): RaftStatus;
  /** Frames refused before reaching the core: malformed, or from a sender not allowed to send them. */
  frameStats(): FrameStats;
  isLeader(): boolean;
  leader(): NodeId | null;
}

export interface FrameStats {
  malformed: number;
  unauthorized: number;
}

export const proposeProtocol = '/dcas/propose/1.0.0';
/** Refused frames are logged the first time and then every this many times. */
const refusedLogEvery = 100;
const slowPersistMs = 500;
const leaderWaitStepMs = 50;

type ProposalReply = { ok: true; result: ApplyResult } | { ok: false; code: ProposalErrorCode; message: string };

export async function createReplicatedState(options: ReplicatedStateOptions): Promise<ReplicatedState> {
  const storage: RaftStorage = createRaftStorage(options.db);
  const store: StateStore = await openStateStore(options.db);
  const persisted = await storage.load();
  const core = new RaftCore(
    {
      id: options.id,
      voters: options.voters,
      learners: options.learners,
      electionTicks: options.electionTicks,
      heartbeatTicks: options.heartbeatTicks,
      random: options.random ?? Math.random,
      applied: store.appliedIndex(),
    },
    persisted,
  );
  const node = new ReplicatedNode(options, core, storage, store);
  return {
    start: () => node.start(),
    stop: () => node.stop(),
    propose: (proposal, proposeOptions) => node.propose(proposal, proposeOptions),
    get: (key) => store.get(key),
    list: (prefix, limit) => store.list(prefix, limit),
    subscribe: (listener) => node.applier.subscribe(listener),
    setLearners: (ids) => node.setLearners(ids),
    storageFailure: () => node.storageFailure(),
    status: () => core.status(),
    frameStats: () => node.frameStats(),
    isLeader: () => node.isLeader(),
    leader: () => core.leader,
  };
}

/** One node's Raft core with its clock, disk and network: the state behind `ReplicatedState`. */
class ReplicatedNode {
  readonly applier: Applier;
  readonly #options: ReplicatedStateOptions;
  readonly #id: NodeId;
  readonly #core: RaftCore;
  readonly #storage: RaftStorage;
  readonly #store: StateStore;
  readonly #logger: Logger;
  readonly #driver: ReadyDriver;
  readonly #storageRetry: StorageRetry;
  readonly #snapshotEntries: number;
  readonly #proposeTimeoutMs: number;
  readonly #voters: ReadonlySet<NodeId>;
  #learners: ReadonlySet<NodeId>;
  readonly #frameStats: FrameStats = { malformed: 0, unauthorized: 0 };
  #ticker: NodeJS.Timeout | undefined;
  #running = false;
  #stopped = false;
  #draining: Promise<void> | undefined;
  #drainAgain = false;
  #lastRole: RaftStatus['role'];

  constructor(options: ReplicatedStateOptions, core: RaftCore, storage: RaftStorage, store: StateStore) {
    this.#options = options;
    this.#id = options.id;
    this.#core = core;
    this.#storage = storage;
    this.#store = store;
    this.#logger = options.logger;
    this.#snapshotEntries = options.snapshotEntries ?? 1000;
    this.#proposeTimeoutMs = options.proposeTimeoutMs ?? 10_000;
    this.#voters = new Set(options.voters);
    this.#learners = new Set(options.learners ?? []);
    this.#lastRole = core.role;
    this.applier = new Applier(options.id, store, options.logger);
    // After a failed write the driver keeps the Ready and the next drain retries it as it is.
    this.#driver = new ReadyDriver(core, {
      persist: (ready) => this.#persistTimed(ready),
      send: (messages) => this.#send(messages),
      apply: (snapshot, entries) => this.applier.apply(snapshot, entries),
    });
    this.#storageRetry = new StorageRetry({ id: options.id, logger: options.logger, onStorageFailure: options.onStorageFailure, retry: () => this.#schedule(true) });
    options.transport.onMessage((from, bytes) => this.#onMessage(from, bytes));
    options.transport.handle(proposeProtocol, (from, bytes) => this.#onProposal(from, bytes));
  }

  // ---- Lifecycle ----

  async start(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    this.#ticker = setInterval(() => {
      if (this.#storageRetry.failure !== null) return;
      this.#core.tick();
      this.#schedule();
    }, this.#options.tickMs);
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#running = false;
    if (this.#ticker !== undefined) clearInterval(this.#ticker);
    this.#storageRetry.cancel();
    await this.#draining;
    this.#stopped = true;
    this.#storageRetry.cancel();
    this.applier.stop();
  }

  setLearners(ids: readonly NodeId[]): void {
    this.#core.setLearners(ids);
    this.#learners = new Set(ids);
    this.#schedule();
  }

  storageFailure(): StorageFailure | null {
    return this.#storageRetry.failure;
  }

  frameStats(): FrameStats {
    return { ...this.#frameStats };
  }

  /** A leader that cannot persist commits nothing: its scheduler and registry must not act as one. */
  isLeader(): boolean {
    return this.#core.role === 'leader' && this.#storageRetry.failure === null;
  }

  // ---- Driving the core ----

  /**
   * Drains every Ready in turn; a call while draining makes the current drain loop once more. While
   * storage is failing only the retry timer drains (`retry`), so the core takes no new input.
   */
  #schedule(retry = false): void {
    if (this.#stopped || (this.#storageRetry.failure !== null && !retry)) return;
    if (this.#draining !== undefined) {
      this.#drainAgain = true;
      return;
    }
    this.#draining = this.#drain()
      .catch((error: unknown) => this.#storageRetry.failed(error, this.#stopped))
      .finally(() => {
        this.#draining = undefined;
        if (this.#drainAgain) {
          this.#drainAgain = false;
          this.#schedule();
        }
      });
  }

  async #drain(): Promise<void> {
    while (!this.#stopped) {
      const ready = await this.#driver.handleNext();
      if (ready === null) return;
      this.#storageRetry.recovered();
      if (ready.softState !== null && ready.softState.role !== this.#lastRole) {
        this.#logger.info({ role: ready.softState.role, leader: ready.softState.leader, term: this.#core.term }, 'raft: role changed');
        this.#lastRole = ready.softState.role;
      }
      await this.#maybeCompact();
    }
  }

  async #persistTimed(ready: Ready): Promise<void> {
    const persistStarted = performance.now();
    await this.#storage.persist(ready);
    const persistMs = performance.now() - persistStarted;
    // Replies wait for this write: a slow disk delays heartbeats and can cost the leadership.
    if (persistMs > slowPersistMs) this.#logger.warn({ persistMs: Math.round(persistMs), entries: ready.entries.length }, 'raft: persisting a Ready was slow');
  }

  #send(messages: readonly Message[]): void {
    for (const message of messages) this.#options.transport.send(message.to, encode(message));
  }

  async #maybeCompact(): Promise<void> {
    const applied = this.#store.appliedIndex();
    if (applied - this.#core.snapshotIndex < this.#snapshotEntries || applied > this.#core.appliedIndex) return;
    const snapshot = this.#core.compact(applied, await this.#store.exportSnapshot());
    if (snapshot !== null) {
      await this.#storage.compact(snapshot);
      this.#logger.debug({ index: applied }, 'raft: compacted the log with a snapshot');
    }
  }

  // ---- Proposals ----

  async propose(proposal: Proposal, proposeOptions: ProposeOptions = {}): Promise<ApplyResult> {
    if (!this.#running) throw new ProposalError('STOPPED', `node ${this.#id} is not running`);
    // Even a proposal another node commits would never be applied here while this node cannot persist.
    const failure = this.#storageRetry.failure;
    if (failure !== null) throw new ProposalError('STORAGE_FAILED', failure.message);
    const command: StateCommand = { id: randomUUID(), ...proposal };
    validateCommand(command);
    const deadline = Date.now() + (proposeOptions.timeoutMs ?? this.#proposeTimeoutMs);
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new ProposalError('NO_LEADER', `no leader accepted command ${command.id} in time`);
      const leader = this.#core.leader;
      if (leader === this.#id && this.#core.role === 'leader') return this.#proposeLocally(command, remaining);
      if (leader !== null) {
        const result = await this.#forward(leader, command, remaining, deadline);
        if (result !== undefined) return result;
      }
      await new Promise((resolve) => setTimeout(resolve, leaderWaitStepMs));
    }
  }

  /** Proposes on this node, which must lead; resolves when applied here. */
  #proposeLocally(command: StateCommand, timeoutMs: number): Promise<ApplyResult> {
    const known = this.applier.known(command.id);
    if (known !== undefined) return Promise.resolve(known);
    const result = this.#core.propose(encodeCommand(command));
    if (!result.ok) return Promise.reject(new ProposalError(result.error.code === 'not-leader' ? 'NO_LEADER' : 'REJECTED', result.error.message));
    const applied = this.applier.waitApplied(command.id, timeoutMs);
    this.#schedule();
    return applied;
  }

  /** One attempt to have `leader` commit the command: its result, or undefined to try again. */
  async #forward(leader: NodeId, command: StateCommand, remaining: number, deadline: number): Promise<ApplyResult | undefined> {
    const superseded = watchLeaderChange(this.#core, leader);
    try {
      const request = encode({ command, timeoutMs: remaining });
      const reply = decode(await this.#options.transport.request(leader, proposeProtocol, request, { timeoutMs: remaining, signal: superseded.signal })) as ProposalReply;
      if (!reply.ok) {
        if (reply.code !== 'NO_LEADER') throw new ProposalError(reply.code, reply.message);
      } else {
        // Applied on the leader; wait until this node has applied it too, so reads here see it.
        await this.applier.waitUntilApplied(reply.result.index, deadline);
        return reply.result;
      }
    } catch (error) {
      if (error instanceof ProposalError && error.code !== 'NO_LEADER') throw error;
      // Retrying is safe: a command keeps its id, and a copy applied twice fails its guards.
      if (superseded.signal.aborted) this.#logger.info({ leader, newLeader: this.#core.leader, term: this.#core.term }, 'raft: the leader a proposal waited on was replaced; forwarding it again');
      else this.#logger.debug({ err: error, leader }, 'raft: forwarding a proposal failed; retrying');
    } finally {
      superseded.stop();
    }
    return undefined;
  }

  // ---- Inbound frames ----

  #onMessage(from: NodeId, bytes: Uint8Array): void {
    // Stepping while storage fails could grow the unpersisted log without bound; the leader resends.
    if (!this.#running || this.#storageRetry.failure !== null) return;
    const message = parseRaftMessage(bytes);
    if (typeof message === 'string') return this.#refuse('malformed', from, message);
    const problem = senderProblem(message, from, this.#id, { voters: this.#voters, learners: this.#learners });
    if (problem !== undefined) return this.#refuse('unauthorized', from, `${message.type}: ${problem}`);
    this.#core.step(message);
    this.#schedule();
  }

  async #onProposal(from: NodeId, bytes: Uint8Array): Promise<Uint8Array> {
    if (!this.#voters.has(from) && !this.#learners.has(from)) {
      this.#refuse('unauthorized', from, 'proposal from a peer that is neither a voter nor a learner');
      return encode({ ok: false, code: 'REJECTED', message: `${from} is not a member that may propose` });
    }
    const frame = parseProposalFrame(bytes);
    if (typeof frame === 'string') {
      this.#refuse('malformed', from, frame);
      return encode({ ok: false, code: 'REJECTED', message: frame });
    }
    try {
      if (this.#core.role !== 'leader' || this.#storageRetry.failure !== null) return encode({ ok: false, code: 'NO_LEADER', message: `${this.#id} is not the leader` });
      const result = await this.#proposeLocally(frame.command, Math.min(frame.timeoutMs, this.#proposeTimeoutMs));
      return encode({ ok: true, result });
    } catch (error) {
      const code = error instanceof ProposalError ? error.code : 'REJECTED';
      return encode({ ok: false, code, message: (error as Error).message });
    }
  }

  #refuse(kind: keyof FrameStats, from: NodeId, problem: string): void {
    this.#frameStats[kind] += 1;
    if (this.#frameStats[kind] % refusedLogEvery === 1) this.#logger.warn({ from, problem, refused: this.#frameStats[kind] }, `raft: dropped a ${kind} frame`);
  }
}

/**
 * Aborts when `leader` is no longer the leader this node knows: its term ended or another node leads.
 * A leader cut off by a partition or paused answers nothing and resets nothing, so without this a
 * forwarded proposal would wait out its whole timeout although a new leader was elected long before.
 */
function watchLeaderChange(core: RaftCore, leader: NodeId): { signal: AbortSignal; stop(): void } {
  const controller = new AbortController();
  const termAtStart = core.term;
  const timer = setInterval(() => {
    if (core.term !== termAtStart || (core.leader !== null && core.leader !== leader)) controller.abort();
  }, leaderWaitStepMs);
  return { signal: controller.signal, stop: () => clearInterval(timer) };
}
