/**
 * Uploads and downloads over the gateway's WebSocket protocol: credit-based flow control, failures
 * mid-upload, disconnects, per-node limits, and downloads that stream in order without buffering a
 * whole file. Real ws connections; the jobs room is the in-memory test double.
 */
import { createHash } from 'node:crypto';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { JobError } from '../node/jobs/types.ts';
import { randomBytesSeeded, textLike } from './helpers.ts';
import { fakeCompressed } from './support/job-service-double.ts';
import { eventually, openWelcomedPeer, sleep, startTestGateway, type RawPeer } from './support/gateway.ts';

const windowBytes = 256 * 1024;
const frameBytes = 64 * 1024;
const limits = { uploadWindowBytes: windowBytes, frameBytesMax: frameBytes, watchIntervalMs: 20 };

/** Sends `data` as an upload that respects credit; returns the upload-done message. */
async function uploadRespectingCredit(peer: RawPeer, data: Uint8Array, fileName = 'data.bin'): Promise<any> {
  peer.send({ type: 'upload', id: 'up', fileName, mode: 'compress', size: data.length });
  const accepted = await peer.nextJson();
  assert.is(accepted.type, 'upload-accepted', JSON.stringify(accepted));
  let credit = accepted.credit;
  let sent = 0;
  while (sent < data.length) {
    while (credit === 0) {
      const message = await peer.nextJson();
      assert.is(message.type, 'credit', JSON.stringify(message));
      credit += message.bytes;
    }
    const length = Math.min(frameBytes, credit, data.length - sent);
    peer.sendBinary(data.subarray(sent, sent + length));
    sent += length;
    credit -= length;
  }
  peer.send({ type: 'upload-end', id: 'end', jobId: accepted.jobId });
  return peer.until('upload-done', 5_000);
}

test('an upload within credit arrives byte for byte, in order, and upload-done carries the JobView', async () => {
  const node = await startTestGateway({ limits });
  try {
    const data = textLike(1_000_000, 3);
    const peer = await openWelcomedPeer(node.wsUrl);
    const done = await uploadRespectingCredit(peer, data, 'text.txt');
    assert.is(done.id, 'end');
    assert.is(done.job.fileName, 'text.txt');
    assert.is(done.job.state, 'processing');
    assert.is(done.job.sha256, createHash('sha256').update(data).digest('hex'));
    assert.ok(node.jobs.bytesOf(done.job.id).equals(data));
    assert.is(node.gateway.stats().uploadsActive, 0);
    peer.close();
  } finally {
    await node.stop();
  }
});

test('with slow writes, a client sending as credit allows never makes the node hold more than the window', async () => {
  const node = await startTestGateway({ limits, jobs: { beforeWrite: () => sleep(2) } });
  try {
    const data = randomBytesSeeded(2 * 1024 * 1024, 5);
    const peer = await openWelcomedPeer(node.wsUrl);
    const done = await uploadRespectingCredit(peer, data);
    assert.ok(node.jobs.bytesOf(done.job.id).equals(data));
    const peak = node.gateway.stats().uploadBufferedBytesPeak;
    assert.ok(peak <= windowBytes, `peak ${peak} bytes held, window ${windowBytes}`);
    assert.ok(peak > 0);
    peer.close();
  } finally {
    await node.stop();
  }
});

test('a client that ignores credit is cut off with FLOW_CONTROL (1008), the upload aborted, the node unharmed', async () => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const node = await startTestGateway({ limits, jobs: { beforeWrite: () => held } });
  try {
    const peer = await openWelcomedPeer(node.wsUrl);
    peer.send({ type: 'upload', id: 1, fileName: 'flood.bin', mode: 'compress' });
    const accepted = await peer.nextJson();
    assert.is(accepted.credit, windowBytes);
    // The whole window and then some, as fast as the socket takes it: the writes are held, so no credit comes.
    for (let sent = 0; sent < windowBytes * 3; sent += frameBytes) peer.sendBinary(Buffer.alloc(frameBytes, 7));
    const error = await peer.until('error');
    assert.is(error.code, 'FLOW_CONTROL');
    assert.match(error.message, /credit/);
    assert.is((await peer.closed).code, 1008);
    assert.ok(node.gateway.stats().uploadBufferedBytesPeak <= windowBytes, `peak ${node.gateway.stats().uploadBufferedBytesPeak}`);
    release();
    await eventually(() => node.jobs.aborts.some((abort) => abort.jobId === accepted.jobId && abort.reason === 'client disconnected'), 'abort after the held writes');
    await eventually(() => node.gateway.stats().uploadBufferedBytes === 0 && node.gateway.stats().uploadsActive === 0, 'nothing held, slot free');
    const next = await openWelcomedPeer(node.wsUrl);
    const done = await uploadRespectingCredit(next, textLike(100_000));
    assert.is(done.type, 'upload-done');
    next.close();
  } finally {
    release();
    await node.stop();
  }
});

test('a socket closed mid-upload calls session.abort("client disconnected") and frees the upload slot', async () => {
  const node = await startTestGateway({ limits });
  try {
    const peer = await openWelcomedPeer(node.wsUrl);
    peer.send({ type: 'upload', fileName: 'half.bin', mode: 'compress' });
    const accepted = await peer.nextJson();
    peer.sendBinary(Buffer.alloc(10_000, 1));
    await eventually(() => node.jobs.writes.some((write) => write.jobId === accepted.jobId), 'bytes written');
    assert.is(node.gateway.stats().uploadsActive, 1);
    peer.socket.terminate();
    await eventually(() => node.jobs.aborts.some((abort) => abort.jobId === accepted.jobId), 'aborted');
    assert.equal(node.jobs.aborts.find((abort) => abort.jobId === accepted.jobId)!.reason, 'client disconnected');
    assert.is((await node.jobs.getJob(accepted.jobId))!.state, 'failed');
    await eventually(() => node.gateway.stats().uploadsActive === 0, 'slot freed');
  } finally {
    await node.stop();
  }
});

test('with the admission queue off, uploads beyond uploadsMax get BUSY; one connection gets one upload at a time (OUT_OF_ORDER)', async () => {
  const node = await startTestGateway({ limits: { ...limits, uploadsMax: 1, uploadQueueMax: 0 } });
  try {
    const first = await openWelcomedPeer(node.wsUrl);
    first.send({ type: 'upload', id: 'a', fileName: 'a', mode: 'compress' });
    const accepted = await first.nextJson();
    assert.is(accepted.type, 'upload-accepted');
    first.send({ type: 'upload', id: 'b', fileName: 'b', mode: 'compress' });
    const second = await first.nextJson();
    assert.equal([second.code, second.id], ['OUT_OF_ORDER', 'b']);
    const other = await openWelcomedPeer(node.wsUrl);
    other.send({ type: 'upload', id: 'c', fileName: 'c', mode: 'compress' });
    const busy = await other.nextJson();
    assert.equal([busy.code, busy.id], ['BUSY', 'c']);
    first.send({ type: 'upload-end', jobId: accepted.jobId });
    await first.until('upload-done');
    other.send({ type: 'upload', id: 'd', fileName: 'd', mode: 'compress' });
    assert.is((await other.nextJson()).type, 'upload-accepted');
    first.close();
    other.close();
  } finally {
    await node.stop();
  }
});

test('a JobError from startUpload is mapped to an error frame with its code; the connection stays', async () => {
  const node = await startTestGateway({ limits, jobs: { startUploadError: new JobError('NOT_READY', 'no coordinator known yet') } });
  try {
    const peer = await openWelcomedPeer(node.wsUrl);
    peer.send({ type: 'upload', id: 9, fileName: 'x', mode: 'decompress' });
    const error = await peer.nextJson();
    assert.equal([error.code, error.id, error.message], ['NOT_READY', 9, 'no coordinator known yet']);
    assert.is(node.gateway.stats().uploadsActive, 0);
    peer.send({ type: 'jobs', id: 'j' });
    assert.is((await peer.nextJson()).type, 'jobs');
    peer.close();
  } finally {
    await node.stop();
  }
});

test('a write that fails mid-upload (declared size exceeded) sends TOO_LARGE; upload-abort then frees the connection', async () => {
  const node = await startTestGateway({ limits });
  try {
    const peer = await openWelcomedPeer(node.wsUrl);
    peer.send({ type: 'upload', id: 'u', fileName: 'liar.bin', mode: 'compress', size: 100 });
    const accepted = await peer.nextJson();
    peer.sendBinary(Buffer.alloc(80));
    peer.sendBinary(Buffer.alloc(80));
    peer.sendBinary(Buffer.alloc(80));
    const error = await peer.until('error');
    assert.equal([error.code, error.id, error.jobId], ['TOO_LARGE', 'u', accepted.jobId]);
    peer.send({ type: 'upload', id: 'again', fileName: 'y', mode: 'compress' });
    const blocked = await peer.until('error');
    assert.equal([blocked.code, blocked.id], ['OUT_OF_ORDER', 'again']);
    assert.match(blocked.message, /upload-abort/);
    peer.send({ type: 'upload-abort', id: 'ab', jobId: accepted.jobId });
    assert.equal(await peer.until('upload-aborted'), { type: 'upload-aborted', id: 'ab', jobId: accepted.jobId });
    await eventually(() => node.jobs.aborts.some((abort) => abort.jobId === accepted.jobId), 'the session was aborted');
    const done = await uploadRespectingCredit(peer, textLike(5_000));
    assert.is(done.type, 'upload-done');
    peer.close();
  } finally {
    await node.stop();
  }
});

test('upload-abort from the client aborts the session with its reason', async () => {
  const node = await startTestGateway({ limits });
  try {
    const peer = await openWelcomedPeer(node.wsUrl);
    peer.send({ type: 'upload', fileName: 'cancelled.bin', mode: 'compress' });
    const accepted = await peer.nextJson();
    peer.sendBinary(Buffer.alloc(1000));
    peer.send({ type: 'upload-abort', jobId: accepted.jobId, reason: 'user pressed Ctrl-C' });
    await peer.until('upload-aborted');
    await eventually(() => node.jobs.aborts.length === 1, 'aborted');
    assert.match(node.jobs.aborts[0].reason, /user pressed Ctrl-C/);
    assert.is(node.gateway.stats().uploadsActive, 0);
    peer.close();
  } finally {
    await node.stop();
  }
});

test('an upload that receives nothing for uploadIdleMs fails with TIMEOUT and is aborted', async () => {
  const node = await startTestGateway({ limits: { ...limits, uploadIdleMs: 150 } });
  try {
    const peer = await openWelcomedPeer(node.wsUrl);
    peer.send({ type: 'upload', id: 'idle', fileName: 'idle.bin', mode: 'compress' });
    const accepted = await peer.nextJson();
    const error = await peer.nextJson(2_000);
    assert.equal([error.code, error.id, error.jobId], ['TIMEOUT', 'idle', accepted.jobId]);
    await eventually(() => node.jobs.aborts.length === 1, 'aborted');
    peer.close();
  } finally {
    await node.stop();
  }
});

test('a download streams the original in order in frames no larger than frameBytesMax, announced and ended', async () => {
  const node = await startTestGateway({ limits });
  try {
    const data = randomBytesSeeded(3 * 1024 * 1024 + 17, 11);
    const peer = await openWelcomedPeer(node.wsUrl);
    const done = await uploadRespectingCredit(peer, data, 'photo.raw');
    node.jobs.complete(done.job.id);
    for (const compressed of [false, true]) {
      peer.send({ type: 'download', id: `d-${compressed}`, jobId: done.job.id, compressed });
      const start = await peer.nextJson();
      const expected = compressed ? fakeCompressed(data) : Buffer.from(data);
      assert.equal(
        [start.type, start.id, start.jobId, start.size, start.fileName, start.sha256, start.compressed],
        ['download-start', `d-${compressed}`, done.job.id, expected.length, compressed ? 'photo.raw.dcz' : 'photo.raw', done.job.sha256, compressed],
      );
      const pieces: Buffer[] = [];
      for (;;) {
        const frame = await peer.next();
        if (frame.kind === 'json') {
          assert.equal(frame.message, { type: 'download-end', id: `d-${compressed}`, jobId: done.job.id, bytes: expected.length, cancelled: false });
          break;
        }
        assert.ok(frame.bytes.length <= frameBytes, `a frame of ${frame.bytes.length} bytes`);
        pieces.push(frame.bytes);
      }
      assert.ok(Buffer.concat(pieces).equals(expected));
    }
    peer.close();
  } finally {
    await node.stop();
  }
});

test('a download does not run ahead of a client that stops reading: the stream is pulled only as the socket drains', async () => {
  let pulledBytes = 0;
  const node = await startTestGateway({ limits: { ...limits, frameBytesMax: 1024 * 1024 }, jobs: { onDownloadPiece: (_jobId, bytes) => (pulledBytes += bytes.length), downloadPieceBytes: 1024 * 1024 } });
  try {
    const session = await node.jobs.startUpload({ fileName: 'big.bin', mode: 'compress' });
    const size = 48 * 1024 * 1024;
    await session.write(Buffer.alloc(size, 3));
    await session.finish();
    node.jobs.complete(session.jobId);
    const peer = await openWelcomedPeer(node.wsUrl);
    peer.socket.pause();
    peer.send({ type: 'download', jobId: session.jobId, compressed: false });
    await sleep(400);
    const pulledWhilePaused = pulledBytes;
    assert.ok(pulledWhilePaused < size / 2, `pulled ${pulledWhilePaused} of ${size} bytes while the client read nothing`);
    peer.socket.resume();
    let received = 0;
    for (;;) {
      const frame = await peer.next(5_000);
      if (frame.kind === 'json') {
        if (frame.message.type === 'download-end') break;
        continue;
      }
      received += frame.bytes.length;
    }
    assert.is(received, size);
    peer.close();
  } finally {
    await node.stop();
  }
});

test('download-cancel stops the stream and ends with cancelled: true; a closed socket closes the stream too', async () => {
  let closedStreams = 0;
  const node = await startTestGateway({ limits, jobs: { downloadPieceBytes: 64 * 1024, onDownloadClosed: () => closedStreams++ } });
  try {
    const session = await node.jobs.startUpload({ fileName: 'c.bin', mode: 'compress' });
    await session.write(Buffer.alloc(32 * 1024 * 1024, 1));
    await session.finish();
    node.jobs.complete(session.jobId);
    const peer = await openWelcomedPeer(node.wsUrl);
    peer.send({ type: 'download', jobId: session.jobId, compressed: false });
    await peer.nextJson();
    peer.send({ type: 'download-cancel', jobId: session.jobId });
    const end = await peer.until('download-end', 5_000);
    assert.is(end.cancelled, true);
    assert.ok(end.bytes < 32 * 1024 * 1024);
    await eventually(() => closedStreams === 1, 'the stream was closed');
    peer.send({ type: 'download', jobId: session.jobId, compressed: true });
    await peer.until('download-start');
    peer.socket.terminate();
    await eventually(() => closedStreams === 2 && node.gateway.stats().downloadsActive === 0, 'the second stream closed with the socket');
  } finally {
    await node.stop();
  }
});

test('a download of a job not completed gets NOT_READY; two downloads at once get OUT_OF_ORDER', async () => {
  const node = await startTestGateway({ limits, jobs: { downloadPieceBytes: 64 * 1024 } });
  try {
    const pending = await node.jobs.startUpload({ fileName: 'p.bin', mode: 'compress' });
    const peer = await openWelcomedPeer(node.wsUrl);
    peer.send({ type: 'download', id: 1, jobId: pending.jobId, compressed: false });
    const notReady = await peer.nextJson();
    assert.equal([notReady.code, notReady.id, notReady.jobId], ['NOT_READY', 1, pending.jobId]);
    await pending.write(Buffer.alloc(8 * 1024 * 1024));
    await pending.finish();
    node.jobs.complete(pending.jobId);
    peer.socket.pause();
    peer.send({ type: 'download', id: 2, jobId: pending.jobId, compressed: false });
    peer.send({ type: 'download', id: 3, jobId: pending.jobId, compressed: false });
    peer.socket.resume();
    const second = await peer.until('error', 5_000);
    assert.equal([second.code, second.id], ['OUT_OF_ORDER', 3]);
    await peer.until('download-end', 5_000);
    peer.close();
  } finally {
    await node.stop();
  }
});

test.run();
