/**
 * The blob-store contract (node/storage/blob/types.ts), checked the same way against both stores:
 * the folder store on a real temporary folder, and the GCS store through the real
 * @google-cloud/storage client talking to our GCS server on loopback.
 */
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32c } from '@node-rs/crc32';
import { BlobError, createBlobStore, createFolderStore, type BlobStore } from '../node/storage/blob/index.ts';
import { createGcsStore } from '../node/storage/blob/gcs.ts';
import { startGcsServer } from '../tools/gcs-server/index.ts';
import { randomBytesSeeded, seededRandom } from './helpers.ts';

interface Harness {
  store: BlobStore;
  /** Flips the stored byte at `offset` of a blob, behind the store's back. */
  corrupt(key: string, offset: number): Promise<void>;
  stop(): Promise<void>;
}

async function collect(stream: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream) chunks.push(chunk);
  return Buffer.concat(chunks);
}

async function thrown(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  return assert.unreachable('expected a rejection, the call succeeded');
}

async function rejection(promise: Promise<unknown>): Promise<BlobError> {
  const error = await thrown(promise);
  assert.instance(error, BlobError, `expected a BlobError, got ${String(error)}`);
  return error as BlobError;
}

/** Odd-sized pieces (1 byte to ~300 KB) of `data`, as a stream. */
async function* oddPieces(data: Uint8Array, seed: number): AsyncGenerator<Uint8Array> {
  const random = seededRandom(seed);
  for (let at = 0; at < data.length; ) {
    const length = Math.min(data.length - at, 1 + Math.floor(random() * random() * 300_000));
    yield data.slice(at, at + length);
    at += length;
  }
}

function conformance(name: string, start: () => Promise<Harness>): void {
  const test = suite(name);
  let harness: Harness;
  let store: BlobStore;
  test.before(async () => {
    harness = await start();
    store = harness.store;
  });
  test.after(async () => {
    await store.close();
    await harness.stop();
  });

  test('put then get returns the same bytes; put and stat report size, CRC32C and metadata', async () => {
    const data = randomBytesSeeded(100_000, 1);
    const info = await store.put('round/trip.bin', data, { metadata: { fileName: 'report.pdf', originalSize: '100000' } });
    assert.equal(info, { key: 'round/trip.bin', size: 100_000, crc32c: crc32c(data), metadata: { fileName: 'report.pdf', originalSize: '100000' } });
    assert.ok(Buffer.from(await store.get('round/trip.bin')).equals(data));
    assert.equal(await store.stat('round/trip.bin'), info);
    assert.ok((await collect(store.getStream('round/trip.bin'))).equals(data), 'a whole getStream returns the same bytes');
  });

  test('an empty blob round-trips through put and putStream', async () => {
    assert.equal(await store.put('empty/put', new Uint8Array(0)), { key: 'empty/put', size: 0, crc32c: 0, metadata: {} });
    assert.equal((await store.get('empty/put')).length, 0);
    assert.equal((await store.putStream('empty/stream', (async function* () {})())).size, 0);
    assert.equal((await collect(store.getStream('empty/stream'))).length, 0);
  });

  test('putStream of 20 MB in odd-sized pieces stores exactly those bytes', async () => {
    const data = randomBytesSeeded(20 << 20, 2);
    const info = await store.putStream('stream/20mb', oddPieces(data, 3), { metadata: { kind: 'original' } });
    assert.equal(info, { key: 'stream/20mb', size: data.length, crc32c: crc32c(data), metadata: { kind: 'original' } });
    assert.ok(Buffer.from(await store.get('stream/20mb')).equals(data));
  });

  test('putStream may reuse a chunk once the store asks for the next one', async () => {
    const reused = new Uint8Array(64 * 1024);
    const expected: Uint8Array[] = [];
    async function* refill(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 40; i++) {
        reused.fill(i);
        expected.push(reused.slice());
        yield reused;
      }
    }
    await store.putStream('stream/reused', refill());
    assert.ok(Buffer.from(await store.get('stream/reused')).equals(Buffer.concat(expected)));
  });

  test('a missing blob: stat is undefined; get, getStream and getRange are NOT_FOUND', async () => {
    assert.is(await store.stat('missing/blob'), undefined);
    assert.is((await rejection(store.get('missing/blob'))).code, 'NOT_FOUND');
    assert.is((await rejection(collect(store.getStream('missing/blob')))).code, 'NOT_FOUND');
    assert.is((await rejection(store.getRange('missing/blob', { start: 0, end: 10 }))).code, 'NOT_FOUND');
    assert.is((await rejection(store.getRange('missing/blob', { start: 0, end: 0 }))).code, 'NOT_FOUND');
  });

  test('list returns exactly the keys under a prefix, in key order, across pages', async () => {
    const keys = Array.from({ length: 23 }, (_, i) => `listing/job/${String(i).padStart(3, '0')}`);
    for (const key of [...keys].reverse()) await store.put(key, new Uint8Array([1]));
    await store.put('listing/jobs-other/x', new Uint8Array([2]));
    await store.put('listing/job-a', new Uint8Array([3]));
    assert.equal(await store.list('listing/job/'), keys);
    assert.equal(await store.list('listing/job/01'), keys.slice(10, 20), 'a prefix may end inside a segment');
    assert.equal(await store.list('listing/job'), ['listing/job-a', ...keys, 'listing/jobs-other/x'], 'byte order: "-" < "/" < "s"');
    assert.equal(await store.list('listing/nothing/'), []);
  });

  test('delete removes a blob, and deleting an absent blob is not an error', async () => {
    await store.put('deleting/one', new Uint8Array([1, 2]));
    await store.delete('deleting/one');
    assert.is(await store.stat('deleting/one'), undefined);
    await store.delete('deleting/one');
    await store.delete('deleting/never/was');
  });

  test('deletePrefix removes every blob under the prefix and no other, and counts them', async () => {
    for (let i = 0; i < 12; i++) await store.put(`pruning/a/${i}`, new Uint8Array([i]));
    await store.put('pruning/a-keep', new Uint8Array([1]));
    await store.put('pruning/b/keep', new Uint8Array([1]));
    assert.is(await store.deletePrefix('pruning/a/'), 12);
    assert.equal(await store.list('pruning/'), ['pruning/a-keep', 'pruning/b/keep']);
    assert.is(await store.deletePrefix('pruning/a/'), 0);
  });

  test('ranged reads return the bytes of [start, end) at the start, in the middle and at the end', async () => {
    const data = randomBytesSeeded(3 << 20, 4);
    await store.put('ranges/blob', data);
    for (const [start, end] of [[0, 1], [0, 4096], [1_000_003, 2_500_017], [data.length - 5, data.length], [0, data.length], [77, 77]]) {
      const expected = data.subarray(start, end);
      assert.ok(Buffer.from(await store.getRange('ranges/blob', { start, end })).equals(expected), `getRange [${start}, ${end})`);
      assert.ok((await collect(store.getStream('ranges/blob', { start, end }))).equals(expected), `getStream [${start}, ${end})`);
    }
  });

  test('a range outside the blob, or malformed, is BAD_RANGE', async () => {
    await store.put('ranges/small', new Uint8Array(100));
    for (const range of [{ start: 50, end: 101 }, { start: 100, end: 200 }, { start: 200, end: 200 }, { start: 5, end: 4 }, { start: -1, end: 3 }, { start: 0.5, end: 3 }]) {
      assert.is((await rejection(store.getRange('ranges/small', range))).code, 'BAD_RANGE', `getRange ${JSON.stringify(range)}`);
    }
    assert.is((await rejection(collect(store.getStream('ranges/small', { start: 90, end: 120 })))).code, 'BAD_RANGE');
    assert.is((await rejection(collect(store.getStream('ranges/small', { start: 9, end: 1 })))).code, 'BAD_RANGE');
  });

  test('compose of 70 sources equals their concatenation and carries its CRC32C; the sources stay', async () => {
    const random = seededRandom(5);
    const sources: string[] = [];
    const parts: Uint8Array[] = [];
    for (let i = 0; i < 70; i++) {
      const part = randomBytesSeeded(Math.floor(random() * 40_000), 100 + i);
      sources.push(`composing/part/${String(i).padStart(2, '0')}`);
      parts.push(part);
      await store.put(sources[i], part);
    }
    const whole = Buffer.concat(parts);
    const info = await store.compose(sources, 'composing/whole', { metadata: { chunks: '70' } });
    assert.equal(info, { key: 'composing/whole', size: whole.length, crc32c: crc32c(whole), metadata: { chunks: '70' } });
    assert.ok(Buffer.from(await store.get('composing/whole')).equals(whole));
    assert.equal(await store.stat('composing/whole'), info);
    assert.equal(await store.list('composing/part/'), sources);
    assert.equal(await store.list('composing/'), [...sources, 'composing/whole'], 'no intermediate objects show as blobs');
  });

  test('compose: zero sources make an empty blob; the destination may not be a source; a missing source is NOT_FOUND', async () => {
    assert.is((await store.compose([], 'composing/empty')).size, 0);
    await store.put('composing/x', new Uint8Array([1]));
    assert.is((await rejection(store.compose(['composing/x'], 'composing/x'))).code, 'BAD_KEY');
    assert.is((await rejection(store.compose(['composing/x', 'composing/absent'], 'composing/y'))).code, 'NOT_FOUND');
    assert.is(await store.stat('composing/y'), undefined);
  });

  test('a blob whose stored bytes were corrupted is CHECKSUM_MISMATCH on get and on a whole getStream', async () => {
    const data = randomBytesSeeded(200_000, 6);
    await store.put('corrupt/blob', data);
    await harness.corrupt('corrupt/blob', 123_456);
    const fromGet = await rejection(store.get('corrupt/blob'));
    assert.is(fromGet.code, 'CHECKSUM_MISMATCH');
    assert.match(fromGet.message, 'corrupt/blob');
    const fromStream = await rejection(collect(store.getStream('corrupt/blob')));
    assert.is(fromStream.code, 'CHECKSUM_MISMATCH');
    assert.match(fromStream.message, 'corrupt/blob');
  });

  test('bad keys and prefixes are refused with BAD_KEY', async () => {
    const badKeys = ['', '/abs', 'a//b', 'a/../b', '..', 'a/./b', 'a/', 'sp ace', 'ümlaut', '.hidden', 'a/.b', 'back\\slash', 'x'.repeat(1000)];
    for (const key of badKeys) {
      const label = JSON.stringify(key.slice(0, 20));
      assert.is((await rejection(store.put(key, new Uint8Array([1])))).code, 'BAD_KEY', `put ${label}`);
      assert.is((await rejection(store.putStream(key, (async function* () {})()))).code, 'BAD_KEY', `putStream ${label}`);
      assert.is((await rejection(store.get(key))).code, 'BAD_KEY', `get ${label}`);
      assert.is((await rejection(collect(store.getStream(key)))).code, 'BAD_KEY', `getStream ${label}`);
      assert.is((await rejection(store.stat(key))).code, 'BAD_KEY', `stat ${label}`);
      assert.is((await rejection(store.delete(key))).code, 'BAD_KEY', `delete ${label}`);
      assert.is((await rejection(store.compose(['ok'], key))).code, 'BAD_KEY', `compose into ${label}`);
    }
    for (const prefix of ['/abs', 'a//', '../', 'a/../']) assert.is((await rejection(store.list(prefix))).code, 'BAD_KEY', `list ${prefix}`);
  });

  test('metadata that is not strings, or larger than 8 KiB, is BAD_METADATA', async () => {
    assert.is((await rejection(store.put('meta/x', new Uint8Array(1), { metadata: { big: 'x'.repeat(9000) } }))).code, 'BAD_METADATA');
    assert.is((await rejection(store.put('meta/x', new Uint8Array(1), { metadata: { n: 5 as unknown as string } }))).code, 'BAD_METADATA');
    assert.is(await store.stat('meta/x'), undefined);
  });

  test('a putStream whose source throws midway leaves no blob under the key, or the previous blob whole', async () => {
    const failure = new Error('source broke after 5 MB');
    async function* breaking(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < 5; i++) yield randomBytesSeeded(1 << 20, 7 + i);
      throw failure;
    }
    assert.is(await thrown(store.putStream('atomic/new', breaking())), failure, 'the source\'s own error comes back');
    assert.is(await store.stat('atomic/new'), undefined);
    assert.equal(await store.list('atomic/'), []);

    const previous = randomBytesSeeded(10_000, 8);
    await store.put('atomic/old', previous);
    assert.is(await thrown(store.putStream('atomic/old', breaking())), failure);
    assert.ok(Buffer.from(await store.get('atomic/old')).equals(previous));
  });

  test('concurrent writers of one key end with one of their blobs, whole', async () => {
    const versions = Array.from({ length: 6 }, (_, i) => randomBytesSeeded(300_000 + i * 1000, 20 + i));
    await Promise.all(versions.map((data, i) => (i % 2 === 0 ? store.put('racing/key', data) : store.putStream('racing/key', oddPieces(data, i)))));
    const final = Buffer.from(await store.get('racing/key'));
    assert.ok(versions.some((data) => final.equals(data)), 'the final blob is one writer\'s bytes');
    assert.is((await store.stat('racing/key'))?.crc32c, crc32c(final));
  });

  test.run();
}

conformance('folder store', async () => {
  const root = await mkdtemp(join(tmpdir(), 'dcas-blob-'));
  return {
    store: createFolderStore({ root }),
    async corrupt(key, offset) {
      const file = await open(join(root, key), 'r+');
      const byte = Buffer.alloc(1);
      await file.read(byte, 0, 1, offset);
      byte[0] ^= 0xff;
      await file.write(byte, 0, 1, offset);
      await file.close();
    },
    stop: () => rm(root, { recursive: true, force: true }),
  };
});

conformance('gcs store', async () => {
  const server = await startGcsServer({ buckets: ['dcas-test'], listPageSizeMax: 7 });
  return {
    store: createGcsStore({ bucket: 'dcas-test', prefix: 'conformance', apiEndpoint: server.url, uploadChunkBytes: 2 << 20, retry: { delayMsMax: 1000 } }),
    corrupt: (key, offset) => server.faults.corrupt('dcas-test', `conformance/${key}`, offset),
    stop: () => server.stop(),
  };
});

const door = suite('createBlobStore');

door('picks the store the config names, and both work behind it', async () => {
  const root = await mkdtemp(join(tmpdir(), 'dcas-blob-'));
  const server = await startGcsServer({ buckets: ['dcas-door'] });
  try {
    const folder = await createBlobStore({ kind: 'folder', path: root });
    const gcs = await createBlobStore({ kind: 'gcs', bucket: 'dcas-door', prefix: 'node1', apiEndpoint: server.url }, { gcs: { retry: { delayMsMax: 1000 } } });
    assert.equal([folder.kind, gcs.kind], ['folder', 'gcs']);
    for (const store of [folder, gcs]) {
      await store.put('door/key', new Uint8Array([4, 2]));
      assert.equal([...(await store.get('door/key'))], [4, 2]);
    }
    assert.is((await (await fetch(`${server.url}/storage/v1/b/dcas-door/o/${encodeURIComponent('node1/door/key')}`)).json() as { size: string }).size, '2', 'GCS objects sit under the prefix');
  } finally {
    await server.stop();
    await rm(root, { recursive: true, force: true });
  }
});

door.run();
