/**
 * The file pipeline (node/codec/file-pipeline.ts): codec threads that read and write the files
 * themselves (zlib's codecs: libuv's thread pool, file-zlib.ts), and the SHA-256 on a thread of its own
 * (for zlib's codecs, of the bytes in hand on the calling thread). It must write exactly the container
 * the streaming encoder writes (whose codec threads code each chunk in one call), restore every byte,
 * and reject damage with the chunk or record it is in, leaving no output file behind.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32c } from '@node-rs/crc32';
import { open, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CodecError, compressFile, createCodecPool, decompressFile, format, parseCodecChoice } from '../node/codec/index.ts';
import { startFileThreads, type FileThreads } from '../node/codec/file-threads.ts';
import { loadKernel } from '../node/codec/kernel.ts';
import { randomBytesSeeded, textLike, withTempDir } from './helpers.ts';

const chunkBytes = format.chunkBytesMin;

/** Text with an incompressible stretch in the middle, so both coded and raw blocks occur; 7.5 chunks long. */
function mixedInput(chunk = chunkBytes): Uint8Array {
  const bytes = textLike(Math.floor(7.5 * chunk), 3);
  bytes.set(randomBytesSeeded(chunk, 4), 2 * chunk + 100);
  return bytes;
}

/** Chunks for a file above 8 MiB, which is hashed on a thread of its own (smaller ones on the calling thread). */
const largeChunkBytes = 1536 * 1024;

/** Compresses mixedInput() to in.dcz and writes bad.dcz: a copy that `damage` changed in place. */
async function damagedContainer(dir: string, damage: (container: Buffer) => void, chunk = chunkBytes, codec = 'huffman'): Promise<string> {
  await writeFile(join(dir, 'in.bin'), mixedInput(chunk));
  await compressFile(join(dir, 'in.bin'), join(dir, 'in.dcz'), { chunkBytes: chunk, codec: parseCodecChoice(codec) });
  const container = await readFile(join(dir, 'in.dcz'));
  damage(container);
  await writeFile(join(dir, 'bad.dcz'), container);
  return join(dir, 'bad.dcz');
}

async function expectCodecError(promise: Promise<unknown>, code: string, pattern: RegExp): Promise<void> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, CodecError);
    assert.is((error as CodecError).code, code);
    assert.match((error as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected a ${code} error`);
}

for (const chunk of [chunkBytes, largeChunkBytes]) {
  test(`the threaded pipeline writes byte for byte the container the streaming encoder writes, and restores the input (${chunk}-byte chunks)`, async () => {
    await withTempDir(async (dir) => {
      const input = mixedInput(chunk);
      await writeFile(join(dir, 'in.bin'), input);
      const threaded = await compressFile(join(dir, 'in.bin'), join(dir, 'threaded.dcz'), { threads: 2, chunkBytes: chunk });
      assert.is(threaded.chunks, 8);
      assert.is(threaded.originalBytes, input.length);
      const pool = createCodecPool({ threads: 1 });
      try {
        await compressFile(join(dir, 'in.bin'), join(dir, 'streamed.dcz'), { pool, chunkBytes: chunk });
      } finally {
        await pool.close();
      }
      const container = await readFile(join(dir, 'threaded.dcz'));
      assert.ok(container.equals(await readFile(join(dir, 'streamed.dcz'))), 'containers differ');
      assert.is(threaded.compressedBytes, container.length);

      const restored = await decompressFile(join(dir, 'threaded.dcz'), join(dir, 'out.bin'), { threads: 3 });
      assert.is(restored.chunks, 8);
      assert.ok((await readFile(join(dir, 'out.bin'))).equals(input), 'restored bytes differ');
    });
  });
}

for (const codec of ['zstd', 'gzip:6', 'brotli:5']) {
  test(`${codec} coded on libuv's pool writes byte for byte the container codec threads write (one frame a chunk), and restores the input`, async () => {
    await withTempDir(async (dir) => {
      const input = mixedInput(largeChunkBytes);
      await writeFile(join(dir, 'in.bin'), input);
      const choice = parseCodecChoice(codec);
      const threaded = await compressFile(join(dir, 'in.bin'), join(dir, 'threaded.dcz'), { threads: 2, chunkBytes: largeChunkBytes, codec: choice });
      assert.is(threaded.chunks, 8);
      const pool = createCodecPool({ threads: 1 });
      try {
        await compressFile(join(dir, 'in.bin'), join(dir, 'streamed.dcz'), { pool, chunkBytes: largeChunkBytes, codec: choice });
      } finally {
        await pool.close();
      }
      const container = await readFile(join(dir, 'threaded.dcz'));
      assert.ok(container.equals(await readFile(join(dir, 'streamed.dcz'))), 'containers differ');
      await decompressFile(join(dir, 'threaded.dcz'), join(dir, 'out.bin'), { threads: 2 });
      assert.ok((await readFile(join(dir, 'out.bin'))).equals(input), 'restored bytes differ');
    });
  });
}

/** Where chunk `chunk` of an 8-chunk container starts, from its index. */
function chunkOffset(container: Buffer, chunk: number): number {
  const indexEnd = container.length - format.trailerBytes;
  return format.decodeIndex(container.subarray(indexEnd - format.indexBytes(8), indexEnd))[chunk].offset;
}

const zstdDamages: { what: string; damage: (container: Buffer) => void; code: string; pattern: RegExp }[] = [
  { what: 'a damaged frame', damage: (container) => (container[chunkOffset(container, 3) + format.chunkHeaderBytes + 40] ^= 0x10), code: 'CORRUPT_BLOCK', pattern: /^chunk 3: zstd frame does not decode/ },
  { what: 'a damaged chunk header', damage: (container) => (container[chunkOffset(container, 5) + 6] ^= 0x01), code: 'CORRUPT_CONTAINER', pattern: /^chunk 5: header checksum mismatch/ },
  {
    what: 'a trailer whose SHA-256 differs',
    damage: (container) => {
      const trailer = container.subarray(container.length - format.trailerBytes);
      trailer[30] ^= 0x80;
      trailer.writeUInt32LE(crc32c(trailer.subarray(0, 56)), 56);
    },
    code: 'CHECKSUM_MISMATCH',
    pattern: /^trailer: SHA-256/,
  },
];

for (const { what, damage, code, pattern } of zstdDamages) {
  test(`zstd decoded on libuv: ${what} is named, and no output file is left`, async () => {
    await withTempDir(async (dir) => {
      const bad = await damagedContainer(dir, damage, chunkBytes, 'zstd');
      await expectCodecError(decompressFile(bad, join(dir, 'out.bin')), code, pattern);
      assert.equal((await readdir(dir)).sort(), ['bad.dcz', 'in.bin', 'in.dcz']);
    });
  });
}

/** Codes every chunk of `input` (written to dir/in.bin) through `start`'s coders; checks each frame decodes to its chunk and its checksum. */
async function codeChunks(dir: string, input: Uint8Array, start: (inputFd: number) => FileThreads): Promise<{ threads: number; frames: Uint8Array[] }> {
  await writeFile(join(dir, 'in.bin'), input);
  const file = await open(join(dir, 'in.bin'));
  const coders = start(file.fd);
  try {
    const offsets = Array.from({ length: Math.ceil(input.length / chunkBytes) }, (_, chunk) => chunk * chunkBytes);
    const results: Awaited<ReturnType<FileThreads['compress']>>[] = [];
    // The coders take twice their threads' chunks at once, as the pipeline gives them.
    for (let first = 0; first < offsets.length; first += coders.threads * 2) {
      const batch = offsets.slice(first, first + coders.threads * 2);
      results.push(...(await Promise.all(batch.map((offset) => coders.compress(offset, Math.min(chunkBytes, input.length - offset))))));
    }
    const kernel = loadKernel();
    results.forEach(({ frame, checksum }, chunk) => {
      const original = input.subarray(offsets[chunk], offsets[chunk] + chunkBytes);
      assert.is(checksum, crc32c(original), `chunk ${chunk}: checksum`);
      assert.ok(Buffer.from(kernel.decompress(frame, original.length)).equals(original), `chunk ${chunk}: decodes to other bytes`);
    });
    return { threads: coders.threads, frames: results.map(({ frame }) => frame.slice()) };
  } finally {
    await coders.close();
    await file.close();
  }
}

test('with mainThread, Huffman chunks of a small file are coded on the main thread alone; without, on codec threads: the same frames', async () => {
  await withTempDir(async (dir) => {
    const input = mixedInput();
    const options = { threads: 2, totalBytes: input.length, outputFd: -1, chunkBytes };
    const here = await codeChunks(dir, input, (inputFd) => startFileThreads({ ...options, inputFd, mainThread: true }));
    assert.is(here.threads, 1);
    const threaded = await codeChunks(dir, input, (inputFd) => startFileThreads({ ...options, inputFd }));
    assert.is(threaded.threads, 2);
    assert.equal(threaded.frames.map((frame) => Buffer.from(frame).toString('base64')), here.frames.map((frame) => Buffer.from(frame).toString('base64')));
  });
});

test('with mainThread, a file above 32 MiB starts a codec thread beside the main thread: the container the streaming encoder writes, restored byte for byte', async () => {
  await withTempDir(async (dir) => {
    const input = textLike(40 * 1024 * 1024 + 12345, 7);
    await writeFile(join(dir, 'in.bin'), input);
    const threaded = await compressFile(join(dir, 'in.bin'), join(dir, 'threaded.dcz'), { threads: 2, mainThread: true });
    assert.is(threaded.threads, 2);
    const pool = createCodecPool({ threads: 1 });
    try {
      await compressFile(join(dir, 'in.bin'), join(dir, 'streamed.dcz'), { pool });
    } finally {
      await pool.close();
    }
    assert.ok((await readFile(join(dir, 'threaded.dcz'))).equals(await readFile(join(dir, 'streamed.dcz'))), 'containers differ');
    assert.is((await decompressFile(join(dir, 'threaded.dcz'), join(dir, 'out.bin'), { threads: 2, mainThread: true })).threads, 2);
    assert.ok((await readFile(join(dir, 'out.bin'))).equals(input), 'restored bytes differ');
  });
});

test('a file of one chunk is coded on one thread', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'in.bin'), textLike(1000, 5));
    const compressed = await compressFile(join(dir, 'in.bin'), join(dir, 'in.dcz'), { threads: 4 });
    assert.is(compressed.threads, 1);
    assert.is((await decompressFile(join(dir, 'in.dcz'), join(dir, 'out.bin'), { threads: 4 })).threads, 1);
  });
});

test('an empty file round-trips through the threaded pipeline', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'empty'), new Uint8Array(0));
    const compressed = await compressFile(join(dir, 'empty'), join(dir, 'empty.dcz'));
    assert.is(compressed.chunks, 0);
    await decompressFile(join(dir, 'empty.dcz'), join(dir, 'restored'), { synchronous: true });
    assert.is((await readFile(join(dir, 'restored'))).length, 0);
  });
});

test('a damaged chunk header is named by its chunk, and no output file is left', async () => {
  await withTempDir(async (dir) => {
    const bad = await damagedContainer(dir, (container) => {
      const secondChunk = format.headerBytes + format.chunkHeaderBytes + container.readUInt32LE(format.headerBytes + 8);
      container[secondChunk + 6] ^= 0x01;
    });
    await expectCodecError(decompressFile(bad, join(dir, 'out.bin')), 'CORRUPT_CONTAINER', /^chunk 1: header checksum mismatch/);
    assert.equal((await readdir(dir)).sort(), ['bad.dcz', 'in.bin', 'in.dcz']);
  });
});

for (const chunk of [chunkBytes, largeChunkBytes]) {
  test(`a trailer whose SHA-256 differs from the decoded bytes fails the whole file, and no output file is left (${chunk}-byte chunks)`, async () => {
    await withTempDir(async (dir) => {
      const bad = await damagedContainer(
        dir,
        (container) => {
          const trailer = container.subarray(container.length - format.trailerBytes);
          trailer[30] ^= 0x80;
          // A consistent trailer record (its own CRC right), so only the file's SHA-256 can tell.
          trailer.writeUInt32LE(crc32c(trailer.subarray(0, 56)), 56);
        },
        chunk,
      );
      await expectCodecError(decompressFile(bad, join(dir, 'out.bin')), 'CHECKSUM_MISMATCH', /^trailer: SHA-256/);
      assert.equal((await readdir(dir)).sort(), ['bad.dcz', 'in.bin', 'in.dcz']);
    });
  });
}

test('a frame whose bytes decode wrongly is named by its chunk (checked where it is decoded)', async () => {
  await withTempDir(async (dir) => {
    const bad = await damagedContainer(dir, (container) => {
      const indexEnd = container.length - format.trailerBytes;
      const stored = format.decodeIndex(container.subarray(indexEnd - format.indexBytes(8), indexEnd))[2];
      // Chunk 2 holds random bytes, so its frame is raw blocks: a flipped payload byte decodes, and only its CRC32C can tell.
      container[stored.offset + format.chunkHeaderBytes + 1000] ^= 0x01;
    });
    await expectCodecError(decompressFile(bad, join(dir, 'out.bin')), 'CHECKSUM_MISMATCH', /^chunk 2: checksum mismatch/);
  });
});

test.run();
