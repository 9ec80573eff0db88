/**
 * The applied state of the replicated state machine: a key-value view in LevelDB.
 *
 * Every voter (and learner) applies the same committed commands in the same order, so every copy of
 * this view is the same at the same applied index. A command is a guarded batch: its writes happen
 * only if every guard holds against the state as applied so far, which makes compare-and-set (leases,
 * "only one completion of a chunk is committed") a decision of the log, identical on every node.
 */
import { decode, encode } from 'cborg';
import type { Level } from 'level';
import { isDeepStrictEqual } from 'node:util';

export type StateValue = null | boolean | number | string | StateValue[] | { [key: string]: StateValue };

export type StateOp = { op: 'put'; key: string; value: StateValue } | { op: 'del'; key: string };

/** Holds when the key's current value is deep-equal to `equals` (null: the key is absent). */
export interface StateGuard {
  key: string;
  equals: StateValue;
}

export interface StateCommand {
  /** Unique per proposal, so the proposer can recognise its command when it is applied. */
  id: string;
  guards?: StateGuard[];
  ops: StateOp[];
}

export interface ApplyResult {
  id: string;
  index: number;
  /** False when a guard did not hold; then nothing was written. */
  applied: boolean;
}

export interface StateChange {
  index: number;
  command: StateCommand;
  applied: boolean;
}

const appliedIndexKey = 'applied-index';
const keyBytesMax = 1024;

export function encodeCommand(command: StateCommand): Uint8Array {
  return encode(command);
}

export function decodeCommand(bytes: Uint8Array): StateCommand {
  const command = decode(bytes) as StateCommand;
  if (typeof command?.id !== 'string' || !Array.isArray(command.ops)) throw new Error('replicated command is malformed: missing id or ops');
  return command;
}

export function validateCommand(command: StateCommand): void {
  for (const op of command.ops) {
    if (op.op !== 'put' && op.op !== 'del') throw new Error(`command ${command.id}: unknown op ${(op as { op: string }).op}`);
    if (typeof op.key !== 'string' || op.key.length === 0 || op.key.length > keyBytesMax) throw new Error(`command ${command.id}: bad key`);
  }
}

function deepEqual(a: StateValue | undefined, b: StateValue): boolean {
  if (a === undefined) return b === null;
  return isDeepStrictEqual(a, b);
}

export interface StateStore {
  appliedIndex(): number;
  get(key: string): Promise<StateValue | undefined>;
  /** Entries whose key starts with `prefix`, in key order. */
  list(prefix: string, limit?: number): Promise<Array<[string, StateValue]>>;
  /**
   * Applies consecutive committed entries (a command, or null for an entry without one) in one
   * atomic write: guards are read once, then checked in log order against the state as each
   * earlier entry of the batch leaves it. Returns, per entry, whether its command was applied.
   */
  applyBatch(entries: ReadonlyArray<{ index: number; command: StateCommand | null }>): Promise<boolean[]>;
  /** The whole state as bytes, for a Raft snapshot at the current applied index. */
  exportSnapshot(): Promise<Uint8Array>;
  /** Replaces the whole state with a snapshot's, as of `index`. */
  importSnapshot(index: number, data: Uint8Array): Promise<void>;
}

export async function openStateStore(db: Level<string, unknown>): Promise<StateStore> {
  const state = db.sublevel<string, StateValue>('state', { valueEncoding: 'json' });
  const meta = db.sublevel<string, number>('state-meta', { valueEncoding: 'json' });
  let appliedIndex = (await meta.get(appliedIndexKey)) ?? 0;

  function checkNextIn(index: number, previous: number): void {
    if (index !== previous + 1) throw new Error(`state store: applying index ${index} after ${previous} would skip or repeat entries`);
  }


  return {
    appliedIndex: () => appliedIndex,
    get: (key) => state.get(key),
    async list(prefix, limit = Infinity) {
      const out: Array<[string, StateValue]> = [];
      for await (const [key, value] of state.iterator({ gte: prefix, lt: `${prefix}\uffff`, limit: Number.isFinite(limit) ? limit : -1 })) {
        out.push([key, value]);
      }
      return out;
    },
    async applyBatch(entries) {
      if (entries.length === 0) return [];
      entries.forEach((entry, i) => checkNextIn(entry.index, i === 0 ? appliedIndex : entries[i - 1].index));
      const guardKeys = [...new Set(entries.flatMap((entry) => (entry.command?.guards ?? []).map((guard) => guard.key)))];
      const fetched = guardKeys.length === 0 ? [] : await state.getMany(guardKeys);
      // What the batch has written so far; `undefined` marks a deleted key.
      const overlay = new Map<string, StateValue | undefined>(guardKeys.map((key, i) => [key, fetched[i]]));
      const batch = db.batch();
      const results = entries.map(({ command }) => {
        if (command === null) return false;
        const holds = (command.guards ?? []).every((guard) => deepEqual(overlay.get(guard.key), guard.equals));
        if (!holds) return false;
        for (const op of command.ops) {
          if (op.op === 'put') {
            batch.put(op.key, op.value, { sublevel: state });
            overlay.set(op.key, op.value);
          } else {
            batch.del(op.key, { sublevel: state });
            overlay.set(op.key, undefined);
          }
        }
        return true;
      });
      const last = entries[entries.length - 1].index;
      batch.put(appliedIndexKey, last, { sublevel: meta });
      await batch.write();
      appliedIndex = last;
      return results;
    },
    async exportSnapshot() {
      const entries: Array<[string, StateValue]> = [];
      for await (const entry of state.iterator()) entries.push(entry);
      return encode({ index: appliedIndex, entries });
    },
    async importSnapshot(index, data) {
      const snapshot = decode(data) as { index: number; entries: Array<[string, StateValue]> };
      if (snapshot.index !== index) throw new Error(`state snapshot says index ${snapshot.index}, Raft says ${index}`);
      // One batch: a crash never leaves the old applied index over a half-replaced state.
      const batch = db.batch();
      for await (const key of state.keys()) batch.del(key, { sublevel: state });
      for (const [key, value] of snapshot.entries) batch.put(key, value, { sublevel: state });
      batch.put(appliedIndexKey, index, { sublevel: meta });
      await batch.write();
      appliedIndex = index;
    },
  };
}
