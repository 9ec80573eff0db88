/**
 * The gateway's trust boundary toward clients (issue 16): only its own pages and names may use it
 * (Origin, Host), and no client can take the node's memory or every connection slot.
 * Real gateway (HTTP + ws) on loopback, backed by the jobs-room test double.
 */
import { request as httpRequest } from 'node:http';
import { connect as tcpConnect } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocket } from 'ws';
import { connect } from '../node/client/index.ts';
import { eventually, openPeer, openWelcomedPeer, rejects, sleep, startTestGateway, type RawPeer, type TestGateway } from './support/gateway.ts';

const token = 'trust-token';
let node: TestGateway;
let port: number;

test.before(async () => {
  node = await startTestGateway({
    token,
    allowedHosts: ['dcas.internal', 'proxy.example:8443'],
    allowedOrigins: ['https://console.example.com'],
    limits: { pendingConnectionsPerAddressMax: 16, pendingConnectionsMax: 64, replyBufferedBytesMax: 1024 * 1024, requestsQueuedMax: 256 },
  });
  port = Number(new URL(node.url).port);
  // Jobs with long names make each `jobs` reply large (about 100 KB), as on a busy cluster.
  for (let i = 0; i < 100; i++) {
    const session = await node.jobs.startUpload({ fileName: `${String(i).padStart(4, '0')}-${'n'.repeat(900)}`, mode: 'compress' });
    await session.write(Buffer.from('x'));
  }
});

test.after(async () => {
  await node.stop();
});

/** One HTTP request with any Host header (fetch will not send a forged one). */
function get(path: string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port, path, headers: { authorization: `Bearer ${token}`, ...headers } }, (response) => {
      let text = '';
      response.on('data', (data: Buffer) => (text += data.toString('utf8')));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: text === '' ? undefined : JSON.parse(text) }));
    });
    request.on('error', reject);
    request.end();
  });
}

/** The status line a raw WebSocket upgrade request gets. */
function upgradeStatus(headers: Record<string, string>): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tcpConnect(port, '127.0.0.1', () => {
      const lines = ['GET /ws HTTP/1.1', 'Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`)];
      socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    });
    let text = '';
    socket.on('data', (data) => {
      text += data.toString('latin1');
      if (text.includes('\r\n')) {
        resolve(text.split('\r\n')[0]);
        socket.destroy();
      }
    });
    socket.on('error', reject);
  });
}

async function assertTokenHolderServed(): Promise<void> {
  const client = await connect({ server: node.url, token, connectTimeoutMs: 10_000 });
  try {
    const jobs = await client.jobs({ limit: 1 });
    assert.is(jobs.length, 1);
  } finally {
    await client.close();
  }
}

test('a WebSocket with Origin http://evil.example is refused with 403 before the upgrade', async () => {
  assert.match(await upgradeStatus({ Host: `127.0.0.1:${port}`, Origin: 'http://evil.example' }), /^HTTP\/1\.1 403 /);
  await rejects(openPeer(node.wsUrl, { Origin: 'http://evil.example' }), /HTTP 403/);
  await rejects(openPeer(node.wsUrl, { Origin: 'null' }), /HTTP 403/);
  await rejects(openPeer(node.wsUrl, { Origin: `http://evil.example:${port}` }), /HTTP 403/);
  assert.is(node.gateway.stats().connections, 0);
});

test('the gateway\'s own pages, configured origins and clients without Origin are welcomed', async () => {
  for (const origin of [undefined, `http://127.0.0.1:${port}`, `http://localhost:${port}`, 'https://console.example.com']) {
    const peer = await openPeer(node.wsUrl, origin === undefined ? {} : { Origin: origin });
    peer.send({ type: 'hello', version: 1, token });
    assert.is((await peer.nextJson()).type, 'welcome', `origin ${origin}`);
    peer.close();
    await peer.closed;
  }
});

test('HTTP and upgrades with a foreign Host (DNS rebinding) get 421; known names are served', async () => {
  const foreign = await get('/jobs', { host: `evil.example:${port}` });
  assert.is(foreign.status, 421);
  assert.is(foreign.body.error.code, 'MISDIRECTED');
  assert.match(foreign.body.error.message, /evil\.example.*gateway\.allowedHosts/);
  assert.is((await get('/healthz', { host: 'rebound.attacker.test' })).status, 421);
  assert.match(await upgradeStatus({ Host: `evil.example:${port}` }), /^HTTP\/1\.1 421 /);
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `dcas.internal:${port}`, 'proxy.example:8443']) {
    assert.is((await get('/jobs?limit=1', { host })).status, 200, host);
  }
  assert.is((await get('/jobs', { host: 'proxy.example:9999' })).status, 421, 'a name allowed with a port is allowed only on that port');
  assert.is((await get('/jobs', { host: `localhost:${port + 1}` })).status, 421, 'loopback names only with the gateway\'s port');
});

test('an HTTP request from a foreign page (Origin) is refused with 403', async () => {
  const response = await get('/jobs', { host: `127.0.0.1:${port}`, origin: 'http://evil.example' });
  assert.is(response.status, 403);
  assert.is(response.body.error.code, 'FORBIDDEN_ORIGIN');
  assert.is((await get('/jobs?limit=1', { host: `127.0.0.1:${port}`, origin: 'https://console.example.com' })).status, 200);
});

test('/state?limit=-1 (or 0, or huge) is clamped, never "everything"', async () => {
  assert.is((await get('/state?limit=-1', {})).body.limit, 1);
  assert.is((await get('/state?limit=0', {})).body.limit, 1);
  assert.is((await get('/state?limit=1e12', {})).body.limit, 10_000);
  assert.is((await get('/state?limit=abc', {})).body.limit, 1_000);
  assert.is((await get('/jobs?limit=-5', {})).body.jobs.length, 1);
});

test('512 idle connections without hello from one address do not lock out a token holder', async () => {
  const idle: WebSocket[] = [];
  for (let i = 0; i < 512; i++) {
    const socket = new WebSocket(node.wsUrl);
    socket.on('error', () => {});
    await new Promise<void>((resolve) => {
      socket.once('open', () => resolve());
      socket.once('close', () => resolve());
      socket.once('unexpected-response', () => resolve());
    });
    idle.push(socket);
  }
  // Each new one closed the oldest from the same address: the node holds at most 16 of them.
  assert.ok(node.gateway.stats().connections <= 16, `connections held: ${node.gateway.stats().connections}`);
  assert.is(node.gateway.stats().connectionsPending, 16);
  await assertTokenHolderServed();
  for (const socket of idle) socket.terminate();
  await eventually(() => node.gateway.stats().connections === 0, 'all idle sockets gone', 10_000);
});

test('512 connections that say hello without the token are each refused at once; a token holder is served', async () => {
  const closes: Array<Promise<{ code: number; reason: string }>> = [];
  for (let i = 0; i < 512; i++) {
    const peer = await openPeer(node.wsUrl).catch(() => undefined);
    if (peer === undefined) continue;
    peer.send({ type: 'hello', version: 1 });
    closes.push(peer.closed);
  }
  assert.ok(closes.length > 0);
  for (const closed of await Promise.all(closes)) assert.is(closed.code, 1008);
  await assertTokenHolderServed();
});

test('a node without a token caps welcomed connections per address; other clients keep their slots', async () => {
  const open = await startTestGateway({ limits: { connectionsPerAddressMax: 4 } });
  try {
    const peers: RawPeer[] = [];
    for (let i = 0; i < 4; i++) peers.push(await openWelcomedPeer(open.wsUrl));
    const extra = await openPeer(open.wsUrl);
    extra.send({ type: 'hello', version: 1 });
    const error = await extra.nextJson();
    assert.is(error.code, 'BUSY');
    assert.match(error.message, /4 connections open from 127\.0\.0\.1/);
    assert.is((await extra.closed).code, 1013);
    peers.pop()!.close();
    await eventually(() => open.gateway.stats().connections === 3, 'a slot freed');
    peers.push(await openWelcomedPeer(open.wsUrl));
    for (const peer of peers) peer.close();
  } finally {
    await open.stop();
  }
});

test('a client that sends 5,000 jobs requests and never reads is dropped; the node keeps serving', async () => {
  const socket = new WebSocket(node.wsUrl);
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('open', resolve));
  socket.send(JSON.stringify({ type: 'hello', version: 1, token }));
  socket.pause();
  const closed = new Promise<number>((resolve) => socket.once('close', (code) => resolve(code)));
  for (let i = 0; i < 5_000; i++) socket.send(JSON.stringify({ type: 'jobs', id: i }));
  await eventually(() => node.gateway.stats().connections === 0, 'the non-reading client is dropped', 20_000);
  await assertTokenHolderServed();
  socket.terminate();
  await closed;
});

test('a client that asks at a pace the queue allows but never reads is dropped at its reply budget', async () => {
  const socket = new WebSocket(node.wsUrl);
  socket.on('error', () => {});
  await new Promise((resolve) => socket.once('open', resolve));
  socket.send(JSON.stringify({ type: 'hello', version: 1, token }));
  socket.pause();
  const dropped = node.gateway.stats().clientsDropped;
  let sent = 0;
  // 100 KB replies against a 1 MiB budget (plus what the kernel's socket buffers take): a few hundred.
  while (node.gateway.stats().connections > 0 && sent < 5_000) {
    for (let i = 0; i < 20; i++) socket.send(JSON.stringify({ type: 'jobs', id: sent++ }));
    await sleep(10);
  }
  assert.ok(sent < 5_000, 'dropped before all 5,000 requests were sent');
  await eventually(() => node.gateway.stats().connections === 0, 'dropped', 10_000);
  assert.is(node.gateway.stats().clientsDropped, dropped + 1, 'dropped for not reading, not for queueing');
  socket.terminate();
  await assertTokenHolderServed();
});

test('with the default limits, 60 clients connecting at once from one address are all welcomed', async () => {
  const busy = await startTestGateway({ token });
  try {
    const clients = await Promise.all(Array.from({ length: 60 }, () => connect({ server: busy.url, token })));
    assert.is(busy.gateway.stats().connections, 60);
    await Promise.all(clients.map((client) => client.close()));
  } finally {
    await busy.stop();
  }
});

test.run();
