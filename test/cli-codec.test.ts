import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { format } from '../node/codec/index.ts';
import { textLike, withTempDir } from './helpers.ts';
import { assertOneLineError, runDcas } from './support/dcas-process.ts';

const run = (args: string[], cwd: string, entry?: string) => runDcas(args, cwd, { entry });

test('compress then decompress restores identical bytes; --json reports sizes, ratio, seconds and MB/s', async () => {
  await withTempDir(async (dir) => {
    const data = textLike(3 * format.chunkBytesMin + 5000);
    await writeFile(join(dir, 'in.txt'), data);
    const compressed = await run(['compress', 'in.txt', '--json', '--chunk-size', '64KiB'], dir);
    assert.is(compressed.code, 0, compressed.stderr);
    const report = JSON.parse(compressed.stdout);
    assert.is(report.output, 'in.txt.dcz');
    assert.is(report.originalSize, data.length);
    assert.is(report.compressedSize, (await stat(join(dir, 'in.txt.dcz'))).size);
    assert.is(report.chunks, 4);
    assert.ok(report.ratio > 0 && report.ratio < 1, `ratio ${report.ratio}`);
    assert.type(report.seconds, 'number');
    assert.type(report.mbPerSecond, 'number');
    const decompressed = await run(['decompress', 'in.txt.dcz', '-o', 'out.txt', '--quiet'], dir);
    assert.is(decompressed.code, 0, decompressed.stderr);
    assert.is(decompressed.stdout, '');
    assert.ok((await readFile(join(dir, 'out.txt'))).equals(data));
  });
});

test('an existing output is kept, with exit 1, unless --force is given', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'in.txt'), textLike(1000));
    await writeFile(join(dir, 'in.txt.dcz'), 'precious');
    const refused = await run(['compress', 'in.txt'], dir);
    assert.is(refused.code, 1);
    assertOneLineError(refused, /in\.txt\.dcz: already exists/);
    assert.is(await readFile(join(dir, 'in.txt.dcz'), 'utf8'), 'precious');
    const forced = await run(['compress', 'in.txt', '--force', '--quiet'], dir);
    assert.is(forced.code, 0, forced.stderr);
    assert.is.not(await readFile(join(dir, 'in.txt.dcz'), 'utf8'), 'precious');
  });
});

test('a truncated .dcz fails with one line naming the chunk, exit 1, and leaves no output file', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'in.txt'), textLike(3 * format.chunkBytesMin));
    assert.is((await run(['compress', 'in.txt', '--chunk-size', '64k', '-q'], dir)).code, 0);
    const whole = await readFile(join(dir, 'in.txt.dcz'));
    const firstChunkEnd = format.headerBytes + format.chunkHeaderBytes + whole.readUInt32LE(format.headerBytes + 8);
    await writeFile(join(dir, 'cut.dcz'), whole.subarray(0, firstChunkEnd + 100));
    const result = await run(['decompress', 'cut.dcz'], dir);
    assert.is(result.code, 1);
    assertOneLineError(result, /cut\.dcz: chunk 1: truncated/);
    assert.equal((await readdir(dir)).sort(), ['cut.dcz', 'in.txt', 'in.txt.dcz']);
  });
});

test('a corrupted .dcz fails with one line naming the chunk, exit 1, and leaves no output file', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'in.txt'), textLike(3 * format.chunkBytesMin));
    assert.is((await run(['compress', 'in.txt', '--chunk-size', '64k', '-q'], dir)).code, 0);
    const bad = await readFile(join(dir, 'in.txt.dcz'));
    const secondChunk = format.headerBytes + format.chunkHeaderBytes + bad.readUInt32LE(format.headerBytes + 8);
    bad[secondChunk + format.chunkHeaderBytes + 200] ^= 0x10;
    await writeFile(join(dir, 'bad.dcz'), bad);
    const result = await run(['decompress', 'bad.dcz', '-o', 'out.txt'], dir);
    assert.is(result.code, 1);
    assertOneLineError(result, /bad\.dcz: chunk 1: /);
    assert.equal((await readdir(dir)).sort(), ['bad.dcz', 'in.txt', 'in.txt.dcz']);
  });
});

test('a file that is not a .dcz, and a missing input, each fail with one line and exit 1', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'plain.dcz'), 'just text');
    const notDcz = await run(['decompress', 'plain.dcz'], dir);
    assert.is(notDcz.code, 1);
    assertOneLineError(notDcz, /plain\.dcz: not a \.dcz file/);
    const missing = await run(['compress', 'absent.bin'], dir);
    assert.is(missing.code, 1);
    assertOneLineError(missing, /absent\.bin: no such file/);
  });
});

test("the launchers' entry (dcas.mjs, as bin/dcas and npm's bin run it) runs the same program", async () => {
  await withTempDir(async (dir) => {
    const entry = new URL('../node/cli/dcas.mjs', import.meta.url).pathname;
    const launched = (args: string[]) => run(args, dir, entry);
    const version = await launched(['--version']);
    assert.is(version.code, 0, version.stderr);
    const { version: packageVersion } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.is(version.stdout, `${packageVersion}\n`, 'a bare --version, answered by dcas.mjs itself, prints package.json\'s version');
    assert.is((await launched(['-V'])).stdout, `${packageVersion}\n`);
    // The program (dcas.ts, and dcas.mjs for anything more than a bare --version) prints the same number.
    assert.is((await run(['--version'], dir)).stdout, `${packageVersion}\n`, 'dcas.ts prints the same version');
    const help = await launched(['--help']);
    for (const command of ['compress', 'decompress', 'node', 'cluster', 'upload', 'status', 'jobs', 'download']) assert.match(help.stdout, new RegExp(`\\n  ${command} `));
    assert.is((await launched(['frobnicate'])).code, 2);
  });
});

test('bin/dcas finds the project by its own path, a relative name, or through a chain of symlinks to it (npm link)', async () => {
  await withTempDir(async (dir) => {
    const launcher = new URL('../bin/dcas', import.meta.url).pathname;
    const { version } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    await mkdir(join(dir, 'bin'));
    await symlink(launcher, join(dir, 'linked'));
    await symlink('../linked', join(dir, 'bin', 'dcas'));
    const ran = (file: string, args: string[], cwd: string) => promisify(execFile)(file, args, { cwd });
    assert.is((await ran(launcher, ['--version'], dir)).stdout, `${version}\n`);
    assert.is((await ran(join(dir, 'bin', 'dcas'), ['--version'], dir)).stdout, `${version}\n`, 'through two symlinks');
    assert.is((await ran('sh', ['dcas', '--version'], join(launcher, '..'))).stdout, `${version}\n`, 'as sh dcas, from its folder');
    // Through the program, not dcas.mjs's own answer: the launcher found node_modules and node/ too.
    const help = await ran(join(dir, 'bin', 'dcas'), ['compress', '--help'], dir);
    assert.match(help.stdout, /--codec/);
  });
});

test('usage errors exit 2; --help exits 0 on every command', async () => {
  await withTempDir(async (dir) => {
    for (const args of [['compress', '-o', 'one.dcz', 'x', 'y'], ['frobnicate'], ['compress', 'x', '--chunk-size', 'lots'], ['compress', 'x', '--threads', '100000']]) {
      const result = await run(args, dir);
      assert.is(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    }
    for (const args of [['--help'], ['compress', '--help'], ['decompress', '--help']]) {
      const result = await run(args, dir);
      assert.is(result.code, 0, args.join(' '));
      assert.match(result.stdout, /Usage: dcas/);
    }
  });
});

test.run();
