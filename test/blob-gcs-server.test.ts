/**
 * The loopback GCS server speaks the JSON API as GCS does, checked with plain HTTP requests (what
 * the client sends is covered by the store tests): uploads of each kind, resumable sessions,
 * ranged downloads with hashes, list pages, compose limits, errors, restarts.
 */
import { createHash } from 'node:crypto';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32c } from '@node-rs/crc32';
import { createGcsStore } from '../node/storage/blob/gcs.ts';
import { startGcsServer, type GcsServer } from '../tools/gcs-server/index.ts';
import { randomBytesSeeded, withTempDir } from './helpers.ts';

const bucket = 'dcas-server';
const test = suite('gcs server');
let server: GcsServer;

const crcBase64 = (data: Uint8Array): string => {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(crc32c(data));
  return bytes.toString('base64');
};
const md5Base64 = (data: Uint8Array): string => createHash('md5').update(data).digest('base64');
const objectUrl = (name: string): string => `${server.url}/storage/v1/b/${bucket}/o/${encodeURIComponent(name)}`;

async function upload(name: string, data: Uint8Array): Promise<Record<string, unknown>> {
  const response = await fetch(`${server.url}/upload/storage/v1/b/${bucket}/o?uploadType=media&name=${encodeURIComponent(name)}`, { method: 'POST', body: data });
  assert.is(response.status, 200);
  return (await response.json()) as Record<string, unknown>;
}

async function errorOf(response: Response): Promise<{ code: number; message: string; errors: { reason: string }[] }> {
  assert.match(response.headers.get('content-type') ?? '', 'application/json');
  return ((await response.json()) as { error: { code: number; message: string; errors: { reason: string }[] } }).error;
}

test.before(async () => {
  server = await startGcsServer({ buckets: [bucket], listPageSizeMax: 4 });
});
test.after(() => server.stop());

test('a media upload returns the object resource: generation, size as a string, crc32c and md5Hash in base64', async () => {
  const data = randomBytesSeeded(1000, 1);
  const resource = await upload('media/a b/ü.bin', data);
  assert.is(resource.name, 'media/a b/ü.bin');
  assert.is(resource.size, '1000');
  assert.is(resource.crc32c, crcBase64(data));
  assert.is(resource.md5Hash, md5Base64(data));
  assert.match(String(resource.generation), /^\d+$/);
  const fetched = (await (await fetch(objectUrl('media/a b/ü.bin'))).json()) as Record<string, unknown>;
  assert.is(fetched.generation, resource.generation);
});

test('a multipart upload takes the resource part (metadata, content type) and the media part', async () => {
  const data = randomBytesSeeded(777, 2);
  const boundary = 'xyz123';
  const body = Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n${JSON.stringify({ contentType: 'text/plain', metadata: { a: '1' } })}\r\n--${boundary}\r\nContent-Type: text/plain\r\n\r\n`),
    data,
    Buffer.from(`\r\n--${boundary}--`),
  ]);
  const response = await fetch(`${server.url}/upload/storage/v1/b/${bucket}/o?uploadType=multipart&name=multi/part`, {
    method: 'POST', body, headers: { 'Content-Type': `multipart/related; boundary=${boundary}` },
  });
  const resource = (await response.json()) as Record<string, unknown>;
  assert.equal([resource.size, resource.contentType, resource.metadata, resource.crc32c], ['777', 'text/plain', { a: '1' }, crcBase64(data)]);
});

test('an upload whose X-Goog-Hash does not match its bytes is refused with 400 and stores nothing', async () => {
  const response = await fetch(`${server.url}/upload/storage/v1/b/${bucket}/o?uploadType=media&name=hash/bad`, {
    method: 'POST', body: new Uint8Array([1, 2, 3]), headers: { 'X-Goog-Hash': `crc32c=${crcBase64(new Uint8Array([9]))}` },
  });
  assert.is(response.status, 400);
  assert.match((await errorOf(response)).message, 'CRC32C');
  assert.is((await fetch(objectUrl('hash/bad'))).status, 404);
});

test('a resumable session: 308 with Range while incomplete, a status check, resent bytes skipped, 200 at the end', async () => {
  const data = randomBytesSeeded(300, 3);
  const start = await fetch(`${server.url}/upload/storage/v1/b/${bucket}/o?uploadType=resumable&name=resumable/obj`, {
    method: 'POST', body: JSON.stringify({ metadata: { k: 'v' } }), headers: { 'Content-Type': 'application/json', 'X-Upload-Content-Type': 'application/x-test' },
  });
  assert.is(start.status, 200);
  const session = start.headers.get('location') ?? '';
  assert.match(session, 'upload_id=');
  const put = (body: Uint8Array, range: string): Promise<Response> => fetch(session, { method: 'PUT', body, headers: { 'Content-Range': range }, redirect: 'manual' });

  const first = await put(data.subarray(0, 100), 'bytes 0-99/*');
  assert.is(first.status, 308);
  assert.is(first.headers.get('range'), 'bytes=0-99');
  const status = await put(new Uint8Array(0), 'bytes */*');
  assert.is(status.status, 308);
  assert.is(status.headers.get('range'), 'bytes=0-99');
  const ahead = await put(data.subarray(150, 200), 'bytes 150-199/*');
  assert.is(ahead.status, 400, 'bytes beyond what the session holds are refused');
  const overlapping = await put(data.subarray(50, 200), 'bytes 50-199/*');
  assert.is(overlapping.headers.get('range'), 'bytes=0-199', 'bytes the session already had are skipped');
  const last = await put(data.subarray(200), 'bytes 200-299/300');
  assert.is(last.status, 200);
  const resource = (await last.json()) as Record<string, unknown>;
  assert.equal([resource.size, resource.crc32c, resource.md5Hash, resource.contentType, resource.metadata], ['300', crcBase64(data), md5Base64(data), 'application/x-test', { k: 'v' }]);
  const media = Buffer.from(await (await fetch(`${objectUrl('resumable/obj')}?alt=media`)).arrayBuffer());
  assert.ok(media.equals(data));
  assert.is((await put(new Uint8Array(0), 'bytes */300')).status, 200, 'a finished session answers with its object');
});

test('downloads: x-goog-hash on every response, 206 with Content-Range for a range, 416 past the end', async () => {
  const data = randomBytesSeeded(5000, 4);
  await upload('download/blob', data);
  const whole = await fetch(`${server.url}/download/storage/v1/b/${bucket}/o/${encodeURIComponent('download/blob')}?alt=media`);
  assert.is(whole.status, 200);
  assert.is(whole.headers.get('x-goog-hash'), `crc32c=${crcBase64(data)},md5=${md5Base64(data)}`);
  assert.is(whole.headers.get('x-goog-stored-content-encoding'), 'identity');
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(data));
  const ranged = await fetch(`${objectUrl('download/blob')}?alt=media`, { headers: { Range: 'bytes=100-199' } });
  assert.is(ranged.status, 206);
  assert.is(ranged.headers.get('content-range'), 'bytes 100-199/5000');
  assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(data.subarray(100, 200)));
  const tail = await fetch(`${objectUrl('download/blob')}?alt=media`, { headers: { Range: 'bytes=-10' } });
  assert.ok(Buffer.from(await tail.arrayBuffer()).equals(data.subarray(4990)));
  const past = await fetch(`${objectUrl('download/blob')}?alt=media`, { headers: { Range: 'bytes=5000-5010' } });
  assert.is(past.status, 416);
  assert.is((await errorOf(past)).code, 416);
});

test('list pages through maxResults and pageToken in name order; a delimiter folds names into prefixes', async () => {
  for (const name of ['list/b', 'list/a', 'list/d/1', 'list/d/2', 'list/c', 'list/e/1', 'list/f']) await upload(name, new Uint8Array([1]));
  const names: string[] = [];
  let token: string | undefined;
  let pages = 0;
  do {
    const page = (await (await fetch(`${server.url}/storage/v1/b/${bucket}/o?prefix=list/${token === undefined ? '' : `&pageToken=${token}`}`)).json()) as { items?: { name: string }[]; nextPageToken?: string };
    names.push(...(page.items ?? []).map((item) => item.name));
    token = page.nextPageToken;
    pages++;
  } while (token !== undefined);
  assert.equal(names, ['list/a', 'list/b', 'list/c', 'list/d/1', 'list/d/2', 'list/e/1', 'list/f']);
  assert.is(pages, 2, 'four per page');
  type Folded = { items?: { name: string }[]; prefixes?: string[]; nextPageToken?: string };
  const folded = (await (await fetch(`${server.url}/storage/v1/b/${bucket}/o?prefix=list/&delimiter=/&maxResults=10`)).json()) as Folded;
  assert.equal([folded.items?.map((item) => item.name), folded.prefixes], [['list/a', 'list/b', 'list/c'], ['list/d/']], 'the server\'s page limit (4) wins over maxResults');
  const rest = (await (await fetch(`${server.url}/storage/v1/b/${bucket}/o?prefix=list/&delimiter=/&pageToken=${folded.nextPageToken}`)).json()) as Folded;
  assert.equal([rest.items?.map((item) => item.name), rest.prefixes, rest.nextPageToken], [['list/f'], ['list/e/'], undefined]);
});

test('compose takes 1 to 32 sources; a composite object has componentCount and no md5Hash', async () => {
  const parts = [randomBytesSeeded(100, 5), randomBytesSeeded(200, 6)];
  await upload('compose/0', parts[0]);
  await upload('compose/1', parts[1]);
  const compose = (sources: string[]): Promise<Response> =>
    fetch(`${objectUrl('compose/out')}/compose`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ sourceObjects: sources.map((name) => ({ name })), destination: { metadata: { m: '1' } } }) });
  const made = (await (await compose(['compose/0', 'compose/1', 'compose/0'])).json()) as Record<string, unknown>;
  const whole = Buffer.concat([parts[0], parts[1], parts[0]]);
  assert.equal([made.size, made.crc32c, made.componentCount, made.md5Hash, made.metadata], ['400', crcBase64(whole), 3, undefined, { m: '1' }]);
  const twice = (await (await compose(['compose/out', 'compose/1'])).json()) as Record<string, unknown>;
  assert.is(twice.componentCount, 4, 'components of composite sources count');
  const tooMany = await compose(Array(33).fill('compose/0'));
  assert.is(tooMany.status, 400);
  assert.match((await errorOf(tooMany)).message, 'exceeds the maximum (32)');
  const missing = await compose(['compose/0', 'compose/nope']);
  assert.is(missing.status, 404);
});

test('errors come in the JSON API form: unknown bucket, unknown object, unknown route', async () => {
  const noBucket = await fetch(`${server.url}/storage/v1/b/no-such-bucket/o`);
  assert.is(noBucket.status, 404);
  assert.equal((await errorOf(noBucket)).errors[0].reason, 'notFound');
  assert.is((await fetch(objectUrl('no/such/object'))).status, 404);
  assert.is((await fetch(`${server.url}/nothing/here`)).status, 404);
  assert.is((await fetch(`${server.url}/storage/v1/b/${bucket}`)).status, 200);
});

test('the GCS store\'s compose in rounds leaves no intermediate objects behind', async () => {
  const store = createGcsStore({ bucket, prefix: 'rounds', apiEndpoint: server.url, retry: { delayMsMax: 1000 } });
  const sources = Array.from({ length: 65 }, (_, i) => `part/${String(i).padStart(2, '0')}`);
  for (const source of sources) await store.put(source, new Uint8Array([sources.indexOf(source)]));
  await store.compose(sources, 'whole');
  const listed = (await (await fetch(`${server.url}/storage/v1/b/${bucket}/o?prefix=rounds/&maxResults=4&delimiter=/`)).json()) as { prefixes: string[]; items?: { name: string }[] };
  assert.equal(listed.prefixes, ['rounds/part/'], 'no rounds/.dcas-compose/ left');
  assert.equal(listed.items?.map((item) => item.name), ['rounds/whole']);
});

test('objects survive a restart of a server on the same root', () =>
  withTempDir(async (root) => {
    const first = await startGcsServer({ root, buckets: ['keep'] });
    const data = randomBytesSeeded(2000, 7);
    const store = createGcsStore({ bucket: 'keep', apiEndpoint: first.url, retry: { delayMsMax: 1000 } });
    await store.put('kept/blob', data, { metadata: { a: 'b' } });
    await first.stop();
    const second = await startGcsServer({ root, buckets: ['keep'] });
    try {
      const again = createGcsStore({ bucket: 'keep', apiEndpoint: second.url, retry: { delayMsMax: 1000 } });
      assert.ok(Buffer.from(await again.get('kept/blob')).equals(data));
      assert.equal((await again.stat('kept/blob'))?.metadata, { a: 'b' });
    } finally {
      await second.stop();
    }
  }));

test.run();
