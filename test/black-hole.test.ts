/**
 * Workers earn work, end to end: 3 real node processes and a black-hole worker (a real keyed libp2p
 * peer that advertises 64 worker threads and never completes anything). Jobs complete on the honest
 * nodes, the black hole never holds more than one chunk at a time, and every node stays alive.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { connect } from '../node/client/index.ts';
import { startBlackHole, type BlackHole } from './support/black-hole.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { randomBytesSeeded } from './helpers.ts';

let cluster: TestCluster;
let blackHole: BlackHole;
const names = ['node1', 'node2', 'node3'];
const leaseMs = 2_000;


test.after(async () => {
  await blackHole?.stop();
  await cluster?.destroy();
});

/** The black hole is admitted as a worker the way a real one joins a pinned cluster: with the join token. */
const joinToken = 'black-hole-test-join-token';

// Set up in a test, not a before hook: uvu reports a throwing hook as zero tests passed, exit code 0.
test('a black hole with the cluster key joins 3 nodes; they see an alive worker advertising 64 threads', async () => {
  // The black hole is an admitted worker (it holds the join token): admission alone must not earn work.
  // Gateways stage every chunk raw: the coordinator must be the one choosing who codes them.
  cluster = await createTestCluster({ nodes: 3, overrides: { jobs: { leaseMs, attemptsMax: 3, codeAtGateway: false } }, edit: (config) => ({ ...config, joinToken }) });
  for (const name of names) cluster.start(name);
  await waitFor('3 alive members and one coordinator', 30_000, () => cluster.agreed(3), () => cluster.logs());
  blackHole = await startBlackHole({ cluster: cluster.configs[0] });
  await waitFor('every node to see the black hole alive', 20_000, () => cluster.agreed(4), () => cluster.logs());
  const view = (await cluster.status('node1'))!;
  const hole = view.members.find((member) => member.name === blackHole.name);
  assert.ok(hole !== undefined, JSON.stringify(view.members));
  assert.is(hole.role, 'worker');
  assert.is(hole.status, 'alive');
  assert.is(hole.load?.workers, 64);
});

test('uploads complete on the honest nodes; the black hole never holds more than one chunk at a time', async () => {
  let heldMax = 0;
  let held = 0;
  let watching = true;
  // Watch the replicated chunk records while the jobs run: what the coordinator gave the black hole.
  const watcher = (async () => {
    while (watching) {
      const chunks = Object.values(await cluster.state('node1', 'chunks/').catch(() => ({}))) as Array<{ state: string; node: string | null }>;
      const now = chunks.filter((chunk) => chunk.state === 'assigned' && chunk.node === blackHole.name).length;
      held += now;
      heldMax = Math.max(heldMax, now);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  const client = await connect({ server: cluster.gateway('node2') });
  try {
    for (const seed of [1, 2]) {
      const data = randomBytesSeeded(2 * 1024 * 1024, seed);
      const uploaded = await client.upload(data, { fileName: `data-${seed}.bin`, chunkSize: 64 * 1024 });
      const job = await client.waitForCompletion(uploaded.id);
      assert.is(job.state, 'completed', job.error ?? '');
      assert.is(job.sha256, createHash('sha256').update(data).digest('hex'));
      assert.is(job.chunkNodes[blackHole.name], undefined, `the black hole completed nothing: ${JSON.stringify(job.chunkNodes)}`);
      assert.is(Object.values(job.chunkNodes).reduce((sum, count) => sum + count, 0), 32);
    }
  } finally {
    watching = false;
    await watcher;
    await client.close();
  }
  assert.ok(held > 0, 'the black hole was given chunks (a probe at least), so the rule was exercised');
  assert.ok(heldMax <= 1, `the black hole held ${heldMax} chunks at once`);
});

test('every node is alive and agrees on one coordinator after the black hole did its worst', async () => {
  const { value } = await waitFor('all 4 members alive and one coordinator', 20_000, () => cluster.agreed(4), () => cluster.logs());
  for (const name of names) {
    const member = value.members.find((candidate) => candidate.name === name)!;
    assert.is(member.status, 'alive', name);
    assert.ok(cluster.pid(name) !== undefined);
  }
});

test.run();
