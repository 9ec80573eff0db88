/**
 * Which peers are members: a binding of node names to libp2p peer ids that this node trusts.
 *
 * A name binds to a peer id in one of three ways, and once bound it is never re-bound while the
 * node runs; a different peer id claiming the name is refused:
 *  - pinned: `peers` in the config (what `dcas cluster up` writes). Always wins.
 *  - joined: a worker not in `peers` proves it holds the cluster's `joinToken` with an HMAC over its
 *    name and peer id, carried in its (signed) heartbeat; the proof is useless to any other peer.
 *  - first use: a config without `peers` trusts the first peer id heard using each name (with a
 *    loud warning), as SSH trusts a host key it has not seen before.
 * Joined and first-use bindings are kept in <dataDir>/known-peers.json, so a restart does not open
 * the name to whoever speaks first. Deleting a line there (or pinning the name) is the explicit
 * admin action that re-binds a name.
 */

import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as z from 'zod';
import type { Logger } from 'pino';
import type { NodeConfig, NodeRole } from '../../config/index.ts';
import { HostError } from './errors.ts';

export const knownPeersFileName = 'known-peers.json';
/** Bindings learned at runtime (joined or first use); beyond it new names are refused. */
export const learnedPeersMax = 256;
const joinProofContext = 'dcas-join/1';

export type TrustMode = 'pinned' | 'first-use';

export interface PeerClaim {
  name: string;
  peerId: string;
  role: NodeRole;
  /** The join proof (hex HMAC-SHA256), when the peer sent one. */
  join: string | undefined;
}

export interface Trust {
  readonly mode: TrustMode;
  /** Binds the claim if it may be, and returns undefined when it is admitted; else why not. */
  admit(claim: PeerClaim): string | undefined;
  /** The admitted name bound to this peer id, if any. */
  nameOf(peerId: string): string | undefined;
  /** The join proof this node sends in its heartbeats, when it is not pinned and has a join token. */
  ownJoinProof(peerId: string): string | undefined;
  /** Waits until learned bindings are on disk (for tests and shutdown). */
  flush(): Promise<void>;
}

const knownPeersSchema = z.record(z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/), z.string().min(1).max(128));

export function joinProof(joinToken: string, name: string, peerId: string): string {
  return createHmac('sha256', joinToken).update(`${joinProofContext}\n${name}\n${peerId}`).digest('hex');
}

export function createTrust(config: NodeConfig, logger: Logger): Trust {
  const log = logger.child({ room: 'trust' });
  const pinned = new Map(Object.entries(config.peers ?? {}));
  const learned = loadKnownPeers(config.dataDir, log);
  const byName = new Map<string, string>([...learned, ...pinned]);
  const byPeerId = new Map<string, string>([...byName].map(([name, peerId]) => [peerId, name]));
  const mode: TrustMode = config.peers === undefined ? 'first-use' : 'pinned';
  let writing: Promise<void> = Promise.resolve();

  if (mode === 'first-use') {
    log.warn(
      { knownPeers: join(config.dataDir, knownPeersFileName) },
      'no pinned peers in the config: trusting each name\'s first peer id (trust on first use); pin peers (dcas cluster up does) so no keyed peer can take a name first',
    );
  }

  function admit(claim: PeerClaim): string | undefined {
    const isVoter = config.voters.includes(claim.name);
    // A voter's name announcing role worker would be handed the log as a learner: never.
    if (isVoter && claim.role !== 'voter') return `"${claim.name}" is a voter but claims role "${claim.role}"`;
    const bound = byName.get(claim.name);
    if (bound === claim.peerId) return undefined;
    if (bound !== undefined) return `name "${claim.name}" is bound to another peer id (${bound})`;
    const other = byPeerId.get(claim.peerId);
    if (other !== undefined) return `peer id already bound to "${other}"`;
    const refusal = newBindingRefusal(claim, isVoter);
    if (refusal !== undefined) return refusal;
    bind(claim);
    return undefined;
  }

  function newBindingRefusal(claim: PeerClaim, isVoter: boolean): string | undefined {
    const proofGiven = claim.join !== undefined && config.joinToken !== undefined;
    const proofHolds = proofGiven && sameHex(claim.join!, joinProof(config.joinToken!, claim.name, claim.peerId));
    if (mode === 'pinned') {
      if (isVoter) return `voter "${claim.name}" is pinned to another peer id`;
      if (config.joinToken === undefined) return `"${claim.name}" is not in peers and this cluster has no joinToken`;
      if (!proofHolds) return `"${claim.name}" is not in peers and has no valid join proof`;
    } else if (!isVoter && config.joinToken !== undefined && !proofHolds) {
      return `worker "${claim.name}" has no valid join proof`;
    }
    if (learned.size >= learnedPeersMax) return `already ${learnedPeersMax} learned peers; pin this one in the config`;
    return undefined;
  }

  function bind(claim: PeerClaim): void {
    learned.set(claim.name, claim.peerId);
    byName.set(claim.name, claim.peerId);
    byPeerId.set(claim.peerId, claim.name);
    const how = mode === 'first-use' && claim.join === undefined ? 'on first use' : 'with a join proof';
    log.warn({ member: claim.name, peerId: claim.peerId, role: claim.role }, `bound a member name to a peer id ${how}`);
    const snapshot = JSON.stringify(Object.fromEntries(learned), null, 2);
    writing = writing.then(() => saveKnownPeers(config.dataDir, snapshot)).catch((error: unknown) => {
      log.error({ err: error }, 'could not save known peers; the binding holds only until restart');
    });
  }

  return {
    mode,
    admit,
    nameOf: (peerId) => byPeerId.get(peerId),
    ownJoinProof(peerId) {
      if (config.joinToken === undefined || pinned.get(config.name) === peerId) return undefined;
      return joinProof(config.joinToken, config.name, peerId);
    },
    flush: () => writing,
  };
}

function sameHex(a: string, b: string): boolean {
  const left = Buffer.from(a, 'utf8');
  const right = Buffer.from(b, 'utf8');
  return left.length === right.length && timingSafeEqual(left, right);
}

/** The learned bindings; a missing file is none, a broken one is refused loudly (never half-trusted). */
function loadKnownPeers(dataDir: string, log: Logger): Map<string, string> {
  const path = join(dataDir, knownPeersFileName);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw new HostError('TRUST', `${path}: cannot read known peers: ${(error as Error).message}`);
  }
  let parsed: z.infer<typeof knownPeersSchema>;
  try {
    parsed = knownPeersSchema.parse(JSON.parse(text));
  } catch (error) {
    throw new HostError('TRUST', `${path}: not a map of node names to peer ids: ${(error as Error).message.split('\n')[0]}`);
  }
  const entries = Object.entries(parsed).slice(0, learnedPeersMax);
  log.info({ knownPeers: entries.length }, 'loaded known peers');
  return new Map(entries);
}

async function saveKnownPeers(dataDir: string, text: string): Promise<void> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, knownPeersFileName);
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, `${text}\n`, { mode: 0o600 });
  await rename(temporary, path);
}
