/**
 * `dcas cluster up` as a user runs it: a node that exits is restarted (and the output says so);
 * everything it and its nodes write is private to the user: files 0600, folders 0700 (blobs, LevelDB
 * state, identities, configs, the key, the client token, logs); the cluster has a client token that
 * the CLI finds by itself, and a wrong token is refused.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freeBasePort } from '../tools/local-cluster.ts';
import { restartDelayMs } from '../node/cli/cluster-commands.ts';
import { connect } from '../node/client/index.ts';
import type { ClusterStatusView } from '../node/runtime/node.ts';
import { waitFor } from '../tools/cluster.ts';
import { textLike } from './helpers.ts';

const dcas = new URL('../node/cli/dcas.ts', import.meta.url).pathname;
let dataDir = '';
let up: ChildProcess | undefined;
let stderr = '';
let nodes: Array<{ name: string; pid: number; server: string }> = [];
let token = '';
/** Where cluster up records its gateways' token file for the CLI (DCAS_HOME), apart from the user's own. */
let dcasHome = '';

/** `bin/dcas ARGS` as a user runs it, with this test's DCAS_HOME and no DCAS_TOKEN. */
async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, DCAS_HOME: dcasHome };
  delete env.DCAS_TOKEN;
  return promisify(execFile)(process.execPath, [dcas, ...args], { env }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

async function clusterView(server: string): Promise<ClusterStatusView | undefined> {
  try {
    const response = await fetch(`${server}/cluster`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(2_000) });
    return response.ok ? ((await response.json()) as ClusterStatusView) : undefined;
  } catch {
    return undefined;
  }
}

async function agreed(): Promise<true | undefined> {
  const views = await Promise.all(nodes.map((node) => clusterView(node.server)));
  if (views.some((view) => view === undefined || view.coordinator === null)) return undefined;
  if (new Set(views.map((view) => view!.coordinator)).size !== 1) return undefined;
  return views.every((view) => view!.members.filter((member) => member.status === 'alive').length === nodes.length) ? true : undefined;
}

// Set up in a test, not a before hook: uvu reports a throwing hook as zero tests passed, exit code 0.
test('cluster up starts 2 nodes that agree on a coordinator', async () => {
  dataDir = join(await mkdtemp(join(tmpdir(), 'dcas-up-')), 'cluster');
  dcasHome = join(dataDir, '..', 'home');
  const basePort = await freeBasePort(2);
  up = spawn(process.execPath, [dcas, 'cluster', 'up', '--nodes', '2', '--data', dataDir, '--base-port', String(basePort), '--json'], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DCAS_LOG_LEVEL: 'warn', DCAS_HOME: dcasHome },
  });
  up.stderr?.on('data', (data) => (stderr += String(data)));
  let stdout = '';
  up.stdout?.on('data', (data) => (stdout += String(data)));
  const { value } = await waitFor('cluster up to print where its nodes listen', 60_000, async () => {
    try {
      return JSON.parse(stdout) as { tokenFile: string; nodes: Array<{ name: string; pid: number; gateway: string }> };
    } catch {
      return undefined;
    }
  }, () => stderr);
  nodes = value.nodes.map((node) => ({ name: node.name, pid: node.pid, server: node.gateway.replace(/^ws:/, 'http:') }));
  assert.is(value.tokenFile, join(dataDir, 'client.token'));
  token = (await readFile(value.tokenFile, 'utf8')).trim();
  assert.ok(token.length >= 40, 'a random token of 256 bits');
  await waitFor('both nodes to agree on a coordinator', 60_000, agreed, () => stderr);
});

test.after(async () => {
  if (up?.pid !== undefined && up.exitCode === null) {
    const exited = new Promise((resolve) => up!.once('exit', resolve));
    process.kill(-up.pid, 'SIGTERM');
    await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 15_000))]);
    try {
      process.kill(-up.pid, 'SIGKILL');
    } catch {
      // The group is gone.
    }
  }
  if (dataDir !== '') await rm(join(dataDir, '..'), { recursive: true, force: true });
});

test('restarts back off: 1 s, doubling, at most 30 s', () => {
  assert.equal([1, 2, 3, 4, 5, 6, 7].map(restartDelayMs), [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
});

test('a node that dies is restarted by cluster up, which says so; the cluster agrees again', async () => {
  const victim = nodes[1];
  process.kill(victim.pid, 'SIGKILL');
  const { value: pid } = await waitFor('cluster up to report the restart', 30_000, async () => {
    const match = new RegExp(`${victim.name} restarted \\(pid (\\d+)\\)`).exec(stderr);
    return match === null ? undefined : Number(match[1]);
  }, () => stderr);
  assert.match(stderr, new RegExp(`${victim.name} exited \\(SIGKILL\\); restarting it in 1 s`));
  assert.not.equal(pid, victim.pid);
  victim.pid = pid;
  process.kill(pid, 0); // throws if the restarted node is not running
  await waitFor('both nodes to agree again', 60_000, agreed, () => stderr);
});

test('files the cluster writes are 0600 and folders 0700: blobs, state, identities, configs, key, logs', async () => {
  const client = await connect({ server: nodes[0].server, token });
  try {
    const job = await client.waitForCompletion((await client.upload(textLike(300_000, 4), { fileName: 'modes.txt', chunkSize: 64 * 1024 })).id);
    assert.is(job.state, 'completed', job.error ?? '');
  } finally {
    await client.close();
  }
  const entries = await readdir(dataDir, { recursive: true, withFileTypes: true });
  const seen = { files: 0, folders: 0, blobs: 0, leveldb: 0 };
  const loose: string[] = [];
  for (const entry of entries) {
    const path = join(entry.parentPath, entry.name);
    const mode = (await stat(path).catch(() => undefined))?.mode;
    if (mode === undefined) continue; // removed meanwhile (a staged chunk, a compacted log)
    const expected = entry.isDirectory() ? 0o700 : 0o600;
    if ((mode & 0o777) !== expected) loose.push(`${path} ${(mode & 0o777).toString(8)}`);
    if (entry.isDirectory()) seen.folders++;
    else seen.files++;
    if (path.includes(`${join(dataDir, 'blobs')}/`) && entry.isFile()) seen.blobs++;
    if (path.includes('/state/') && entry.isFile()) seen.leveldb++;
  }
  assert.equal(loose, [], 'every file 0600 and folder 0700');
  assert.ok((((await stat(dataDir)).mode & 0o777) === 0o700), 'the data folder itself');
  assert.ok(seen.blobs >= 1 && seen.leveldb >= 4 && seen.files >= 10, JSON.stringify(seen));
  for (const name of ['cluster.key', 'client.token', 'configs/node1.json', 'node1/peer.key', 'node1/node.log']) {
    assert.is((await stat(join(dataDir, name))).mode & 0o777, 0o600, name);
  }
});

test('the CLI finds the token of a cluster up on this machine: status and upload --wait with none typed', async () => {
  const status = await runCli(['cluster', 'status', '--server', nodes[0].server, '--json']);
  assert.is(status.code, 0, status.stderr);
  assert.is((JSON.parse(status.stdout) as ClusterStatusView).members.length, 2);
  const folder = await mkdtemp(join(tmpdir(), 'dcas-up-file-'));
  try {
    const file = join(folder, 'notes.txt');
    await import('node:fs/promises').then(({ writeFile }) => writeFile(file, textLike(200_000, 6)));
    const upload = await runCli(['upload', file, '--wait', '--json', '--server', nodes[1].server]);
    assert.is(upload.code, 0, upload.stderr);
    assert.is((JSON.parse(upload.stdout) as { state: string }).state, 'completed');
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

test('a wrong token is refused: HTTP 401 with code AUTH, and one line from the CLI for status and jobs', async () => {
  const response = await fetch(`${nodes[0].server}/cluster`, { headers: { authorization: 'Bearer wrong' } });
  assert.is(response.status, 401);
  assert.is(((await response.json()) as { error: { code: string } }).error.code, 'AUTH');
  const status = await runCli(['cluster', 'status', '--server', nodes[0].server, '--token', 'wrong']);
  assert.is(status.code, 1);
  assert.is(status.stderr.trim().split('\n').length, 1, status.stderr);
  const jobs = await runCli(['jobs', '--server', nodes[0].server, '--token', 'wrong']);
  assert.is(jobs.code, 1);
  assert.match(jobs.stderr, /^dcas: .*token/);
});

test('cluster up stopped forgets its gateways: the token is not offered to whatever listens there next', async () => {
  const exited = new Promise((resolve) => up!.once('exit', resolve));
  process.kill(up!.pid!, 'SIGTERM');
  await exited;
  const registry = JSON.parse(await readFile(join(dcasHome, 'local-clusters.json'), 'utf8')) as Record<string, string>;
  for (const node of nodes) assert.is(registry[node.server], undefined, node.server);
});

test.run();
