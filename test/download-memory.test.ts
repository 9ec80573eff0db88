/**
 * A node stays bounded while it serves a large download (the 300 MB bound of every node). The node
 * decodes the job's chunks and sends them; the record each chunk is read into goes whole to its codec
 * thread, which frees it once decoded, and each decoded chunk, once sent, is decoded into again or freed
 * (codec/buffers.ts) rather than left for V8's next major collection. Before the first of these, a
 * 512 MB download took a 1-node cluster's node from about 230 MB to 573-634 MB (measured with
 * `dcas download`, VmHWM); on the 160 MB file here, from 221 to 303 MB (78 MiB; now 213 to 241 MB).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from '../node/client/index.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { textLike, withTempDir } from './helpers.ts';

const fileBytes = 160 * 1000 * 1000;
/** The bound every node keeps (issue 9's standard), in bytes of resident memory at its peak. */
const nodePeakBytesMax = 300 * 1000 * 1000;

async function vmHwm(pid: number): Promise<number> {
  return Number(/VmHWM:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

let cluster: TestCluster;

test.before(async () => {
  cluster = await createTestCluster({ nodes: 1 });
  cluster.start('node1');
  await waitFor('one node and its coordinator', 60_000, () => cluster.agreed(1), () => cluster.logs());
});

test.after(async () => {
  await cluster.destroy();
});

test('downloading a 160 MB job keeps its node under 300 MB, and what it serves is the file', async () => {
  await withTempDir(async (dir) => {
    const input = join(dir, 'big.txt');
    await writeFile(input, textLike(fileBytes, 11));
    const client = await connect({ server: cluster.gateway('node1'), requestTimeoutMs: 120_000 });
    try {
      const uploaded = await client.upload(input);
      const job = await client.waitForCompletion(uploaded.id);
      assert.is(job.state, 'completed', job.error ?? '');
      const pid = cluster.pid('node1')!;
      const before = await vmHwm(pid);
      const output = join(dir, 'back.txt');
      await client.downloadToFile(job.id, output);
      const after = await vmHwm(pid);
      console.log(`  download: node1 peak RSS ${(before / 1e6).toFixed(0)} MB after the upload, ${(after / 1e6).toFixed(0)} MB after the download`);
      assert.ok((await readFile(output)).equals(await readFile(input)));
      assert.ok(after < nodePeakBytesMax, `node1 peaked at ${(after / 1e6).toFixed(0)} MB serving the download`);
      assert.ok(after - before < 64 * 1024 * 1024, `the download took node1's peak up by ${((after - before) / 1048576).toFixed(0)} MiB`);
    } finally {
      await client.close();
    }
  });
});

test.run();
