/**
 * Simulated stable storage of one node: what survives a crash. It changes only through `persist`
 * (a Ready's durable fields, applied as one atomic batch) and `saveSnapshot` (after a compaction),
 * and it checks the Ready contract as it writes, the way a careful store would.
 */
import type { Entry, HardState, Message, PersistedState, Ready, Snapshot } from '../raft/index.ts';
import { SimulationFailure } from './failure.ts';

export function cloneEntry(entry: Entry): Entry {
  return { index: entry.index, term: entry.term, type: entry.type, data: entry.data.slice() };
}

export function cloneSnapshot(snapshot: Snapshot): Snapshot {
  return { index: snapshot.index, term: snapshot.term, data: snapshot.data.slice() };
}

export class SimStorage {
  readonly nodeId: string;
  hardState: HardState = { term: 0, vote: null, commit: 0 };
  snapshot: Snapshot | null = null;
  /** entries[i].index === snapshotIndex() + 1 + i */
  entries: Entry[] = [];

  constructor(nodeId: string) {
    this.nodeId = nodeId;
  }

  snapshotIndex(): number {
    return this.snapshot?.index ?? 0;
  }

  lastIndex(): number {
    return this.snapshotIndex() + this.entries.length;
  }

  persist(ready: Ready): void {
    if (ready.snapshot !== null) {
      this.snapshot = cloneSnapshot(ready.snapshot);
      this.entries = [];
    }
    if (ready.truncateIndex !== null) {
      const keep = ready.truncateIndex - this.snapshotIndex() - 1;
      this.#expect(keep >= 0, `truncateIndex ${ready.truncateIndex} reaches into the stored snapshot (index ${this.snapshotIndex()})`);
      this.entries.length = Math.min(this.entries.length, keep);
    }
    for (const entry of ready.entries) {
      this.#expect(entry.index === this.lastIndex() + 1, `Ready entry ${entry.index} does not follow the stored last index ${this.lastIndex()}`);
      this.entries.push(cloneEntry(entry));
    }
    if (ready.hardState !== null) {
      this.#expect(ready.hardState.term >= this.hardState.term, `hardState term goes back from ${this.hardState.term} to ${ready.hardState.term}`);
      this.#expect(
        ready.hardState.term !== this.hardState.term || this.hardState.vote === null || ready.hardState.vote === this.hardState.vote,
        `the vote of term ${ready.hardState.term} changes from ${this.hardState.vote} to ${ready.hardState.vote}`,
      );
      this.hardState = { ...ready.hardState };
    }
  }

  saveSnapshot(snapshot: Snapshot): void {
    if (snapshot.index <= this.snapshotIndex()) return;
    this.#expect(snapshot.index <= this.lastIndex(), `snapshot ${snapshot.index} is beyond the stored last index ${this.lastIndex()}`);
    const stored = this.entries[snapshot.index - this.snapshotIndex() - 1]!;
    this.#expect(stored.term === snapshot.term, `snapshot ${snapshot.index} has term ${snapshot.term} but the stored entry has ${stored.term}`);
    this.entries = this.entries.slice(snapshot.index - this.snapshotIndex());
    this.snapshot = cloneSnapshot(snapshot);
  }

  load(): PersistedState {
    return {
      hardState: { ...this.hardState },
      snapshot: this.snapshot === null ? null : cloneSnapshot(this.snapshot),
      entries: this.entries.map(cloneEntry),
    };
  }

  /** A message may leave only once every claim it makes is durable here. */
  checkDurable(message: Message): void {
    if (message.type === 'pre-vote-request' || message.type === 'pre-vote-response') return;
    this.#expect(message.term <= this.hardState.term, `${message.type} of term ${message.term} left before the term was persisted (stored ${this.hardState.term})`);
    if (message.type === 'vote-response' && message.granted && message.term === this.hardState.term) {
      this.#expect(this.hardState.vote === message.to, `a vote for ${message.to} in term ${message.term} left before it was persisted`);
    }
    if (message.type === 'append-response' && message.success && message.term === this.hardState.term) {
      this.#expect(message.index <= this.lastIndex(), `an acknowledgement of index ${message.index} left with only ${this.lastIndex()} persisted`);
    }
  }

  #expect(condition: boolean, sentence: string): void {
    if (!condition) throw new SimulationFailure('safety', `storage of ${this.nodeId}: ${sentence}`);
  }
}
