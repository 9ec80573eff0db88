/**
 * The apply side of the replicated state: committed entries go into the state store, and the
 * listeners and the proposers waiting on a command learn its result.
 */
import type { Logger } from 'pino';
import type { Entry, NodeId, Snapshot } from './raft/index.ts';
import { decodeCommand, validateCommand, type ApplyResult, type StateChange, type StateCommand, type StateStore } from '../storage/index.ts';
import { ProposalError } from './replicated-errors.ts';

/**
 * Results of recently applied commands by id. A proposer whose forwarded proposal timed out (say, the
 * leader died) retries the same command; if the first copy was committed after all, the retry's copy
 * fails its guards. The proposer must still learn the first copy's result, not the retry's.
 */
const recentResultsMax = 16_384;
/** How often a proposer waiting for an entry to be applied here looks again. */
const appliedPollMs = 10;

interface Pending {
  resolve: (result: ApplyResult) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export class Applier {
  readonly #id: NodeId;
  readonly #store: StateStore;
  readonly #logger: Logger;
  readonly #pending = new Map<string, Pending[]>();
  readonly #recentResults = new Map<string, ApplyResult>();
  readonly #listeners = new Set<(change: StateChange) => void>();

  constructor(id: NodeId, store: StateStore, logger: Logger) {
    this.#id = id;
    this.#store = store;
    this.#logger = logger;
  }

  async apply(snapshot: Snapshot | null, entries: readonly Entry[]): Promise<void> {
    const store = this.#store;
    if (snapshot !== null && snapshot.index > store.appliedIndex()) {
      await store.importSnapshot(snapshot.index, snapshot.data);
      this.#logger.info({ index: snapshot.index }, 'raft: installed a snapshot from the leader');
    }
    const batch: Array<{ index: number; command: StateCommand | null }> = [];
    for (const entry of entries) {
      if (entry.index <= store.appliedIndex()) continue;
      batch.push({ index: entry.index, command: entry.type === 'noop' ? null : this.#decodeEntry(entry.index, entry.data) });
    }
    // One atomic write for the whole Ready: a busy event loop costs one round trip, not two per entry.
    const applied = await store.applyBatch(batch);
    batch.forEach(({ index, command }, i) => {
      if (command !== null) this.#publish(index, command, applied[i]);
    });
  }

  /** A committed command, or null when it cannot be decoded: every node skips it the same way. */
  #decodeEntry(index: number, data: Uint8Array): StateCommand | null {
    try {
      const command = decodeCommand(data);
      validateCommand(command);
      return command;
    } catch (error) {
      this.#logger.error({ err: error, index }, 'raft: skipping a malformed committed command');
      return null;
    }
  }

  /** Tells listeners and the proposer that `command` was applied at `index`. */
  #publish(index: number, command: StateCommand, applied: boolean): void {
    const recent = this.#recentResults;
    if (!recent.has(command.id)) {
      recent.set(command.id, { id: command.id, index, applied });
      if (recent.size > recentResultsMax) recent.delete(recent.keys().next().value!);
    }
    const change: StateChange = { index, command, applied };
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (error) {
        this.#logger.error({ err: error }, 'state listener threw');
      }
    }
    const waiters = this.#pending.get(command.id);
    if (waiters === undefined) return;
    this.#pending.delete(command.id);
    const result = recent.get(command.id) ?? { id: command.id, index, applied };
    for (const waiter of waiters) {
      clearTimeout(waiter.timer);
      waiter.resolve(result);
    }
  }

  /** The result of a recently applied command, if this node applied it. */
  known(commandId: string): ApplyResult | undefined {
    return this.#recentResults.get(commandId);
  }

  subscribe(listener: (change: StateChange) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Resolves when the command is applied here; rejects with TIMEOUT after `timeoutMs`. */
  waitApplied(commandId: string, timeoutMs: number): Promise<ApplyResult> {
    const pending = this.#pending;
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

  async waitUntilApplied(index: number, deadline: number): Promise<void> {
    while (this.#store.appliedIndex() < index) {
      if (Date.now() > deadline) throw new ProposalError('TIMEOUT', `entry ${index} was committed but not yet applied on ${this.#id}`);
      await new Promise((resolve) => setTimeout(resolve, appliedPollMs));
    }
  }

  /** Rejects every waiting proposer with STOPPED. */
  stop(): void {
    for (const [commandId, waiters] of this.#pending) {
      for (const waiter of waiters) {
        clearTimeout(waiter.timer);
        waiter.reject(new ProposalError('STOPPED', `node ${this.#id} stopped before command ${commandId} was applied`));
      }
    }
    this.#pending.clear();
  }
}
