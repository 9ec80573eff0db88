import { test } from 'uvu';
import fc from 'fast-check';
import * as assert from 'uvu/assert';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CodecError, compress, compressStream, createCodecPool, decompress, decompressStream, openDcz, type CodecPool } from '../node/index.ts';
import { format, parseCodecChoice, rechunk } from '../node/codec/index.ts';
import { randomBytesSeeded, seededRandom, textLike, withTempDir } from './helpers.ts';

const chunkBytes = format.chunkBytesMin; // 64 KiB: small chunks make many-chunk files cheap to test
let pool: CodecPool;

test.before(() => {
  pool = createCodecPool({ threads: 2 });
});
test.after(async () => {
  await pool.close();
});

async function expectCodecError(run: () => Promise<unknown>): Promise<CodecError> {
  try {
    await run();
  } catch (error) {
    if (error instanceof CodecError) return error;
    throw new Error(`expected a CodecError, got ${(error as Error)?.name}: ${(error as Error)?.message}`);
  }
  throw new Error('expected a CodecError, but the input was accepted');
}

test('round trip restores every byte at sizes around the chunk boundary', async () => {
  for (const length of [0, 1, 2, chunkBytes - 1, chunkBytes, chunkBytes + 1, 3 * chunkBytes, 3 * chunkBytes + 7]) {
    for (const data of [textLike(length, length), randomBytesSeeded(length, length)]) {
      const dcz = await compress(data, { pool, chunkBytes });
      const back = await decompress(dcz, { pool });
      assert.ok(Buffer.from(back).equals(data), `length ${length}`);
    }
  }
});

test('text-like data shrinks, and the container records chunk count and original size', async () => {
  const data = textLike(5 * chunkBytes + 100);
  const dcz = await compress(data, { pool, chunkBytes });
  assert.ok(dcz.length < data.length * 0.8, `ratio ${dcz.length / data.length}`);
  await withTempDir(async (dir) => {
    const path = join(dir, 'x.dcz');
    await writeFile(path, dcz);
    const reader = await openDcz(path);
    try {
      assert.is(reader.entries.length, 6);
      assert.is(reader.trailer.originalBytes, data.length);
      assert.is(reader.header.chunkBytes, chunkBytes);
    } finally {
      await reader.close();
    }
  });
});

test('random access: chunk i decodes alone to the i-th slice of the original', async () => {
  const data = textLike(4 * chunkBytes + 999, 7);
  await withTempDir(async (dir) => {
    const path = join(dir, 'x.dcz');
    await writeFile(path, await compress(data, { pool, chunkBytes }));
    const reader = await openDcz(path);
    try {
      for (const i of [3, 0, 4, 1]) {
        const chunk = await reader.readChunk(i, pool);
        assert.ok(Buffer.from(chunk).equals(data.subarray(i * chunkBytes, (i + 1) * chunkBytes)), `chunk ${i}`);
      }
    } finally {
      await reader.close();
    }
  });
});

test('streams: compressStream then decompressStream restore the input fed in odd-sized pieces', async () => {
  const data = textLike(3 * chunkBytes + 12345, 3);
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < data.length; at += 10007) pieces.push(data.subarray(at, at + 10007));
  const out: Buffer[] = [];
  await pipeline(Readable.from(pieces), compressStream({ pool, chunkBytes }), decompressStream({ pool }), async function (source: AsyncIterable<Buffer>) {
    for await (const piece of source) out.push(piece);
  });
  assert.ok(Buffer.concat(out).equals(data));
});

test('a flipped bit anywhere in the container is detected, and inside a chunk the error names that chunk', async () => {
  const data = textLike(3 * chunkBytes + 500, 11);
  const dcz = Buffer.from(await compress(data, { pool, chunkBytes }));
  const random = seededRandom(42);
  const chunkAt = (offset: number, entries: { offset: number; compressedBytes: number }[]) =>
    entries.findIndex((entry) => offset >= entry.offset && offset < entry.offset + format.chunkHeaderBytes + entry.compressedBytes);
  const entries = await withTempDir(async (dir) => {
    await writeFile(join(dir, 'x.dcz'), dcz);
    const reader = await openDcz(join(dir, 'x.dcz'));
    await reader.close();
    return reader.entries.map((entry) => ({ ...entry }));
  });
  for (let trial = 0; trial < 150; trial++) {
    const offset = Math.floor(random() * dcz.length);
    const bad = Buffer.from(dcz);
    bad[offset] ^= 1 << Math.floor(random() * 8);
    const error = await expectCodecError(() => decompress(bad, { pool }));
    const chunk = chunkAt(offset, entries);
    if (chunk >= 0) assert.match(error.message, new RegExp(`^chunk ${chunk}\\b`), `offset ${offset}: ${error.message}`);
  }
});

test('a truncated container is refused at every cut point, never accepted as shorter output', async () => {
  const data = textLike(2 * chunkBytes + 77, 5);
  const dcz = Buffer.from(await compress(data, { pool, chunkBytes }));
  const random = seededRandom(9);
  const cuts = [0, 1, 15, 16, 17, 40, dcz.length - 73, dcz.length - 72, dcz.length - 1];
  for (let i = 0; i < 40; i++) cuts.push(Math.floor(random() * dcz.length));
  for (const cut of cuts) {
    const error = await expectCodecError(() => decompress(dcz.subarray(0, cut), { pool }));
    assert.ok(['TRUNCATED', 'NOT_DCZ', 'CORRUPT_CONTAINER'].includes(error.code), `cut ${cut}: ${error.code} ${error.message}`);
  }
});

test('fuzz: a mutated or truncated container decodes to exactly the original or fails with a CodecError', async () => {
  const data = textLike(3 * chunkBytes + 4321, 23);
  const dcz = Buffer.from(await compress(data, { pool, chunkBytes }));
  const edit = fc.record({
    flips: fc.array(fc.record({ at: fc.nat(dcz.length - 1), bits: fc.integer({ min: 1, max: 255 }) }), { maxLength: 4 }),
    cut: fc.option(fc.nat(dcz.length), { nil: undefined }),
  });
  await fc.assert(
    fc.asyncProperty(edit, async ({ flips, cut }) => {
      const bad = Buffer.from(dcz);
      for (const flip of flips) bad[flip.at] ^= flip.bits;
      let out: Uint8Array;
      try {
        out = await decompress(cut === undefined ? bad : bad.subarray(0, cut), { pool });
      } catch (error) {
        if (!(error instanceof CodecError)) throw error;
        return;
      }
      assert.ok(Buffer.from(out).equals(data), 'an edited container was accepted with different output');
    }),
    { numRuns: 300, seed: 4242 },
  );
});

test('a file that is not a .dcz is refused as NOT_DCZ', async () => {
  const error = await expectCodecError(() => decompress(new TextEncoder().encode('hello, this is plain text and no container'), { pool }));
  assert.is(error.code, 'NOT_DCZ');
});

test('bytes after the trailer are refused', async () => {
  const dcz = await compress(textLike(1000), { pool, chunkBytes });
  const error = await expectCodecError(() => decompress(Buffer.concat([dcz, Buffer.from([0])]), { pool }));
  assert.is(error.code, 'CORRUPT_CONTAINER');
});

test('compress leaves the caller\'s buffer intact, even when it is exactly one chunk', async () => {
  const data = textLike(chunkBytes, 12);
  const copy = Buffer.from(data);
  await compress(data, { pool, chunkBytes });
  assert.is(data.length, chunkBytes);
  assert.ok(Buffer.from(data).equals(copy));
});

test('the pool codes views into pooled Buffers without detaching their neighbours', async () => {
  // Small Buffers share Node's pool, which cannot be transferred; the pool must copy them.
  const pooled = [Buffer.from('first small buffer'), Buffer.from(textLike(3000, 4)), Buffer.from('last')];
  for (const bytes of pooled) {
    const { frame, checksum } = await pool.compress(bytes);
    assert.ok(Buffer.from(await pool.decompress(frame, bytes.length, checksum, 'chunk 0')).equals(bytes));
  }
  assert.is(pooled[0].toString(), 'first small buffer');
});

test('record: every codec answers a whole .dcz chunk record, header then frame, that decodes to the chunk', async () => {
  const data = textLike(70_000, 21);
  for (const name of ['huffman', 'zstd:3', 'gzip:6', 'brotli:5', 'xz:1', 'bzip2:1', 'store']) {
    const choice = parseCodecChoice(name);
    const bare = await pool.compress(new Uint8Array(data), choice);
    const { frame: record, checksum } = await pool.compress(new Uint8Array(data), choice, { record: true });
    const fields = format.decodeChunkHeader(record.subarray(0, format.chunkHeaderBytes), 0, format.chunkBytesMax, choice.codec.id);
    assert.equal(fields, { originalBytes: data.length, compressedBytes: record.length - format.chunkHeaderBytes, checksum }, name);
    assert.ok(Buffer.from(record.subarray(format.chunkHeaderBytes)).equals(bare.frame), `${name}: the record's frame is the bare frame`);
    const decoded = await pool.decompress(record.subarray(format.chunkHeaderBytes), data.length, checksum, 'chunk 0', choice);
    assert.ok(Buffer.from(decoded).equals(data), name);
  }
});

test('giveBack: the codec thread hands the original bytes back, unchanged and whole', async () => {
  const data = textLike(50_000, 22);
  const input = new Uint8Array(data);
  const { input: back } = await pool.compress(input, undefined, { giveBack: true });
  assert.is(input.byteLength, 0, 'the caller\'s view was transferred away');
  assert.ok(back !== undefined && Buffer.from(back).equals(data));
  assert.is(back?.buffer.byteLength, data.length);
  const { input: dropped } = await pool.compress(new Uint8Array(data));
  assert.is(dropped, undefined, 'without giveBack nothing comes back');
});

test('rechunk cuts into the buffers it is given, overwriting whatever they held', async () => {
  const data = randomBytesSeeded(10_000, 23);
  const given: Uint8Array[] = [];
  const nextBuffer = () => {
    const dirty = new Uint8Array(4096).fill(0xee);
    given.push(dirty);
    return dirty;
  };
  const pieces: Uint8Array[] = [];
  for await (const piece of rechunk(Readable.from([data.subarray(0, 3000), data.subarray(3000, 9000), data.subarray(9000)]), 4096, nextBuffer)) pieces.push(new Uint8Array(piece));
  assert.equal(pieces.map((piece) => piece.length), [4096, 4096, 1808]);
  assert.ok(Buffer.concat(pieces).equals(data));
  assert.ok(given.length >= 2);
});

test('rechunk waits for a buffer it is promised, and asks for none when the input ends on a chunk boundary', async () => {
  const data = randomBytesSeeded(8192, 29);
  let asked = 0;
  const nextBuffer = async () => {
    asked += 1;
    await new Promise((resolve) => setTimeout(resolve, 5));
    return new Uint8Array(4096);
  };
  const pieces: Uint8Array[] = [];
  for await (const piece of rechunk(Readable.from([data.subarray(0, 5000), data.subarray(5000)]), 4096, nextBuffer)) pieces.push(new Uint8Array(piece));
  assert.equal(pieces.map((piece) => piece.length), [4096, 4096]);
  assert.ok(Buffer.concat(pieces).equals(data));
  assert.is(asked, 2, 'a third buffer was asked for although no bytes came for it');
});

test.run();
