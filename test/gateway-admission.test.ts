/**
 * Upload admission: past uploadsMax an upload waits in a bounded first-in-first-out queue (WebSocket and
 * HTTP together), told its place; past the queue it gets BUSY with a retry-after; a waiting upload gets
 * no credit and has no body read; a client that disconnects leaves the queue. Real ws and HTTP; the jobs
 * room is the in-memory test double.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { eventually, openWelcomedPeer, startTestGateway, type RawPeer } from './support/gateway.ts';

const limits = { uploadsMax: 1, uploadQueueMax: 2, watchIntervalMs: 20 };

async function startUpload(peer: RawPeer, id: string): Promise<any> {
  peer.send({ type: 'upload', id, fileName: `${id}.txt`, mode: 'compress' });
  return peer.nextJson(10_000);
}

test('past uploadsMax uploads queue first in first out, hear their place, and past the queue get BUSY with retryAfterMs', async () => {
  const node = await startTestGateway({ limits });
  try {
    const [a, b, c, d] = await Promise.all([1, 2, 3, 4].map(() => openWelcomedPeer(node.wsUrl)));
    const acceptedA = await startUpload(a, 'a');
    assert.is(acceptedA.type, 'upload-accepted');
    assert.equal(await startUpload(b, 'b'), { type: 'queued', id: 'b', place: 1 });
    assert.equal(await startUpload(c, 'c'), { type: 'queued', id: 'c', place: 2 });
    const busy = await startUpload(d, 'd');
    assert.equal([busy.type, busy.code, busy.id], ['error', 'BUSY', 'd']);
    assert.ok(busy.retryAfterMs >= 1_000, JSON.stringify(busy));
    assert.is(node.gateway.stats().uploadsQueued, 2);
    // The first ends: the head of the queue gets the slot and credit, the next moves up.
    a.send({ type: 'upload-end', jobId: acceptedA.jobId });
    await a.until('upload-done', 10_000);
    const acceptedB = await b.nextJson(10_000);
    assert.is(acceptedB.type, 'upload-accepted');
    assert.ok(acceptedB.credit > 0);
    assert.equal(await c.nextJson(10_000), { type: 'queued', id: 'c', place: 1 });
    assert.is(node.gateway.stats().uploadsQueuedPeak, 2);
    for (const peer of [a, b, c, d]) peer.close();
  } finally {
    await node.stop();
  }
});

test('a queued upload gets no credit: a binary frame before upload-accepted closes the connection (FLOW_CONTROL)', async () => {
  const node = await startTestGateway({ limits });
  try {
    const holder = await openWelcomedPeer(node.wsUrl);
    assert.is((await startUpload(holder, 'h')).type, 'upload-accepted');
    const waiting = await openWelcomedPeer(node.wsUrl);
    assert.is((await startUpload(waiting, 'w')).type, 'queued');
    waiting.sendBinary(new Uint8Array(1024));
    const error = await waiting.until('error', 10_000);
    assert.is(error.code, 'FLOW_CONTROL');
    await waiting.closed;
    await eventually(() => node.gateway.stats().uploadsQueued === 0, 'the closed connection left the queue', 10_000);
    holder.close();
  } finally {
    await node.stop();
  }
});

test('a client that disconnects while queued leaves the queue, and the one behind it moves up', async () => {
  const node = await startTestGateway({ limits });
  try {
    const [holder, leaver, stayer] = await Promise.all([1, 2, 3].map(() => openWelcomedPeer(node.wsUrl)));
    assert.is((await startUpload(holder, 'h')).type, 'upload-accepted');
    assert.equal(await startUpload(leaver, 'l'), { type: 'queued', id: 'l', place: 1 });
    assert.equal(await startUpload(stayer, 's'), { type: 'queued', id: 's', place: 2 });
    leaver.close();
    assert.equal(await stayer.nextJson(10_000), { type: 'queued', id: 's', place: 1 });
    assert.is(node.gateway.stats().uploadsQueued, 1);
    holder.close();
    assert.is((await stayer.nextJson(10_000)).type, 'upload-accepted');
    // The leaver never became a job.
    assert.equal((await node.jobs.listJobs()).map((job) => job.fileName).sort(), ['h.txt', 's.txt']);
    stayer.close();
  } finally {
    await node.stop();
  }
});

test('an upload waiting longer than uploadQueueTimeoutMs gets BUSY with a retry-after and leaves the queue', async () => {
  const node = await startTestGateway({ limits: { ...limits, uploadQueueTimeoutMs: 300 } });
  try {
    const [holder, waiting] = await Promise.all([1, 2].map(() => openWelcomedPeer(node.wsUrl)));
    assert.is((await startUpload(holder, 'h')).type, 'upload-accepted');
    assert.is((await startUpload(waiting, 'w')).type, 'queued');
    const busy = await waiting.until('error', 10_000);
    assert.equal([busy.code, busy.id], ['BUSY', 'w']);
    assert.match(busy.message, /waited 300 ms in the admission queue/);
    assert.ok(busy.retryAfterMs >= 1_000);
    assert.is(node.gateway.stats().uploadsQueued, 0);
    holder.close();
    waiting.close();
  } finally {
    await node.stop();
  }
});

test('HTTP uploads share the queue: one waits without its body read until a WebSocket upload ends; past the queue, 503 with Retry-After', async () => {
  const node = await startTestGateway({ limits: { ...limits, uploadQueueMax: 1 } });
  try {
    const holder = await openWelcomedPeer(node.wsUrl);
    const accepted = await startUpload(holder, 'h');
    assert.is(accepted.type, 'upload-accepted');
    const waiting = fetch(`${node.url}/v1/jobs?name=queued.txt`, { method: 'POST', body: 'queued body' });
    await eventually(() => node.gateway.stats().uploadsQueued === 1, 'the HTTP upload is queued', 10_000);
    assert.not.ok((await node.jobs.listJobs()).some((job) => job.fileName === 'queued.txt'), 'no job before admission');
    const refused = await fetch(`${node.url}/v1/jobs?name=refused.txt`, { method: 'POST', body: 'x' });
    assert.is(refused.status, 503);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1, String(refused.headers.get('retry-after')));
    assert.is(((await refused.json()) as any).error.code, 'BUSY');
    holder.send({ type: 'upload-end', jobId: accepted.jobId });
    const response = await waiting;
    assert.is(response.status, 201);
    const job = (await response.json()) as any;
    assert.is(job.fileName, 'queued.txt');
    assert.is(node.jobs.bytesOf(job.id).toString(), 'queued body');
    holder.close();
  } finally {
    await node.stop();
  }
});

test('without a token, uploads per client address are capped: one more is BUSY over WebSocket and 429 with Retry-After over HTTP; with a token they are not', async () => {
  const open = await startTestGateway({ limits: { uploadsMax: 4, uploadQueueMax: 4, uploadsPerAddressMax: 1 } });
  try {
    const first = await openWelcomedPeer(open.wsUrl);
    assert.is((await startUpload(first, 'a')).type, 'upload-accepted');
    const second = await openWelcomedPeer(open.wsUrl);
    const busy = await startUpload(second, 'b');
    assert.equal([busy.code, busy.id], ['BUSY', 'b']);
    assert.match(busy.message, /per client address/);
    assert.ok(busy.retryAfterMs >= 1_000);
    const refused = await fetch(`${open.url}/v1/jobs?name=third.txt`, { method: 'POST', body: 'x' });
    assert.is(refused.status, 429);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    assert.is(((await refused.json()) as any).error.code, 'TOO_MANY_REQUESTS');
    // The slot given back frees the address's share.
    first.close();
    await eventually(async () => (await startUpload(second, `b${Date.now()}`)).type === 'upload-accepted', 'the address may upload again', 10_000);
    second.close();
  } finally {
    await open.stop();
  }
  const withToken = await startTestGateway({ token: 't0ken', limits: { uploadsMax: 4, uploadQueueMax: 4, uploadsPerAddressMax: 1 } });
  try {
    const [a, b] = await Promise.all([openWelcomedPeer(withToken.wsUrl, 't0ken'), openWelcomedPeer(withToken.wsUrl, 't0ken')]);
    assert.is((await startUpload(a, 'a')).type, 'upload-accepted');
    assert.is((await startUpload(b, 'b')).type, 'upload-accepted');
    a.close();
    b.close();
  } finally {
    await withToken.stop();
  }
});

test.run();
