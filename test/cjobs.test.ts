/**
 * Cluster jobs with a codec and a format, on a real local 3-node cluster (real processes, libp2p,
 * LevelDB, codec threads, the folder blob store): every codec round trips byte-identical; a job in a
 * standard format downloads as a file the system tool decodes; a corrupted chunk is named on download;
 * a job's line and word counts equal `wc -l -w`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect, type DcasClient, type JobView } from '../node/client/index.ts';
import { codecs, countText, format, joinTextCounts } from '../node/codec/index.ts';
import { loadKernel } from '../node/codec/kernel.ts';
import type { JobRecord } from '../node/jobs/records.ts';
import { toView } from '../node/jobs/service.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { runDcas } from './support/dcas-process.ts';
import { randomBytesSeeded, textLike, withTempDir } from './helpers.ts';

let cluster: TestCluster;
const chunkSize = format.chunkBytesMin;

test.before(async () => {
  // Gateways stage chunks raw, so the coordinator assigns them to workers on every node: the job's codec
  // travels with the job record, not with the gateway that received the bytes.
  cluster = await createTestCluster({ nodes: 3, overrides: { jobs: { codeAtGateway: false } } });
  for (const config of cluster.configs) cluster.start(config.name);
  await waitFor('3 alive members and one coordinator', 60_000, () => cluster.agreed(3), () => cluster.logs());
});

test.after(async () => {
  await cluster.destroy();
});

async function withClient<T>(fn: (client: DcasClient) => Promise<T>): Promise<T> {
  const client = await connect({ server: cluster.gateway('node1'), requestTimeoutMs: 60_000 });
  try {
    return await fn(client);
  } finally {
    await client.close();
  }
}

async function downloadAll(client: DcasClient, jobId: string, compressed: boolean): Promise<Buffer> {
  const pieces: Uint8Array[] = [];
  for await (const piece of await client.download(jobId, { compressed })) pieces.push(piece);
  return Buffer.concat(pieces);
}

async function completed(client: DcasClient, data: Uint8Array, options: { fileName: string; codec?: string; format?: string; chunkSize?: number }): Promise<JobView> {
  const uploaded = await client.upload(data, { chunkSize, ...options });
  const job = await client.waitForCompletion(uploaded.id);
  assert.is(job.state, 'completed', job.error ?? '');
  return job;
}

/** Awaits `promise` and asserts it failed with a message matching `pattern`. */
async function rejectsWith(promise: Promise<unknown>, pattern: RegExp, what = ''): Promise<void> {
  const outcome = await promise.then(
    () => undefined,
    (error: unknown) => error as Error,
  );
  assert.ok(outcome !== undefined, `expected a failure ${what}`);
  assert.match(outcome.message, pattern, what);
}

/** `wc -l -w` of bytes, in the C locale. */
function wc(bytes: Uint8Array): { lines: number; words: number } {
  const [lines, words] = execFileSync('wc', ['-l', '-w'], { input: bytes, env: { ...process.env, LC_ALL: 'C' } })
    .toString()
    .trim()
    .split(/\s+/)
    .map(Number);
  return { lines, words };
}

test('every codec: a cluster job round trips byte-identical and records its codec, level and format', async () => {
  const data = Buffer.concat([textLike(150_000, 3), randomBytesSeeded(20_000, 4), textLike(40_000, 5)]);
  await withClient(async (client) => {
    for (const codec of codecs) {
      const job = await completed(client, data, { fileName: `round-${codec.name}.bin`, codec: codec.name });
      assert.is(job.codec, codec.name);
      assert.is(job.level, codec.levelDefault);
      assert.is(job.format, 'dcz');
      assert.is(job.chunks, Math.ceil(data.length / chunkSize));
      const original = await downloadAll(client, job.id, false);
      assert.ok(original.equals(data), `${codec.name}: the original downloads byte-identical`);
      const compressed = await downloadAll(client, job.id, true);
      assert.is(compressed.length, job.compressedSize);
      assert.is(compressed[10], codec.id, `${codec.name}: the .dcz header's codec byte`);
    }
  });
});

test('a .dcz of another codec (brotli:7) uploaded with mode decompress is decoded across the cluster', async () => {
  const data = Buffer.concat([textLike(200_000, 31), randomBytesSeeded(30_000, 32)]);
  await withClient(async (client) => {
    const coded = await completed(client, data, { fileName: 'b.bin', codec: 'brotli:7' });
    const dcz = await downloadAll(client, coded.id, true);
    const uploaded = await client.upload(dcz, { fileName: 'b.bin.dcz', mode: 'decompress' });
    const job = await client.waitForCompletion(uploaded.id);
    assert.is(job.state, 'completed', job.error ?? '');
    assert.is(job.codec, 'brotli');
    assert.is(job.level, 7);
    assert.ok((await downloadAll(client, job.id, false)).equals(data));
    assert.ok((await downloadAll(client, job.id, true)).equals(dcz), 'the uploaded .dcz is kept as it was');
  });
});

test('a level is kept: zstd:19 is recorded and its .dcz header says so', async () => {
  await withClient(async (client) => {
    const job = await completed(client, textLike(100_000, 8), { fileName: 'level.txt', codec: 'zstd:19' });
    assert.is(job.codec, 'zstd');
    assert.is(job.level, 19);
    const compressed = await downloadAll(client, job.id, true);
    assert.is(compressed[11], 19);
  });
});

test('an unknown codec, a bad level, or a format with another codec is refused at upload, naming the valid ones', async () => {
  await withClient(async (client) => {
    const data = textLike(1000, 1);
    await rejectsWith(client.upload(data, { fileName: 'a.txt', codec: 'nope' }), /unknown codec "nope": choose one of huffman, store, zstd/);
    await rejectsWith(client.upload(data, { fileName: 'a.txt', codec: 'zstd:30' }), /level 30 is not valid \(levels 1-19/);
    await rejectsWith(client.upload(data, { fileName: 'a.txt', codec: 'xz', format: 'gz' }), /--format gz needs --codec gzip, not xz/);
    await rejectsWith(client.upload(data, { fileName: 'a.txt', format: 'zip' }), /unknown format "zip": choose one of dcz, zst, gz, xz, bz2/);
  });
});

const tools: Record<string, string[]> = { zst: ['zstd', '-d', '-c', '-q'], gz: ['gzip', '-d', '-c'], xz: ['xz', '-d', '-c'], bz2: ['bzip2', '-d', '-c'] };

test('dcas upload --format zst|gz|xz|bz2: the compressed download is read by the system tool; the original verifies its SHA-256', async () => {
  await withTempDir(async (dir) => {
    const data = Buffer.concat([textLike(200_000, 11), Buffer.from('tail without newline')]);
    await writeFile(join(dir, 'notes.txt'), data);
    const server = ['--server', cluster.gateway('node2')];
    let last = '';
    for (const [suffix, tool] of Object.entries(tools)) {
      const uploaded = await runDcas(['upload', 'notes.txt', '--format', suffix, '--chunk-size', '64KiB', '--wait', '--json', ...server], dir);
      assert.is(uploaded.code, 0, uploaded.stderr);
      const job = JSON.parse(uploaded.stdout) as JobView;
      assert.is(job.format, suffix);
      last = job.id;
      const got = await runDcas(['download', job.id, '--compressed', '-o', `notes.${suffix}`, ...server], dir);
      assert.is(got.code, 0, got.stderr);
      const compressed = await readFile(join(dir, `notes.${suffix}`));
      assert.is(compressed.length, job.compressedSize);
      const decoded = execFileSync(tool[0], tool.slice(1), { input: compressed, maxBuffer: 64 * 1024 * 1024 });
      assert.ok(decoded.equals(data), `${tool[0]} restores the original from the .${suffix}`);
      const original = await runDcas(['download', job.id, '-o', `notes.${suffix}.out`, '--json', ...server], dir);
      assert.is(original.code, 0, original.stderr);
      assert.is(JSON.parse(original.stdout).verified, true);
      assert.ok((await readFile(join(dir, `notes.${suffix}.out`))).equals(data));
    }
    const expected = wc(data);
    const shown = await runDcas(['status', last, ...server], dir);
    assert.is(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, /^codec\s+bzip2:9, format bz2$/m);
    assert.match(shown.stdout, new RegExp(`^text\\s+${expected.lines} lines, ${expected.words} words$`, 'm'));
    const listed = await runDcas(['jobs', ...server], dir);
    assert.match(listed.stdout, new RegExp(`^${last} .* bzip2:9\\s+bz2\\s+notes\\.txt$`, 'm'));
    // The CLI refuses a mismatch before connecting, as compress does: usage, exit 2.
    const mismatch = await runDcas(['upload', 'notes.txt', '--format', 'gz', '--codec', 'xz', ...server], dir);
    assert.is(mismatch.code, 2);
    assert.match(mismatch.stderr, /--format gz needs --codec gzip, not xz/);
  });
});

test('the HTTP upload takes codec and format; the job JSON shows them', async () => {
  const data = textLike(90_000, 13);
  const base = cluster.gateway('node3');
  const response = await fetch(`${base}/v1/jobs?name=h.txt&codec=gzip:9&format=gz&chunkSize=65536&wait=true`, { method: 'POST', body: data });
  assert.is(response.status, 201);
  const job = (await response.json()) as JobView;
  assert.is(job.state, 'completed', job.error ?? '');
  assert.is(job.codec, 'gzip');
  assert.is(job.level, 9);
  assert.is(job.format, 'gz');
  const compressed = Buffer.from(await (await fetch(`${base}/v1/jobs/${job.id}/compressed`)).arrayBuffer());
  assert.ok(execFileSync('gzip', ['-d', '-c'], { input: compressed }).equals(Buffer.from(data)));
  // A range of the original crosses a chunk boundary: only the pieces covering it are decoded.
  const ranged = await fetch(`${base}/v1/jobs/${job.id}/original`, { headers: { range: 'bytes=65000-70999' } });
  assert.is(ranged.status, 206);
  assert.ok(Buffer.from(await ranged.arrayBuffer()).equals(Buffer.from(data.subarray(65000, 71000))));
  const refused = await fetch(`${base}/v1/jobs?name=h.txt&codec=nope`, { method: 'POST', body: data });
  assert.is(refused.status, 400);
  assert.match(await refused.text(), /unknown codec/);
});

/**
 * Flips one byte in the middle of chunk `index`'s frame of a job's stored object. A folder-store blob
 * file is the blob's bytes, then the store's own footer: only the first compressedSize bytes are ours.
 */
async function corruptChunk(job: JobView, index: number): Promise<void> {
  const path = join(cluster.dataDir, 'blobs', 'jobs', `${job.id}.dcz`);
  const file = await readFile(path);
  const bytes = file.subarray(0, job.compressedSize!);
  let entries: format.ChunkEntry[];
  let frameStart: number;
  if (job.format === 'dcz') {
    const trailer = format.decodeTrailer(bytes.subarray(bytes.length - format.trailerBytes));
    entries = format.decodeIndex(bytes.subarray(trailer.indexOffset, bytes.length - format.trailerBytes));
    frameStart = entries[index].offset + format.chunkHeaderBytes;
  } else {
    const pieces = await readFile(join(cluster.dataDir, 'blobs', 'jobs', `${job.id}.pieces`));
    entries = format.decodeIndex(pieces.subarray(0, format.indexBytes(job.chunks)));
    frameStart = entries[index].offset;
  }
  bytes[frameStart + (entries[index].compressedBytes >>> 1)] ^= 0x55;
  await writeFile(path, file);
}

test('a corrupted chunk of a job (.dcz, and each standard format) is detected and named on download', async () => {
  const data = textLike(4 * chunkSize, 17);
  await withClient(async (client) => {
    for (const choice of [{ codec: 'huffman' }, { codec: 'zstd' }, { format: 'zst' }, { format: 'gz' }, { format: 'xz' }, { format: 'bz2' }]) {
      const job = await completed(client, data, { fileName: 'victim.txt', ...choice });
      await corruptChunk(job, 2);
      await rejectsWith(downloadAll(client, job.id, false), new RegExp(`job ${job.id}: chunk 2: `), JSON.stringify(choice));
    }
  });
});

test('a job record from before codecs (codec "dcas-huffman-v1", no level, format or counts) reads as huffman in a .dcz', () => {
  const old = {
    id: '0123456789abcdef',
    state: 'completed',
    mode: 'compress',
    fileName: 'old.txt',
    chunkSize: 65536,
    gateway: 'node1',
    chunks: 1,
    originalSize: 10,
    compressedSize: 80,
    sha256: 'ab'.repeat(32),
    mime: 'text/plain',
    codec: 'dcas-huffman-v1',
    timestamps: {},
    chunkNodes: { node1: 1 },
    output: 'jobs/0123456789abcdef.dcz',
    error: null,
    processSeconds: 0.1,
  } as JobRecord;
  const view = toView(old, []);
  assert.is(view.codec, 'huffman');
  assert.is(view.level, 0);
  assert.is(view.format, 'dcz');
  assert.is(view.lines, null);
  assert.is(view.words, null);
});

test('line and word counts: the kernel and the reference loop agree with wc, and joined pieces count as the whole', () => {
  const kernel = loadKernel();
  const samples = ['', 'a', ' a b ', 'one two\nthree\r\nfour\tfive\vsix\fseven', 'word', '\n\n', 'ab cd', '  lead and trail  ', 'a\0b', '\u0001 \u0001', '\u0001a\u0001 b', 'x\u00ff\u00fe y', '\u0000\u0000'];
  for (const sample of samples) {
    const bytes = Buffer.from(sample);
    const expected = wc(bytes);
    const whole = kernel.countText(bytes);
    assert.equal({ lines: whole.lines, words: whole.words }, expected, JSON.stringify(sample));
    assert.equal(countText(bytes), whole, `reference loop on ${JSON.stringify(sample)}`);
    for (let cut = 1; cut < bytes.length; cut++) {
      for (let second = cut; second < bytes.length; second++) {
        const parts = [bytes.subarray(0, cut), bytes.subarray(cut, second), bytes.subarray(second)].filter((part) => part.length > 0);
        assert.equal(joinTextCounts(parts.map((part) => kernel.countText(part))), expected, `${JSON.stringify(sample)} cut at ${cut} and ${second}`);
      }
    }
  }
  // The kernel takes 16 bytes at a time: random mixes of word, whitespace and pass-over bytes, of every
  // length up to a few blocks, against wc.
  const alphabet = [0x20, 0x0a, 0x41, 0x00, 0xff, 0x09, 0x0d, 0x7e, 0x7f, 0x21, 0x01, 0x0b];
  const mixes = Array.from({ length: 120 }, (_, seed) => Buffer.from(randomBytesSeeded(seed * 3, seed + 1)).map((byte) => alphabet[byte % alphabet.length]));
  const all = Buffer.concat(mixes.flatMap((mix) => [mix, Buffer.from('\n')]));
  const counted = mixes.map((mix) => kernel.countText(mix));
  for (const [i, mix] of mixes.entries()) assert.equal(counted[i], countText(mix), `mix ${i}`);
  assert.equal(joinTextCounts(mixes.flatMap((mix) => [kernel.countText(mix), kernel.countText(Buffer.from('\n'))])), wc(all));
});

test('a job counts lines and words as `wc -l -w` does, over chunk sizes that split words', async () => {
  const longWord = Buffer.alloc(150_000, 'x'); // spans chunks of 64 KiB and 128 KiB
  const files: Record<string, Buffer> = {
    'text.txt': Buffer.from(textLike(300_000, 19)),
    'no-trailing-newline.txt': Buffer.concat([Buffer.from(textLike(140_000, 23)), Buffer.from('last words')]),
    'crlf-tabs.txt': Buffer.from('alpha\tbeta\r\ngamma  delta\r\n\v\fepsilon\r\n'.repeat(6_000)),
    'long-word.txt': Buffer.concat([Buffer.from('a b '), longWord, Buffer.from(' c\n'), longWord]),
    'binary.bin': Buffer.from(randomBytesSeeded(200_000, 29)),
    'empty.txt': Buffer.alloc(0),
  };
  await withClient(async (client) => {
    for (const [fileName, data] of Object.entries(files)) {
      const expected = wc(data);
      for (const size of [64 * 1024, 128 * 1024, 1024 * 1024]) {
        const job = await completed(client, data, { fileName, chunkSize: size });
        assert.equal({ lines: job.lines, words: job.words }, expected, `${fileName} in chunks of ${size}`);
      }
    }
  });
});

test.run();
