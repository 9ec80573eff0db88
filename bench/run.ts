/**
 * The benchmark harness: codecs side by side on one thread, the local CLI on all cores, local clusters
 * of 1, 2 and 3 nodes end to end, and a load test. Writes bench/results/<timestamp>.json and a
 * self-contained HTML report beside it, and prints a summary.
 *
 *   npm run bench                 full: whole data sets, 512 MB cluster file, 10 x 10 MB load test
 *   npm run bench -- --quick      a few minutes' figures in under 2 minutes
 *   npm run bench -- --tiny       seconds; for the report test, not for reading figures
 *   npm run bench -- --only peers --size 150MB
 *                                 the peers table alone: dcas beside zstd, pigz, lz4 and gzip, whole
 *                                 processes on 150 MB of real text, with the issue's targets met or not
 *   npm run bench -- --only codec-peers --size 150MB
 *                                 every codec through the CLI (dcas compress --codec NAME) beside its own
 *                                 tool at the same level (zstd -3, gzip -6, pigz -6, xz -6 -T, bzip2 -9,
 *                                 lbzip2, brotli where installed), with issue 10's targets
 *
 *   sudo npm run bench -- --hosts
 *                                 the scaling curve alone (bench/hosts.ts): one 32 MiB job (zstd:19) on 3
 *                                 voter hosts that do not code and 1, 2, 3, 4 worker hosts, its coding timed, then the same
 *                                 chunks coded by one plain process per worker host under the same quota (the machine's own
 *                                 scaling, bench/hosts-bare.ts); needs root, iproute2 and the cgroup v1 cpu controller, so no
 *                                 other mode runs it
 *
 * Options: --data mail,elf,... (data sets for the codecs; the CLI codes the first), --nodes 1,2,3,
 * --runs N, --cluster-size SIZE, --concurrency C, --upload-size SIZE, --rounds N, --out DIR,
 * --size SIZE (the peers' file; 1GiB also checks the 1 GiB targets), --skip codecs,cli,peers,codec-peers,cluster,load,
 * --only (the same list: every other section is skipped), --help.
 * The hosts section: --workers 1,2,3,4, --hosts-size SIZE (32MiB), --hosts-chunk SIZE (512KiB), --hosts-codec NAME[:LEVEL] (zstd:19),
 * --worker-cpu CORES (0.25: four worker hosts and the voters then ask for 1.6 of 2 cores), --voter-cpu CORES (0.2), --link-mbit N (1000),
 * --hosts-rounds N (1: each worker count once; N rounds alternate over the counts and each count's median run is its point).
 */

import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { benchCli } from './cli.ts';
import { benchClusterThroughput, benchLoad } from './cluster.ts';
import { benchCodecs, benchDatasetCodecs, codecSectionHeader } from './codecs.ts';
import { benchDataset, benchDatasetNames, generatedFile, isBenchDatasetName, type BenchDatasetName } from './datasets-extra.ts';
import { builtInSchemaPath, generateBuffer, loadRecordSchema, parseSize } from './generate.ts';
import { describeMachine } from './machine.ts';
import { benchHosts } from './hosts.ts';
import { benchCodecPeers, benchPeers } from './peers.ts';
import { renderReport } from './report.ts';
import type { BenchResults, ClusterSection, LoadSection } from './results.ts';
import { formatSummary } from './summary.ts';

type Mode = BenchResults['mode'];
const sections = ['codecs', 'cli', 'peers', 'codec-peers', 'cluster', 'load', 'hosts'] as const;
type Section = (typeof sections)[number];

interface Plan {
  mode: Mode;
  datasets: BenchDatasetName[];
  codecRuns: number;
  codecBytesMax: number;
  cliRuns: number;
  cliBytesMax: number;
  peersBytes: number;
  peersRuns: number;
  nodeCounts: number[];
  clusterBytes: number;
  clusterRuns: number;
  /** Chunk size of cluster uploads; undefined: the nodes' default (4 MiB). */
  clusterChunkBytes: number | undefined;
  concurrency: number;
  uploadBytes: number;
  rounds: number;
  hosts: { workerCounts: number[]; bytes: number; chunkBytes: number; codec: string; workerCpu: number; voterCpu: number; linkMbit: number; rounds: number };
  skip: Set<Section>;
  outDir: string;
}

const mebibyte = 1024 * 1024;

/** What each mode measures; options override single knobs. */
const modes: Record<Mode, Omit<Plan, 'mode' | 'skip' | 'outDir' | 'hosts'>> = {
  full: {
    datasets: [...benchDatasetNames],
    codecRuns: 5,
    codecBytesMax: Number.MAX_SAFE_INTEGER,
    cliRuns: 3,
    cliBytesMax: Number.MAX_SAFE_INTEGER,
    peersBytes: 150_000_000,
    peersRuns: 3,
    nodeCounts: [1, 2, 3],
    clusterBytes: 512_000_000,
    clusterRuns: 3,
    clusterChunkBytes: undefined,
    concurrency: 10,
    uploadBytes: 10_000_000,
    rounds: 3,
  },
  quick: {
    datasets: [...benchDatasetNames],
    codecRuns: 3,
    codecBytesMax: 8 * mebibyte,
    cliRuns: 2,
    cliBytesMax: 32 * mebibyte,
    peersBytes: 32_000_000,
    peersRuns: 2,
    nodeCounts: [1, 2, 3],
    clusterBytes: 64_000_000,
    clusterRuns: 2,
    clusterChunkBytes: undefined,
    concurrency: 8,
    uploadBytes: 4_000_000,
    rounds: 2,
  },
  tiny: {
    datasets: ['elf', 'random', 'csv', 'jsonl'],
    codecRuns: 2,
    codecBytesMax: mebibyte,
    cliRuns: 1,
    cliBytesMax: 4 * mebibyte,
    peersBytes: 4_000_000,
    peersRuns: 1,
    nodeCounts: [1, 2, 3],
    clusterBytes: 6_000_000,
    clusterRuns: 1,
    clusterChunkBytes: 512 * 1024,
    concurrency: 4,
    uploadBytes: 1_000_000,
    rounds: 1,
  },
};

class UsageError extends Error {}

function list(text: string, what: string): string[] {
  const items = text.split(',').map((item) => item.trim()).filter((item) => item !== '');
  if (items.length === 0) throw new UsageError(`${what}: expected a comma-separated list`);
  return items;
}

function positiveInteger(text: string, what: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new UsageError(`${what}: expected a positive integer, got ${JSON.stringify(text)}`);
  return value;
}

function size(text: string, what: string): number {
  try {
    const value = parseSize(text);
    if (value < 1) throw new RangeError('must be at least 1 byte');
    return value;
  } catch (error) {
    throw new UsageError(`${what}: ${(error as Error).message}`);
  }
}

function cores(text: string, what: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0.01 || value > 64) throw new UsageError(`${what}: expected cores from 0.01 to 64, got ${JSON.stringify(text)}`);
  return value;
}

function sectionList(text: string, what: string): Section[] {
  return list(text, what).map((name) => {
    if (!(sections as readonly string[]).includes(name)) throw new UsageError(`${what}: unknown section ${name}; known: ${sections.join(', ')}`);
    return name as Section;
  });
}

function parsePlan(argv: string[]): Plan {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: 'boolean' },
      tiny: { type: 'boolean' },
      data: { type: 'string' },
      nodes: { type: 'string' },
      runs: { type: 'string' },
      'cluster-size': { type: 'string' },
      concurrency: { type: 'string' },
      'upload-size': { type: 'string' },
      rounds: { type: 'string' },
      out: { type: 'string' },
      skip: { type: 'string' },
      only: { type: 'string' },
      size: { type: 'string' },
      hosts: { type: 'boolean' },
      workers: { type: 'string' },
      'hosts-size': { type: 'string' },
      'hosts-chunk': { type: 'string' },
      'hosts-codec': { type: 'string' },
      'worker-cpu': { type: 'string' },
      'voter-cpu': { type: 'string' },
      'link-mbit': { type: 'string' },
      'hosts-rounds': { type: 'string' },
    },
  });
  const mode: Mode = values.tiny ? 'tiny' : values.quick ? 'quick' : 'full';
  const hosts = { workerCounts: [1, 2, 3, 4], bytes: 32 * mebibyte, chunkBytes: 512 * 1024, codec: 'zstd:19', workerCpu: 0.25, voterCpu: 0.2, linkMbit: 1000, rounds: 1 };
  if (values.workers !== undefined) hosts.workerCounts = list(values.workers, '--workers').map((item) => positiveInteger(item, '--workers'));
  if (values['hosts-size'] !== undefined) hosts.bytes = size(values['hosts-size'], '--hosts-size');
  if (values['hosts-chunk'] !== undefined) hosts.chunkBytes = size(values['hosts-chunk'], '--hosts-chunk');
  if (values['hosts-codec'] !== undefined) hosts.codec = values['hosts-codec'];
  if (values['worker-cpu'] !== undefined) hosts.workerCpu = cores(values['worker-cpu'], '--worker-cpu');
  if (values['voter-cpu'] !== undefined) hosts.voterCpu = cores(values['voter-cpu'], '--voter-cpu');
  if (values['link-mbit'] !== undefined) hosts.linkMbit = positiveInteger(values['link-mbit'], '--link-mbit');
  if (values['hosts-rounds'] !== undefined) hosts.rounds = positiveInteger(values['hosts-rounds'], '--hosts-rounds');
  // The hosts section needs root and namespaces: it runs only when asked for by name.
  const plan: Plan = { mode, ...modes[mode], hosts, skip: new Set(['hosts']), outDir: resolve(values.out ?? fileURLToPath(new URL('./results/', import.meta.url))) };
  if (values.data !== undefined) {
    plan.datasets = list(values.data, '--data').map((name) => {
      if (!isBenchDatasetName(name)) throw new UsageError(`--data: unknown data set ${name}; known: ${benchDatasetNames.join(', ')}`);
      return name;
    });
  }
  if (values.nodes !== undefined) plan.nodeCounts = list(values.nodes, '--nodes').map((item) => positiveInteger(item, '--nodes'));
  if (values.runs !== undefined) {
    plan.codecRuns = positiveInteger(values.runs, '--runs');
    plan.cliRuns = plan.codecRuns;
    plan.clusterRuns = plan.codecRuns;
  }
  if (values['cluster-size'] !== undefined) plan.clusterBytes = size(values['cluster-size'], '--cluster-size');
  if (values.concurrency !== undefined) plan.concurrency = positiveInteger(values.concurrency, '--concurrency');
  if (values['upload-size'] !== undefined) plan.uploadBytes = size(values['upload-size'], '--upload-size');
  if (values.rounds !== undefined) plan.rounds = positiveInteger(values.rounds, '--rounds');
  if (values.runs !== undefined) plan.peersRuns = plan.codecRuns;
  if (values.size !== undefined) plan.peersBytes = size(values.size, '--size');
  if (values.skip !== undefined) for (const name of sectionList(values.skip, '--skip')) plan.skip.add(name);
  if (values.hosts || values.only !== undefined) {
    const only = [...(values.only === undefined ? [] : sectionList(values.only, '--only')), ...(values.hosts ? (['hosts'] as const) : [])];
    plan.skip.clear();
    for (const name of sections) if (!only.includes(name)) plan.skip.add(name);
  }
  if (!plan.skip.has('hosts') && process.getuid?.() !== 0) {
    throw new UsageError('--hosts: needs root (it makes network namespaces, links and cgroups); run it with sudo');
  }
  return plan;
}

function progress(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

/** The cluster and hosts sections code the same generated records. */
const stocksDataset = 'stocks: bench/generate.ts stocks records as csv, seed 1';

/** Every codec on one thread over each data set of the plan. */
async function codecsSection(plan: Plan): Promise<BenchResults['codecs']> {
  const codecs = benchCodecs();
  const section = { ...codecSectionHeader(codecs, plan.codecRuns), datasets: [] as BenchResults['codecs']['datasets'] };
  if (plan.skip.has('codecs')) return section;
  for (const name of plan.datasets) section.datasets.push(benchDatasetCodecs(await benchDataset(name), codecs, { runs: plan.codecRuns, bytesMax: plan.codecBytesMax, onProgress: progress }));
  return section;
}

async function cliSection(plan: Plan): Promise<BenchResults['cli']> {
  if (plan.skip.has('cli')) return null;
  const cli = await benchCli(await benchDataset(plan.datasets[0]), { runs: plan.cliRuns, bytesMax: plan.cliBytesMax });
  progress(`cli: compress ${cli.compressMBps.median.toFixed(0)} MB/s, decompress ${cli.decompressMBps.median.toFixed(0)} MB/s (whole process)`);
  return cli;
}

async function peersSection(plan: Plan): Promise<BenchResults['peers']> {
  if (plan.skip.has('peers')) return null;
  const peers = await benchPeers((await benchDataset('mail')).bytes, { bytes: plan.peersBytes, runs: plan.peersRuns, onProgress: progress });
  progress(`peers: ${peers.targets.filter((target) => target.met === true).length} of ${peers.targets.filter((target) => target.met !== null).length} targets met`);
  return peers;
}

async function codecPeersSection(plan: Plan): Promise<BenchResults['codecPeers']> {
  if (plan.skip.has('codec-peers')) return null;
  const codecPeers = await benchCodecPeers((await benchDataset('mail')).bytes, { bytes: plan.peersBytes, runs: plan.peersRuns, onProgress: progress });
  progress(`codec peers: ${codecPeers.targets.filter((target) => target.met === true).length} of ${codecPeers.targets.filter((target) => target.met !== null).length} targets met`);
  return codecPeers;
}

/** The cluster throughput and the load test share the clusters they start: the load test runs on the largest while it is up. */
async function clusterAndLoadSections(plan: Plan): Promise<{ cluster: ClusterSection | null; load: LoadSection | null }> {
  let load: LoadSection | null = null;
  const wantLoad = !plan.skip.has('load');
  if (plan.skip.has('cluster') && !wantLoad) return { cluster: null, load };
  const clusterFile = generatedFile('stocks', 'csv', plan.clusterBytes, 1);
  const loadData = wantLoad ? generateBuffer(loadRecordSchema(builtInSchemaPath('weblog')), { format: 'jsonl', seed: 2, sizeBytes: plan.concurrency * plan.uploadBytes + 4096 }) : new Uint8Array();
  const loadTest = async (up: Parameters<typeof benchLoad>[0]) => {
    if (wantLoad) load = await benchLoad(up, { concurrency: plan.concurrency, uploadBytes: plan.uploadBytes, rounds: plan.rounds, data: loadData, chunkSize: plan.clusterChunkBytes, onProgress: progress });
  };
  const loadNodes = Math.max(...plan.nodeCounts);
  const clusters = await benchClusterThroughput({
    nodeCounts: plan.skip.has('cluster') ? [loadNodes] : plan.nodeCounts,
    filePath: clusterFile,
    runs: plan.skip.has('cluster') ? 1 : plan.clusterRuns,
    chunkSize: plan.clusterChunkBytes,
    whileUp: loadTest,
    onProgress: progress,
  });
  if (plan.skip.has('cluster')) return { cluster: null, load };
  const cluster = {
    dataset: stocksDataset,
    fileBytes: plan.clusterBytes,
    chunkBytes: plan.clusterChunkBytes ?? 4 * mebibyte,
    runs: plan.clusterRuns,
    clusters,
  };
  return { cluster, load };
}

async function hostsSection(plan: Plan): Promise<BenchResults['hosts']> {
  if (plan.skip.has('hosts')) return null;
  const { bytes, ...hostsPlan } = plan.hosts;
  return benchHosts({ ...hostsPlan, filePath: generatedFile('stocks', 'csv', bytes, 1), dataset: stocksDataset, fileBytes: bytes, onProgress: progress });
}

/** The sections in order, one after another: each measures alone on the machine. */
async function run(plan: Plan, command: string): Promise<BenchResults> {
  const started = performance.now();
  const startedAt = new Date();
  const machine = describeMachine();
  progress(`${plan.mode} run on ${machine.cpuModel} x${machine.cores}, load ${machine.loadAverageAtStart.toFixed(2)}`);
  const codecs = await codecsSection(plan);
  const cli = await cliSection(plan);
  const peers = await peersSection(plan);
  const codecPeers = await codecPeersSection(plan);
  const { cluster, load } = await clusterAndLoadSections(plan);
  const hosts = await hostsSection(plan);
  return {
    version: 1,
    startedAt: startedAt.toISOString(),
    mode: plan.mode,
    wallSeconds: (performance.now() - started) / 1000,
    command,
    machine,
    codecs,
    cli,
    peers,
    codecPeers,
    cluster,
    load,
    hosts,
  };
}

/** The usage lines of this file's header comment. */
function helpText(): string {
  const source = readFileSync(fileURLToPath(import.meta.url), 'utf8');
  const header = source.slice(source.indexOf('/**') + 3, source.indexOf('*/'));
  return `${header.split('\n').map((line) => line.replace(/^ \* ?/, '')).join('\n').trim()}\n`;
}

/** bench/results/2026-01-31T12-00-00Z: sortable, and safe as a file name everywhere. */
function timestampName(date: Date): string {
  return date.toISOString().replace(/\.\d+Z$/, 'Z').replaceAll(':', '-');
}

async function main(argv: string[]): Promise<void> {
  if (argv.includes('--help')) {
    process.stdout.write(helpText());
    return;
  }
  let plan: Plan;
  try {
    plan = parsePlan(argv);
  } catch (error) {
    console.error(`bench: ${(error as Error).message}`);
    process.exitCode = 2;
    return;
  }
  // Ctrl-C: let local-cluster's exit hook kill every cluster still running.
  process.once('SIGINT', () => process.exit(130));
  process.once('SIGTERM', () => process.exit(143));
  const command = `npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`;
  const results = await run(plan, command);
  mkdirSync(plan.outDir, { recursive: true });
  const base = join(plan.outDir, timestampName(new Date(results.startedAt)));
  writeFileSync(`${base}.json`, `${JSON.stringify(results, null, 2)}\n`);
  writeFileSync(`${base}.html`, renderReport(results));
  process.stdout.write(formatSummary(results));
  process.stdout.write(`\nresults: ${base}.json\nreport:  ${base}.html\n`);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    await main(process.argv.slice(2));
  } catch (error) {
    console.error(`bench: ${(error as Error).stack ?? error}`);
    process.exitCode = 1;
  }
}
