/**
 * The client library retries BUSY and UNAVAILABLE with exponential backoff and jitter, never sooner
 * than the node's retry-after, up to the deadline; other errors fail at once. Real gateways (ws + HTTP)
 * backed by the jobs-room test double.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, DcasClientError, retryDelayMs, withRetry, type RetryNotice } from '../node/client/index.ts';
import { JobError } from '../node/jobs/types.ts';
import { openWelcomedPeer, rejects, startTestGateway } from './support/gateway.ts';

const fast = { delayMsBase: 20, delayMsMax: 200 };

test('retryDelayMs doubles per attempt within equal jitter, caps at delayMsMax, and never undercuts the retry-after', () => {
  const low = () => 0;
  const high = () => 0.999999;
  assert.is(retryDelayMs(1, undefined, { delayMsBase: 100, random: low }), 50);
  assert.is(retryDelayMs(1, undefined, { delayMsBase: 100, random: high }), 100);
  assert.is(retryDelayMs(3, undefined, { delayMsBase: 100, random: low }), 200);
  assert.is(retryDelayMs(20, undefined, { delayMsBase: 100, delayMsMax: 1_000, random: high }), 1_000);
  assert.is(retryDelayMs(1, 2_000, { delayMsBase: 100, random: low }), 2_000);
  assert.ok(retryDelayMs(1, 2_000, { delayMsBase: 100, random: high }) <= 3_000);
});

test('withRetry retries only BUSY and UNAVAILABLE, stops at attemptsMax, and gives up before a wait that passes the deadline', async () => {
  let calls = 0;
  const badInput = await rejects(withRetry(async () => {
    calls++;
    throw new DcasClientError('BAD_INPUT', 'not a .dcz');
  }, undefined, fast));
  assert.is((badInput as DcasClientError).code, 'BAD_INPUT');
  assert.is(calls, 1);
  calls = 0;
  const notices: RetryNotice[] = [];
  await rejects(withRetry(async () => {
    calls++;
    throw new DcasClientError('UNAVAILABLE', 'no coordinator');
  }, undefined, { ...fast, attemptsMax: 3, onRetry: (notice) => notices.push(notice) }));
  assert.is(calls, 3);
  assert.equal(notices.map((notice) => [notice.code, notice.attempt]), [['UNAVAILABLE', 2], ['UNAVAILABLE', 3]]);
  calls = 0;
  const late = await rejects(withRetry(async () => {
    calls++;
    throw new DcasClientError('BUSY', 'full', undefined, 60_000);
  }, Date.now() + 5_000, fast));
  assert.is((late as DcasClientError).code, 'BUSY');
  assert.is(calls, 1, 'a retry-after beyond the deadline is not waited for');
});

test('connect retries a full node (HTTP 503 BUSY at the upgrade) and gets in once a slot frees', async () => {
  const node = await startTestGateway({ limits: { connectionsMax: 1 } });
  try {
    const first = await connect({ server: node.url, retry: false });
    const notices: RetryNotice[] = [];
    // The node says Retry-After: 2; the first retry frees the slot so the second attempt gets in.
    const second = connect({ server: node.url, retry: { ...fast, onRetry: (notice) => {
      notices.push(notice);
      void first.close();
    } } });
    const client = await second;
    assert.is(notices[0].code, 'BUSY');
    assert.is(notices[0].attempt, 2);
    assert.ok(notices[0].delayMs >= 2_000, `honours Retry-After: ${notices[0].delayMs} ms`);
    await client.close();
  } finally {
    await node.stop();
  }
});

test('an upload refused with BUSY (queue off) is retried on the same connection and completes; a queued one hears its place', async () => {
  const node = await startTestGateway({ limits: { uploadsMax: 1, uploadQueueMax: 0 } });
  try {
    const holder = await openWelcomedPeer(node.wsUrl);
    holder.send({ type: 'upload', id: 'h', fileName: 'h', mode: 'compress' });
    assert.is((await holder.nextJson()).type, 'upload-accepted');
    const notices: RetryNotice[] = [];
    // The first refusal frees the slot (the holder disconnects), so the retry gets in.
    const retried = await connect({ server: node.url, retry: { ...fast, onRetry: (notice) => {
      notices.push(notice);
      holder.close();
    } } });
    const job = await retried.upload(Buffer.from('retried bytes'), { fileName: 'r.txt' });
    assert.ok(notices.length >= 1, 'at least one retry');
    assert.is(notices[0].code, 'BUSY');
    assert.ok(notices[0].delayMs >= 1_000, 'the node\'s retryAfterMs is honoured');
    assert.is(node.jobs.bytesOf(job.id).toString(), 'retried bytes');
    await retried.close();
  } finally {
    await node.stop();
  }
});

test('a queued upload is told its place through onQueued and completes when admitted', async () => {
  const node = await startTestGateway({ limits: { uploadsMax: 1, uploadQueueMax: 4 } });
  try {
    const holder = await openWelcomedPeer(node.wsUrl);
    holder.send({ type: 'upload', id: 'h', fileName: 'h', mode: 'compress' });
    const accepted = await holder.nextJson();
    const client = await connect({ server: node.url });
    const places: number[] = [];
    const uploading = client.upload(Buffer.from('queued bytes'), { fileName: 'q.txt', onQueued: (place) => {
      places.push(place);
      holder.send({ type: 'upload-end', jobId: accepted.jobId });
    } });
    const job = await uploading;
    assert.equal(places, [1]);
    assert.is(node.jobs.bytesOf(job.id).toString(), 'queued bytes');
    holder.close();
    await client.close();
  } finally {
    await node.stop();
  }
});

test('errors other than BUSY and UNAVAILABLE are not retried: BAD_INPUT from the jobs room fails the upload at once', async () => {
  const node = await startTestGateway({ jobs: { startUploadError: new JobError('BAD_INPUT', 'not a .dcz file') } });
  try {
    const notices: RetryNotice[] = [];
    const client = await connect({ server: node.url, retry: { ...fast, onRetry: (notice) => notices.push(notice) } });
    const error = await rejects(client.upload(Buffer.from('x'), { fileName: 'x.dcz', mode: 'decompress' }));
    assert.is((error as DcasClientError).code, 'BAD_INPUT');
    assert.is(notices.length, 0);
    await client.close();
  } finally {
    await node.stop();
  }
});

test.run();
