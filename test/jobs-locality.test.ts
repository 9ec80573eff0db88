/**
 * Locality on real processes (3 voters, default config, one machine): the gateway that receives an
 * upload codes its chunks itself and records them done at once; no raw chunk is staged for another
 * node, and the result is the same bytes as anywhere else.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type DcasClient } from '../node/client/index.ts';
import { decompress } from '../node/index.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { textLike } from './helpers.ts';

let cluster: TestCluster;
const chunkSize = 64 * 1024;

test.before(async () => {
  cluster = await createTestCluster({ nodes: 3 });
  for (const config of cluster.configs) cluster.start(config.name);
  await waitFor('3 alive members and one coordinator', 30_000, () => cluster.agreed(3), () => cluster.logs());
});

test.after(async () => {
  await cluster.destroy();
});

async function downloadAll(client: DcasClient, jobId: string, compressed: boolean): Promise<Buffer> {
  const pieces: Uint8Array[] = [];
  for await (const piece of await client.download(jobId, { compressed })) pieces.push(piece);
  return Buffer.concat(pieces);
}

test('a gateway codes the chunks it receives: every chunk is recorded done by it, none staged raw', async () => {
  const data = textLike(4 * 1024 * 1024 + 321, 61);
  const seen = new Map<string, { state: string; node: string | null }>();
  const rawStaged = new Set<string>();
  let watching = true;
  // What the log and the blob store show while the upload runs: chunk records and raw staging folders.
  const watcher = (async () => {
    while (watching) {
      const chunks = (await cluster.state('node1', 'chunks/').catch(() => ({}))) as Record<string, { state: string; node: string | null }>;
      for (const [key, chunk] of Object.entries(chunks)) if (!seen.has(key) || chunk.state !== 'done') seen.set(key, chunk);
      const jobs = await readdir(join(cluster.dataDir, 'blobs', 'staging')).catch(() => [] as string[]);
      for (const job of jobs) if ((await readdir(join(cluster.dataDir, 'blobs', 'staging', job)).catch(() => [] as string[])).includes('in')) rawStaged.add(job);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  const client = await connect({ server: cluster.gateway('node2') });
  try {
    const job = await client.waitForCompletion((await client.upload(data, { fileName: 'local.txt', chunkSize })).id);
    watching = false;
    await watcher;
    assert.is(job.state, 'completed', job.error ?? '');
    assert.is(job.sha256, createHash('sha256').update(data).digest('hex'));
    assert.equal(job.chunkNodes, { node2: Math.ceil(data.length / chunkSize) });
    assert.ok(seen.size > 0, 'the watcher saw chunk records while the job ran');
    const notDone = [...seen.values()].filter((chunk) => chunk.state !== 'done' || chunk.node !== 'node2');
    assert.equal(notDone, [], 'no chunk waited for the coordinator to assign it');
    assert.equal([...rawStaged], [], 'no raw chunk was staged');
    const original = await downloadAll(client, job.id, false);
    assert.ok(original.equals(data));
    assert.ok(Buffer.from(await decompress(await downloadAll(client, job.id, true))).equals(data), 'the .dcz decodes locally to the original');
  } finally {
    watching = false;
    await watcher;
    await client.close();
  }
});

test('a .dcz uploaded for decompression still goes through the coordinator and decodes to the original', async () => {
  const data = textLike(1024 * 1024 + 5, 62);
  const client = await connect({ server: cluster.gateway('node3') });
  try {
    const compressed = await client.waitForCompletion((await client.upload(data, { fileName: 'round.txt', chunkSize })).id);
    assert.is(compressed.state, 'completed', compressed.error ?? '');
    const dcz = await downloadAll(client, compressed.id, true);
    const job = await client.waitForCompletion((await client.upload(dcz, { fileName: 'round.txt.dcz', mode: 'decompress' })).id);
    assert.is(job.state, 'completed', job.error ?? '');
    assert.ok((await downloadAll(client, job.id, false)).equals(data));
  } finally {
    await client.close();
  }
});

test.run();
