/**
 * What a leader knows about one follower's log, and how fast it may send to it (etcd's tracker):
 *  - probe: we do not know where the logs match; one append in flight at a time until a reply;
 *  - replicate: the logs match up to `match`; stream appends, at most `inflightMax` unacknowledged;
 *  - snapshot: the follower needs entries we compacted; wait for it to install the snapshot.
 */
import type { ProgressState, ProgressStatus } from './types.ts';

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = 'probe';
  /** In probe state: an append is in flight, so wait for its reply (or a heartbeat reply). */
  probeSent = false;
  /** Last index of each unacknowledged append, oldest first (replicate state only). */
  inflight: number[] = [];
  readonly inflightMax: number;
  pendingSnapshotIndex = 0;
  snapshotTicks = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  learner: boolean;

  constructor(next: number, inflightMax: number, learner: boolean) {
    this.next = next;
    this.inflightMax = inflightMax;
    this.learner = learner;
  }

  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent;
      case 'replicate':
        return this.inflight.length >= this.inflightMax;
      case 'snapshot':
        return true;
    }
  }

  becomeProbe(): void {
    // After a snapshot the follower has at least the snapshot, so probe right after it.
    const floor = this.state === 'snapshot' ? Math.max(this.match, this.pendingSnapshotIndex) : this.match;
    this.state = 'probe';
    this.next = floor + 1;
    this.resetFlow();
  }

  becomeReplicate(): void {
    this.state = 'replicate';
    this.next = this.match + 1;
    this.resetFlow();
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.state = 'snapshot';
    this.pendingSnapshotIndex = snapshotIndex;
    this.snapshotTicks = 0;
    this.probeSent = false;
    this.inflight.length = 0;
  }

  /** A success reply for `index`; returns true if it taught us something new. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /**
   * A rejection of the append whose prevLogIndex was `rejected`; `hint` is where the leader's own
   * log suggests trying next. Returns false for a stale rejection (one we already moved past).
   */
  maybeDecrementTo(rejected: number, hint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  /** Records an append that ends at `lastIndex` as sent. */
  sentEntries(lastIndex: number): void {
    if (this.state === 'replicate') {
      this.next = lastIndex + 1;
      this.inflight.push(lastIndex);
    } else if (this.state === 'probe') {
      this.probeSent = true;
    }
  }

  /** Frees every in-flight append acknowledged by a success for `index`. */
  acknowledge(index: number): void {
    let freed = 0;
    while (freed < this.inflight.length && this.inflight[freed]! <= index) freed += 1;
    if (freed > 0) this.inflight.splice(0, freed);
  }

  /** A heartbeat reply shows the follower is alive: let one more append through (etcd does so too). */
  heardFrom(): void {
    this.recentActive = true;
    if (this.state === 'probe') this.probeSent = false;
    if (this.state === 'replicate' && this.inflight.length >= this.inflightMax) this.inflight.shift();
  }

  status(): ProgressStatus {
    return { match: this.match, next: this.next, state: this.state, recentActive: this.recentActive, learner: this.learner };
  }

  private resetFlow(): void {
    this.probeSent = false;
    this.inflight.length = 0;
    this.pendingSnapshotIndex = 0;
    this.snapshotTicks = 0;
  }
}
