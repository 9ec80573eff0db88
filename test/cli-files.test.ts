/**
 * The file commands as gzip's and zstd's users expect them: outputs kept safe, modes and times kept,
 * pipes, test, list, many files, and one-line messages. Every test runs the real `dcas` process.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { chmod, lstat, readdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { format } from '../node/codec/index.ts';
import { textLike, withTempDir } from './helpers.ts';
import { assertOneLineError, runDcas as run } from './support/dcas-process.ts';

const modified = new Date('2020-01-02T03:04:05Z');

async function inputFile(dir: string, name: string, bytes: Uint8Array, mode = 0o640): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  await chmod(path, mode);
  await utimes(path, modified, modified);
  return path;
}

test('an existing device or FIFO as the output is refused with one line, even with --force, and stays what it was', async () => {
  await withTempDir(async (dir) => {
    await inputFile(dir, 'small.txt', textLike(1000));
    execFileSync('mknod', [join(dir, 'null'), 'c', '1', '3']);
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    for (const target of ['null', 'fifo']) {
      const result = await run(['compress', 'small.txt', '-o', target, '--force'], dir);
      assert.is(result.code, 1);
      assertOneLineError(result, new RegExp(`^dcas: ${target}: exists and is a (device|FIFO); dcas replaces only regular files$`));
    }
    assert.ok((await lstat(join(dir, 'null'))).isCharacterDevice());
    assert.ok((await lstat(join(dir, 'fifo'))).isFIFO());
    assert.is((await readdir(dir)).filter((name) => name.endsWith('.partial')).length, 0);
  });
});

test('compress and decompress keep the input mode (permission bits, umask or not) and modification time', async () => {
  await withTempDir(async (dir) => {
    const data = textLike(3 * format.chunkBytesMin);
    await inputFile(dir, 'secret.txt', data, 0o600);
    assert.is((await run(['compress', 'secret.txt', '-q'], dir)).code, 0);
    const compressed = await stat(join(dir, 'secret.txt.dcz'));
    assert.is(compressed.mode & 0o7777, 0o600);
    assert.is(compressed.mtime.getTime(), modified.getTime());
    await chmod(join(dir, 'secret.txt.dcz'), 0o664);
    assert.is((await run(['decompress', 'secret.txt.dcz', '-o', 'back.txt', '-q'], dir)).code, 0);
    const restored = await stat(join(dir, 'back.txt'));
    assert.is(restored.mode & 0o7777, 0o664);
    assert.is(restored.mtime.getTime(), modified.getTime());
    assert.ok((await readFile(join(dir, 'back.txt'))).equals(data));
  });
});

test('an output in a missing folder is named as the user gave it, never by its temporary name', async () => {
  await withTempDir(async (dir) => {
    await inputFile(dir, 'small.txt', textLike(1000));
    const result = await run(['compress', 'small.txt', '-o', 'nodir/x.dcz'], dir);
    assert.is(result.code, 1);
    assertOneLineError(result, /^dcas: nodir\/x\.dcz: cannot write: no such file or folder$/);
    assert.not.match(result.stderr, /partial/);
  });
});

test.run();
