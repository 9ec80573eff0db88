/**
 * The gateway's WebSocket protocol (docs/PROTOCOL.md): hello and auth, message validation, ordering,
 * frame limits, heartbeat, connection limits, status, list and watch. Real ws connections to a real
 * gateway; the jobs room is the in-memory test double. Uploads and downloads: gateway-flow.test.ts.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocket } from 'ws';
import { eventually, rejects, openPeer, openWelcomedPeer, sleep, startTestGateway, type RawPeer, type TestGateway } from './support/gateway.ts';

const token = 'correct horse battery staple';
let node: TestGateway;
let bystander: RawPeer;

test.before(async () => {
  node = await startTestGateway({ token, limits: { helloTimeoutMs: 300, frameBytesMax: 64 * 1024, controlBytesMax: 4 * 1024, badMessagesMax: 5, heartbeatMs: 150, watchIntervalMs: 100, connectionsMax: 12 } });
  bystander = await openWelcomedPeer(node.wsUrl, token);
});

test.after(async () => {
  bystander.close();
  await node.stop();
});

/** After every abuse: an existing connection and a new one are both still served. */
async function assertStillServing(): Promise<void> {
  bystander.send({ type: 'jobs', id: 'still-there' });
  const reply = await bystander.nextJson();
  assert.is(reply.type, 'jobs');
  assert.is(reply.id, 'still-there');
  const fresh = await openWelcomedPeer(node.wsUrl, token);
  fresh.send({ type: 'jobs' });
  assert.is((await fresh.nextJson()).type, 'jobs');
  fresh.close();
  await fresh.closed;
}

async function assertClosedWith(peer: RawPeer, code: string, closeCode: number): Promise<any> {
  const error = await peer.nextJson();
  assert.is(error.type, 'error');
  assert.is(error.code, code, JSON.stringify(error));
  assert.type(error.message, 'string');
  const closed = await peer.closed;
  assert.is(closed.code, closeCode);
  return error;
}

test('hello with the right token is welcomed with the version, the node name, auth "token" and the limits', async () => {
  const peer = await openPeer(node.wsUrl);
  peer.send({ type: 'hello', version: 1, token });
  const welcome = await peer.nextJson();
  assert.equal(welcome.type, 'welcome');
  assert.is(welcome.version, 1);
  assert.is(welcome.node, 'node-test');
  assert.is(welcome.auth, 'token');
  assert.is(welcome.limits.frameBytesMax, 64 * 1024);
  assert.is(welcome.limits.uploadWindowBytes, 2 * 1024 * 1024);
  assert.is(welcome.limits.heartbeatMs, 150);
  peer.close();
});

test('a wrong token gets AUTH and a 1008 close, and a pipelined upload behind it stores nothing', async () => {
  const before = node.jobs.startedUploads;
  const peer = await openPeer(node.wsUrl);
  peer.send({ type: 'hello', version: 1, token: 'guess' });
  peer.send({ type: 'upload', id: 1, fileName: 'a.txt', mode: 'compress' });
  peer.sendBinary(Buffer.from('sneaky bytes'));
  const error = await assertClosedWith(peer, 'AUTH', 1008);
  assert.not.match(error.message, /guess/);
  assert.is(node.jobs.startedUploads, before);
  await assertStillServing();
});

test('a missing token gets AUTH and a 1008 close', async () => {
  const peer = await openPeer(node.wsUrl);
  peer.send({ type: 'hello', version: 1 });
  await assertClosedWith(peer, 'AUTH', 1008);
});

test('an unsupported protocol version gets UNSUPPORTED_VERSION and a 1008 close', async () => {
  const peer = await openPeer(node.wsUrl);
  peer.send({ type: 'hello', version: 2, token });
  const error = await assertClosedWith(peer, 'UNSUPPORTED_VERSION', 1008);
  assert.match(error.message, /speaks 1/);
});

test('anything before hello (a request, a binary frame, garbage) is OUT_OF_ORDER or BAD_MESSAGE and closes', async () => {
  const request = await openPeer(node.wsUrl);
  request.send({ type: 'jobs' });
  await assertClosedWith(request, 'OUT_OF_ORDER', 1008);
  const binary = await openPeer(node.wsUrl);
  binary.sendBinary(Buffer.alloc(10));
  await assertClosedWith(binary, 'OUT_OF_ORDER', 1008);
  const garbage = await openPeer(node.wsUrl);
  garbage.send('{not json');
  await assertClosedWith(garbage, 'BAD_MESSAGE', 1008);
  await assertStillServing();
});

test('a connection that says no hello within helloTimeoutMs is closed with TIMEOUT (slow-loris)', async () => {
  const peer = await openPeer(node.wsUrl);
  const started = Date.now();
  await assertClosedWith(peer, 'TIMEOUT', 1008);
  assert.ok(Date.now() - started >= 250, 'closed before the timeout');
  await eventually(() => node.gateway.stats().connections === 1, 'only the bystander remains');
});

test('garbage after hello gets BAD_MESSAGE with the request id when readable; the connection stays usable', async () => {
  const peer = await openWelcomedPeer(node.wsUrl, token);
  peer.send('not json at all');
  assert.is((await peer.nextJson()).code, 'BAD_MESSAGE');
  peer.send('[1,2,3]');
  assert.is((await peer.nextJson()).code, 'BAD_MESSAGE');
  peer.send({ type: 'launch-missiles', id: 'x1' });
  const unknown = await peer.nextJson();
  assert.equal([unknown.code, unknown.id], ['BAD_MESSAGE', 'x1']);
  assert.match(unknown.message, /unknown message type/);
  peer.send({ type: 'upload', id: 7, fileName: '../../etc/passwd', mode: 'compress' });
  const badName = await peer.nextJson();
  assert.equal([badName.code, badName.id], ['BAD_MESSAGE', 7]);
  assert.match(badName.message, /fileName/);
  peer.send({ type: 'jobs', id: 'after' });
  const reply = await peer.nextJson();
  assert.equal([reply.type, reply.id], ['jobs', 'after']);
  peer.close();
});

test('a connection that keeps sending bad messages is closed after badMessagesMax', async () => {
  const peer = await openWelcomedPeer(node.wsUrl, token);
  for (let i = 0; i < 5; i++) peer.send(`garbage ${i}`);
  const codes: string[] = [];
  for (let i = 0; i < 6; i++) codes.push((await peer.nextJson()).code);
  assert.equal(codes, ['BAD_MESSAGE', 'BAD_MESSAGE', 'BAD_MESSAGE', 'BAD_MESSAGE', 'BAD_MESSAGE', 'BAD_MESSAGE']);
  assert.is((await peer.closed).code, 1008);
  await assertStillServing();
});

test('a binary frame over frameBytesMax is refused by ws before buffering: close 1009', async () => {
  const peer = await openWelcomedPeer(node.wsUrl, token);
  peer.send({ type: 'upload', id: 1, fileName: 'big.bin', mode: 'compress' });
  const accepted = await peer.nextJson();
  assert.is(accepted.type, 'upload-accepted');
  peer.sendBinary(Buffer.alloc(64 * 1024 + 1));
  const closed = await peer.closed;
  assert.is(closed.code, 1009);
  await eventually(() => node.jobs.aborts.some((abort) => abort.jobId === accepted.jobId), 'the cut-off upload is aborted');
  await assertStillServing();
});

test('a text frame over controlBytesMax gets FRAME_TOO_LARGE and a 1009 close', async () => {
  const peer = await openWelcomedPeer(node.wsUrl, token);
  peer.send(JSON.stringify({ type: 'jobs', padding: 'x'.repeat(5 * 1024) }));
  await assertClosedWith(peer, 'FRAME_TOO_LARGE', 1009);
  await assertStillServing();
});

test('out-of-order requests after hello: a second hello and a stray upload-end are refused, the connection stays', async () => {
  const peer = await openWelcomedPeer(node.wsUrl, token);
  peer.send({ type: 'hello', version: 1, token, id: 'h2' });
  const again = await peer.nextJson();
  assert.equal([again.code, again.id], ['OUT_OF_ORDER', 'h2']);
  peer.send({ type: 'upload-end', jobId: 'abc', id: 3 });
  const stray = await peer.nextJson();
  assert.equal([stray.code, stray.id, stray.jobId], ['OUT_OF_ORDER', 3, 'abc']);
  peer.send({ type: 'upload-abort', jobId: 'abc' });
  assert.is((await peer.nextJson()).code, 'OUT_OF_ORDER');
  peer.send({ type: 'jobs', id: 'ok' });
  assert.is((await peer.nextJson()).type, 'jobs');
  peer.close();
});

test('a binary frame without an accepted upload is a FLOW_CONTROL violation (no credit): close 1008', async () => {
  const peer = await openWelcomedPeer(node.wsUrl, token);
  peer.sendBinary(Buffer.from('data with no upload'));
  await assertClosedWith(peer, 'FLOW_CONTROL', 1008);
  await assertStillServing();
});

test('unknown job ids get NOT_FOUND with the request id; malformed ones BAD_MESSAGE', async () => {
  const peer = await openWelcomedPeer(node.wsUrl, token);
  for (const type of ['status', 'watch', 'download']) {
    peer.send({ type, jobId: 'no-such-job', id: type, compressed: false });
    const error = await peer.nextJson();
    assert.equal([error.type, error.code, error.id, error.jobId], ['error', 'NOT_FOUND', type, 'no-such-job']);
  }
  peer.send({ type: 'status', jobId: '../../etc', id: 'dots' });
  const malformed = await peer.nextJson();
  assert.equal([malformed.code, malformed.id], ['BAD_MESSAGE', 'dots']);
  assert.is(node.gateway.stats().watches, 0);
  peer.close();
});

test('status answers the JobView; jobs lists the jobs', async () => {
  const session = await node.jobs.startUpload({ fileName: 'listed.txt', mode: 'compress' });
  const peer = await openWelcomedPeer(node.wsUrl, token);
  peer.send({ type: 'status', jobId: session.jobId, id: 1 });
  const status = await peer.nextJson();
  assert.equal([status.type, status.id, status.job.id, status.job.fileName, status.job.state], ['job', 1, session.jobId, 'listed.txt', 'uploading']);
  peer.send({ type: 'jobs', id: 2 });
  const list = await peer.nextJson();
  assert.ok(list.jobs.some((job: { id: string }) => job.id === session.jobId));
  peer.close();
});

test('watch sends the job now and on changes, coalesced to one per interval with the latest view last; unwatch stops it', async () => {
  const session = await node.jobs.startUpload({ fileName: 'watched.txt', mode: 'compress' });
  const jobId = session.jobId;
  const peer = await openWelcomedPeer(node.wsUrl, token);
  peer.send({ type: 'watch', jobId, id: 'w' });
  const first = await peer.nextJson();
  assert.equal([first.type, first.id, first.job.id, first.job.state], ['job', 'w', jobId, 'uploading']);
  await eventually(() => node.jobs.listenerCount(jobId) === 1, 'the gateway subscribed');
  const started = Date.now();
  for (let done = 1; done <= 50; done++) node.jobs.update(jobId, { chunks: 50, chunksDone: done });
  const views: any[] = [];
  while (views.at(-1)?.job.chunksDone !== 50) views.push(await peer.nextJson());
  assert.ok(views.length <= 2, `50 changes in one burst arrive as ${views.length} messages`);
  assert.ok(Date.now() - started >= 80, 'the latest view waited for the interval');
  node.jobs.update(jobId, { state: 'completed' });
  assert.is((await peer.nextJson()).job.state, 'completed');
  peer.send({ type: 'unwatch', jobId, id: 'u' });
  const unwatched = await peer.nextJson();
  assert.equal([unwatched.type, unwatched.id, unwatched.jobIds], ['unwatched', 'u', [jobId]]);
  assert.is(node.jobs.listenerCount(jobId), 0);
  node.jobs.update(jobId, { error: 'after unwatch' });
  await rejects(peer.next(300));
  peer.close();
});

test('closing a connection ends its watches', async () => {
  const session = await node.jobs.startUpload({ fileName: 'w2.txt', mode: 'compress' });
  const peer = await openWelcomedPeer(node.wsUrl, token);
  peer.send({ type: 'watch', jobId: session.jobId });
  await peer.nextJson();
  await eventually(() => node.jobs.listenerCount(session.jobId) === 1, 'subscribed');
  peer.close();
  await eventually(() => node.jobs.listenerCount(session.jobId) === 0, 'unsubscribed after close');
});

test('a peer that stops answering pings is dropped by the server (abnormal close) and the gateway keeps serving', async () => {
  const silent = new WebSocket(node.wsUrl, { autoPong: false });
  await new Promise((resolve) => silent.once('open', resolve));
  silent.send(JSON.stringify({ type: 'hello', version: 1, token }));
  const closed = new Promise<number>((resolve) => silent.once('close', (code) => resolve(code)));
  const code = await closed;
  assert.is(code, 1006);
  await assertStillServing();
});

test('connections beyond connectionsMax are refused at the upgrade with HTTP 503 BUSY', async () => {
  const peers: RawPeer[] = [];
  while (node.gateway.stats().connections < 12) peers.push(await openWelcomedPeer(node.wsUrl, token));
  await rejects(openPeer(node.wsUrl), /HTTP 503/);
  peers.pop()!.close();
  await eventually(() => node.gateway.stats().connections < 12, 'a slot freed');
  peers.push(await openWelcomedPeer(node.wsUrl, token));
  for (const peer of peers) peer.close();
  await eventually(() => node.gateway.stats().connections === 1, `all but the bystander closed: ${JSON.stringify(node.gateway.stats())}`);
});

test('WebSocket upgrades on any path but /ws are refused with 404', async () => {
  await rejects(openPeer(node.wsUrl.replace('/ws', '/other')), /HTTP 404/);
});

test('a node without a jobs service welcomes clients but answers job requests NOT_READY', async () => {
  const bare = await startTestGateway({ withoutJobs: true });
  try {
    const peer = await openPeer(bare.wsUrl);
    peer.send({ type: 'hello', version: 1 });
    const welcome = await peer.nextJson();
    assert.is(welcome.auth, 'none');
    peer.send({ type: 'upload', id: 1, fileName: 'a', mode: 'compress' });
    assert.equal((await peer.nextJson()).code, 'NOT_READY');
    peer.close();
  } finally {
    await bare.stop();
  }
});

test('stopping the node tells connected clients UNAVAILABLE and closes with 1001', async () => {
  const other = await startTestGateway();
  const peer = await openWelcomedPeer(other.wsUrl);
  await other.stop();
  await assertClosedWith(peer, 'UNAVAILABLE', 1001);
  await sleep(0);
});

test.run();
