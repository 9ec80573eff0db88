/**
 * Each codec's default chunk size: what the codec's own multi-threaded tool cuts its input into (zstd -T:
 * 4 windows, xz -T: 3 dictionaries), so a chunk keeps the context the tool keeps; `--chunk-size` still
 * wins, and the file records the size it was made with.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { format, parseCodecChoice } from '../node/codec/index.ts';
import { textLike, withTempDir } from './helpers.ts';
import { runDcas } from './support/dcas-process.ts';

const mebibyte = 1024 * 1024;
const chunkOf = (text: string) => format.chunkBytesFor(parseCodecChoice(text)) / mebibyte;

test('default chunk sizes follow the tools: zstd -T jobs, xz -T blocks (of the preset coded, at most 6), 4 MiB otherwise, within the container bounds', () => {
  assert.equal(['huffman', 'store', 'gzip', 'brotli', 'bzip2'].map(chunkOf), [4, 4, 4, 4, 4]);
  assert.equal(['zstd:1', 'zstd:2', 'zstd', 'zstd:8', 'zstd:9', 'zstd:16', 'zstd:17', 'zstd:19'].map(chunkOf), [4, 4, 8, 8, 16, 16, 32, 32]);
  assert.equal(['xz:0', 'xz:1', 'xz:3', 'xz', 'xz:7', 'xz:8', 'xz:9'].map(chunkOf), [4, 4, 12, 24, 24, 24, 24]);
});

/** The chunk size a .dcz header records (bytes 12-15, little-endian; docs/FORMAT.md). */
async function recordedChunkBytes(path: string): Promise<number> {
  return (await readFile(path)).readUInt32LE(12);
}

test('dcas compress records the codec default chunk size, and --chunk-size still wins', async () => {
  await withTempDir(async (dir) => {
    const data = textLike(100_000, 3);
    await writeFile(join(dir, 'in.txt'), data);
    const cases = [
      { args: ['--codec', 'zstd'], bytes: 8 * mebibyte },
      { args: ['--codec', 'xz'], bytes: 24 * mebibyte },
      { args: [], bytes: 4 * mebibyte },
      { args: ['--codec', 'xz', '--chunk-size', '1MiB'], bytes: mebibyte },
    ];
    for (const [index, { args, bytes }] of cases.entries()) {
      const output = `out-${index}.dcz`;
      const compressed = await runDcas(['compress', '-q', ...args, 'in.txt', '-o', output], dir);
      assert.is(compressed.code, 0, compressed.stderr);
      assert.is(await recordedChunkBytes(join(dir, output)), bytes, args.join(' '));
      const restored = await runDcas(['decompress', '-q', output, '-o', `back-${index}.txt`], dir);
      assert.is(restored.code, 0, restored.stderr);
      assert.ok((await readFile(join(dir, `back-${index}.txt`))).equals(data));
    }
  });
});

test.run();
