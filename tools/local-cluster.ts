/**
 * A local cluster for the harness, started the way a user starts one: `dcas cluster up --nodes N
 * --json` in its own process group. Ready means every node answers /readyz and sees all N members alive
 * with one coordinator, so the first upload already spreads over every node. `stop()` ends the whole
 * group (SIGTERM, then SIGKILL) and removes the data folder; an exiting harness kills what is left.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ClusterStatusView } from '../node/runtime/node.ts';

const dcasEntry = new URL('../node/cli/dcas.ts', import.meta.url).pathname;
const readyTimeoutMs = 90_000;
const stopTimeoutMs = 15_000;

export interface LocalClusterNode {
  name: string;
  pid: number;
  /** http://127.0.0.1:port */
  server: string;
}

export interface LocalCluster {
  nodes: LocalClusterNode[];
  dataDir: string;
  /** Seconds from spawn until ready. */
  startSeconds: number;
  /** Peak resident memory of each node since it started, or since the last resetPeaks() (VmHWM). */
  peakRssBytes(): Record<string, number>;
  /** Restarts the peak counters, where the kernel allows (/proc/<pid>/clear_refs "5"). */
  resetPeaks(): boolean;
  /** The tail of each node's log, for error messages. */
  logTail(): string;
  stop(): Promise<void>;
}

/** Process groups still running, killed outright if the harness exits without stopping them. */
const liveGroups = new Set<number>();
process.on('exit', () => {
  for (const group of liveGroups) killGroup(group, 'SIGKILL');
});

function killGroup(group: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-group, signal);
  } catch {
    // Already gone.
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/**
 * A base port whose gateway (base+i) and libp2p (base+100+i) ports are all free now. Bases stay below
 * Linux's ephemeral range (32768 and up), where outgoing connections take ports at random.
 */
export async function freeBasePort(nodes: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 10_000 + Math.floor(Math.random() * 220) * 100;
    const ports = Array.from({ length: nodes }, (_, index) => [base + 1 + index, base + 101 + index]).flat();
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error(`no free base port for ${nodes} nodes after 50 tries`);
}

function statusField(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  if (match === null) throw new Error(`/proc/${pid}/status has no ${field}`);
  return Number(match[1]) * 1024;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function readJson<T>(url: string): Promise<T | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return response.ok ? ((await response.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

async function allReady(nodes: LocalClusterNode[]): Promise<boolean> {
  const views = await Promise.all(nodes.map((node) => readJson<ClusterStatusView>(`${node.server}/cluster`)));
  const ready = await Promise.all(nodes.map((node) => readJson<{ ready: boolean }>(`${node.server}/readyz`)));
  if (ready.some((answer) => answer?.ready !== true)) return false;
  if (views.some((view) => view === undefined || view.coordinator === null)) return false;
  if (new Set(views.map((view) => view!.coordinator)).size !== 1) return false;
  return views.every((view) => view!.members.filter((member) => member.status === 'alive').length === nodes.length);
}

/** Reads stdout until it holds one whole JSON document (cluster up --json prints it once, then waits). */
function firstJson<T>(child: ChildProcess, output: string[]): Promise<T> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (data: Buffer) => {
      text += String(data);
      try {
        const document = JSON.parse(text) as T;
        child.stdout?.off('data', onData);
        resolve(document);
      } catch {
        // Not complete yet.
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code, signal) => reject(new Error(`dcas cluster up exited (${signal ?? `code ${code}`}) before it was up: ${output.join('').slice(-2000)}`)));
  });
}

export async function startLocalCluster(options: { nodes: number }): Promise<LocalCluster> {
  const dataDir = await mkdtemp(join(tmpdir(), 'dcas-bench-cluster-'));
  const basePort = await freeBasePort(options.nodes);
  const started = performance.now();
  // An open cluster (--no-token) for a throwaway data folder: the harness's clients need no token, and
  // checking one costs a single comparison per connection, nothing the figures could show.
  const args = ['cluster', 'up', '--nodes', String(options.nodes), '--data', dataDir, '--base-port', String(basePort), '--json', '--no-token'];
  const child = spawn(process.execPath, [dcasEntry, ...args], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DCAS_LOG_LEVEL: process.env.DCAS_LOG_LEVEL ?? 'warn' },
  });
  const group = child.pid;
  if (group === undefined) throw new Error('dcas cluster up did not start');
  liveGroups.add(group);
  const output: string[] = [];
  child.stderr?.on('data', (data) => output.push(String(data)));
  let nodes: LocalClusterNode[] = [];

  const logTail = () =>
    nodes
      .map((node) => {
        let log = '';
        try {
          log = readFileSync(join(dataDir, node.name, 'node.log'), 'utf8').slice(-1500);
        } catch {
          // No log yet.
        }
        return `--- ${node.name}\n${log}`;
      })
      .join('\n');

  async function stop(): Promise<void> {
    killGroup(group!, 'SIGTERM');
    const deadline = Date.now() + stopTimeoutMs;
    const pids = [group!, ...nodes.map((node) => node.pid)];
    while (Date.now() < deadline && pids.some(isRunning)) await sleep(100);
    if (pids.some(isRunning)) killGroup(group!, 'SIGKILL');
    while (pids.some(isRunning) && Date.now() < deadline + 5_000) await sleep(100);
    liveGroups.delete(group!);
    await rm(dataDir, { recursive: true, force: true });
  }

  try {
    let timer: NodeJS.Timeout | undefined;
    const summary = await Promise.race([
      firstJson<{ nodes: Array<{ name: string; pid: number; gateway: string }> }>(child, output),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`dcas cluster up printed nothing within ${readyTimeoutMs} ms`)), readyTimeoutMs);
      }),
    ]).finally(() => clearTimeout(timer));
    nodes = summary.nodes.map((node) => ({ name: node.name, pid: node.pid, server: node.gateway.replace(/^ws:/, 'http:') }));
    const deadline = Date.now() + readyTimeoutMs;
    while (!(await allReady(nodes))) {
      if (Date.now() > deadline) throw new Error(`a ${options.nodes}-node cluster was not ready within ${readyTimeoutMs} ms:\n${logTail()}`);
      await sleep(200);
    }
  } catch (error) {
    await stop();
    throw error;
  }
  const startSeconds = (performance.now() - started) / 1000;

  return {
    nodes,
    dataDir,
    startSeconds,
    peakRssBytes: () => Object.fromEntries(nodes.map((node) => [node.name, statusField(node.pid, 'VmHWM')])),
    resetPeaks() {
      try {
        for (const node of nodes) writeFileSync(`/proc/${node.pid}/clear_refs`, '5');
        return true;
      } catch {
        return false;
      }
    },
    logTail,
    stop,
  };
}
