/**
 * Issue 16, "must show 3", against real nodes: a 3-node cluster of `dcas node` processes with a token.
 * A client that sends 5,000 `jobs` requests and never reads, and 512 idle connections from the same
 * address, leave the node's resident memory under 300 MB (its peak, VmHWM, from /proc) and a token
 * holder still served; a WebSocket from a foreign page (Origin: http://evil.example) is refused.
 */
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocket } from 'ws';
import { connect } from '../node/client/index.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';

const token = 'abuse-token';
const memoryBytesMax = 300 * 1024 * 1024;
let cluster: TestCluster;

test.before(async () => {
  cluster = await createTestCluster({ nodes: 3, edit: (config) => ({ ...config, token, gateway: { ...config.gateway, allowedHosts: ['dcas.internal'] } }) });
  for (const config of cluster.configs) cluster.start(config.name);
  await waitFor('3 alive members and one coordinator', 60_000, () => cluster.agreed(3), () => cluster.logs());
  // Jobs with long names, so each `jobs` reply is large (about 100 KB), as on a busy cluster.
  const client = await connect({ server: cluster.gateway('node1'), token });
  try {
    for (let i = 0; i < 100; i++) await client.upload(Buffer.from(`job ${i}\n`.repeat(50)), { fileName: `${String(i).padStart(3, '0')}-${'n'.repeat(240)}.txt` });
  } finally {
    await client.close();
  }
});

test.after(async () => {
  await cluster.destroy();
});

/** Resident memory of a node process now and at its peak, from /proc/PID/status. */
async function memoryOf(name: string): Promise<{ rssBytes: number; peakBytes: number }> {
  const status = await readFile(`/proc/${cluster.pid(name)}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
  return { rssBytes: kib('VmRSS'), peakBytes: kib('VmHWM') };
}

function webSocketUrl(name: string): string {
  return `${cluster.gateway(name).replace(/^http/, 'ws')}/ws`;
}

/** Opens a socket and resolves once it is open, refused or closed: the attacker does not care which. */
function openIdle(url: string): Promise<WebSocket> {
  const socket = new WebSocket(url);
  socket.on('error', () => {});
  return new Promise((resolve) => {
    socket.once('open', () => resolve(socket));
    socket.once('close', () => resolve(socket));
    socket.once('unexpected-response', () => resolve(socket));
  });
}

async function tokenHolderListsJobs(name: string): Promise<number> {
  const client = await connect({ server: cluster.gateway(name), token, connectTimeoutMs: 20_000, requestTimeoutMs: 20_000 });
  try {
    return (await client.jobs({ limit: 5 })).length;
  } finally {
    await client.close();
  }
}

test('a never-reading client and 512 idle connections: node memory stays under 300 MB, a token holder is served', async () => {
  const before = await memoryOf('node1');
  const reader = new WebSocket(webSocketUrl('node1'));
  reader.on('error', () => {});
  await new Promise((resolve) => reader.once('open', resolve));
  reader.send(JSON.stringify({ type: 'hello', version: 1, token }));
  reader.pause();
  for (let i = 0; i < 5_000; i++) reader.send(JSON.stringify({ type: 'jobs', id: i }));
  const idle: WebSocket[] = [];
  for (let i = 0; i < 512; i++) idle.push(await openIdle(webSocketUrl('node1')));
  // While all of that is still open on the client side, a token holder is served.
  assert.is(await tokenHolderListsJobs('node1'), 5);
  const after = await memoryOf('node1');
  for (const socket of [reader, ...idle]) socket.terminate();
  assert.ok(after.peakBytes < memoryBytesMax, `node1 peaked at ${(after.peakBytes / 1048576).toFixed(0)} MB (before ${(before.rssBytes / 1048576).toFixed(0)} MB, now ${(after.rssBytes / 1048576).toFixed(0)} MB)`);
  console.log(`node1 RSS ${(before.rssBytes / 1048576).toFixed(0)} MB before, ${(after.rssBytes / 1048576).toFixed(0)} MB after, peak ${(after.peakBytes / 1048576).toFixed(0)} MB`);
  // The cluster kept its coordinator through it.
  await waitFor('3 alive members and one coordinator', 30_000, () => cluster.agreed(3), () => cluster.logs());
});

test('a WebSocket with Origin http://evil.example is refused (403) by a real node', async () => {
  const socket = new WebSocket(webSocketUrl('node2'), { headers: { Origin: 'http://evil.example' } });
  socket.on('error', () => {});
  const status = await new Promise<number>((resolve) => {
    socket.once('unexpected-response', (_request, response) => resolve(response.statusCode ?? 0));
    socket.once('open', () => resolve(101));
  });
  socket.terminate();
  assert.is(status, 403);
  assert.is(await tokenHolderListsJobs('node2'), 5);
});

/** The status of GET /healthz on a node with the given Host header. */
function healthWithHost(name: string, host: string): Promise<number> {
  const url = new URL(cluster.gateway(name));
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: url.hostname, port: url.port, path: '/healthz', headers: { host } }, (response) => {
      response.resume();
      resolve(response.statusCode ?? 0);
    });
    request.on('error', reject);
    request.end();
  });
}

test('a real node serves the names in its gateway.allowedHosts and answers 421 to others (DNS rebinding)', async () => {
  const port = new URL(cluster.gateway('node3')).port;
  assert.is(await healthWithHost('node3', `dcas.internal:${port}`), 200);
  assert.is(await healthWithHost('node3', `127.0.0.1:${port}`), 200);
  assert.is(await healthWithHost('node3', `evil.example:${port}`), 421);
});

test.run();
