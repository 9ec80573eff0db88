/**
 * The codec registry (node/codec/codecs.ts): every codec restores every byte through both file paths
 * (the threaded file pipeline and the streaming pool), the .dcz records the codec and level it was
 * written with, damage is named by its chunk, and every .dcz written before codecs existed still decodes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  CodecError,
  codecs,
  compressFile,
  compressTo,
  decompressFile,
  decompressTo,
  format,
  listDczFile,
  parseCodecChoice,
  resolveOutput,
  streamSource,
  type ByteSink,
  type CodecChoice,
} from '../node/codec/index.ts';
import { memberSizes, sizedHeaderBytes } from '../node/codec/gzip-members.ts';
import { randomBytesSeeded, textLike, withTempDir } from './helpers.ts';

const chunkBytes = format.chunkBytesMin;
const execFileAsync = promisify(execFile);
const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));

/** Text with an incompressible stretch, 2.5 chunks long: coded chunks, a stored-like chunk, a short last one. */
function mixedInput(length = Math.floor(2.5 * chunkBytes)): Uint8Array {
  const bytes = textLike(length, 5);
  const randomBytes = Math.min(chunkBytes / 2, length - chunkBytes - 100);
  if (randomBytes > 0) bytes.set(randomBytesSeeded(randomBytes, 6), chunkBytes + 100);
  return bytes;
}

function defaultChoice(name: string): CodecChoice {
  return parseCodecChoice(name);
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const pieces: Uint8Array[] = [];
  for await (const piece of source) pieces.push(new Uint8Array(piece));
  return Buffer.concat(pieces);
}

async function* once(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

for (const info of codecs) {
  test(`${info.name}: a file round trip through the file pipeline is byte-identical and the .dcz records codec and level`, async () => {
    await withTempDir(async (dir) => {
      const input = mixedInput();
      await writeFile(join(dir, 'in.bin'), input);
      const codec = defaultChoice(info.name);
      await compressFile(join(dir, 'in.bin'), join(dir, 'in.dcz'), { chunkBytes, codec, threads: 2 });
      const container = await readFile(join(dir, 'in.dcz'));
      assert.is(container[10], info.id, 'codec byte');
      assert.is(container[11], codec.level, 'level byte');
      const listing = await listDczFile(join(dir, 'in.dcz'));
      assert.ok(listing.codec.startsWith(info.name), listing.codec);
      await decompressFile(join(dir, 'in.dcz'), join(dir, 'out.bin'), { threads: 2 });
      assert.ok(Buffer.from(input).equals(await readFile(join(dir, 'out.bin'))));
    });
  });
}

test('every codec: a streamed round trip (codec pool) is byte-identical for any size (property)', async () => {
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...codecs.map((codec) => codec.name)), fc.integer({ min: 0, max: 3 * chunkBytes }), async (name, length) => {
      const input = mixedInput(length);
      const codec = defaultChoice(name);
      let container: Buffer = Buffer.alloc(0);
      const sink: ByteSink = async (source) => {
        container = await collect(source);
        return container.length;
      };
      await compressTo(once(new Uint8Array(input)), false, sink, { chunkBytes, codec, threads: 2 });
      assert.is(container[10], codec.codec.id);
      let output: Buffer = Buffer.alloc(0);
      await decompressTo(streamSource(once(container)), async (source) => {
        output = await collect(source);
        return output.length;
      }, { threads: 2 });
      assert.ok(Buffer.from(input).equals(output), `${name}, ${length} bytes`);
    }),
    { numRuns: 21, seed: 10 },
  );
});

for (const name of ['store', 'zstd', 'gzip', 'brotli', 'xz', 'bzip2']) {
  test(`${name}: a corrupted chunk is detected and named, and no output is left`, async () => {
    await withTempDir(async (dir) => {
      await writeFile(join(dir, 'in.bin'), mixedInput());
      await compressFile(join(dir, 'in.bin'), join(dir, 'in.dcz'), { chunkBytes, codec: defaultChoice(name), threads: 2 });
      const bad = await readFile(join(dir, 'in.dcz'));
      const secondChunk = format.headerBytes + format.chunkHeaderBytes + bad.readUInt32LE(format.headerBytes + 8);
      const secondFrameBytes = bad.readUInt32LE(secondChunk + 8);
      bad[secondChunk + format.chunkHeaderBytes + Math.floor(secondFrameBytes / 2)] ^= 0x10;
      await writeFile(join(dir, 'bad.dcz'), bad);
      try {
        await decompressFile(join(dir, 'bad.dcz'), join(dir, 'out.bin'), { threads: 2 });
        assert.unreachable('a corrupted chunk decoded');
      } catch (error) {
        assert.instance(error, CodecError);
        assert.match((error as Error).message, /^chunk 1: /);
      }
      assert.is(await readFile(join(dir, 'out.bin')).then(() => 'present', () => 'absent'), 'absent');
    });
  });
}

test('.dcz files written before codecs existed (test/fixtures/*-v1.*.dcz) still decode to their originals', async () => {
  await withTempDir(async (dir) => {
    for (const name of ['text-v1.txt', 'random-v1.bin', 'empty-v1.txt']) {
      await decompressFile(join(fixtures, `${name}.dcz`), join(dir, name), { threads: 2 });
      assert.ok((await readFile(join(fixtures, name))).equals(await readFile(join(dir, name))), name);
      const listing = await listDczFile(join(fixtures, `${name}.dcz`));
      assert.is(listing.codec, 'huffman');
    }
  });
});

test('a Huffman .dcz is written byte for byte as before: codec byte 1, level byte 0', async () => {
  await withTempDir(async (dir) => {
    await compressFile(join(fixtures, 'text-v1.txt'), join(dir, 'text.dcz'), { chunkBytes, threads: 2 });
    assert.ok((await readFile(join(fixtures, 'text-v1.txt.dcz'))).equals(await readFile(join(dir, 'text.dcz'))));
  });
});

test('an unknown codec or level is refused, naming the valid ones', () => {
  assert.throws(() => parseCodecChoice('nope'), (error: Error) => error instanceof CodecError && /zstd \(levels 1-19, default 3\)/.test(error.message));
  assert.throws(() => parseCodecChoice('gzip:10'), (error: Error) => /gzip: level 10 is not valid \(levels 1-9, default 6\)/.test(error.message));
  assert.equal(parseCodecChoice('zstd:9').level, 9);
  assert.equal(parseCodecChoice('brotli').level, 5);
});

test('a header naming a codec id this build does not know is refused as UNSUPPORTED', async () => {
  await withTempDir(async (dir) => {
    const container = await readFile(join(fixtures, 'text-v1.txt.dcz'));
    container[10] = 99;
    await writeFile(join(dir, 'odd.dcz'), container);
    try {
      await decompressFile(join(dir, 'odd.dcz'), join(dir, 'out'), { threads: 1 });
      assert.unreachable('an unknown codec id decoded');
    } catch (error) {
      assert.instance(error, CodecError);
      assert.is((error as CodecError).code, 'UNSUPPORTED');
      assert.match((error as Error).message, /codec id 99/);
    }
  });
});

const standardFormats = [
  { format: 'zst', piece: /^frame 1 \(offset \d+\): zstd frame does not decode/ },
  { format: 'xz', piece: /^stream 1 \(offset \d+\): xz frame does not decode/ },
  { format: 'bz2', piece: /^stream 1 \(offset \d+\): bzip2 frame does not decode/ },
  // Our members carry their lengths (gzip-members.ts), so the damaged one is placed too.
  { format: 'gz', piece: /^member 1 \(offset \d+\): gzip frame does not decode/ },
] as const;

for (const { format: outputFormat, piece } of standardFormats) {
  test(`--format ${outputFormat}: decompress recognises it by content and restores identical bytes; a damaged piece is named`, async () => {
    await withTempDir(async (dir) => {
      const input = mixedInput(Math.floor(3.5 * chunkBytes));
      await writeFile(join(dir, 'in.bin'), input);
      // A name that hides the format: decompress goes by the first bytes.
      await compressFile(join(dir, 'in.bin'), join(dir, 'in.data'), { chunkBytes, format: outputFormat, codec: resolveOutput(outputFormat, undefined).codec, threads: 2 });
      await decompressFile(join(dir, 'in.data'), join(dir, 'out.bin'), { threads: 2 });
      assert.ok(Buffer.from(input).equals(await readFile(join(dir, 'out.bin'))));
      const bad = await readFile(join(dir, 'in.data'));
      // The second piece starts after the first: find it as the second occurrence of the format's magic.
      const second = bad.indexOf(bad.subarray(0, 3), 1);
      assert.ok(second > 0, 'second piece found');
      bad[second + 200] ^= 0x20;
      await writeFile(join(dir, 'bad.data'), bad);
      try {
        await decompressFile(join(dir, 'bad.data'), join(dir, 'bad.bin'), { threads: 2 });
        assert.unreachable('a damaged piece decoded');
      } catch (error) {
        assert.instance(error, CodecError);
        assert.match((error as Error).message, piece);
      }
      assert.is(await readFile(join(dir, 'bad.bin')).then(() => 'present', () => 'absent'), 'absent');
    });
  });
}

test('a plain single-frame file of each standard format (made by the system tool) decodes', async () => {
  await withTempDir(async (dir) => {
    const input = mixedInput();
    await writeFile(join(dir, 'in.bin'), input);
    for (const [tool, suffix] of [['zstd', 'zst'], ['gzip', 'gz'], ['xz', 'xz'], ['bzip2', 'bz2']] as const) {
      const made = await execFileAsync(tool, ['-c', join(dir, 'in.bin')], { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 });
      await writeFile(join(dir, `plain.${suffix}`), made.stdout);
      await decompressFile(join(dir, `plain.${suffix}`), join(dir, `plain-${suffix}.out`), { threads: 2 });
      assert.ok(Buffer.from(input).equals(await readFile(join(dir, `plain-${suffix}.out`))), tool);
    }
  });
});

test("--format gz: each member carries its length and its decoded length in a DC extra field, which add up to the file and the input; a .gz with another tool's member appended decodes as one stream", async () => {
  await withTempDir(async (dir) => {
    const input = mixedInput(Math.floor(3.5 * chunkBytes));
    await writeFile(join(dir, 'in.bin'), input);
    await compressFile(join(dir, 'in.bin'), join(dir, 'in.gz'), { chunkBytes, format: 'gz', codec: parseCodecChoice('gzip'), threads: 2 });
    const file = await readFile(join(dir, 'in.gz'));
    const members: { memberBytes: number; originalBytes: number }[] = [];
    for (let offset = 0; offset < file.length; ) {
      const sizes = memberSizes(file.subarray(offset, offset + sizedHeaderBytes));
      assert.ok(sizes !== undefined, `member at ${offset} has no DC field`);
      members.push(sizes);
      offset += sizes.memberBytes;
      assert.ok(offset <= file.length, 'member lengths run past the file');
    }
    assert.is(members.length, 4);
    assert.is(members.reduce((sum, member) => sum + member.originalBytes, 0), input.length);
    // Another tool's member after ours: no length to find it by, so the whole file is one stream.
    const tail = textLike(5000, 9);
    await writeFile(join(dir, 'tail.bin'), tail);
    const foreign = await execFileAsync('gzip', ['-c', join(dir, 'tail.bin')], { encoding: 'buffer' });
    await writeFile(join(dir, 'both.gz'), Buffer.concat([file, foreign.stdout]));
    await decompressFile(join(dir, 'both.gz'), join(dir, 'both.out'), { threads: 2 });
    assert.ok(Buffer.concat([input, tail]).equals(await readFile(join(dir, 'both.out'))), 'ours then theirs');
  });
});

test.run();
