/**
 * Real processes: a 3-voter cluster of `dcas node` processes on loopback, each with its own LevelDB
 * and libp2p host, talking through the real gateway.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatPsk, localClusterConfigs, type NodeConfig } from '../node/config/index.ts';
import type { ClusterStatusView } from '../node/runtime/node.ts';

const dcas = new URL('../node/cli/dcas.ts', import.meta.url).pathname;

interface RunningNode {
  config: NodeConfig;
  configPath: string;
  child: ChildProcess;
  output: string[];
}

let dataDir: string;
let configs: NodeConfig[];
const running = new Map<string, RunningNode>();

function gatewayOf(config: NodeConfig): string {
  return `http://${config.gateway.host}:${config.gateway.port}`;
}

function startNode(config: NodeConfig): RunningNode {
  const configPath = join(dataDir, `${config.name}.json`);
  const child = spawn(process.execPath, [dcas, 'node', '--config', configPath], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, DCAS_LOG_LEVEL: 'warn' } });
  const output: string[] = [];
  child.stdout?.on('data', (data) => output.push(String(data)));
  child.stderr?.on('data', (data) => output.push(String(data)));
  const node = { config, configPath, child, output };
  running.set(config.name, node);
  return node;
}

async function stopNode(name: string, signal: NodeJS.Signals): Promise<void> {
  const node = running.get(name);
  if (node === undefined) return;
  running.delete(name);
  if (node.child.exitCode !== null || node.child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    node.child.once('exit', () => resolve());
    node.child.kill(signal);
  });
}

async function status(config: NodeConfig): Promise<ClusterStatusView | undefined> {
  try {
    const response = await fetch(`${gatewayOf(config)}/cluster`, { signal: AbortSignal.timeout(1_000) });
    return response.ok ? ((await response.json()) as ClusterStatusView) : undefined;
  } catch {
    return undefined;
  }
}

async function stateOf(config: NodeConfig, prefix: string): Promise<Record<string, unknown>> {
  const response = await fetch(`${gatewayOf(config)}/state?prefix=${encodeURIComponent(prefix)}`);
  return ((await response.json()) as { entries: Record<string, unknown> }).entries;
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<{ value: T; elapsedMs: number }> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return { value, elapsedMs: Date.now() - started };
    if (Date.now() - started > timeoutMs) {
      const logs = [...running.values()].map((node) => `--- ${node.config.name}\n${node.output.join('').slice(-2000)}`).join('\n');
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${logs}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** The coordinator every listed node agrees on, once each sees all `expectAlive` members alive. */
async function agreedCoordinator(nodes: NodeConfig[], expectAlive: number): Promise<ClusterStatusView | undefined> {
  const views = await Promise.all(nodes.map(status));
  if (views.some((view) => view === undefined)) return undefined;
  const coordinators = new Set(views.map((view) => view!.coordinator));
  if (coordinators.size !== 1 || views[0]!.coordinator === null) return undefined;
  if (views.some((view) => view!.members.filter((member) => member.status === 'alive').length !== expectAlive)) return undefined;
  return views[0];
}

test.before(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'dcas-cluster-'));
  const pskFile = join(dataDir, 'cluster.key');
  await writeFile(pskFile, formatPsk());
  const basePort = 20_000 + Math.floor(Math.random() * 20_000);
  configs = localClusterConfigs({
    nodes: 3,
    dataDir,
    basePort,
    pskFile,
    overrides: { workers: 1, membership: { heartbeatMs: 200, suspectMs: 600, deadMs: 1200 } },
  });
  for (const config of configs) {
    const { source: _source, ...fields } = config;
    await writeFile(join(dataDir, `${config.name}.json`), JSON.stringify(fields));
  }
});

test.after(async () => {
  await Promise.all([...running.keys()].map((name) => stopNode(name, 'SIGKILL')));
  await rm(dataDir, { recursive: true, force: true });
});

test('three node processes elect exactly one coordinator and see three alive members', async () => {
  for (const config of configs) startNode(config);
  const { value } = await waitFor('one agreed coordinator and 3 alive members', 20_000, () => agreedCoordinator(configs, 3));
  assert.ok(configs.some((config) => config.name === value.coordinator));
  const leaders = value.members.filter((member) => member.raftRole === 'leader');
  assert.is(leaders.length, 1);
  assert.is(leaders[0].name, value.coordinator);
  // The member registry is replicated state: committed through the log and applied on every node.
  await waitFor('the member registry on every node', 10_000, async () => {
    const states = await Promise.all(configs.map((config) => stateOf(config, 'members/')));
    return states.every((state) => Object.keys(state).length === 3) ? true : undefined;
  });
});

// Reference: Raft paper §5.2 (leader election) and §5.4 (safety: committed entries survive).
test('kill -9 of the coordinator: a survivor names a new coordinator within 5 s, committed state intact', async () => {
  const before = (await agreedCoordinator(configs, 3))!;
  const registryBefore = await stateOf(configs[0], 'members/');
  const oldLeader = before.coordinator!;
  await stopNode(oldLeader, 'SIGKILL');
  const survivors = configs.filter((config) => config.name !== oldLeader);
  const { value: after, elapsedMs } = await waitFor('a new coordinator among survivors', 5_000, async () => {
    const views = await Promise.all(survivors.map(status));
    const view = views.find((candidate) => candidate?.coordinator && candidate.coordinator !== oldLeader);
    return view && views.every((other) => other?.coordinator === view.coordinator) ? view : undefined;
  });
  assert.ok(elapsedMs < 5_000, `failover took ${elapsedMs} ms`);
  assert.ok(after.term > before.term, `term ${after.term} should exceed ${before.term}`);
  for (const survivor of survivors) assert.equal(await stateOf(survivor, 'members/'), registryBefore);

  // The killed node restarts on its data directory and rejoins as a follower with the same state.
  const restarted = configs.find((config) => config.name === oldLeader)!;
  startNode(restarted);
  const { value: rejoined } = await waitFor('the restarted node to rejoin', 15_000, async () => {
    const view = await agreedCoordinator(configs, 3);
    return view && view.coordinator === after.coordinator ? view : undefined;
  });
  const self = (await status(restarted))!;
  assert.is(self.coordinator, after.coordinator);
  assert.is(self.members.find((member) => member.self)!.raftRole, 'follower');
  assert.ok(self.commit >= before.commit);
  assert.equal(await stateOf(restarted, 'members/'), registryBefore);
  assert.ok(rejoined.members.every((member) => member.alive));
});

test('stopping every node and starting them again keeps all committed state', async () => {
  const before = (await agreedCoordinator(configs, 3))!;
  const registry = await stateOf(configs[0], 'members/');
  await Promise.all(configs.map((config) => stopNode(config.name, 'SIGTERM')));
  for (const config of configs) startNode(config);
  const { value: after } = await waitFor('the restarted cluster to agree on a coordinator', 20_000, () => agreedCoordinator(configs, 3));
  assert.ok(after.commit >= before.commit, `commit ${after.commit} < ${before.commit}`);
  assert.ok(after.term >= before.term);
  for (const config of configs) assert.equal(await stateOf(config, 'members/'), registry);
});

test('a config with a wrong field fails at start with one line naming the field, exit 1', async () => {
  const bad = join(dataDir, 'bad.yaml');
  await writeFile(bad, 'name: nodex\ngateway:\n  port: lots\n');
  const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [dcas, 'node', '--config', bad], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (data) => (stderr += data));
    child.on('close', (code) => resolve({ code, stderr }));
  });
  assert.is(result.code, 1);
  const lines = result.stderr.trimEnd().split('\n');
  assert.is(lines.length, 1, result.stderr);
  assert.match(lines[0], /bad\.yaml: gateway\.port: /);
});

test.run();
