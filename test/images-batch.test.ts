/**
 * Batches of images across a real 3-node cluster (real processes, real client over WebSockets, the
 * folder blob store shared by the nodes): one images job whose tasks are the images, assigned like
 * chunks with leases and retries; the archive holds every image in input order. Images are generated
 * here with sharp.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import * as tar from 'tar-stream';
import { connect, DcasClientError, downloadImage, uploadImages, type DcasClient, type JobView } from '../node/client/index.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { runDcas } from './support/dcas-process.ts';

let cluster: TestCluster;
let folder: string;
const imageCount = 210;

test.before(async () => {
  cluster = await createTestCluster({ nodes: 3, overrides: { jobs: { leaseMs: 4_000, attemptsMax: 5 } } });
  for (const config of cluster.configs) cluster.start(config.name);
  await waitFor('3 alive members and one coordinator', 60_000, () => cluster.agreed(3), () => cluster.logs());
  folder = await mkdtemp(join(tmpdir(), 'dcas-images-batch-'));
});

test.after(async () => {
  await cluster.destroy();
  await rm(folder, { recursive: true, force: true });
});

/** A small photo-like PNG, different for every `seed`, written with little compression so it shrinks. */
async function photo(seed: number): Promise<Buffer> {
  const background = `#${((seed * 2654435761) >>> 8).toString(16).padStart(6, '0').slice(0, 6)}`;
  const noise = await sharp({ create: { width: 48 + (seed % 5) * 8, height: 40, channels: 3, background, noise: { type: 'gaussian', mean: 128, sigma: 30 } } })
    .png()
    .toBuffer();
  return sharp(noise).blur(1.5).png({ compressionLevel: 0 }).toBuffer();
}

async function pixels(bytes: Uint8Array): Promise<Buffer> {
  return sharp(bytes).ensureAlpha().raw().toBuffer();
}

async function withClient<T>(name: string, fn: (client: DcasClient) => Promise<T>): Promise<T> {
  const client = await connect({ server: cluster.gateway(name), token: cluster.configs.find((config) => config.name === name)?.token });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

/** Every entry of a tar, in order. */
async function entriesOf(archive: Uint8Array): Promise<Array<{ name: string; bytes: Buffer }>> {
  const extract = tar.extract();
  extract.end(Buffer.from(archive));
  const entries: Array<{ name: string; bytes: Buffer }> = [];
  for await (const entry of extract) {
    const pieces: Buffer[] = [];
    for await (const piece of entry) pieces.push(piece as Buffer);
    entries.push({ name: entry.header.name, bytes: Buffer.concat(pieces) });
  }
  return entries;
}

async function coordinator(): Promise<string> {
  const { value } = await waitFor('a coordinator', 30_000, async () => (await cluster.status('node1'))?.coordinator ?? (await cluster.status('node2'))?.coordinator ?? undefined);
  return value;
}

test('a batch of 210 PNGs and one non-image: every node codes images, a worker killed mid-batch loses none, the archive holds every image pixel-identical', async () => {
  const batch = join(folder, 'batch');
  await mkdir(join(batch, 'sub'), { recursive: true });
  const inputs = new Map<string, Buffer>();
  for (let i = 0; i < imageCount; i++) {
    const name = i % 10 === 0 ? `sub/img-${String(i).padStart(3, '0')}.png` : `img-${String(i).padStart(3, '0')}.png`;
    inputs.set(name, await photo(i));
    await writeFile(join(batch, name), inputs.get(name)!);
  }
  inputs.set('notes.txt', Buffer.from('not an image at all\n'));
  await writeFile(join(batch, 'notes.txt'), inputs.get('notes.txt')!);

  const leader = await coordinator();
  const gatewayNode = leader === 'node1' ? 'node2' : 'node1';
  const victim = ['node1', 'node2', 'node3'].find((name) => name !== leader && name !== gatewayNode)!;
  let killedAfter: JobView | undefined;
  const job = await withClient(gatewayNode, async (client) => {
    const uploaded = await uploadImages(client, [batch], { mode: 'png-lossless' });
    // The victim is killed once it has coded some images and most of the batch is still to do.
    const watching = await client.watch(uploaded.id, (view) => {
      if (killedAfter === undefined && (view.chunkNodes[victim] ?? 0) >= 3 && view.chunksDone < view.chunks - 30) {
        killedAfter = view;
        void cluster.stop(victim, 'SIGKILL');
      }
    });
    try {
      return await client.waitForCompletion(uploaded.id);
    } finally {
      await watching.stop();
    }
  });
  assert.ok(killedAfter !== undefined, `${victim} was killed mid-batch`);
  assert.is(job.state, 'completed', job.error ?? '');
  assert.is(job.chunks, imageCount + 1, 'one task per image');
  for (const name of ['node1', 'node2', 'node3']) assert.ok((job.chunkNodes[name] ?? 0) > 0, `${name} coded images: ${JSON.stringify(job.chunkNodes)}`);
  assert.ok(job.image !== undefined);
  assert.is(job.image!.mode, 'png-lossless');
  assert.is(job.image!.images.length, imageCount + 1);
  assert.is(job.image!.imagesFailed, 1);
  const notes = job.image!.images.find((image) => image.name === 'notes.txt')!;
  assert.ok(notes.kept);
  assert.match(notes.error ?? '', /NOT_IMAGE/);
  assert.is(job.originalSize, [...inputs.values()].reduce((sum, bytes) => sum + bytes.length, 0));
  assert.is(job.image!.outputBytes, job.image!.images.reduce((sum, image) => sum + image.outputBytes!, 0));
  assert.ok(job.image!.outputBytes! < job.originalSize!, 'the batch shrank');

  const archive = await withClient('node1' === victim ? 'node2' : 'node1', async (client) => {
    const pieces: Uint8Array[] = [];
    for await (const piece of await client.download(job.id, { compressed: true })) pieces.push(piece);
    return Buffer.concat(pieces);
  });
  assert.is(archive.length, job.compressedSize);
  const entries = await entriesOf(archive);
  assert.equal(
    entries.map((entry) => entry.name),
    job.image!.images.map((image) => image.name),
    'the archive lists the images in input order',
  );
  assert.equal(new Set(entries.map((entry) => entry.name)), new Set(inputs.keys()), 'the archive holds every image');
  for (const entry of entries) {
    const input = inputs.get(entry.name)!;
    const facts = job.image!.images.find((image) => image.name === entry.name)!;
    assert.is(entry.bytes.length, facts.outputBytes, `${entry.name}: output bytes as recorded`);
    assert.ok(entry.bytes.length <= input.length, `${entry.name}: never larger than its input`);
    if (entry.name === 'notes.txt') assert.ok(entry.bytes.equals(input), 'the non-image is kept as it was');
    else assert.ok((await pixels(entry.bytes)).equals(await pixels(input)), `${entry.name}: pixel-identical`);
  }

  const one = join(folder, 'one.png');
  const name = entries[5].name;
  await withClient(gatewayNode, (client) => downloadImage(client, job.id, name, one));
  assert.ok((await readFile(one)).equals(entries[5].bytes), 'one image downloads by its name');
  const missing = await withClient(gatewayNode, (client) => downloadImage(client, job.id, 'no-such.png', join(folder, 'none.png')).catch((error: unknown) => error));
  assert.instance(missing, DcasClientError);
  assert.match((missing as Error).message, /no image "no-such.png"/);
  cluster.start(victim);
});

test('dcas upload --image png-lossy --quality 60-80 of two files, --wait: completed; download --image gives a smaller valid PNG', async () => {
  const cli = join(folder, 'cli');
  await mkdir(cli, { recursive: true });
  await writeFile(join(cli, 'a.png'), await photo(1001));
  await writeFile(join(cli, 'b.png'), await photo(1002));
  const node = cluster.configs[0];
  const connection = ['--server', cluster.gateway(node.name), ...(node.token ? ['--token', node.token] : [])];
  const uploaded = await runDcas(['upload', '--image', 'png-lossy', '--quality', '60-80', '--wait', '--json', ...connection, 'a.png', 'b.png'], cli);
  assert.is(uploaded.code, 0, uploaded.stderr);
  const job = JSON.parse(uploaded.stdout) as JobView;
  assert.is(job.state, 'completed');
  assert.is(job.image?.quality, '60-80');
  assert.equal(job.image?.images.map((image) => image.name), ['a.png', 'b.png']);
  const status = await runDcas(['status', job.id, ...connection], cli);
  assert.is(status.code, 0, status.stderr);
  assert.match(status.stdout, /chunks {4}2\/2 images/);
  assert.match(status.stdout, /images {4}png-lossy 60-80: 2 coded, \d kept as they were, 0 not images, /);
  const downloaded = await runDcas(['download', job.id, '--image', 'b.png', '-o', 'b-small.png', ...connection], cli);
  assert.is(downloaded.code, 0, downloaded.stderr);
  const small = await readFile(join(cli, 'b-small.png'));
  assert.ok(small.length < (await readFile(join(cli, 'b.png'))).length, 'smaller');
  assert.is((await sharp(small).metadata()).format, 'png');
});

test('bad batches: two files without --image and a bad quality are usage errors (exit 2); an unknown image mode and a non-tar upload are refused with their reasons', async () => {
  const cli = join(folder, 'cli');
  const twoFiles = await runDcas(['upload', '--server', cluster.gateway('node1'), 'a.png', 'b.png'], cli);
  assert.is(twoFiles.code, 2);
  assert.match(twoFiles.stderr, /add --image MODE/);
  const quality = await runDcas(['upload', '--image', 'png-lossy', '--quality', '90-20', 'a.png'], cli);
  assert.is(quality.code, 2);
  assert.match(quality.stderr, /--quality/);
  await withClient('node1', async (client) => {
    const unknown = await client.upload(new Uint8Array(1024), { fileName: 'x.tar', mode: 'images', image: { mode: 'gif-magic' } }).catch((error: unknown) => error);
    assert.instance(unknown, DcasClientError);
    assert.match((unknown as Error).message, /image mode "gif-magic": choose one of png-lossless, png-lossy, jpeg/);
    const notTar = await client.upload(Buffer.alloc(4096, 7), { fileName: 'x.tar', mode: 'images', image: { mode: 'png-lossless' } }).catch((error: unknown) => error);
    assert.instance(notTar, DcasClientError);
    assert.match((notTar as Error).message, /not a valid tar of images/, `the refusal said: ${(notTar as Error).message}`);
  });
});

test.run();
