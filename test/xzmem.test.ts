/**
 * The memory bound with xz (issue 10: every node, and every `dcas compress`, under 300 MB whatever the
 * file's size). The peak is the kernel's own count for the real `dcas compress` process (VmHWM, all
 * its threads and the xz addon's native memory), written by the process itself as it exits.
 *
 * How these fail: if xz:9 coded with its own 64 MiB dictionary on its old 64 MiB chunk, the one chunk of
 * this 48 MiB file alone needed about 560 MB (measured: preset 9 adds 159 MB of RSS on an 8 MiB chunk,
 * 241 MB on 16 MiB); if an xz level's coder were kept after its chunk (@napi-rs/lzma's XzCompressor,
 * about 50 MB a 12 MiB chunk at preset 3), the peak would pass 300 MB within these four chunks. Measured
 * with the coders as they are (docs/FORMAT.md): xz:3 -T 1 on 48 MiB 233-246 MB, xz:6 -T 1 on 136 MB 298 MB.
 * What these do not hold: the stream coder of presets 0-5 keeps about 1 byte per byte coded on the
 * addon's own threads, so a much larger file at those presets still grows past the bound (docs/FORMAT.md).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dcasEntry } from './support/dcas-process.ts';
import { textLike, withTempDir } from './helpers.ts';

const mebibyte = 1024 * 1024;
/** The bound every DCaS process keeps (issue 10), in bytes of resident memory at its peak. */
const peakBytesMax = 300 * 1000 * 1000;
/** Four 12 MiB chunks at xz:3, two 24 MiB chunks at xz:6-9: more than one chunk, so what a chunk leaves adds up. */
const inputBytes = 48 * mebibyte;
/** xz codes about 1-3 MB/s a thread; on a machine shared with many others, far less. */
const commandMsMax = 15 * 60 * 1000;

/** Preloaded into the command: on exit, it writes its peak resident memory (KiB) where DCAS_TEST_PEAK_FILE says. */
// VmHWM, not resourceUsage().maxRSS: Linux keeps ru_maxrss across fork and exec, so a child of a large
// test runner would report the runner's size (the full suite's runner is over 500 MB by this file).
const peakHook = "import { readFileSync, writeFileSync } from 'node:fs';\nprocess.on('exit', () => writeFileSync(process.env.DCAS_TEST_PEAK_FILE, /VmHWM:\\s+(\\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))[1]));\n";

interface PeakRun {
  code: number | null;
  stderr: string;
  peakBytes: number;
}

/** Runs `dcas ARGS` in `dir` with the peak hook; resolves with its exit code and its peak RSS in bytes. */
async function runMeasured(args: string[], dir: string): Promise<PeakRun> {
  const hook = join(dir, 'peak-hook.mjs');
  const peakFile = join(dir, 'peak.txt');
  await writeFile(hook, peakHook);
  const child = spawn(process.execPath, ['--import', hook, dcasEntry, ...args], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DCAS_TEST_PEAK_FILE: peakFile } });
  let stderr = '';
  child.stderr.on('data', (data) => (stderr += data));
  const timer = setTimeout(() => child.kill('SIGKILL'), commandMsMax);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  clearTimeout(timer);
  const peakKibibytes = Number(await readFile(peakFile, 'utf8'));
  assert.ok(Number.isSafeInteger(peakKibibytes) && peakKibibytes > 0, `the peak hook wrote ${peakKibibytes}`);
  return { code, stderr, peakBytes: peakKibibytes * 1024 };
}

async function assertCompressesWithin(level: number, threadArgs: string[]): Promise<void> {
  await withTempDir(async (dir) => {
    const input = join(dir, 'mail.txt');
    await writeFile(input, textLike(inputBytes, level + 1));
    const run = await runMeasured(['compress', '--codec', `xz:${level}`, ...threadArgs, 'mail.txt'], dir);
    assert.is(run.code, 0, run.stderr);
    const megabytes = (run.peakBytes / 1e6).toFixed(0);
    assert.ok(run.peakBytes < peakBytesMax, `dcas compress --codec xz:${level} on ${inputBytes} bytes peaked at ${megabytes} MB, over the 300 MB bound`);
    // The output is a real xz-coded .dcz of the whole input: it decodes to the same bytes.
    const back = await runMeasured(['decompress', 'mail.txt.dcz', '-o', 'back.txt'], dir);
    assert.is(back.code, 0, back.stderr);
    assert.ok(back.peakBytes < peakBytesMax, `dcas decompress of the xz:${level} file peaked at ${(back.peakBytes / 1e6).toFixed(0)} MB`);
    assert.ok((await readFile(join(dir, 'back.txt'))).equals(await readFile(input)));
  });
}

test('dcas compress --codec xz:3 -T 1 stays under 300 MB over four chunks: each chunk frees its coder', async () => {
  await assertCompressesWithin(3, ['-T', '1']);
});

test('dcas compress --codec xz:9 stays under 300 MB: presets above 6 code with preset 6 dictionary and chunks', async () => {
  await assertCompressesWithin(9, []);
});

test.run();
