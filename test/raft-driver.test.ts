/**
 * ReadyDriver: the one way production (replicated.ts) and the simulation drive a Raft core. These
 * tests run it over the production LevelDB storage with a write held in flight while the core takes
 * input, the case the simulation's slow persists exercise at scale (test/raft-sim.test.ts counts it),
 * and check that nothing else in node/cluster drives a core by hand.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Level } from 'level';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { RaftCore, ReadyDriver } from '../node/cluster/raft/index.ts';
import type { AppendResponse, Entry, Message, PersistedState, Ready } from '../node/cluster/raft/index.ts';
import { createRaftStorage } from '../node/cluster/raft-storage.ts';
import { SeededRandom } from '../node/cluster/sim/index.ts';
import { withTempDir } from './helpers.ts';

const bytes = (text: string): Uint8Array => new TextEncoder().encode(text);
const text = (data: Uint8Array): string => new TextDecoder().decode(data);

/** The error a promise rejects with, or a failed assertion if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  assert.unreachable('expected a rejection');
  throw new Error('unreachable');
}

function entry(index: number, term: number, data: string): Entry {
  return { index, term, type: 'normal', data: bytes(data) };
}

function follower(persisted: PersistedState): RaftCore {
  const random = new SeededRandom(2);
  return new RaftCore({ id: 'n2', voters: ['n1', 'n2', 'n3'], electionTicks: 10, heartbeatTicks: 2, random: () => random.next() }, persisted);
}

/** A promise and the function that settles it, to hold a write in flight until the test says. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open = (): void => {};
  const wait = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { wait, open };
}

async function withDb<T>(fn: (db: Level<string, unknown>) => Promise<T>): Promise<T> {
  return withTempDir(async (dir) => {
    const db = new Level<string, unknown>(join(dir, 'db'));
    await db.open();
    try {
      return await fn(db);
    } finally {
      await db.close();
    }
  });
}

test('entries a newer leader overwrites while their write is in flight are written again, and the store ends with the new leader\'s log (Reference: Raft §5.3)', async () => {
  await withDb(async (db) => {
    const storage = createRaftStorage(db, { sync: false });
    const base = { term: 1, vote: null, commit: 1 };
    await storage.persist({ softState: null, hardState: base, snapshot: null, truncateIndex: null, entries: [entry(1, 1, 'base')], messages: [], committedEntries: [] });
    const core = follower(await storage.load());
    const held = gate();
    const events: string[] = [];
    const sent: Message[] = [];
    let firstWrite = true;
    const driver = new ReadyDriver(core, {
      persist: async (ready: Ready) => {
        const writing = storage.persist(ready);
        events.push(`persist ${ready.entries.map((e) => `${e.index}/t${e.term}`).join(',')}`);
        if (firstWrite) {
          firstWrite = false;
          await held.wait;
        }
        await writing;
      },
      send: (messages) => {
        events.push(`send ${messages.map((m) => m.type).join(',')}`);
        sent.push(...messages);
      },
      apply: () => {},
    });

    core.step({ type: 'append', from: 'n1', to: 'n2', term: 2, prevLogIndex: 1, prevLogTerm: 1, entries: [entry(2, 2, 'old-a'), entry(3, 2, 'old-b')], commit: 1 });
    const first = driver.handleNext();
    assert.ok(driver.holdingReady);
    // While the write of 2..3 (term 2) is in flight, a leader of term 3 replaces index 2 onwards.
    core.step({ type: 'append', from: 'n3', to: 'n2', term: 3, prevLogIndex: 1, prevLogTerm: 1, entries: [entry(2, 3, 'new')], commit: 1 });
    held.open();
    assert.is((await first)?.entries.length, 2);
    assert.is(core.status().overwrittenWhilePersisting, 1);

    const second = await driver.handleNext();
    assert.is(second?.truncateIndex, 2);
    assert.equal(second?.entries.map((e) => [e.index, e.term]), [[2, 3]]);
    assert.is(await driver.handleNext(), null);
    assert.equal(events, ['persist 2/t2,3/t2', 'send append-response', 'persist 2/t3', 'send append-response']);
    const ack = sent.find((m): m is AppendResponse => m.type === 'append-response' && m.to === 'n3');
    assert.is(ack?.index, 2);

    const stored = await storage.load();
    assert.equal(stored.entries.map((e) => `${e.index}/t${e.term}/${text(e.data)}`), ['1/t1/base', '2/t3/new']);
    assert.is(stored.hardState.term, 3);
    assert.is(follower(stored).lastIndex, 2);
  });
});

test('a failed write keeps the Ready: nothing is sent, and the next call writes the same Ready again before sending', async () => {
  const core = follower({ hardState: { term: 1, vote: null, commit: 0 }, snapshot: null, entries: [] });
  const persisted: Ready[] = [];
  const sent: Message[] = [];
  let failNext = true;
  const driver = new ReadyDriver(core, {
    persist: async (ready) => {
      if (failNext) {
        failNext = false;
        throw new Error('ENOSPC: no space left on device');
      }
      persisted.push(ready);
    },
    send: (messages) => {
      sent.push(...messages);
    },
    apply: () => {},
  });
  core.step({ type: 'append', from: 'n1', to: 'n2', term: 1, prevLogIndex: 0, prevLogTerm: 0, entries: [entry(1, 1, 'x')], commit: 0 });
  assert.match((await rejection(driver.handleNext())).message, /ENOSPC/);
  assert.is(sent.length, 0);
  assert.ok(driver.holdingReady);
  const retried = await driver.handleNext();
  assert.is(persisted.length, 1);
  assert.is(persisted[0], retried);
  assert.equal(sent.map((m) => m.type), ['append-response']);
  assert.not.ok(driver.holdingReady);
});

test('a second handleNext while one is running is refused with RAFT_USAGE', async () => {
  const core = follower({ hardState: { term: 1, vote: null, commit: 0 }, snapshot: null, entries: [] });
  const held = gate();
  const driver = new ReadyDriver(core, { persist: () => held.wait, send: () => {}, apply: () => {} });
  core.step({ type: 'heartbeat', from: 'n1', to: 'n2', term: 1, commit: 0 });
  const first = driver.handleNext();
  assert.is((await rejection(driver.handleNext())).code, 'RAFT_USAGE');
  held.open();
  assert.ok((await first) !== null);
});

async function sourceFiles(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const item of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, item.name);
    if (item.isDirectory()) found.push(...(await sourceFiles(path)));
    else if (item.name.endsWith('.ts')) found.push(path);
  }
  return found;
}

test('production and the simulation drive Raft one way: both build a ReadyDriver, and nothing else in node/cluster takes or advances a Ready by hand', async () => {
  const root = join(import.meta.dirname, '..', 'node', 'cluster');
  const drivers = ['raft/driver.ts', 'raft/ready.ts', 'raft/core.ts'];
  const byHand: string[] = [];
  for (const path of await sourceFiles(root)) {
    const name = relative(root, path);
    if (drivers.includes(name)) continue;
    const source = await readFile(path, 'utf8');
    if (/\.(ready|advance)\(|\bhandleReady\(/.test(source)) byHand.push(name);
  }
  assert.equal(byHand, [], `these drive a core without ReadyDriver: ${byHand.join(', ')}`);
  for (const name of ['replicated.ts', 'sim/simulation.ts']) {
    assert.match(await readFile(join(root, name), 'utf8'), /new ReadyDriver\(/, `${name} does not drive its core through ReadyDriver`);
  }
});

test.run();
