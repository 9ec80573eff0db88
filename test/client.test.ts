/**
 * The client library (node/client) against a real gateway backed by the jobs-room test double:
 * uploads from paths, buffers and streams under credit, following jobs, verified downloads to files,
 * and typed errors with the server's codes.
 */
import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, DcasClientError, webSocketUrl, type DcasClient } from '../node/client/index.ts';
import { FrameMasks, isLoopback } from '../node/client/connection.ts';
import { FileFrames } from '../node/client/file-frames.ts';
import { randomBytesSeeded, textLike, withTempDir } from './helpers.ts';
import { fakeCompressed } from './support/job-service-double.ts';
import { eventually, rejects, sleep, startTestGateway, type TestGateway } from './support/gateway.ts';

const token = 'client-test-token';
let node: TestGateway;
let client: DcasClient;

test.before(async () => {
  node = await startTestGateway({ token, limits: { uploadWindowBytes: 512 * 1024, frameBytesMax: 128 * 1024, watchIntervalMs: 20 }, jobs: { failMarker: 'FAIL!', autoProcessTickMs: 5 } });
  client = await connect({ server: node.url, token });
});

test.after(async () => {
  await client.close();
  await node.stop();
});

async function expectClientError(promise: Promise<unknown>, code: string): Promise<DcasClientError> {
  const error = await rejects(promise);
  assert.instance(error, DcasClientError);
  assert.is((error as DcasClientError).code, code, error.message);
  return error as DcasClientError;
}

test('webSocketUrl maps http, https, ws and wss servers onto the /ws endpoint, keeping an explicit path', () => {
  assert.is(webSocketUrl('http://127.0.0.1:7701'), 'ws://127.0.0.1:7701/ws');
  assert.is(webSocketUrl('https://dcas.example.com/'), 'wss://dcas.example.com/ws');
  assert.is(webSocketUrl('ws://10.0.0.2:7702'), 'ws://10.0.0.2:7702/ws');
  assert.is(webSocketUrl('wss://proxy.example.com/dcas/ws'), 'wss://proxy.example.com/dcas/ws');
  assert.throws(() => webSocketUrl('ftp://x'), /http:\/\//);
  assert.throws(() => webSocketUrl('not a url'), /not a URL/);
});

test('connect reports the node, its limits and that auth is on', () => {
  assert.is(client.node, 'node-test');
  assert.is(client.auth, 'token');
  assert.is(client.limits.uploadWindowBytes, 512 * 1024);
});

test('uploading a path sends the file under credit, reports progress, and returns the JobView', async () => {
  await withTempDir(async (dir) => {
    const data = textLike(3 * 1024 * 1024 + 5, 21);
    const path = join(dir, 'mail.txt');
    await writeFile(path, data);
    const progress: number[] = [];
    const job = await client.upload(path, { chunkSize: 1024 * 1024, onProgress: ({ bytes, totalBytes }) => {
      assert.is(totalBytes, data.length);
      progress.push(bytes);
    } });
    assert.equal([job.fileName, job.state, job.originalSize, job.chunkSize], ['mail.txt', 'processing', data.length, 1024 * 1024]);
    assert.is(job.sha256, createHash('sha256').update(data).digest('hex'));
    assert.ok(node.jobs.bytesOf(job.id).equals(data));
    assert.is(progress.at(-1), data.length);
    assert.ok(progress.every((bytes, i) => i === 0 || bytes > progress[i - 1]), 'progress only grows');
  });
});

test('uploading an async iterable needs a file name; pieces larger than a frame are split', async () => {
  await expectClientError(client.upload((async function* () {})()), 'BAD_ARGUMENT');
  const data = randomBytesSeeded(1_500_000, 4);
  async function* pieces() {
    for (let at = 0; at < data.length; at += 700_000) yield data.subarray(at, at + 700_000);
  }
  const job = await client.upload(pieces(), { fileName: 'stream.bin' });
  assert.is(job.fileName, 'stream.bin');
  assert.ok(node.jobs.bytesOf(job.id).equals(data));
});

test("a caller's buffers are left whole after their upload; only buffers the client read from a path are read into again", async () => {
  // Frame-sized buffers of their own: exactly what the client frees once sent when it read them itself.
  const frameBytes = client.limits.frameBytesMax;
  const one = new Uint8Array(randomBytesSeeded(frameBytes, 5));
  const pieces = [new Uint8Array(randomBytesSeeded(frameBytes, 6)), new Uint8Array(randomBytesSeeded(frameBytes, 7))];
  const expected = Buffer.concat(pieces);
  const fromBuffer = await client.upload(one, { fileName: 'mine.bin' });
  const fromPieces = await client.upload((async function* () { yield* pieces; })(), { fileName: 'mine-too.bin' });
  assert.is(one.length, frameBytes);
  assert.ok(pieces.every((piece) => piece.length === frameBytes));
  assert.ok(node.jobs.bytesOf(fromBuffer.id).equals(Buffer.from(one)));
  assert.ok(node.jobs.bytesOf(fromPieces.id).equals(expected));
});

/** A bare WebSocket server on 127.0.0.1 that accepts one upgrade and hands back the masking key of the first frame it reads. */
async function firstFrameMaskOnLoopback(): Promise<Buffer> {
  let socket: Socket | undefined;
  const server = createServer();
  const key = new Promise<Buffer>((resolve, reject) => {
    server.on('connection', (connection) => {
      socket = connection;
      let bytes = Buffer.alloc(0);
      let upgraded = false;
      connection.on('error', reject);
      connection.on('data', (data: Buffer) => {
        bytes = Buffer.concat([bytes, data]);
        if (!upgraded) {
          const end = bytes.indexOf('\r\n\r\n');
          if (end < 0) return;
          const clientKey = /sec-websocket-key: *(\S+)/i.exec(bytes.subarray(0, end).toString('latin1'))![1];
          const accept = createHash('sha1').update(`${clientKey}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
          connection.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
          upgraded = true;
          bytes = bytes.subarray(end + 4);
        }
        // The hello: a masked text frame under 126 bytes or with a 16-bit length.
        if (bytes.length < 2) return;
        assert.ok((bytes[1] & 0x80) !== 0, 'a client frame has its mask bit set');
        const at = (bytes[1] & 0x7f) === 126 ? 4 : 2;
        if (bytes.length >= at + 4) resolve(Buffer.from(bytes.subarray(at, at + 4)));
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const connecting = connect({ server: `ws://127.0.0.1:${port}`, connectTimeoutMs: 2_000, retry: false }).catch(() => undefined);
  try {
    return await key;
  } finally {
    socket?.destroy();
    server.close();
    await connecting;
  }
}

test('frames to a loopback address carry a zero masking key; to any other address a random key per frame', async () => {
  assert.equal(await firstFrameMaskOnLoopback(), Buffer.alloc(4));
  assert.ok(['127.0.0.1', '127.3.2.1', '::1', '::ffff:127.0.0.1'].every(isLoopback));
  assert.not.ok(['10.0.0.2', '192.168.1.7', '::ffff:10.0.0.2', 'fe80::1', '::', undefined].some(isLoopback));
  const masks = new FrameMasks();
  masks.connected('10.0.0.2');
  const keys = Array.from({ length: 8 }, () => {
    const key = Buffer.alloc(4);
    masks.generate(key);
    return key.toString('hex');
  });
  assert.is(new Set(keys).size, keys.length, `eight random keys differ: ${keys.join(' ')}`);
});

test('a file is read in frames into buffers of its own; a released buffer is read into again, one the socket holds is not', async () => {
  await withTempDir(async (dir) => {
    const data = randomBytesSeeded(5 * 1000 + 7, 8);
    const path = join(dir, 'frames.bin');
    await writeFile(path, data);
    const file = new FileFrames(path);
    const frames: Uint8Array[] = [];
    for await (const frame of file.frames(1000)) {
      frames.push(Buffer.from(frame));
      if (frames.length % 2 === 0) file.release(frame);
    }
    assert.ok(Buffer.concat(frames).equals(data));
    assert.equal(frames.map((frame) => frame.length), [1000, 1000, 1000, 1000, 1000, 7]);
  });
  await withTempDir(async (dir) => {
    const path = join(dir, 'reuse.bin');
    await writeFile(path, randomBytesSeeded(3000, 9));
    const file = new FileFrames(path);
    const buffers: ArrayBufferLike[] = [];
    let index = 0;
    for await (const frame of file.frames(1000)) {
      buffers.push(frame.buffer);
      if (index++ === 0) file.release(frame);
    }
    // The first frame's buffer, released, holds the second; the second, kept, is not reused for the third.
    assert.is(buffers[1], buffers[0]);
    assert.is.not(buffers[2], buffers[1]);
  });
});

test('waitForCompletion follows the job to completed; a failed job is returned, not thrown', async () => {
  const seen: string[] = [];
  const job = await client.upload(textLike(200_000, 2), { fileName: 'ok.txt', chunkSize: 65536 });
  const done = await client.waitForCompletion(job.id, { onJob: (view) => seen.push(`${view.state}:${view.chunksDone}`) });
  assert.is(done.state, 'completed');
  assert.is(done.chunksDone, done.chunks);
  assert.ok(seen.length >= 1 && seen.at(-1)!.startsWith('completed'), seen.join(' '));
  const bad = await client.upload(Buffer.from('FAIL! please'), { fileName: 'bad.txt' });
  const failed = await client.waitForCompletion(bad.id);
  assert.is(failed.state, 'failed');
  assert.match(failed.error!, /kernel failed/);
  await eventually(() => node.gateway.stats().watches === 0, 'watches ended');
});

test('status and jobs read the node; an unknown job is a DcasClientError with code NOT_FOUND', async () => {
  const job = await client.upload(Buffer.from('hello'), { fileName: 'hi.txt' });
  assert.is((await client.status(job.id)).fileName, 'hi.txt');
  assert.ok((await client.jobs()).some((view) => view.id === job.id));
  const error = await expectClientError(client.status('nope'), 'NOT_FOUND');
  assert.match(error.message, /nope/);
});

test('downloadToFile writes the original verified against the job SHA-256, or the compressed form; never replaces without force', async () => {
  await withTempDir(async (dir) => {
    const data = randomBytesSeeded(2 * 1024 * 1024 + 3, 8);
    const job = await client.upload(data, { fileName: 'blob.bin' });
    await client.waitForCompletion(job.id);
    const out = join(dir, 'blob.out');
    const progress: number[] = [];
    const result = await client.downloadToFile(job.id, out, { onProgress: (bytes) => progress.push(bytes) });
    assert.equal([result.bytes, result.verified, result.sha256], [data.length, true, job.sha256]);
    assert.ok((await readFile(out)).equals(data));
    assert.is(progress.at(-1), data.length);
    await expectClientError(client.downloadToFile(job.id, out), 'OUTPUT_EXISTS');
    const compressed = await client.downloadToFile(job.id, out, { compressed: true, force: true });
    assert.is(compressed.verified, false);
    assert.ok((await readFile(out)).equals(fakeCompressed(data)));
    assert.equal((await readdir(dir)).sort(), ['blob.out']);
  });
});

test('a download whose bytes do not match the job SHA-256 fails with CHECKSUM_MISMATCH and leaves no file', async () => {
  await withTempDir(async (dir) => {
    const job = await client.upload(textLike(300_000, 9), { fileName: 'tampered.txt' });
    await client.waitForCompletion(job.id);
    node.jobs.update(job.id, { sha256: '0'.repeat(64) });
    await expectClientError(client.downloadToFile(job.id, join(dir, 'out.txt')), 'CHECKSUM_MISMATCH');
    assert.equal(await readdir(dir), []);
  });
});

test('breaking out of a download stream cancels it, and the next download on the same client works', async () => {
  const data = randomBytesSeeded(6 * 1024 * 1024, 12);
  const job = await client.upload(data, { fileName: 'six.bin' });
  await client.waitForCompletion(job.id);
  const stream = await client.download(job.id);
  assert.equal([stream.size, stream.fileName, stream.sha256], [data.length, 'six.bin', job.sha256]);
  let read = 0;
  for await (const piece of stream) {
    read += piece.length;
    if (read > 1024 * 1024) break;
  }
  await eventually(() => node.gateway.stats().downloadsActive === 0, 'the node stopped streaming');
  const again = await client.download(job.id, { compressed: true });
  const pieces: Uint8Array[] = [];
  for await (const piece of again) pieces.push(piece);
  assert.ok(Buffer.concat(pieces).equals(fakeCompressed(data)));
});

test('a download of a job still processing is a DcasClientError NOT_READY', async () => {
  const session = await node.jobs.startUpload({ fileName: 'slow', mode: 'compress' });
  await expectClientError(client.download(session.jobId), 'NOT_READY');
});

test('an upload the node fails midway (more than the declared size) rejects with TOO_LARGE and the job id; the client stays usable', async () => {
  const error = await expectClientError(client.upload(Buffer.alloc(300_000), { fileName: 'liar.bin', size: 1000 }), 'TOO_LARGE');
  assert.type(error.jobId, 'string');
  await eventually(() => node.jobs.aborts.some((abort) => abort.jobId === error.jobId), 'the node aborted it');
  const job = await client.upload(Buffer.from('after'), { fileName: 'after.txt' });
  assert.is(job.fileName, 'after.txt');
});

test('a source that fails midway aborts the upload on the node with the reason', async () => {
  async function* broken() {
    yield Buffer.alloc(100_000, 1);
    await sleep(10);
    throw new Error('disk read failed');
  }
  await rejects(client.upload(broken(), { fileName: 'broken.bin' }), /disk read failed/);
  await eventually(() => node.jobs.aborts.some((abort) => /disk read failed/.test(abort.reason)), 'aborted with the reason');
  assert.is((await client.upload(Buffer.from('x'), { fileName: 'x' })).fileName, 'x');
});

test('concurrent uploads on one client take turns and all arrive intact', async () => {
  const inputs = [1, 2, 3].map((seed) => randomBytesSeeded(400_000 + seed, seed));
  const jobs = await Promise.all(inputs.map((data, i) => client.upload(data, { fileName: `p${i}` })));
  jobs.forEach((job, i) => assert.ok(node.jobs.bytesOf(job.id).equals(inputs[i])));
});

test('connect fails with AUTH for a wrong token, UNREACHABLE when nothing listens, BUSY when the node is full', async () => {
  await expectClientError(connect({ server: node.url, token: 'wrong' }), 'AUTH');
  await expectClientError(connect({ server: node.url }), 'AUTH');
  await expectClientError(connect({ server: 'http://127.0.0.1:1' }), 'UNREACHABLE');
  const full = await startTestGateway({ limits: { connectionsMax: 1 } });
  try {
    const first = await connect({ server: full.wsUrl });
    const busy = await expectClientError(connect({ server: full.wsUrl, retry: false }), 'BUSY');
    assert.is(busy.retryAfterMs, 2_000);
    await first.close();
  } finally {
    await full.stop();
  }
});

test('when the node stops, a pending waitForCompletion rejects with the node\'s UNAVAILABLE', async () => {
  const other = await startTestGateway({ jobs: { autoProcessTickMs: false } });
  const otherClient = await connect({ server: other.url });
  const job = await otherClient.upload(Buffer.from('never done'), { fileName: 'n.txt' });
  const waiting = expectClientError(otherClient.waitForCompletion(job.id), 'UNAVAILABLE');
  await sleep(50);
  await other.stop();
  const error = await waiting;
  assert.match(error.message, /stopping/);
  await expectClientError(otherClient.status(job.id), 'UNAVAILABLE');
});

test.run();
