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
import { createBlobStore, createSpaceGuard, type BlobStore, type SpaceGuard } from '../storage/index.ts';
import { startMemoryGovernor, type MemoryGovernor } from './memory.ts';
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

/**
 * What a node holds, for stopping it: the parts made before anything can fail, and the ones made later
 * (undefined until then), so a start that fails half way closes exactly what it opened.
 */
class NodeParts {
  state: ReplicatedState | undefined;
  gateway: Gateway | undefined;
  jobs: RunningJobService | undefined;
  pool: CodecPool | undefined;
  blobs: BlobStore | undefined;
  registry: NodeJS.Timeout | undefined;
  readonly db: Level<string, unknown>;
  readonly host: HostWithStats;
  readonly memory: MemoryGovernor;
  readonly imagePool: ImagePool;
  readonly #logger: Logger;

  constructor(parts: { db: Level<string, unknown>; host: HostWithStats; memory: MemoryGovernor; imagePool: ImagePool; logger: Logger }) {
    this.db = parts.db;
    this.host = parts.host;
    this.memory = parts.memory;
    this.imagePool = parts.imagePool;
    this.#logger = parts.logger;
  }

  /** The stop of a started node: the reverse of the start order. */
  async stop(): Promise<void> {
    // Graceful removal: say at once that this node takes no more chunks, so the coordinator stops
    // assigning it any while the jobs room finishes what it codes and hands the rest back.
    this.jobs?.stopCoding();
    this.host.announce();
    clearInterval(this.registry);
    this.memory.stop();
    await this.gateway?.stop();
    await this.jobs?.stop();
    await this.state?.stop();
    await this.host.stop();
    await this.pool?.close();
    await this.imagePool.close();
    await this.blobs?.close();
    await this.db.close();
    this.#logger.info('node stopped');
  }

  /** After a failed start: closes what was opened, each failure ignored so the start's own error is the one thrown. */
  async abandon(): Promise<void> {
    clearInterval(this.registry);
    this.memory.stop();
    await this.gateway?.stop().catch(() => {});
    await this.jobs?.stop().catch(() => {});
    await this.state?.stop().catch(() => {});
    await this.pool?.close().catch(() => {});
    await this.imagePool.close().catch(() => {});
    await this.blobs?.close().catch(() => {});
    await this.host.stop().catch(() => {});
    await this.db.close().catch(() => {});
  }
}

export async function startNode(config: NodeConfig, logger: Logger): Promise<NodeRuntime> {
  const space = await prepareFolders(config);
  const memory = startMemoryGovernor({ logger });
  const db = new Level<string, unknown>(join(config.dataDir, 'state'));
  await db.open();
  // Frames carry whole decoded chunks (downloads are decoded across the cluster): allow the largest.
  const host = createHost({ config, logger, transportLimits: { frameBytesMax: chunkBytesMax + 1024 * 1024 } });
  // Lazy: no thread starts until the first image; the jobs of images are to share this same pool.
  const parts = new NodeParts({ db, host, memory, imagePool: lazyImagePool({ threads: config.workers }), logger });
  try {
    const blobs = (parts.blobs = await createBlobStore(config.blobStore));
    const pool = (parts.pool = createCodecPool({ threads: config.workers, memoryBytesMax: config.codecMemoryBytesMax }));
    await host.start();
    const state = (parts.state = await startReplicatedState(config, db, host, logger));
    const jobs = (parts.jobs = createJobService({ node: config.name, state, blobs, space, pool, imagePool: () => parts.imagePool, config: config.jobs, logger, members: () => host.members(), peers: host }));
    advertiseStatus(config, host, state, jobs);
    followWorkers(config, host, state);
    await state.start();
    await jobs.start();
    parts.registry = startRegistry(state, host, logger);
    const clusterStatus = clusterStatusOf(config, state, host);
    const gateway = (parts.gateway = createNodeGateway({ config, logger, state, jobs, imagePool: parts.imagePool, clusterStatus }));
    await gateway.start();
    logger.info({ gateway: gateway.url(), p2p: host.addresses(), role: config.role, voters: config.voters }, 'node started');
    return { config, host, state, gateway, jobs, clusterStatus, stop: () => parts.stop() };
  } catch (error) {
    await parts.abandon();
    throw error;
  }
}

/** The node's private folders, and the guard that keeps the disks they are on from filling up. */
async function prepareFolders(config: NodeConfig): Promise<SpaceGuard> {
  await privateFolder(config.dataDir);
  await privateFolder(join(config.dataDir, 'state'));
  if (config.blobStore.kind === 'folder') await privateFolder(config.blobStore.path);
  return createSpaceGuard({
    folders: config.blobStore.kind === 'folder' ? [config.dataDir, config.blobStore.path] : [config.dataDir],
    reserveBytes: config.jobs.diskReserveBytes,
    reserveSetting: 'jobs.diskReserveBytes',
  });
}

function startReplicatedState(config: NodeConfig, db: Level<string, unknown>, host: HostWithStats, logger: Logger): Promise<ReplicatedState> {
  return createReplicatedState({
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
}

/** What this node's heartbeats say about it: its Raft view and its coding load. */
function advertiseStatus(config: NodeConfig, host: HostWithStats, state: ReplicatedState, jobs: RunningJobService): void {
  host.setStatusProvider(() => {
    const status = state.status();
    const work = jobs.workerStats();
    return {
      raft: { term: status.term, role: config.role === 'worker' ? 'learner' : status.role, leader: status.leader },
      // No workers advertised: the coordinator assigns this node nothing (jobs.code false, or stopping).
      load: { workers: jobs.codes() ? config.workers : 0, inFlight: work.inFlight, queue: work.queued },
    };
  });
}

/** Worker members are Raft learners: the learner set follows membership as workers come and go. */
function followWorkers(config: NodeConfig, host: HostWithStats, state: ReplicatedState): void {
  const workers = () => host.members().filter((member) => member.role === 'worker').map((member) => member.name);
  const refreshLearners = () => state.setLearners([...new Set([...workers(), ...(config.role === 'worker' ? [config.name] : [])])]);
  host.on('member:up', refreshLearners);
  host.on('member:changed', refreshLearners);
  refreshLearners();
}

/** Reconciles the member registry every second, one pass at a time. */
function startRegistry(state: ReplicatedState, host: HostWithStats, logger: Logger): NodeJS.Timeout {
  let reconciling = false;
  return setInterval(() => {
    if (reconciling) return;
    reconciling = true;
    void reconcileRegistry(state, host.members(), logger).finally(() => (reconciling = false));
  }, registryIntervalMs);
}

function clusterStatusOf(config: NodeConfig, state: ReplicatedState, host: HostWithStats): () => ClusterStatusView {
  return () => {
    const status = state.status();
    return {
      node: config.name,
      coordinator: status.leader,
      term: status.term,
      commit: status.commit,
      applied: status.applied,
      members: host.members().map((member) => memberView(member, status.leader)),
    };
  };
}

function createNodeGateway(parts: { config: NodeConfig; logger: Logger; state: ReplicatedState; jobs: RunningJobService; imagePool: ImagePool; clusterStatus: () => ClusterStatusView }): Gateway {
  const { config, state } = parts;
  return createGateway({
    host: config.gateway.host,
    port: config.gateway.port,
    logger: parts.logger,
    node: config.name,
    token: config.token,
    allowedHosts: config.gateway.allowedHosts,
    allowedOrigins: config.gateway.cors.origins,
    limits: { uploadsMax: config.jobs.uploadsMax, uploadQueueMax: config.gateway.uploadQueueMax, uploadQueueTimeoutMs: config.gateway.uploadQueueTimeoutMs, uploadsPerAddressMax: config.gateway.uploadsPerAddressMax },
    tls: config.gateway.tls === undefined ? undefined : { cert: readFileSync(config.gateway.tls.certFile), key: readFileSync(config.gateway.tls.keyFile) },
    jobs: parts.jobs,
    imagePool: parts.imagePool,
    imageLimits: config.gateway.images,
    raftStatus: () => ({ term: state.status().term, role: config.role === 'worker' ? 'learner' : state.status().role }),
    routes: {
      health: () => ({ ok: true, node: config.name }),
      ready: () => {
        const failure = state.storageFailure();
        if (failure !== null) return { ready: false, reason: failure.message };
        return state.leader() === null ? { ready: false, reason: 'no coordinator known yet' } : { ready: true };
      },
      clusterStatus: parts.clusterStatus,
      state: async (prefix, limit) => ({ entries: Object.fromEntries(await state.list(prefix, limit)) }),
    },
  });
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
