/**
 * DELETE on a real 3-node cluster (issue 11): a job still being coded is cancelled — its record, chunk
 * records and blobs go, the coordinator assigns nothing more, a worker that finishes a chunk of it later
 * drops its output, and no merge makes a .dcz — and `dcas rm` deletes a completed job (exit 0), then
 * says it is not found (exit 1). To hold the job in `processing` without racing the coders, one node is
 * stopped (SIGSTOP) with membership timeouts long enough that it still counts as alive: the chunks it
 * was given stay assigned to it.
 */
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { textLike } from './helpers.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { runDcas } from './support/dcas-process.ts';

const token = 'delete-test-token';
const auth = { authorization: `Bearer ${token}` };
let cluster: TestCluster;

test.before(async () => {
  cluster = await createTestCluster({
    nodes: 3,
    overrides: {
      membership: { heartbeatMs: 200, suspectMs: 60_000, deadMs: 120_000 },
      jobs: { codeAtGateway: false, leaseMs: 120_000, chunkSize: 64 * 1024 },
    },
    edit: (config) => ({ ...config, token }),
  });
  for (const config of cluster.configs) cluster.start(config.name);
  await waitFor('3 alive members and one coordinator', 90_000, () => cluster.agreed(3), () => cluster.logs());
});

test.after(async () => {
  await cluster.destroy();
});

async function pathsMentioning(id: string): Promise<string[]> {
  const entries = await readdir(join(cluster.dataDir, 'blobs'), { recursive: true }).catch(() => [] as string[]);
  return entries.filter((entry) => entry.includes(id));
}

test('DELETE of a job being coded cancels it: 200 cancelled, gone on every node, no chunk records, no blobs, no .dcz after its chunks come back', async () => {
  const view = (await cluster.agreed(3))!;
  const names = cluster.configs.map((config) => config.name);
  const stopped = names.find((name) => name !== view.coordinator)!;
  const gatewayName = names.find((name) => name !== stopped)!;
  const base = cluster.gateway(gatewayName);
  process.kill(cluster.pid(stopped)!, 'SIGSTOP');
  try {
    const created = await fetch(`${base}/v1/jobs?name=cancel-me.txt`, { method: 'POST', headers: auth, body: textLike(4 * 1024 * 1024, 11) });
    assert.is(created.status, 201, await created.clone().text());
    const job = (await created.json()) as any;
    // Wait until the other nodes coded what they were given: what is left sits on the stopped node.
    await waitFor('the running nodes to finish their chunks', 120_000, async () => {
      const current = (await (await fetch(`${base}/v1/jobs/${job.id}`, { headers: auth })).json()) as any;
      assert.is.not(current.state, 'completed', 'the job completed although a node holds some of its chunks');
      return current.state === 'processing' && current.chunksDone > 0 && current.chunksDone < current.chunks ? current : undefined;
    });
    const deleted = await fetch(`${base}/v1/jobs/${job.id}`, { method: 'DELETE', headers: auth });
    assert.is(deleted.status, 200);
    assert.equal(await deleted.json(), { id: job.id, state: 'processing', cancelled: true });
    for (const name of names.filter((name) => name !== stopped)) {
      await waitFor(`job gone on ${name}`, 30_000, async () => ((await fetch(`${cluster.gateway(name)}/v1/jobs/${job.id}`, { headers: auth })).status === 404 ? true : undefined));
      assert.equal(await cluster.state(name, `chunks/${job.id}/`), {});
      assert.equal(await cluster.state(name, `active/${job.id}`), {});
    }
    process.kill(cluster.pid(stopped)!, 'SIGCONT');
    // The stopped node wakes with chunks it was coding: their completions must not bring anything back.
    await waitFor('the woken node to agree the job is gone', 60_000, async () => ((await fetch(`${cluster.gateway(stopped)}/v1/jobs/${job.id}`, { headers: auth }).catch(() => undefined))?.status === 404 ? true : undefined));
    await waitFor('no blob of the job left', 60_000, async () => ((await pathsMentioning(job.id)).length === 0 ? true : undefined), () => JSON.stringify(cluster.logs().slice(-2000)));
    assert.equal(await cluster.state(gatewayName, `chunks/${job.id}/`), {});
  } finally {
    try {
      process.kill(cluster.pid(stopped)!, 'SIGCONT');
    } catch {
      // Already running or gone.
    }
  }
});

test('dcas rm deletes a completed job and its .dcz (exit 0); a second rm is a one-line NOT_FOUND (exit 1)', async () => {
  const base = cluster.gateway(cluster.configs[0].name);
  const created = await fetch(`${base}/v1/jobs?name=done.txt&wait=true`, { method: 'POST', headers: auth, body: textLike(200_000, 12) });
  const job = (await created.json()) as any;
  assert.is(job.state, 'completed');
  assert.ok((await pathsMentioning(job.id)).length > 0, 'the .dcz exists before rm');
  const removed = await runDcas(['rm', job.id, '--server', base, '--token', token], cluster.dataDir);
  assert.is(removed.code, 0, removed.stderr);
  assert.match(removed.stdout, new RegExp(`job ${job.id} deleted \\(it was completed\\)`));
  assert.is((await fetch(`${base}/v1/jobs/${job.id}`, { headers: auth })).status, 404);
  assert.equal(await pathsMentioning(job.id), []);
  const again = await runDcas(['delete', job.id, '--server', base, '--token', token, '--json'], cluster.dataDir);
  assert.is(again.code, 1);
  assert.is(again.stderr.trim().split('\n').length, 1, again.stderr);
  assert.match(again.stderr, /not found/);
});

test.run();
