/**
 * The client's overall deadline and its failover to another gateway of the cluster (issue 16).
 * Two real gateways share one jobs-room double, as two nodes share the replicated job state; each
 * lists both in /cluster, as a real node lists its members' gateways.
 */
import { spawn } from 'node:child_process';
import { pino } from 'pino';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect, DcasClientError, followJob } from '../node/client/index.ts';
import { createGateway, type Gateway } from '../node/gateway/index.ts';
import { createJobServiceDouble, type JobServiceDouble } from './support/job-service-double.ts';
import { rejects, sleep } from './support/gateway.ts';

const token = 'failover-token';
let jobs: JobServiceDouble;
let gateways: Gateway[];

function startGateway(node: string): Gateway {
  const gateway: Gateway = createGateway({
    host: '127.0.0.1',
    port: 0,
    node,
    token,
    jobs,
    logger: pino({ level: process.env.DCAS_TEST_LOG ?? 'silent' }),
    routes: {
      health: () => ({ ok: true }),
      ready: () => ({ ready: true }),
      clusterStatus: () => ({ node, coordinator: 'a', term: 1, members: gateways.map((other, i) => ({ name: ['a', 'b'][i], gateway: other.wsUrl() })) }),
      state: async () => ({ entries: {} }),
    },
  });
  return gateway;
}

test.before.each(async () => {
  jobs = createJobServiceDouble({ autoProcessTickMs: false });
  gateways = [startGateway('a'), startGateway('b')];
  for (const gateway of gateways) await gateway.start();
});

test.after.each(async () => {
  jobs.close();
  for (const gateway of gateways) await gateway.stop().catch(() => {});
});

test('followJob finishes on another gateway when the first one stops mid-wait', async () => {
  const client = await connect({ server: gateways[0].url(), token });
  assert.equal((await client.gateways()).length, 2);
  const job = await client.upload(Buffer.from('follow me'), { fileName: 'f.txt' });
  const states: string[] = [];
  const following = followJob(client, { server: gateways[0].url(), token }, job.id, (view) => states.push(view.state));
  await sleep(100);
  await gateways[0].stop();
  await sleep(200);
  jobs.complete(job.id);
  const final = await following;
  assert.is(final.state, 'completed');
  assert.ok(states.includes('processing'), `states seen: ${states.join(', ')}`);
  await client.close();
});

test('connect tries the fallback gateways in order when the first cannot be reached', async () => {
  const client = await connect({ server: 'http://127.0.0.1:1', fallbackServers: [gateways[1].url()], token });
  assert.is(client.node, 'b');
  await client.close();
  const error = await rejects(connect({ server: 'http://127.0.0.1:1', fallbackServers: ['http://127.0.0.1:2'], token }), /and 1 other gateways/);
  assert.is((error as DcasClientError).code, 'UNREACHABLE');
});

test('a wrong token is not retried on other gateways', async () => {
  const error = await rejects(connect({ server: gateways[0].url(), fallbackServers: [gateways[1].url()], token: 'wrong' }));
  assert.is((error as DcasClientError).code, 'AUTH');
});

test('the overall deadline ends a wait that would never end, with TIMEOUT', async () => {
  const client = await connect({ server: gateways[0].url(), token, deadlineAtMs: Date.now() + 1_500 });
  const job = await client.upload(Buffer.from('never done'), { fileName: 'n.txt' });
  const error = await rejects(client.waitForCompletion(job.id), /deadline/);
  assert.is((error as DcasClientError).code, 'TIMEOUT');
  await rejects(connect({ server: gateways[0].url(), token, deadlineAtMs: Date.now() - 1 }), /deadline/);
});

const dcas = new URL('../node/cli/dcas.ts', import.meta.url).pathname;

function runDcas(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [dcas, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (data: Buffer) => (stdout += data.toString('utf8')));
  child.stderr.on('data', (data: Buffer) => (stderr += data.toString('utf8')));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

test('dcas status --watch --timeout gives up with exit 1 and one line', async () => {
  const client = await connect({ server: gateways[0].url(), token });
  const job = await client.upload(Buffer.from('never done'), { fileName: 'n.txt' });
  await client.close();
  const result = await runDcas(['status', job.id, '--watch', '--timeout', '1', '--server', gateways[0].url(), '--token', token]);
  assert.is(result.code, 1);
  assert.match(result.stderr, /^dcas: gave up at the deadline .*--timeout/);
  assert.is(result.stderr.trim().split('\n').length, 1);
});

test('dcas tries the gateways of --server a,b in order', async () => {
  const result = await runDcas(['jobs', '--json', '--server', `http://127.0.0.1:1, ${gateways[1].url()}`, '--token', token]);
  assert.is(result.code, 0, result.stderr);
  assert.ok(Array.isArray(JSON.parse(result.stdout)));
});

test.run();
