/**
 * Load held: many uploads at once to ONE gateway of a local 3-node cluster whose `jobs.uploadsMax` is
 * small, so the admission queue fills and, past it, clients are refused BUSY and retry. Two kinds of
 * client at the same time: uploads through the client library in this process, each on its own
 * connection, and `dcas upload --wait` processes. Every job must complete with the SHA-256 of its file;
 * every node's peak RSS (/proc/PID/status VmHWM) must stay under the bound.
 *
 *   npm run bench:load                      the full size: 200 library uploads + 100 CLI processes, 1-5 MB each
 *   npm run bench:load -- --library 20 --cli 5 --size-min 100KB --size-max 500KB
 *   node bench/load.ts --help
 *
 * test/load.test.ts runs the same function at a size CI can afford.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect, type DcasClient, type RetryNotice } from '../node/client/index.ts';
import { createTestCluster, type TestCluster } from '../tools/cluster.ts';
import { seededRandom } from '../tools/data.ts';
import { builtInSchemaPath, generateBuffer, loadRecordSchema, parseSize } from './generate.ts';
import { quantile } from './stats.ts';

const dcasEntry = new URL('../node/cli/dcas.ts', import.meta.url).pathname;
const mebibyte = 1024 * 1024;
/** A library client's handshake and hello, under a machine this loaded. */
const connectTimeoutMs = 120_000;
/** The bound issue 13 sets on each node's peak resident memory under this load. */
export const nodeRssBytesMax = 300 * mebibyte;

export interface LoadBenchOptions {
  /** Uploads through the client library in this process, each on its own connection. */
  libraryUploads: number;
  /** `dcas upload --wait` processes. */
  cliUploads: number;
  sizeBytesMin: number;
  sizeBytesMax: number;
  /** The cluster's jobs.uploadsMax: small, so the queue is used. */
  uploadsMax: number;
  /** The cluster's gateway.uploadQueueMax. */
  uploadQueueMax: number;
  /** Every client gives up after this long (the CLI's --timeout, the library's deadline). */
  timeoutSeconds: number;
  /** Library connections opened at once (the uploads then all run together). */
  connectsAtOnce: number;
  seed: number;
  onProgress?: (line: string) => void;
}

export const fullLoad: LoadBenchOptions = {
  libraryUploads: 200,
  cliUploads: 100,
  sizeBytesMin: mebibyte,
  sizeBytesMax: 5 * mebibyte,
  uploadsMax: 4,
  uploadQueueMax: 64,
  timeoutSeconds: 1_800,
  connectsAtOnce: 16,
  seed: 13,
};

export interface UploadOutcome {
  kind: 'library' | 'cli';
  index: number;
  bytes: number;
  ok: boolean;
  /** Seconds from the client's start to the job completed. */
  seconds: number;
  retries: number;
  /** The upload heard a queue place at least once (library only: the CLI says it on its terminal). */
  queued: boolean;
  error?: string;
}

export interface LoadBenchResult {
  options: Omit<LoadBenchOptions, 'onProgress'>;
  gateway: string;
  uploads: UploadOutcome[];
  failures: string[];
  totalBytes: number;
  wallSeconds: number;
  peakRssBytes: Record<string, number>;
  /** dcas_gateway_uploads_queued_peak of the gateway under load. */
  queueDepthMax: number;
  /** dcas_gateway_uploads_refused_busy of that gateway. */
  busyRefusals: number;
  retries: { library: number; cli: number };
}

interface LoadFile {
  path: string;
  bytes: number;
  sha256: string;
}

/** One file per upload: a slice of generated web-log records at a seeded offset, behind a unique first line. */
async function writeFiles(dir: string, count: number, options: LoadBenchOptions): Promise<LoadFile[]> {
  const random = seededRandom(options.seed);
  const base = generateBuffer(loadRecordSchema(builtInSchemaPath('weblog')), { format: 'jsonl', seed: options.seed, sizeBytes: options.sizeBytesMax + mebibyte });
  const files: LoadFile[] = [];
  for (let index = 0; index < count; index++) {
    const bytes = options.sizeBytesMin + Math.floor(random() * (options.sizeBytesMax - options.sizeBytesMin + 1));
    const header = Buffer.from(`load upload ${index}\n`);
    const offset = Math.floor(random() * (base.length - bytes));
    const body = Buffer.concat([header, base.subarray(offset, offset + bytes - header.length)]);
    const path = join(dir, `load-${index}.jsonl`);
    await writeFile(path, body);
    files.push({ path, bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') });
  }
  return files;
}

/** At most `limit` tasks run at once; the rest wait their turn in order. */
function limiter(limit: number): <T>(task: () => Promise<T>) => Promise<T> {
  let running = 0;
  const waiting: Array<() => void> = [];
  return async (task) => {
    if (running >= limit) await new Promise<void>((resolve) => waiting.push(resolve));
    running++;
    try {
      return await task();
    } finally {
      running--;
      waiting.shift()?.();
    }
  };
}

async function libraryUpload(open: () => Promise<DcasClient>, file: LoadFile, index: number, server: string): Promise<UploadOutcome> {
  const started = performance.now();
  const outcome: UploadOutcome = { kind: 'library', index, bytes: file.bytes, ok: false, seconds: 0, retries: 0, queued: false };
  let client: DcasClient | undefined;
  try {
    client = await open();
    const uploaded = await client.upload(file.path, { onQueued: () => (outcome.queued = true) });
    const job = await client.waitForCompletion(uploaded.id);
    if (job.state !== 'completed') throw new Error(`job ${job.id} ${job.state}: ${job.error}`);
    if (job.sha256 !== file.sha256) throw new Error(`job ${job.id}: SHA-256 ${job.sha256}, the file's is ${file.sha256}`);
    outcome.ok = true;
  } catch (error) {
    outcome.error = `library upload ${index} to ${server}: ${(error as Error).message}`;
  } finally {
    await client?.close().catch(() => {});
  }
  outcome.seconds = (performance.now() - started) / 1000;
  return outcome;
}

function cliUpload(server: string, token: string, file: LoadFile, index: number, timeoutSeconds: number): Promise<UploadOutcome & { jobId?: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [dcasEntry, 'upload', file.path, '--wait', '--server', server, '--token', token, '--timeout', String(timeoutSeconds)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data) => (stdout += data));
    child.stderr.on('data', (data) => (stderr = (stderr + data).slice(-20_000)));
    child.on('close', (code) => {
      const retries = (stderr.match(/retrying in [\d.]+ s \(attempt \d+\)/g) ?? []).length;
      const jobId = stdout.trim().split('\n')[0];
      const outcome = { kind: 'cli' as const, index, bytes: file.bytes, ok: code === 0, seconds: (performance.now() - started) / 1000, retries, queued: false, jobId };
      resolve(code === 0 ? outcome : { ...outcome, error: `dcas upload ${index} exited ${code}: ${stderr.trim().split('\n').at(-1) ?? ''}` });
    });
  });
}

/** The gateway's own figures from its /metrics (open to scrapers). */
async function gatewayMetric(server: string, name: string): Promise<number> {
  const text = await (await fetch(`${server}/metrics`)).text();
  const match = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  return match === null ? Number.NaN : Number(match[1]);
}

function peakRssBytes(cluster: TestCluster): Record<string, number> {
  const peaks: Record<string, number> = {};
  for (const config of cluster.configs) {
    const pid = cluster.pid(config.name);
    if (pid === undefined) continue;
    const match = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    peaks[config.name] = match === null ? Number.NaN : Number(match[1]) * 1024;
  }
  return peaks;
}

export async function runLoadBench(options: LoadBenchOptions): Promise<LoadBenchResult> {
  const say = options.onProgress ?? (() => {});
  const token = createHash('sha256').update(`load ${options.seed} ${Date.now()}`).digest('hex').slice(0, 32);
  const filesDir = await mkdtemp(join(tmpdir(), 'dcas-load-files-'));
  // A token, as a deployment has: then the gateway does not cap connections per client address, which
  // every client here shares (127.0.0.1).
  const cluster = await createTestCluster({
    nodes: 3,
    overrides: { workers: 1, jobs: { uploadsMax: options.uploadsMax } },
    edit: (config) => ({ ...config, token, gateway: { ...config.gateway, uploadQueueMax: options.uploadQueueMax } }),
  });
  try {
    const files = await writeFiles(filesDir, options.libraryUploads + options.cliUploads, options);
    for (const config of cluster.configs) cluster.start(config.name);
    say(`load: ${files.length} files written; cluster starting`);
    const agreedBy = Date.now() + 120_000;
    while ((await cluster.agreed(3)) === undefined) {
      if (Date.now() > agreedBy) throw new Error(`the cluster did not agree on a coordinator within 120 s:\n${cluster.logs()}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const server = cluster.gateway(cluster.configs[0].name);
    const deadlineAtMs = Date.now() + options.timeoutSeconds * 1000;
    say(`load: ${options.libraryUploads} library uploads and ${options.cliUploads} CLI uploads to ${server} (uploadsMax ${options.uploadsMax}, queue ${options.uploadQueueMax})`);
    const started = performance.now();
    const libraryFiles = files.slice(0, options.libraryUploads);
    const cliFiles = files.slice(options.libraryUploads);
    // Connections open a few dozen at a time (a burst beyond the gateway's pending-per-address bound
    // would evict the oldest before their hello); every upload starts as soon as its connection is up.
    const connecting = limiter(options.connectsAtOnce);
    const library = Promise.all(libraryFiles.map(async (file, index) => {
      let retries = 0;
      const onRetry = (_notice: RetryNotice) => retries++;
      // On a 2-core machine with a hundred CLI processes starting, a handshake can take longer than the
      // library's default 10 s: the wait is bounded by the deadline instead.
      const open = () => connecting(() => connect({ server, token, deadlineAtMs, connectTimeoutMs: connectTimeoutMs, retry: { onRetry } }));
      const outcome = await libraryUpload(open, file, index, server);
      outcome.retries = retries;
      return outcome;
    }));
    const cli = Promise.all(cliFiles.map((file, index) => cliUpload(server, token, file, index, options.timeoutSeconds)));
    const uploads = [...(await library), ...(await cli)];
    const wallSeconds = (performance.now() - started) / 1000;
    // A CLI job's SHA-256 is read back from the cluster: exit 0 says it completed, this says it is the file's.
    for (const outcome of uploads) {
      const withJob = outcome as UploadOutcome & { jobId?: string };
      if (outcome.kind !== 'cli' || !outcome.ok) continue;
      const response = await fetch(`${server}/v1/jobs/${withJob.jobId}`, { headers: { authorization: `Bearer ${token}` } });
      const job = (await response.json()) as { sha256?: string; state?: string };
      if (job.sha256 !== cliFiles[outcome.index].sha256) {
        outcome.ok = false;
        outcome.error = `dcas upload ${outcome.index}: job ${withJob.jobId} has SHA-256 ${job.sha256}, the file's is ${cliFiles[outcome.index].sha256}`;
      }
    }
    const result: LoadBenchResult = {
      options: { ...options, onProgress: undefined } as Omit<LoadBenchOptions, 'onProgress'>,
      gateway: server,
      uploads,
      failures: uploads.filter((outcome) => !outcome.ok).map((outcome) => outcome.error ?? 'unknown'),
      totalBytes: files.reduce((sum, file) => sum + file.bytes, 0),
      wallSeconds,
      peakRssBytes: peakRssBytes(cluster),
      queueDepthMax: await gatewayMetric(server, 'dcas_gateway_uploads_queued_peak'),
      busyRefusals: await gatewayMetric(server, 'dcas_gateway_uploads_refused_busy'),
      retries: {
        library: uploads.filter((outcome) => outcome.kind === 'library').reduce((sum, outcome) => sum + outcome.retries, 0),
        cli: uploads.filter((outcome) => outcome.kind === 'cli').reduce((sum, outcome) => sum + outcome.retries, 0),
      },
    };
    delete (result.options as { onProgress?: unknown }).onProgress;
    return result;
  } finally {
    await cluster.destroy();
    await rm(filesDir, { recursive: true, force: true });
  }
}

function secondsText(values: number[]): string {
  if (values.length === 0) return '-';
  return `median ${quantile(values, 0.5).toFixed(1)} s, p95 ${quantile(values, 0.95).toFixed(1)} s, max ${Math.max(...values).toFixed(1)} s`;
}

export function formatLoadResult(result: LoadBenchResult): string {
  const of = (kind: UploadOutcome['kind']) => result.uploads.filter((outcome) => outcome.kind === kind);
  const completed = result.uploads.filter((outcome) => outcome.ok).length;
  const rss = Object.entries(result.peakRssBytes).map(([name, bytes]) => `${name} ${(bytes / mebibyte).toFixed(0)} MiB`).join(', ');
  return [
    `load: ${completed}/${result.uploads.length} uploads completed with their SHA-256 (${(result.totalBytes / 1e6).toFixed(0)} MB) in ${result.wallSeconds.toFixed(1)} s to ${result.gateway}`,
    `  library (${of('library').length}, own connection each): ${secondsText(of('library').map((outcome) => outcome.seconds))}; ${of('library').filter((outcome) => outcome.queued).length} heard a queue place`,
    `  dcas upload --wait (${of('cli').length} processes): ${secondsText(of('cli').map((outcome) => outcome.seconds))}`,
    `  peak RSS per node (VmHWM): ${rss} (bound ${nodeRssBytesMax / mebibyte} MiB)`,
    `  admission: uploadsMax ${result.options.uploadsMax}, queue ${result.options.uploadQueueMax}, max queue depth ${result.queueDepthMax}, BUSY refusals ${result.busyRefusals}, retries seen ${result.retries.library} (library) + ${result.retries.cli} (CLI)`,
    ...result.failures.slice(0, 10).map((failure) => `  FAILED ${failure}`),
  ].join('\n');
}

/** Whether the run holds: everything completed and verified, every node under the memory bound. */
export function loadHeld(result: LoadBenchResult): boolean {
  return result.failures.length === 0 && Object.values(result.peakRssBytes).every((bytes) => bytes < nodeRssBytesMax);
}

const usage = `usage: node bench/load.ts [options]   (or npm run bench:load -- [options])

Uploads to one gateway of a local 3-node cluster with a small uploadsMax, so the admission queue fills
and clients past it retry BUSY; checks every job's SHA-256 and each node's peak RSS (< 300 MiB).

  --library N        client-library uploads, each on its own connection (default ${fullLoad.libraryUploads})
  --cli N            concurrent \`dcas upload --wait\` processes (default ${fullLoad.cliUploads})
  --size-min SIZE    smallest file (default 1MB)
  --size-max SIZE    largest file (default 5MB)
  --uploads-max N    the cluster's jobs.uploadsMax (default ${fullLoad.uploadsMax})
  --queue N          the cluster's gateway.uploadQueueMax (default ${fullLoad.uploadQueueMax})
  --timeout SECONDS  every client's deadline (default ${fullLoad.timeoutSeconds})
  --json             print the result as JSON
  --help             this text

Exit 0 when every upload completed with its SHA-256 and every node stayed under the bound, else 1.`;

async function main(): Promise<number> {
  const count = (text: string | undefined, fallback: number, name: string, min = 0) => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isInteger(value) || value < min) throw new Error(`${name} ${text}: expected a whole number of at least ${min}`);
    return value;
  };
  const { values } = parseArgs({
    options: {
      library: { type: 'string' }, cli: { type: 'string' }, 'size-min': { type: 'string' }, 'size-max': { type: 'string' },
      'uploads-max': { type: 'string' }, queue: { type: 'string' }, timeout: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    return 0;
  }
  const options: LoadBenchOptions = {
    ...fullLoad,
    libraryUploads: count(values.library, fullLoad.libraryUploads, '--library'),
    cliUploads: count(values.cli, fullLoad.cliUploads, '--cli'),
    sizeBytesMin: values['size-min'] === undefined ? fullLoad.sizeBytesMin : parseSize(values['size-min']),
    sizeBytesMax: values['size-max'] === undefined ? fullLoad.sizeBytesMax : parseSize(values['size-max']),
    uploadsMax: count(values['uploads-max'], fullLoad.uploadsMax, '--uploads-max', 1),
    uploadQueueMax: count(values.queue, fullLoad.uploadQueueMax, '--queue'),
    timeoutSeconds: count(values.timeout, fullLoad.timeoutSeconds, '--timeout', 1),
    onProgress: (line) => process.stderr.write(`${line}\n`),
  };
  if (options.sizeBytesMin < 64 || options.sizeBytesMax < options.sizeBytesMin) throw new Error(`--size-min/--size-max: expected 64 bytes <= min <= max`);
  const result = await runLoadBench(options);
  process.stdout.write(values.json ? `${JSON.stringify(result, null, 2)}\n` : `${formatLoadResult(result)}\n`);
  return loadHeld(result) ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`bench/load: ${(error as Error).message}\n`);
      process.exit(2);
    },
  );
}
