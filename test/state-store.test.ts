import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { Level } from 'level';
import { join } from 'node:path';
import { openStateStore, type StateCommand } from '../node/storage/state-store.ts';
import { withTempDir } from './helpers.ts';

const put = (id: string, key: string, value: number, equals?: number | null): StateCommand => ({
  id,
  guards: equals === undefined ? [] : [{ key, equals }],
  ops: [{ op: 'put', key, value }],
});

async function withStore<T>(fn: (open: () => Promise<{ store: Awaited<ReturnType<typeof openStateStore>>; close: () => Promise<void> }>) => Promise<T>): Promise<T> {
  return withTempDir(async (dir) =>
    fn(async () => {
      const db = new Level<string, unknown>(join(dir, 'db'));
      await db.open();
      return { store: await openStateStore(db), close: () => db.close() };
    }),
  );
}

test('a batch checks each guard against the state as the earlier entries of the batch left it', async () => {
  await withStore(async (open) => {
    const { store, close } = await open();
    const results = await store.applyBatch([
      { index: 1, command: put('a', 'k', 1, null) }, // key absent: applies
      { index: 2, command: put('b', 'k', 2, null) }, // key now 1, not absent: refused
      { index: 3, command: null }, // a no-op entry
      { index: 4, command: put('c', 'k', 3, 1) }, // compare-and-set from 1: applies
    ]);
    assert.equal(results, [true, false, false, true]);
    assert.is(await store.get('k'), 3);
    assert.is(store.appliedIndex(), 4);
    await close();
  });
});

test('the applied index and state survive a reopen; entries must come in order', async () => {
  await withStore(async (open) => {
    const first = await open();
    await first.store.applyBatch([{ index: 1, command: put('a', 'x', 7) }]);
    await first.close();
    const second = await open();
    assert.is(second.store.appliedIndex(), 1);
    assert.is(await second.store.get('x'), 7);
    try {
      await second.store.applyBatch([{ index: 3, command: put('b', 'y', 1) }]);
      assert.unreachable('skipping index 2 must be refused');
    } catch (error) {
      assert.match((error as Error).message, /skip or repeat/);
    }
    await second.close();
  });
});

test('a snapshot replaces the whole state and the applied index', async () => {
  await withStore(async (open) => {
    const { store, close } = await open();
    await store.applyBatch([
      { index: 1, command: put('a', 'keep', 1) },
      { index: 2, command: put('b', 'gone', 2) },
    ]);
    const snapshot = await store.exportSnapshot();
    await store.applyBatch([{ index: 3, command: { id: 'c', ops: [{ op: 'del', key: 'keep' }, { op: 'put', key: 'late', value: 3 }] } }]);
    await store.importSnapshot(2, snapshot);
    assert.is(store.appliedIndex(), 2);
    assert.equal(await store.list(''), [
      ['gone', 2],
      ['keep', 1],
    ]);
    await close();
  });
});

test.run();
