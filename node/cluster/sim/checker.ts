/**
 * The safety rules of Raft, checked from outside the cores against global histories:
 *  - Election Safety (Raft §5.2): at most one leader per term, ever.
 *  - Leader Completeness (§5.4): a new leader's log holds every entry committed so far.
 *  - State Machine Safety (§5.4.3): an index, once committed anywhere, always names the same entry,
 *    on every node, across crashes; every node applies the same sequence (a digest chain makes
 *    this checkable across snapshots, which replace a prefix of the sequence by its digest).
 *  - Commit indices never go back within one incarnation of a node.
 */
import type { Entry, RaftCore } from '../raft/index.ts';
import { SimulationFailure } from './failure.ts';
import { cloneEntry } from './storage.ts';

function sameEntry(a: Entry, b: Entry): boolean {
  if (a.index !== b.index || a.term !== b.term || a.type !== b.type || a.data.byteLength !== b.data.byteLength) return false;
  for (let i = 0; i < a.data.byteLength; i += 1) if (a.data[i] !== b.data[i]) return false;
  return true;
}

function describe(entry: Entry): string {
  return `{index ${entry.index}, term ${entry.term}, ${entry.type}, ${new TextDecoder().decode(entry.data) || '-'}}`;
}

/** FNV-1a over the previous digest and the entry: the application state of the simulation. */
export function chainDigest(previous: number, entry: Entry): number {
  let hash = (0x811c9dc5 ^ previous) >>> 0;
  const mix = (byte: number): void => {
    hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  };
  for (const value of [entry.index, entry.term, entry.type === 'noop' ? 1 : 0]) {
    mix(value & 0xff);
    mix((value >>> 8) & 0xff);
    mix((value >>> 16) & 0xff);
    mix((value >>> 24) & 0xff);
  }
  for (let i = 0; i < entry.data.byteLength; i += 1) mix(entry.data[i]!);
  return hash;
}

export class SafetyChecker {
  readonly #leaderByTerm = new Map<number, string>();
  /** committed[index]: the entry first seen committed at that index. */
  readonly #committed: Entry[] = [];
  /** digests[index]: the application digest after applying up to index, as first observed. */
  readonly #digests: number[] = [0];
  committedMax = 0;
  leadersElected = 0;

  fail(message: string): never {
    throw new SimulationFailure('safety', message);
  }

  observeLeader(nodeId: string, term: number, core: RaftCore): void {
    const existing = this.#leaderByTerm.get(term);
    if (existing === undefined) {
      this.#leaderByTerm.set(term, nodeId);
      this.leadersElected += 1;
      this.#checkLeaderComplete(nodeId, core);
    } else if (existing !== nodeId) {
      this.fail(`election safety: ${existing} and ${nodeId} are both leaders of term ${term}`);
    }
  }

  /** Every entry at an index the node has committed matches the global history (or records it). */
  observeCommitted(nodeId: string, core: RaftCore, from: number, to: number): void {
    for (let index = Math.max(from, core.snapshotIndex + 1); index <= to; index += 1) {
      const entry = core.entryAt(index);
      if (entry === undefined) this.fail(`${nodeId} has commit ${to} but no entry at ${index} (last ${core.lastIndex})`);
      this.#observeEntry(nodeId, entry);
    }
  }

  observeApplied(nodeId: string, entry: Entry, digest: number): void {
    this.#observeEntry(nodeId, entry);
    const known = this.#digests[entry.index];
    if (known === undefined) {
      this.#digests[entry.index] = digest;
    } else if (known !== digest) {
      this.fail(`state machine safety: ${nodeId} applied up to ${entry.index} reaching digest ${digest}, others reached ${known}`);
    }
  }

  /** A snapshot installed by a node must carry the state others reached at that index. */
  observeSnapshotState(nodeId: string, index: number, digest: number): void {
    const known = this.#digests[index];
    if (known === undefined) this.fail(`${nodeId} installed a snapshot at ${index} that no node ever applied up to`);
    if (known !== digest) this.fail(`state machine safety: ${nodeId} installed a snapshot at ${index} with digest ${digest}, others reached ${known}`);
  }

  committedEntry(index: number): Entry | undefined {
    return this.#committed[index];
  }

  #observeEntry(nodeId: string, entry: Entry): void {
    const known = this.#committed[entry.index];
    if (known === undefined) {
      this.#committed[entry.index] = cloneEntry(entry);
      if (entry.index > this.committedMax) this.committedMax = entry.index;
    } else if (!sameEntry(known, entry)) {
      this.fail(`state machine safety: ${nodeId} has ${describe(entry)} committed where ${describe(known)} was committed before`);
    }
  }

  #checkLeaderComplete(nodeId: string, core: RaftCore): void {
    for (let index = core.snapshotIndex + 1; index <= this.committedMax; index += 1) {
      const known = this.#committed[index];
      if (known === undefined) continue;
      const entry = core.entryAt(index);
      if (entry === undefined || !sameEntry(known, entry)) {
        this.fail(`leader completeness: new leader ${nodeId} (term ${core.term}) lacks committed ${describe(known)}; it has ${entry === undefined ? 'nothing' : describe(entry)}`);
      }
    }
  }
}
