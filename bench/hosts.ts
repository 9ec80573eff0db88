/**
 * The scaling curve across namespace hosts (tools/hosts/harness.ts, the same module the host tests use):
 * one job on 3 voter hosts plus 1, 2, 3 and 4 worker hosts of equal CPU quota, links shaped to a rate.
 *
 * What it measures is coding: the voters run with `jobs.code: false` (Raft and their gateways only), so
 * every chunk is coded by a worker host. Every host starts first, and once the cluster sees all of them
 * alive the worker hosts are held (SIGSTOP; members are declared suspect only after 60 s here) while the
 * job is uploaded, then released together (SIGCONT): every worker host starts coding at the same instant,
 * with chunks assigned to it during the upload, and the gateway's ingest is timed apart. Throughput is
 * original bytes over the coding phase, from the release to the job completed less its merge;
 * efficiency(N) = throughput(N) / (N x throughput(1)). Two layouts measured worse and were dropped: the
 * worker hosts started after the upload (the phase then begins with whichever joined first, and a host at
 * 0.25 CPU takes seconds to start), and the upload beside the coding (the 0.2-CPU gateway, also busy
 * coordinating, then ingests slower than four worker hosts code: 29 s for 32 MiB at 4).
 * The codec is a costly one (zstd at level 19 by
 * default) so that coding, not the per-chunk Raft round trips, is the work; Huffman codes a byte faster
 * than a gateway can receive it.
 * The load average is read before and after each run, since the machine is shared.
 *
 * Needs root, iproute2 and the cgroup v1 `cpu` controller. This kernel has no sch_netem: links get a
 * rate (tbf) and no delay.
 */
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { connect, type JobView } from '../node/client/index.ts';
import { createHosts, defaultLink } from '../tools/hosts/harness.ts';
import { agreement } from '../tools/cluster.ts';

export interface HostsRun {
  workerHosts: number;
  /** Original bytes over the coding phase. */
  throughputMBps: number;
  /** The coding phase: the worker hosts released to the job completed, less its merge. */
  seconds: number;
  /** The upload call to its acknowledgement (the gateway's ingest, worker hosts held). */
  ingestSeconds?: number;
  /** From releasing the worker hosts to the job completed (the merge included). */
  releaseToCompletedSeconds?: number;
  /**
   * CPU each worker host's node used from its release to the job completed, in cores (its quota is the
   * most it can get): below the quota, the machine could not give it its share.
   */
  workerCpuShare?: number[];
  /** throughput / (workerHosts x throughput with 1 worker host); 1 is ideal. */
  efficiency: number;
  /** The job's own phases: streaming the upload in (the gateway's ingest), coding after it, merging. */
  phases: JobView['phases'];
  chunkNodes: Record<string, number>;
  loadAverageBefore: number;
  loadAverageAfter: number;
}

export interface HostsSection {
  dataset: string;
  fileBytes: number;
  chunkBytes: number;
  /** The codec the job codes with, NAME[:LEVEL]. */
  codec?: string;
  voterCpu: number;
  workerCpu: number;
  linkMbit: number;
  runs: HostsRun[];
  /** Runs whose job did not complete (each worker count is tried up to `attemptsMax` times). */
  failures: Array<{ workerHosts: number; attempt: number; error: string; loadAverage: number }>;
}

export interface HostsOptions extends Omit<HostsSection, 'runs' | 'failures'> {
  workerCounts: readonly number[];
  filePath: string;
  onProgress?: (message: string) => void;
}

const voterCount = 3;
const agreeMsMax = 120_000;
const jobMsMax = 1_800_000;
/**
 * On a starved shared machine a job can fail (a proposal not applied in time); one more attempt on
 * fresh hosts, and the failure is kept in the results rather than dropped.
 */
const attemptsMax = 2;

async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const block of createReadStream(path)) hash.update(block as Buffer);
  return hash.digest('hex');
}

async function waitForAgreement(status: () => Promise<Parameters<typeof agreement>[0]>, alive: number): Promise<void> {
  const started = Date.now();
  while (agreement(await status(), alive) === undefined) {
    if (Date.now() - started > agreeMsMax) throw new Error(`hosts bench: ${alive} hosts did not agree on a coordinator within ${agreeMsMax} ms`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Linux's USER_HZ, the unit of utime and stime in /proc/PID/stat. */
const clockTicksPerSecond = 100;

/** CPU seconds a process has used so far, all its threads (utime + stime from /proc). */
function cpuSecondsOf(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond;
}

/** One job on 3 voters and `workerHosts` workers; the hosts are made for this run and removed after it. */
async function measure(options: HostsOptions, workerHosts: number, expectedSha256: string): Promise<Omit<HostsRun, 'efficiency'>> {
  const hosts = await createHosts({
    hosts: voterCount + workerHosts,
    voters: voterCount,
    cpuQuotas: [...Array(voterCount).fill(options.voterCpu), ...Array(workerHosts).fill(options.workerCpu)],
    link: { ...defaultLink, delayMs: 0, rateMbit: options.linkMbit },
    votersCode: false,
    // Long leases: a worker at 0.4 CPU on a loaded machine may take long over a chunk, and a lapsed
    // lease would code it twice and measure the retry instead of the work.
    overrides: { workers: 1, membership: { suspectMs: 60_000, deadMs: 120_000 }, jobs: { codeAtGateway: false, leaseMs: 600_000, chunkSize: options.chunkBytes } },
  });
  const voterNames = hosts.names.slice(0, voterCount);
  const workerNames = hosts.names.slice(voterCount);
  try {
    for (const name of voterNames) hosts.start(name);
    await waitForAgreement(() => Promise.all(voterNames.map((name) => hosts.status(name))), voterCount);
    for (const name of workerNames) hosts.start(name);
    await waitForAgreement(() => Promise.all(voterNames.map((name) => hosts.status(name))), voterCount + workerHosts);
    const loadAverageBefore = loadavg()[0]!;
    const client = await connect({ server: hosts.gateway('node1'), deadlineAtMs: Date.now() + jobMsMax });
    try {
      const workerPids = workerNames.map((name) => hosts.pid(name)!);
      for (const pid of workerPids) process.kill(pid, 'SIGSTOP');
      const ingestStarted = performance.now();
      const uploaded = await client.upload(options.filePath, { fileName: 'hosts-bench.csv', chunkSize: options.chunkBytes, codec: options.codec });
      const ingestSeconds = (performance.now() - ingestStarted) / 1000;
      const cpuBefore = workerPids.map(cpuSecondsOf);
      const released = performance.now();
      for (const pid of workerPids) process.kill(pid, 'SIGCONT');
      const job = await client.waitForCompletion(uploaded.id);
      const releaseToCompletedSeconds = (performance.now() - released) / 1000;
      const workerCpuSeconds = workerPids.map((pid, index) => cpuSecondsOf(pid) - cpuBefore[index]!);
      if (job.state !== 'completed') throw new Error(`hosts bench: the job on ${workerHosts} worker hosts ended ${job.state}: ${job.error}`);
      if (job.sha256 !== expectedSha256) throw new Error(`hosts bench: the job on ${workerHosts} worker hosts has sha256 ${job.sha256}, expected ${expectedSha256}`);
      const seconds = releaseToCompletedSeconds - (job.phases.mergeSeconds ?? 0);
      const coders = Object.keys(job.chunkNodes).filter((name) => voterNames.includes(name));
      if (coders.length > 0) throw new Error(`hosts bench: voters ${coders.join(', ')} coded chunks although they run with jobs.code false`);
      return { workerHosts, throughputMBps: options.fileBytes / 1e6 / seconds, seconds, ingestSeconds, releaseToCompletedSeconds, workerCpuShare: workerCpuSeconds.map((used) => used / releaseToCompletedSeconds), phases: job.phases, chunkNodes: job.chunkNodes, loadAverageBefore, loadAverageAfter: loadavg()[0]! };
    } finally {
      await client.close();
    }
  } finally {
    await hosts.destroy();
  }
}

export async function benchHosts(options: HostsOptions): Promise<HostsSection> {
  const expectedSha256 = await sha256File(options.filePath);
  const measured: Array<Omit<HostsRun, 'efficiency'>> = [];
  const failures: HostsSection['failures'] = [];
  for (const workerHosts of options.workerCounts) {
    let run: Omit<HostsRun, 'efficiency'> | undefined;
    for (let attempt = 1; run === undefined && attempt <= attemptsMax; attempt += 1) {
      try {
        run = await measure(options, workerHosts, expectedSha256);
      } catch (error) {
        const message = (error as Error).message.split('\n')[0]!;
        failures.push({ workerHosts, attempt, error: message, loadAverage: loadavg()[0]! });
        options.onProgress?.(`hosts: ${workerHosts} worker host(s), attempt ${attempt} failed: ${message}`);
      }
    }
    if (run === undefined) continue;
    options.onProgress?.(`hosts: ${workerHosts} worker host(s): ${run.throughputMBps.toFixed(1)} MB/s in ${run.seconds.toFixed(1)} s (coding phase; upload before it ${run.ingestSeconds?.toFixed(1)} s, release to completed ${run.releaseToCompletedSeconds?.toFixed(1)} s; worker hosts used ${run.workerCpuShare?.map((share) => share.toFixed(2)).join(', ')} CPU); load ${run.loadAverageBefore.toFixed(1)} -> ${run.loadAverageAfter.toFixed(1)}; chunks ${JSON.stringify(run.chunkNodes)}`);
    measured.push(run);
  }
  const single = measured.find((run) => run.workerHosts === 1)?.throughputMBps;
  const runs = measured.map((run) => ({ ...run, efficiency: single === undefined ? Number.NaN : run.throughputMBps / (run.workerHosts * single) }));
  const { filePath: _filePath, onProgress: _onProgress, workerCounts: _workerCounts, ...described } = options;
  return { ...described, runs, failures };
}
