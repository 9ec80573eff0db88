/**
 * `dcas compress --codec NAME[:LEVEL]` as a user runs it: the codec reaches the file, `-l` shows it,
 * decompress needs no flag, and a codec or level that does not exist is a one-line usage error (exit 2)
 * that lists the valid ones.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytesSeeded, textLike, withTempDir } from './helpers.ts';
import { assertOneLineError, runDcas } from './support/dcas-process.ts';

const run = (args: string[], cwd: string, input?: Uint8Array) => runDcas(args, cwd, { input });

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

test('level flags as zstd\'s: -19 alone picks zstd:19, -9 sets the level of --format gz, and dcas -d restores both', async () => {
  await withTempDir(async (dir) => {
    const data = textLike(150_000, 5);
    await writeFile(join(dir, 'in.txt'), data);
    const zstd = await run(['-19', '-q', 'in.txt'], dir);
    assert.is(zstd.code, 0, zstd.stderr);
    const container = await readFile(join(dir, 'in.txt.dcz'));
    assert.is(container[10], 3, 'codec byte: zstd');
    assert.is(container[11], 19, 'level byte');
    const gzip = await run(['compress', '--format', 'gz', '-9', '-q', 'in.txt'], dir);
    assert.is(gzip.code, 0, gzip.stderr);
    const restored = await run(['-d', '-q', '-c', 'in.txt.gz'], dir);
    assert.is(restored.code, 0, restored.stderr);
    assert.ok(restored.stdoutBytes.equals(data));
    const fromDcz = await run(['-d', '-q', 'in.txt.dcz', '-o', 'out.txt'], dir);
    assert.is(fromDcz.code, 0, fromDcz.stderr);
    assert.ok((await readFile(join(dir, 'out.txt'))).equals(data));
  });
});

test('a level the codec does not have is a one-line usage error: -12 with gzip, -3 with huffman', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'in.txt'), textLike(1000));
    const gzip = await run(['compress', '-12', '--codec', 'gzip', 'in.txt'], dir);
    assert.is(gzip.code, 2);
    assertOneLineError(gzip, /gzip: level 12 is not valid \(levels 1-9, default 6\)/);
    const huffman = await run(['compress', '-3', '--codec', 'huffman', 'in.txt'], dir);
    assert.is(huffman.code, 2);
    assertOneLineError(huffman, /huffman: level 3 is not valid \(no levels\)/);
  });
});

const execFileAsync = promisify(execFile);

/** Text with an incompressible stretch: 3.3 chunks of 64 KiB, so every format holds several pieces and a short last one. */
function mixedInput(): Uint8Array {
  const bytes = textLike(Math.floor(3.3 * 65536), 11);
  bytes.set(randomBytesSeeded(20_000, 12), 70_000);
  return bytes;
}

const systemTools = [
  { format: 'zst', tool: 'zstd', args: ['-d', '-c'] },
  { format: 'gz', tool: 'gunzip', args: ['-c'] },
  { format: 'xz', tool: 'xz', args: ['-d', '-c'] },
  { format: 'bz2', tool: 'bzip2', args: ['-d', '-c'] },
] as const;

for (const { format, tool, args } of systemTools) {
  test(`--format ${format}: ${tool} ${args.join(' ')} restores identical bytes (file and stdout)`, async () => {
    await withTempDir(async (dir) => {
      const data = mixedInput();
      await writeFile(join(dir, 'in.bin'), data);
      const compressed = await run(['compress', '--format', format, '--chunk-size', '64KiB', '-q', 'in.bin'], dir);
      assert.is(compressed.code, 0, compressed.stderr);
      const decoded = await execFileAsync(tool, [...args, join(dir, `in.bin.${format}`)], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
      assert.ok(Buffer.from(data).equals(decoded.stdout), `${tool} output differs`);
      const streamed = await run(['compress', '--format', format, '--chunk-size', '64KiB', '-c'], dir, data);
      assert.is(streamed.code, 0, streamed.stderr);
      await writeFile(join(dir, `streamed.${format}`), streamed.stdoutBytes);
      const decodedStream = await execFileAsync(tool, [...args, join(dir, `streamed.${format}`)], { encoding: 'buffer', maxBuffer: 64 * 1024 * 1024 });
      assert.ok(Buffer.from(data).equals(decodedStream.stdout), `${tool} output of the stdin-to-stdout file differs`);
    });
  });
}

test('an empty input makes, in every format, a file the system tool and dcas decompress read as empty', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'empty'), new Uint8Array(0));
    for (const { format, tool, args } of systemTools) {
      const compressed = await run(['compress', '--format', format, '-q', 'empty'], dir);
      assert.is(compressed.code, 0, compressed.stderr);
      const decoded = await execFileAsync(tool, [...args, join(dir, `empty.${format}`)], { encoding: 'buffer' });
      assert.is(decoded.stdout.length, 0, tool);
      const back = await run(['decompress', '-q', `empty.${format}`, '-o', `back.${format}`], dir);
      assert.is(back.code, 0, back.stderr);
      assert.is((await readFile(join(dir, `back.${format}`))).length, 0);
    }
  });
});

test('decompress from stdin reads .zst and .gz (any tool\'s) by content; -t checks them; .xz on stdin is a one-line error', async () => {
  await withTempDir(async (dir) => {
    const data = mixedInput();
    await writeFile(join(dir, 'in.bin'), data);
    for (const [tool, suffix] of [['zstd', 'zst'], ['gzip', 'gz']] as const) {
      const made = await execFileAsync(tool, ['-c', join(dir, 'in.bin')], { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 });
      const decoded = await run(['decompress', '-c'], dir, made.stdout);
      assert.is(decoded.code, 0, decoded.stderr);
      assert.ok(Buffer.from(data).equals(decoded.stdoutBytes), `${tool} file from stdin`);
      await writeFile(join(dir, `made.${suffix}`), made.stdout);
      const tested = await run(['decompress', '-t', `made.${suffix}`], dir);
      assert.is(tested.code, 0, tested.stderr);
      assert.match(tested.stdout, /OK .*checksums?|OK .*CRC32s/);
    }
    const xzMade = await execFileAsync('xz', ['-c', join(dir, 'in.bin')], { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 });
    const refused = await run(['decompress', '-c'], dir, xzMade.stdout);
    assert.is(refused.code, 1);
    assertOneLineError(refused, /\.xz from a stream: .*name the file, or use xz -d/);
  });
});

test('--format zst ends with a seek table in the zstd seekable format: one entry per chunk, footer magic 0x8F92EAB1', async () => {
  await withTempDir(async (dir) => {
    const data = mixedInput();
    await writeFile(join(dir, 'in.bin'), data);
    const compressed = await run(['compress', '--format', 'zst', '--chunk-size', '64KiB', '-q', 'in.bin'], dir);
    assert.is(compressed.code, 0, compressed.stderr);
    const file = await readFile(join(dir, 'in.bin.zst'));
    assert.is(file.readUInt32LE(file.length - 4), 0x8f92eab1);
    const frames = file.readUInt32LE(file.length - 9);
    assert.is(frames, 4);
    const tableStart = file.length - 9 - frames * 8 - 8;
    assert.is(file.readUInt32LE(tableStart), 0x184d2a5e);
    let compressedTotal = 0;
    let originalTotal = 0;
    for (let i = 0; i < frames; i++) {
      compressedTotal += file.readUInt32LE(tableStart + 8 + i * 8);
      originalTotal += file.readUInt32LE(tableStart + 12 + i * 8);
    }
    assert.is(compressedTotal, tableStart);
    assert.is(originalTotal, data.length);
  });
});

test('--format gz --codec xz is a one-line usage error (exit 2); --format zst alone implies zstd', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'in.txt'), textLike(5000));
    const mismatched = await run(['compress', '--format', 'gz', '--codec', 'xz', 'in.txt'], dir);
    assert.is(mismatched.code, 2);
    assertOneLineError(mismatched, /--format gz needs --codec gzip, not xz/);
    const implied = await run(['compress', '--format', 'zst', '--json', 'in.txt'], dir);
    assert.is(implied.code, 0, implied.stderr);
    const report = JSON.parse(implied.stdout);
    assert.is(report.codec, 'zstd:3');
    assert.is(report.format, 'zst');
    assert.is(report.output, 'in.txt.zst');
    const file = await readFile(join(dir, 'in.txt.zst'));
    assert.is(file.readUInt32LE(0), 0xfd2fb528, 'starts with a zstd frame');
  });
});

test.run();
