/**
 * A deterministic simulation of a Raft cluster: N in-process cores over a simulated network, driven
 * by one seed and a clock of ticks. Every random choice (faults, timing, client load, the cores'
 * election timeouts) comes from generators derived from the seed, so a failing seed replays exactly.
 *
 * A run has two phases. The fault phase loses, delays, duplicates and reorders messages, partitions
 * the network (symmetric and one-way), crashes and restarts nodes (leaders included, and in the
 * middle of handling a Ready), makes some persists take ticks while the node keeps taking messages
 * and ticks (as a disk write does in production, through the same ReadyDriver), proposes at random
 * nodes and compacts at random points. The quiet phase heals everything and measures liveness: a
 * leader must emerge and a fresh proposal must be applied on every node within bounded ticks. Safety is checked after every step of both phases.
 */
import { RaftCore, RaftInvariantError, ReadyDriver } from '../raft/index.ts';
import type { Entry, Message, NodeId, RaftConfig, Ready, Snapshot } from '../raft/index.ts';
import { chainDigest, SafetyChecker } from './checker.ts';
import { SimulationFailure } from './failure.ts';
import { SeededRandom } from './random.ts';
import { SimStorage } from './storage.ts';

export interface SimOptions {
  /** Ticks of faults before the network heals. */
  faultTicks: number;
  /** After healing, a leader must emerge within this many ticks. */
  leaderTicksMax: number;
  /**
   * After the leader emerges, a fresh proposal must be applied on every node within this many ticks,
   * plus the time the flow limits need to ship the backlog (see #backlogTicks).
   */
  commitTicksMax: number;
  /** Keep a trace of events (always on when replaying one seed). */
  trace: boolean;
  /** Also trace every delivered message. */
  traceMessages: boolean;
}

export const defaultSimOptions: SimOptions = {
  faultTicks: 600,
  leaderTicksMax: 400,
  commitTicksMax: 200,
  trace: false,
  traceMessages: false,
};

/** The fault profile and cluster shape of one seed, drawn from it. */
export interface Scenario {
  voters: number;
  learner: boolean;
  electionTicks: number;
  heartbeatTicks: number;
  appendEntriesMax: number;
  appendBytesMax: number;
  inflightAppendsMax: number;
  lossRate: number;
  duplicateRate: number;
  delayTicksMax: number;
  partitionRate: number;
  crashRate: number;
  restartRate: number;
  crashMidReadyRate: number;
  proposalRate: number;
  compactRate: number;
  readyEagerRate: number;
  /** The share of persists that finish only after 1..persistTicksMax ticks (a slow disk). */
  persistSlowRate: number;
  persistTicksMax: number;
  /** The share of slow persists that stall for up to persistStallTicksMax ticks (an fsync stall). */
  persistStallRate: number;
  persistStallTicksMax: number;
}

export interface SimResult {
  seed: number;
  scenario: Scenario;
  safety: string | null;
  liveness: string | null;
  ticks: number;
  ticksToLeader: number | null;
  ticksToCommit: number | null;
  stats: SimStats;
  trace: string[];
}

export interface SimStats {
  messagesDelivered: number;
  messagesDropped: number;
  crashes: number;
  leadersElected: number;
  proposalsAccepted: number;
  committedMax: number;
  snapshotsInstalled: number;
  compactions: number;
  /** Persists that took ticks; inputs (messages, ticks, proposals) a core took while one was awaited. */
  persistsSlow: number;
  inputsWhilePersisting: number;
  /** Readys whose entries were overwritten while being persisted (the core's truncation path). */
  overwrittenWhilePersisting: number;
}

function drawScenario(random: SeededRandom): Scenario {
  return {
    voters: random.chance(0.5) ? 3 : 5,
    learner: random.chance(0.5),
    electionTicks: random.int(8, 14),
    heartbeatTicks: random.int(1, 3),
    appendEntriesMax: random.int(1, 8),
    appendBytesMax: random.int(16, 256),
    inflightAppendsMax: random.int(1, 4),
    lossRate: random.next() * 0.2,
    duplicateRate: random.next() * 0.05,
    delayTicksMax: random.int(1, 5),
    partitionRate: random.next() * 0.02,
    // Squared, so most seeds crash now and then and a few crash all the time.
    crashRate: random.next() ** 2 * 0.012,
    restartRate: 0.02 + random.next() * 0.1,
    crashMidReadyRate: random.next() * 0.002,
    proposalRate: 0.05 + random.next() * 0.4,
    compactRate: random.next() * 0.05,
    readyEagerRate: 0.3 + random.next() * 0.7,
    // Drawn last, so the fields above keep the values they had before persists could be slow.
    persistSlowRate: random.chance(0.2) ? 0 : random.next() * 0.5,
    persistTicksMax: random.int(1, 3),
    persistStallRate: random.next() * 0.2,
    persistStallTicksMax: random.int(10, 60),
  };
}

function cloneMessage(message: Message): Message {
  switch (message.type) {
    case 'append':
      return { ...message, entries: message.entries.map((e) => ({ index: e.index, term: e.term, type: e.type, data: e.data.slice() })) };
    case 'install-snapshot':
      return { ...message, snapshot: { index: message.snapshot.index, term: message.snapshot.term, data: message.snapshot.data.slice() } };
    default:
      return { ...message };
  }
}

interface Envelope {
  message: Message;
  /** Breaks ties among messages due in the same tick, so delivery order is shuffled but seeded. */
  order: number;
}

interface ClientRequest {
  dueTick: number;
  data: Uint8Array;
  target: NodeId | null;
  attempts: number;
}

const clientAttemptsMax = 8;
const snapshotBytes = 12;

/** Thrown by a Ready effect to model a crash at that point of handling a Ready. */
class CrashSignal extends Error {}

/** A slow persist in flight: the write lands at `dueTick`, then the driver's handleNext continues. */
interface PersistWait {
  ready: Ready;
  dueTick: number;
  resolve: () => void;
  reject: (error: unknown) => void;
  handling: Promise<Ready | null> | null;
}

class SimNode {
  readonly id: NodeId;
  readonly voter: boolean;
  readonly storage: SimStorage;
  core: RaftCore | null = null;
  /** Drives `core`; replaced with it on every restart. */
  driver: ReadyDriver | null = null;
  persistWait: PersistWait | null = null;
  incarnation = 0;
  /** The application: how far it applied, and the digest of everything applied. */
  appliedIndex = 0;
  digest = 0;
  /** The highest commit index the checker has verified in this incarnation. */
  commitChecked = 0;

  constructor(id: NodeId, voter: boolean) {
    this.id = id;
    this.voter = voter;
    this.storage = new SimStorage(id);
  }

  get up(): boolean {
    return this.core !== null;
  }
}

function encodeSnapshot(index: number, digest: number): Uint8Array {
  const data = new Uint8Array(snapshotBytes);
  const view = new DataView(data.buffer);
  view.setUint32(0, 0x53494d31); // "SIM1"
  view.setUint32(4, index);
  view.setUint32(8, digest);
  return data;
}

function decodeSnapshot(data: Uint8Array): { index: number; digest: number } {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.byteLength !== snapshotBytes || view.getUint32(0) !== 0x53494d31) throw new SimulationFailure('safety', 'a snapshot arrived with data that is not a simulation snapshot');
  return { index: view.getUint32(4), digest: view.getUint32(8) };
}

export class Simulation {
  readonly seed: number;
  readonly scenario: Scenario;
  readonly options: SimOptions;
  readonly #random: SeededRandom;
  readonly #coreRandom: SeededRandom;
  readonly #nodes: SimNode[];
  readonly #byId = new Map<NodeId, SimNode>();
  readonly #voterIds: NodeId[];
  #learnerIds: NodeId[];
  readonly #checker = new SafetyChecker();
  readonly #inFlight = new Map<number, Envelope[]>();
  /** Blocked directed links, as "from>to". */
  readonly #blocked = new Set<string>();
  #clientQueue: ClientRequest[] = [];
  #clientSequence = 0;
  #tick = 0;
  #healed = false;
  readonly #trace: string[] = [];
  readonly stats: SimStats = {
    messagesDelivered: 0,
    messagesDropped: 0,
    crashes: 0,
    leadersElected: 0,
    proposalsAccepted: 0,
    committedMax: 0,
    snapshotsInstalled: 0,
    compactions: 0,
    persistsSlow: 0,
    inputsWhilePersisting: 0,
    overwrittenWhilePersisting: 0,
  };
  #lossRate: number;
  #duplicateRate: number;
  #delayTicksMax: number;

  constructor(seed: number, options: Partial<SimOptions> = {}) {
    this.seed = seed;
    this.options = { ...defaultSimOptions, ...options };
    this.#random = new SeededRandom(seed);
    this.scenario = drawScenario(this.#random);
    this.#coreRandom = this.#random.fork();
    this.#voterIds = Array.from({ length: this.scenario.voters }, (_, i) => `n${i + 1}`);
    this.#learnerIds = this.scenario.learner ? ['l1'] : [];
    this.#nodes = [...this.#voterIds.map((id) => new SimNode(id, true)), ...this.#learnerIds.map((id) => new SimNode(id, false))];
    for (const node of this.#nodes) this.#byId.set(node.id, node);
    this.#lossRate = this.scenario.lossRate;
    this.#duplicateRate = this.scenario.duplicateRate;
    this.#delayTicksMax = this.scenario.delayTicksMax;
  }

  async run(): Promise<SimResult> {
    let safety: string | null = null;
    let liveness: string | null = null;
    let ticksToLeader: number | null = null;
    let ticksToCommit: number | null = null;
    try {
      for (const node of this.#nodes) this.#start(node);
      for (; this.#tick < this.options.faultTicks; this.#tick += 1) {
        await this.#injectFaults();
        await this.#runTick();
      }
      const quiet = await this.#runQuietPhase();
      ticksToLeader = quiet.ticksToLeader;
      ticksToCommit = quiet.ticksToCommit;
    } catch (error) {
      const message = this.#describeError(error);
      if (error instanceof SimulationFailure && error.kind === 'liveness') liveness = message;
      else safety = message;
      this.#log(`FAILED: ${message}`);
    }
    for (const node of this.#upNodes()) this.#countOverwrites(node);
    this.stats.leadersElected = this.#checker.leadersElected;
    this.stats.committedMax = this.#checker.committedMax;
    return {
      seed: this.seed,
      scenario: this.scenario,
      safety,
      liveness,
      ticks: this.#tick,
      ticksToLeader,
      ticksToCommit,
      stats: this.stats,
      trace: this.#trace,
    };
  }

  #describeError(error: unknown): string {
    if (error instanceof SimulationFailure) return error.message;
    if (error instanceof RaftInvariantError) return `raft invariant: ${error.message}`;
    if (error instanceof Error) return `unexpected ${error.name}: ${error.message}\n${error.stack ?? ''}`;
    return `unexpected throw: ${String(error)}`;
  }

  // ---------------------------------------------------------------------------------------------
  // Phases.

  async #runTick(): Promise<void> {
    await this.#completePersists();
    await this.#runClients();
    await this.#deliverDue();
    for (const node of this.#random.shuffle(this.#upNodes())) {
      node.core!.tick();
      await this.#afterInput(node, false);
    }
    for (const node of this.#random.shuffle(this.#upNodes())) await this.#drainReady(node);
    if (!this.#healed) this.#maybeCompact();
    if (this.#tick % 16 === 0) this.#checkAllLogs();
  }

  async #runQuietPhase(): Promise<{ ticksToLeader: number; ticksToCommit: number }> {
    const healTick = this.#tick;
    await this.#heal();
    let leaderTick: number | null = null;
    const marker = new TextEncoder().encode(`live-${this.seed}`);
    let markerIndex: number | null = null;
    let deadline = Number.POSITIVE_INFINITY;
    for (; ; this.#tick += 1) {
      await this.#runTick();
      const leader = this.#stableLeader();
      if (leaderTick === null) {
        if (leader !== null) {
          leaderTick = this.#tick;
          const backlogTicks = this.#backlogTicks(leader);
          deadline = leaderTick + this.options.commitTicksMax + backlogTicks;
          this.#log(`quiet: leader ${leader.id} of term ${leader.core!.term} after ${leaderTick - healTick} ticks; commit deadline ${deadline} (${backlogTicks} for the backlog)`);
        } else if (this.#tick - healTick >= this.options.leaderTicksMax) {
          throw new SimulationFailure('liveness', `no leader within ${this.options.leaderTicksMax} ticks after the heal at tick ${healTick}`);
        }
      }
      if (leaderTick !== null && leader !== null) {
        const committed = markerIndex === null ? undefined : this.#checker.committedEntry(markerIndex);
        if (markerIndex === null || (committed !== undefined && !sameBytes(committed.data, marker)) || (committed === undefined && leader.core!.lastIndex < markerIndex)) {
          // First attempt, or the entry was lost with a leader change: propose it again.
          const result = leader.core!.propose(marker);
          if (result.ok) {
            markerIndex = result.index;
            this.#log(`quiet: proposed the liveness marker at ${markerIndex} on ${leader.id}`);
          }
          await this.#drainReady(leader);
        }
      }
      if (markerIndex !== null && this.#markerAppliedEverywhere(markerIndex, marker)) {
        const ticksToCommit = this.#tick - (leaderTick ?? healTick);
        this.#log(`quiet: the marker is applied on every node ${ticksToCommit} ticks after the leader emerged`);
        return { ticksToLeader: (leaderTick ?? healTick) - healTick, ticksToCommit };
      }
      if (this.#tick >= deadline) {
        throw new SimulationFailure('liveness', `a fresh proposal was not applied on every node by tick ${deadline} (leader at tick ${leaderTick}, heal at tick ${healTick})`);
      }
    }
  }

  /**
   * Ticks the flow limits need to bring the furthest-behind node up to the leader: one round trip
   * (at most 4 ticks once healed) per window of appendEntriesMax * inflightAppendsMax entries, twice
   * over for slack. Small limits are drawn on purpose, so a long backlog is slow but not stuck.
   */
  #backlogTicks(leader: SimNode): number {
    let commitMin = leader.core!.lastIndex;
    for (const node of this.#nodes) commitMin = Math.min(commitMin, node.core?.commitIndex ?? 0);
    const backlog = leader.core!.lastIndex - commitMin;
    const window = this.scenario.appendEntriesMax * this.scenario.inflightAppendsMax;
    return 2 * 4 * Math.ceil(backlog / window);
  }

  /** A leader in the highest term any node has reached (so nobody is about to depose it). */
  #stableLeader(): SimNode | null {
    let termMax = 0;
    for (const node of this.#nodes) termMax = Math.max(termMax, node.core?.term ?? 0);
    for (const node of this.#nodes) {
      if (node.core?.role === 'leader' && node.core.term === termMax) return node;
    }
    return null;
  }

  #markerAppliedEverywhere(markerIndex: number, marker: Uint8Array): boolean {
    const committed = this.#checker.committedEntry(markerIndex);
    if (committed === undefined || !sameBytes(committed.data, marker)) return false;
    return this.#nodes.every((node) => node.up && node.appliedIndex >= markerIndex);
  }

  async #heal(): Promise<void> {
    this.#healed = true;
    this.#blocked.clear();
    this.#lossRate = 0;
    this.#duplicateRate = 0;
    this.#delayTicksMax = Math.min(this.#delayTicksMax, 2);
    this.#clientQueue = [];
    if (this.scenario.learner && this.#learnerIds.length === 0) await this.#setLearners(['l1']);
    for (const node of this.#nodes) if (!node.up) this.#start(node);
    this.#log('heal: network repaired, every node up, faults stopped');
  }

  // ---------------------------------------------------------------------------------------------
  // Faults.

  async #injectFaults(): Promise<void> {
    const random = this.#random;
    const scenario = this.scenario;
    if (random.chance(scenario.partitionRate)) this.#changePartition();
    for (const node of this.#nodes) {
      if (node.up && random.chance(scenario.crashRate)) this.#crash(node, 'crash');
      else if (!node.up && random.chance(scenario.restartRate)) this.#start(node);
    }
    // Leaders are the most interesting node to lose.
    const leader = this.#nodes.find((node) => node.core?.role === 'leader');
    if (leader !== undefined && random.chance(scenario.crashRate / 2)) this.#crash(leader, 'crash the leader');
    if (scenario.learner && random.chance(0.003)) await this.#setLearners(this.#learnerIds.length === 0 ? ['l1'] : []);
    if (random.chance(scenario.proposalRate)) {
      this.#clientSequence += 1;
      const data = new TextEncoder().encode(`c${this.#clientSequence}`);
      this.#clientQueue.push({ dueTick: this.#tick, data, target: random.pick(this.#nodes).id, attempts: 0 });
    }
  }

  #changePartition(): void {
    const random = this.#random;
    this.#blocked.clear();
    const ids = this.#nodes.map((node) => node.id);
    const kind = random.int(0, 3);
    if (kind === 0) {
      this.#log('partition: healed');
      return;
    }
    if (kind === 1) {
      // Symmetric: split into two sides.
      const side = new Set(ids.filter(() => random.chance(0.5)));
      for (const from of ids) for (const to of ids) if (side.has(from) !== side.has(to)) this.#blocked.add(`${from}>${to}`);
      this.#log(`partition: symmetric, {${[...side].join(',')}} | {${ids.filter((id) => !side.has(id)).join(',')}}`);
    } else if (kind === 2) {
      // Isolate the leader (or someone), the case check-quorum and pre-vote exist for.
      const leader = this.#nodes.find((node) => node.core?.role === 'leader');
      const alone = leader?.id ?? random.pick(ids);
      for (const other of ids) {
        if (other === alone) continue;
        this.#blocked.add(`${alone}>${other}`);
        this.#blocked.add(`${other}>${alone}`);
      }
      this.#log(`partition: isolate ${alone}`);
    } else {
      // Asymmetric: some links work one way only.
      for (const from of ids) for (const to of ids) if (from !== to && random.chance(0.25)) this.#blocked.add(`${from}>${to}`);
      this.#log(`partition: one-way links down: ${[...this.#blocked].join(' ')}`);
    }
  }

  #crash(node: SimNode, why: string): void {
    this.#log(`${why}: ${node.id} (role ${node.core?.role}, term ${node.core?.term}, commit ${node.core?.commitIndex})`);
    this.#countOverwrites(node);
    node.core = null;
    // A write still in flight is lost with the node; its handleNext never resumes.
    node.driver = null;
    node.persistWait = null;
    this.stats.crashes += 1;
  }

  #start(node: SimNode): void {
    const persisted = node.storage.load();
    node.incarnation += 1;
    const config: RaftConfig = {
      id: node.id,
      voters: this.#voterIds,
      learners: this.#learnerIds,
      electionTicks: this.scenario.electionTicks,
      heartbeatTicks: this.scenario.heartbeatTicks,
      random: () => this.#coreRandom.next(),
      appendEntriesMax: this.scenario.appendEntriesMax,
      appendBytesMax: this.scenario.appendBytesMax,
      inflightAppendsMax: this.scenario.inflightAppendsMax,
      uncommittedBytesMax: 4096,
    };
    const core = new RaftCore(config, persisted);
    node.core = core;
    node.driver = new ReadyDriver(core, {
      persist: (ready) => this.#persist(node, ready),
      send: (messages) => {
        this.#send(node, messages);
        if (!this.#healed && this.#random.chance(this.scenario.crashMidReadyRate)) throw new CrashSignal('after send, before apply');
      },
      apply: (snapshot, entries) => this.#apply(node, snapshot, entries),
    });
    // The application state is volatile: rebuild it from the persisted snapshot.
    const snapshot = persisted.snapshot;
    if (snapshot === null) {
      node.appliedIndex = 0;
      node.digest = 0;
    } else {
      const state = decodeSnapshot(snapshot.data);
      node.appliedIndex = state.index;
      node.digest = state.digest;
    }
    node.commitChecked = core.snapshotIndex;
    this.#log(`start: ${node.id} incarnation ${node.incarnation} (term ${core.term}, commit ${core.commitIndex}, last ${core.lastIndex}, snapshot ${core.snapshotIndex})`);
    this.#checkNode(node);
  }

  async #setLearners(ids: NodeId[]): Promise<void> {
    this.#learnerIds = ids;
    this.#log(`learners: [${ids.join(',')}]`);
    for (const node of this.#upNodes()) {
      node.core!.setLearners(ids);
      await this.#afterInput(node, false);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Clients and the application.

  async #runClients(): Promise<void> {
    const due = this.#clientQueue.filter((request) => request.dueTick <= this.#tick);
    if (due.length === 0) return;
    this.#clientQueue = this.#clientQueue.filter((request) => request.dueTick > this.#tick);
    for (const request of due) await this.#propose(request);
  }

  async #propose(request: ClientRequest): Promise<void> {
    const random = this.#random;
    const node = request.target === null ? undefined : this.#byId.get(request.target);
    const retry = (target: NodeId | null, delay: number): void => {
      if (request.attempts + 1 >= clientAttemptsMax) return;
      this.#clientQueue.push({ dueTick: this.#tick + delay, data: request.data, target, attempts: request.attempts + 1 });
    };
    if (node === undefined || !node.up) {
      retry(random.pick(this.#nodes).id, random.int(1, 5));
      return;
    }
    const result = node.core!.propose(request.data);
    if (result.ok) {
      this.stats.proposalsAccepted += 1;
      this.#log(`propose ${new TextDecoder().decode(request.data)} on ${node.id}: index ${result.index} term ${result.term}`);
      await this.#afterInput(node, true);
    } else if (result.error.code === 'not-leader') {
      // The wrapper forwards to the named leader; with none known, the client tries elsewhere.
      retry(result.error.leader ?? random.pick(this.#nodes).id, random.int(1, result.error.leader === null ? 5 : 2));
    } else {
      retry(node.id, random.int(2, 6));
    }
  }

  #maybeCompact(): void {
    for (const node of this.#upNodes()) {
      const core = node.core!;
      // Production compacts between Readys, never while one is being persisted; so does the simulation.
      if (node.driver!.holdingReady) continue;
      if (!this.#random.chance(this.scenario.compactRate) || core.appliedIndex <= core.snapshotIndex) continue;
      if (node.appliedIndex !== core.appliedIndex) this.#checker.fail(`${node.id}: the application applied ${node.appliedIndex} but the core says ${core.appliedIndex}`);
      const snapshot = core.compact(node.appliedIndex, encodeSnapshot(node.appliedIndex, node.digest));
      if (snapshot !== null) {
        node.storage.saveSnapshot(snapshot);
        this.stats.compactions += 1;
        this.#log(`compact: ${node.id} up to ${snapshot.index}`);
      }
    }
  }

  #apply(node: SimNode, snapshot: Snapshot | null, entries: readonly Entry[]): void {
    if (snapshot !== null) {
      const state = decodeSnapshot(snapshot.data);
      if (state.index !== snapshot.index) this.#checker.fail(`${node.id}: snapshot ${snapshot.index} carries state of index ${state.index}`);
      this.#checker.observeSnapshotState(node.id, state.index, state.digest);
      node.appliedIndex = state.index;
      node.digest = state.digest;
      this.stats.snapshotsInstalled += 1;
      this.#log(`apply snapshot: ${node.id} at ${snapshot.index}`);
    }
    for (const entry of entries) {
      if (entry.index !== node.appliedIndex + 1) this.#checker.fail(`${node.id} applied entry ${entry.index} right after ${node.appliedIndex}: a gap or a repeat`);
      node.digest = chainDigest(node.digest, entry);
      node.appliedIndex = entry.index;
      this.#checker.observeApplied(node.id, entry, node.digest);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // The network.

  #send(from: SimNode, messages: readonly Message[]): void {
    const random = this.#random;
    for (const message of messages) {
      from.storage.checkDurable(message);
      if (random.chance(this.#lossRate)) {
        this.stats.messagesDropped += 1;
        continue;
      }
      const copies = random.chance(this.#duplicateRate) ? 2 : 1;
      for (let copy = 0; copy < copies; copy += 1) {
        const due = this.#tick + random.int(1, this.#delayTicksMax);
        let bucket = this.#inFlight.get(due);
        if (bucket === undefined) {
          bucket = [];
          this.#inFlight.set(due, bucket);
        }
        bucket.push({ message: cloneMessage(message), order: random.next() });
      }
    }
  }

  async #deliverDue(): Promise<void> {
    const bucket = this.#inFlight.get(this.#tick);
    if (bucket === undefined) return;
    this.#inFlight.delete(this.#tick);
    bucket.sort((a, b) => a.order - b.order);
    for (const { message } of bucket) {
      const target = this.#byId.get(message.to);
      if (target === undefined || !target.up || this.#blocked.has(`${message.from}>${message.to}`)) {
        this.stats.messagesDropped += 1;
        continue;
      }
      this.stats.messagesDelivered += 1;
      if (this.options.traceMessages) this.#log(`deliver ${describeMessage(message)}`);
      target.core!.step(message);
      await this.#afterInput(target, false);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Driving the cores.

  /** After an input, either handle the node's Ready now or leave it for later (a crash may lose it). */
  async #afterInput(node: SimNode, eager: boolean): Promise<void> {
    this.#checkNode(node);
    if (node.persistWait !== null) this.stats.inputsWhilePersisting += 1;
    if (eager || this.#random.chance(this.scenario.readyEagerRate)) await this.#drainReady(node);
  }

  /** Handles up to 4 Readys, stopping at a slow persist (its completion resumes the draining). */
  async #drainReady(node: SimNode): Promise<void> {
    for (let round = 0; round < 4; round += 1) {
      const driver = node.driver;
      if (driver === null || node.persistWait !== null) return;
      const handling = driver.handleNext();
      if (node.persistWait !== null) {
        // The persist effect ran synchronously inside handleNext and chose to be slow.
        (node.persistWait as PersistWait).handling = handling;
        return;
      }
      if (!(await this.#settle(node, handling))) return;
    }
  }

  /** Step 1 of a Ready: write it now, or (sometimes, before the heal) only after a few ticks. */
  #persist(node: SimNode, ready: Ready): void | Promise<void> {
    if (this.#healed || !this.#random.chance(this.scenario.persistSlowRate)) {
      this.#write(node, ready);
      return;
    }
    this.stats.persistsSlow += 1;
    const stall = this.#random.chance(this.scenario.persistStallRate);
    const dueTick = this.#tick + this.#random.int(1, stall ? this.scenario.persistStallTicksMax : this.scenario.persistTicksMax);
    this.#log(`${node.id}: persisting ${ready.entries.length} entries until tick ${dueTick}`);
    return new Promise<void>((resolve, reject) => {
      node.persistWait = { ready, dueTick, resolve, reject, handling: null };
    });
  }

  #write(node: SimNode, ready: Ready): void {
    node.storage.persist(ready);
    if (ready.softState !== null) this.#log(`${node.id}: ${ready.softState.role}, leader ${ready.softState.leader ?? '-'}, term ${node.core!.term}`);
    if (!this.#healed && this.#random.chance(this.scenario.crashMidReadyRate)) throw new CrashSignal('after persist, before send');
  }

  /** Lands every slow write due by now, lets its handleNext finish, and drains what came meanwhile. */
  async #completePersists(): Promise<void> {
    const due = this.#nodes.filter((node) => node.persistWait !== null && node.persistWait.dueTick <= this.#tick);
    for (const node of this.#random.shuffle(due)) {
      const wait = node.persistWait;
      if (wait === null) continue;
      node.persistWait = null;
      try {
        this.#write(node, wait.ready);
        wait.resolve();
      } catch (error) {
        wait.reject(error);
      }
      if (await this.#settle(node, wait.handling!)) await this.#drainReady(node);
    }
  }

  /** Awaits one handleNext; returns true if it handled a Ready and the node is still up. */
  async #settle(node: SimNode, handling: Promise<Ready | null>): Promise<boolean> {
    try {
      if ((await handling) === null) return false;
    } catch (error) {
      if (!(error instanceof CrashSignal)) throw error;
      this.#crash(node, `crash ${error.message}`);
      return false;
    }
    this.#checkNode(node);
    return true;
  }

  #countOverwrites(node: SimNode): void {
    if (node.core !== null) this.stats.overwrittenWhilePersisting += node.core.status().overwrittenWhilePersisting;
  }

  #upNodes(): SimNode[] {
    return this.#nodes.filter((node) => node.up);
  }

  // ---------------------------------------------------------------------------------------------
  // Checks.

  #checkNode(node: SimNode): void {
    const core = node.core;
    if (core === null) return;
    if (core.role === 'leader') this.#checker.observeLeader(node.id, core.term, core);
    const commit = core.commitIndex;
    if (commit < node.commitChecked) this.#checker.fail(`${node.id}: commit index went back from ${node.commitChecked} to ${commit} within incarnation ${node.incarnation}`);
    if (commit > node.commitChecked) {
      this.#checker.observeCommitted(node.id, core, node.commitChecked + 1, commit);
      node.commitChecked = commit;
    }
  }

  /** Committed entries never disappear: every live node still holds what it committed. */
  #checkAllLogs(): void {
    for (const node of this.#upNodes()) this.#checker.observeCommitted(node.id, node.core!, 1, node.core!.commitIndex);
  }

  #log(line: string): void {
    if (this.options.trace) this.#trace.push(`[${this.#tick}] ${line}`);
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i += 1) if (a[i] !== b[i]) return false;
  return true;
}

export function describeMessage(message: Message): string {
  const head = `${message.type} ${message.from}->${message.to} t${message.term}`;
  switch (message.type) {
    case 'vote-request':
    case 'pre-vote-request':
      return `${head} last ${message.lastLogIndex}/t${message.lastLogTerm}`;
    case 'vote-response':
    case 'pre-vote-response':
      return `${head} ${message.granted ? 'granted' : 'rejected'}`;
    case 'append':
      return `${head} prev ${message.prevLogIndex}/t${message.prevLogTerm} entries ${message.entries.length} commit ${message.commit}`;
    case 'append-response':
      return `${head} ${message.success ? 'ok' : 'reject'} ${message.index} hint ${message.hintIndex}/t${message.hintTerm}`;
    case 'heartbeat':
      return `${head} commit ${message.commit}`;
    case 'heartbeat-response':
      return head;
    case 'install-snapshot':
      return `${head} snapshot ${message.snapshot.index}/t${message.snapshot.term}`;
  }
}

export function runSeed(seed: number, options: Partial<SimOptions> = {}): Promise<SimResult> {
  return new Simulation(seed, options).run();
}
