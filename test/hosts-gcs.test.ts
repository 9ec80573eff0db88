/**
 * The blob store on a host of its own: three namespace hosts (tools/hosts/harness.ts) keep their chunks
 * in the GCS-compatible server running on a fourth host, through the real @google-cloud/storage client,
 * so every staged, coded and merged byte crosses the bridge. Needs root and iproute2 (CI runs as root);
 * when the hosts cannot be made, this test fails and says why, it never skips.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { connect } from '../node/client/index.ts';
import { createHosts, type Hosts } from '../tools/hosts/harness.ts';
import { waitFor } from '../tools/cluster.ts';
import { textLike } from './helpers.ts';

let hosts: Hosts | undefined;
const logs = () => hosts?.logs() ?? '';

test('a job on 3 hosts whose blob store is the GCS server on a 4th host completes byte-identical', async () => {
  try {
    hosts = await createHosts({ hosts: 3, blobStore: 'gcs', overrides: { jobs: { codeAtGateway: false } } });
  } catch (error) {
    throw new Error(`HOST TESTS CANNOT RUN: ${(error as Error).message} (they need root, iproute2 and network namespaces)`, { cause: error });
  }
  const gcs = hosts.gcs!;
  assert.ok(!gcs.url.includes('127.0.0.1'), `the GCS server listens on its host's address, not loopback: ${gcs.url}`);
  for (const config of hosts.configs) assert.equal(config.blobStore, { kind: 'gcs', bucket: 'dcas-hosts', prefix: 'cluster/', apiEndpoint: gcs.url });
  for (const name of hosts.names) hosts.start(name);
  await waitFor('3 alive members and one coordinator', 60_000, () => hosts!.agreed(3), logs);

  const data = textLike(24 * 64 * 1024 + 7, 23);
  const requestsBefore = gcs.stats().requests;
  const client = await connect({ server: hosts.gateway('node2'), deadlineAtMs: Date.now() + 90_000 });
  try {
    const uploaded = await client.upload(data, { fileName: 'gcs-host.txt', chunkSize: 64 * 1024 });
    const job = await client.waitForCompletion(uploaded.id);
    assert.is(job.state, 'completed', job.error ?? '');
    assert.is(job.sha256, createHash('sha256').update(data).digest('hex'));
    const pieces: Uint8Array[] = [];
    for await (const piece of await client.download(job.id, { compressed: false })) pieces.push(piece);
    assert.ok(Buffer.concat(pieces).equals(data), 'the download is byte-identical');
    const listing = await fetch(`${gcs.url}/storage/v1/b/dcas-hosts/o?prefix=cluster/jobs/`);
    const names = ((await listing.json()) as { items?: Array<{ name: string }> }).items?.map((item) => item.name) ?? [];
    assert.ok(names.includes(`cluster/jobs/${job.id}.dcz`), `the result lives on the GCS host: ${names.join(', ')}`);
    // The stats file is rewritten each second: wait for the job's requests to show.
    const { value: requests } = await waitFor('the GCS host to count the job', 10_000, async () => (gcs.stats().requests > requestsBefore + 24 ? gcs.stats().requests : undefined));
    console.log(`hosts-gcs: job of ${data.length} bytes (24 chunks) made ${requests - requestsBefore} requests to the GCS host ${gcs.url}; chunks per host ${JSON.stringify(job.chunkNodes)}; operations ${JSON.stringify(gcs.stats().operations)}`);
  } finally {
    await client.close();
  }
});

test('teardown removes the GCS host with the others', async () => {
  const prefix = hosts!.prefix;
  await hosts!.destroy();
  hosts = undefined;
  assert.not.ok(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(prefix), 'a namespace is left');
  assert.not.ok(execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).includes(prefix), 'a link is left');
});

test.after(async () => {
  await hosts?.destroy();
});

test.run();
