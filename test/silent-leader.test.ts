/**
 * A silent leader is not a dead one. A paused process (SIGSTOP), like a cut link, answers nothing and
 * resets no connection: requests to it simply wait. On loopback a killed process resets its
 * connections at once, which is why the kill tests never saw this. The rule checked here: a proposal
 * forwarded to a leader that goes silent is forwarded again once another leader is known, so an upload
 * started just as its leader went silent still completes (before, it waited out its whole timeout and
 * failed with "no leader accepted command ... in time").
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { connect } from '../node/client/index.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { textLike } from './helpers.ts';

let cluster: TestCluster | undefined;
const names = ['node1', 'node2', 'node3'];

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

test('a 3-node cluster agrees on a coordinator', async () => {
  // Slow failure detection keeps the silent leader a live member (its connection open) for longer than
  // a proposal's timeout: only Raft's own election can tell the proposer to stop waiting.
  cluster = await createTestCluster({
    nodes: 3,
    overrides: { jobs: { leaseMs: 4_000, attemptsMax: 5 }, membership: { heartbeatMs: 200, suspectMs: 6_000, deadMs: 12_000 } },
  });
  for (const name of names) cluster.start(name);
  await waitFor('3 alive members and one coordinator', 30_000, () => cluster!.agreed(3), () => cluster!.logs());
});

test('an upload started as its leader goes silent completes through the next leader', async () => {
  const { coordinator: silenced } = (await cluster!.agreed(3))!;
  assert.ok(silenced !== null);
  const follower = names.find((name) => name !== silenced)!;
  const others = names.filter((name) => name !== silenced);
  const pid = cluster!.pid(silenced!)!;
  const data = textLike(1024 * 1024 + 5, 41);
  const client = await connect({ server: cluster!.gateway(follower) });
  try {
    // The follower still believes in the old leader for about an election timeout: the job's first
    // proposals are forwarded to a process that will not answer.
    process.kill(pid, 'SIGSTOP');
    const uploaded = await client.upload(data, { fileName: 'silent-leader.txt', chunkSize: 128 * 1024 });
    const job = await client.waitForCompletion(uploaded.id);
    assert.is(job.state, 'completed', job.error ?? '');
    assert.is(job.sha256, sha256(data));
    const { value: majority } = await waitFor('the two others to agree, the silent one dead', 30_000, () => cluster!.agreed(2, others), () => cluster!.logs());
    assert.is.not(majority.coordinator, silenced, 'the majority elected another coordinator');
  } finally {
    process.kill(pid, 'SIGCONT');
    await client.close();
  }
});

test('after the silent leader resumes, one coordinator and every voter has the job completed', async () => {
  await waitFor('3 alive members and one coordinator again', 30_000, () => cluster!.agreed(3), () => cluster!.logs());
  for (const name of names) {
    await waitFor(`${name} to show every job completed`, 30_000, async () => {
      const jobs = Object.values(await cluster!.state(name, 'jobs/')) as Array<{ state?: string }>;
      return jobs.length > 0 && jobs.every((job) => job.state === 'completed') ? true : undefined;
    });
  }
});

test('teardown', async () => {
  await cluster?.destroy();
});

test.run();
