/**
 * POST /v1/images: one image as the body, the smaller image as the answer. On a real node (a `dcas node`
 * process, its image pool on worker threads): the curl command, pixel identity of png-lossless,
 * the size headers, every kind of bad input refused with its status and code while the node keeps
 * serving, the byte limit from Content-Length and while reading, and the request limit. On a gateway in
 * this process with a real one-thread pool: the token, and a full image queue answered 503.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import sharp from 'sharp';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createImagePool, type ImagePool } from '../node/codec/index.ts';
import { createGateway, type Gateway } from '../node/gateway/index.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { animated, bomb } from './support/png.ts';

const run = promisify(execFile);
const mebibyte = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------
// Images made here

/** A photograph-like PNG (blurred noise) stored with no compression, so every mode can shrink it. */
async function photo(width: number, height: number): Promise<Buffer> {
  const noise = await sharp({ create: { width, height, channels: 3, background: '#6080a0', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
    .png()
    .toBuffer();
  return sharp(noise).blur(2).png({ compressionLevel: 0 }).toBuffer();
}

async function rgba(bytes: Uint8Array): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(bytes).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

/** A request whose body is sent in pieces by the caller, held open until it ends or is destroyed. */
function openRequest(url: string, headers: Record<string, string> = {}) {
  let outgoing!: ReturnType<typeof httpRequest>;
  const answer = new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    outgoing = httpRequest(url, { method: 'POST', headers }, (incoming) => {
      let body = '';
      incoming.on('data', (piece) => (body += piece));
      incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, headers: incoming.headers, body }));
    });
    outgoing.on('error', reject);
  });
  return { outgoing, answer };
}

async function errorOf(response: Response): Promise<{ code: string; message: string }> {
  assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
  return ((await response.json()) as { error: { code: string; message: string } }).error;
}

// ---------------------------------------------------------------------------------------------------
// On a real node

const node = suite('POST /v1/images on a real node');
let cluster: TestCluster;
let base: string;
let folder: string;
let picture: Buffer;

node.before(async () => {
  folder = await mkdtemp(join(tmpdir(), 'dcas-images-http-'));
  picture = await photo(320, 240);
  // One image request at a time and 1 MiB at most, so the 503 and 413 answers can be shown.
  cluster = await createTestCluster({ nodes: 1, edit: (config) => ({ ...config, gateway: { ...config.gateway, images: { bytesMax: mebibyte, pixelsMax: 50_000_000, requestsMax: 1 } } }) });
  cluster.start('node1');
  await waitFor('the node alive and its own coordinator', 60_000, () => cluster.agreed(1), () => cluster.logs());
  base = cluster.gateway('node1');
});

node.after(async () => {
  await cluster?.destroy();
  await rm(folder, { recursive: true, force: true });
});

node("the issue's curl command returns a valid smaller palette PNG of the same size in pixels", async () => {
  await writeFile(join(folder, 'photo.png'), picture);
  const { stdout } = await run('curl', ['--data-binary', '@photo.png', `${base}/v1/images?mode=png-lossy&quality=60-80`], { cwd: folder, encoding: 'buffer', maxBuffer: 16 * mebibyte });
  const metadata = await sharp(stdout).metadata();
  assert.is(metadata.format, 'png', stdout.subarray(0, 200).toString());
  assert.is(metadata.width, 320);
  assert.is(metadata.height, 240);
  assert.is(metadata.isPalette, true, 'png-lossy answers a palette PNG');
  assert.ok(stdout.length < picture.length / 2, `${stdout.length} bytes from ${picture.length}`);
  assert.is((await rgba(stdout)).data.length, 320 * 240 * 4, 'the answer decodes completely');
});

node('png-lossless answers a pixel-identical smaller PNG with its sizes in X-Dcas headers', async () => {
  const response = await fetch(`${base}/v1/images?mode=png-lossless`, { method: 'POST', body: picture });
  assert.is(response.status, 200);
  const output = Buffer.from(await response.arrayBuffer());
  assert.is(response.headers.get('content-type'), 'image/png');
  assert.is(response.headers.get('x-dcas-input-bytes'), String(picture.length));
  assert.is(response.headers.get('x-dcas-output-bytes'), String(output.length));
  assert.is(response.headers.get('x-dcas-kept'), 'false');
  assert.ok(output.length < picture.length, `${output.length} bytes from ${picture.length}`);
  const [before, after] = [await rgba(picture), await rgba(output)];
  assert.is(after.width, before.width);
  assert.is(after.height, before.height);
  assert.ok(after.data.equals(before.data), 'every pixel is the same');
  // Sent again, the output does not shrink: the input comes back unchanged, marked kept.
  const again = await fetch(`${base}/v1/images?mode=png-lossless`, { method: 'POST', body: output });
  const echoed = Buffer.from(await again.arrayBuffer());
  assert.is(again.headers.get('x-dcas-kept'), 'true');
  assert.ok(echoed.equals(output), 'a kept image is returned byte for byte');
  assert.is(again.headers.get('x-dcas-output-bytes'), String(output.length));
});

node('jpeg answers image/jpeg from a PNG', async () => {
  const response = await fetch(`${base}/v1/images?mode=jpeg&quality=70`, { method: 'POST', body: picture });
  assert.is(response.status, 200);
  assert.is(response.headers.get('content-type'), 'image/jpeg');
  const output = Buffer.from(await response.arrayBuffer());
  assert.is((await sharp(output).metadata()).format, 'jpeg');
});

node('a PNG bomb is 422 TOO_MANY_PIXELS, a non-image 415, a truncated or animated PNG 422; the node keeps serving', async () => {
  const refusals: Array<[string, Buffer, number, string, string]> = [
    ['bomb', bomb(100_000, 100_000), 422, 'TOO_MANY_PIXELS', '100000x100000'],
    ['text', Buffer.from('this is not an image at all'), 415, 'NOT_IMAGE', 'not an image'],
    ['truncated', picture.subarray(0, 5000), 422, 'TRUNCATED_IMAGE', 'truncated'],
    ['animated', animated(picture), 422, 'ANIMATED_IMAGE', 'animated'],
  ];
  for (const [what, body, status, code, fragment] of refusals) {
    const response = await fetch(`${base}/v1/images?mode=png-lossy`, { method: 'POST', body });
    assert.is(response.status, status, what);
    const error = await errorOf(response);
    assert.is(error.code, code, what);
    assert.ok(error.message.includes(fragment), `${what}: ${error.message}`);
    assert.not.ok(error.message.includes('\n'), 'one line');
  }
  const after = await fetch(`${base}/v1/images?mode=png-lossy&quality=60-80`, { method: 'POST', body: picture });
  assert.is(after.status, 200, 'the node still codes images');
  assert.is((await sharp(Buffer.from(await after.arrayBuffer())).metadata()).format, 'png');
  assert.is((await fetch(`${base}/healthz`)).status, 200);
});

node('a bad mode, quality or parameter is 400 before the body is read; other methods 405', async () => {
  for (const query of ['', '?mode=webp', '?mode=png-lossy&quality=80-60', '?mode=png-lossy&quality=high', '?mode=png-lossless&quality=70', '?mode=jpeg&level=3', '?mode=png-lossy&metadata=some']) {
    const response = await fetch(`${base}/v1/images${query}`, { method: 'POST', body: picture });
    assert.is(response.status, 400, query);
    assert.match((await errorOf(response)).code, /^BAD_REQUEST$|^BAD_IMAGE_OPTIONS$/, query);
  }
  const get = await fetch(`${base}/v1/images?mode=png-lossy`);
  assert.is(get.status, 405);
  assert.is(get.headers.get('allow'), 'POST');
  assert.is((await errorOf(get)).code, 'METHOD_NOT_ALLOWED');
});

node('a body declared above gateway.images.bytesMax is 413 before it is read; a chunked one while it is read', async () => {
  const declared = openRequest(`${base}/v1/images?mode=png-lossy`, { 'content-length': String(2 * mebibyte) });
  declared.outgoing.write(picture.subarray(0, 1000));
  const early = await declared.answer;
  assert.is(early.status, 413);
  assert.is(JSON.parse(early.body).error.code, 'IMAGE_TOO_LARGE');
  assert.match(JSON.parse(early.body).error.message, /image of 2097152 bytes/, 'refused from Content-Length');
  assert.is(early.headers.connection, 'close');
  const chunked = openRequest(`${base}/v1/images?mode=png-lossy`);
  chunked.outgoing.on('error', () => {});
  // 2 MiB sent and the body never ended: the node refuses once more than 1 MiB arrived, not at the end.
  const piece = Buffer.alloc(64 * 1024, 7);
  for (let sentBytes = 0; sentBytes < 2 * mebibyte; sentBytes += piece.length) chunked.outgoing.write(piece);
  const answer = await chunked.answer;
  assert.is(answer.status, 413);
  assert.is(JSON.parse(answer.body).error.code, 'IMAGE_TOO_LARGE');
  assert.match(JSON.parse(answer.body).error.message, /more than 1048576 bytes/);
  chunked.outgoing.destroy();
});

node('one image request more than gateway.images.requestsMax is 503 BUSY with Retry-After; served again once it ends', async () => {
  const held = openRequest(`${base}/v1/images?mode=png-lossless`, { 'content-length': String(picture.length) });
  held.outgoing.on('error', () => {});
  held.answer.catch(() => {});
  held.outgoing.write(picture.subarray(0, 1000));
  const { value: busy } = await waitFor('the second request refused while the first is held', 30_000, async () => {
    const response = await fetch(`${base}/v1/images?mode=png-lossless`, { method: 'POST', body: picture });
    return response.status === 503 ? response : (await response.arrayBuffer(), undefined);
  });
  assert.is(busy.headers.get('retry-after'), '5');
  assert.is((await errorOf(busy)).code, 'BUSY');
  held.outgoing.destroy();
  await waitFor('image requests served again', 30_000, async () => {
    const response = await fetch(`${base}/v1/images?mode=png-lossless`, { method: 'POST', body: picture });
    await response.arrayBuffer();
    return response.status === 200 ? true : undefined;
  });
});

node.run();

// ---------------------------------------------------------------------------------------------------
// A gateway in this process, with a real image pool of one thread and no queue

const local = suite('POST /v1/images: token and a full image queue');
const token = 'images-test-token-0123456789';
let gateway: Gateway;
let pool: ImagePool;

local.before(async () => {
  pool = createImagePool({ threads: 1, queuedMax: 0 });
  gateway = createGateway({
    host: '127.0.0.1',
    port: 0,
    node: 'node-images',
    logger: pino({ level: 'silent' }),
    token,
    allowedOrigins: ['https://console.example'],
    imagePool: pool,
    imageLimits: { bytesMax: 16 * mebibyte, requestsMax: 8 },
    routes: { health: () => ({ ok: true }), ready: () => ({ ready: true }), clusterStatus: () => ({}), state: async () => ({}) },
  });
  await gateway.start();
});

local.after(async () => {
  await gateway?.stop();
  await pool?.close();
});

local('without the token the answer is 401 AUTH, as for the other /v1 routes', async () => {
  const response = await fetch(`${gateway.url()}/v1/images?mode=png-lossy`, { method: 'POST', body: await photo(64, 48) });
  assert.is(response.status, 401);
  assert.is((await errorOf(response)).code, 'AUTH');
});

local('images beyond the pool thread and its queue are 503 IMAGE_QUEUE_FULL with Retry-After; the others are coded; CORS exposes the size headers', async () => {
  const headers = { authorization: `Bearer ${token}` };
  // From a listed web page: the size headers are exposed to its script.
  const warm = await fetch(`${gateway.url()}/v1/images?mode=png-lossless`, { method: 'POST', headers: { ...headers, origin: 'https://console.example' }, body: await photo(64, 48) });
  assert.is(warm.status, 200, 'the thread is up');
  assert.is(warm.headers.get('access-control-allow-origin'), 'https://console.example');
  assert.match(warm.headers.get('access-control-expose-headers') ?? '', /x-dcas-input-bytes, x-dcas-output-bytes, x-dcas-kept/);
  await warm.arrayBuffer();
  const large = await photo(1000, 800);
  const responses = await Promise.all(Array.from({ length: 4 }, () => fetch(`${gateway.url()}/v1/images?mode=png-lossless`, { method: 'POST', headers, body: large })));
  const statuses = responses.map((response) => response.status).sort();
  const refused = responses.filter((response) => response.status === 503);
  assert.ok(statuses.includes(200), `statuses ${statuses}`);
  assert.ok(refused.length > 0, `statuses ${statuses}`);
  assert.ok(statuses.every((status) => status === 200 || status === 503), `statuses ${statuses}`);
  for (const response of refused) {
    assert.is(response.headers.get('retry-after'), '5');
    assert.is((await errorOf(response)).code, 'IMAGE_QUEUE_FULL');
  }
  for (const response of responses.filter((each) => each.status === 200)) assert.is((await sharp(Buffer.from(await response.arrayBuffer())).metadata()).format, 'png');
});

local.run();
