/**
 * Membership: sends this node's heartbeat every heartbeatMs to every connected peer, feeds heartbeats
 * from others into the member view, and sweeps the view on a timer so silent members turn suspect,
 * then dead.
 *
 * Heartbeats go two ways. Straight to each connected peer on its own stream (`direct-heartbeats.ts`),
 * where the connection names the sender; and, less often, announced on a gossipsub topic, signed
 * (StrictSign), so that members who know only one address find the others: a member hears of another
 * through their common peer's gossip and dials it by the addresses its heartbeat carries. A node
 * announces every beat for a while after it starts and after any new connection, then every tenth.
 * Either way, a heartbeat that claims a peer id other than its sender's (the connection's peer, or the
 * gossip signer) is dropped, so no peer can speak for another. A heartbeat counts only when trust
 * admits its (name, peer id): a name bound to another peer id, or a peer never admitted, is ignored.
 *
 * A watchdog (`silent-peers.ts`) looks for peers that stay connected but fall silent and redials them.
 */

import { performance } from 'node:perf_hooks';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import type { Libp2p } from '@libp2p/interface';
import type { GossipSub, Message } from '@libp2p/gossipsub';
import type { Logger } from 'pino';
import type { NodeConfig } from '../../config/index.ts';
import { DirectHeartbeats } from './direct-heartbeats.ts';
import { decodeHeartbeat, encodeHeartbeat, heartbeatTopic } from './heartbeat.ts';
import type { Heartbeat } from './heartbeat.ts';
import { createMemberView } from './member-view.ts';
import { SilentPeerWatchdog } from './silent-peers.ts';
import type { Trust } from './trust.ts';
import type { MemberEvent, MemberView, MemberViewNotes } from './member-view.ts';
import type { Member, MemberEventType, MemberListener, StatusProvider } from './types.ts';

export interface MembershipComponents {
  config: NodeConfig;
  libp2p: Libp2p<{ pubsub: GossipSub }>;
  trust: Trust;
  logger: Logger;
}

export interface MembershipStats {
  /** Heartbeats ignored: malformed, signed by another peer, or not admitted by trust. */
  heartbeatsRefused: number;
  /** Heartbeats that could not be published. */
  publishFailures: number;
  /** Connected but silent admitted peers the watchdog hung up on and redialed. */
  reconnects: number;
}

/** Repeated warnings about one peer are logged the first time and then every this many times. */
const warnEvery = 100;
/** In steady state a heartbeat is also announced on gossip every this many beats (5 s at the default 500 ms). */
const gossipEveryBeats = 10;
/** After its start and after each new connection, a node announces every beat for this many beats. */
const announceBeats = 20;
/**
 * How long this node's own addresses, as its heartbeat carries them, are reused before libp2p is asked
 * again; a change libp2p reports (self:peer:update) is taken at once. libp2p works the list out afresh
 * on every call (its transports' addresses, each checked against the private ranges): with two beats a
 * second plus every read of the member list, that was 4% of a worker's main thread while coding.
 */
const ownAddressesTtlMs = 10_000;

export interface Membership {
  start(): Promise<void>;
  stop(): Promise<void>;
  stats(): MembershipStats;
  members(): Member[];
  member(name: string): Member | undefined;
  nameOf(peerId: string): string | undefined;
  on(event: MemberEventType, listener: MemberListener): () => void;
  setStatusProvider(provider: StatusProvider): void;
  announce(): void;
}

export function createMembership(components: MembershipComponents): Membership {
  const membership = new HeartbeatMembership(components);
  return {
    start: () => membership.start(),
    stop: () => membership.stop(),
    stats: () => membership.stats(),
    members: () => membership.members(),
    member: (name) => membership.member(name),
    nameOf: (peerId) => membership.nameOf(peerId),
    on: (event, listener) => membership.on(event, listener),
    setStatusProvider: (provider) => membership.setStatusProvider(provider),
    announce: () => membership.publish(true),
  };
}

class HeartbeatMembership {
  readonly #config: NodeConfig;
  readonly #libp2p: Libp2p<{ pubsub: GossipSub }>;
  readonly #trust: Trust;
  readonly #log: Logger;
  readonly #view: MemberView;
  readonly #watchdog: SilentPeerWatchdog;
  readonly #direct: DirectHeartbeats;
  readonly #listeners = new Map<MemberEventType, Set<MemberListener>>();
  readonly #addressesMerged = new Map<string, string>(); // peer id → addresses last given to the peer store
  readonly #startedAt = Date.now();
  readonly #counters: MembershipStats = { heartbeatsRefused: 0, publishFailures: 0, reconnects: 0 };
  readonly #refusalsByPeer = new Map<string, number>();
  readonly #onMessage = (event: CustomEvent<Message>) => this.#receiveGossip(event.detail);
  readonly #onConnection = () => (this.#announceUntilSeq = this.#seq + announceBeats);
  readonly #onSelfUpdate = () => (this.#ownAddresses = undefined);
  #ownAddresses: { list: string[]; readAtMs: number } | undefined;
  #provider: StatusProvider = () => ({});
  #seq = 0;
  #announceUntilSeq = announceBeats;
  #publishTimer: NodeJS.Timeout | undefined;
  #sweepTimer: NodeJS.Timeout | undefined;
  #watchTimer: NodeJS.Timeout | undefined;

  constructor({ config, libp2p, trust, logger }: MembershipComponents) {
    this.#config = config;
    this.#libp2p = libp2p;
    this.#trust = trust;
    this.#log = logger.child({ room: 'membership' });
    this.#view = createMemberView(config.name, config.membership);
    this.#watchdog = new SilentPeerWatchdog({ config, libp2p, trust, view: this.#view, log: this.#log, counters: this.#counters });
    const receive = (bytes: Uint8Array, from: string) => this.#receive(bytes, from, 'sent by');
    this.#direct = new DirectHeartbeats({ libp2p, log: this.#log, receive, counters: this.#counters });
  }

  // ---- Lifecycle ----

  async start(): Promise<void> {
    const pubsub = this.#libp2p.services.pubsub;
    const { heartbeatMs, suspectMs } = this.#config.membership;
    await this.#direct.start();
    pubsub.addEventListener('message', this.#onMessage);
    pubsub.subscribe(heartbeatTopic);
    this.#libp2p.addEventListener('connection:open', this.#onConnection);
    this.#libp2p.addEventListener('self:peer:update', this.#onSelfUpdate);
    this.publish();
    this.#publishTimer = setInterval(() => this.publish(), heartbeatMs);
    // Sweeping at a quarter of the heartbeat keeps status changes within that of their deadline.
    const sweepMs = Math.max(10, Math.floor(heartbeatMs / 4));
    this.#sweepTimer = setInterval(() => this.#emit(this.#view.sweep(performance.now())), sweepMs);
    this.#watchTimer = setInterval(() => this.#watchdog.watch(), suspectMs);
  }

  async stop(): Promise<void> {
    const pubsub = this.#libp2p.services.pubsub;
    this.#libp2p.removeEventListener('connection:open', this.#onConnection);
    this.#libp2p.removeEventListener('self:peer:update', this.#onSelfUpdate);
    clearInterval(this.#publishTimer);
    clearInterval(this.#sweepTimer);
    clearInterval(this.#watchTimer);
    this.#watchTimer = undefined;
    this.#publishTimer = undefined;
    this.#sweepTimer = undefined;
    pubsub.removeEventListener('message', this.#onMessage);
    if (pubsub.getTopics().includes(heartbeatTopic)) pubsub.unsubscribe(heartbeatTopic);
    await this.#direct.stop();
  }

  // ---- Reading the view ----

  stats(): MembershipStats {
    return { ...this.#counters };
  }

  members(): Member[] {
    return [this.#selfMember(), ...this.#view.list(performance.now())];
  }

  member(name: string): Member | undefined {
    return name === this.#config.name ? this.#selfMember() : this.#view.get(name, performance.now());
  }

  nameOf(peerId: string): string | undefined {
    return peerId === this.#libp2p.peerId.toString() ? this.#config.name : this.#trust.nameOf(peerId);
  }

  on(event: MemberEventType, listener: MemberListener): () => void {
    let set = this.#listeners.get(event);
    if (set === undefined) this.#listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  #emit(events: MemberEvent[]): void {
    for (const event of events) {
      const level = event.type === 'member:changed' ? 'debug' : 'info';
      this.#log[level]({ member: event.member.name, status: event.member.status, peerId: event.member.peerId }, event.type);
      for (const listener of this.#listeners.get(event.type) ?? []) {
        try {
          listener(event.member, event.previous);
        } catch (error) {
          this.#log.error({ err: error, event: event.type }, 'member listener threw');
        }
      }
    }
  }

  // ---- This node's heartbeat ----

  setStatusProvider(provider: StatusProvider): void {
    this.#provider = provider;
  }

  /** Sends this node's heartbeat to its peers; announces it on gossip when due or `announce` says so. */
  publish(announce = false): void {
    this.#seq += 1;
    const bytes = encodeHeartbeat(this.#selfHeartbeat());
    this.#direct.send(bytes);
    if (!announce && this.#seq > this.#announceUntilSeq && this.#seq % gossipEveryBeats !== 0) return;
    this.#libp2p.services.pubsub.publish(heartbeatTopic, bytes).catch((error: unknown) => {
      const counters = this.#counters;
      counters.publishFailures += 1;
      // A failed publish means peers do not hear this node: worth a warning, but not one per beat.
      if (counters.publishFailures % warnEvery === 1) this.#log.warn({ err: error, failures: counters.publishFailures }, 'heartbeat publish failed');
    });
  }

  #selfHeartbeat(): Heartbeat {
    const config = this.#config;
    const libp2p = this.#libp2p;
    let report: ReturnType<StatusProvider> = {};
    try {
      report = this.#provider();
    } catch (error) {
      this.#log.error({ err: error }, 'status provider threw; heartbeat carries defaults');
    }
    return {
      name: config.name,
      peerId: libp2p.peerId.toString(),
      role: config.role,
      gateway: report.gateway ?? `${config.gateway.tls === undefined ? 'ws' : 'wss'}://${config.gateway.host}:${config.gateway.port}`,
      addresses: this.#addresses(),
      load: { workers: config.workers, inFlight: 0, queue: 0, ...report.load },
      raft: report.raft,
      seq: this.#seq,
      startedAt: this.#startedAt,
      join: this.#trust.ownJoinProof(libp2p.peerId.toString()),
    };
  }

  #addresses(): string[] {
    const now = performance.now();
    const own = this.#ownAddresses;
    if (own !== undefined && now - own.readAtMs < ownAddressesTtlMs) return [...own.list];
    const list = this.#libp2p.getMultiaddrs().map(String);
    this.#ownAddresses = { list, readAtMs: now };
    return [...list];
  }

  #selfMember(): Member {
    const { join: _join, ...heartbeat } = this.#selfHeartbeat();
    return { ...heartbeat, status: 'alive', self: true, heartbeatAgeMs: 0 };
  }

  // ---- Heartbeats from others ----

  #receiveGossip(message: Message): void {
    if (message.topic !== heartbeatTopic) return;
    if (message.type !== 'signed') return;
    this.#receive(message.data, message.from.toString(), 'signed by');
  }

  /** A heartbeat from `from`: the peer whose connection it came on, or who signed it on gossip. */
  #receive(bytes: Uint8Array, from: string, how: 'sent by' | 'signed by'): void {
    const name = this.#config.name;
    const heartbeat = decodeHeartbeat(bytes);
    if (typeof heartbeat === 'string') return this.#refuse(from, 'dropped a malformed heartbeat', heartbeat);
    if (heartbeat.peerId !== from) return this.#refuse(from, `dropped a heartbeat ${how} another peer`, `claims ${heartbeat.peerId}`);
    if (heartbeat.name === name) return this.#refuse(from, `another peer claims this node's name "${name}"`, 'ignored');
    const refusal = this.#trust.admit({ name: heartbeat.name, peerId: heartbeat.peerId, role: heartbeat.role, join: heartbeat.join });
    if (refusal !== undefined) return this.#refuse(from, 'ignored a heartbeat from a peer that is not admitted under that name', refusal);
    const notes: MemberViewNotes = {};
    this.#emit(this.#view.observe(heartbeat, performance.now(), notes));
    if (notes.conflict !== undefined) this.#log.warn(notes.conflict, 'two live peers claim one member name; the latest heartbeat wins');
    this.#rememberAddresses(heartbeat);
  }

  #refuse(from: string, what: string, problem: string): void {
    this.#counters.heartbeatsRefused += 1;
    const times = (this.#refusalsByPeer.get(from) ?? 0) + 1;
    if (this.#refusalsByPeer.size > 4 * 256) this.#refusalsByPeer.clear(); // only paces warnings; losing it costs a line
    this.#refusalsByPeer.set(from, times);
    if (times % warnEvery === 1) this.#log.warn({ from, problem, times }, what);
  }

  /** Lets the transport dial members this node has no connection to (heard of only via gossip). */
  #rememberAddresses(heartbeat: Heartbeat): void {
    const key = heartbeat.addresses.join(' ');
    if (this.#addressesMerged.get(heartbeat.peerId) === key) return;
    this.#addressesMerged.set(heartbeat.peerId, key);
    if (this.#addressesMerged.size > 4 * 256) this.#addressesMerged.clear(); // a cache: losing it only costs a merge
    try {
      const multiaddrs = heartbeat.addresses.map((text) => multiaddr(text));
      this.#libp2p.peerStore.merge(peerIdFromString(heartbeat.peerId), { multiaddrs }).catch((error: unknown) => {
        this.#log.debug({ err: error }, 'could not store member addresses');
      });
    } catch (error) {
      this.#log.warn({ err: error, member: heartbeat.name }, 'member sent unusable addresses');
    }
  }
}
