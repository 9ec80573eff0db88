/**
 * `dcas node`, `dcas cluster up`, `dcas cluster status`: running nodes and looking at a cluster.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { createWriteStream } from 'node:fs';
import { chmod, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { Option } from 'commander';
import { pino, type Logger } from 'pino';
import { ConfigError, formatPsk, loadConfig, localClusterConfigs, localClusterNodesMax, type NodeConfig } from '../config/index.ts';
import { privateFileMode, privateFolder, writePrivateFile, type ClusterStatusView } from '../runtime/index.ts';
import { CliError, exitUsage, printJson, wrapWords } from './output.ts';
import { networkInWords } from './errors.ts';
import { ensureClientToken, recordLocalGateways, tokenFor, trustCertificateAuthority } from './local-tokens.ts';
import { parsePositiveInteger } from './codec-commands.ts';

export const defaultServer = 'http://127.0.0.1:7701';
const dcasEntry = new URL('./dcas.ts', import.meta.url).pathname;
/**
 * V8 flags for node processes. A small young generation keeps garbage chunk buffers from piling up
 * between collections, which is most of what bounds a node's resident memory under load. A heap
 * growing factor of 3: V8 counts the external memory allocated since the last major collection (every
 * socket read of an upload is a fresh ArrayBuffer) against the old generation's room, so a gateway
 * receiving 1 GiB marked its 28 MB heap 50-60 times (its main thread's collector 1.3 s, V8's helper
 * threads 2.2 s). Its own factor (about 1.4) left 12 MB of room; 2 halved that work; 3 halves it again,
 * and the memory governor (runtime/memory.ts, at 32 MiB) collects the young buffers between. Measured,
 * 1 GiB to a local 3-node cluster, six runs each alternating, `upload --wait` and all nodes' CPU:
 * factor 2 (governor at 64 MiB) 5.9-8.6 s, mean 7.5, and 8.0-12.0 s, mean 10.1, the gateway's peak RSS
 * 253-262 MB; factor 3 (governor at 32 MiB) 6.3-8.1 s, mean 7.0, and 8.4-10.2 s, mean 9.1, 265-270 MB;
 * `npm run bench:load` peaks 236/160/230 MiB and 237/192/156 MiB. (Factor 3 with the governor at
 * 64 MiB: a gateway peak of 281 MB, bench:load 267/157/268 MiB.)
 */
export const nodeProcessFlags = ['--max-semi-space-size=4', '--heap-growing-percent=200'];
/**
 * glibc malloc settings for node processes: a fixed mmap threshold returns freed chunk buffers to
 * the system at once (glibc otherwise raises the threshold after the first free and keeps 4 MiB
 * buffers in its arenas), and two arenas instead of one per thread (measured: upload peak 286 MB
 * to 235 MB on the gateway node). Set only when the user did not.
 */
export const nodeProcessEnv: Record<string, string> = {
  MALLOC_ARENA_MAX: '2',
  MALLOC_MMAP_THRESHOLD_: '131072',
  // LevelDB (Raft's log and state) and every blob read, write and fsync share libuv's threadpool;
  // with the default 4 threads, Raft waits behind bulk chunk I/O.
  UV_THREADPOOL_SIZE: '16',
  // Transparent huge pages for what malloc maps (where the kernel's THP mode is madvise): zstd's
  // contexts are fresh memory for every chunk, and with the fixed threshold above every one is a new
  // mapping. zstd:19 on 512 KiB chunks: 54,600 -> 14,600-15,600 faults and 3.0-3.9 -> 2.6 CPU-seconds
  // per 16 chunks; a gateway receiving 1 GiB: the same peak RSS (268 MB) and CPU. As bin/dcas sets it.
  GLIBC_TUNABLES: 'glibc.malloc.hugetlb=1',
};

/** The server URL from --server, DCAS_SERVER, or the first node of a default local cluster; ws:// is accepted. */
export function serverUrl(option: string | undefined): string {
  const text = option ?? process.env.DCAS_SERVER ?? defaultServer;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new CliError(`--server ${text}: not a URL (example: http://127.0.0.1:7701)`, exitUsage);
  }
  if (url.protocol === 'ws:') url.protocol = 'http:';
  else if (url.protocol === 'wss:') url.protocol = 'https:';
  else if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`--server ${text}: expected an http:// or ws:// URL`, exitUsage);
  return url.origin;
}

export async function getJson<T>(server: string, path: string, token?: string): Promise<T> {
  let response: Response;
  const headers: Record<string, string> = token ? { authorization: `Bearer ${token}` } : {};
  try {
    response = await fetch(`${server}${path}`, { headers, signal: AbortSignal.timeout(5_000) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause?.code ?? (error as Error).name;
    throw new CliError(`cannot reach ${server}: ${cause === 'ECONNREFUSED' ? 'connection refused (is a node running there?)' : networkInWords(cause)}`);
  }
  const body = (await response.json().catch(() => null)) as T & { error?: { message: string } };
  if (!response.ok) throw new CliError(`${server}${path}: ${body?.error?.message ?? `HTTP ${response.status}`}`);
  return body;
}

/**
 * The node's logger: JSON lines (for files and log collectors), or one readable line per event for a
 * person watching a terminal (`--pretty`, or stdout is a terminal; `--no-pretty` forces JSON).
 */
async function nodeLogger(name: string, pretty: boolean): Promise<Logger> {
  const options = { base: { node: name }, level: process.env.DCAS_LOG_LEVEL ?? 'info' };
  if (!pretty) return pino(options);
  const { default: prettyStream } = await import('pino-pretty');
  return pino(options, prettyStream({ colorize: process.stdout.isTTY === true, translateTime: 'HH:MM:ss.l', ignore: 'pid,hostname,node,room', messageFormat: '{node}{if room} {room}{end}: {msg}', singleLine: true, sync: true }));
}

function loadNodeConfig(configPath: string): NodeConfig {
  try {
    return loadConfig(configPath);
  } catch (error) {
    if (error instanceof ConfigError) throw new CliError(error.message);
    throw error;
  }
}

/**
 * Prints the node's libp2p peer id, making its identity (`peer.key` in dataDir) if it has none yet: what
 * an operator pins in every config's `peers` before the nodes of a multi-host cluster first start.
 */
async function printPeerId(configPath: string): Promise<void> {
  const config = loadNodeConfig(configPath);
  process.umask(0o077);
  await privateFolder(config.dataDir);
  const { peerIdOfDataDir } = await import('../cluster/index.ts');
  process.stdout.write(`${await peerIdOfDataDir(config.dataDir)}\n`);
}

async function runNode(configPath: string, pretty: boolean): Promise<void> {
  const config = loadNodeConfig(configPath);
  // Everything the node writes (LevelDB's files, blobs, logs) is for this user only: files 0600, folders 0700.
  process.umask(0o077);
  const logger = await nodeLogger(config.name, pretty);
  // Loaded here, not at the top: libp2p and LevelDB would add most of a second to every other command.
  const { startNode } = await import('../runtime/index.ts');
  const node = await startNode(config, logger);
  await new Promise<void>((resolveStop) => {
    const stop = (signal: string) => {
      logger.info({ signal }, 'stopping');
      resolveStop();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  await node.stop();
}

interface ClusterUpOptions {
  nodes: number;
  data: string;
  basePort: number;
  json?: boolean;
  /** False with --no-token: an open cluster that any local program may use. */
  token: boolean;
}

async function waitHealthy(url: string, child: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new CliError(`a node exited with code ${child.exitCode} while starting`);
    try {
      const response = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1_000) });
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolveWait) => setTimeout(resolveWait, 100));
  }
  throw new CliError(`${url} did not answer within ${timeoutMs} ms`);
}

async function portInUse(host: string, port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const server = createServer();
    server.once('error', () => resolvePort(true));
    server.listen(port, host, () => server.close(() => resolvePort(false)));
  });
}

/** Refuses to start when a node's port is taken, e.g. by a cluster that is still running. */
async function checkPortsFree(configs: readonly NodeConfig[]): Promise<void> {
  for (const config of configs) {
    const p2pPort = Number(/\/tcp\/(\d+)/.exec(config.listen[0])?.[1]);
    for (const [what, port] of [['gateway', config.gateway.port], ['libp2p', p2pPort]] as const) {
      if (Number.isInteger(port) && (await portInUse(config.gateway.host, port))) {
        throw new CliError(`${config.name}: ${what} port ${port} is in use (is another cluster running? stop it, or pick other ports with --base-port)`);
      }
    }
  }
}

/** A node that exits is restarted after this, doubling with each exit in a row, up to the maximum. */
const restartDelayMsMin = 1_000;
const restartDelayMsMax = 30_000;
/** A node that ran this long before exiting counts as healthy: its next restart waits the minimum again. */
const restartHealthyRunMs = 60_000;
/** Exits in a row after which `cluster up` stops restarting a node (it keeps failing at start). */
const restartsInRowMax = 10;

/** The delay before the next restart of a node that exited `exitsInRow` times in a row (1 = the first). */
export function restartDelayMs(exitsInRow: number): number {
  return Math.min(restartDelayMsMin * 2 ** Math.min(exitsInRow - 1, 30), restartDelayMsMax);
}

/** One node process of `cluster up`, with what its restarts need. */
interface SupervisedNode {
  config: NodeConfig;
  child: ChildProcess;
  configPath: string;
  logPath: string;
  exitsInRow: number;
  gaveUp: boolean;
  restart?: NodeJS.Timeout;
}

/**
 * The node processes of `cluster up`: starts each, restarts one that exits on its own after a backoff
 * and says so, so one node's crash (or a full disk it ran into) does not leave the cluster a member
 * short; stops them all on a signal or when every node gave up.
 */
class NodeSupervisor {
  readonly nodes: SupervisedNode[] = [];
  readonly #gatewayUrls: readonly string[];
  readonly #json: boolean;
  #stopping = false;

  constructor(gatewayUrls: readonly string[], json: boolean) {
    this.#gatewayUrls = gatewayUrls;
    this.#json = json;
  }

  /** Starts the node of `config` and supervises it from now on. */
  add(config: NodeConfig, configPath: string): void {
    const entry = { config, child: undefined as unknown as ChildProcess, configPath, logPath: join(config.dataDir, 'node.log'), exitsInRow: 0, gaveUp: false };
    this.nodes.push(entry);
    this.#launch(entry);
  }

  async stopAll(exitCode: number): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    for (const entry of this.nodes) if (entry.restart !== undefined) clearTimeout(entry.restart);
    if (!this.#json) process.stderr.write('\nstopping all nodes...\n');
    // Whatever listens on these ports next is not this cluster: it must not be offered the token.
    await recordLocalGateways(this.#gatewayUrls, undefined).catch(() => {});
    await Promise.all(this.nodes.map(({ child }) => stopChild(child)));
    process.exit(exitCode);
  }

  #launch(entry: SupervisedNode): void {
    const log = createWriteStream(entry.logPath, { flags: 'a', mode: privateFileMode });
    const child = spawn(process.execPath, [...nodeProcessFlags, dcasEntry, 'node', '--config', entry.configPath], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...nodeProcessEnv, ...process.env } });
    const startedAt = Date.now();
    entry.child = child;
    child.stdout?.pipe(log);
    child.stderr?.pipe(log);
    child.once('exit', (code, signal) => this.#exited(entry, Date.now() - startedAt, signal ?? `code ${code}`));
  }

  #exited(entry: SupervisedNode, ranMs: number, how: string): void {
    if (this.#stopping) return;
    entry.exitsInRow = ranMs >= restartHealthyRunMs ? 1 : entry.exitsInRow + 1;
    if (entry.exitsInRow > restartsInRowMax) {
      entry.gaveUp = true;
      process.stderr.write(`${entry.config.name} exited (${how}) ${restartsInRowMax} times in a row; not restarting it; log: ${entry.logPath}\n`);
      if (this.nodes.every((other) => other.gaveUp)) {
        process.stderr.write('dcas: every node of the cluster has exited\n');
        void this.stopAll(1);
      }
      return;
    }
    const delayMs = restartDelayMs(entry.exitsInRow);
    process.stderr.write(`${entry.config.name} exited (${how}); restarting it in ${delayMs / 1000} s (restart ${entry.exitsInRow} in a row); log: ${entry.logPath}\n`);
    entry.restart = setTimeout(() => {
      entry.restart = undefined;
      if (this.#stopping) return;
      this.#launch(entry);
      process.stderr.write(`${entry.config.name} restarted (pid ${entry.child.pid})\n`);
    }, delayMs);
  }
}

/** SIGTERM, then SIGKILL if the process is still there after 10 s. */
function stopChild(child: ChildProcess): Promise<void> {
  return new Promise<void>((resolveExit) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolveExit();
    const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(killer);
      resolveExit();
    });
    child.kill('SIGTERM');
  });
}

/** The cluster's data folder with its pre-shared libp2p key (made on first use); returns the key's file. */
async function prepareClusterFolder(dataDir: string): Promise<string> {
  await privateFolder(dataDir);
  await privateFolder(join(dataDir, 'configs'));
  const pskFile = join(dataDir, 'cluster.key');
  const existingKey = await readFile(pskFile, 'utf8').catch(() => undefined);
  if (existingKey === undefined) await writePrivateFile(pskFile, formatPsk());
  else await chmod(pskFile, privateFileMode);
  return pskFile;
}

/** The nodes' configs, refused when a port is taken, each pinning every node's peer id. */
async function clusterConfigs(options: ClusterUpOptions, dataDir: string, pskFile: string, token: string | undefined): Promise<NodeConfig[]> {
  let configs: NodeConfig[];
  try {
    configs = localClusterConfigs({ nodes: options.nodes, dataDir, basePort: options.basePort, pskFile, token });
  } catch (error) {
    throw new CliError((error as Error).message, exitUsage);
  }
  await checkPortsFree(configs);
  return configs;
}

/** Writes a node's config where its process reads it; returns the file. */
async function writeNodeConfig(dataDir: string, config: NodeConfig): Promise<string> {
  const { source: _source, ...fields } = config;
  const configPath = join(dataDir, 'configs', `${config.name}.json`);
  await writePrivateFile(configPath, `${JSON.stringify(fields, null, 2)}\n`);
  await privateFolder(config.dataDir);
  return configPath;
}

interface NodeSummary {
  name: string;
  role: NodeConfig['role'];
  pid: number | undefined;
  gateway: string;
  p2p: string;
  config: string;
  log: string;
}

function summarize({ config, child, configPath, logPath }: SupervisedNode): NodeSummary {
  return {
    name: config.name,
    role: config.role,
    pid: child.pid,
    gateway: `${config.gateway.tls === undefined ? 'ws' : 'wss'}://${config.gateway.host}:${config.gateway.port}`,
    p2p: config.listen[0],
    config: configPath,
    log: logPath,
  };
}

function printClusterSummary(dataDir: string, summary: readonly NodeSummary[], tokenFile: string | undefined): void {
  // On a terminal, lines break between words at its width; a pipe gets them whole.
  const width = process.stdout.isTTY === true ? process.stdout.columns : Number.POSITIVE_INFINITY;
  const say = (line: string) => process.stdout.write(`${wrapWords(line, width)}\n`);
  say(`DCaS local cluster: ${summary.length} node(s), data in ${dataDir}`);
  for (const node of summary) {
    say(`  ${node.name.padEnd(8)} ${node.role.padEnd(7)} pid ${String(node.pid).padEnd(8)} gateway ${node.gateway}  p2p ${node.p2p}`);
  }
  say(`logs: ${join(dataDir, '<node>', 'node.log')}; a node that exits is restarted (backoff ${restartDelayMsMin / 1000} s doubling to ${restartDelayMsMax / 1000} s)`);
  say(
    tokenFile === undefined
      ? 'client token: none (--no-token): any local program can use this cluster'
      : `client token: ${tokenFile} (the dcas CLI finds it for these gateways; other clients give it with --token or DCAS_TOKEN)`,
  );
  say(`status: dcas cluster status --server ${summary[0].gateway}   (Ctrl-C stops all nodes)`);
}

async function clusterUp(options: ClusterUpOptions): Promise<void> {
  // The nodes inherit it: LevelDB's files, blobs and logs are created 0600 in folders 0700.
  process.umask(0o077);
  const dataDir = resolve(options.data);
  const pskFile = await prepareClusterFolder(dataDir);
  // Secure by default: a random client token per data folder, which the CLI finds for this cluster's
  // gateways (local-tokens.ts); --no-token leaves the cluster open.
  const client = options.token ? await ensureClientToken(dataDir) : undefined;
  let configs = await clusterConfigs(options, dataDir, pskFile, client?.token);
  const gatewayUrls = configs.map((config) => `http://${config.gateway.host}:${config.gateway.port}`);
  await recordLocalGateways(gatewayUrls, client?.file);
  // Each node's identity is made now, in its data folder where the node loads it, so every config
  // can pin every name to its peer id before any node starts.
  const { pinPeers } = await import('../cluster/index.ts');
  configs = await pinPeers(configs);
  const supervisor = new NodeSupervisor(gatewayUrls, options.json === true);
  process.once('SIGINT', () => void supervisor.stopAll(0));
  process.once('SIGTERM', () => void supervisor.stopAll(0));
  for (const config of configs) supervisor.add(config, await writeNodeConfig(dataDir, config));
  try {
    await Promise.all(supervisor.nodes.map(({ config, child }) => waitHealthy(`http://${config.gateway.host}:${config.gateway.port}`, child, 30_000)));
  } catch (error) {
    await supervisor.stopAll(1);
    throw error;
  }
  const summary = supervisor.nodes.map(summarize);
  if (options.json) printJson({ dataDir, tokenFile: client?.file ?? null, nodes: summary });
  else printClusterSummary(dataDir, summary, client?.file);
  // A timer keeps the process alive until a signal or the last node's exit ends it (stopAll exits).
  setInterval(() => {}, 1 << 30);
  await new Promise<never>(() => {});
}

function printStatus(status: ClusterStatusView): void {
  process.stdout.write(`coordinator ${status.coordinator ?? '(none)'}  term ${status.term}  commit ${status.commit}  (as seen by ${status.node})\n`);
  process.stdout.write(`${'NAME'.padEnd(10)}${'ROLE'.padEnd(8)}${'RAFT'.padEnd(11)}${'STATUS'.padEnd(9)}${'LOAD'.padEnd(16)}GATEWAY\n`);
  for (const member of status.members) {
    const load = member.load ? `${member.load.inFlight}/${member.load.workers} q${member.load.queue}` : '-';
    process.stdout.write(
      `${member.name.padEnd(10)}${member.role.padEnd(8)}${(member.raftRole ?? '-').padEnd(11)}${member.status.padEnd(9)}${load.padEnd(16)}${member.gateway}\n`,
    );
  }
}

export function addClusterCommands(program: Command): void {
  program
    .command('node')
    .description('run one node in the foreground (logs on stdout: readable on a terminal, JSON lines otherwise)')
    .requiredOption('-c, --config <file>', 'node config file (YAML or JSON)')
    .option('--pretty', 'readable log lines even when stdout is not a terminal')
    .option('--no-pretty', 'JSON log lines even on a terminal')
    .option('--peer-id', "print the node's libp2p peer id (made in its dataDir if new) and exit: what other configs pin in peers")
    .action(async (options: { config: string; pretty?: boolean; peerId?: boolean }) =>
      options.peerId ? printPeerId(options.config) : runNode(options.config, options.pretty ?? process.stdout.isTTY === true),
    );

  const cluster = program.command('cluster').description('run and inspect a cluster');
  cluster
    .command('up')
    .description('start a local cluster with embedded defaults; Ctrl-C stops every node')
    .addOption(new Option('-n, --nodes <n>', `number of nodes (1..${localClusterNodesMax}; the first 5 vote)`).argParser(parsePositiveInteger).default(3))
    .option('-d, --data <dir>', 'folder for node data, configs, logs and blobs', '.dcas/cluster')
    .addOption(new Option('--base-port <port>', 'gateways listen on base+1.., libp2p on base+101..').argParser(parsePositiveInteger).default(7700))
    .option('--json', 'print where each node listens as one JSON document')
    .option('--no-token', 'no client token: any local program may use the cluster (default: a random token per data folder)')
    .action(async (options: ClusterUpOptions) => clusterUp(options));
  cluster
    .command('status')
    .description('members, roles, liveness, load, coordinator, term and commit index')
    .option('-s, --server <url>', `a node's gateway (default: $DCAS_SERVER or ${defaultServer})`)
    .option('--token <token>', 'client token, if the cluster has one (default: $DCAS_TOKEN, or the token of a cluster up on this machine)')
    .option('--ca <file>', 'also trust the certificate authorities in this PEM file for an https:// gateway (default: $DCAS_CA)')
    .option('--json', 'print one JSON document')
    .action(async (options: { server?: string; token?: string; ca?: string; json?: boolean }) => {
      const server = serverUrl(options.server);
      trustCertificateAuthority(options.ca);
      const status = await getJson<ClusterStatusView>(server, '/cluster', tokenFor(server, options.token));
      if (options.json) printJson(status);
      else printStatus(status);
    });
  for (const command of [...program.commands, ...cluster.commands]) command.exitOverride();
}
