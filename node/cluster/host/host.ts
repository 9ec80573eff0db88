/**
 * The node's libp2p host: TCP, a private network (pnet PSK) under Noise encryption and yamux
 * multiplexing, identify, and gossipsub; with the bootstrap dialer, gossip membership and the
 * point-to-point transport on top. Nothing happens until start(); stop() undoes it all.
 */

import { readFile } from 'node:fs/promises';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { gossipsub } from '@libp2p/gossipsub';
import type { GossipSub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import type { Identify } from '@libp2p/identify';
import type { Libp2p, PrivateKey } from '@libp2p/interface';
import { preSharedKey } from '@libp2p/pnet';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import './xsalsa20-windowed.ts';
import './yamux-window.ts';
import { tcp } from '@libp2p/tcp';
import { createLibp2p } from 'libp2p';
import type { Libp2pOptions } from 'libp2p';
import type { Logger } from 'pino';
import type { NodeConfig } from '../../config/index.ts';
import { createBootstrapDialer } from './bootstrap.ts';
import type { BootstrapDialer, BootstrapLimits } from './bootstrap.ts';
import { HostError } from './errors.ts';
import { heartbeatBytesMax } from './heartbeat.ts';
import { loadOrCreatePrivateKey } from './identity.ts';
import { createMembership } from './membership.ts';
import type { Membership, MembershipStats } from './membership.ts';
import { createTrust } from './trust.ts';
import type { Trust } from './trust.ts';
import { createTransport } from './transport.ts';
import type { Transport, TransportLimits, TransportStats } from './transport.ts';
import type { Host, MemberEventType, MemberListener, MessageListener, RequestHandler, StatusProvider } from './types.ts';

export interface HostOptions {
  config: NodeConfig;
  logger: Logger;
  /** Transport limits (frame size, queues, timeouts); defaults suit a LAN cluster. */
  transportLimits?: Partial<TransportLimits>;
  bootstrapLimits?: Partial<BootstrapLimits>;
}

export interface HostWithStats extends Host {
  transportStats(): TransportStats;
  membershipStats(): MembershipStats;
  /** The libp2p node underneath, for diagnostics and tests (connections, streams). */
  libp2pNode(): Libp2p;
}

type Services = { identify: Identify; pubsub: GossipSub };

/** The largest gossipsub RPC accepted from a peer (many heartbeats and control lists together). */
export const gossipRpcBytesMax = Math.max(1024 * 1024, heartbeatBytesMax * 64);

interface Running {
  libp2p: Libp2p<Services>;
  membership: Membership;
  transport: Transport;
  bootstrap: BootstrapDialer;
}

export function createHost(options: HostOptions): HostWithStats {
  const node = new HostNode(options);
  return {
    name: options.config.name,
    get peerId() {
      return node.need('peerId').libp2p.peerId.toString();
    },
    start: () => node.start(),
    stop: () => node.stop(),
    addresses: () => node.addresses(),
    members: () => node.need('members').membership.members(),
    member: (name) => node.need('member').membership.member(name),
    on: (event, listener) => node.on(event, listener),
    setStatusProvider: (provider) => node.setStatusProvider(provider),
    announce: () => node.need('announce').membership.announce(),
    send: (toName, bytes) => node.send(toName, bytes),
    onMessage: (listener) => node.onMessage(listener),
    request: (toName, protocol, bytes, requestOptions) => node.need(`request to "${toName}"`).transport.request(toName, protocol, bytes, requestOptions),
    handle: (protocol, handler) => node.handle(protocol, handler),
    transportStats: () => node.need('transportStats').transport.stats(),
    membershipStats: () => node.need('membershipStats').membership.stats(),
    libp2pNode: () => node.need('libp2pNode').libp2p,
  };
}

/** A host's running parts, and what was registered on it before (or while) they run. */
class HostNode {
  readonly #options: HostOptions;
  readonly #config: NodeConfig;
  readonly #nodeLogger: Logger;
  readonly #log: Logger;
  // Listeners, handlers and the provider may be set before start; they are handed on at start.
  readonly #memberListeners: Array<[MemberEventType, MemberListener]> = [];
  readonly #messageListeners = new Set<MessageListener>();
  readonly #handlers = new Map<string, RequestHandler>();
  #statusProvider: StatusProvider = () => ({});
  #running: Running | undefined;
  #starting = false;

  constructor(options: HostOptions) {
    const { config } = options;
    this.#options = options;
    this.#config = config;
    // Every part logs with the node's name, so the logs of a local cluster in one process separate; a
    // logger that already carries it (`dcas node` binds it once) is not given it twice.
    this.#nodeLogger = options.logger.bindings().node === config.name ? options.logger : options.logger.child({ node: config.name });
    this.#log = this.#nodeLogger.child({ room: 'host' });
  }

  need(what: string): Running {
    if (this.#running === undefined) throw new HostError('NOT_STARTED', `${what}: host "${this.#config.name}" is not running`);
    return this.#running;
  }

  addresses(): string[] {
    return this.need('addresses').libp2p.getMultiaddrs().map(String);
  }

  // ---- Lifecycle ----

  async start(): Promise<void> {
    if (this.#running !== undefined || this.#starting) throw new HostError('NOT_STARTED', `host "${this.#config.name}" is already started`);
    this.#starting = true;
    let running: Running;
    try {
      running = this.#running = await this.#startParts();
    } finally {
      this.#starting = false;
    }
    this.#log.info({ peerId: running.libp2p.peerId.toString(), addresses: this.addresses() }, 'host started');
  }

  async #startParts(): Promise<Running> {
    const config = this.#config;
    const privateKey = await loadOwnKey(config, this.#log);
    const trust = createTrust(config, this.#nodeLogger);
    const libp2pOptions = libp2pOptionsFor(config, privateKey, trust);
    if (config.pskFile === undefined) {
      this.#log.warn('no pskFile: the libp2p network is open to any peer that can reach it');
    } else {
      libp2pOptions.connectionProtector = preSharedKey({ psk: await readPsk(config.pskFile) });
    }
    const libp2p = await createLibp2p(libp2pOptions);
    const { membership, transport, bootstrap } = this.#createParts(libp2p, trust);
    try {
      await transport.start();
      await membership.start();
      bootstrap.start();
    } catch (error) {
      await libp2p.stop();
      throw error;
    }
    return { libp2p, membership, transport, bootstrap };
  }

  /** Membership, transport and bootstrap dialer over `libp2p`, with what was registered before start. */
  #createParts(libp2p: Libp2p<Services>, trust: Trust): Omit<Running, 'libp2p'> {
    const config = this.#config;
    const membership = createMembership({ config, libp2p, trust, logger: this.#nodeLogger });
    membership.setStatusProvider(() => this.#statusProvider());
    for (const [event, listener] of this.#memberListeners) membership.on(event, listener);
    const transport = createTransport({
      libp2p,
      selfName: config.name,
      member: (name) => membership.member(name),
      nameOf: (peerId) => membership.nameOf(peerId),
      logger: this.#nodeLogger,
      limits: this.#options.transportLimits,
    });
    transport.onMessage((fromName, bytes) => this.#deliver(fromName, bytes));
    for (const [protocol, handler] of this.#handlers) transport.handle(protocol, handler);
    const bootstrap = createBootstrapDialer({ libp2p, addresses: config.bootstrap, logger: this.#nodeLogger, limits: this.#options.bootstrapLimits });
    return { membership, transport, bootstrap };
  }

  async stop(): Promise<void> {
    const parts = this.#running;
    if (parts === undefined) return;
    this.#running = undefined;
    parts.bootstrap.stop();
    await parts.membership.stop();
    await parts.transport.stop();
    await parts.libp2p.stop();
    this.#log.info('host stopped');
  }

  // ---- Registrations, kept across restarts ----

  on(event: MemberEventType, listener: MemberListener): () => void {
    const entry: [MemberEventType, MemberListener] = [event, listener];
    this.#memberListeners.push(entry);
    const unsubscribe = this.#running?.membership.on(event, listener);
    return () => {
      this.#memberListeners.splice(this.#memberListeners.indexOf(entry), 1);
      unsubscribe?.();
    };
  }

  setStatusProvider(provider: StatusProvider): void {
    this.#statusProvider = provider;
  }

  send(toName: string, bytes: Uint8Array): boolean {
    return this.#running === undefined ? false : this.#running.transport.send(toName, bytes);
  }

  onMessage(listener: MessageListener): () => void {
    this.#messageListeners.add(listener);
    return () => this.#messageListeners.delete(listener);
  }

  #deliver(fromName: string, bytes: Uint8Array): void {
    for (const listener of this.#messageListeners) {
      try {
        listener(fromName, bytes);
      } catch (error) {
        this.#log.error({ err: error, from: fromName }, 'message listener threw');
      }
    }
  }

  handle(protocol: string, handler: RequestHandler): void {
    if (this.#handlers.has(protocol)) throw new HostError('BAD_PROTOCOL', `protocol "${protocol}" already has a handler`);
    this.#running?.transport.handle(protocol, handler);
    this.#handlers.set(protocol, handler);
  }
}

/** This node's private key from its data folder (made on first start), checked against a pinned peer id. */
async function loadOwnKey(config: NodeConfig, log: Logger): Promise<PrivateKey> {
  const { privateKey, created } = await loadOrCreatePrivateKey(config.dataDir);
  if (created) log.info({ dataDir: config.dataDir }, 'created a new peer identity');
  const ownPeerId = peerIdFromPrivateKey(privateKey).toString();
  const pinnedPeerId = config.peers?.[config.name];
  if (pinnedPeerId !== undefined && pinnedPeerId !== ownPeerId) {
    throw new HostError('TRUST', `${config.source}: peers.${config.name} pins ${pinnedPeerId}, but the key in ${config.dataDir} is ${ownPeerId}`);
  }
  return privateKey;
}

/**
 * Gossipsub with no mesh: its defaults (D 6, Dlo 4, Dhi 12, Dlazy 6) are made for open networks where a
 * publisher reaches few peers. Here every member connects to every other and publishes to all of them
 * directly (floodPublish), so every copy a mesh sends on is one its receiver already has: at the
 * defaults, in a cluster of up to 7 every member's mesh held all the others and each heartbeat was sent
 * on again by every member that received it (a worker host's main thread then spent more time in socket
 * writes than in anything but its coding); a mesh of 3 still sent three copies on. A member that has no
 * connection to another yet (b and c that know only a's address) still hears it, through gossip's lazy
 * part: every second a member lists the messages it holds to Dlazy others, which ask for the ones they
 * lack, and then dial the member by the addresses in its heartbeat.
 * Measured on the scaling bench (4 worker hosts at 0.25 CPU, 3 voters at 0.2), three alternating pairs,
 * a mesh of 3, then none: a worker host's main thread over the coding phase 1.37-1.41 then 0.84-0.88
 * CPU-seconds, 1.30-1.46 then 1.10-1.14, 0.98-1.10 then 0.94-0.99; the phase 22.2 then 18.1 s, 22.1 then
 * 21.0, 18.5 then 19.0.
 */
const gossipMesh = { D: 0, Dlo: 0, Dhi: 0, Dout: 0, Dlazy: 3 };

/**
 * A message's publisher and sequence number, gossipsub's own message id under StrictSign, read from
 * the raw message so that a copy of a message already delivered is dropped before its signature is
 * checked again. Without it gossipsub checks every copy first: measured on an idle 5-node cluster,
 * 21-27 signature checks a second per node for 8 heartbeats a second from the others. Only messages
 * that passed the check enter the cache this id is looked up in, so a forged copy cannot shadow one.
 */
function publisherAndSequence({ from, seqno }: { from?: Uint8Array; seqno?: Uint8Array }): string {
  if (from === undefined || seqno === undefined) return '';
  return `${Buffer.from(from).toString('base64')}:${Buffer.from(seqno).toString('hex')}`;
}

/** TCP, Noise, yamux, identify and gossipsub tuned for a cluster of admitted members. */
function libp2pOptionsFor(config: NodeConfig, privateKey: PrivateKey, trust: Trust): Libp2pOptions<Services> {
  return {
    privateKey,
    addresses: { listen: config.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: {
      identify: identify(),
      pubsub: gossipsub({
        // The first heartbeats go out before any peer is connected; that is not an error.
        allowPublishToZeroTopicPeers: true,
        ...gossipMesh,
        fastMsgIdFn: publisherAndSequence,
        // This bounds one RPC, not one message: an IWANT answer carries every wanted message in
        // one RPC, and IHAVE lists piggyback up to 5000 ids. An RPC over the limit (it was 32 KiB,
        // two heartbeats) makes gossipsub drop the sender as if disconnected, and it never reopens
        // the streams while the connection lives: a second way to the stall of issue 16. Each
        // heartbeat is still checked against its own limit.
        maxInboundDataLength: gossipRpcBytesMax,
        scoreParams: {
          // gossipsub penalises every peer of an address shared by more than 10 peers
          // (surplus² × -5) and keeps a departed peer's score, address included, for an hour. On
          // one machine (or behind one NAT) the 14th peer id ever seen graylisted every member:
          // their heartbeats were ignored while their connections stayed up, the stall of issue 16.
          // Members here are authenticated (pnet key, then admission), so sharing an address is
          // normal, not a Sybil sign.
          IPColocationFactorWeight: 0,
          // Admitted members get a small positive score so stray behaviour penalties (a broken
          // IWANT promise under load) never push them towards the gossip thresholds.
          appSpecificScore: (peerId: string) => (trust.nameOf(peerId) === undefined ? 0 : 1),
        },
      }),
    },
  };
}

/** The pnet key file as @libp2p/pnet expects it: the three lines, without a trailing newline. */
async function readPsk(path: string): Promise<Uint8Array> {
  try {
    const text = await readFile(path, 'utf8');
    return new TextEncoder().encode(text.replace(/\r\n/g, '\n').trim());
  } catch (error) {
    throw new HostError('PSK', `${path}: cannot read the private network key: ${(error as Error).message}`);
  }
}
