/**
 * The same job on a cluster whose blob store is Google Cloud Storage: three node processes use the
 * real @google-cloud/storage client against the GCS JSON-API server this test starts on loopback.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { connect } from '../node/client/index.ts';
import { decompress } from '../node/index.ts';
import { startGcsServer } from '../tools/gcs-server/index.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { textLike } from './helpers.ts';

const bucket = 'dcas-jobs';
let server: Awaited<ReturnType<typeof startGcsServer>>;
let cluster: TestCluster;

test.before(async () => {
  server = await startGcsServer({ buckets: [bucket] });
  cluster = await createTestCluster({
    nodes: 3,
    edit: (config) => ({ ...config, blobStore: { kind: 'gcs', bucket, prefix: 'cluster/', apiEndpoint: server.url } }),
  });
  for (const config of cluster.configs) cluster.start(config.name);
  await waitFor('3 alive members and one coordinator', 30_000, () => cluster.agreed(3), () => cluster.logs());
});

test.after(async () => {
  await cluster.destroy();
  await server.stop();
});

test('a job on the GCS store: chunks staged, coded, composed in rounds into one .dcz; downloads identical; staging removed', async () => {
  // 40 chunks: more than GCS's 32 sources per compose, so the merge composes in rounds.
  const data = textLike(40 * 64 * 1024 - 100, 77);
  const client = await connect({ server: cluster.gateway('node2') });
  try {
    const uploaded = await client.upload(data, { fileName: 'gcs.txt', chunkSize: 64 * 1024 });
    const job = await client.waitForCompletion(uploaded.id);
    assert.is(job.state, 'completed', job.error ?? '');
    assert.is(job.chunks, 40);
    const pieces: Uint8Array[] = [];
    for await (const piece of await client.download(job.id, { compressed: false })) pieces.push(piece);
    assert.ok(Buffer.concat(pieces).equals(data), 'original download');
    const dczPieces: Uint8Array[] = [];
    for await (const piece of await client.download(job.id, { compressed: true })) dczPieces.push(piece);
    const dcz = Buffer.concat(dczPieces);
    assert.is(dcz.length, job.compressedSize);
    assert.ok(Buffer.from(await decompress(dcz)).equals(data), '.dcz decodes locally');
    const listing = await fetch(`${server.url}/storage/v1/b/${bucket}/o?prefix=${encodeURIComponent('cluster/')}`);
    const names = ((await listing.json()) as { items?: Array<{ name: string }> }).items?.map((item) => item.name) ?? [];
    assert.ok(names.includes(`cluster/jobs/${job.id}.dcz`), `objects: ${names.join(', ')}`);
    assert.equal(names.filter((name) => name.includes('staging/')), []);
  } finally {
    await client.close();
  }
});

test('GCS answering 503 for a while mid-job: the stores retry with backoff and the job completes identically', async () => {
  const data = textLike(24 * 64 * 1024, 78);
  const client = await connect({ server: cluster.gateway('node3') });
  try {
    const requestsBefore = server.stats.requests;
    const uploading = client.upload(data, { fileName: 'flaky.txt', chunkSize: 64 * 1024 });
    // The outage starts once the job's first request reaches GCS, so it falls mid-job however slowly the
    // machine runs (a window started with the upload could pass before any chunk was staged).
    const waitingSinceMs = Date.now();
    while (server.stats.requests === requestsBefore) {
      if (Date.now() - waitingSinceMs > 60_000) throw new Error('no GCS request in 60 s of upload');
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    server.faults.failFor(3_000, 503);
    const job = await client.waitForCompletion((await uploading).id);
    assert.is(job.state, 'completed', job.error ?? '');
    assert.ok(server.stats.faultsInjected > 0, 'the server did answer 503');
    const pieces: Uint8Array[] = [];
    for await (const piece of await client.download(job.id, { compressed: false })) pieces.push(piece);
    assert.ok(Buffer.concat(pieces).equals(data));
  } finally {
    await client.close();
  }
});

test.run();
