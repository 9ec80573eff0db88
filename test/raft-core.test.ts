/**
 * Focused tests of the Raft core's rules. Each names the rule it checks and where it comes from:
 * the Raft paper (extended version, §n) or Ongaro's thesis (pre-vote, check-quorum, §n).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { emptyPersistedState, handleReady, RaftCore } from '../node/cluster/raft/index.ts';
import type { AppendResponse, Entry, Message, PersistedState, RaftConfig, Ready } from '../node/cluster/raft/index.ts';
import { SeededRandom, SimStorage } from '../node/cluster/sim/index.ts';

const electionTicks = 10;
const encoder = new TextEncoder();
const bytes = (text: string): Uint8Array => encoder.encode(text);
const text = (data: Uint8Array): string => new TextDecoder().decode(data);

function entry(index: number, term: number, data = ''): Entry {
  return { index, term, type: data === '' ? 'noop' : 'normal', data: bytes(data) };
}

function configFor(id: string, voters: string[], extra: Partial<RaftConfig> = {}): RaftConfig {
  const random = new SeededRandom(id.charCodeAt(id.length - 1));
  return { id, voters, electionTicks, heartbeatTicks: 2, random: () => random.next(), ...extra };
}

interface TestNode {
  core: RaftCore;
  storage: SimStorage;
  applied: Entry[];
  snapshotsApplied: number;
}

/**
 * A small in-memory cluster with instant, in-order delivery and switchable links. It drives every
 * core through handleReady, so the persist-then-send order holds as it would in production.
 */
class Cluster {
  readonly nodes = new Map<string, TestNode>();
  readonly voters: string[];
  readonly learners: string[];
  readonly #cut = new Set<string>();
  readonly #queue: Message[] = [];
  readonly #extra: Partial<RaftConfig>;
  /** Every message delivered, in order. */
  readonly delivered: Message[] = [];

  constructor(voters: string[], learners: string[] = [], extra: Partial<RaftConfig> = {}) {
    this.voters = voters;
    this.learners = learners;
    this.#extra = extra;
    for (const id of [...voters, ...learners]) this.start(id, emptyPersistedState());
  }

  start(id: string, persisted: PersistedState): TestNode {
    const storage = this.nodes.get(id)?.storage ?? new SimStorage(id);
    storage.hardState = { ...persisted.hardState };
    storage.snapshot = persisted.snapshot;
    storage.entries = [...persisted.entries];
    const core = new RaftCore(configFor(id, this.voters, { learners: this.learners, ...this.#extra }), persisted);
    const node: TestNode = { core, storage, applied: [], snapshotsApplied: 0 };
    this.nodes.set(id, node);
    return node;
  }

  /** Rebuilds a node from its stable storage only, as after a crash. */
  restart(id: string): TestNode {
    return this.start(id, this.node(id).storage.load());
  }

  node(id: string): TestNode {
    const node = this.nodes.get(id);
    if (node === undefined) throw new Error(`no node ${id}`);
    return node;
  }

  core(id: string): RaftCore {
    return this.node(id).core;
  }

  isolate(id: string): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.#cut.add(`${id}>${other}`);
      this.#cut.add(`${other}>${id}`);
    }
  }

  heal(): void {
    this.#cut.clear();
  }

  /** Handles every Ready and delivers every message until the cluster is quiet. */
  stabilize(): void {
    for (let round = 0; round < 1000; round += 1) {
      let busy = false;
      for (const [id, node] of this.nodes) {
        busy =
          handleReady(node.core, {
            persist: (ready) => node.storage.persist(ready),
            send: (messages) => this.#queue.push(...messages),
            apply: (snapshot, entries) => {
              if (snapshot !== null) node.snapshotsApplied += 1;
              node.applied.push(...entries);
            },
          }) || busy;
        void id;
      }
      while (this.#queue.length > 0) {
        busy = true;
        const message = this.#queue.shift()!;
        if (this.#cut.has(`${message.from}>${message.to}`)) continue;
        this.delivered.push(message);
        this.nodes.get(message.to)?.core.step(message);
      }
      if (!busy) return;
    }
    throw new Error('cluster did not become quiet');
  }

  tickAll(ticks: number): void {
    for (let i = 0; i < ticks; i += 1) {
      for (const node of this.nodes.values()) node.core.tick();
      this.stabilize();
    }
  }

  /** Ticks only `id` until it wins an election (others are quiet, so nobody competes). */
  elect(id: string): void {
    const core = this.core(id);
    for (let i = 0; i < 4 * electionTicks && core.role !== 'leader'; i += 1) {
      core.tick();
      this.stabilize();
    }
    assert.is(core.role, 'leader', `${id} should have won the election`);
  }

  leaders(): string[] {
    return [...this.nodes.entries()].filter(([, node]) => node.core.role === 'leader').map(([id]) => id);
  }
}

/** Drains a lone core's Ready (persisting into `storage`) and returns the messages it wanted to send. */
function drain(core: RaftCore, storage = new SimStorage(core.id)): Message[] {
  const sent: Message[] = [];
  while (handleReady(core, { persist: (ready) => storage.persist(ready), send: (messages) => sent.push(...messages), apply: () => {} })) {
    // keep going until the core has nothing more to say
  }
  return sent;
}

function persistedWith(term: number, entries: Entry[], commit = 0, vote: string | null = null): PersistedState {
  return { hardState: { term, vote, commit }, snapshot: null, entries };
}

// ------------------------------------------------------------------------------------------------
// Elections.

test('a cluster elects exactly one leader, and followers learn who it is (Reference: Raft §5.2)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  cluster.tickAll(4 * electionTicks);
  const leaders = cluster.leaders();
  assert.is(leaders.length, 1);
  for (const id of ['n1', 'n2', 'n3']) assert.is(cluster.core(id).leader, leaders[0]);
  const term = cluster.core(leaders[0]!).term;
  for (const id of ['n1', 'n2', 'n3']) assert.is(cluster.core(id).term, term);
});

test('a new leader appends a no-op of its term and commits it on a quorum (Reference: Raft §5.4.2, §8)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  cluster.elect('n1');
  const leader = cluster.core('n1');
  const noop = leader.entryAt(leader.lastIndex)!;
  assert.is(noop.type, 'noop');
  assert.is(noop.term, leader.term);
  assert.is(leader.commitIndex, noop.index);
  for (const id of ['n2', 'n3']) assert.is(cluster.core(id).commitIndex, noop.index);
});

test('a node grants at most one vote per term (Reference: Raft §5.2)', () => {
  const core = new RaftCore(configFor('n1', ['n1', 'n2', 'n3']), emptyPersistedState());
  core.step({ type: 'vote-request', from: 'n2', to: 'n1', term: 1, lastLogIndex: 0, lastLogTerm: 0 });
  core.step({ type: 'vote-request', from: 'n3', to: 'n1', term: 1, lastLogIndex: 0, lastLogTerm: 0 });
  const responses = drain(core).filter((m) => m.type === 'vote-response');
  assert.equal(
    responses.map((m) => [m.to, m.type === 'vote-response' && m.granted]),
    [
      ['n2', true],
      ['n3', false],
    ],
  );
});

test('a vote is refused to a candidate whose log is less up-to-date (Reference: Raft §5.4.1)', () => {
  const core = new RaftCore(configFor('n1', ['n1', 'n2', 'n3']), persistedWith(2, [entry(1, 1), entry(2, 2)], 1));
  core.step({ type: 'vote-request', from: 'n2', to: 'n1', term: 3, lastLogIndex: 5, lastLogTerm: 1 }); // older last term
  core.step({ type: 'vote-request', from: 'n3', to: 'n1', term: 4, lastLogIndex: 1, lastLogTerm: 2 }); // same term, shorter
  const granted = drain(core).filter((m) => m.type === 'vote-response' && m.granted);
  assert.is(granted.length, 0);
  core.step({ type: 'vote-request', from: 'n3', to: 'n1', term: 5, lastLogIndex: 2, lastLogTerm: 2 });
  assert.ok(drain(core).some((m) => m.type === 'vote-response' && m.granted && m.to === 'n3'));
});

test('a vote survives a restart: the persisted vote still binds the term (Reference: Raft §5.2, Figure 2 "persistent state")', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  const voter = cluster.core('n1');
  voter.step({ type: 'vote-request', from: 'n2', to: 'n1', term: 1, lastLogIndex: 0, lastLogTerm: 0 });
  cluster.stabilize();
  const restarted = cluster.restart('n1').core;
  assert.is(restarted.term, 1);
  restarted.step({ type: 'vote-request', from: 'n3', to: 'n1', term: 1, lastLogIndex: 0, lastLogTerm: 0 });
  const responses = drain(restarted, cluster.node('n1').storage).filter((m) => m.type === 'vote-response');
  assert.equal(responses.map((m) => m.type === 'vote-response' && m.granted), [false]);
});

// ------------------------------------------------------------------------------------------------
// Pre-vote and check-quorum.

test('pre-vote: a node cut off from the cluster does not raise its term, and does not disrupt the leader when it returns (Reference: thesis §9.6)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  cluster.elect('n1');
  const term = cluster.core('n1').term;
  cluster.isolate('n3');
  cluster.tickAll(10 * electionTicks);
  assert.is(cluster.core('n3').term, term, 'the isolated node kept its term');
  assert.is(cluster.core('n1').role, 'leader');
  cluster.heal();
  cluster.tickAll(5 * electionTicks);
  assert.is(cluster.core('n1').role, 'leader');
  assert.is(cluster.core('n1').term, term, 'the healthy leader was not deposed');
  assert.is(cluster.core('n3').leader, 'n1');
});

test('a follower that recently heard from its leader ignores vote requests from a higher term (Reference: thesis §4.2.3)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  cluster.elect('n1');
  const follower = cluster.core('n2');
  const term = follower.term;
  follower.step({ type: 'vote-request', from: 'n3', to: 'n2', term: term + 5, lastLogIndex: 99, lastLogTerm: term });
  assert.is(follower.term, term);
  assert.is(follower.leader, 'n1');
});

test('check-quorum: a leader that hears from no quorum for an election timeout steps down (Reference: thesis §6.2)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  cluster.elect('n1');
  cluster.isolate('n1');
  for (let i = 0; i < 2 * electionTicks; i += 1) {
    cluster.core('n1').tick();
    cluster.stabilize();
  }
  assert.is(cluster.core('n1').role, 'follower');
  assert.is(cluster.core('n1').leader, null);
});

test('the majority side elects a new leader while the old leader is cut off, and the old one follows after healing (Reference: Raft §5.2, thesis §6.2)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3', 'n4', 'n5']);
  cluster.elect('n1');
  cluster.isolate('n1');
  cluster.tickAll(6 * electionTicks);
  const leaders = cluster.leaders();
  assert.is(leaders.length, 1);
  assert.is.not(leaders[0], 'n1');
  cluster.heal();
  cluster.tickAll(2 * electionTicks);
  assert.is(cluster.core('n1').leader, leaders[0]);
});

// ------------------------------------------------------------------------------------------------
// Log replication.

test('a follower overwrites a conflicting suffix and reports the truncation in Ready (Reference: Raft §5.3)', () => {
  const storage = new SimStorage('n2');
  storage.persist(readyWith([entry(1, 1), entry(2, 1), entry(3, 2, 'stale')], { term: 2, vote: null, commit: 2 }));
  const core = new RaftCore(configFor('n2', ['n1', 'n2', 'n3']), storage.load());
  core.step({ type: 'append', from: 'n1', to: 'n2', term: 3, prevLogIndex: 2, prevLogTerm: 1, entries: [entry(3, 3, 'fresh'), entry(4, 3, 'more')], commit: 2 });
  const ready = core.ready();
  assert.is(ready.truncateIndex, 3);
  assert.equal(ready.entries.map((e) => [e.index, e.term]), [
    [3, 3],
    [4, 3],
  ]);
  const ack = ready.messages.find((m): m is AppendResponse => m.type === 'append-response')!;
  assert.ok(ack.success);
  assert.is(ack.index, 4);
  storage.persist(ready);
  core.advance(ready);
  assert.equal(storage.entries.map((e) => text(e.data) || 'noop'), ['noop', 'noop', 'fresh', 'more']);
});

test('a follower rejects an append whose previous entry it lacks, with a hint that skips the gap (Reference: Raft §5.3, "optimization")', () => {
  const core = new RaftCore(configFor('n2', ['n1', 'n2', 'n3']), persistedWith(1, [entry(1, 1), entry(2, 1)], 1));
  core.step({ type: 'append', from: 'n1', to: 'n2', term: 3, prevLogIndex: 9, prevLogTerm: 3, entries: [], commit: 1 });
  const reject = drain(core).find((m): m is AppendResponse => m.type === 'append-response')!;
  assert.not.ok(reject.success);
  assert.is(reject.index, 9);
  assert.is(reject.hintIndex, 2);
  assert.is(reject.hintTerm, 1);
});

test('a leader repairs a follower whose log diverged over several terms (Reference: Raft §5.3, Figure 7)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  // n1 has entries of terms 1 and 4, n2 has a long stale tail of term 2, n3 agrees with n1.
  const good = [entry(1, 1), entry(2, 1, 'a'), entry(3, 4, 'b'), entry(4, 4, 'c')];
  const stale = [entry(1, 1), entry(2, 1, 'a'), entry(3, 2, 'x'), entry(4, 2, 'y'), entry(5, 2, 'z'), entry(6, 3, 'w')];
  cluster.start('n1', persistedWith(4, good, 2));
  cluster.start('n2', persistedWith(4, stale, 2));
  cluster.start('n3', persistedWith(4, good, 2));
  cluster.elect('n1');
  cluster.tickAll(3);
  const leader = cluster.core('n1');
  const follower = cluster.core('n2');
  assert.is(follower.lastIndex, leader.lastIndex);
  for (let index = 1; index <= leader.lastIndex; index += 1) {
    assert.is(follower.entryAt(index)!.term, leader.entryAt(index)!.term, `entry ${index}`);
  }
});

test('a leader counts replicas only for entries of its own term: old-term entries commit with it (Reference: Raft §5.4.2, Figure 8)', () => {
  // n1 holds an entry of term 2 that no quorum had committed; n1 then leads in term 3.
  const log = [entry(1, 1), entry(2, 2, 'old')];
  const core = new RaftCore(configFor('n1', ['n1', 'n2', 'n3']), persistedWith(2, log, 1));
  const storage = new SimStorage('n1');
  storage.persist(readyWith(log, { term: 2, vote: null, commit: 1 }));
  for (let i = 0; i < 4 * electionTicks && core.role === 'follower'; i += 1) core.tick();
  drain(core, storage);
  core.step({ type: 'pre-vote-response', from: 'n2', to: 'n1', term: 3, granted: true });
  drain(core, storage);
  core.step({ type: 'vote-response', from: 'n2', to: 'n1', term: 3, granted: true });
  drain(core, storage);
  assert.is(core.role, 'leader');
  assert.is(core.term, 3);
  // n2 acknowledges the old entry 2 only: a quorum holds it, but it is of term 2.
  core.step({ type: 'append-response', from: 'n2', to: 'n1', term: 3, success: true, index: 2, hintIndex: 0, hintTerm: 0 });
  drain(core, storage);
  assert.is(core.commitIndex, 1, 'entry 2 (term 2) must not commit by counting replicas');
  // Once the no-op of term 3 (index 3) is on a quorum, it commits and carries entry 2 with it.
  core.step({ type: 'append-response', from: 'n2', to: 'n1', term: 3, success: true, index: 3, hintIndex: 0, hintTerm: 0 });
  drain(core, storage);
  assert.is(core.commitIndex, 3);
});

test('committed entries are applied in order on every node, exactly once (Reference: Raft §5.3, State Machine Safety)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  cluster.elect('n1');
  for (const word of ['alpha', 'beta', 'gamma']) assert.ok(cluster.core('n1').propose(bytes(word)).ok);
  cluster.stabilize();
  cluster.tickAll(2);
  for (const id of ['n1', 'n2', 'n3']) {
    const applied = cluster.node(id).applied.filter((e) => e.type === 'normal').map((e) => text(e.data));
    assert.equal(applied, ['alpha', 'beta', 'gamma'], id);
  }
});

test('an AppendEntries message carries at most appendEntriesMax entries and appendBytesMax bytes, and at most inflightAppendsMax are unacknowledged (Reference: etcd raft flow control)', () => {
  const core = new RaftCore(configFor('n1', ['n1', 'n2'], { appendEntriesMax: 3, appendBytesMax: 10, inflightAppendsMax: 2 }), emptyPersistedState());
  const storage = new SimStorage('n1');
  for (let i = 0; i < 4 * electionTicks && core.role === 'follower'; i += 1) core.tick();
  drain(core, storage);
  core.step({ type: 'pre-vote-response', from: 'n2', to: 'n1', term: 1, granted: true });
  drain(core, storage);
  core.step({ type: 'vote-response', from: 'n2', to: 'n1', term: 1, granted: true });
  drain(core, storage);
  core.step({ type: 'append-response', from: 'n2', to: 'n1', term: 1, success: true, index: 1, hintIndex: 0, hintTerm: 0 });
  drain(core, storage);
  for (let i = 0; i < 20; i += 1) core.propose(bytes('xxxx'));
  const appends = drain(core, storage).filter((m) => m.type === 'append');
  assert.ok(appends.length >= 1);
  assert.ok(appends.length <= 2, `at most 2 appends in flight, saw ${appends.length}`);
  for (const append of appends) {
    if (append.type !== 'append') continue;
    assert.ok(append.entries.length <= 3);
    assert.ok(append.entries.reduce((sum, e) => sum + e.data.byteLength, 0) <= 10);
  }
});

test('the outbox is bounded: messages beyond outboxMessagesMax are dropped and counted, as a lossy network would', () => {
  const core = new RaftCore(configFor('n1', ['n1', 'n2', 'n3', 'n4', 'n5'], { outboxMessagesMax: 2 }), emptyPersistedState());
  for (let i = 0; i < 2 * electionTicks && core.role === 'follower'; i += 1) core.tick();
  assert.is(core.role, 'pre-candidate');
  assert.is(core.ready().messages.length, 2);
  assert.is(core.status().outboxDropped, 2);
});

// ------------------------------------------------------------------------------------------------
// Proposals.

test('a proposal on a follower is rejected with an error that names the leader (Reference: Raft §8, client interaction)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  cluster.elect('n1');
  const result = cluster.core('n2').propose(bytes('job'));
  assert.not.ok(result.ok);
  if (result.ok) return;
  assert.is(result.error.code, 'not-leader');
  assert.is(result.error.leader, 'n1');
  assert.match(result.error.message, 'n1');
});

test('a leader refuses proposals beyond its uncommitted-bytes budget instead of growing without bound', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3'], [], { uncommittedBytesMax: 1000 });
  cluster.elect('n1');
  cluster.isolate('n1');
  let refused = null;
  for (let i = 0; i < 100 && refused === null; i += 1) {
    const result = cluster.core('n1').propose(bytes('x'.repeat(100)));
    if (!result.ok) refused = result.error.code;
  }
  assert.is(refused, 'busy');
});

// ------------------------------------------------------------------------------------------------
// Learners.

test('learners receive and apply the log but never campaign, vote, or count for quorum (Reference: thesis §4.2.1)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3'], ['l1']);
  cluster.elect('n1');
  assert.ok(cluster.core('n1').propose(bytes('to-learner')).ok);
  cluster.stabilize();
  cluster.tickAll(2);
  assert.ok(cluster.node('l1').applied.some((e) => text(e.data) === 'to-learner'), 'the learner applied the entry');
  // A learner never campaigns, however long it waits.
  const learner = cluster.core('l1');
  cluster.isolate('l1');
  for (let i = 0; i < 10 * electionTicks; i += 1) learner.tick();
  assert.is(learner.role, 'follower');
  assert.not.ok(drain(learner, cluster.node('l1').storage).some((m) => m.type === 'vote-request' || m.type === 'pre-vote-request'));
  // A learner refuses to vote.
  learner.step({ type: 'vote-request', from: 'n2', to: 'l1', term: 50, lastLogIndex: 99, lastLogTerm: 49 });
  assert.not.ok(drain(learner, cluster.node('l1').storage).some((m) => m.type === 'vote-response' && m.granted));
  cluster.heal();
  // The vote request raised the learner's term: the leader's next heartbeat to it (every electionTicks
  // for a learner) brings back that higher term, the leader steps down, and the voters elect again.
  cluster.tickAll(4 * electionTicks);
  // With two voters cut off, the leader plus the learner are no quorum: nothing commits.
  const leaderId = cluster.leaders()[0]!;
  const others = ['n1', 'n2', 'n3'].filter((id) => id !== leaderId);
  for (const id of others) cluster.isolate(id);
  const commitBefore = cluster.core(leaderId).commitIndex;
  const result = cluster.core(leaderId).propose(bytes('needs-voters'));
  assert.ok(result.ok);
  cluster.stabilize();
  assert.is(cluster.core(leaderId).commitIndex, commitBefore);
});

test('a learner is sent each entry once it is committed, with the commit index that covers it, in one append', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3'], ['l1']);
  cluster.elect('n1');
  cluster.stabilize();
  cluster.delivered.length = 0;
  assert.ok(cluster.core('n1').propose(bytes('committed-first')).ok);
  cluster.stabilize();
  const appendsTo = (id: string) => cluster.delivered.filter((message) => message.to === id && message.type === 'append') as Extract<Message, { type: 'append' }>[];
  // A voter gets the entry before it is committed (its answer is what commits it), then the commit index.
  const toVoter = appendsTo('n2');
  assert.ok(toVoter.length >= 2, `appends to a voter: ${toVoter.length}`);
  assert.is(toVoter[0]!.entries.length, 1);
  assert.ok(toVoter[0]!.commit < toVoter[0]!.entries[0]!.index, 'the voter is sent the entry before its commit');
  // The learner gets it once, committed.
  const toLearner = appendsTo('l1');
  assert.is(toLearner.length, 1, 'appends to the learner');
  assert.is(toLearner[0]!.entries.length, 1);
  assert.ok(toLearner[0]!.commit >= toLearner[0]!.entries[0]!.index, 'the learner is sent the entry with its commit');
  assert.ok(cluster.node('l1').applied.some((entry) => text(entry.data) === 'committed-first'), 'the learner applied the entry');
});

test('an idle leader heartbeats voters every heartbeatTicks and learners every learnerHeartbeatTicks (electionTicks by default)', () => {
  // Only the leader ticks and its messages are not delivered: check-quorum off, or it would step down.
  for (const [extra, learnerEvery] of [[{ checkQuorum: false }, electionTicks], [{ checkQuorum: false, learnerHeartbeatTicks: 3 }, 3]] as const) {
    const cluster = new Cluster(['n1', 'n2', 'n3'], ['l1'], extra);
    cluster.elect('n1');
    cluster.stabilize();
    const leader = cluster.core('n1');
    const heartbeatsTo = new Map<string, number[]>();
    const ticks = 3 * electionTicks;
    for (let tick = 1; tick <= ticks; tick += 1) {
      leader.tick();
      for (const message of drain(leader, cluster.node('n1').storage)) {
        if (message.type === 'heartbeat') heartbeatsTo.set(message.to, [...(heartbeatsTo.get(message.to) ?? []), tick]);
      }
    }
    // heartbeatTicks is 2 in this file's configs.
    for (const voter of ['n2', 'n3']) assert.is(heartbeatsTo.get(voter)?.length, ticks / 2, `heartbeats to ${voter}`);
    const toLearner = heartbeatsTo.get('l1') ?? [];
    assert.is(toLearner.length, Math.floor(ticks / learnerEvery), 'heartbeats to the learner');
    for (let i = 1; i < toLearner.length; i += 1) assert.is(toLearner[i]! - toLearner[i - 1]!, learnerEvery);
  }
  assert.throws(() => new RaftCore(configFor('x1', ['x1'], { learnerHeartbeatTicks: 0 }), emptyPersistedState()), /learnerHeartbeatTicks/);
});

test('setLearners adds a learner at runtime and the leader catches it up (Reference: thesis §4.2.1)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  cluster.elect('n1');
  assert.ok(cluster.core('n1').propose(bytes('before')).ok);
  cluster.stabilize();
  cluster.start('l1', emptyPersistedState());
  for (const node of cluster.nodes.values()) node.core.setLearners(['l1']);
  cluster.stabilize();
  cluster.tickAll(2);
  assert.ok(cluster.node('l1').applied.some((e) => text(e.data) === 'before'));
  assert.ok(cluster.core('n1').status().progress!['l1']!.learner);
  assert.throws(() => cluster.core('n1').setLearners(['n2']), /voter/);
});

// ------------------------------------------------------------------------------------------------
// Snapshots.

test('a follower behind the leader\'s compacted log receives the snapshot, applies it via Ready, then continues from the log (Reference: Raft §7)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  cluster.elect('n1');
  cluster.isolate('n3');
  for (const word of ['a', 'b', 'c', 'd']) assert.ok(cluster.core('n1').propose(bytes(word)).ok);
  cluster.stabilize();
  const leader = cluster.core('n1');
  const compactAt = leader.appliedIndex;
  const snapshot = leader.compact(compactAt, bytes(`state@${compactAt}`));
  assert.ok(snapshot !== null);
  assert.is(snapshot.term, leader.term);
  cluster.node('n1').storage.saveSnapshot(snapshot);
  assert.is(leader.entryAt(compactAt), undefined, 'compacted entries left the log');
  cluster.heal();
  let sawSnapshot: Ready['snapshot'] = null;
  const follower = cluster.node('n3');
  for (let i = 0; i < 3 * electionTicks && sawSnapshot === null; i += 1) {
    leader.tick();
    cluster.stabilize();
    sawSnapshot = follower.storage.snapshot;
  }
  assert.ok(sawSnapshot !== null, 'the follower persisted a snapshot');
  assert.is(text(sawSnapshot!.data), `state@${compactAt}`);
  assert.is(follower.snapshotsApplied, 1);
  assert.ok(leader.propose(bytes('after')).ok);
  cluster.stabilize();
  cluster.tickAll(2);
  assert.ok(follower.applied.some((e) => text(e.data) === 'after'));
  assert.is(follower.core.commitIndex, leader.commitIndex);
});

// ------------------------------------------------------------------------------------------------
// Restart and the Ready contract.

test('a node rebuilt from its persisted state resumes its term, vote, log and commit (Reference: Raft Figure 2 "persistent state")', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  cluster.elect('n1');
  for (const word of ['x', 'y']) cluster.core('n1').propose(bytes(word));
  cluster.stabilize();
  cluster.tickAll(2);
  const before = cluster.core('n2').status();
  const after = cluster.restart('n2').core.status();
  assert.is(after.term, before.term);
  assert.is(after.lastIndex, before.lastIndex);
  assert.is(after.lastTerm, before.lastTerm);
  assert.is(after.commit, before.commit);
  assert.is(after.role, 'follower');
  assert.is(after.applied, 0, 'without a snapshot the application replays from the start');
  // The restarted node catches up with the leader and applies the log again.
  cluster.tickAll(2 * electionTicks);
  assert.equal(cluster.node('n2').applied.filter((e) => e.type === 'normal').map((e) => text(e.data)), ['x', 'y']);
});

test('messages leave only after the state they depend on is persisted: handleReady calls persist, then send, then apply (Reference: etcd raft "persist before send")', () => {
  const core = new RaftCore(configFor('n1', ['n1', 'n2', 'n3']), emptyPersistedState());
  core.step({ type: 'vote-request', from: 'n2', to: 'n1', term: 1, lastLogIndex: 0, lastLogTerm: 0 });
  const order: string[] = [];
  handleReady(core, { persist: () => order.push('persist'), send: () => order.push('send'), apply: () => order.push('apply') });
  assert.equal(order, ['persist', 'send']);
});

test('ready() twice without advance() is a RaftInvariantError', () => {
  const core = new RaftCore(configFor('n1', ['n1', 'n2', 'n3']), emptyPersistedState());
  core.step({ type: 'vote-request', from: 'n2', to: 'n1', term: 1, lastLogIndex: 0, lastLogTerm: 0 });
  core.ready();
  assert.throws(() => core.ready(), (error: Error) => error.name === 'RaftInvariantError');
});

test('a leader that hears another leader of its own term stops loudly with a RaftInvariantError (Reference: Raft §5.2, Election Safety)', () => {
  const cluster = new Cluster(['n1', 'n2', 'n3']);
  cluster.elect('n1');
  const leader = cluster.core('n1');
  assert.throws(
    () => leader.step({ type: 'heartbeat', from: 'n2', to: 'n1', term: leader.term, commit: 0 }),
    (error: Error) => error.name === 'RaftInvariantError' && /two leaders/.test(error.message),
  );
});

test('a follower never truncates committed entries: an append below its commit is answered with the commit (Reference: Raft §5.4, Leader Completeness)', () => {
  const core = new RaftCore(configFor('n2', ['n1', 'n2', 'n3']), persistedWith(2, [entry(1, 1), entry(2, 2, 'kept')], 2));
  core.step({ type: 'append', from: 'n1', to: 'n2', term: 3, prevLogIndex: 2, prevLogTerm: 2, entries: [], commit: 2 });
  // prevLogIndex below commit is answered with our commit, never by truncating.
  core.step({ type: 'append', from: 'n1', to: 'n2', term: 3, prevLogIndex: 1, prevLogTerm: 1, entries: [entry(2, 3, 'other')], commit: 2 });
  assert.is(text(core.entryAt(2)!.data), 'kept');
  const acks = drain(core).filter((m): m is AppendResponse => m.type === 'append-response');
  assert.equal(acks.map((m) => [m.success, m.index]), [
    [true, 2],
    [true, 2],
  ]);
});

test('restoring a stored log with a gap is a RaftInvariantError (Reference: Raft §5.3, Log Matching)', () => {
  assert.throws(
    () => new RaftCore(configFor('n1', ['n1']), persistedWith(1, [entry(1, 1), entry(3, 1)], 0)),
    (error: Error) => error.name === 'RaftInvariantError' && /gap/.test(error.message),
  );
});

test('a single-voter cluster elects itself and commits once its own write is durable (Reference: Raft §5.2)', () => {
  const storage = new SimStorage('solo');
  const core = new RaftCore(configFor('solo', ['solo']), emptyPersistedState());
  for (let i = 0; i < 2 * electionTicks; i += 1) core.tick();
  assert.is(core.role, 'leader');
  assert.is(core.commitIndex, 0, 'nothing commits before the no-op is persisted');
  drain(core, storage);
  assert.is(core.commitIndex, 1);
  assert.is(storage.hardState.commit, 1);
});

function readyWith(entries: Entry[], hardState: { term: number; vote: string | null; commit: number }): Ready {
  return { softState: null, hardState, snapshot: null, truncateIndex: null, entries, messages: [], committedEntries: [] };
}

test.run();
