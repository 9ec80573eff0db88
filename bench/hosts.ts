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
 * Right after each run the worker hosts' nodes are stopped and one plain process per worker host, under
 * the same quota, codes its share of the same chunks with the same codec (bench/hosts-bare.ts): the
 * machine's own scaling, with no cluster. On this 2-core VM four such processes coding at once have
 * taken 0-35% more CPU per chunk than one alone, so the cluster's efficiency is read beside that one.
 *
 * Needs root, iproute2 and the cgroup v1 `cpu` controller. This kernel has no sch_netem: links get a
 * rate (tbf) and no delay.
 */
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, readFileSync, statSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { connect, type JobView } from '../node/client/index.ts';
import { parseCodecChoice } from '../node/codec/index.ts';
import { createHosts, defaultLink, type Hosts } from '../tools/hosts/harness.ts';
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
  /**
   * CPU seconds of each worker host's node from its release to the job completed, by thread: its main
   * thread (the event loop: Raft, gossip, blobs), its codec threads, and the rest (V8's and libuv's).
   */
  workerThreadCpu?: ThreadCpu[];
  /**
   * CPU each voter host's node used over the same time, in cores: the coordinator's and its followers'
   * share of the machine while the worker hosts code.
   */
  voterCpuShare?: number[];
  /**
   * Cores of the whole machine busy over the same time (/proc/stat). The hosts share the machine's cores:
   * coders that take turns on one core find their caches cold after each switch and spend more CPU on a
   * chunk than one alone (two `zstd -19` on one core of this VM: 30-43% more each).
   */
  machineBusyCores?: number;
  /** throughput / (workerHosts x throughput with 1 worker host); 1 is ideal. */
  efficiency: number;
  /**
   * The machine's own scaling, measured right after on the same hosts (bench/hosts-bare.ts): one plain
   * process per worker host, under its quota, codes its share of the same chunks with the same codec and
   * options, all at once, with no cluster. Absent for Huffman (the kernel codes in place, not compressChunk).
   */
  bare?: { seconds: number; throughputMBps: number; cpuSeconds: number[]; efficiency: number; machineBusyCores?: number };
  /** The job's own phases: streaming the upload in (the gateway's ingest), coding after it, merging. */
  phases: JobView['phases'];
  chunkNodes: Record<string, number>;
  loadAverageBefore: number;
  loadAverageAfter: number;
}

export interface ThreadCpu {
  main: number;
  codec: number;
  other: number;
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
  /** Rounds over the worker counts; each count's curve point is its median run (absent: one round). */
  rounds?: number;
  runs: HostsRun[];
  /** With more than one round: every run, in the order run. */
  everyRun?: Array<{ workerHosts: number; throughputMBps: number; seconds: number; bareSeconds?: number }>;
  /** Runs whose job did not complete (each worker count is tried up to `attemptsMax` times). */
  failures: Array<{ workerHosts: number; attempt: number; error: string; loadAverage: number }>;
}

export interface HostsOptions extends Omit<HostsSection, 'runs' | 'failures' | 'everyRun' | 'rounds'> {
  rounds: number;
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

/** Linux's USER_HZ, the unit of utime and stime in /proc/PID/task/TID/stat. */
const clockTicksPerSecond = 100;

/** User plus system CPU ticks so far from a /proc stat file (a process's or one thread's). */
function statTicks(path: string): number {
  const fields = readFileSync(path, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** CPU ticks of each thread of a process so far, by thread id, with the thread's kind. */
function threadTicks(pid: number): Map<string, { kind: keyof ThreadCpu; ticks: number }> {
  const threads = new Map<string, { kind: keyof ThreadCpu; ticks: number }>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const ticks = statTicks(`/proc/${pid}/task/${tid}/stat`);
      // Node names its threads: the event loop "MainThread", each worker_threads thread (the codec pool's) "WorkerThread".
      const name = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      const kind = tid === String(pid) || name === 'MainThread' ? 'main' : name === 'WorkerThread' ? 'codec' : 'other';
      threads.set(tid, { kind, ticks });
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return threads;
}

/** The machine's busy and total CPU ticks so far, from /proc/stat's first line. */
function machineTicks(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = fields[3]! + fields[4]!; // idle and iowait
  const total = fields.reduce((sum, value) => sum + value, 0);
  return { busy: total - idle, total };
}

/** Cores of the machine busy on average between two readings of machineTicks. */
function busyCoresBetween(before: ReturnType<typeof machineTicks>, after: ReturnType<typeof machineTicks>): number {
  return ((after.busy - before.busy) / (after.total - before.total)) * cpus().length;
}

/** CPU seconds a process used so far (all its threads, ended ones too), from /proc/PID/stat. */
function processCpuSeconds(pid: number): number {
  return statTicks(`/proc/${pid}/stat`) / clockTicksPerSecond;
}

/** CPU seconds by kind of thread between two readings of threadTicks. */
function threadCpuBetween(before: ReturnType<typeof threadTicks>, after: ReturnType<typeof threadTicks>): ThreadCpu {
  const cpu: ThreadCpu = { main: 0, codec: 0, other: 0 };
  for (const [tid, { kind, ticks }] of after) cpu[kind] += (ticks - (before.get(tid)?.ticks ?? 0)) / clockTicksPerSecond;
  return cpu;
}

/** Time for the plain processes of the bare run to start (Node under a 0.25-CPU quota) before their common start. */
const bareStartDelayMs = 4_000;
const bareScript = fileURLToPath(new URL('./hosts-bare.ts', import.meta.url));

/** A bare run before its efficiency is known (that needs the one-host run). */
type BareRun = Omit<NonNullable<HostsRun['bare']>, 'efficiency'>;

/** The bare run (see HostsRun.bare) on the worker hosts, whose nodes are stopped meanwhile. */
async function measureBare(hosts: Hosts, workerNames: readonly string[], options: HostsOptions): Promise<BareRun | undefined> {
  if (options.codec === undefined || parseCodecChoice(options.codec).codec.name === 'huffman') return undefined;
  const startAtMs = Date.now() + bareStartDelayMs;
  const argv = (share: number) => [process.execPath, bareScript, options.filePath, String(options.chunkBytes), options.codec!, String(share), String(workerNames.length), String(startAtMs)];
  const machineAtStart = new Promise<ReturnType<typeof machineTicks>>((resolve) => setTimeout(() => resolve(machineTicks()), startAtMs - Date.now()));
  const ran = await Promise.all(workerNames.map((name, share) => hosts.exec(name, argv(share), jobMsMax, { underQuota: true })));
  const machineAtEnd = machineTicks();
  const machineBusyCores = busyCoresBetween(await machineAtStart, machineAtEnd);
  const failed = ran.find((result) => result.code !== 0);
  if (failed !== undefined) throw new Error(`hosts bench: the bare run failed: ${failed.stderr.trim() || `exit ${failed.code}`}`);
  const reports = ran.map((result) => JSON.parse(result.stdout) as { bytes: number; endAtMs: number; cpuSeconds: number });
  const seconds = (Math.max(...reports.map((report) => report.endAtMs)) - startAtMs) / 1000;
  const bytes = reports.reduce((sum, report) => sum + report.bytes, 0);
  const fileBytes = statSync(options.filePath).size;
  if (bytes !== fileBytes) throw new Error(`hosts bench: the bare run coded ${bytes} bytes of ${fileBytes}`);
  return { seconds, throughputMBps: bytes / 1e6 / seconds, cpuSeconds: reports.map((report) => report.cpuSeconds), machineBusyCores };
}

/** One job on 3 voters and `workerHosts` workers; the hosts are made for this run and removed after it. */
type MeasuredRun = Omit<HostsRun, 'efficiency' | 'bare'> & { bare?: BareRun };

async function measure(options: HostsOptions, workerHosts: number, expectedSha256: string): Promise<MeasuredRun> {
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
      const threadsBefore = workerPids.map(threadTicks);
      const voterPids = voterNames.map((name) => hosts.pid(name)!);
      const votersBefore = voterPids.map(processCpuSeconds);
      const machineBefore = machineTicks();
      const released = performance.now();
      for (const pid of workerPids) process.kill(pid, 'SIGCONT');
      const job = await client.waitForCompletion(uploaded.id);
      const releaseToCompletedSeconds = (performance.now() - released) / 1000;
      const workerThreadCpu = workerPids.map((pid, index) => threadCpuBetween(threadsBefore[index]!, threadTicks(pid)));
      const voterCpuShare = voterPids.map((pid, index) => (processCpuSeconds(pid) - votersBefore[index]!) / releaseToCompletedSeconds);
      const machineBusyCores = busyCoresBetween(machineBefore, machineTicks());
      const workerCpuSeconds = workerThreadCpu.map((cpu) => cpu.main + cpu.codec + cpu.other);
      if (job.state !== 'completed') throw new Error(`hosts bench: the job on ${workerHosts} worker hosts ended ${job.state}: ${job.error}`);
      if (job.sha256 !== expectedSha256) throw new Error(`hosts bench: the job on ${workerHosts} worker hosts has sha256 ${job.sha256}, expected ${expectedSha256}`);
      const seconds = releaseToCompletedSeconds - (job.phases.mergeSeconds ?? 0);
      const coders = Object.keys(job.chunkNodes).filter((name) => voterNames.includes(name));
      if (coders.length > 0) throw new Error(`hosts bench: voters ${coders.join(', ')} coded chunks although they run with jobs.code false`);
      const loadAverageAfter = loadavg()[0]!;
      // The worker hosts' nodes are idle now; stopped, they take no CPU from the bare run on their hosts.
      for (const pid of workerPids) process.kill(pid, 'SIGSTOP');
      const bare = await measureBare(hosts, workerNames, options);
      return { workerHosts, throughputMBps: options.fileBytes / 1e6 / seconds, seconds, ingestSeconds, releaseToCompletedSeconds, workerCpuShare: workerCpuSeconds.map((used) => used / releaseToCompletedSeconds), workerThreadCpu, voterCpuShare, machineBusyCores, ...(bare === undefined ? {} : { bare }), phases: job.phases, chunkNodes: job.chunkNodes, loadAverageBefore, loadAverageAfter };
    } finally {
      await client.close();
    }
  } finally {
    await hosts.destroy();
  }
}

/** One worker count's run, with a retry on fresh hosts when it fails; undefined when both attempts failed. */
async function measureWithRetry(options: HostsOptions, workerHosts: number, expectedSha256: string, failures: HostsSection['failures']): Promise<MeasuredRun | undefined> {
  for (let attempt = 1; attempt <= attemptsMax; attempt += 1) {
    try {
      return await measure(options, workerHosts, expectedSha256);
    } catch (error) {
      const message = (error as Error).message.split('\n')[0]!;
      failures.push({ workerHosts, attempt, error: message, loadAverage: loadavg()[0]! });
      options.onProgress?.(`hosts: ${workerHosts} worker host(s), attempt ${attempt} failed: ${message}`);
    }
  }
  return undefined;
}

function describeRun(run: MeasuredRun, round: string): string {
  const threads = run.workerThreadCpu?.map((cpu) => `${cpu.main.toFixed(2)}/${cpu.codec.toFixed(2)}/${cpu.other.toFixed(2)}`).join(', ');
  const bare = run.bare === undefined ? '' : `; bare codec processes ${run.bare.throughputMBps.toFixed(1)} MB/s in ${run.bare.seconds.toFixed(1)} s (machine ${run.bare.machineBusyCores?.toFixed(2)} cores busy)`;
  return `hosts${round}: ${run.workerHosts} worker host(s): ${run.throughputMBps.toFixed(1)} MB/s in ${run.seconds.toFixed(1)} s (coding phase; upload before it ${run.ingestSeconds?.toFixed(1)} s, release to completed ${run.releaseToCompletedSeconds?.toFixed(1)} s; worker hosts used ${run.workerCpuShare?.map((share) => share.toFixed(2)).join(', ')} CPU, s main/codec/other ${threads}; voter hosts used ${run.voterCpuShare?.map((share) => share.toFixed(2)).join(', ')} CPU; machine ${run.machineBusyCores?.toFixed(2)} of ${cpus().length} cores busy)${bare}; load ${run.loadAverageBefore.toFixed(1)} -> ${run.loadAverageAfter.toFixed(1)}; chunks ${JSON.stringify(run.chunkNodes)}`;
}

/** Of one worker count's runs, the one with the median throughput (the lower middle of an even count). */
function medianRun(runs: readonly MeasuredRun[]): MeasuredRun {
  return [...runs].sort((a, b) => a.throughputMBps - b.throughputMBps)[Math.floor((runs.length - 1) / 2)]!;
}

/**
 * Every worker count once per round, the rounds one after another (1, 2, 3, 4, 1, 2, ...), so a slow
 * spell of the shared machine falls on every count alike; each count's median run is the curve's.
 */
export async function benchHosts(options: HostsOptions): Promise<HostsSection> {
  const expectedSha256 = await sha256File(options.filePath);
  const byCount = new Map<number, MeasuredRun[]>(options.workerCounts.map((count) => [count, []]));
  const failures: HostsSection['failures'] = [];
  for (let round = 1; round <= options.rounds; round += 1) {
    for (const workerHosts of options.workerCounts) {
      const run = await measureWithRetry(options, workerHosts, expectedSha256, failures);
      if (run === undefined) continue;
      options.onProgress?.(describeRun(run, options.rounds > 1 ? ` (round ${round} of ${options.rounds})` : ''));
      byCount.get(workerHosts)!.push(run);
    }
  }
  const measured = [...byCount.values()].filter((runs) => runs.length > 0).map(medianRun);
  const one = measured.find((run) => run.workerHosts === 1);
  const efficiency = (throughput: number, workerHosts: number, single: number | undefined) => (single === undefined ? Number.NaN : throughput / (workerHosts * single));
  const runs = measured.map(({ bare, ...run }) => ({
    ...run,
    efficiency: efficiency(run.throughputMBps, run.workerHosts, one?.throughputMBps),
    ...(bare === undefined ? {} : { bare: { ...bare, efficiency: efficiency(bare.throughputMBps, run.workerHosts, one?.bare?.throughputMBps) } }),
  }));
  const everyRun = [...byCount.values()].flat().map((run) => ({ workerHosts: run.workerHosts, throughputMBps: run.throughputMBps, seconds: run.seconds, bareSeconds: run.bare?.seconds }));
  const { filePath: _filePath, onProgress: _onProgress, workerCounts: _workerCounts, ...described } = options;
  return { ...described, runs, ...(options.rounds > 1 ? { everyRun } : {}), failures };
}
