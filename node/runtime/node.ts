/**
 * One DCaS node: the rooms wired together from a validated config.
 *
 *   LevelDB (dataDir/state) ─▶ replicated state (Raft core + storage) ◀─▶ libp2p host (membership, transport)
 *                                          │
 *                                          ▼
 *                                   gateway (HTTP)
 *
 * Start order: storage, network, consensus, gateway; stop order is the reverse.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import type { Logger } from 'pino';
import { createHost, createReplicatedState, type HostWithStats, type Member, type ReplicatedState } from '../cluster/index.ts';
import type { NodeConfig } from '../config/index.ts';
import { createGateway, type Gateway } from '../gateway/index.ts';
import { createCodecPool, createImagePool, format, type CodecPool, type ImagePool, type ImagePoolOptions } from '../codec/index.ts';

const chunkBytesMax = format.chunkBytesMax;
import { createJobService, type RunningJobService } from '../jobs/index.ts';
import { createBlobStore, createSpaceGuard, type BlobStore } from '../storage/index.ts';
import { startMemoryGovernor } from './memory.ts';
import { privateFolder } from './private-files.ts';

export interface MemberStatusView {
  name: string;
  role: 'voter' | 'worker';
  /** The member's Raft role as its last heartbeat said: leader, follower, candidate, learner. */
  raftRole: string | null;
  alive: boolean;
  status: string;
  gateway: string;
  load: { workers: number; inFlight: number; queue: number } | null;
  heartbeatAgeMs: number;
  self: boolean;
}

export interface ClusterStatusView {
  node: string;
  coordinator: string | null;
  term: number;
  commit: number;
  applied: number;
  members: MemberStatusView[];
}

export interface NodeRuntime {
  readonly config: NodeConfig;
  readonly state: ReplicatedState;
  readonly host: HostWithStats;
  readonly gateway: Gateway;
  readonly jobs: RunningJobService;
  clusterStatus(): ClusterStatusView;
  stop(): Promise<void>;
}

/**
 * An image pool whose threads start with its first image: most nodes never code one, and libvips and
 * oxipng cost memory per thread. One per node, shared by POST /v1/images and the jobs of images.
 */
export function lazyImagePool(options: ImagePoolOptions & { threads: number }): ImagePool {
  let pool: ImagePool | undefined;
  return {
    threads: options.threads,
    get completed() {
      return pool?.completed ?? 0;
    },
    optimize(bytes, imageOptions) {
      pool ??= createImagePool(options);
      return pool.optimize(bytes, imageOptions);
    },
    async close() {
      await pool?.close();
    },
  };
}

/** Key prefix of the replicated member registry: every member that ever joined, with when. */
export const memberKeyPrefix = 'members/';
const registryIntervalMs = 1_000;

function memberView(member: Member, leader: string | null): MemberStatusView {
  // Only this node's view of the leader is authoritative; a heartbeat may predate a failover.
  const claimed = member.raft?.role ?? (member.role === 'worker' ? 'learner' : null);
  const raftRole = member.status !== 'alive' ? null : member.name === leader ? 'leader' : claimed === 'leader' ? 'follower' : claimed;
  return {
    name: member.name,
    role: member.role,
    raftRole,
    alive: member.status !== 'dead',
    status: member.status,
    gateway: member.gateway,
    load: member.load ?? null,
    heartbeatAgeMs: member.heartbeatAgeMs,
    self: member.self,
  };
}

export async function startNode(config: NodeConfig, logger: Logger): Promise<NodeRuntime> {
  await privateFolder(config.dataDir);
  await privateFolder(join(config.dataDir, 'state'));
  if (config.blobStore.kind === 'folder') await privateFolder(config.blobStore.path);
  const space = createSpaceGuard({
    folders: config.blobStore.kind === 'folder' ? [config.dataDir, config.blobStore.path] : [config.dataDir],
    reserveBytes: config.jobs.diskReserveBytes,
    reserveSetting: 'jobs.diskReserveBytes',
  });
  const memory = startMemoryGovernor({ logger });
  const db = new Level<string, unknown>(join(config.dataDir, 'state'));
  await db.open();
  // Frames carry whole decoded chunks (downloads are decoded across the cluster): allow the largest.
  const host = createHost({ config, logger, transportLimits: { frameBytesMax: chunkBytesMax + 1024 * 1024 } });
  let state: ReplicatedState | undefined;
  let gateway: Gateway | undefined;
  let jobs: RunningJobService | undefined;
  let pool: CodecPool | undefined;
  // Lazy: no thread starts until the first image; the jobs of images are to share this same pool.
  const imagePool = lazyImagePool({ threads: config.workers });
  let blobs: BlobStore | undefined;
  try {
    blobs = await createBlobStore(config.blobStore);
    pool = createCodecPool({ threads: config.workers, memoryBytesMax: config.codecMemoryBytesMax });
    await host.start();
    const workers = () => host.members().filter((member) => member.role === 'worker').map((member) => member.name);
    state = await createReplicatedState({
      id: config.name,
      voters: config.voters,
      learners: config.role === 'worker' ? [config.name] : [],
      db,
      transport: host,
      logger,
      tickMs: config.raft.tickMs,
      electionTicks: config.raft.electionTicks,
      heartbeatTicks: config.raft.heartbeatTicks,
      // The node stays up and keeps serving reads; new uploads are refused until a retry succeeds.
      onStorageFailure: (failure) => {
        if (failure !== null) logger.error({ code: failure.code, err: failure }, 'node: cannot persist Raft state; refusing new work, serving reads');
        else logger.warn('node: persisting Raft state works again; accepting new work');
      },
    });
    const replicated = state;
    const jobService = createJobService({ node: config.name, state: replicated, blobs, space, pool, imagePool: () => imagePool, config: config.jobs, logger, members: () => host.members(), peers: host });
    jobs = jobService;
    host.setStatusProvider(() => {
      const status = replicated.status();
      const work = jobService.workerStats();
      return {
        raft: { term: status.term, role: config.role === 'worker' ? 'learner' : status.role, leader: status.leader },
        // No workers advertised: the coordinator assigns this node nothing (jobs.code false, or stopping).
        load: { workers: jobService.codes() ? config.workers : 0, inFlight: work.inFlight, queue: work.queued },
      };
    });
    const refreshLearners = () => replicated.setLearners([...new Set([...workers(), ...(config.role === 'worker' ? [config.name] : [])])]);
    host.on('member:up', refreshLearners);
    host.on('member:changed', refreshLearners);
    refreshLearners();
    await replicated.start();
    await jobService.start();
    let reconciling = false;
    const registry = setInterval(() => {
      if (reconciling) return;
      reconciling = true;
      void reconcileRegistry(replicated, host.members(), logger).finally(() => (reconciling = false));
    }, registryIntervalMs);

    const clusterStatus = (): ClusterStatusView => {
      const status = replicated.status();
      return {
        node: config.name,
        coordinator: status.leader,
        term: status.term,
        commit: status.commit,
        applied: status.applied,
        members: host.members().map((member) => memberView(member, status.leader)),
      };
    };
    gateway = createGateway({
      host: config.gateway.host,
      port: config.gateway.port,
      logger,
      node: config.name,
      token: config.token,
      allowedHosts: config.gateway.allowedHosts,
      allowedOrigins: config.gateway.cors.origins,
      limits: { uploadsMax: config.jobs.uploadsMax, uploadQueueMax: config.gateway.uploadQueueMax, uploadQueueTimeoutMs: config.gateway.uploadQueueTimeoutMs, uploadsPerAddressMax: config.gateway.uploadsPerAddressMax },
      tls: config.gateway.tls === undefined ? undefined : { cert: readFileSync(config.gateway.tls.certFile), key: readFileSync(config.gateway.tls.keyFile) },
      jobs: jobService,
      imagePool,
      imageLimits: config.gateway.images,
      raftStatus: () => ({ term: replicated.status().term, role: config.role === 'worker' ? 'learner' : replicated.status().role }),
      routes: {
        health: () => ({ ok: true, node: config.name }),
        ready: () => {
          const failure = replicated.storageFailure();
          if (failure !== null) return { ready: false, reason: failure.message };
          return replicated.leader() === null ? { ready: false, reason: 'no coordinator known yet' } : { ready: true };
        },
        clusterStatus,
        state: async (prefix, limit) => ({ entries: Object.fromEntries(await replicated.list(prefix, limit)) }),
      },
    });
    await gateway.start();
    logger.info({ gateway: gateway.url(), p2p: host.addresses(), role: config.role, voters: config.voters }, 'node started');
    const started = { host, state, gateway, jobs: jobService };
    return {
      config,
      ...started,
      clusterStatus,
      async stop() {
        // Graceful removal: say at once that this node takes no more chunks, so the coordinator stops
        // assigning it any while the jobs room finishes what it codes and hands the rest back.
        started.jobs.stopCoding();
        host.announce();
        clearInterval(registry);
        memory.stop();
        await started.gateway.stop();
        await started.jobs.stop();
        await started.state.stop();
        await host.stop();
        await pool?.close();
        await imagePool.close();
        await blobs?.close();
        await db.close();
        logger.info('node stopped');
      },
    };
  } catch (error) {
    memory.stop();
    await gateway?.stop().catch(() => {});
    await jobs?.stop().catch(() => {});
    await state?.stop().catch(() => {});
    await pool?.close().catch(() => {});
    await imagePool.close().catch(() => {});
    await blobs?.close().catch(() => {});
    await host.stop().catch(() => {});
    await db.close().catch(() => {});
    throw error;
  }
}

/**
 * The leader records each alive member in the replicated registry the first time it sees it. The
 * guard (key absent) makes a repeated proposal, e.g. by a new leader, a no-op on every node alike.
 */
async function reconcileRegistry(state: ReplicatedState, members: readonly Member[], logger: Logger): Promise<void> {
  if (!state.isLeader()) return;
  for (const member of members) {
    if (member.status !== 'alive') continue;
    const key = `${memberKeyPrefix}${member.name}`;
    if ((await state.get(key)) !== undefined) continue;
    try {
      const value = { name: member.name, role: member.role, firstSeenAt: new Date().toISOString() };
      await state.propose({ guards: [{ key, equals: null }], ops: [{ op: 'put', key, value }] }, { timeoutMs: 5_000 });
      logger.info({ member: member.name }, 'member registry: recorded a new member');
    } catch (error) {
      logger.debug({ err: error, member: member.name }, 'member registry: proposal did not complete; will retry');
    }
  }
}
