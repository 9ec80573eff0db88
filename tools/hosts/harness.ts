/**
 * Namespace hosts: a cluster of real `dcas node` processes, each in its own Linux network namespace with
 * its own address, joined by a bridge in the root namespace through veth pairs whose both directions are
 * shaped with `tc netem` (delay, loss, rate), optionally under a CPU quota (cgroup v1 `cpu` controller).
 * On a kernel without sch_netem (this project's machines), a token bucket sets the rate, nftables drops
 * the lost packets and a small program in each delayed host's namespace (delay.c, fed by NFQUEUE) holds
 * packets for the delay.
 * A link can be cut and healed (`ip link set DEV down/up`): unlike a killed process, a cut link resets
 * nothing, so a peer behind it goes silent, as on a real network.
 *
 * Needs root (CAP_NET_ADMIN) and iproute2. Every name it makes carries the prefix `dch<pid in base 36>-`,
 * so what a crashed run left behind (its pid no longer alive) is found and removed at the next start.
 * `destroy()` removes everything, and so do SIGINT, SIGTERM and process exit while hosts exist.
 * Traffic stays on the bridge: addresses come from 10.213.X.0/24, with X not used on this machine.
 *
 * With `blobStore: 'gcs'` one more host (address .200, no CPU quota, link shaped like the others) runs
 * the GCS-compatible server (tools/hosts/gcs-host.ts), and every node's blob store is that bucket through
 * the real @google-cloud/storage client, so chunk bytes cross the links as they would to Cloud Storage.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatPsk, localClusterConfigs, type NodeConfig, type NodeConfigInput } from '../../node/config/index.ts';
import { pinPeers } from '../../node/cluster/host/index.ts';
import { nodeProcessEnv, nodeProcessFlags } from '../../node/cli/cluster-commands.ts';
import type { ClusterStatusView } from '../../node/runtime/node.ts';
import type { GcsServerStats } from '../gcs-server/index.ts';
import { agreement, killAll, logsOf } from '../cluster.ts';

const dcas = new URL('../../node/cli/dcas.ts', import.meta.url).pathname;
const cpuCgroupRoot = '/sys/fs/cgroup/cpu';
const namePattern = /^dch([0-9a-z]+)-/;
const hostsMax = 32;
const gatewayPort = 7701;
const p2pPort = 7801;
const cfsPeriodUs = 100_000;
const outputLinesMax = 400;
const gcsPort = 7901;
const gcsBucket = 'dcas-hosts';
const gcsHostNumber = 200;
const gcsReadyMsMax = 30_000;
const gcsHostScript = new URL('./gcs-host.ts', import.meta.url).pathname;

/** One direction of a link; both directions of a host's link get the same shape. */
export interface LinkShape {
  delayMs: number;
  lossPercent: number;
  rateMbit: number;
}

export const defaultLink: LinkShape = { delayMs: 0.5, lossPercent: 0, rateMbit: 1000 };

export interface HostsOptions {
  hosts: number;
  /** The first `voters` hosts vote; the rest are worker-only nodes. Default: all, up to 3. */
  voters?: number;
  link?: LinkShape;
  /** CPU per host, in cores (e.g. 0.4); none when absent. */
  cpuQuota?: number;
  /** CPU of each host by index (node1 first), overriding `cpuQuota`; undefined at an index: `cpuQuota`. */
  cpuQuotas?: ReadonlyArray<number | undefined>;
  /** Where the nodes keep chunks: the shared folder (default) or the GCS server on its own host. */
  blobStore?: 'folder' | 'gcs';
  /** false: the voters run with `jobs.code: false` (Raft and their gateways only; worker hosts code). Default true. */
  votersCode?: boolean;
  overrides?: Pick<NodeConfigInput, 'membership' | 'raft' | 'workers' | 'jobs'>;
}

export interface Hosts {
  prefix: string;
  dataDir: string;
  configs: NodeConfig[];
  names: string[];
  /** The GCS server's host, when `blobStore: 'gcs'`: its endpoint and its request counts so far. */
  gcs: { url: string; stats(): GcsServerStats } | undefined;
  /** The host's address on the bridge. */
  address(name: string): string;
  /** The host's gateway, reachable from the root namespace over the bridge. */
  gateway(name: string): string;
  start(name: string): void;
  pid(name: string): number | undefined;
  stop(name: string, signal: NodeJS.Signals): Promise<void>;
  shape(name: string, link: LinkShape): void;
  /** Packets dropped on the host's link by the loss rules so far (see `shape`). */
  packetsDropped(name: string): number;
  /** Cuts the host's link at the bridge: it and its peers go silent to each other, no reset is sent. */
  cut(name: string): void;
  heal(name: string): void;
  /**
   * Runs a command inside the host's namespace; resolves with its output and exit code. `underQuota`:
   * in the host's cgroup too, under its CPU quota, as its node runs.
   */
  exec(name: string, argv: readonly string[], timeoutMs: number, options?: { underQuota?: boolean }): Promise<{ code: number | null; stdout: string; stderr: string }>;
  status(name: string): Promise<ClusterStatusView | undefined>;
  state(name: string, prefix: string): Promise<Record<string, unknown>>;
  /** The coordinator the named hosts agree on, once each sees `alive` members alive. */
  agreed(alive: number, names?: readonly string[]): Promise<ClusterStatusView | undefined>;
  logs(): string;
  destroy(): Promise<void>;
}

interface HostLayout {
  name: string;
  namespace: string;
  address: string;
  /** The veth end in the root namespace, enslaved to the bridge (the "switch port"). */
  bridgeEnd: string;
  /** The veth end inside the namespace. */
  hostEnd: string;
  cgroup: string | undefined;
  /** Cores the cgroup allows (set when `cgroup` is). */
  cpuQuota: number | undefined;
  /** Whether nftables loss rules were installed (they stay, at 0%, once set). */
  lossShaped?: boolean;
  /** Whether the NFQUEUE rules that feed the delay program were installed (they stay; bypassed with no program). */
  delayQueued?: boolean;
  /** The delay program holding this host's packets, while the link has a delay. */
  delay?: ChildProcess;
}

function ip(...argv: string[]): string {
  return execFileSync('ip', argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function tc(...argv: string[]): string {
  return execFileSync('tc', argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function quietly(action: () => unknown): void {
  try {
    action();
  } catch {
    // Cleanup tolerates partial state: what is already gone is fine.
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function ownerAlive(name: string): boolean {
  const match = namePattern.exec(name);
  return match !== null && processAlive(Number.parseInt(match[1]!, 36));
}

function killNamespaceProcesses(namespace: string): void {
  quietly(() => {
    for (const pid of ip('netns', 'pids', namespace).split(/\s+/).filter(Boolean)) quietly(() => process.kill(Number(pid), 'SIGKILL'));
  });
}

/**
 * `ip ARGS` in the host's cgroup, when it has one: the shell joins the cgroup before exec, so every thread
 * the command ever starts runs under the host's quota.
 */
function ipUnderQuota(layout: HostLayout, ipArgs: readonly string[]): [string, string[]] {
  if (layout.cgroup === undefined) return ['ip', [...ipArgs]];
  return ['sh', ['-c', `echo $$ > ${join(layout.cgroup, 'cgroup.procs')} && exec ip "$@"`, 'sh', ...ipArgs]];
}

/** Hosts.exec: runs `argv` in the host's namespace (and under its quota), collecting its output. */
function execIn(layout: HostLayout, argv: readonly string[], timeoutMs: number, underQuota: boolean): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const inNamespace = ['netns', 'exec', layout.namespace, ...argv];
  const [command, args] = underQuota ? ipUnderQuota(layout, inNamespace) : ['ip', inNamespace];
  return new Promise((resolve) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data) => (stdout += String(data)));
    child.stderr.on('data', (data) => (stderr += String(data)));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function removeCgroup(path: string): void {
  quietly(() => {
    for (const pid of readFileSync(join(path, 'cgroup.procs'), 'utf8').split(/\s+/).filter(Boolean)) quietly(() => process.kill(Number(pid), 'SIGKILL'));
  });
  // A killed process leaves its cgroup a moment later; rmdir fails with EBUSY until then.
  for (let attempt = 0; attempt < 50 && existsSync(path); attempt += 1) {
    try {
      rmdirSync(path);
    } catch {
      execFileSync('sleep', ['0.1']);
    }
  }
}

/** Removes namespaces, links, cgroups and data folders a run that is no longer alive left behind. */
export function removeLeftovers(): string[] {
  const removed: string[] = [];
  const namespaces = quietlyList(() => ip('netns', 'list').split('\n').map((line) => line.split(' ')[0]!));
  for (const namespace of namespaces.filter((name) => namePattern.test(name) && !ownerAlive(name))) {
    killNamespaceProcesses(namespace);
    quietly(() => ip('netns', 'del', namespace));
    removed.push(namespace);
  }
  const links = quietlyList(() => ip('-o', 'link', 'show').split('\n').map((line) => line.split(': ')[1]?.split('@')[0] ?? ''));
  for (const link of links.filter((name) => namePattern.test(name) && !ownerAlive(name))) {
    quietly(() => ip('link', 'del', link));
    removed.push(link);
  }
  const cgroups = quietlyList(() => readdirSync(cpuCgroupRoot));
  for (const cgroup of cgroups.filter((name) => namePattern.test(name) && !ownerAlive(name))) {
    removeCgroup(join(cpuCgroupRoot, cgroup));
    removed.push(cgroup);
  }
  const folders = quietlyList(() => readdirSync(tmpdir()));
  for (const folder of folders.filter((name) => name.startsWith('dcas-hosts-') && !ownerAlive(name.slice('dcas-hosts-'.length)))) {
    quietly(() => rmSync(join(tmpdir(), folder), { recursive: true, force: true }));
    removed.push(folder);
  }
  return removed;
}

function quietlyList(list: () => string[]): string[] {
  try {
    return list().filter(Boolean);
  } catch {
    return [];
  }
}

/** A /24 in 10.213.0.0/16 that no interface of this machine uses yet. */
function freeSubnet(): string {
  const used = ip('-4', '-o', 'addr', 'show');
  for (let third = 0; third < 256; third += 1) {
    if (!used.includes(` 10.213.${third}.`)) return `10.213.${third}`;
  }
  throw new Error('namespace hosts: every 10.213.X.0/24 is in use on this machine');
}

/**
 * netem where the kernel has it. Otherwise (this machine's kernel is built without sch_netem, tc
 * classifiers and tc actions) a token bucket shapes the rate, nftables drops `lossPercent` of the
 * packets in each direction at the host's own interface, and the delay program holds them (delayWithQueue).
 */
function shapingArgs(link: LinkShape): string[] {
  if (netemAvailable()) return ['netem', 'delay', `${link.delayMs}ms`, 'loss', `${link.lossPercent}%`, 'rate', `${link.rateMbit}mbit`];
  return ['tbf', 'rate', `${link.rateMbit}mbit`, 'burst', '256kb', 'latency', '50ms'];
}

/** Below this a link gets no delay program without netem: the default link's 0.5 ms is the bridge's own. */
const delayProgramMinMs = 1;
const delaySource = new URL('./delay.c', import.meta.url).pathname;
const delayBinary = new URL('../../build/netdelay', import.meta.url).pathname;

/** The delay program, compiled from delay.c on first use (and again when the source is newer). */
function delayProgram(): string {
  if (existsSync(delayBinary) && statSync(delayBinary).mtimeMs >= statSync(delaySource).mtimeMs) return delayBinary;
  mkdirSync(join(delayBinary, '..'), { recursive: true });
  const partial = `${delayBinary}.${process.pid}.partial`;
  try {
    execFileSync('gcc', ['-O2', '-o', partial, delaySource, '-lnetfilter_queue', '-lnfnetlink'], { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(`namespace hosts: a delay without sch_netem needs gcc and libnetfilter-queue-dev to build tools/hosts/delay.c: ${stderr.split('\n')[0] ?? (error as Error).message}`);
  }
  renameSync(partial, delayBinary);
  return delayBinary;
}

/**
 * A delay without netem: iptables-legacy rules queue what the host sends and receives on its link to
 * NFQUEUE 1 (with --queue-bypass, so packets pass while no program listens), and the delay program in the
 * namespace holds each for `delayMs`: both directions delayed, as netem on both veth ends would.
 */
function delayWithQueue(layout: HostLayout, delayMs: number): void {
  layout.delay?.kill('SIGKILL');
  layout.delay = undefined;
  if (delayMs < delayProgramMinMs) return;
  const program = delayProgram();
  if (!layout.delayQueued) {
    for (const [chain, side] of [['OUTPUT', '-o'], ['INPUT', '-i']]) {
      try {
        execFileSync('ip', ['netns', 'exec', layout.namespace, 'iptables-legacy', '-A', chain, side, layout.hostEnd, '-j', 'NFQUEUE', '--queue-num', '1', '--queue-bypass'], { stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (error) {
        throw new Error(`namespace hosts: a delay without sch_netem needs iptables-legacy (Debian package iptables): ${(error as Error).message.split('\n')[0]}`);
      }
    }
    layout.delayQueued = true;
  }
  layout.delay = spawn('ip', ['netns', 'exec', layout.namespace, program, '1', String(delayMs)], { stdio: ['ignore', 'ignore', 'inherit'] });
  layout.delay.unref();
}

let netemKnown: boolean | undefined;

/** Whether this kernel can add delay and loss with tc netem (probed once on a throwaway veth pair). */
export function netemAvailable(): boolean {
  if (netemKnown !== undefined) return netemKnown;
  const probe = `dchprobe${process.pid.toString(36)}`;
  try {
    ip('link', 'add', probe, 'type', 'veth', 'peer', 'name', `${probe}p`);
    tc('qdisc', 'add', 'dev', probe, 'root', 'netem', 'delay', '1ms');
    netemKnown = true;
  } catch {
    netemKnown = false;
  } finally {
    quietly(() => ip('link', 'del', probe));
  }
  return netemKnown;
}

function dropWithNftables(layout: HostLayout, lossPercent: number): void {
  const rule = (hook: string, device: string) => `chain ${hook} { type filter hook ${hook} priority 0; policy accept; ${device} "${layout.hostEnd}" numgen random mod 100 < ${lossPercent} counter drop; }`;
  const ruleset = `table inet dcasloss\ndelete table inet dcasloss\ntable inet dcasloss {\n${rule('output', 'oifname')}\n${rule('input', 'iifname')}\n}\n`;
  execFileSync('ip', ['netns', 'exec', layout.namespace, 'nft', '-f', '-'], { input: ruleset, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Packets the nftables loss rules of a host dropped so far (0 where netem shapes the link or none were set). */
function packetsDropped(layout: HostLayout): number {
  if (!layout.lossShaped) return 0;
  const listing = execFileSync('ip', ['netns', 'exec', layout.namespace, 'nft', 'list', 'table', 'inet', 'dcasloss'], { encoding: 'utf8' });
  return [...listing.matchAll(/counter packets (\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0);
}

function shapeLink(layout: HostLayout, link: LinkShape): void {
  tc('-n', layout.namespace, 'qdisc', 'replace', 'dev', layout.hostEnd, 'root', ...shapingArgs(link));
  tc('qdisc', 'replace', 'dev', layout.bridgeEnd, 'root', ...shapingArgs(link));
  if (!netemAvailable() && (link.lossPercent > 0 || layout.lossShaped)) {
    dropWithNftables(layout, link.lossPercent);
    layout.lossShaped = true;
  }
  if (!netemAvailable() && (link.delayMs >= delayProgramMinMs || layout.delay !== undefined)) delayWithQueue(layout, link.delayMs);
}

function createNetwork(prefix: string, subnet: string, layouts: readonly HostLayout[], link: LinkShape): void {
  const bridge = `${prefix}br`;
  ip('link', 'add', bridge, 'type', 'bridge');
  ip('addr', 'add', `${subnet}.254/24`, 'dev', bridge);
  ip('link', 'set', bridge, 'up');
  for (const layout of layouts) {
    ip('netns', 'add', layout.namespace);
    ip('link', 'add', layout.bridgeEnd, 'type', 'veth', 'peer', 'name', layout.hostEnd);
    ip('link', 'set', layout.hostEnd, 'netns', layout.namespace);
    ip('link', 'set', layout.bridgeEnd, 'master', bridge);
    ip('link', 'set', layout.bridgeEnd, 'up');
    ip('-n', layout.namespace, 'addr', 'add', `${layout.address}/24`, 'dev', layout.hostEnd);
    ip('-n', layout.namespace, 'link', 'set', layout.hostEnd, 'up');
    ip('-n', layout.namespace, 'link', 'set', 'lo', 'up');
    shapeLink(layout, link);
    if (layout.cgroup !== undefined && layout.cpuQuota !== undefined) {
      mkdirSync(layout.cgroup);
      writeFileSync(join(layout.cgroup, 'cpu.cfs_period_us'), String(cfsPeriodUs));
      writeFileSync(join(layout.cgroup, 'cpu.cfs_quota_us'), String(Math.round(layout.cpuQuota * cfsPeriodUs)));
    }
  }
}

function removeNetwork(prefix: string, layouts: readonly HostLayout[]): void {
  for (const layout of layouts) killNamespaceProcesses(layout.namespace);
  for (const layout of layouts) {
    if (layout.cgroup !== undefined) removeCgroup(layout.cgroup);
    // Deleting the namespace deletes its veth end, and with it the pair.
    quietly(() => ip('netns', 'del', layout.namespace));
    quietly(() => ip('link', 'del', layout.bridgeEnd));
  }
  quietly(() => ip('link', 'del', `${prefix}br`));
}

function hostLayout(prefix: string, subnet: string, number: number, cpuQuota: number | undefined): HostLayout {
  return {
    name: `node${number}`,
    namespace: `${prefix}${number}`,
    address: `${subnet}.${number}`,
    bridgeEnd: `${prefix}${number}b`,
    hostEnd: `${prefix}${number}h`,
    cgroup: cpuQuota === undefined ? undefined : join(cpuCgroupRoot, `${prefix}${number}`),
    cpuQuota,
  };
}

/** Starts the GCS server in its host's namespace; resolves once it listens on the host's address. */
async function startGcsHost(layout: HostLayout, dataDir: string): Promise<{ url: string; stats(): GcsServerStats }> {
  const statsFile = join(dataDir, 'gcs-stats.json');
  const argv = ['netns', 'exec', layout.namespace, process.execPath, ...nodeProcessFlags, gcsHostScript, layout.address, String(gcsPort), gcsBucket, join(dataDir, 'gcs'), statsFile];
  const child = spawn('ip', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the GCS host did not start within ${gcsReadyMsMax} ms: ${output.slice(-500)}`)), gcsReadyMsMax);
    const read = (data: unknown) => {
      output += String(data);
      const ready = /^ready (\S+)$/m.exec(output);
      if (ready === null) return;
      clearTimeout(timer);
      resolve(ready[1]!);
    };
    child.stdout.on('data', read);
    child.stderr.on('data', read);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the GCS host exited (${code}): ${output.slice(-500)}`));
    });
  });
  // The server lives in the namespace: removeNetwork kills it with every other process there.
  return { url, stats: () => JSON.parse(readFileSync(statsFile, 'utf8')) as GcsServerStats };
}

async function hostConfigs(options: HostsOptions, dataDir: string, layouts: readonly HostLayout[], gcsUrl: string | undefined): Promise<NodeConfig[]> {
  const pskFile = join(dataDir, 'cluster.key');
  writeFileSync(pskFile, formatPsk());
  const votersCount = options.voters ?? Math.min(3, options.hosts);
  const laidOut = localClusterConfigs({
    nodes: options.hosts,
    dataDir,
    pskFile,
    overrides: { workers: 1, membership: { heartbeatMs: 200, suspectMs: 600, deadMs: 1200 }, ...options.overrides },
  });
  const voters = laidOut.slice(0, votersCount).map((config) => config.name);
  const p2pAddress = (index: number) => `/ip4/${layouts[index]!.address}/tcp/${p2pPort}`;
  // The local layout, moved onto the hosts' own addresses: one port everywhere, since each host has its own.
  const placed = laidOut.map((config, index): NodeConfig => ({
    ...config,
    role: voters.includes(config.name) ? 'voter' : 'worker',
    jobs: { ...config.jobs, code: options.votersCode === false && voters.includes(config.name) ? false : config.jobs.code },
    voters,
    listen: [p2pAddress(index)],
    bootstrap: voters.filter((voter) => voter !== config.name).map((voter) => p2pAddress(voters.indexOf(voter))),
    gateway: { ...config.gateway, host: layouts[index]!.address, port: gatewayPort },
    ...(gcsUrl === undefined ? {} : { blobStore: { kind: 'gcs', bucket: gcsBucket, prefix: 'cluster/', apiEndpoint: gcsUrl } }),
  }));
  const configs = await pinPeers(placed);
  for (const config of configs) {
    const { source: _source, ...fields } = config;
    writeFileSync(join(dataDir, `${config.name}.json`), JSON.stringify(fields));
  }
  return configs;
}

export async function createHosts(options: HostsOptions): Promise<Hosts> {
  if (!Number.isInteger(options.hosts) || options.hosts < 1 || options.hosts > hostsMax) {
    throw new RangeError(`namespace hosts: hosts: expected an integer from 1 to ${hostsMax}, got ${options.hosts}`);
  }
  if (process.getuid?.() !== 0) throw new Error('namespace hosts: must run as root (ip netns add needs CAP_NET_ADMIN)');
  removeLeftovers();
  const prefix = `dch${process.pid.toString(36)}-`;
  if (readdirSync(tmpdir()).some((name) => name.startsWith(`dcas-hosts-${prefix}`))) {
    throw new Error(`namespace hosts: this process already has hosts (${prefix}); destroy them first`);
  }
  const dataDir = mkdtempSync(join(tmpdir(), `dcas-hosts-${prefix}`));
  const subnet = freeSubnet();
  const layouts: HostLayout[] = Array.from({ length: options.hosts }, (_, index) => hostLayout(prefix, subnet, index + 1, options.cpuQuotas?.[index] ?? options.cpuQuota));
  const gcsLayout = options.blobStore === 'gcs' ? { ...hostLayout(prefix, subnet, gcsHostNumber, undefined), name: 'gcs' } : undefined;
  const everyLayout = gcsLayout === undefined ? layouts : [...layouts, gcsLayout];
  const running = new Map<string, { child: ChildProcess; output: string[] }>();
  let destroyed = false;
  const teardown = () => {
    if (destroyed) return;
    destroyed = true;
    for (const node of running.values()) quietly(() => node.child.kill('SIGKILL'));
    removeNetwork(prefix, everyLayout);
    quietly(() => rmSync(dataDir, { recursive: true, force: true }));
    process.off('exit', teardown);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    teardown();
    process.kill(process.pid, signal);
  };
  process.on('exit', teardown);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    createNetwork(prefix, subnet, everyLayout, options.link ?? defaultLink);
    const gcs = gcsLayout === undefined ? undefined : await startGcsHost(gcsLayout, dataDir);
    const configs = await hostConfigs(options, dataDir, layouts, gcs?.url);
    return hostsView({ prefix, dataDir, configs, layouts, gcs }, running, teardown);
  } catch (error) {
    teardown();
    throw new Error(`namespace hosts: could not create ${options.hosts} hosts: ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }
}

interface HostsMade {
  prefix: string;
  dataDir: string;
  configs: NodeConfig[];
  layouts: readonly HostLayout[];
  gcs: Hosts['gcs'];
}

function hostsView({ prefix, dataDir, configs, layouts, gcs }: HostsMade, running: Map<string, { child: ChildProcess; output: string[] }>, teardown: () => void): Hosts {
  const layoutOf = (name: string) => layouts.find((layout) => layout.name === name) ?? raise(`namespace hosts: no host ${name}`);
  const gateway = (name: string) => `http://${layoutOf(name).address}:${gatewayPort}`;

  async function status(name: string): Promise<ClusterStatusView | undefined> {
    try {
      const response = await fetch(`${gateway(name)}/cluster`, { signal: AbortSignal.timeout(1_000) });
      return response.ok ? ((await response.json()) as ClusterStatusView) : undefined;
    } catch {
      return undefined;
    }
  }

  return {
    prefix,
    dataDir,
    configs,
    names: layouts.map((layout) => layout.name),
    gcs,
    address: (name) => layoutOf(name).address,
    gateway,
    start(name) {
      const layout = layoutOf(name);
      const node = ['netns', 'exec', layout.namespace, process.execPath, ...nodeProcessFlags, dcas, 'node', '--config', join(dataDir, `${name}.json`)];
      const [command, argv] = ipUnderQuota(layout, node);
      const child = spawn(command, argv, {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...nodeProcessEnv, ...process.env, DCAS_LOG_LEVEL: process.env.DCAS_LOG_LEVEL ?? 'warn' },
      });
      const output: string[] = [];
      const keep = (data: unknown) => {
        output.push(String(data));
        if (output.length > outputLinesMax) output.splice(0, outputLinesMax / 2);
      };
      child.stdout?.on('data', keep);
      child.stderr?.on('data', keep);
      running.set(name, { child, output });
    },
    pid: (name) => running.get(name)?.child.pid,
    async stop(name, signal) {
      const node = running.get(name);
      if (node === undefined) return;
      running.delete(name);
      if (node.child.exitCode !== null || node.child.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        node.child.once('exit', () => resolve());
        node.child.kill(signal);
      });
    },
    shape: (name, link) => shapeLink(layoutOf(name), link),
    packetsDropped: (name) => packetsDropped(layoutOf(name)),
    cut: (name) => void ip('link', 'set', layoutOf(name).bridgeEnd, 'down'),
    heal: (name) => void ip('link', 'set', layoutOf(name).bridgeEnd, 'up'),
    exec: (name, argv, timeoutMs, options) => execIn(layoutOf(name), argv, timeoutMs, options?.underQuota === true),
    status,
    async state(name, prefix) {
      const response = await fetch(`${gateway(name)}/state?prefix=${encodeURIComponent(prefix)}`, { signal: AbortSignal.timeout(5_000) });
      return ((await response.json()) as { entries: Record<string, unknown> }).entries;
    },
    async agreed(alive, names = [...running.keys()]) {
      return agreement(await Promise.all(names.map(status)), alive);
    },
    logs: () => logsOf(running),
    async destroy() {
      await killAll(running);
      teardown();
    },
  };
}

function raise(message: string): never {
  throw new Error(message);
}
