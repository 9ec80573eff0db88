/**
 * The node's libp2p identity: an Ed25519 key created on first start and kept in the data folder,
 * so the peer id survives restarts. The file holds the key protobuf-marshalled (libp2p's own format).
 */

import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys';
import type { PrivateKey } from '@libp2p/interface';
import { peerIdFromPrivateKey } from '@libp2p/peer-id';
import type { NodeConfig } from '../../config/index.ts';
import { HostError } from './errors.ts';

export const peerKeyFileName = 'peer.key';

/** Reads <dataDir>/peer.key, or creates it (mode 0600, written atomically) when absent. */
export async function loadOrCreatePrivateKey(dataDir: string): Promise<{ privateKey: PrivateKey; created: boolean }> {
  const path = join(dataDir, peerKeyFileName);
  let bytes: Uint8Array | undefined;
  try {
    bytes = await readFile(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new HostError('IDENTITY', `${path}: cannot read the peer key: ${(error as Error).message}`);
    }
  }
  if (bytes !== undefined) {
    try {
      return { privateKey: privateKeyFromProtobuf(bytes), created: false };
    } catch (error) {
      throw new HostError('IDENTITY', `${path}: not a libp2p private key: ${(error as Error).message}`);
    }
  }

  const privateKey = await generateKeyPair('Ed25519');
  const encoded = privateKeyToProtobuf(privateKey);
  // Read back what will be written before trusting it with the node's identity.
  if (!privateKeyFromProtobuf(encoded).equals(privateKey)) throw new Error('peer key does not round-trip');
  await mkdir(dataDir, { recursive: true });
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, encoded, { mode: 0o600 });
  await rename(temporary, path);
  return { privateKey, created: true };
}

/** The peer id of the identity in `dataDir`, creating the identity if there is none yet. */
export async function peerIdOfDataDir(dataDir: string): Promise<string> {
  const { privateKey } = await loadOrCreatePrivateKey(dataDir);
  return peerIdFromPrivateKey(privateKey).toString();
}

/**
 * Creates (or reads) every node's identity up front and pins all of them in every config, so a
 * local cluster starts with each name bound to its peer id (no trust on first use).
 */
export async function pinPeers(configs: readonly NodeConfig[]): Promise<NodeConfig[]> {
  const peers: Record<string, string> = {};
  for (const config of configs) peers[config.name] = await peerIdOfDataDir(config.dataDir);
  return configs.map((config) => ({ ...config, peers: { ...peers } }));
}
