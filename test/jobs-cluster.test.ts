/**
 * Jobs end to end on real processes: 3 voters and 1 worker-only node, the real client over real
 * WebSockets, the folder blob store shared by all nodes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { connect, type DcasClient, type JobView } from '../node/client/index.ts';
import { decompress } from '../node/index.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { randomBytesSeeded, textLike } from './helpers.ts';

let cluster: TestCluster;
const chunkSize = 64 * 1024;

test.before(async () => {
  // Gateways stage every chunk raw here: these tests are about the coordinator spreading chunks over
  // nodes and reassigning them, which a gateway coding its own chunks would bypass.
  cluster = await createTestCluster({ nodes: 4, overrides: { jobs: { leaseMs: 4_000, attemptsMax: 5, codeAtGateway: false, stagingSweepMs: 1_000 } } });
  // Make node4 a worker-only node: it receives the log as a learner and codes chunks, but never votes.
  for (const config of cluster.configs) cluster.start(config.name);
  await waitFor('4 alive members and one coordinator', 30_000, () => cluster.agreed(4), () => cluster.logs());
});

test.after(async () => {
  await cluster.destroy();
});

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function downloadAll(client: DcasClient, jobId: string, compressed: boolean): Promise<Buffer> {
  const pieces: Uint8Array[] = [];
  for await (const piece of await client.download(jobId, { compressed })) pieces.push(piece);
  return Buffer.concat(pieces);
}

async function withClient<T>(name: string, fn: (client: DcasClient) => Promise<T>): Promise<T> {
  const client = await connect({ server: cluster.gateway(name) });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

async function coordinator(): Promise<string> {
  const { value } = await waitFor('a coordinator', 15_000, async () => (await cluster.status('node2'))?.coordinator ?? (await cluster.status('node3'))?.coordinator ?? undefined);
  return value;
}

test('an upload is split, coded on several nodes, merged; both downloads are byte-identical', async () => {
  const data = textLike(3 * 1024 * 1024 + 777, 21);
  await withClient('node2', async (client) => {
    const uploaded = await client.upload(data, { fileName: 'notes.txt', chunkSize });
    const job = await client.waitForCompletion(uploaded.id);
    assert.is(job.state, 'completed', job.error ?? '');
    assert.is(job.originalSize, data.length);
    assert.is(job.sha256, sha256(data));
    assert.is(job.chunks, Math.ceil(data.length / chunkSize));
    assert.is(job.mime, 'text/plain');
    assert.ok(Object.keys(job.chunkNodes).length >= 2, `chunks coded on ${JSON.stringify(job.chunkNodes)}`);
    assert.ok(job.ratio! < 0.8, `ratio ${job.ratio}`);
    const original = await downloadAll(client, job.id, false);
    assert.ok(original.equals(data));
    const dcz = await downloadAll(client, job.id, true);
    assert.is(dcz.length, job.compressedSize);
    assert.ok(Buffer.from(await decompress(dcz)).equals(data), 'the .dcz decodes locally to the original');
    // Staged chunks are removed once the job completed; only the final object remains.
    const staged = await readdir(join(cluster.dataDir, 'blobs', 'staging', job.id), { recursive: true, withFileTypes: true }).catch(() => []);
    assert.equal(staged.filter((entry) => entry.isFile()).map((entry) => entry.name), []);
    const finals = await readdir(join(cluster.dataDir, 'blobs', 'jobs'));
    assert.ok(finals.includes(`${job.id}.dcz`));
  });
});

test('a .dcz uploaded with mode decompress is decoded across the cluster to the original', async () => {
  const data = randomBytesSeeded(700_000, 5);
  const dcz = await withClient('node1', async (client) => {
    const job = await client.waitForCompletion((await client.upload(data, { fileName: 'blob.bin', chunkSize })).id);
    return downloadAll(client, job.id, true);
  });
  await withClient('node3', async (client) => {
    const job = await client.waitForCompletion((await client.upload(dcz, { fileName: 'blob.bin.dcz', mode: 'decompress' })).id);
    assert.is(job.state, 'completed', job.error ?? '');
    assert.is(job.originalSize, data.length);
    assert.ok((await downloadAll(client, job.id, false)).equals(data));
  });
});

test('a corrupted .dcz uploaded for decompression fails with a reason naming the chunk', async () => {
  const data = textLike(400_000, 8);
  const dcz = await withClient('node1', async (client) => downloadAll(client, (await client.waitForCompletion((await client.upload(data, { fileName: 'x.txt', chunkSize })).id)).id, true));
  dcz[16 + 20 + 1000] ^= 0x55; // inside chunk 0's frame: the header checks pass, decoding or its CRC fails
  await withClient('node2', async (client) => {
    const job = await client.waitForCompletion((await client.upload(dcz, { fileName: 'x.txt.dcz', mode: 'decompress' })).id);
    assert.is(job.state, 'failed');
    assert.match(job.error ?? '', /chunk 0/);
  });
});

/**
 * Uploads `data` through `gatewayNode` while a second connection watches the job from its first
 * moment; `act` runs once, the first time `when` holds for the job. Returns the final job.
 */
async function uploadWhile(gatewayNode: string, data: Uint8Array, when: (job: JobView) => boolean, act: () => void): Promise<{ job: JobView; acted: boolean; output: Buffer }> {
  const watcher = await connect({ server: cluster.gateway(gatewayNode) });
  let acted = false;
  let watching: Promise<unknown> | undefined;
  try {
    return await withClient(gatewayNode, async (client) => {
      const uploaded = await client.upload(data, {
        fileName: 'mid-job.txt',
        chunkSize,
        onProgress: ({ jobId }) => {
          watching ??= watcher.watch(jobId, (view) => {
            if (!acted && when(view)) {
              acted = true;
              act();
            }
          });
        },
      });
      await watching;
      const job = await client.waitForCompletion(uploaded.id);
      return { job, acted, output: job.state === 'completed' ? await downloadAll(client, job.id, false) : Buffer.alloc(0) };
    });
  } finally {
    await watcher.close();
  }
}

// The coordinator holds no job state of its own: a new one continues every job from the log.
test('kill -9 of the coordinator mid-job: the job completes and its output is byte-identical', async () => {
  const data = textLike(12 * 1024 * 1024, 33);
  const leader = await coordinator();
  const gatewayNode = ['node1', 'node2', 'node3'].find((name) => name !== leader)!;
  try {
    const { job, acted, output } = await uploadWhile(gatewayNode, data, (view) => view.chunksDone >= 4, () => void cluster.stop(leader, 'SIGKILL'));
    assert.ok(acted, 'the coordinator was killed while chunks were being coded');
    assert.is(job.state, 'completed', job.error ?? '');
    assert.ok(output.equals(data));
    assert.is.not(await coordinator(), leader);
  } finally {
    cluster.start(leader);
    await waitFor('the old coordinator to rejoin', 20_000, () => cluster.agreed(4), () => cluster.logs());
  }
});

test('kill -9 of a worker-only node mid-job: its chunks are reassigned and the job completes identically', async () => {
  const data = textLike(12 * 1024 * 1024, 44);
  try {
    const { job, acted, output } = await uploadWhile('node1', data, (view) => (view.chunkNodes.node4 ?? 0) > 0, () => void cluster.stop('node4', 'SIGKILL'));
    assert.ok(acted, 'node4 was killed after coding some chunks');
    assert.is(job.state, 'completed', job.error ?? '');
    assert.ok(output.equals(data));
  } finally {
    cluster.start('node4');
    await waitFor('node4 to rejoin', 20_000, () => cluster.agreed(4), () => cluster.logs());
  }
});

/** Writes `files` into a new folder beside the cluster's data, then renames it to `target` (a missing or empty folder). */
async function placeFolder(target: string, files: Record<string, string>): Promise<void> {
  const aside = await mkdtemp(join(cluster.dataDir, 'placing-'));
  for (const [name, text] of Object.entries(files)) await writeFile(join(aside, name), text);
  await waitFor(`${target} to be free for the folder`, 20_000, async () => {
    try {
      await mkdir(dirname(target), { recursive: true });
      await rename(aside, target);
      return true;
    } catch (error) {
      // Not yet empty (the job's own cleanup or the sweep still at work there): try again shortly.
      if ((error as NodeJS.ErrnoException).code === 'ENOTEMPTY' || (error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
      throw error;
    }
  });
}

test('staged blobs written after a job ended (a deposed coordinator\'s merge, killed before its cleanup) are swept by the coordinator', async () => {
  const data = textLike(300 * 1024, 5);
  const job = await withClient('node1', async (client) => client.waitForCompletion((await client.upload(data, { fileName: 'swept.txt', chunkSize })).id));
  assert.is(job.state, 'completed', job.error ?? '');
  const staging = join(cluster.dataDir, 'blobs', 'staging', job.id);
  const stray = join(cluster.dataDir, 'blobs', 'staging', 'nojob0000000000');
  // Each folder is written aside and moved into place whole: the sweeper runs all the while, and a folder
  // made in place could be swept between its mkdir and its first file (seen once in CI: ENOENT).
  await placeFolder(staging, { header: 'a stale merge\'s header', tail: 'a stale merge\'s tail' });
  await placeFolder(stray, { header: 'staged under a job that has no record' });
  const left = async (folder: string) => (await readdir(folder, { recursive: true, withFileTypes: true }).catch(() => [])).filter((entry) => entry.isFile());
  await waitFor('the coordinator to sweep both staging folders', 20_000, async () => ((await left(staging)).length === 0 && (await left(stray)).length === 0 ? true : undefined));
  // The job itself is untouched: its download is still the original.
  const back = await withClient('node3', (client) => downloadAll(client, job.id, false));
  assert.is(sha256(back), sha256(data));
});

test('concurrent uploads through different gateways all complete with identical outputs', async () => {
  const inputs = Array.from({ length: 8 }, (_, i) => textLike(600_000 + i * 1000, 100 + i));
  const results = await Promise.all(
    inputs.map((data, i) =>
      withClient(`node${(i % 3) + 1}`, async (client) => {
        const job = await client.waitForCompletion((await client.upload(data, { fileName: `c${i}.txt`, chunkSize })).id);
        return { job, output: await downloadAll(client, job.id, false) };
      }),
    ),
  );
  results.forEach(({ job, output }, i) => {
    assert.is(job.state, 'completed', job.error ?? '');
    assert.ok(output.equals(inputs[i]), `upload ${i}`);
  });
});

test.run();
