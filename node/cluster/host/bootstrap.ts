/**
 * Keeps this node connected to its bootstrap peers. Each address is checked every tick; one with
 * no live connection is dialed again after a backoff that doubles per failure (with jitter, so a
 * restarted cluster does not redial in lockstep), up to backoffMsMax.
 *
 * Addresses may lack a /p2p/ peer id: the id is learned from the first successful dial and then
 * used to tell whether the peer is still connected.
 */

import { performance } from 'node:perf_hooks';
import { multiaddr } from '@multiformats/multiaddr';
import type { Multiaddr } from '@multiformats/multiaddr';
import type { Libp2p, PeerId } from '@libp2p/interface';
import type { Logger } from 'pino';

export interface BootstrapLimits {
  tickMs: number;
  dialTimeoutMs: number;
  backoffMsMin: number;
  backoffMsMax: number;
}

export const defaultBootstrapLimits: BootstrapLimits = {
  tickMs: 250,
  dialTimeoutMs: 3000,
  backoffMsMin: 250,
  backoffMsMax: 5000,
};

export interface BootstrapComponents {
  libp2p: Libp2p;
  addresses: string[];
  logger: Logger;
  limits?: Partial<BootstrapLimits>;
}

export interface BootstrapDialer {
  start(): void;
  stop(): void;
}

interface Target {
  address: Multiaddr;
  peerId: PeerId | undefined;
  dialing: boolean;
  connected: boolean;
  failures: number;
  nextDialMs: number;
  backoffMs: number;
  /** The address turned out to be this node's own. */
  self: boolean;
}

export function createBootstrapDialer(components: BootstrapComponents): BootstrapDialer {
  const { libp2p } = components;
  const limits: BootstrapLimits = { ...defaultBootstrapLimits, ...components.limits };
  const log = components.logger.child({ room: 'bootstrap' });
  const targets: Target[] = components.addresses.map((text) => ({
    address: multiaddr(text),
    peerId: undefined,
    dialing: false,
    connected: false,
    failures: 0,
    nextDialMs: 0,
    backoffMs: limits.backoffMsMin,
    self: false,
  }));
  let timer: NodeJS.Timeout | undefined;
  let running = false;

  function tick() {
    const nowMs = performance.now();
    for (const target of targets) {
      if (target.self || target.dialing) continue;
      const connected = target.peerId !== undefined && libp2p.getConnections(target.peerId).length > 0;
      if (connected) continue;
      if (target.connected) {
        target.connected = false;
        log.info({ address: target.address.toString() }, 'lost bootstrap peer; redialing');
      }
      if (nowMs >= target.nextDialMs) void dial(target);
    }
  }

  async function dial(target: Target) {
    target.dialing = true;
    try {
      const connection = await libp2p.dial(target.address, { signal: AbortSignal.timeout(limits.dialTimeoutMs) });
      if (!running) return;
      if (connection.remotePeer.equals(libp2p.peerId)) {
        target.self = true;
        return;
      }
      target.peerId = connection.remotePeer;
      target.connected = true;
      target.failures = 0;
      target.backoffMs = limits.backoffMsMin;
      log.info({ address: target.address.toString(), peerId: target.peerId.toString() }, 'connected to bootstrap peer');
    } catch (error) {
      if (!running) return;
      target.failures += 1;
      // Log the first failure and then every tenth, so a peer that is down does not flood the log.
      if (target.failures === 1 || target.failures % 10 === 0) {
        log.info({ address: target.address.toString(), failures: target.failures, err: (error as Error).message }, 'bootstrap dial failed');
      }
      const jitter = 0.5 + Math.random() * 0.5;
      target.nextDialMs = performance.now() + target.backoffMs * jitter;
      target.backoffMs = Math.min(target.backoffMs * 2, limits.backoffMsMax);
    } finally {
      target.dialing = false;
    }
  }

  return {
    start() {
      running = true;
      const own = new Set(libp2p.getMultiaddrs().map((address) => address.decapsulateCode(421).toString()));
      for (const target of targets) if (own.has(target.address.toString())) target.self = true;
      tick();
      timer = setInterval(tick, limits.tickMs);
    },
    stop() {
      running = false;
      clearInterval(timer);
      timer = undefined;
    },
  };
}
