/**
 * An intruder for tests: a libp2p peer built from the project's own packages that holds the
 * cluster's private-network key (so it can connect) but was never admitted. It speaks the cluster's
 * protocols directly: gossip heartbeats under any name, Raft frames claiming any sender, proposals.
 */
import { readFile } from 'node:fs/promises';
import { noise } from '@chainsafe/libp2p-noise';
import { yamux } from '@chainsafe/libp2p-yamux';
import { generateKeyPair } from '@libp2p/crypto/keys';
import { gossipsub, type GossipSub } from '@libp2p/gossipsub';
import { identify } from '@libp2p/identify';
import type { Libp2p, Stream } from '@libp2p/interface';
import { peerIdFromString } from '@libp2p/peer-id';
import { preSharedKey } from '@libp2p/pnet';
import { tcp } from '@libp2p/tcp';
import { LengthPrefixedDecoder, lpStream, type LengthPrefixedStream } from '@libp2p/utils';
import { multiaddr } from '@multiformats/multiaddr';
import { encode } from 'cborg';
import { createLibp2p } from 'libp2p';
import { encodeHeartbeat, heartbeatTopic, raftProtocol } from '../../node/cluster/host/index.ts';
import { proposeProtocol } from '../../node/cluster/replicated.ts';

export interface IntruderTarget {
  name: string;
  peerId: string;
  /** The node's libp2p listen address, without /p2p/. */
  address: string;
}

export interface Intruder {
  readonly peerId: string;
  /** Raft frames any node sent to the intruder (the log it should never get). */
  readonly raftFramesReceived: number;
  /** Sends one Raft message (any claimed `from`) on a Raft stream to `target`. */
  sendRaft(target: IntruderTarget, message: Record<string, unknown>): Promise<void>;
  /** A proposal over /dcas/propose/1.0.0; returns the response's status byte and text. */
  propose(target: IntruderTarget, command: Record<string, unknown>): Promise<{ ok: boolean; text: string }>;
  /** Publishes one gossip heartbeat (signed by the intruder) claiming `name` and `role`. */
  announce(name: string, role: 'voter' | 'worker', gateway: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startIntruder(pskFile: string, targets: readonly IntruderTarget[]): Promise<Intruder> {
  const libp2p: Libp2p<{ pubsub: GossipSub }> = await createLibp2p({
    privateKey: await generateKeyPair('Ed25519'),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: preSharedKey({ psk: await readFile(pskFile) }),
    services: { identify: identify(), pubsub: gossipsub({ allowPublishToZeroTopicPeers: true }) },
  });
  let raftFramesReceived = 0;
  await libp2p.handle(raftProtocol, async (stream: Stream) => {
    const decoder = new LengthPrefixedDecoder();
    try {
      for await (const chunk of stream) for (const _frame of decoder.decode(chunk)) raftFramesReceived += 1;
    } catch {
      // The node closed the stream; whatever arrived is counted.
    }
  });
  libp2p.services.pubsub.subscribe(heartbeatTopic);
  for (const target of targets) await libp2p.dial(multiaddr(`${target.address}/p2p/${target.peerId}`));
  const raftStreams = new Map<string, LengthPrefixedStream<Stream>>();
  const startedAt = Date.now();
  let seq = 0;

  async function raftStream(target: IntruderTarget): Promise<LengthPrefixedStream<Stream>> {
    let stream = raftStreams.get(target.name);
    if (stream === undefined) {
      stream = lpStream(await libp2p.dialProtocol(peerIdFromString(target.peerId), raftProtocol));
      raftStreams.set(target.name, stream);
    }
    return stream;
  }

  return {
    peerId: libp2p.peerId.toString(),
    get raftFramesReceived() {
      return raftFramesReceived;
    },
    async sendRaft(target, message) {
      await (await raftStream(target)).write(encode(message));
    },
    async propose(target, command) {
      const stream = await libp2p.dialProtocol(peerIdFromString(target.peerId), proposeProtocol);
      const framed = lpStream(stream);
      await framed.write(encode({ command, timeoutMs: 5_000 }));
      const response = (await framed.read({ signal: AbortSignal.timeout(10_000) })).subarray();
      await stream.close().catch(() => {});
      return { ok: response[0] === 0, text: new TextDecoder().decode(response.subarray(1)) };
    },
    async announce(name, role, gateway) {
      seq += 1;
      const heartbeat = encodeHeartbeat({
        name,
        peerId: libp2p.peerId.toString(),
        role,
        gateway,
        addresses: libp2p.getMultiaddrs().map(String),
        load: { workers: 64, inFlight: 0, queue: 0 },
        raft: undefined,
        seq,
        startedAt,
      });
      await libp2p.services.pubsub.publish(heartbeatTopic, heartbeat);
    },
    async stop() {
      await libp2p.stop();
    },
  };
}
