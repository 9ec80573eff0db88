/**
 * The in-memory Raft log of one node: a snapshot (everything up to snapshotIndex, folded into the
 * application's state) followed by the entries after it. It also tracks which suffix is not yet
 * durable (`unstableFrom`), a received snapshot not yet durable, and the commit and apply points.
 */
import { invariant } from './errors.ts';
import type { Entry, Snapshot } from './types.ts';

const emptyData = new Uint8Array(0);

export class RaftLog {
  /** Index and term of the last entry folded into the snapshot (0, 0 before any). */
  snapshotIndex = 0;
  snapshotTerm = 0;
  /** The latest snapshot with its data, kept to send to followers that fell behind the log. */
  snapshot: Snapshot | null = null;
  /** A snapshot received from a leader that the storage has not persisted yet. */
  pendingSnapshot: Snapshot | null = null;
  /** entries[i].index === snapshotIndex + 1 + i. */
  entries: Entry[] = [];
  committed = 0;
  applied = 0;
  /** The first index whose entry is not known to be durable. */
  unstableFrom = 1;

  static restore(snapshot: Snapshot | null, entries: readonly Entry[], commit: number, applied: number | undefined): RaftLog {
    const log = new RaftLog();
    if (snapshot !== null) {
      log.snapshot = snapshot;
      log.snapshotIndex = snapshot.index;
      log.snapshotTerm = snapshot.term;
    }
    let expected = log.snapshotIndex + 1;
    let termPrevious = log.snapshotTerm;
    for (const entry of entries) {
      invariant(entry.index === expected, () => `persisted entry ${entry.index} should be ${expected}: the stored log has a gap`);
      invariant(entry.term >= termPrevious, () => `persisted entry ${entry.index} has term ${entry.term} below the previous ${termPrevious}`);
      expected += 1;
      termPrevious = entry.term;
    }
    log.entries = entries.slice();
    log.unstableFrom = log.lastIndex() + 1;
    log.committed = Math.max(commit, log.snapshotIndex);
    invariant(log.committed <= log.lastIndex(), () => `persisted commit ${commit} is beyond the last stored entry ${log.lastIndex()}`);
    log.applied = applied ?? log.snapshotIndex;
    invariant(log.applied >= log.snapshotIndex, () => `applied ${log.applied} is below the snapshot index ${log.snapshotIndex}`);
    invariant(log.applied <= log.committed, () => `applied ${log.applied} is beyond commit ${log.committed}`);
    return log;
  }

  firstIndex(): number {
    return this.snapshotIndex + 1;
  }

  lastIndex(): number {
    return this.snapshotIndex + this.entries.length;
  }

  lastTerm(): number {
    const last = this.entries[this.entries.length - 1];
    return last === undefined ? this.snapshotTerm : last.term;
  }

  /** The term of the entry at `index`, or undefined if it was compacted away or does not exist. */
  term(index: number): number | undefined {
    if (index === this.snapshotIndex) return this.snapshotTerm;
    if (index < this.snapshotIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - this.snapshotIndex - 1]!.term;
  }

  entry(index: number): Entry | undefined {
    if (index <= this.snapshotIndex || index > this.lastIndex()) return undefined;
    return this.entries[index - this.snapshotIndex - 1];
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Raft §5.4.1: a candidate's log is at least as up-to-date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Entries [from, to] (inclusive), cut short after `countMax` entries or once `bytesMax` is
   * reached, but never empty when the range is not: one oversized entry must still travel.
   */
  slice(from: number, to: number, countMax: number, bytesMax: number): Entry[] {
    invariant(from > this.snapshotIndex, () => `slice from ${from} reaches into the snapshot (index ${this.snapshotIndex})`);
    const last = Math.min(to, this.lastIndex());
    const result: Entry[] = [];
    let bytes = 0;
    for (let index = from; index <= last && result.length < countMax; index += 1) {
      const entry = this.entries[index - this.snapshotIndex - 1]!;
      bytes += entry.data.byteLength;
      if (result.length > 0 && bytes > bytesMax) break;
      result.push(entry);
    }
    return result;
  }

  /**
   * The largest index <= `index` whose term is <= `term`, with that term. Used on both ends of a
   * rejected append to skip a whole conflicting term (the "fast backtracking" of Raft §5.3).
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let at = Math.min(index, this.lastIndex());
    while (at > this.snapshotIndex) {
      const atTerm = this.term(at)!;
      if (atTerm <= term) return { index: at, term: atTerm };
      at -= 1;
    }
    // Inside the snapshot the terms are unknown; the snapshot point is the best hint we have.
    return { index: at, term: this.term(at) ?? 0 };
  }

  /** Leader path: appends entries that follow the last index. A leader never overwrites. */
  appendOwn(entry: Entry): void {
    invariant(entry.index === this.lastIndex() + 1, () => `a leader appended entry ${entry.index} after ${this.lastIndex()}: a leader never overwrites its log`);
    invariant(entry.term >= this.lastTerm(), () => `entry ${entry.index} has term ${entry.term} below the last term ${this.lastTerm()}`);
    this.entries.push(entry);
  }

  /**
   * Follower path (Raft §5.3): if our log has (prevIndex, prevTerm), drop any conflicting suffix,
   * append what is new, and return the index of the last entry the leader sent; otherwise null.
   * Reports the lowest overwritten index through `onTruncate` so durability can be tracked.
   */
  maybeAppend(prevIndex: number, prevTerm: number, entries: readonly Entry[], onTruncate: (index: number) => void): number | null {
    if (!this.matchTerm(prevIndex, prevTerm)) return null;
    const lastNew = prevIndex + entries.length;
    for (let i = 0; i < entries.length; i += 1) {
      const entry = entries[i]!;
      invariant(entry.index === prevIndex + 1 + i, () => `append carries entry ${entry.index} at position ${i} after ${prevIndex}`);
      if (entry.index <= this.snapshotIndex) continue; // already folded into our snapshot
      const existing = this.term(entry.index);
      if (existing === entry.term) continue;
      if (existing !== undefined) {
        invariant(entry.index > this.committed, () => `entry ${entry.index} conflicts with a committed entry (commit ${this.committed}): committed entries never change`);
        this.entries.length = entry.index - this.snapshotIndex - 1;
        onTruncate(entry.index);
      }
      for (let j = i; j < entries.length; j += 1) this.entries.push(entries[j]!);
      break;
    }
    return lastNew;
  }

  commitTo(index: number): boolean {
    if (index <= this.committed) return false;
    invariant(index <= this.lastIndex(), () => `commit ${index} is beyond the last entry ${this.lastIndex()}`);
    this.committed = index;
    return true;
  }

  /** Folds entries up to `index` into a snapshot the application produced; returns null if stale. */
  compact(index: number, data: Uint8Array): Snapshot | null {
    if (index <= this.snapshotIndex) return null;
    invariant(index <= this.applied, () => `compact(${index}) is beyond applied ${this.applied}: only applied state can be snapshotted`);
    invariant(index < this.unstableFrom, () => `compact(${index}) reaches entries not yet persisted (from ${this.unstableFrom})`);
    const term = this.term(index)!;
    this.entries = this.entries.slice(index - this.snapshotIndex);
    this.snapshotIndex = index;
    this.snapshotTerm = term;
    this.snapshot = { index, term, data };
    return this.snapshot;
  }

  /** Replaces the whole log by a snapshot received from the leader (Raft §7). */
  restoreSnapshot(snapshot: Snapshot): void {
    invariant(snapshot.index > this.committed, () => `snapshot ${snapshot.index} would roll back commit ${this.committed}`);
    this.entries = [];
    this.snapshotIndex = snapshot.index;
    this.snapshotTerm = snapshot.term;
    this.snapshot = snapshot;
    this.pendingSnapshot = snapshot;
    this.committed = snapshot.index;
    this.unstableFrom = snapshot.index + 1;
  }

  unstableEntries(): Entry[] {
    if (this.unstableFrom > this.lastIndex()) return [];
    return this.entries.slice(this.unstableFrom - this.snapshotIndex - 1);
  }

  /** The committed entries the application has not applied yet, at most about `bytesMax`. */
  nextCommittedEntries(bytesMax: number): Entry[] {
    const from = Math.max(this.applied, this.pendingSnapshot?.index ?? 0) + 1;
    if (from > this.committed) return [];
    return this.slice(from, this.committed, Number.MAX_SAFE_INTEGER, bytesMax);
  }
}

export function noopEntry(index: number, term: number): Entry {
  return { index, term, type: 'noop', data: emptyData };
}
