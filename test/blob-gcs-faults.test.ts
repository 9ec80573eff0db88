/**
 * The GCS store rides out transient failures: the server answers 503 (or 429, or drops the
 * connection) and the client's retries with backoff carry each operation through. The client's
 * retry waits are at least 1 s, so each test injects only a few faults.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32c } from '@node-rs/crc32';
import { BlobError, type BlobStore } from '../node/storage/blob/index.ts';
import { createGcsStore } from '../node/storage/blob/gcs.ts';
import { startGcsServer, type GcsServer, type RequestFacts } from '../tools/gcs-server/index.ts';
import { randomBytesSeeded } from './helpers.ts';

const bucket = 'dcas-faults';
const test = suite('gcs store under faults');
let server: GcsServer;
let store: BlobStore;

/** Matches requests of one operation, letting the first `skip` of them through. */
function operation(name: string, skip = 0): (request: RequestFacts) => boolean {
  let seen = 0;
  return (request) => request.operation === name && ++seen > skip;
}

async function* pieces(data: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < data.length; at += size) yield data.subarray(at, at + size);
}

test.before(async () => {
  server = await startGcsServer({ buckets: [bucket] });
  store = createGcsStore({ bucket, prefix: 'faults', apiEndpoint: server.url, uploadChunkBytes: 1 << 20, readIdleMsMax: 1000, retry: { retriesMax: 5, delayMsMax: 1000 } });
});
test.after(async () => {
  await store.close();
  await server.stop();
});
test.before.each(() => server.faults.clear());

test('a resumable putStream resumes after 503s on its chunks and on the status check', async () => {
  const data = randomBytesSeeded(3_500_000, 1);
  const faultsBefore = server.stats.faultsInjected;
  // Let the first chunk through, then fail the second chunk and the status check that follows.
  server.faults.failNext(2, 503, operation('uploads.session', 1));
  const info = await store.putStream('resumable/blob', pieces(data, 100_003));
  assert.is(server.stats.faultsInjected - faultsBefore, 2);
  assert.equal(info, { key: 'resumable/blob', size: data.length, crc32c: crc32c(data), metadata: {} });
  assert.ok(Buffer.from(await store.get('resumable/blob')).equals(data));
});

test('a resumable putStream starts after its session request was answered 503', async () => {
  const data = randomBytesSeeded(1_500_000, 2);
  server.faults.failNext(1, 503, operation('uploads.insert'));
  const info = await store.putStream('resumable/late-start', pieces(data, 65_536));
  assert.is(info.crc32c, crc32c(data));
  assert.ok(Buffer.from(await store.get('resumable/late-start')).equals(data));
});

test('a simple put completes after the server answered 503 and then 429', async () => {
  const data = randomBytesSeeded(50_000, 3);
  const faultsBefore = server.stats.faultsInjected;
  server.faults.failNext(1, 503, operation('uploads.insert'));
  server.faults.failNext(1, 429, operation('uploads.insert'));
  const info = await store.put('simple/blob', data, { metadata: { attempt: 'any' } });
  assert.is(server.stats.faultsInjected - faultsBefore, 2);
  assert.equal(info, { key: 'simple/blob', size: data.length, crc32c: crc32c(data), metadata: { attempt: 'any' } });
});

test('a compose in rounds completes after 503s on its compose calls', async () => {
  const parts = Array.from({ length: 40 }, (_, i) => randomBytesSeeded(1000 + i, 100 + i));
  const sources = parts.map((_, i) => `composing/${String(i).padStart(2, '0')}`);
  for (let i = 0; i < parts.length; i++) await store.put(sources[i], parts[i]);
  const composesBefore = server.stats.operations['objects.compose'] ?? 0;
  server.faults.failNext(2, 503, operation('objects.compose'));
  const info = await store.compose(sources, 'composing/whole');
  // 40 sources: two intermediate composes, then the final one, plus the two that were refused.
  assert.is((server.stats.operations['objects.compose'] ?? 0) - composesBefore, 5);
  const whole = Buffer.concat(parts);
  assert.is(info.crc32c, crc32c(whole));
  assert.ok(Buffer.from(await store.get('composing/whole')).equals(whole));
});

test('a get started during a 503 window succeeds once the window ends', async () => {
  const data = randomBytesSeeded(200_000, 4);
  await store.put('window/blob', data);
  server.faults.failFor(1200, 503);
  const started = Date.now();
  const read = Buffer.from(await store.get('window/blob'));
  assert.ok(Date.now() - started >= 1000, 'the get waited out the window');
  assert.ok(read.equals(data));
});

test('a connection reset is retried', async () => {
  await store.put('reset/blob', new Uint8Array([1, 2, 3]));
  const faultsBefore = server.stats.faultsInjected;
  server.faults.resetNext(1, operation('objects.get'));
  server.faults.resetNext(1, operation('objects.download'));
  assert.is((await store.stat('reset/blob'))?.size, 3);
  assert.equal([...(await store.get('reset/blob'))], [1, 2, 3]);
  assert.is(server.stats.faultsInjected - faultsBefore, 2);
});

test('a whole get cut off midway resumes where it stopped and checks the CRC32C of it all', async () => {
  const data = randomBytesSeeded(3_000_000, 5);
  await store.put('cut/whole', data);
  const downloadsBefore = server.stats.operations['objects.download'] ?? 0;
  server.faults.cutNext(1, 1_234_567, operation('objects.download'));
  assert.ok(Buffer.from(await store.get('cut/whole')).equals(data));
  assert.ok((server.stats.operations['objects.download'] ?? 0) - downloadsBefore >= 2, 'the cut download was followed by another');
});

test('a ranged read cut off midway resumes where it stopped', async () => {
  const data = randomBytesSeeded(2_000_000, 6);
  await store.put('cut/range', data);
  server.faults.cutNext(1, 300_000, operation('objects.download'));
  const read = await store.getRange('cut/range', { start: 100_000, end: 1_900_000 });
  assert.ok(Buffer.from(read).equals(data.subarray(100_000, 1_900_000)));
});

test('a read cut off after the blob was replaced fails with IO, never mixing two versions', async () => {
  await store.put('cut/replaced', randomBytesSeeded(3_000_000, 7));
  server.faults.cutNext(1, 1_000_000, operation('objects.download'));
  let failure: unknown;
  let replaced = false;
  try {
    for await (const _chunk of store.getStream('cut/replaced')) {
      if (!replaced) {
        replaced = true;
        await store.put('cut/replaced', randomBytesSeeded(3_000_000, 8));
      }
    }
  } catch (error) {
    failure = error;
  }
  assert.instance(failure, BlobError);
  assert.is((failure as BlobError).code, 'IO');
  assert.match((failure as BlobError).message, 'replaced or deleted while being read');
});

test('when the retries run out the error is UNAVAILABLE and names the key', async () => {
  const impatient = createGcsStore({ bucket, prefix: 'faults', apiEndpoint: server.url, retry: { retriesMax: 1, delayMsMax: 1000 } });
  server.faults.failNext(2, 503, operation('objects.get'));
  try {
    await impatient.stat('unavailable/blob');
    assert.unreachable('stat succeeded through a permanent 503');
  } catch (error) {
    assert.instance(error, BlobError);
    assert.is((error as BlobError).code, 'UNAVAILABLE');
    assert.match((error as BlobError).message, 'unavailable/blob');
  }
});

test.run();
