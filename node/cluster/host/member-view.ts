/**
 * The membership view as a pure state machine: heartbeats and clock readings go in, member events
 * come out. No timers or sockets here, so the rules (alive → suspect → dead, restarts, duplicates)
 * can be checked with a fake clock.
 */

import type { Heartbeat } from './heartbeat.ts';
import type { Member, MemberEventType, MemberStatus } from './types.ts';

export interface MemberTimings {
  suspectMs: number;
  deadMs: number;
}

export interface MemberEvent {
  type: MemberEventType;
  member: Member;
  previous: Member | undefined;
}

export interface MemberViewNotes {
  /** A heartbeat for a name another live peer holds: two nodes share a name. */
  conflict?: { name: string; peerIds: [string, string] };
}

/** Beyond this many remembered members, the longest-dead one is forgotten. */
export const membersMax = 256;

interface Entry {
  member: Member;
  /** Monotonic ms of the last accepted heartbeat. */
  seenMs: number;
}

export interface MemberView {
  /** Applies a heartbeat received at `nowMs`; returns the events it causes. */
  observe(heartbeat: Heartbeat, nowMs: number, notes?: MemberViewNotes): MemberEvent[];
  /** Re-evaluates statuses at `nowMs`; returns the events (suspect, dead) that time caused. */
  sweep(nowMs: number): MemberEvent[];
  /** Other members (not self), sorted by name, ages as of `nowMs`. */
  list(nowMs: number): Member[];
  get(name: string, nowMs: number): Member | undefined;
  /** The name a live or dead member with this peer id last used. */
  nameOf(peerId: string): string | undefined;
}

export function createMemberView(selfName: string, timings: MemberTimings): MemberView {
  if (!(timings.suspectMs < timings.deadMs)) throw new Error('suspectMs must be below deadMs');
  return new MemberTable(selfName, timings);
}

class MemberTable implements MemberView {
  readonly #selfName: string;
  readonly #timings: MemberTimings;
  readonly #entries = new Map<string, Entry>();
  readonly #namesByPeerId = new Map<string, string>();

  constructor(selfName: string, timings: MemberTimings) {
    this.#selfName = selfName;
    this.#timings = timings;
  }

  observe(heartbeat: Heartbeat, nowMs: number, notes?: MemberViewNotes): MemberEvent[] {
    if (heartbeat.name === this.#selfName) return [];
    const current = this.#entries.get(heartbeat.name);
    if (!this.#accepts(heartbeat, current, notes)) return [];
    const member = memberOf(heartbeat);
    this.#entries.set(member.name, { member, seenMs: nowMs });
    this.#rename(current, member);
    if (current === undefined || current.member.status === 'dead') {
      return [{ type: 'member:up', member, previous: current?.member }];
    }
    if (differs(current.member, member)) return [{ type: 'member:changed', member, previous: current.member }];
    return [];
  }

  /** Whether a heartbeat says anything new about the member `current` holds (and there is room for it). */
  #accepts(heartbeat: Heartbeat, current: Entry | undefined, notes: MemberViewNotes | undefined): boolean {
    const sameRun = current !== undefined && current.member.peerId === heartbeat.peerId && current.member.startedAt === heartbeat.startedAt;
    // Gossip may deliver a run's heartbeats late or twice; only newer ones say anything.
    if (sameRun && heartbeat.seq <= current.member.seq) return false;
    // An older run of a member (same peer, earlier start) cannot override its newer run.
    if (current !== undefined && current.member.peerId === heartbeat.peerId && heartbeat.startedAt < current.member.startedAt) return false;
    if (current !== undefined && current.member.peerId !== heartbeat.peerId && current.member.status !== 'dead' && notes !== undefined) {
      notes.conflict = { name: heartbeat.name, peerIds: [current.member.peerId, heartbeat.peerId] };
    }
    return !(current === undefined && this.#entries.size >= membersMax && !this.#evictOneDead());
  }

  /** Points the member's peer id at its name, and forgets the peer id the name had before, if another. */
  #rename(current: Entry | undefined, member: Member): void {
    if (current !== undefined && current.member.peerId !== member.peerId && this.#namesByPeerId.get(current.member.peerId) === member.name) {
      this.#namesByPeerId.delete(current.member.peerId);
    }
    this.#namesByPeerId.set(member.peerId, member.name);
  }

  /** Makes room for one more member; false when every remembered member is still live. */
  #evictOneDead(): boolean {
    let oldest: Entry | undefined;
    for (const entry of this.#entries.values()) {
      if (entry.member.status === 'dead' && (oldest === undefined || entry.seenMs < oldest.seenMs)) oldest = entry;
    }
    if (oldest === undefined) return false;
    this.#entries.delete(oldest.member.name);
    if (this.#namesByPeerId.get(oldest.member.peerId) === oldest.member.name) this.#namesByPeerId.delete(oldest.member.peerId);
    return true;
  }

  sweep(nowMs: number): MemberEvent[] {
    const events: MemberEvent[] = [];
    for (const entry of this.#entries.values()) {
      const status = this.#statusAt(entry, nowMs);
      if (status === entry.member.status) continue;
      const previous = entry.member;
      entry.member = { ...previous, status };
      const member = withAge(entry, nowMs);
      events.push({ type: status === 'dead' ? 'member:down' : 'member:changed', member, previous });
    }
    return events;
  }

  #statusAt(entry: Entry, nowMs: number): MemberStatus {
    const ageMs = nowMs - entry.seenMs;
    if (ageMs >= this.#timings.deadMs) return 'dead';
    if (ageMs >= this.#timings.suspectMs) return 'suspect';
    return 'alive';
  }

  list(nowMs: number): Member[] {
    return [...this.#entries.values()].map((entry) => withAge(entry, nowMs)).sort((a, b) => (a.name < b.name ? -1 : 1));
  }

  get(name: string, nowMs: number): Member | undefined {
    const entry = this.#entries.get(name);
    return entry === undefined ? undefined : withAge(entry, nowMs);
  }

  nameOf(peerId: string): string | undefined {
    return this.#namesByPeerId.get(peerId);
  }
}

function withAge(entry: Entry, nowMs: number): Member {
  return { ...entry.member, heartbeatAgeMs: Math.max(0, Math.round(nowMs - entry.seenMs)) };
}

/** The member a heartbeat describes, alive as of now. */
function memberOf(heartbeat: Heartbeat): Member {
  return {
    name: heartbeat.name,
    peerId: heartbeat.peerId,
    role: heartbeat.role,
    gateway: heartbeat.gateway,
    addresses: heartbeat.addresses,
    status: 'alive',
    self: false,
    load: heartbeat.load,
    raft: heartbeat.raft,
    seq: heartbeat.seq,
    startedAt: heartbeat.startedAt,
    heartbeatAgeMs: 0,
  };
}

/** The fields whose change is news to listeners (load and seq move every heartbeat). */
function differs(a: Member, b: Member): boolean {
  return (
    a.status !== b.status ||
    a.peerId !== b.peerId ||
    a.role !== b.role ||
    a.gateway !== b.gateway ||
    a.startedAt !== b.startedAt ||
    a.addresses.join(' ') !== b.addresses.join(' ') ||
    a.raft?.term !== b.raft?.term ||
    a.raft?.role !== b.raft?.role ||
    a.raft?.leader !== b.raft?.leader
  );
}
