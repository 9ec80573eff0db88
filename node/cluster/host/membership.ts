/**
 * Gossip membership: publishes this node's heartbeat every heartbeatMs on a gossipsub topic, feeds
 * heartbeats from others into the member view, and sweeps the view on a timer so silent members
 * turn suspect, then dead.
 *
 * Heartbeats are signed by gossipsub (StrictSign); one whose claimed peer id is not its signer's is
 * dropped, so a relay cannot speak for another peer. A heartbeat counts only when trust admits its
 * (name, peer id): a name bound to another peer id, or a peer never admitted, is ignored (warned).
 *
 * A watchdog looks for peers that stay connected but fall silent: gossipsub keeps one outbound
 * stream per connection and does not reopen it when it breaks while the connection lives, so such
 * a peer stops hearing (or being heard) until the connection is replaced. The watchdog hangs up and
 * redials it, with a backoff per peer.
 */

import { performance } from 'node:perf_hooks';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import type { Libp2p, PeerId } from '@libp2p/interface';
import type { GossipSub, Message } from '@libp2p/gossipsub';
import type { Logger } from 'pino';
import type { NodeConfig } from '../../config/index.ts';
import { decodeHeartbeat, encodeHeartbeat, heartbeatTopic } from './heartbeat.ts';
import type { Heartbeat } from './heartbeat.ts';
import { createMemberView } from './member-view.ts';
import type { Trust } from './trust.ts';
import type { MemberEvent, MemberViewNotes } from './member-view.ts';
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

/** The watchdog waits at least this long between two reconnects of one peer, doubling to the max. */
const reconnectBackoffMsMin = 5_000;
const reconnectBackoffMsMax = 60_000;
/** Repeated warnings about one peer are logged the first time and then every this many times. */
const warnEvery = 100;

export interface Membership {
  start(): void;
  stop(): void;
  stats(): MembershipStats;
  members(): Member[];
  member(name: string): Member | undefined;
  nameOf(peerId: string): string | undefined;
  on(event: MemberEventType, listener: MemberListener): () => void;
  setStatusProvider(provider: StatusProvider): void;
  announce(): void;
}

export function createMembership({ config, libp2p, trust, logger }: MembershipComponents): Membership {
  const log = logger.child({ room: 'membership' });
  const pubsub = libp2p.services.pubsub;
  const view = createMemberView(config.name, config.membership);
  const listeners = new Map<MemberEventType, Set<MemberListener>>();
  const addressesMerged = new Map<string, string>(); // peer id → addresses last given to the peer store
  const startedAt = Date.now();
  let provider: StatusProvider = () => ({});
  let seq = 0;
  let publishTimer: NodeJS.Timeout | undefined;
  let sweepTimer: NodeJS.Timeout | undefined;
  let watchTimer: NodeJS.Timeout | undefined;
  const counters: MembershipStats = { heartbeatsRefused: 0, publishFailures: 0, reconnects: 0 };
  const refusalsByPeer = new Map<string, number>();
  const reconnectAt = new Map<string, { atMs: number; backoffMs: number }>();

  function selfHeartbeat(): Heartbeat {
    let report: ReturnType<StatusProvider> = {};
    try {
      report = provider();
    } catch (error) {
      log.error({ err: error }, 'status provider threw; heartbeat carries defaults');
    }
    return {
      name: config.name,
      peerId: libp2p.peerId.toString(),
      role: config.role,
      gateway: report.gateway ?? `${config.gateway.tls === undefined ? 'ws' : 'wss'}://${config.gateway.host}:${config.gateway.port}`,
      addresses: libp2p.getMultiaddrs().map(String),
      load: { workers: config.workers, inFlight: 0, queue: 0, ...report.load },
      raft: report.raft,
      seq,
      startedAt,
      join: trust.ownJoinProof(libp2p.peerId.toString()),
    };
  }

  function selfMember(): Member {
    const { join: _join, ...heartbeat } = selfHeartbeat();
    return { ...heartbeat, status: 'alive', self: true, heartbeatAgeMs: 0 };
  }

  function emit(events: MemberEvent[]) {
    for (const event of events) {
      const level = event.type === 'member:changed' ? 'debug' : 'info';
      log[level]({ member: event.member.name, status: event.member.status, peerId: event.member.peerId }, event.type);
      for (const listener of listeners.get(event.type) ?? []) {
        try {
          listener(event.member, event.previous);
        } catch (error) {
          log.error({ err: error, event: event.type }, 'member listener threw');
        }
      }
    }
  }

  function publish() {
    seq += 1;
    const bytes = encodeHeartbeat(selfHeartbeat());
    pubsub.publish(heartbeatTopic, bytes).catch((error: unknown) => {
      counters.publishFailures += 1;
      // A failed publish means peers do not hear this node: worth a warning, but not one per beat.
      if (counters.publishFailures % warnEvery === 1) log.warn({ err: error, failures: counters.publishFailures }, 'heartbeat publish failed');
    });
  }

  function onMessage(event: CustomEvent<Message>) {
    const message = event.detail;
    if (message.topic !== heartbeatTopic) return;
    if (message.type !== 'signed') return;
    const from = message.from.toString();
    const heartbeat = decodeHeartbeat(message.data);
    if (typeof heartbeat === 'string') return refuse(from, 'dropped a malformed heartbeat', heartbeat);
    if (heartbeat.peerId !== from) return refuse(from, 'dropped a heartbeat signed by another peer', `claims ${heartbeat.peerId}`);
    if (heartbeat.name === config.name) return refuse(from, `another peer claims this node's name "${config.name}"`, 'ignored');
    const refusal = trust.admit({ name: heartbeat.name, peerId: heartbeat.peerId, role: heartbeat.role, join: heartbeat.join });
    if (refusal !== undefined) return refuse(from, 'ignored a heartbeat from a peer that is not admitted under that name', refusal);
    const notes: MemberViewNotes = {};
    emit(view.observe(heartbeat, performance.now(), notes));
    if (notes.conflict !== undefined) log.warn(notes.conflict, 'two live peers claim one member name; the latest heartbeat wins');
    rememberAddresses(heartbeat);
  }

  function refuse(from: string, what: string, problem: string): void {
    counters.heartbeatsRefused += 1;
    const times = (refusalsByPeer.get(from) ?? 0) + 1;
    if (refusalsByPeer.size > 4 * 256) refusalsByPeer.clear(); // only paces warnings; losing it costs a line
    refusalsByPeer.set(from, times);
    if (times % warnEvery === 1) log.warn({ from, problem, times }, what);
  }

  /** Hangs up on admitted peers that are connected but whose heartbeats stopped, and redials them. */
  function watch(): void {
    const nowMs = performance.now();
    for (const connection of libp2p.getConnections()) {
      const peerId = connection.remotePeer;
      const name = trust.nameOf(peerId.toString());
      if (name === undefined || name === config.name) continue;
      const member = view.get(name, nowMs);
      const openMs = Date.now() - connection.timeline.open;
      const silentMs = member === undefined ? openMs : Math.min(member.heartbeatAgeMs, openMs);
      if (silentMs < config.membership.suspectMs * 2) continue;
      const key = peerId.toString();
      const pace = reconnectAt.get(key) ?? { atMs: 0, backoffMs: reconnectBackoffMsMin };
      if (nowMs < pace.atMs) continue;
      reconnectAt.set(key, { atMs: nowMs + pace.backoffMs, backoffMs: Math.min(pace.backoffMs * 2, reconnectBackoffMsMax) });
      counters.reconnects += 1;
      const subscribed = pubsub.getSubscribers(heartbeatTopic).some((subscriber) => subscriber.equals(peerId));
      log.warn({ member: name, peerId: key, silentMs: Math.round(silentMs), subscribed }, 'peer connected but silent on gossip; reconnecting');
      void reconnect(peerId, name);
    }
    for (const [key, pace] of reconnectAt) if (nowMs - pace.atMs > reconnectBackoffMsMax * 2) reconnectAt.delete(key);
  }

  async function reconnect(peerId: PeerId, name: string): Promise<void> {
    try {
      await libp2p.hangUp(peerId);
      await libp2p.dial(peerId, { signal: AbortSignal.timeout(config.membership.deadMs) });
    } catch (error) {
      log.info({ member: name, err: (error as Error).message }, 'redialing a silent peer failed; the bootstrap dialer and transport retry');
    }
  }

  /** Lets the transport dial members this node has no connection to (heard of only via gossip). */
  function rememberAddresses(heartbeat: Heartbeat) {
    const key = heartbeat.addresses.join(' ');
    if (addressesMerged.get(heartbeat.peerId) === key) return;
    addressesMerged.set(heartbeat.peerId, key);
    if (addressesMerged.size > 4 * 256) addressesMerged.clear(); // a cache: losing it only costs a merge
    try {
      const multiaddrs = heartbeat.addresses.map((text) => multiaddr(text));
      libp2p.peerStore.merge(peerIdFromString(heartbeat.peerId), { multiaddrs }).catch((error: unknown) => {
        log.debug({ err: error }, 'could not store member addresses');
      });
    } catch (error) {
      log.warn({ err: error, member: heartbeat.name }, 'member sent unusable addresses');
    }
  }

  function start() {
    pubsub.addEventListener('message', onMessage);
    pubsub.subscribe(heartbeatTopic);
    publish();
    publishTimer = setInterval(publish, config.membership.heartbeatMs);
    // Sweeping at a quarter of the heartbeat keeps status changes within that of their deadline.
    const sweepMs = Math.max(10, Math.floor(config.membership.heartbeatMs / 4));
    sweepTimer = setInterval(() => emit(view.sweep(performance.now())), sweepMs);
    watchTimer = setInterval(watch, config.membership.suspectMs);
  }

  function stop() {
    clearInterval(publishTimer);
    clearInterval(sweepTimer);
    clearInterval(watchTimer);
    watchTimer = undefined;
    publishTimer = undefined;
    sweepTimer = undefined;
    pubsub.removeEventListener('message', onMessage);
    if (pubsub.getTopics().includes(heartbeatTopic)) pubsub.unsubscribe(heartbeatTopic);
  }

  return {
    start,
    stop,
    stats: () => ({ ...counters }),
    members: () => [selfMember(), ...view.list(performance.now())],
    member: (name) => (name === config.name ? selfMember() : view.get(name, performance.now())),
    nameOf: (peerId) => (peerId === libp2p.peerId.toString() ? config.name : trust.nameOf(peerId)),
    on(event, listener) {
      let set = listeners.get(event);
      if (set === undefined) listeners.set(event, (set = new Set()));
      set.add(listener);
      return () => set.delete(listener);
    },
    setStatusProvider(next) {
      provider = next;
    },
    announce: publish,
  };
}
