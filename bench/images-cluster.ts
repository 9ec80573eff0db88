/**
 * The cluster part of the image benchmark: the same corpus as one images job (`uploadImages`, as
 * `dcas upload --image` sends it) on a local 1-node and then a 3-node cluster started as a user starts
 * one (`dcas cluster up`), timed from the first byte sent to the job completed. Reports images/s, the
 * ratio (the images' output bytes over their input bytes) and which node coded how many images.
 * On one machine the nodes share its cores, so three nodes measure the cost of spreading, not scaling.
 */
import type { ImageMode } from '../node/codec/index.ts';
import { connect, uploadImages } from '../node/client/index.ts';
import type { CorpusImage } from './images-corpus.ts';
import type { ImageBenchRow } from './images.ts';
import { startLocalCluster } from '../tools/local-cluster.ts';

/** A row of the image bench, run as one images job on a local cluster of `nodes` nodes. */
export interface ClusterImageRow extends ImageBenchRow {
  nodes: number;
  chunkNodes: Record<string, number>;
}

/** Completion is awaited at most this long per run: a stuck job is a failure, not a hang. */
const jobWaitMsMax = 30 * 60 * 1000;

async function runOnCluster(nodes: number, corpus: readonly CorpusImage[], mode: ImageMode, quality: string | undefined): Promise<ClusterImageRow> {
  const cluster = await startLocalCluster({ nodes });
  try {
    const client = await connect({ server: cluster.nodes[0].server, deadlineAtMs: Date.now() + jobWaitMsMax });
    try {
      const started = performance.now();
      const uploaded = await uploadImages(client, corpus.map((image) => image.path), { mode, quality, fileName: 'bench.tar' });
      const job = await client.waitForCompletion(uploaded.id);
      const seconds = (performance.now() - started) / 1000;
      if (job.state !== 'completed' || job.image === undefined) throw new Error(`images job ${job.id} on ${nodes} node(s) ended ${job.state}: ${job.error ?? 'no reason'}\n${cluster.logTail()}`);
      const inputBytes = job.originalSize ?? 0;
      const outputBytes = job.image.outputBytes ?? 0;
      const name = `cluster ${nodes} node${nodes === 1 ? '' : 's'} ${mode}${quality === undefined ? '' : ` ${quality}`}`;
      return { name, nodes, images: job.chunks, inputBytes, outputBytes, ratio: outputBytes / inputBytes, seconds, imagesPerSecond: job.chunks / seconds, chunkNodes: job.chunkNodes };
    } finally {
      await client.close();
    }
  } finally {
    await cluster.stop();
  }
}

/** One node, then three, on the same corpus and mode. */
export async function benchImagesCluster(options: { corpus: readonly CorpusImage[]; mode: ImageMode; quality?: string; log: (line: string) => void }): Promise<ClusterImageRow[]> {
  const rows: ClusterImageRow[] = [];
  for (const nodes of [1, 3]) {
    const measured = await runOnCluster(nodes, options.corpus, options.mode, options.quality);
    rows.push(measured);
    const spread = Object.entries(measured.chunkNodes).map(([node, count]) => `${node}: ${count}`).join(', ');
    options.log(`${measured.name.padEnd(34)} ${measured.inputBytes} -> ${measured.outputBytes} bytes  ratio ${measured.ratio.toFixed(3)}  ${measured.imagesPerSecond.toFixed(2)} images/s  (${measured.seconds.toFixed(1)} s; ${spread})`);
  }
  return rows;
}
