/**
 * A full disk is an error, not a crash: a real 3-node cluster whose data folders and blob folder sit
 * on a 50 MB tmpfs. A too-large upload fails with INSUFFICIENT_STORAGE, every node stays alive, reads
 * (jobs, status, a download of an earlier job) still work, and once the failed upload's space is
 * given back a small job completes.
 *
 * Needs root (mount). If the tmpfs cannot be mounted the first test fails, loudly: it is not skipped.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, DcasClientError, type DcasClient } from '../node/client/index.ts';
import { pino } from 'pino';
import { freeBasePort } from '../tools/local-cluster.ts';
import { parseConfig } from '../node/config/index.ts';
import { startNode, type NodeRuntime } from '../node/runtime/node.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { randomBytesSeeded, textLike } from './helpers.ts';

const mebibyte = 1024 * 1024;
const diskBytes = 50 * mebibyte;
const reserveBytes = 10 * mebibyte;
const names = ['node1', 'node2', 'node3'];
let mountPoint: string | undefined;
let mounted = false;
let cluster: TestCluster | undefined;
let client: DcasClient | undefined;
let earlier: { id: string; data: Uint8Array } | undefined;

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

async function freeBytes(): Promise<number> {
  const info = await statfs(mountPoint!);
  return info.bavail * info.bsize;
}

async function everyNodeAlive(): Promise<void> {
  const { value } = await waitFor('3 alive members and one coordinator', 30_000, () => cluster!.agreed(3), () => cluster!.logs());
  for (const name of names) assert.ok(value.members.some((member) => member.name === name && member.status === 'alive'), name);
}

async function uploadError(source: Uint8Array | AsyncIterable<Uint8Array>, fileName: string): Promise<DcasClientError> {
  try {
    const job = await client!.upload(source, { fileName, chunkSize: mebibyte });
    assert.unreachable(`upload ${fileName} was accepted as job ${job.id}`);
  } catch (error) {
    if (!(error instanceof DcasClientError)) throw error;
    return error;
  }
  throw new Error('unreachable');
}

test.after(async () => {
  await client?.close().catch(() => {});
  await cluster?.destroy().catch(() => {});
  if (mounted) execFileSync('umount', [mountPoint!]);
  if (mountPoint !== undefined) await rm(mountPoint, { recursive: true, force: true });
});

test('a 50 MB tmpfs holds a running cluster, and a job completes on it', async () => {
  mountPoint = await mkdtemp(join(tmpdir(), 'dcas-tmpfs-'));
  // Throws (and so fails this test) when mounting is not allowed here.
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${diskBytes / mebibyte}m`, 'tmpfs', mountPoint]);
  mounted = true;
  assert.ok((await freeBytes()) <= diskBytes);
  cluster = await createTestCluster({ nodes: 3, parentDir: mountPoint, overrides: { jobs: { diskReserveBytes: reserveBytes, leaseMs: 5_000 } } });
  for (const name of names) cluster.start(name);
  await everyNodeAlive();
  client = await connect({ server: cluster.gateway('node1') });
  const data = textLike(2 * mebibyte, 3);
  const job = await client.waitForCompletion((await client.upload(data, { fileName: 'earlier.txt', chunkSize: mebibyte })).id);
  assert.is(job.state, 'completed', job.error ?? '');
  earlier = { id: job.id, data };
});

test('an upload declaring more than the disk can hold is refused at once with INSUFFICIENT_STORAGE', async () => {
  const error = await uploadError(new Uint8Array(30 * mebibyte), 'declared.bin');
  assert.is(error.code, 'INSUFFICIENT_STORAGE', error.message);
  assert.match(error.message, /not enough disk space/);
});

test('a streamed upload that would fill the disk fails with INSUFFICIENT_STORAGE; nothing crashes', async () => {
  const freeBefore = await freeBytes();
  async function* stream() {
    // 60 MB of incompressible bytes in 1 MiB pieces, size not declared: only the running checks can stop it.
    for (let seed = 0; seed < 60; seed++) yield randomBytesSeeded(mebibyte, 100 + seed);
  }
  const error = await uploadError(stream(), 'huge.bin');
  assert.is(error.code, 'INSUFFICIENT_STORAGE', error.message);
  const failed = (await client!.jobs()).find((job) => job.fileName === 'huge.bin');
  assert.ok(failed !== undefined, 'the failed upload is listed');
  assert.is(failed.state, 'failed');
  assert.match(failed.error ?? '', /^INSUFFICIENT_STORAGE: upload [0-9a-f]+: chunk \d+: not enough disk space/);
  // The failed upload's staged chunks are removed: the space comes back.
  await waitFor('the failed upload to give its space back', 30_000, async () => ((await freeBytes()) >= freeBefore - 4 * mebibyte ? true : undefined));
  await everyNodeAlive();
  for (const name of names) assert.ok(cluster!.pid(name) !== undefined, `${name} still runs`);
});

test('reads still work on every node: jobs, status, and a download of the earlier job', async () => {
  for (const name of names) {
    const reader = await connect({ server: cluster!.gateway(name) });
    try {
      const jobs = await reader.jobs();
      assert.ok(jobs.some((job) => job.id === earlier!.id), `${name} lists the earlier job`);
      assert.is((await reader.status(earlier!.id)).state, 'completed');
      const pieces: Uint8Array[] = [];
      for await (const piece of await reader.download(earlier!.id)) pieces.push(piece);
      assert.is(sha256(Buffer.concat(pieces)), sha256(earlier!.data), `${name} downloads the earlier job intact`);
    } finally {
      await reader.close();
    }
  }
});

test('with the space given back, a small job completes', async () => {
  const data = textLike(3 * mebibyte, 9);
  const job = await client!.waitForCompletion((await client!.upload(data, { fileName: 'small.txt', chunkSize: mebibyte })).id);
  assert.is(job.state, 'completed', job.error ?? '');
  assert.is(job.sha256, sha256(data));
  await everyNodeAlive();
});

/**
 * Raft storage meeting a full disk: one real node in this process (LevelDB, Raft, libp2p, gateway) on
 * its own 20 MB tmpfs, filled to the last byte. A proposal that cannot be persisted must not end the
 * process (this test runner would die with it); the node keeps serving reads, refuses new work with
 * INSUFFICIENT_STORAGE, and resumes by itself once space is freed.
 */
test('Raft writes on a full disk: no exit, reads served, uploads refused; freeing space resumes the node', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'dcas-tmpfs-raft-'));
  let node: NodeRuntime | undefined;
  let raftMounted = false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=20m', 'tmpfs', folder]);
    raftMounted = true;
    const port = await freeBasePort(1);
    const config = parseConfig(
      {
        name: 'solo',
        dataDir: join(folder, 'solo'),
        listen: ['/ip4/127.0.0.1/tcp/0'],
        gateway: { port: port + 1 },
        workers: 1,
        jobs: { diskReserveBytes: mebibyte },
        blobStore: { kind: 'folder', path: join(folder, 'blobs') },
      },
      { source: '<full disk test>', baseDir: folder },
    );
    node = await startNode(config, pino({ level: 'silent' }));
    const state = node.state;
    await waitFor('the single voter to lead', 15_000, async () => (state.isLeader() ? true : undefined));
    await state.propose({ ops: [{ op: 'put', key: 'test/before', value: 'kept' }] });

    const filler = join(folder, 'filler');
    const free = async () => ((info) => info.bavail * info.bsize)(await statfs(folder));
    const filled = await writeFile(filler, new Uint8Array((await free()) + 4 * mebibyte)).then(
      () => 'written',
      (error: NodeJS.ErrnoException) => error.code,
    );
    assert.is(filled, 'ENOSPC');
    const big = 'x'.repeat(512 * 1024);
    const stuck = await state.propose({ ops: [{ op: 'put', key: 'test/big', value: big }] }, { timeoutMs: 3_000 }).then(
      () => 'applied',
      (error: Error) => error.name,
    );
    assert.is(stuck, 'ProposalError', 'the proposal is not applied while its entry cannot be persisted');
    assert.is(state.storageFailure()?.code, 'INSUFFICIENT_STORAGE');
    // Still here, still reading; refusing new work with the clear reason, also on the gateway.
    assert.is(await state.get('test/before'), 'kept');
    const readiness = (await (await fetch(`${node.gateway.url()}/readyz`)).json()) as { ready: boolean; reason: string };
    assert.is(readiness.ready, false);
    assert.match(readiness.reason, /cannot persist Raft state \(disk full\)/);
    const solo = await connect({ server: node.gateway.url() });
    try {
      const refused = await solo.upload(textLike(1000, 1), { fileName: 'refused.txt' }).then(
        () => undefined,
        (error: unknown) => error as DcasClientError,
      );
      assert.is(refused?.code, 'INSUFFICIENT_STORAGE', refused?.message);

      await rm(filler);
      await waitFor('the node to persist again', 60_000, async () => (state.storageFailure() === null ? true : undefined));
      // Persisting again comes first; committing and applying the stuck entry follow a moment later.
      await waitFor('the entry that could not be written to be applied after the retry', 30_000, async () => ((await state.get('test/big')) === big ? true : undefined));
      const data = textLike(mebibyte, 5);
      const job = await solo.waitForCompletion((await solo.upload(data, { fileName: 'after.txt', chunkSize: 256 * 1024 })).id);
      assert.is(job.state, 'completed', job.error ?? '');
      assert.is(job.sha256, sha256(data));
    } finally {
      await solo.close();
    }
  } finally {
    await node?.stop();
    if (raftMounted) execFileSync('umount', [folder]);
    await rm(folder, { recursive: true, force: true });
  }
});

test.run();
