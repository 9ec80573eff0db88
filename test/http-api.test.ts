/**
 * The REST API under /v1 on a real 3-node cluster (real processes, real HTTP): curl uploads with a
 * streaming body, events, ranged downloads that decode only the covering chunks, CORS, error statuses,
 * and the OpenAPI document, validated and every route it lists called.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Validator } from '@seriousme/openapi-schema-validator';
import sharp from 'sharp';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { textLike } from './helpers.ts';

const run = promisify(execFile);
const token = 'rest-test-token-0123456789';
const allowedOrigin = 'https://console.example';
const chunkSize = 64 * 1024;
const data = textLike(20 * chunkSize + 1234, 11);
let cluster: TestCluster;
let base: string;
let completedId: string;

const auth = { authorization: `Bearer ${token}` };
const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

test.before(async () => {
  // One upload at a time per node and 10 MiB at most, so the 503 and 413 answers can be shown.
  cluster = await createTestCluster({ nodes: 3, overrides: { jobs: { uploadsMax: 1, uploadBytesMax: 10 * 1024 * 1024 } }, edit: (config) => ({ ...config, token, gateway: { ...config.gateway, uploadQueueMax: 0, cors: { origins: [allowedOrigin] } } }) });
  for (const config of cluster.configs) cluster.start(config.name);
  await waitFor('3 alive members and one coordinator', 60_000, () => cluster.agreed(3), () => cluster.logs());
  base = cluster.gateway('node2');
});

test.after(async () => {
  await cluster.destroy();
});

async function chunksDecoded(): Promise<number> {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((entry) => entry.startsWith('dcas_download_chunks_decoded_total '));
  assert.ok(line, 'the metric dcas_download_chunks_decoded_total is exported');
  return Number(line!.split(' ')[1]);
}

async function readEvents(url: string, headers: Record<string, string> = {}): Promise<Array<{ id: string; event: string; job: any }>> {
  const response = await fetch(url, { headers: { ...auth, ...headers }, signal: AbortSignal.timeout(120_000) });
  assert.is(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
  const text = await response.text();
  return text
    .split('\n\n')
    .filter((block) => block.includes('data: '))
    .map((block) => {
      const field = (name: string) => block.split('\n').find((line) => line.startsWith(`${name}: `))?.slice(name.length + 2) ?? '';
      return { id: field('id'), event: field('event'), job: JSON.parse(field('data')) };
    });
}

test('curl -T uploads a file as a streaming PUT; 201 with the job and its Location; events follow it to completed', async () => {
  const file = join(cluster.dataDir, 'notes.txt');
  await writeFile(file, data);
  const { stdout } = await run('curl', ['-sS', '-D', '-', '-H', `Authorization: Bearer ${token}`, '-H', 'Transfer-Encoding: chunked', '-T', file, `${base}/v1/jobs/?chunkSize=${chunkSize}`]);
  const [head, body] = stdout.split('\r\n\r\n').filter((part) => !part.startsWith('HTTP/1.1 100'));
  assert.match(head, /^HTTP\/1.1 201/);
  const job = JSON.parse(body);
  assert.is(job.fileName, 'notes.txt');
  assert.is(job.chunkSize, chunkSize);
  assert.match(head, new RegExp(`location: /v1/jobs/${job.id}`, 'i'));
  const events = await readEvents(`${base}/v1/jobs/${job.id}/events`);
  const last = events.at(-1)!;
  assert.is(last.job.state, 'completed', JSON.stringify(last.job));
  assert.is(last.event, 'state');
  assert.is(last.job.sha256, sha256(data));
  assert.is(Object.values(last.job.chunkNodes as Record<string, number>).reduce((a, b) => a + b, 0), 21, 'chunk progress says which node coded how many chunks');
  // Resuming from the last event id repeats nothing: the stream ends without an event.
  const headOnly = await fetch(`${base}/v1/jobs/${job.id}/events`, { method: 'HEAD', headers: auth });
  assert.is(headOnly.status, 200);
  assert.match(headOnly.headers.get('content-type') ?? '', /^text\/event-stream/);
  const resumed = await readEvents(`${base}/v1/jobs/${job.id}/events`, { 'last-event-id': last.id });
  assert.equal(resumed, []);
  completedId = job.id;
});

test('a chunked POST with ?wait=true answers once the job ended; the original downloads byte-identical with its headers', async () => {
  const answer = await new Promise<{ status: number; headers: Record<string, unknown>; body: string }>((resolve, reject) => {
    const outgoing = httpRequest(`${base}/v1/jobs?name=stream.txt&chunkSize=${chunkSize}&wait=true`, { method: 'POST', headers: auth }, (incoming) => {
      let body = '';
      incoming.on('data', (piece) => (body += piece));
      incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, headers: incoming.headers, body }));
    });
    outgoing.on('error', reject);
    for (let at = 0; at < data.length; at += 50_000) outgoing.write(data.subarray(at, at + 50_000));
    outgoing.end();
  });
  assert.is(answer.status, 201, answer.body);
  const job = JSON.parse(answer.body);
  assert.is(job.state, 'completed');
  assert.is(answer.headers.location, `/v1/jobs/${job.id}`);
  const response = await fetch(`${base}/v1/jobs/${job.id}/original`, { headers: auth });
  assert.is(response.status, 200);
  assert.is(response.headers.get('etag'), `"${sha256(data)}"`);
  assert.is(response.headers.get('content-length'), String(data.length));
  assert.match(response.headers.get('content-type') ?? '', /^text\/plain|^application\/octet-stream/);
  assert.match(response.headers.get('content-disposition') ?? '', /attachment; filename="stream.txt"/);
  assert.ok(Buffer.from(await response.arrayBuffer()).equals(Buffer.from(data)));
  const notModified = await fetch(`${base}/v1/jobs/${job.id}/original`, { headers: { ...auth, 'if-none-match': `"${sha256(data)}"` } });
  assert.is(notModified.status, 304);
});

test('a Range in the middle of the original returns exactly those bytes and decodes only the 2 chunks covering it', async () => {
  const before = await chunksDecoded();
  const [first, last] = [chunkSize + 1000, 2 * chunkSize + 500];
  const response = await fetch(`${base}/v1/jobs/${completedId}/original`, { headers: { ...auth, range: `bytes=${first}-${last}` } });
  assert.is(response.status, 206);
  assert.is(response.headers.get('content-range'), `bytes ${first}-${last}/${data.length}`);
  assert.ok(Buffer.from(await response.arrayBuffer()).equals(Buffer.from(data.subarray(first, last + 1))));
  assert.is((await chunksDecoded()) - before, 2, 'chunks 1 and 2 decoded, no others');
  const suffix = await fetch(`${base}/v1/jobs/${completedId}/original`, { headers: { ...auth, range: 'bytes=-10' } });
  assert.ok(Buffer.from(await suffix.arrayBuffer()).equals(Buffer.from(data.subarray(data.length - 10))));
});

test('a Range of the compressed file is served from the stored .dcz; an unsatisfiable range is 416', async () => {
  const whole = Buffer.from(await (await fetch(`${base}/v1/jobs/${completedId}/compressed`, { headers: auth })).arrayBuffer());
  const ranged = await fetch(`${base}/v1/jobs/${completedId}/compressed`, { headers: { ...auth, range: 'bytes=10-99' } });
  assert.is(ranged.status, 206);
  assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(whole.subarray(10, 100)));
  const beyond = await fetch(`${base}/v1/jobs/${completedId}/original`, { headers: { ...auth, range: `bytes=${data.length}-` } });
  assert.is(beyond.status, 416);
  assert.is(beyond.headers.get('content-range'), `bytes */${data.length}`);
  assert.is(((await beyond.json()) as any).error.code, 'RANGE_NOT_SATISFIABLE');
});

test('CORS: a preflight from a listed origin is allowed with methods and headers; another origin gets no CORS headers', async () => {
  const preflight = await fetch(`${base}/v1/jobs`, { method: 'OPTIONS', headers: { origin: allowedOrigin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization' } });
  assert.is(preflight.status, 204);
  assert.is(preflight.headers.get('access-control-allow-origin'), allowedOrigin);
  assert.match(preflight.headers.get('access-control-allow-methods') ?? '', /POST/);
  assert.match(preflight.headers.get('access-control-allow-headers') ?? '', /authorization/);
  const listed = await fetch(`${base}/v1/jobs`, { headers: { ...auth, origin: allowedOrigin } });
  assert.is(listed.status, 200);
  assert.is(listed.headers.get('access-control-allow-origin'), allowedOrigin);
  const foreign = await fetch(`${base}/v1/jobs`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'GET' } });
  assert.is(foreign.headers.get('access-control-allow-origin'), null);
  assert.is(foreign.headers.get('access-control-allow-methods'), null);
  assert.is(foreign.status, 403);
});

test('errors are {"error":{code,message}} with fitting statuses: 400, 401, 404, 405, 409', async () => {
  const expect = async (path: string, init: RequestInit, status: number, code: string) => {
    const response = await fetch(`${base}${path}`, init);
    assert.is(response.status, status, path);
    const body = (await response.json()) as any;
    assert.is(body.error.code, code, path);
    assert.type(body.error.message, 'string');
    return response;
  };
  await expect('/v1/jobs', {}, 401, 'AUTH');
  await expect('/v1/jobs/no-such-job', { headers: auth }, 404, 'NOT_FOUND');
  await expect('/v1/jobs/bad!id', { headers: auth }, 400, 'BAD_REQUEST');
  await expect('/v1/jobs?name=x&level=9', { method: 'POST', headers: auth, body: 'x' }, 400, 'BAD_REQUEST');
  await expect('/v1/jobs?name=x&codec=nope', { method: 'POST', headers: auth, body: 'x' }, 400, 'BAD_INPUT');
  const notAllowed = await expect(`/v1/jobs/${completedId}`, { method: 'POST', headers: auth }, 405, 'METHOD_NOT_ALLOWED');
  assert.is(notAllowed.headers.get('allow'), 'GET, HEAD, PUT, DELETE');
  // A job still uploading cannot be downloaded: 409. Its body is held open until the check is done.
  const outgoing = httpRequest(`${base}/v1/jobs?name=open.txt`, { method: 'POST', headers: auth });
  outgoing.on('error', () => {});
  outgoing.write(data.subarray(0, 1000));
  const { value: open } = await waitFor('the open upload listed', 30_000, async () => {
    const jobs = ((await (await fetch(`${base}/v1/jobs`, { headers: auth })).json()) as any).jobs as any[];
    return jobs.find((job) => job.fileName === 'open.txt');
  });
  await expect(`/v1/jobs/${open.id}/original`, { headers: auth }, 409, 'NOT_READY');
  const busy = await expect('/v1/jobs?name=second.txt', { method: 'POST', headers: auth, body: 'x' }, 503, 'BUSY');
  // The admission queue is off here (uploadQueueMax 0): a second upload is refused at once, told when to retry.
  assert.ok(Number(busy.headers.get('retry-after')) >= 1, String(busy.headers.get('retry-after')));
  outgoing.destroy();
  await waitFor('the abandoned upload failed', 60_000, async () => {
    const job = (await (await fetch(`${base}/v1/jobs/${open.id}`, { headers: auth })).json()) as any;
    return job.state === 'failed' ? job : undefined;
  });
});

test('an upload declaring more bytes than the node takes is refused with 413 before its body is read', async () => {
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const outgoing = httpRequest(`${base}/v1/jobs?name=huge.bin`, { method: 'POST', headers: { ...auth, 'content-length': String(1024 * 1024 * 1024) } }, (incoming) => {
      let body = '';
      incoming.on('data', (piece) => (body += piece));
      incoming.on('end', () => resolve({ status: incoming.statusCode ?? 0, body }));
    });
    outgoing.on('error', reject);
    outgoing.write(data.subarray(0, 1000));
  });
  assert.is(answer.status, 413);
  assert.is(JSON.parse(answer.body).error.code, 'TOO_LARGE');
});

test('the OpenAPI document validates as 3.1 and every route it lists answers as documented', async () => {
  const document = (await (await fetch(`${base}/v1/openapi.json`)).json()) as any;
  const validator = new Validator();
  const result = await validator.validate(document);
  assert.ok(result.valid, JSON.stringify(result.errors));
  assert.is(validator.version, '3.1');
  // POST /v1/images takes an image, not a file: a small uncompressed PNG it can shrink.
  const image = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#336699' } }).png({ compressionLevel: 0 }).toBuffer();
  let called = 0;
  for (const [template, operations] of Object.entries(document.paths as Record<string, Record<string, any>>)) {
    for (const [method, operation] of Object.entries(operations)) {
      // DELETE gets a job of its own: the completed one is still read by the routes after it.
      const disposable = method === 'delete' ? ((await (await fetch(`${base}/v1/jobs?name=disposable.txt&wait=true`, { method: 'POST', headers: auth, body: 'delete me' })).json()) as any).id : undefined;
      const path = template.replace('{id}', method === 'put' ? 'listed.txt' : (disposable ?? completedId));
      const upload = method === 'post' || method === 'put';
      const images = path === '/v1/images';
      const url = `${base}${path}${images ? '?mode=png-lossless' : method === 'post' ? '?name=listed.txt' : ''}`;
      const body = images ? image : upload ? data.subarray(0, 5000) : undefined;
      const response = await fetch(url, { method: method.toUpperCase(), headers: auth, body });
      await response.arrayBuffer();
      assert.ok(Object.keys(operation.responses).includes(String(response.status)), `${method} ${path} answered ${response.status}`);
      assert.ok(response.status < 300, `${method} ${path} answered ${response.status}`);
      called++;
    }
  }
  assert.is(called, 11);
  const listed = Object.keys(document.paths).sort();
  assert.equal(listed, ['/v1/cluster', '/v1/images', '/v1/jobs', '/v1/jobs/{id}', '/v1/jobs/{id}/compressed', '/v1/jobs/{id}/events', '/v1/jobs/{id}/original', '/v1/openapi.json']);
});

test.run();
