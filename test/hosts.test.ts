/**
 * The cluster across hosts: five network-namespace hosts on a bridge (tools/hosts/harness.ts), each with
 * its own address, 3 voters and 2 worker-only nodes, the client in the root namespace reaching a host's
 * gateway over the bridge. Needs root and iproute2 (CI runs as root); when the hosts cannot be made,
 * this test fails and says why, it never skips.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { connect, type DcasClient, type JobView } from '../node/client/index.ts';
import { createHosts, defaultLink, netemAvailable, type Hosts } from '../tools/hosts/harness.ts';
import { waitFor } from '../tools/cluster.ts';
import { textLike } from './helpers.ts';

const voters = ['node1', 'node2', 'node3'];
const chunkSize = 64 * 1024;
let hosts: Hosts | undefined;

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');
const logs = () => hosts?.logs() ?? '';

async function withClient<T>(name: string, use: (client: DcasClient) => Promise<T>): Promise<T> {
  const client = await connect({ server: hosts!.gateway(name), deadlineAtMs: Date.now() + 90_000 });
  try {
    return await use(client);
  } finally {
    await client.close();
  }
}

async function download(client: DcasClient, jobId: string): Promise<Buffer> {
  const pieces: Uint8Array[] = [];
  for await (const piece of await client.download(jobId, { compressed: false })) pieces.push(piece);
  return Buffer.concat(pieces);
}

function assertIdentical(job: JobView, data: Uint8Array): void {
  assert.is(job.state, 'completed', job.error ?? '');
  assert.is(job.sha256, sha256(data));
  assert.is(job.originalSize, data.length);
}

test('5 namespace hosts (3 voters, 2 workers) agree on one coordinator over the bridge', async () => {
  try {
    // One core each: no limit on this 2-core machine, but every node runs under its host's CPU quota.
    // Gateways stage chunks raw (codeAtGateway off): a gateway that keeps up with its upload would code
    // every chunk itself, and these tests are about the coordinator spreading work across hosts.
    hosts = await createHosts({ hosts: 5, voters: 3, cpuQuota: 1, overrides: { jobs: { leaseMs: 4_000, attemptsMax: 5, codeAtGateway: false } } });
  } catch (error) {
    throw new Error(`HOST TESTS CANNOT RUN: ${(error as Error).message} (they need root, iproute2 and network namespaces)`, { cause: error });
  }
  for (const name of hosts.names) hosts.start(name);
  const { value, elapsedMs } = await waitFor('5 alive members and one coordinator', 60_000, () => hosts!.agreed(5), logs);
  assert.ok(voters.includes(value.coordinator!), `coordinator ${value.coordinator} is a voter`);
  for (const [index, name] of hosts.names.entries()) {
    const quota = readFileSync(`/sys/fs/cgroup/cpu/${hosts.prefix}${index + 1}/cpu.cfs_quota_us`, 'utf8').trim();
    const members = readFileSync(`/sys/fs/cgroup/cpu/${hosts.prefix}${index + 1}/cgroup.procs`, 'utf8').split(/\s+/);
    assert.is(quota, '100000', `${name}'s CPU quota`);
    assert.ok(members.includes(String(hosts.pid(name))), `${name}'s node runs in its host's cgroup`);
  }
  console.log(`hosts: ${hosts.names.map((name) => `${name}=${hosts!.address(name)}`).join(' ')}; agreed on ${value.coordinator} in ${elapsedMs} ms`);
});

test('a job through a worker host completes byte-identical, its chunks coded on more than one host', async () => {
  const data = textLike(1536 * 1024 + 11, 13);
  const started = Date.now();
  const job = await withClient('node4', async (client) => {
    const uploaded = await client.upload(data, { fileName: 'hosts.txt', chunkSize });
    const done = await client.waitForCompletion(uploaded.id);
    assert.ok((await download(client, done.id)).equals(data), 'the download is byte-identical');
    return done;
  });
  assertIdentical(job, data);
  const codedOn = Object.keys(job.chunkNodes);
  assert.ok(codedOn.length >= 2, `chunks coded on ${JSON.stringify(job.chunkNodes)}`);
  console.log(`hosts: job of ${data.length} bytes in ${Date.now() - started} ms; chunks per host ${JSON.stringify(job.chunkNodes)}`);
});

test("the coordinator's host cut off mid-upload: the majority elects another, the job completes, the cut-off side takes no upload", async () => {
  const { value: before } = await waitFor('one coordinator', 30_000, () => hosts!.agreed(5), logs);
  const cutOff = before.coordinator!;
  const majority = voters.filter((name) => name !== cutOff);
  const data = textLike(2 * 1024 * 1024 + 3, 17);
  const client = await connect({ server: hosts!.gateway(majority[0]!), deadlineAtMs: Date.now() + 90_000 });
  try {
    // Cut while the upload is still streaming: its chunk proposals are in flight to the coordinator.
    let cutAt = 0;
    const uploaded = await client.upload(data, {
      fileName: 'cut.txt',
      chunkSize,
      onProgress: ({ bytes }) => {
        if (cutAt !== 0 || bytes < data.length / 4) return;
        cutAt = Date.now();
        hosts!.cut(cutOff);
      },
    });
    assert.ok(cutAt !== 0, 'the link was cut during the upload');
    const uploadedMs = Date.now() - cutAt;
    const { value: elected } = await waitFor(
      'the majority to name another coordinator',
      30_000,
      async () => {
        const views = await Promise.all(majority.map((name) => hosts!.status(name)));
        const named = new Set(views.map((view) => view?.coordinator));
        return named.size === 1 && !named.has(cutOff) && !named.has(null) && !named.has(undefined) ? [...named][0] : undefined;
      },
      logs,
    );
    const failoverMs = Date.now() - cutAt;
    const job = await client.waitForCompletion(uploaded.id);
    assertIdentical(job, data);
    const jobMs = Date.now() - cutAt;

    const probe = await hosts!.exec(cutOff, [process.execPath, new URL('../tools/hosts/probe.ts', import.meta.url).pathname, hosts!.gateway(cutOff)], 60_000);
    assert.is(probe.code, 0, `probe on the cut-off host failed: ${probe.stderr}`);
    const answered = JSON.parse(probe.stdout.trim().split('\n').at(-1)!) as { cluster: { coordinator?: string | null }; upload: { accepted: boolean; code?: string; message?: string; elapsedMs?: number } };
    console.log(`hosts: cut ${cutOff}; ${elected} elected after ${failoverMs} ms; upload acknowledged ${uploadedMs} ms and the job completed ${jobMs} ms after the cut; the cut-off side answered ${answered.upload.code} ${answered.upload.elapsedMs} ms after the probe asked (connect included): ${JSON.stringify(answered)}`);
    assert.is.not(elected, cutOff);
    assert.is(answered.upload.accepted, false, 'the cut-off side took a new upload');
    assert.is(answered.upload.code, 'UNAVAILABLE', 'the cut-off side refuses with UNAVAILABLE');
    // Refused because it sees itself cut off, at once, not because its proposal timed out.
    assert.match(answered.upload.message ?? '', /cut off from the cluster/, 'the refusal says the node is cut off');
    assert.ok(answered.cluster.coordinator !== cutOff, 'the cut-off side does not call itself coordinator');
  } finally {
    await client.close();
  }

  const healedAt = Date.now();
  hosts!.heal(cutOff);
  const { value: after, elapsedMs } = await waitFor('5 alive members and one coordinator after the heal', 60_000, () => hosts!.agreed(5), logs);
  console.log(`hosts: healed ${cutOff}; one coordinator (${after.coordinator}) again after ${elapsedMs} ms`);
  assert.ok(Date.now() >= healedAt);
  const held: string[] = [];
  for (const name of voters) {
    const { value } = await waitFor(`${name} to hold every job completed`, 30_000, async () => {
      const jobs = Object.values(await hosts!.state(name, 'jobs/').catch(() => ({}))) as Array<{ id?: string; state?: string; sha256?: string }>;
      return jobs.length >= 2 && jobs.every((job) => job.state === 'completed') ? jobs : undefined;
    });
    held.push(JSON.stringify(value.map((job) => [job.id, job.state, job.sha256]).sort()));
  }
  assert.is(new Set(held).size, 1, `every voter agrees on the jobs: ${held.join(' / ')}`);
});

/** Milliseconds for a TCP connection from inside `from`'s namespace to `to`'s gateway: one round trip. */
async function connectMs(from: string, to: string): Promise<number> {
  const { hostname, port } = new URL(hosts!.gateway(to));
  const script = `const s = require('net').connect(${port}, '${hostname}'); const t = performance.now(); s.on('connect', () => { console.log((performance.now() - t).toFixed(1)); s.destroy(); });`;
  const { code, stdout, stderr } = await hosts!.exec(from, [process.execPath, '-e', script], 20_000);
  assert.is(code, 0, stderr);
  return Number(stdout.trim());
}

test('a link with 5% loss and 50 ms delay each way: a job through it still completes', async () => {
  // This machine's kernel has no sch_netem: loss comes from nftables, delay from tools/hosts/delay.c.
  const lossy = { ...defaultLink, lossPercent: 5, delayMs: 50 };
  const before = await connectMs('node4', 'node1');
  hosts!.shape('node4', lossy);
  hosts!.shape('node5', lossy);
  try {
    // A round trip from node4 crosses its link twice, each way delayed: at least 100 ms.
    const delayed = await connectMs('node4', 'node1');
    assert.ok(delayed >= 2 * lossy.delayMs, `a connection through node4's delayed link took ${delayed} ms (undelayed ${before} ms)`);
    const data = textLike(1024 * 1024 + 5, 19);
    const started = Date.now();
    const job = await withClient('node4', async (client) => {
      const uploaded = await client.upload(data, { fileName: 'lossy.txt', chunkSize });
      const done = await client.waitForCompletion(uploaded.id);
      assert.ok((await download(client, done.id)).equals(data), 'the download through the lossy link is byte-identical');
      return done;
    });
    assertIdentical(job, data);
    const dropped = hosts!.packetsDropped('node4') + hosts!.packetsDropped('node5');
    if (!netemAvailable()) assert.ok(dropped > 0, 'the loss rules dropped packets');
    console.log(`hosts: lossy, delayed links on node4 and node5 (${lossy.lossPercent}% loss and ${lossy.delayMs} ms delay each way${netemAvailable() ? ', netem' : ': nftables and the delay program, no netem in this kernel'}): TCP connect node4 -> node1 ${before} ms before, ${delayed} ms after; ${dropped} packets dropped; job of ${data.length} bytes, upload+code+download in ${Date.now() - started} ms; chunks per host ${JSON.stringify(job.chunkNodes)}`);
  } finally {
    hosts!.shape('node4', defaultLink);
    hosts!.shape('node5', defaultLink);
  }
  const after = await connectMs('node4', 'node1');
  assert.ok(after < lossy.delayMs, `with the default link again, a connection took ${after} ms`);
});

test('teardown removes every namespace, link and cgroup the hosts made', async () => {
  const prefix = hosts?.prefix;
  await hosts?.destroy();
  hosts = undefined;
  assert.ok(prefix !== undefined);
  const { execFileSync } = await import('node:child_process');
  assert.not.ok(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(prefix!), 'a namespace is left');
  assert.not.ok(execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).includes(prefix!), 'a link is left');
  assert.not.ok(existsSync(`/sys/fs/cgroup/cpu/${prefix}1`), 'a cgroup is left');
});

test.after(async () => {
  await hosts?.destroy();
});

test.run();
