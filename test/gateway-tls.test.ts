/**
 * TLS for the gateway (`gateway.tls: { certFile, keyFile }`): a real `dcas node` with a self-signed
 * certificate made by openssl serves https:// and wss:// only; curl -k reaches /healthz; the CLI
 * verifies the certificate (refused without `--ca`, accepted with it) for status and a whole job.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freeBasePort } from '../tools/local-cluster.ts';
import { loadConfig } from '../node/config/index.ts';
import { waitFor } from '../tools/cluster.ts';
import { dcasEntry } from './support/dcas-process.ts';
import { textLike } from './helpers.ts';

let folder = '';
let node: ChildProcess | undefined;
let server = '';
let output = '';

async function runCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, DCAS_HOME: join(folder, 'home') };
  delete env.DCAS_TOKEN;
  delete env.DCAS_CA;
  return promisify(execFile)(process.execPath, [dcasEntry, ...args], { env }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => ({ code: error.code, stdout: error.stdout, stderr: error.stderr }),
  );
}

function curl(args: string[]): { code: number; stdout: string } {
  try {
    return { code: 0, stdout: execFileSync('curl', ['-sS', '--max-time', '5', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }) };
  } catch (error) {
    return { code: (error as { status: number }).status, stdout: '' };
  }
}

test('a node with gateway.tls starts and curl -k reaches /healthz over https', async () => {
  folder = await mkdtemp(join(tmpdir(), 'dcas-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', join(folder, 'key.pem'), '-out', join(folder, 'cert.pem')], { stdio: 'ignore' });
  const port = await freeBasePort(1);
  const config = { name: 'solo', dataDir: join(folder, 'data'), listen: ['/ip4/127.0.0.1/tcp/0'], gateway: { port, tls: { certFile: 'cert.pem', keyFile: 'key.pem' } }, workers: 1 };
  await writeFile(join(folder, 'solo.json'), JSON.stringify(config));
  node = spawn(process.execPath, [dcasEntry, 'node', '--config', join(folder, 'solo.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
  node.stdout!.on('data', (data) => (output += data));
  node.stderr!.on('data', (data) => (output += data));
  server = `https://127.0.0.1:${port}`;
  await waitFor('the node to lead', 30_000, async () => (/role changed/.test(output) ? true : undefined), () => output);
  const health = curl(['-k', `${server}/healthz`]);
  assert.is(health.code, 0);
  assert.is((JSON.parse(health.stdout) as { ok: boolean }).ok, true);
  assert.match(output, new RegExp(`"gateway":"https://127.0.0.1:${port}"`), 'the node says where it serves https');
});

test('the TLS port speaks only TLS, and curl without -k refuses the self-signed certificate', () => {
  assert.is.not(curl([`${server.replace('https:', 'http:')}/healthz`]).code, 0, 'plain http gets no answer');
  assert.is.not(curl([`${server}/healthz`]).code, 0, 'the certificate is verified by default');
  assert.is(curl(['--cacert', join(folder, 'cert.pem'), `${server}/healthz`]).code, 0, 'and accepted when trusted');
});

test('the CLI verifies the gateway certificate: refused without --ca (one line), served with it', async () => {
  const refused = await runCli(['cluster', 'status', '--server', server]);
  assert.is(refused.code, 1);
  assert.is(refused.stderr.trim().split('\n').length, 1, refused.stderr);
  assert.match(refused.stderr, /^dcas: cannot reach https:.*TLS certificate is not trusted .*--ca FILE$/m);
  const jobs = await runCli(['jobs', '--server', server]);
  assert.is(jobs.code, 1);
  assert.match(jobs.stderr, /^dcas: .*TLS certificate is not trusted \(self-signed certificate\); give its certificate authority with --ca FILE\n$/);
  const status = await runCli(['cluster', 'status', '--server', server, '--ca', join(folder, 'cert.pem'), '--json']);
  assert.is(status.code, 0, status.stderr);
  const view = JSON.parse(status.stdout) as { members: Array<{ name: string; gateway: string }> };
  assert.equal(view.members.map((member) => [member.name, member.gateway]), [['solo', `wss://127.0.0.1:${new URL(server).port}`]]);
});

test('a job over wss:// with --ca: upload --wait completes and the download is byte-identical', async () => {
  const data = textLike(300_000, 11);
  await writeFile(join(folder, 'in.txt'), data);
  const upload = await runCli(['upload', join(folder, 'in.txt'), '--wait', '--json', '--server', server, '--ca', join(folder, 'cert.pem')]);
  assert.is(upload.code, 0, upload.stderr);
  const job = JSON.parse(upload.stdout) as { id: string; state: string };
  assert.is(job.state, 'completed');
  const download = await runCli(['download', job.id, '-o', join(folder, 'out.txt'), '--server', server, '--ca', join(folder, 'cert.pem')]);
  assert.is(download.code, 0, download.stderr);
  assert.ok(Buffer.compare(execFileSync('cat', [join(folder, 'out.txt')]), Buffer.from(data)) === 0, 'bytes identical');
});

test('a config whose certificate file is missing stops with one line naming gateway.tls.certFile', async () => {
  await writeFile(join(folder, 'broken.json'), JSON.stringify({ name: 'broken', gateway: { tls: { certFile: 'nope.pem', keyFile: 'key.pem' } } }));
  assert.throws(() => loadConfig(join(folder, 'broken.json')), /gateway\.tls\.certFile.*no such file/);
});

test('teardown', async () => {
  node?.kill('SIGINT');
  if (node !== undefined && node.exitCode === null) await new Promise((resolve) => node!.once('close', resolve));
  await rm(folder, { recursive: true, force: true });
});

test.run();
