/**
 * The watchdog for peers that stay connected but fall silent. Heartbeat streams are opened again on
 * the next beat when they break (direct-heartbeats.ts), but gossipsub keeps one outbound stream per
 * connection and does not reopen it while the connection lives, and a connection can go quiet in
 * other ways; such a peer stops hearing (or being heard) until the connection is replaced. The
 * watchdog hangs up and redials it, with a backoff per peer.
 */

import { performance } from 'node:perf_hooks';
import type { Libp2p, PeerId } from '@libp2p/interface';
import type { GossipSub } from '@libp2p/gossipsub';
import type { Logger } from 'pino';
import type { NodeConfig } from '../../config/index.ts';
import { heartbeatTopic } from './heartbeat.ts';
import type { MemberView } from './member-view.ts';
import type { Trust } from './trust.ts';

/** The watchdog waits at least this long between two reconnects of one peer, doubling to the max. */
const reconnectBackoffMsMin = 5_000;
const reconnectBackoffMsMax = 60_000;

export interface SilentPeerWatchdogComponents {
  config: NodeConfig;
  libp2p: Libp2p<{ pubsub: GossipSub }>;
  trust: Trust;
  view: MemberView;
  log: Logger;
  /** Counted once per reconnect. */
  counters: { reconnects: number };
}

export class SilentPeerWatchdog {
  readonly #components: SilentPeerWatchdogComponents;
  readonly #reconnectAt = new Map<string, { atMs: number; backoffMs: number }>();

  constructor(components: SilentPeerWatchdogComponents) {
    this.#components = components;
  }

  /** Hangs up on admitted peers that are connected but whose heartbeats stopped, and redials them. */
  watch(): void {
    const { config, libp2p, trust, view, log, counters } = this.#components;
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
      if (!this.#due(key, nowMs)) continue;
      counters.reconnects += 1;
      const subscribed = libp2p.services.pubsub.getSubscribers(heartbeatTopic).some((subscriber) => subscriber.equals(peerId));
      log.warn({ member: name, peerId: key, silentMs: Math.round(silentMs), subscribed }, 'peer connected but silent; reconnecting');
      void this.#reconnect(peerId, name);
    }
    for (const [key, pace] of this.#reconnectAt) if (nowMs - pace.atMs > reconnectBackoffMsMax * 2) this.#reconnectAt.delete(key);
  }

  /** Whether the peer's backoff allows a reconnect now; if so, starts its next backoff. */
  #due(key: string, nowMs: number): boolean {
    const pace = this.#reconnectAt.get(key) ?? { atMs: 0, backoffMs: reconnectBackoffMsMin };
    if (nowMs < pace.atMs) return false;
    this.#reconnectAt.set(key, { atMs: nowMs + pace.backoffMs, backoffMs: Math.min(pace.backoffMs * 2, reconnectBackoffMsMax) });
    return true;
  }

  async #reconnect(peerId: PeerId, name: string): Promise<void> {
    const { config, libp2p, log } = this.#components;
    try {
      await libp2p.hangUp(peerId);
      await libp2p.dial(peerId, { signal: AbortSignal.timeout(config.membership.deadMs) });
    } catch (error) {
      log.info({ member: name, err: (error as Error).message }, 'redialing a silent peer failed; the bootstrap dialer and transport retry');
    }
  }
}
