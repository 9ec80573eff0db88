/**
 * Stable storage for the Raft core in LevelDB: the hard state (term, vote, commit), the log, and the
 * last snapshot. Everything a Ready asks to persist is written in one LevelDB batch (atomic and, with
 * `sync`, durable) before any of its messages may leave the node.
 */
import { decode, encode } from 'cborg';
import type { Level } from 'level';
import type { Entry, HardState, PersistedState, Ready, Snapshot } from './raft/index.ts';

/** Indexes as fixed-width decimal strings, so LevelDB's byte order is numeric order. */
function indexKey(index: number): string {
  return index.toString().padStart(16, '0');
}

export interface RaftStorage {
  load(): Promise<PersistedState>;
  /** Persists step 1 of a Ready: snapshot, truncation, new entries, hard state; one atomic batch. */
  persist(ready: Ready): Promise<void>;
  /** Stores a snapshot the application took and drops the entries it covers (log compaction). */
  compact(snapshot: Snapshot): Promise<void>;
}

export function createRaftStorage(db: Level<string, unknown>, options: { sync?: boolean } = {}): RaftStorage {
  const log = db.sublevel<string, Uint8Array>('raft-log', { valueEncoding: 'view' });
  const meta = db.sublevel<string, Uint8Array>('raft-meta', { valueEncoding: 'view' });
  const sync = options.sync ?? true;

  async function keysInRange(range: { gte?: string; lte?: string }): Promise<string[]> {
    const keys: string[] = [];
    for await (const key of log.keys(range)) keys.push(key);
    return keys;
  }

  return {
    async load() {
      const hardBytes = await meta.get('hard-state');
      const snapshotBytes = await meta.get('snapshot');
      const hardState: HardState = hardBytes ? (decode(hardBytes) as HardState) : { term: 0, vote: null, commit: 0 };
      const snapshot = snapshotBytes ? (decode(snapshotBytes) as Snapshot) : null;
      const entries: Entry[] = [];
      for await (const [key, value] of log.iterator()) {
        const entry = decode(value) as Entry;
        if (indexKey(entry.index) !== key) throw new Error(`raft storage: entry under key ${key} says index ${entry.index}`);
        const expected = entries.length > 0 ? entries[entries.length - 1].index + 1 : (snapshot?.index ?? 0) + 1;
        if (entry.index !== expected) throw new Error(`raft storage: log has a gap: expected index ${expected}, found ${entry.index}`);
        entries.push(entry);
      }
      return { hardState, snapshot, entries };
    },

    async persist(ready) {
      if (ready.snapshot === null && ready.truncateIndex === null && ready.entries.length === 0 && ready.hardState === null) return;
      const batch = db.batch();
      if (ready.snapshot !== null) {
        batch.put('snapshot', encode(ready.snapshot), { sublevel: meta });
        for (const key of await keysInRange({})) batch.del(key, { sublevel: log });
      }
      if (ready.truncateIndex !== null) {
        for (const key of await keysInRange({ gte: indexKey(ready.truncateIndex) })) batch.del(key, { sublevel: log });
      }
      for (const entry of ready.entries) batch.put(indexKey(entry.index), encode(entry), { sublevel: log });
      if (ready.hardState !== null) batch.put('hard-state', encode(ready.hardState), { sublevel: meta });
      await batch.write({ sync });
    },

    async compact(snapshot) {
      const batch = db.batch();
      batch.put('snapshot', encode(snapshot), { sublevel: meta });
      for (const key of await keysInRange({ lte: indexKey(snapshot.index) })) batch.del(key, { sublevel: log });
      await batch.write({ sync });
    },
  };
}
