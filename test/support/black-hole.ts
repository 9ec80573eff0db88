/**
 * A black-hole worker for tests: a real libp2p peer built from the project's own host (TCP, pnet,
 * Noise, yamux, gossipsub), holding the cluster's key, that joins as a worker, advertises many free
 * slots in every heartbeat, and never codes or completes anything. The scheduler sees an alive worker
 * with room; only what the coordinator measures can tell it apart from an honest one.
 *
 * It is admitted the way any worker not pinned in `peers` is: its heartbeats carry a proof of the
 * cluster's `joinToken` (the cluster under test must have one). That is the point: a worker can be
 * properly admitted and still be a black hole, so only measured completions may earn it work.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join as joinPath } from 'node:path';
import { pino } from 'pino';
import { createHost, type HostWithStats } from '../../node/cluster/host/index.ts';
import { parseConfig, type NodeConfig } from '../../node/config/index.ts';

export interface BlackHole {
  name: string;
  peerId: string;
  stop(): Promise<void>;
}

export interface BlackHoleOptions {
  /** Any running cluster node's config: the black hole copies its key, voters, timings and bootstrap. */
  cluster: NodeConfig;
  name?: string;
  /** Worker threads it claims; the scheduler allows threads x jobs.inFlightPerWorker chunks. */
  workersClaimed?: number;
}

/** Joins the cluster as a worker member: connects with the key, and gossips heartbeats. */
async function join(config: NodeConfig): Promise<HostWithStats> {
  const host = createHost({ config, logger: pino({ level: 'silent' }) });
  await host.start();
  return host;
}

export async function startBlackHole(options: BlackHoleOptions): Promise<BlackHole> {
  const name = options.name ?? 'blackhole';
  const dataDir = await mkdtemp(joinPath(tmpdir(), 'dcas-black-hole-'));
  const voterAddresses = options.cluster.bootstrap.length > 0 ? options.cluster.bootstrap : options.cluster.listen;
  const config = parseConfig(
    {
      name,
      role: 'worker',
      voters: options.cluster.voters,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      // Every voter: the cluster node's own address and the ones it bootstraps from.
      bootstrap: [...new Set([...options.cluster.listen, ...voterAddresses])],
      dataDir,
      gateway: { host: '127.0.0.1', port: 9 },
      // The claim is in its config, so its very first heartbeat carries it (only heartbeats read it).
      workers: options.workersClaimed ?? 64,
      membership: options.cluster.membership,
      ...(options.cluster.peers === undefined ? {} : { peers: options.cluster.peers }),
      ...(options.cluster.joinToken === undefined ? {} : { joinToken: options.cluster.joinToken }),
      ...(options.cluster.pskFile === undefined ? {} : { pskFile: options.cluster.pskFile }),
      // Admission: the cluster's pinned peers, and its join token when it has one (as a real worker).
      ...(options.cluster.peers === undefined ? {} : { peers: options.cluster.peers }),
      ...(options.cluster.joinToken === undefined ? {} : { joinToken: options.cluster.joinToken }),
    },
    { source: `<black hole ${name}>`, baseDir: dataDir },
  );
  // It answers nothing: no handlers, no message listener; Raft appends and requests go unanswered.
  const host = await join(config);
  return {
    name,
    peerId: host.peerId,
    async stop() {
      await host.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
