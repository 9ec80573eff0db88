/**
 * What only the folder store promises: its file format, its behaviour when a writer dies, and
 * several processes sharing one folder.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat, truncate, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { crc32c } from '@node-rs/crc32';
import { BlobError, createFolderStore } from '../node/storage/blob/index.ts';
import { randomBytesSeeded, withTempDir } from './helpers.ts';

const test = suite('folder store');
const node = process.execPath;
const storeModule = fileURLToPath(new URL('../node/storage/blob/folder.ts', import.meta.url));
const helpersModule = fileURLToPath(new URL('./helpers.ts', import.meta.url));

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.instance(error, BlobError);
    return (error as BlobError).code;
  }
  return 'no error';
}

/** Runs a module body in a child node process; resolves with its exit code. */
function runChild(script: string, env: Record<string, string>): { exited: Promise<number | null>; kill: () => void } {
  const child = spawn(node, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'inherit'] });
  return {
    exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))),
    kill: () => child.kill('SIGKILL'),
  };
}

test('a blob file is the blob\'s bytes followed by a footer ending in "DCASBLOB"', () =>
  withTempDir(async (root) => {
    const store = createFolderStore({ root });
    const data = randomBytesSeeded(5000, 1);
    await store.put('format/blob', data, { metadata: { name: 'x' } });
    const file = await readFile(join(root, 'format', 'blob'));
    assert.ok(file.subarray(0, data.length).equals(data));
    assert.is(file.subarray(file.length - 8).toString('latin1'), 'DCASBLOB');
    const jsonBytes = file.readUInt32BE(file.length - 16);
    const json = file.subarray(data.length, data.length + jsonBytes);
    assert.is(data.length + jsonBytes + 16, file.length);
    assert.is(file.readUInt32BE(file.length - 12), crc32c(json));
    assert.equal(JSON.parse(json.toString()), { version: 1, size: 5000, crc32c: crc32c(data), metadata: { name: 'x' } });
  }));

test('a damaged footer or a truncated file reads as CHECKSUM_MISMATCH', () =>
  withTempDir(async (root) => {
    const store = createFolderStore({ root });
    await store.put('damaged/footer', randomBytesSeeded(1000, 2));
    const path = join(root, 'damaged', 'footer');
    const file = await readFile(path);
    file[file.length - 20] ^= 0xff; // inside the footer's JSON
    await writeFile(path, file);
    assert.is(await codeOf(store.stat('damaged/footer')), 'CHECKSUM_MISMATCH');
    await store.put('damaged/short', randomBytesSeeded(1000, 3));
    await truncate(join(root, 'damaged', 'short'), 900);
    assert.is(await codeOf(store.get('damaged/short')), 'CHECKSUM_MISMATCH');
  }));

test('compose refuses a corrupted source instead of copying it', () =>
  withTempDir(async (root) => {
    const store = createFolderStore({ root });
    await store.put('compose/a', randomBytesSeeded(3000, 4));
    await store.put('compose/b', randomBytesSeeded(3000, 5));
    const path = join(root, 'compose', 'b');
    const file = await readFile(path);
    file[100] ^= 0xff;
    await writeFile(path, file);
    const error = await store.compose(['compose/a', 'compose/b'], 'compose/out').catch((caught: unknown) => caught);
    assert.instance(error, BlobError);
    assert.is((error as BlobError).code, 'CHECKSUM_MISMATCH');
    assert.match((error as BlobError).message, 'compose/b');
    assert.is(await store.stat('compose/out'), undefined);
  }));

test('compose past 64 MiB, read and written in small pieces while the disk is asked to sync early, is the concatenation with its CRC32C', () =>
  withTempDir(async (root) => {
    const store = createFolderStore({ root, fsync: true, ioChunkBytes: 64 * 1024 });
    const sources: string[] = [];
    const parts: Uint8Array[] = [];
    for (let index = 0; index < 9; index++) {
      // 9 x 8 MiB less a little: pieces end off the buffers' edges.
      parts.push(randomBytesSeeded(8 * 1024 * 1024 - 1000 * index, 40 + index));
      sources.push(`big/${index}`);
      await store.put(sources[index], parts[index]);
    }
    const info = await store.compose(sources, 'big/whole');
    const whole = Buffer.concat(parts);
    assert.is(info.size, whole.length);
    assert.ok(info.size > 64 * 1024 * 1024);
    assert.is(info.crc32c, crc32c(whole));
    assert.ok(Buffer.from(await store.get('big/whole')).equals(whole));
  }));

test('a compose that fills the disk midway fails with INSUFFICIENT_STORAGE and leaves no destination and no temporary file', async () => {
  const root = await mkdtemp(join(tmpdir(), 'dcas-compose-full-'));
  // Root only; a tmpfs that cannot be mounted fails this test rather than skipping it.
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=12m', 'tmpfs', root]);
  try {
    const store = createFolderStore({ root, ioChunkBytes: 256 * 1024 });
    const sources = ['full/a', 'full/b', 'full/c'];
    for (const [index, key] of sources.entries()) await store.put(key, randomBytesSeeded(3 * 1024 * 1024, 60 + index));
    assert.is(await codeOf(store.compose(sources, 'full/whole')), 'INSUFFICIENT_STORAGE');
    assert.is(await store.stat('full/whole'), undefined);
    assert.equal((await readdir(join(root, 'full'))).sort(), ['a', 'b', 'c']);
    // The space is back: a small blob still fits.
    await store.put('full/after', randomBytesSeeded(1024 * 1024, 70));
  } finally {
    execFileSync('umount', [root]);
    await rm(root, { recursive: true, force: true });
  }
});

test('a key that is a folder of other blobs, or lies under a blob, is BAD_KEY', () =>
  withTempDir(async (root) => {
    const store = createFolderStore({ root });
    await store.put('nest/a/b', new Uint8Array([1]));
    assert.is(await codeOf(store.put('nest/a', new Uint8Array([2]))), 'BAD_KEY');
    assert.is(await codeOf(store.put('nest/a/b/c', new Uint8Array([3]))), 'BAD_KEY');
    assert.is(await store.stat('nest/a'), undefined);
    assert.is(await codeOf(store.get('nest/a')), 'NOT_FOUND');
    await store.delete('nest/a'); // a folder is not a blob: nothing to delete
    assert.equal(await store.list('nest/'), ['nest/a/b']);
  }));

test('delete removes the folders it leaves empty, and no others', () =>
  withTempDir(async (root) => {
    const store = createFolderStore({ root });
    await store.put('tree/x/y/z', new Uint8Array([1]));
    await store.put('tree/keep', new Uint8Array([1]));
    await store.delete('tree/x/y/z');
    assert.equal(await readdir(join(root, 'tree')), ['keep']);
  }));

test('a writer killed mid-write leaves the previous blob whole and only a hidden temporary file', () =>
  withTempDir(async (root) => {
    const store = createFolderStore({ root });
    const previous = randomBytesSeeded(100_000, 6);
    await store.put('crash/key', previous);
    const child = runChild(
      `import { createFolderStore } from ${JSON.stringify(storeModule)};
       const store = createFolderStore({ root: process.env.ROOT });
       async function* endless() { for (;;) { yield new Uint8Array(65536).fill(7); await new Promise((r) => setTimeout(r, 5)); } }
       await store.putStream('crash/key', endless());`,
      { ROOT: root },
    );
    let temporary: string | undefined;
    for (let waited = 0; temporary === undefined && waited < 10_000; waited += 20) {
      await delay(20);
      const names = await readdir(join(root, 'crash'));
      const name = names.find((entry) => entry.startsWith('.key.tmp-'));
      if (name !== undefined && (await stat(join(root, 'crash', name))).size > 1 << 20) temporary = name;
    }
    assert.ok(temporary !== undefined, 'the child started writing');
    child.kill();
    await child.exited;
    assert.ok(Buffer.from(await store.get('crash/key')).equals(previous), 'the previous blob is whole');
    assert.equal(await store.list('crash/'), ['crash/key'], 'the temporary file is not a blob');
    // deletePrefix sweeps temporary files an hour old, not fresh ones.
    await utimes(join(root, 'crash', temporary), new Date(Date.now() - 2 * 3600_000), new Date(Date.now() - 2 * 3600_000));
    await writeFile(join(root, 'crash', '.other.tmp-1-0123456789ab'), 'fresh');
    assert.is(await store.deletePrefix('crash/'), 1);
    assert.equal(await readdir(join(root, 'crash')), ['.other.tmp-1-0123456789ab']);
    // For a prefix nobody may write to any more, fresh temporary files go too.
    await store.put('crash/again', Uint8Array.of(1));
    assert.is(await store.deletePrefix('crash/', { abandonWrites: true }), 1);
    assert.equal(await readdir(join(root, 'crash')).catch(() => []), []);
  }));

test('several processes writing shared and own keys at once all end with whole blobs', () =>
  withTempDir(async (root) => {
    const processes = 3;
    const rounds = 12;
    const script = `
      import { createFolderStore } from ${JSON.stringify(storeModule)};
      import { randomBytesSeeded } from ${JSON.stringify(helpersModule)};
      const store = createFolderStore({ root: process.env.ROOT });
      const id = Number(process.env.ID);
      async function* pieces(data) { for (let at = 0; at < data.length; at += 7001) yield data.subarray(at, at + 7001); }
      for (let i = 0; i < ${rounds}; i++) {
        const data = randomBytesSeeded(20000 + i * 100, id * 1000 + i);
        if (i % 2 === 0) await store.put('shared/' + (i % 3), data); else await store.putStream('shared/' + (i % 3), pieces(data));
        await store.put('own/' + id + '/' + i, data);
      }`;
    const children = Array.from({ length: processes }, (_, id) => runChild(script, { ROOT: root, ID: String(id) }));
    assert.equal(await Promise.all(children.map((child) => child.exited)), Array(processes).fill(0));
    const store = createFolderStore({ root });
    for (let id = 0; id < processes; id++) {
      for (let i = 0; i < rounds; i++) {
        assert.ok(Buffer.from(await store.get(`own/${id}/${i}`)).equals(randomBytesSeeded(20000 + i * 100, id * 1000 + i)), `own/${id}/${i}`);
      }
    }
    for (let slot = 0; slot < 3; slot++) {
      const final = Buffer.from(await store.get(`shared/${slot}`)); // get checks the CRC32C
      const candidates = [];
      for (let id = 0; id < processes; id++) for (let i = slot; i < rounds; i += 3) candidates.push(randomBytesSeeded(20000 + i * 100, id * 1000 + i));
      assert.ok(candidates.some((candidate) => final.equals(candidate)), `shared/${slot} is one writer's whole blob`);
    }
    assert.equal((await readdir(join(root, 'shared'))).filter((name) => name.startsWith('.')), [], 'no temporary files left');
  }));

test.run();
