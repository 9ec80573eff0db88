/**
 * `dcas upload | status | jobs | download` as a user runs them: real processes against a real gateway
 * (in this process) backed by the jobs-room test double. Exit codes 0/1/2, one-line errors, --json.
 */
import { execFileSync, spawn } from 'node:child_process';
import { lstat, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { randomBytesSeeded, textLike, withTempDir } from './helpers.ts';
import { fakeCompressed } from './support/job-service-double.ts';
import { eventually, startTestGateway, type TestGateway } from './support/gateway.ts';

const dcas = new URL('../node/cli/dcas.ts', import.meta.url).pathname;
const token = 'cli-token';
let node: TestGateway;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, DCAS_SERVER: node.url, DCAS_TOKEN: token, ...options.env };
    const child = spawn(process.execPath, [dcas, ...args], { cwd: options.cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data) => (stdout += data));
    child.stderr.on('data', (data) => (stderr += data));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function assertOneLineError(result: Run, code: number, pattern: RegExp): void {
  assert.is(result.code, code, `exit ${result.code}: ${result.stderr}`);
  const lines = result.stderr.trimEnd().split('\n');
  assert.is(lines.length, 1, `expected one line on stderr, got: ${result.stderr}`);
  assert.match(lines[0], /^dcas: /);
  assert.match(lines[0], pattern);
  assert.not.match(result.stderr, /\n\s+at /);
}

test.before(async () => {
  node = await startTestGateway({ token, limits: { watchIntervalMs: 20 }, jobs: { failMarker: 'FAIL!', autoProcessTickMs: 5 } });
});

test.after(async () => {
  await node.stop();
});

test('upload prints only the job id on stdout (no bar off a terminal) and the node has the bytes', async () => {
  await withTempDir(async (dir) => {
    const data = textLike(700_000, 5);
    await writeFile(join(dir, 'notes.txt'), data);
    const result = await run(['upload', 'notes.txt', '--chunk-size', '128KiB'], { cwd: dir });
    assert.is(result.code, 0, result.stderr);
    assert.is(result.stderr, '');
    assert.match(result.stdout, /^[0-9a-f]{16}\n$/);
    const jobId = result.stdout.trim();
    assert.ok(node.jobs.bytesOf(jobId).equals(data));
    assert.is((await node.jobs.getJob(jobId))!.chunkSize, 128 * 1024);
  });
});

test('upload --wait --json prints the completed JobView with the contract fields; status, jobs and download agree', async () => {
  await withTempDir(async (dir) => {
    const data = randomBytesSeeded(1_000_000, 6);
    await writeFile(join(dir, 'data.bin'), data);
    const uploaded = await run(['upload', 'data.bin', '--wait', '--json', '--chunk-size', '256k'], { cwd: dir });
    assert.is(uploaded.code, 0, uploaded.stderr);
    const job = JSON.parse(uploaded.stdout);
    for (const field of ['id', 'state', 'fileName', 'originalSize', 'compressedSize', 'sha256', 'chunks', 'error']) assert.ok(field in job, field);
    assert.equal([job.state, job.fileName, job.originalSize, job.chunks, job.error], ['completed', 'data.bin', data.length, 4, null]);

    const [human, jobs] = await Promise.all([run(['status', job.id]), run(['jobs', '--json'])]);
    assert.is(human.code, 0, human.stderr);
    assert.match(human.stdout, new RegExp(`job +${job.id} +completed`));
    assert.match(human.stdout, /chunks +4\/4/);
    assert.match(human.stdout, new RegExp(`sha256 +${job.sha256}`));
    assert.ok(JSON.parse(jobs.stdout).some((view: { id: string }) => view.id === job.id));

    const downloaded = await run(['download', job.id, '-o', 'back.bin'], { cwd: dir });
    assert.is(downloaded.code, 0, downloaded.stderr);
    assert.match(downloaded.stdout, /back\.bin: .*SHA-256 verified/);
    assert.ok((await readFile(join(dir, 'back.bin'))).equals(data));
    const compressed = await run(['download', job.id, '-o', 'back.bin', '--compressed', '--force', '--json'], { cwd: dir });
    assert.is(compressed.code, 0, compressed.stderr);
    assert.equal(JSON.parse(compressed.stdout).verified, false);
    assert.ok((await readFile(join(dir, 'back.bin'))).equals(fakeCompressed(data)));

    execFileSync('mknod', [join(dir, 'device'), 'c', '1', '3']);
    const device = await run(['download', job.id, '-o', 'device', '--force'], { cwd: dir });
    assertOneLineError(device, 1, /^dcas: device: exists and is a device; dcas replaces only regular files$/);
    assert.ok((await lstat(join(dir, 'device'))).isCharacterDevice());
  });
});

test('a host that does not resolve is named in words, not as ENOTFOUND', async () => {
  const result = await run(['status', '0123456789abcdef', '--server', 'ws://example.invalid:1']);
  assertOneLineError(result, 1, /host example\.invalid not found/);
  assert.not.match(result.stderr, /ENOTFOUND/);
});

test('upload --wait of a job that fails exits 1 with the job error in one line; --json still prints the document', async () => {
  await withTempDir(async (dir) => {
    await writeFile(join(dir, 'bad.txt'), 'FAIL! this one breaks the kernel');
    const json = await run(['upload', 'bad.txt', '--wait', '--json'], { cwd: dir });
    assertOneLineError(json, 1, /job [0-9a-f]{16} failed: chunk 0 of job [0-9a-f]{16}: kernel failed/);
    const document = JSON.parse(json.stdout);
    assert.equal([document.state, document.fileName], ['failed', 'bad.txt']);
    assert.match(document.error, /kernel failed/);
    const shown = await run(['status', document.id]);
    assertOneLineError(shown, 1, /job [0-9a-f]{16} failed: chunk 0/);
    assert.match(shown.stdout, /failed/);
    const watched = await run(['status', document.id, '--watch']);
    assertOneLineError(watched, 1, /failed/);
    assert.match(watched.stdout, /error +chunk 0/);
  });
});

test('status --watch follows a job to completed and exits 0, printing state changes off a terminal', async () => {
  const session = await node.jobs.startUpload({ fileName: 'later.txt', mode: 'compress' });
  const watching = run(['status', session.jobId, '--watch']);
  await eventually(() => node.gateway.stats().watches === 1, 'the CLI watches the job', 10_000);
  await session.write(Buffer.alloc(300_000));
  await session.finish();
  const result = await watching;
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stdout, new RegExp(`^${session.jobId} uploading`, 'm'));
  assert.match(result.stdout, /job +[0-9a-f]{16} +completed/);
});

test('errors are one line with exit 1: wrong token, no server, unknown job, output exists, download of an unfinished job', async () => {
  const session = await node.jobs.startUpload({ fileName: 'unfinished', mode: 'compress' });
  const [wrongToken, noServer, unknown, unfinished, exists] = await Promise.all([
    run(['jobs'], { env: { DCAS_TOKEN: 'nope' } }),
    run(['jobs', '--server', 'http://127.0.0.1:1']),
    run(['status', 'feedfacefeedface', '--server', node.url.replace('http', 'ws')]),
    run(['download', session.jobId, '-o', '/tmp/never-written-by-dcas-test']),
    run(['download', session.jobId, '-o', dcas]),
  ]);
  assertOneLineError(wrongToken, 1, /wrong token.*--token or DCAS_TOKEN/);
  assertOneLineError(noServer, 1, /cannot reach http:\/\/127\.0\.0\.1:1: connection refused/);
  assertOneLineError(unknown, 1, /job feedfacefeedface: not found/);
  assertOneLineError(unfinished, 1, /uploading, not completed/);
  assertOneLineError(exists, 1, /dcas\.ts: already exists \(use --force/);
});

test('usage errors exit 2: missing arguments, a bad chunk size, a bad server URL, a malformed job id; --help exits 0', async () => {
  const [noOutput, chunk, server, badId, ...helps] = await Promise.all([
    run(['download', 'abc']),
    run(['upload', 'x', '--chunk-size', '1k']),
    run(['jobs', '--server', 'not a url']),
    run(['status', '../etc']),
    ...['upload', 'download'].map((command) => run([command, '--help'])),
  ]);
  for (const result of [noOutput, chunk, server, badId]) assert.is(result.code, 2, result.stderr);
  assert.match(chunk.stderr, /--chunk-size 1k: must be between/);
  assert.match(badId.stderr, /not a job id/);
  for (const help of helps) {
    assert.is(help.code, 0);
    assert.match(help.stdout, /--server <url>/);
  }
});

test('job names with bidi overrides, C1 controls, zero-width and escape characters are printed as visible escapes', async () => {
  const name = 'invoice\u202Efdp.exe\u0085\u200B\u001b[31mred\\x';
  const session = await node.jobs.startUpload({ fileName: name, mode: 'compress' });
  await session.write(Buffer.from('x'));
  node.jobs.update(session.jobId, { error: 'chunk 0 of \u202Eevil\u001b]0;title\u0007' });
  const [listed, shown, json] = await Promise.all([run(['jobs']), run(['status', session.jobId]), run(['status', session.jobId, '--json'])]);
  for (const result of [listed, shown]) {
    assert.is(result.code, 0, result.stderr);
    assert.ok(result.stdout.includes('invoice\\u{202E}fdp.exe\\u{0085}\\u{200B}\\u{001B}[31mred\\\\x'), result.stdout);
    assert.not.match(result.stdout, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u200b\u202e]/);
  }
  assert.ok(shown.stdout.includes('chunk 0 of \\u{202E}evil\\u{001B}]0;title\\u{0007}'), shown.stdout);
  // JSON keeps the name exactly (a script reads the same string) but writes it with escapes.
  assert.not.match(json.stdout, /[\u007f-\u009f\u200b\u202e]/);
  assert.is(JSON.parse(json.stdout).fileName, name);
});

test.run();
