/**
 * The membership view's rules, with a fake clock: when a member is alive, suspect or dead, which
 * heartbeats count, and which events each change produces.
 */

import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createMemberView } from '../node/cluster/host/index.ts';
import type { MemberEvent, MemberViewNotes } from '../node/cluster/host/index.ts';

const timings = { suspectMs: 300, deadMs: 600 };

function heartbeat(name: string, seq: number, overrides: Record<string, unknown> = {}) {
  return {
    name,
    peerId: `peer-${name}`,
    role: 'voter' as const,
    gateway: `ws://127.0.0.1:77${name.length}`,
    addresses: [],
    load: { workers: 2, inFlight: 0, queue: 0 },
    raft: undefined,
    seq,
    startedAt: 1000,
    ...overrides,
  };
}

const kinds = (events: MemberEvent[]) => events.map((event) => `${event.type} ${event.member.name} ${event.member.status}`);

test('a first heartbeat brings a member up; later ones with only new load raise no event', () => {
  const view = createMemberView('self', timings);
  assert.equal(kinds(view.observe(heartbeat('n1', 1), 0)), ['member:up n1 alive']);
  assert.equal(kinds(view.observe(heartbeat('n1', 2, { load: { workers: 2, inFlight: 5, queue: 1 } }), 100)), []);
  assert.equal(view.get('n1', 150)?.load, { workers: 2, inFlight: 5, queue: 1 });
  assert.is(view.get('n1', 150)?.heartbeatAgeMs, 50);
});

test('silence turns a member suspect at suspectMs and dead at deadMs; a heartbeat brings it back up', () => {
  const view = createMemberView('self', timings);
  view.observe(heartbeat('n1', 1), 0);
  assert.equal(kinds(view.sweep(299)), []);
  assert.equal(kinds(view.sweep(300)), ['member:changed n1 suspect']);
  assert.equal(kinds(view.sweep(599)), []);
  assert.equal(kinds(view.sweep(600)), ['member:down n1 dead']);
  assert.equal(kinds(view.sweep(5000)), [], 'dead is reported once');
  assert.equal(kinds(view.observe(heartbeat('n1', 2), 5000)), ['member:up n1 alive']);
});

test('a suspect member that speaks again is alive again (changed, not up)', () => {
  const view = createMemberView('self', timings);
  view.observe(heartbeat('n1', 1), 0);
  view.sweep(350);
  assert.equal(kinds(view.observe(heartbeat('n1', 2), 360)), ['member:changed n1 alive']);
});

test('late or repeated heartbeats of the same run are ignored: they do not refresh liveness', () => {
  const view = createMemberView('self', timings);
  view.observe(heartbeat('n1', 5), 0);
  assert.equal(kinds(view.observe(heartbeat('n1', 5), 250)), []);
  assert.equal(kinds(view.observe(heartbeat('n1', 3), 250)), []);
  assert.equal(kinds(view.sweep(300)), ['member:changed n1 suspect'], 'the stale heartbeats did not count');
});

test('a restart (new startedAt) resets the sequence; a heartbeat of the older run is then ignored', () => {
  const view = createMemberView('self', timings);
  view.observe(heartbeat('n1', 40), 0);
  assert.equal(kinds(view.observe(heartbeat('n1', 1, { startedAt: 2000 }), 100)), ['member:changed n1 alive']);
  assert.equal(kinds(view.observe(heartbeat('n1', 41), 150)), []);
  assert.is(view.get('n1', 150)?.startedAt, 2000);
});

test('raft info and role changes are news; the name → peer id map follows a new identity', () => {
  const view = createMemberView('self', timings);
  view.observe(heartbeat('n1', 1), 0);
  const events = view.observe(heartbeat('n1', 2, { raft: { term: 3, role: 'leader', leader: 'n1' } }), 50);
  assert.equal(kinds(events), ['member:changed n1 alive']);
  assert.is(events[0].previous?.raft, undefined);
  assert.is(view.nameOf('peer-n1'), 'n1');
  const notes: MemberViewNotes = {};
  view.observe(heartbeat('n1', 1, { peerId: 'peer-new', startedAt: 3000 }), 60, notes);
  assert.ok(notes.conflict !== undefined, 'a live name taken by another peer is reported');
  assert.is(view.nameOf('peer-new'), 'n1');
  assert.is(view.nameOf('peer-n1'), undefined);
});

test('heartbeats naming this node are not members; the list is sorted by name', () => {
  const view = createMemberView('self', timings);
  assert.equal(view.observe(heartbeat('self', 1), 0), []);
  view.observe(heartbeat('zz', 1), 0);
  view.observe(heartbeat('aa', 1), 0);
  assert.equal(view.list(0).map((member) => member.name), ['aa', 'zz']);
});

test.run();
