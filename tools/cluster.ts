/**
 * A local cluster of real `dcas node` processes for tests: each with its own LevelDB, libp2p host,
 * worker threads and gateway, sharing one blob folder (or a GCS endpoint) as a local cluster does.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatPsk, localClusterConfigs, type NodeConfig, type NodeConfigInput } from '../node/config/index.ts';
import type { ClusterStatusView } from '../node/runtime/node.ts';
import { nodeProcessEnv, nodeProcessFlags } from '../node/cli/cluster-commands.ts';
import { freeBasePort } from './local-cluster.ts';
import { pinPeers } from '../node/cluster/host/index.ts';

/** Node processes a launcher started, by name, with the output each printed. */
export type RunningNodes = Map<string, { child: ChildProcess; output: string[] }>;

/** The last lines each running node printed, for a failed wait's message. */
export function logsOf(running: RunningNodes): string {
  return [...running.entries()].map(([name, node]) => `--- ${name}\n${node.output.join('').slice(-3000)}`).join('\n');
}

/** Kills every running node (SIGKILL) and waits until each has exited; the map is left empty. */
export async function killAll(running: RunningNodes): Promise<void> {
  await Promise.all(
    [...running.values()].map(
      (node) =>
        new Promise<void>((resolve) => {
          if (node.child.exitCode !== null || node.child.signalCode !== null) return resolve();
          node.child.once('exit', () => resolve());
          node.child.kill('SIGKILL');
        }),
    ),
  );
  running.clear();
}

/**
 * The nodes' views agree when every node answers, all name the same coordinator, and each sees exactly
 * `alive` members alive: the view they share, or undefined.
 */
export function agreement(views: readonly (ClusterStatusView | undefined)[], alive: number): ClusterStatusView | undefined {
  if (views.some((view) => view === undefined)) return undefined;
  const coordinators = new Set(views.map((view) => view!.coordinator));
  if (coordinators.size !== 1 || views[0]!.coordinator === null) return undefined;
  if (views.some((view) => view!.members.filter((member) => member.status === 'alive').length !== alive)) return undefined;
  return views[0];
}

const dcas = new URL('../node/cli/dcas.ts', import.meta.url).pathname;

export interface TestCluster {
  dataDir: string;
  configs: NodeConfig[];
  gateway(name: string): string;
  start(name: string): void;
  /** The process id of a running node, for signals such as SIGSTOP/SIGCONT. */
  pid(name: string): number | undefined;
  stop(name: string, signal: NodeJS.Signals): Promise<void>;
  status(name: string): Promise<ClusterStatusView | undefined>;
  state(name: string, prefix: string): Promise<Record<string, unknown>>;
  /** The coordinator all running nodes agree on, once each sees `alive` members alive. */
  agreed(alive: number, names?: string[]): Promise<ClusterStatusView | undefined>;
  /** The tail of every running node's output, for a failure message. */
  logs(): string;
  destroy(): Promise<void>;
}

export interface TestClusterOptions {
  nodes: number;
  overrides?: Pick<NodeConfigInput, 'membership' | 'raft' | 'workers' | 'jobs'>;
  /** The folder to make the cluster's data folder in (default: the system's temporary folder). */
  parentDir?: string;
  /** Changes applied to each config after the local-cluster layout (e.g. a GCS blob store, a token). */
  edit?: (config: NodeConfig) => NodeConfig;
}

export async function createTestCluster(options: TestClusterOptions): Promise<TestCluster> {
  const dataDir = await mkdtemp(join(options.parentDir ?? tmpdir(), 'dcas-cluster-'));
  const pskFile = join(dataDir, 'cluster.key');
  await writeFile(pskFile, formatPsk());
  const basePort = await freeBasePort(options.nodes);
  const laidOut = localClusterConfigs({
    nodes: options.nodes,
    dataDir,
    basePort,
    pskFile,
    overrides: { workers: 1, membership: { heartbeatMs: 200, suspectMs: 600, deadMs: 1200 }, ...options.overrides },
  });
  // As `dcas cluster up` does: identities made up front, every name pinned to its peer id.
  const configs = (await pinPeers(laidOut)).map(options.edit ?? ((config) => config));
  for (const config of configs) {
    const { source: _source, ...fields } = config;
    await writeFile(join(dataDir, `${config.name}.json`), JSON.stringify(fields));
  }
  const running = new Map<string, { child: ChildProcess; output: string[] }>();
  const byName = (name: string) => configs.find((config) => config.name === name) ?? raise(`no node ${name}`);
  const gateway = (name: string) => `http://${byName(name).gateway.host}:${byName(name).gateway.port}`;
  const headers = (name: string): Record<string, string> => (byName(name).token ? { authorization: `Bearer ${byName(name).token}` } : {});

  async function status(name: string): Promise<ClusterStatusView | undefined> {
    try {
      const response = await fetch(`${gateway(name)}/cluster`, { headers: headers(name), signal: AbortSignal.timeout(1_000) });
      return response.ok ? ((await response.json()) as ClusterStatusView) : undefined;
    } catch {
      return undefined;
    }
  }

  return {
    dataDir,
    configs,
    gateway,
    start(name) {
      const child = spawn(process.execPath, [...nodeProcessFlags, dcas, 'node', '--config', join(dataDir, `${name}.json`)], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...nodeProcessEnv, ...process.env, DCAS_LOG_LEVEL: process.env.DCAS_LOG_LEVEL ?? 'warn' },
      });
      const output: string[] = [];
      // Only the tail is ever shown; a long run (chaos) must not keep every line.
      const keep = (data: unknown) => {
        output.push(String(data));
        if (output.length > 400) output.splice(0, 200);
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
    status,
    async state(name, prefix) {
      const response = await fetch(`${gateway(name)}/state?prefix=${encodeURIComponent(prefix)}`, { headers: headers(name) });
      return ((await response.json()) as { entries: Record<string, unknown> }).entries;
    },
    async agreed(alive, names = [...running.keys()]) {
      return agreement(await Promise.all(names.map(status)), alive);
    },
    logs: () => logsOf(running),
    async destroy() {
      await killAll(running);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

function raise(message: string): never {
  throw new Error(message);
}

/** Polls `probe` until it returns a value; on timeout throws with `context()` appended. */
export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>, context: () => string = () => ''): Promise<{ value: T; elapsedMs: number }> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return { value, elapsedMs: Date.now() - started };
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${context()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
