/**
 * The cluster end to end, through the client library a user would use: upload-to-completed
 * throughput of one large file on clusters of several sizes, with the job's own phase times and each
 * node's peak memory; and a load test of many concurrent uploads spread over the gateways.
 */

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import { connect, DcasClientError, type JobView } from '../node/client/index.ts';
import type { ClusterRun, LoadSection } from './results.ts';
import { startLocalCluster, type LocalCluster } from '../tools/local-cluster.ts';
import { megabytesPerSecond, quantile, spread } from './stats.ts';

/** An upload that has not completed by then counts as a TIMEOUT error. */
const uploadTimeoutMs = 600_000;

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const block of createReadStream(path)) hash.update(block as Buffer);
  return hash.digest('hex');
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${what}: not completed within ${ms} ms`), { code: 'TIMEOUT' })), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Connects, uploads, follows the job to its end; the view it ended in, and seconds from connect. */
async function uploadAndWait(server: string, source: string | Uint8Array, fileName: string, chunkSize: number | undefined): Promise<{ job: JobView; seconds: number }> {
  const started = performance.now();
  const client = await connect({ server });
  try {
    const uploaded = await client.upload(source, { fileName, ...(chunkSize === undefined ? {} : { chunkSize }) });
    const job = await client.waitForCompletion(uploaded.id);
    return { job, seconds: (performance.now() - started) / 1000 };
  } finally {
    await client.close();
  }
}

export interface ThroughputOptions {
  nodeCounts: number[];
  filePath: string;
  runs: number;
  chunkSize?: number;
  /** Called with the 3-node (or largest) cluster still running, before it stops: the load test. */
  whileUp?: (cluster: LocalCluster) => Promise<void>;
  onProgress?: (message: string) => void;
}

export async function benchClusterThroughput(options: ThroughputOptions): Promise<ClusterRun[]> {
  const expectedSha256 = await sha256File(options.filePath);
  const runs: ClusterRun[] = [];
  for (const nodes of options.nodeCounts) {
    const cluster = await startLocalCluster({ nodes });
    try {
      options.onProgress?.(`cluster: ${nodes} node(s) ready in ${cluster.startSeconds.toFixed(1)} s`);
      const jobs: Array<{ job: JobView; seconds: number }> = [];
      for (let run = 0; run < options.runs; run++) {
        const result = await withTimeout(uploadAndWait(cluster.nodes[0].server, options.filePath, basename(options.filePath), options.chunkSize), uploadTimeoutMs, `${nodes}-node upload`);
        const { job } = result;
        if (job.state !== 'completed') throw new Error(`${nodes}-node cluster: job ${job.id} ended ${job.state}: ${job.error}\n${cluster.logTail()}`);
        if (job.sha256 !== expectedSha256) throw new Error(`${nodes}-node cluster: job ${job.id} has SHA-256 ${job.sha256}, the file has ${expectedSha256}`);
        jobs.push(result);
        options.onProgress?.(`cluster: ${nodes} node(s) run ${run + 1}: ${megabytesPerSecond(job.originalSize ?? 0, result.seconds).toFixed(1)} MB/s`);
      }
      const phase = (key: keyof JobView['phases']) => spread(jobs.map(({ job }) => job.phases[key] ?? 0));
      const last = jobs[jobs.length - 1].job;
      runs.push({
        nodes,
        throughputMBps: spread(jobs.map(({ job, seconds }) => megabytesPerSecond(job.originalSize ?? 0, seconds))),
        seconds: spread(jobs.map(({ seconds }) => seconds)),
        phases: { upload: phase('uploadSeconds'), process: phase('processSeconds'), merge: phase('mergeSeconds') },
        ratio: last.ratio ?? (last.compressedSize ?? 0) / Math.max(last.originalSize ?? 1, 1),
        chunkNodes: last.chunkNodes,
        peakRssBytes: cluster.peakRssBytes(),
        startSeconds: cluster.startSeconds,
      });
      if (nodes === Math.max(...options.nodeCounts) && options.whileUp !== undefined) await options.whileUp(cluster);
    } finally {
      await cluster.stop();
    }
  }
  return runs;
}

export interface LoadOptions {
  concurrency: number;
  uploadBytes: number;
  rounds: number;
  /** At least concurrency × uploadBytes bytes: upload i sends its own slice. */
  data: Uint8Array;
  chunkSize?: number;
  onProgress?: (message: string) => void;
}

function errorKind(error: unknown): string {
  if (error instanceof DcasClientError) return error.code;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : (error as Error).name ?? 'Error';
}

/** C uploads at once, upload i to gateway i mod N, repeated for each round on the same cluster. */
export async function benchLoad(cluster: LocalCluster, options: LoadOptions): Promise<LoadSection> {
  if (options.data.length < options.concurrency * options.uploadBytes) throw new RangeError('load test: data is smaller than concurrency × upload size');
  const latencies: number[] = [];
  const errors: Record<string, number> = {};
  const throughputs: number[] = [];
  let successes = 0;
  const peaksReset = cluster.resetPeaks();
  for (let round = 0; round < options.rounds; round++) {
    const started = performance.now();
    let bytesDone = 0;
    await Promise.all(
      Array.from({ length: options.concurrency }, async (_, index) => {
        const server = cluster.nodes[index % cluster.nodes.length].server;
        const slice = options.data.subarray(index * options.uploadBytes, (index + 1) * options.uploadBytes);
        try {
          const { job, seconds } = await withTimeout(uploadAndWait(server, slice, `load-${round}-${index}.jsonl`, options.chunkSize), uploadTimeoutMs, `load upload ${index}`);
          if (job.state !== 'completed') {
            errors.JOB_FAILED = (errors.JOB_FAILED ?? 0) + 1;
            return;
          }
          successes++;
          bytesDone += slice.length;
          latencies.push(seconds);
        } catch (error) {
          const kind = errorKind(error);
          errors[kind] = (errors[kind] ?? 0) + 1;
        }
      }),
    );
    throughputs.push(megabytesPerSecond(bytesDone, (performance.now() - started) / 1000));
    options.onProgress?.(`load: round ${round + 1}: ${throughputs[round].toFixed(1)} MB/s`);
  }
  const sorted = [...latencies].sort((a, b) => a - b);
  const percentile = (q: number) => (sorted.length === 0 ? 0 : quantile(sorted, q));
  return {
    nodes: cluster.nodes.length,
    concurrency: options.concurrency,
    uploadBytes: options.uploadBytes,
    rounds: options.rounds,
    uploads: options.concurrency * options.rounds,
    successes,
    errors,
    latencySeconds: { p50: percentile(0.5), p95: percentile(0.95), p99: percentile(0.99), min: sorted[0] ?? 0, max: sorted[sorted.length - 1] ?? 0, samples: sorted },
    throughputMBps: spread(throughputs),
    peakRssBytes: cluster.peakRssBytes(),
    peakRssScope: peaksReset ? 'load test' : 'cluster life',
  };
}
