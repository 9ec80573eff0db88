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
import { RaftCore, ReadyDriver, type Entry, type NodeId, type RaftStatus, type Ready, type Snapshot } from './raft/index.ts';
import { createRaftStorage, type RaftStorage } from './raft-storage.ts';
import { parseProposalFrame, parseRaftMessage, senderProblem } from './frames.ts';
import {
  decodeCommand,
  encodeCommand,
  openStateStore,
  validateCommand,
  type ApplyResult,
  type StateChange,
  type StateCommand,
  type StateStore,
  type StateValue,
} from '../storage/index.ts';
import { CodedError } from '../errors.ts';

/** What the replicated state needs from the network: messages by node name, and one request/response. */
export interface RaftTransport {
  send(to: NodeId, bytes: Uint8Array): void;
  onMessage(handler: (from: NodeId, bytes: Uint8Array) => void): void;
  request(to: NodeId, protocol: string, bytes: Uint8Array, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<Uint8Array>;
  handle(protocol: string, handler: (from: NodeId, bytes: Uint8Array) => Promise<Uint8Array>): void;
}

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
/**
 * Results of recently applied commands by id. A proposer whose forwarded proposal timed out (say, the
 * leader died) retries the same command; if the first copy was committed after all, the retry's copy
 * fails its guards. The proposer must still learn the first copy's result, not the retry's.
 */
const recentResultsMax = 16_384;
const slowPersistMs = 500;
const leaderWaitStepMs = 50;
/** A failed persist is retried after this, doubling up to the maximum, until it succeeds. */
const storageRetryMsMin = 500;
const storageRetryMsMax = 30_000;

interface Pending {
  resolve: (result: ApplyResult) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export async function createReplicatedState(options: ReplicatedStateOptions): Promise<ReplicatedState> {
  const { id, db, transport, logger } = options;
  const storage: RaftStorage = createRaftStorage(db);
  const store: StateStore = await openStateStore(db);
  const persisted = await storage.load();
  const core = new RaftCore(
    {
      id,
      voters: options.voters,
      learners: options.learners,
      electionTicks: options.electionTicks,
      heartbeatTicks: options.heartbeatTicks,
      random: options.random ?? Math.random,
      applied: store.appliedIndex(),
    },
    persisted,
  );
  const snapshotEntries = options.snapshotEntries ?? 1000;
  const proposeTimeoutMs = options.proposeTimeoutMs ?? 10_000;
  const pending = new Map<string, Pending[]>();
  const recentResults = new Map<string, ApplyResult>();
  const listeners = new Set<(change: StateChange) => void>();
  let ticker: NodeJS.Timeout | undefined;
  let running = false;
  let stopped = false;
  let draining: Promise<void> | undefined;
  let drainAgain = false;
  let lastRole = core.role;
  const voters: ReadonlySet<NodeId> = new Set(options.voters);
  let learners: ReadonlySet<NodeId> = new Set(options.learners ?? []);
  const frameStats: FrameStats = { malformed: 0, unauthorized: 0 };
  // After a failed write the driver keeps the Ready and the next drain retries it as it is.
  const driver = new ReadyDriver(core, {
    persist: persistTimed,
    send: (messages) => {
      for (const message of messages) transport.send(message.to, encode(message));
    },
    apply,
  });
  let failure: StorageFailure | null = null;
  let retryMs = storageRetryMsMin;
  let retryTimer: NodeJS.Timeout | undefined;

  /**
   * Drains every Ready in turn; a call while draining makes the current drain loop once more. While
   * storage is failing only the retry timer drains (`retry`), so the core takes no new input.
   */
  function schedule(retry = false): void {
    if (stopped || (failure !== null && !retry)) return;
    if (draining !== undefined) {
      drainAgain = true;
      return;
    }
    draining = drain()
      .catch((error: unknown) => storageFailed(error))
      .finally(() => {
        draining = undefined;
        if (drainAgain) {
          drainAgain = false;
          schedule();
        }
      });
  }

  /**
   * A failed write leaves the core ahead of its storage. Stepping on could break Raft's promises and
   * exiting would take a member away; so the node stops taking input and retries the same Ready.
   */
  function storageFailed(error: unknown): void {
    const code: StorageFailureCode = isNoSpaceError(error) ? 'INSUFFICIENT_STORAGE' : 'STORAGE_FAILED';
    const first = failure === null;
    failure = new StorageFailure(code, `node ${id}: cannot persist Raft state (${code === 'INSUFFICIENT_STORAGE' ? 'disk full' : 'write failed'}): ${(error as Error)?.message ?? String(error)}`, { cause: error });
    logger.error({ err: error, code, retryMs }, 'raft: persisting or applying failed; not acking or voting until a retry succeeds; still serving reads');
    if (first) options.onStorageFailure?.(failure);
    if (stopped) return;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      schedule(true);
    }, retryMs);
    retryMs = Math.min(retryMs * 2, storageRetryMsMax);
  }

  function storageRecovered(): void {
    if (failure === null) return;
    failure = null;
    retryMs = storageRetryMsMin;
    logger.warn('raft: persisting works again; taking part in the cluster');
    options.onStorageFailure?.(null);
  }

  async function drain(): Promise<void> {
    while (!stopped) {
      const ready = await driver.handleNext();
      if (ready === null) return;
      storageRecovered();
      if (ready.softState !== null && ready.softState.role !== lastRole) {
        logger.info({ role: ready.softState.role, leader: ready.softState.leader, term: core.term }, 'raft: role changed');
        lastRole = ready.softState.role;
      }
      await maybeCompact();
    }
  }

  async function persistTimed(ready: Ready): Promise<void> {
    const persistStarted = performance.now();
    await storage.persist(ready);
    const persistMs = performance.now() - persistStarted;
    // Replies wait for this write: a slow disk delays heartbeats and can cost the leadership.
    if (persistMs > slowPersistMs) logger.warn({ persistMs: Math.round(persistMs), entries: ready.entries.length }, 'raft: persisting a Ready was slow');
  }

  async function apply(snapshot: Snapshot | null, entries: readonly Entry[]): Promise<void> {
    if (snapshot !== null && snapshot.index > store.appliedIndex()) {
      await store.importSnapshot(snapshot.index, snapshot.data);
      logger.info({ index: snapshot.index }, 'raft: installed a snapshot from the leader');
    }
    const batch: Array<{ index: number; command: StateCommand | null }> = [];
    for (const entry of entries) {
      if (entry.index <= store.appliedIndex()) continue;
      batch.push({ index: entry.index, command: entry.type === 'noop' ? null : decodeEntry(entry.index, entry.data) });
    }
    // One atomic write for the whole Ready: a busy event loop costs one round trip, not two per entry.
    const applied = await store.applyBatch(batch);
    batch.forEach(({ index, command }, i) => {
      if (command !== null) publish(index, command, applied[i]);
    });
  }

  /** A committed command, or null when it cannot be decoded: every node skips it the same way. */
  function decodeEntry(index: number, data: Uint8Array): StateCommand | null {
    try {
      const command = decodeCommand(data);
      validateCommand(command);
      return command;
    } catch (error) {
      logger.error({ err: error, index }, 'raft: skipping a malformed committed command');
      return null;
    }
  }

  /** Tells listeners and the proposer that `command` was applied at `index`. */
  function publish(index: number, command: StateCommand, applied: boolean): void {
    const first = recentResults.get(command.id);
    if (first === undefined) {
      recentResults.set(command.id, { id: command.id, index, applied });
      if (recentResults.size > recentResultsMax) recentResults.delete(recentResults.keys().next().value!);
    }
    const change: StateChange = { index, command, applied };
    for (const listener of listeners) {
      try {
        listener(change);
      } catch (error) {
        logger.error({ err: error }, 'state listener threw');
      }
    }
    const waiters = pending.get(command.id);
    if (waiters !== undefined) {
      pending.delete(command.id);
      const result = recentResults.get(command.id) ?? { id: command.id, index, applied };
      for (const waiter of waiters) {
        clearTimeout(waiter.timer);
        waiter.resolve(result);
      }
    }
  }

  async function maybeCompact(): Promise<void> {
    const applied = store.appliedIndex();
    if (applied - core.snapshotIndex < snapshotEntries || applied > core.appliedIndex) return;
    const snapshot = core.compact(applied, await store.exportSnapshot());
    if (snapshot !== null) {
      await storage.compact(snapshot);
      logger.debug({ index: applied }, 'raft: compacted the log with a snapshot');
    }
  }

  function waitApplied(commandId: string, timeoutMs: number): Promise<ApplyResult> {
    return new Promise((resolve, reject) => {
      const waiter: Pending = {
        resolve,
        reject,
        timer: setTimeout(() => {
          const rest = (pending.get(commandId) ?? []).filter((other) => other !== waiter);
          if (rest.length > 0) pending.set(commandId, rest);
          else pending.delete(commandId);
          reject(new ProposalError('TIMEOUT', `command ${commandId} was not applied within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      pending.set(commandId, [...(pending.get(commandId) ?? []), waiter]);
    });
  }

  /** Proposes on this node, which must lead; resolves when applied here. */
  function proposeLocally(command: StateCommand, timeoutMs: number): Promise<ApplyResult> {
    const known = recentResults.get(command.id);
    if (known !== undefined) return Promise.resolve(known);
    const result = core.propose(encodeCommand(command));
    if (!result.ok) return Promise.reject(new ProposalError(result.error.code === 'not-leader' ? 'NO_LEADER' : 'REJECTED', result.error.message));
    const applied = waitApplied(command.id, timeoutMs);
    schedule();
    return applied;
  }

  async function propose(proposal: Proposal, proposeOptions: ProposeOptions = {}): Promise<ApplyResult> {
    if (!running) throw new ProposalError('STOPPED', `node ${id} is not running`);
    // Even a proposal another node commits would never be applied here while this node cannot persist.
    if (failure !== null) throw new ProposalError('STORAGE_FAILED', failure.message);
    const command: StateCommand = { id: randomUUID(), ...proposal };
    validateCommand(command);
    const deadline = Date.now() + (proposeOptions.timeoutMs ?? proposeTimeoutMs);
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new ProposalError('NO_LEADER', `no leader accepted command ${command.id} in time`);
      const leader = core.leader;
      if (leader === id && core.role === 'leader') return proposeLocally(command, remaining);
      if (leader !== null) {
        const superseded = watchLeaderChange(leader);
        try {
          const reply = decode(
            await transport.request(leader, proposeProtocol, encode({ command, timeoutMs: remaining }), { timeoutMs: remaining, signal: superseded.signal }),
          ) as { ok: true; result: ApplyResult } | { ok: false; code: ProposalErrorCode; message: string };
          if (!reply.ok) {
            if (reply.code !== 'NO_LEADER') throw new ProposalError(reply.code, reply.message);
          } else {
            // Applied on the leader; wait until this node has applied it too, so reads here see it.
            await waitUntilApplied(reply.result.index, deadline);
            return reply.result;
          }
        } catch (error) {
          if (error instanceof ProposalError && error.code !== 'NO_LEADER') throw error;
          // Retrying is safe: a command keeps its id, and a copy applied twice fails its guards.
          if (superseded.signal.aborted) logger.info({ leader, newLeader: core.leader, term: core.term }, 'raft: the leader a proposal waited on was replaced; forwarding it again');
          else logger.debug({ err: error, leader }, 'raft: forwarding a proposal failed; retrying');
        } finally {
          superseded.stop();
        }
      }
      await new Promise((resolve) => setTimeout(resolve, leaderWaitStepMs));
    }
  }

  /**
   * Aborts when `leader` is no longer the leader this node knows: its term ended or another node leads.
   * A leader cut off by a partition or paused answers nothing and resets nothing, so without this a
   * forwarded proposal would wait out its whole timeout although a new leader was elected long before.
   */
  function watchLeaderChange(leader: NodeId): { signal: AbortSignal; stop(): void } {
    const controller = new AbortController();
    const termAtStart = core.term;
    const timer = setInterval(() => {
      if (core.term !== termAtStart || (core.leader !== null && core.leader !== leader)) controller.abort();
    }, leaderWaitStepMs);
    return { signal: controller.signal, stop: () => clearInterval(timer) };
  }

  async function waitUntilApplied(index: number, deadline: number): Promise<void> {
    while (store.appliedIndex() < index) {
      if (Date.now() > deadline) throw new ProposalError('TIMEOUT', `entry ${index} was committed but not yet applied on ${id}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  function refuse(kind: keyof FrameStats, from: NodeId, problem: string): void {
    frameStats[kind] += 1;
    if (frameStats[kind] % refusedLogEvery === 1) logger.warn({ from, problem, refused: frameStats[kind] }, `raft: dropped a ${kind} frame`);
  }

  const isMember = (name: NodeId) => voters.has(name) || learners.has(name);

  transport.onMessage((from, bytes) => {
    // Stepping while storage fails could grow the unpersisted log without bound; the leader resends.
    if (!running || failure !== null) return;
    const message = parseRaftMessage(bytes);
    if (typeof message === 'string') return refuse('malformed', from, message);
    const problem = senderProblem(message, from, id, { voters, learners });
    if (problem !== undefined) return refuse('unauthorized', from, `${message.type}: ${problem}`);
    core.step(message);
    schedule();
  });

  transport.handle(proposeProtocol, async (from, bytes) => {
    if (!isMember(from)) {
      refuse('unauthorized', from, 'proposal from a peer that is neither a voter nor a learner');
      return encode({ ok: false, code: 'REJECTED', message: `${from} is not a member that may propose` });
    }
    const frame = parseProposalFrame(bytes);
    if (typeof frame === 'string') {
      refuse('malformed', from, frame);
      return encode({ ok: false, code: 'REJECTED', message: frame });
    }
    try {
      if (core.role !== 'leader' || failure !== null) return encode({ ok: false, code: 'NO_LEADER', message: `${id} is not the leader` });
      const result = await proposeLocally(frame.command, Math.min(frame.timeoutMs, proposeTimeoutMs));
      return encode({ ok: true, result });
    } catch (error) {
      const code = error instanceof ProposalError ? error.code : 'REJECTED';
      return encode({ ok: false, code, message: (error as Error).message });
    }
  });

  return {
    async start() {
      if (running) return;
      running = true;
      ticker = setInterval(() => {
        if (failure !== null) return;
        core.tick();
        schedule();
      }, options.tickMs);
      schedule();
    },
    async stop() {
      running = false;
      if (ticker !== undefined) clearInterval(ticker);
      if (retryTimer !== undefined) clearTimeout(retryTimer);
      await draining;
      stopped = true;
      if (retryTimer !== undefined) clearTimeout(retryTimer);
      for (const [commandId, waiters] of pending) {
        for (const waiter of waiters) {
          clearTimeout(waiter.timer);
          waiter.reject(new ProposalError('STOPPED', `node ${id} stopped before command ${commandId} was applied`));
        }
      }
      pending.clear();
    },
    propose,
    get: (key) => store.get(key),
    list: (prefix, limit) => store.list(prefix, limit),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    setLearners(ids) {
      core.setLearners(ids);
      learners = new Set(ids);
      schedule();
    },
    storageFailure: () => failure,
    status: () => core.status(),
    frameStats: () => ({ ...frameStats }),
    // A leader that cannot persist commits nothing: its scheduler and registry must not act as one.
    isLeader: () => core.role === 'leader' && failure === null,
    leader: () => core.leader,
  };
}
