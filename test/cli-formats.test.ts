/**
 * `dcas compress --codec NAME[:LEVEL]` as a user runs it: the codec reaches the file, `-l` shows it,
 * decompress needs no flag, and a codec or level that does not exist is a one-line usage error (exit 2)
 * that lists the valid ones.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { textLike, withTempDir } from './helpers.ts';
import { assertOneLineError, runDcas } from './support/dcas-process.ts';

const run = (args: string[], cwd: string) => runDcas(args, cwd);

test('--codec zstd:9 codes every chunk with zstd at level 9; -l shows it; decompress restores the bytes', async () => {
  await withTempDir(async (dir) => {
    const data = textLike(200_000, 7);
    await writeFile(join(dir, 'in.txt'), data);
    const compressed = await run(['compress', '--codec', 'zstd:9', '--chunk-size', '64KiB', '-q', 'in.txt'], dir);
    assert.is(compressed.code, 0, compressed.stderr);
    const container = await readFile(join(dir, 'in.txt.dcz'));
    assert.is(container[10], 3);
    assert.is(container[11], 9);
    const listed = await run(['decompress', '-l', 'in.txt.dcz'], dir);
    assert.match(listed.stdout, /zstd:9/);
    const decompressed = await run(['decompress', '-q', 'in.txt.dcz', '-o', 'out.txt'], dir);
    assert.is(decompressed.code, 0, decompressed.stderr);
    assert.ok((await readFile(join(dir, 'out.txt'))).equals(data));
  });
});

test('--codec nope and --codec gzip:10 are one-line usage errors (exit 2) naming the valid codecs and levels', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'in.txt'), textLike(1000));
    const unknown = await run(['compress', '--codec', 'nope', 'in.txt'], dir);
    assert.is(unknown.code, 2);
    assertOneLineError(unknown, /unknown codec "nope": choose one of huffman, store, zstd \(levels 1-19, default 3\), gzip/);
    const badLevel = await run(['compress', '--codec', 'gzip:10', 'in.txt'], dir);
    assert.is(badLevel.code, 2);
    assertOneLineError(badLevel, /gzip: level 10 is not valid \(levels 1-9, default 6\)/);
  });
});

test.run();
