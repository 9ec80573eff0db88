/**
 * Figures for the capacity model (docs/SCALING.md), measured on a local cluster of 3 voters on this
 * machine, their blob store the GCS-compatible server on loopback (which counts every request):
 *   - the coordinator: one job of many 64 KiB chunks; Raft entries committed per second and chunks
 *     assigned and completed per second, over the job's life (upload start to completed);
 *   - the blob store: requests per GiB of original data at each chunk size, with the gateway coding
 *     (jobs.codeAtGateway, the default) and without (every chunk staged raw, fetched and coded by a
 *     worker), counted by the server from the upload's start to the job's end, downloads excluded.
 * Prints one JSON document; progress goes to stderr.
 *
 *   node bench/hosts-capacity.ts [--size 64MiB] [--tiny-chunks-size 32MiB] [--chunks 1MiB,4MiB,16MiB]
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { connect } from '../node/client/index.ts';
import { startGcsServer, type GcsServer } from '../tools/gcs-server/index.ts';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';
import { generatedFile } from './datasets-extra.ts';
import { parseSize } from './generate.ts';

const bucket = 'dcas-capacity';
const gibibyte = 1024 ** 3;
const tinyChunkBytes = 64 * 1024;
const jobMsMax = 1_800_000;

interface JobFigures {
  chunkBytes: number;
  fileBytes: number;
  chunks: number;
  seconds: number;
  raftEntries: number;
  requests: number;
  operations: Record<string, number>;
}

async function withCluster<T>(codeAtGateway: boolean, use: (cluster: TestCluster, server: GcsServer) => Promise<T>): Promise<T> {
  const server = await startGcsServer({ buckets: [bucket] });
  const cluster = await createTestCluster({
    nodes: 3,
    overrides: { jobs: { codeAtGateway, leaseMs: 600_000 } },
    edit: (config) => ({ ...config, blobStore: { kind: 'gcs', bucket, prefix: 'cluster/', apiEndpoint: server.url } }),
  });
  try {
    for (const config of cluster.configs) cluster.start(config.name);
    await waitFor('3 alive members and one coordinator', 120_000, () => cluster.agreed(3), () => cluster.logs());
    return await use(cluster, server);
  } finally {
    await cluster.destroy();
    await server.stop();
  }
}

async function runJob(cluster: TestCluster, server: GcsServer, filePath: string, fileBytes: number, chunkBytes: number): Promise<JobFigures> {
  const { value: before } = await waitFor('a coordinator', 60_000, () => cluster.agreed(3));
  const requestsBefore = server.stats.requests;
  const operationsBefore = { ...server.stats.operations };
  const started = performance.now();
  const client = await connect({ server: cluster.gateway('node1'), deadlineAtMs: Date.now() + jobMsMax });
  try {
    const uploaded = await client.upload(filePath, { fileName: 'capacity.csv', chunkSize: chunkBytes });
    const job = await client.waitForCompletion(uploaded.id);
    const seconds = (performance.now() - started) / 1000;
    if (job.state !== 'completed') throw new Error(`capacity: the job of ${chunkBytes}-byte chunks ended ${job.state}: ${job.error}`);
    const after = (await cluster.status(before.coordinator!)) ?? before;
    const operations = Object.fromEntries(Object.entries(server.stats.operations).map(([name, count]) => [name, count - (operationsBefore[name] ?? 0)]).filter(([, count]) => (count as number) > 0));
    return { chunkBytes, fileBytes, chunks: job.chunks, seconds, raftEntries: after.commit - before.commit, requests: server.stats.requests - requestsBefore, operations };
  } finally {
    await client.close();
  }
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({ args: argv, options: { size: { type: 'string' }, 'tiny-chunks-size': { type: 'string' }, chunks: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help) {
    process.stdout.write(`usage: node bench/hosts-capacity.ts [--size 64MiB] [--tiny-chunks-size 32MiB] [--chunks 1MiB,4MiB,16MiB]
Figures for docs/SCALING.md on a local cluster of 3 voters with the GCS-compatible server on loopback:
Raft entries and chunk assignments per second (a job of 64 KiB chunks), and blob-store requests per GiB at
each chunk size, with and without gateway coding. Prints one JSON document; progress on stderr.
`);
    return;
  }
  const fileBytes = parseSize(values.size ?? '64MiB');
  const tinyFileBytes = parseSize(values['tiny-chunks-size'] ?? '32MiB');
  const chunkSizes = (values.chunks ?? '1MiB,4MiB,16MiB').split(',').map((text) => parseSize(text.trim()));
  const progress = (message: string) => process.stderr.write(`[capacity ${new Date().toISOString().slice(11, 19)}] ${message} (load ${loadavg()[0]!.toFixed(1)})\n`);
  const loadAverageBefore = loadavg()[0]!;

  const coordinator = await withCluster(false, async (cluster, server) => {
    const job = await runJob(cluster, server, generatedFile('stocks', 'csv', tinyFileBytes, 1), tinyFileBytes, tinyChunkBytes);
    progress(`coordinator: ${job.chunks} chunks of 64 KiB in ${job.seconds.toFixed(1)} s, ${job.raftEntries} Raft entries`);
    return { ...job, raftEntriesPerSecond: job.raftEntries / job.seconds, chunksPerSecond: job.chunks / job.seconds, raftEntriesPerChunk: job.raftEntries / job.chunks };
  });

  const requestsPerGiB: Array<JobFigures & { codeAtGateway: boolean; requestsPerGiB: number }> = [];
  const filePath = generatedFile('stocks', 'csv', fileBytes, 1);
  for (const codeAtGateway of [true, false]) {
    await withCluster(codeAtGateway, async (cluster, server) => {
      for (const chunkBytes of chunkSizes) {
        const job = await runJob(cluster, server, filePath, fileBytes, chunkBytes);
        progress(`blob store: codeAtGateway ${codeAtGateway}, ${chunkBytes} B chunks: ${job.requests} requests for ${job.chunks} chunks in ${job.seconds.toFixed(1)} s`);
        requestsPerGiB.push({ ...job, codeAtGateway, requestsPerGiB: (job.requests * gibibyte) / fileBytes });
      }
    });
  }
  console.log(JSON.stringify({ loadAverageBefore, loadAverageAfter: loadavg()[0], coordinator, requestsPerGiB }, null, 2));
}

try {
  await main(process.argv.slice(2));
} catch (error) {
  console.error(`capacity: ${(error as Error).message}`);
  process.exitCode = 1;
}
