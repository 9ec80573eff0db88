/**
 * Gossip membership: publishes this node's heartbeat every heartbeatMs on a gossipsub topic, feeds
 * heartbeats from others into the member view, and sweeps the view on a timer so silent members
 * turn suspect, then dead.
 *
 * Heartbeats are signed by gossipsub (StrictSign); one whose claimed peer id is not its signer's is
 * dropped, so the name → peer id map the transport relies on cannot be spoofed by a relay.
 */

import { performance } from 'node:perf_hooks';
import { peerIdFromString } from '@libp2p/peer-id';
import { multiaddr } from '@multiformats/multiaddr';
import type { Libp2p } from '@libp2p/interface';
import type { GossipSub, Message } from '@libp2p/gossipsub';
import type { Logger } from 'pino';
import type { NodeConfig } from '../../config/index.ts';
import { decodeHeartbeat, encodeHeartbeat, heartbeatTopic } from './heartbeat.ts';
import type { Heartbeat } from './heartbeat.ts';
import { createMemberView } from './member-view.ts';
import type { MemberEvent, MemberViewNotes } from './member-view.ts';
import type { Member, MemberEventType, MemberListener, StatusProvider } from './types.ts';

export interface MembershipComponents {
  config: NodeConfig;
  libp2p: Libp2p<{ pubsub: GossipSub }>;
  logger: Logger;
}

export interface Membership {
  start(): void;
  stop(): void;
  members(): Member[];
  member(name: string): Member | undefined;
  nameOf(peerId: string): string | undefined;
  on(event: MemberEventType, listener: MemberListener): () => void;
  setStatusProvider(provider: StatusProvider): void;
  announce(): void;
}

export function createMembership({ config, libp2p, logger }: MembershipComponents): Membership {
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
      gateway: report.gateway ?? `ws://${config.gateway.host}:${config.gateway.port}`,
      addresses: libp2p.getMultiaddrs().map(String),
      load: { workers: config.workers, inFlight: 0, queue: 0, ...report.load },
      raft: report.raft,
      seq,
      startedAt,
    };
  }

  function selfMember(): Member {
    const heartbeat = selfHeartbeat();
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
      log.debug({ err: error }, 'heartbeat publish failed');
    });
  }

  function onMessage(event: CustomEvent<Message>) {
    const message = event.detail;
    if (message.topic !== heartbeatTopic) return;
    if (message.type !== 'signed') return;
    const heartbeat = decodeHeartbeat(message.data);
    if (typeof heartbeat === 'string') {
      log.warn({ from: message.from.toString(), problem: heartbeat }, 'dropped a malformed heartbeat');
      return;
    }
    if (heartbeat.peerId !== message.from.toString()) {
      log.warn({ from: message.from.toString(), claimed: heartbeat.peerId }, 'dropped a heartbeat signed by another peer');
      return;
    }
    if (heartbeat.name === config.name) {
      log.error({ peerId: heartbeat.peerId }, `another peer claims this node's name "${config.name}"`);
      return;
    }
    const notes: MemberViewNotes = {};
    emit(view.observe(heartbeat, performance.now(), notes));
    if (notes.conflict !== undefined) log.warn(notes.conflict, 'two live peers claim one member name; the latest heartbeat wins');
    rememberAddresses(heartbeat);
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
  }

  function stop() {
    clearInterval(publishTimer);
    clearInterval(sweepTimer);
    publishTimer = undefined;
    sweepTimer = undefined;
    pubsub.removeEventListener('message', onMessage);
    if (pubsub.getTopics().includes(heartbeatTopic)) pubsub.unsubscribe(heartbeatTopic);
  }

  return {
    start,
    stop,
    members: () => [selfMember(), ...view.list(performance.now())],
    member: (name) => (name === config.name ? selfMember() : view.get(name, performance.now())),
    nameOf: (peerId) => (peerId === libp2p.peerId.toString() ? config.name : view.nameOf(peerId)),
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
