/**
 * Hostile and broken clients against real node processes and the real jobs room: each case checks
 * what the node did with the client, that nothing accepted was lost or left half-written, and that
 * the node still serves others afterwards.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import WebSocket from 'ws';
import { connect, DcasClientError } from '../node/client/index.ts';
import { format } from '../node/codec/index.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { textLike } from './helpers.ts';

let cluster: TestCluster;
const token = 'abuse-test-token';

test.before(async () => {
  cluster = await createTestCluster({ nodes: 3, overrides: { jobs: { leaseMs: 3_000 } }, edit: (config) => ({ ...config, token }) });
  for (const config of cluster.configs) cluster.start(config.name);
  await waitFor('3 alive members and one coordinator', 30_000, () => cluster.agreed(3), () => cluster.logs());
});

test.after(async () => {
  await cluster.destroy();
});

/** A raw protocol client: the messages it received, in order, and how its socket closed. */
async function rawClient(node: string, authToken = token) {
  const socket = new WebSocket(`${cluster.gateway(node).replace('http', 'ws')}/ws`);
  const messages: Array<Record<string, unknown>> = [];
  const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
  socket.on('message', (data, binary) => {
    if (!binary) messages.push(JSON.parse(String(data)));
  });
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  socket.send(JSON.stringify({ type: 'hello', version: 1, token: authToken }));
  const next = async (type: string) => (await waitFor(`a ${type} message`, 10_000, async () => messages.find((message) => message.type === type))).value;
  return { socket, messages, closed, next };
}

/** The gateway still answers health checks and takes a new upload to completion. */
async function assertStillServing(node: string): Promise<void> {
  assert.is((await fetch(`${cluster.gateway(node)}/healthz`)).status, 200);
  const client = await connect({ server: cluster.gateway(node), token });
  try {
    const data = textLike(200_000, 99);
    const job = await client.waitForCompletion((await client.upload(data, { fileName: 'after.txt', chunkSize: 64 * 1024 })).id);
    assert.is(job.state, 'completed', job.error ?? '');
  } finally {
    await client.close();
  }
}

async function stagedFiles(jobId: string): Promise<string[]> {
  const entries = await readdir(join(cluster.dataDir, 'blobs', 'staging', jobId), { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).map((entry) => entry.name);
}

test('a client that disconnects mid-upload: the job is marked failed and its staged blobs are removed', async () => {
  const client = await rawClient('node2');
  await client.next('welcome');
  client.socket.send(JSON.stringify({ type: 'upload', id: 1, fileName: 'cut.txt', mode: 'compress', chunkSize: 64 * 1024, size: 4_000_000 }));
  const accepted = await client.next('upload-accepted');
  const jobId = String(accepted.jobId);
  const data = textLike(1_000_000, 3);
  for (let at = 0; at < data.length; at += 256 * 1024) client.socket.send(data.subarray(at, at + 256 * 1024));
  await waitFor('some chunks staged', 10_000, async () => ((await stagedFiles(jobId)).length > 0 ? true : undefined));
  client.socket.terminate();
  const { value: job } = await waitFor('the job to fail', 15_000, async () => {
    const response = await fetch(`${cluster.gateway('node1')}/jobs/${jobId}`, { headers: { authorization: `Bearer ${token}` } });
    const view = (await response.json()) as { state: string; error: string | null };
    return view.state === 'failed' ? view : undefined;
  });
  assert.match(job.error ?? '', /client disconnected/);
  await waitFor('staged blobs removed', 10_000, async () => ((await stagedFiles(jobId)).length === 0 ? true : undefined));
  await assertStillServing('node2');
});

test('a wrong token is refused on the WebSocket and on HTTP, and nothing is stored', async () => {
  const intruder = await rawClient('node1', 'not-the-token');
  const error = await intruder.next('error');
  assert.is(error.code, 'AUTH');
  assert.is(await intruder.closed, 1008);
  for (const path of ['/jobs', '/cluster', '/state?prefix=jobs/']) {
    const response = await fetch(`${cluster.gateway('node1')}${path}`, { headers: { authorization: 'Bearer nope' } });
    assert.is(response.status, 401, path);
  }
  await assertStillServing('node1');
});

test('ten clients that send as fast as they can and never read are cut off; the node stays bounded and serving', async () => {
  const vmHwm = async () => Number(/VmHWM:\s+(\d+)/.exec(await readFile(`/proc/${await pidOf('node3')}/status`, 'utf8'))![1]) * 1024;
  // A job through node3 first: its codec threads start with the first chunk it codes (lazily), a fixed
  // cost the high-water mark then holds, so the growth measured below is what the flood buffered.
  await assertStillServing('node3');
  const before = await vmHwm();
  const floods = await Promise.all(
    Array.from({ length: 10 }, async (_, i) => {
      const client = await rawClient('node3');
      await client.next('welcome');
      client.socket.send(JSON.stringify({ type: 'upload', id: 1, fileName: `flood${i}.bin`, mode: 'compress' }));
      await client.next('upload-accepted');
      // Ignore every credit grant: keep sending until the node cuts the connection.
      const frame = new Uint8Array(1024 * 1024).fill(i);
      let sent = 0;
      while (client.socket.readyState === WebSocket.OPEN && sent < 64 * 1024 * 1024) {
        client.socket.send(frame);
        sent += frame.length;
        if (client.socket.bufferedAmount > 4 * 1024 * 1024) await new Promise((resolve) => setTimeout(resolve, 5));
      }
      return { code: await client.closed, errors: client.messages.filter((message) => message.type === 'error').map((message) => message.code) };
    }),
  );
  for (const flood of floods) {
    assert.is(flood.code, 1008);
    assert.ok(flood.errors.includes('FLOW_CONTROL'), JSON.stringify(flood.errors));
  }
  const peak = await vmHwm();
  const growth = peak - before;
  // What a flooding upload holds: its 2 MiB of credit, the 1 MiB frame being assembled, and a chunk
  // buffer while the node's uploads hold fewer than 24 MiB of them (ChunkMemory, upload-chunks.ts).
  // Measured over six runs: 84-99 MiB of growth, peaks of 250-267 MB (278-308 MB and 109-138 MiB while
  // every upload had chunk buffers of its own).
  console.log(`  flood: node3 peak RSS ${(peak / 1e6).toFixed(0)} MB, ${(growth / 1048576).toFixed(0)} MiB over ${(before / 1e6).toFixed(0)} MB before it`);
  assert.ok(growth < 120 * 1024 * 1024, `peak RSS grew by ${(growth / 1048576).toFixed(0)} MiB under the flood`);
  await assertStillServing('node3');
});

test('a flipped byte in a stored chunk is reported on download as an error naming the job and chunk, never as data', async () => {
  const client = await connect({ server: cluster.gateway('node1'), token });
  try {
    const data = textLike(5 * 64 * 1024, 17);
    const job = await client.waitForCompletion((await client.upload(data, { fileName: 'flip.txt', chunkSize: 64 * 1024 })).id);
    assert.is(job.state, 'completed', job.error ?? '');
    // Corrupt chunk 2's frame in the stored .dcz (the folder store keeps the blob's bytes first).
    const path = join(cluster.dataDir, 'blobs', 'jobs', `${job.id}.dcz`);
    const stored = await readFile(path);
    let offset = format.headerBytes;
    for (let chunk = 0; chunk < 2; chunk++) offset += format.chunkHeaderBytes + stored.readUInt32LE(offset + 8);
    stored[offset + format.chunkHeaderBytes + 100] ^= 0x08;
    await writeFile(path, stored);
    const target = join(cluster.dataDir, 'flip.out');
    try {
      await client.downloadToFile(job.id, target, { compressed: false });
      assert.unreachable('a corrupted chunk must not download as data');
    } catch (error) {
      assert.instance(error, DcasClientError);
      assert.match((error as Error).message, new RegExp(`job ${job.id}: chunk 2`));
    }
    assert.equal((await readdir(cluster.dataDir)).filter((name) => name.startsWith('flip.out')), []);
  } finally {
    await client.close();
  }
  await assertStillServing('node1');
});

test('a gateway killed mid-upload: the coordinator fails the orphaned job and its staged blobs are removed', async () => {
  const leader = (await cluster.agreed(3))!.coordinator!;
  const gatewayNode = ['node1', 'node2', 'node3'].find((name) => name !== leader)!;
  const observer = ['node1', 'node2', 'node3'].find((name) => name !== gatewayNode)!;
  const client = await rawClient(gatewayNode);
  await client.next('welcome');
  client.socket.send(JSON.stringify({ type: 'upload', id: 1, fileName: 'orphan.txt', mode: 'compress', chunkSize: 64 * 1024 }));
  const jobId = String((await client.next('upload-accepted')).jobId);
  const data = textLike(1_000_000, 8);
  for (let at = 0; at < data.length; at += 256 * 1024) client.socket.send(data.subarray(at, at + 256 * 1024));
  await waitFor('some chunks staged', 10_000, async () => ((await stagedFiles(jobId)).length > 0 ? true : undefined));
  await cluster.stop(gatewayNode, 'SIGKILL');
  try {
    const { value: job } = await waitFor('the orphaned job to fail', 20_000, async () => {
      const response = await fetch(`${cluster.gateway(observer)}/jobs/${jobId}`, { headers: { authorization: `Bearer ${token}` } });
      const view = (await response.json()) as { state: string; error: string | null };
      return view.state === 'failed' ? view : undefined;
    });
    assert.match(job.error ?? '', new RegExp(`gateway ${gatewayNode} (was unreachable for over 3000 ms|restarted) during the upload`));
    await waitFor('staged blobs removed', 15_000, async () => ((await stagedFiles(jobId)).length === 0 ? true : undefined));
  } finally {
    cluster.start(gatewayNode);
    await waitFor('the gateway to rejoin', 20_000, () => cluster.agreed(3), () => cluster.logs());
  }
  await assertStillServing(gatewayNode);
});

async function pidOf(name: string): Promise<number> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const command = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (command.includes(join(cluster.dataDir, `${name}.json`))) return Number(entry);
  }
  throw new Error(`no process for ${name}`);
}

test.run();
