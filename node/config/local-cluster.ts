/**
 * Configs for a local N-node cluster on loopback, as `dcas cluster up` starts it. They go through
 * the same schema as files do, so defaults and rules are the same.
 *
 * Layout for basePort B: node i (1-based) is named "node<i>", serves its gateway on B+i and libp2p
 * on B+100+i, keeps its data in <dataDir>/node<i>, and all nodes share the blob folder
 * <dataDir>/blobs. The first min(N, 5) nodes are Raft voters; the rest are workers. Every node
 * bootstraps from the voters' libp2p addresses.
 */

import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from './load.ts';
import type { NodeConfig, NodeConfigInput } from './schema.ts';

export interface LocalClusterOptions {
  /** How many nodes, 1 to 99. */
  nodes: number;
  /** The folder that holds each node's data folder and the shared blob folder. */
  dataDir: string;
  /** Gateway ports are basePort+i, libp2p ports basePort+100+i. Default 7700. */
  basePort?: number;
  /** A pnet key file shared by all nodes; without one the local network is unprotected. */
  pskFile?: string;
  /** Optional client token for every node's gateway. */
  token?: string;
  /** Overrides applied to every node (e.g. faster membership timings in tests). */
  overrides?: Pick<NodeConfigInput, 'membership' | 'raft' | 'workers' | 'codecMemoryBytesMax' | 'jobs'>;
}

export const localClusterNodesMax = 99;
export const localClusterVotersMax = 5;

export function localClusterConfigs(options: LocalClusterOptions): NodeConfig[] {
  const basePort = options.basePort ?? 7700;
  if (!Number.isInteger(options.nodes) || options.nodes < 1 || options.nodes > localClusterNodesMax) {
    throw new RangeError(`local cluster: nodes: expected an integer from 1 to ${localClusterNodesMax}, got ${options.nodes}`);
  }
  if (!Number.isInteger(basePort) || basePort < 1 || basePort + 100 + options.nodes > 65535) {
    throw new RangeError(`local cluster: basePort: expected an integer from 1 to ${65535 - 100 - options.nodes}, got ${basePort}`);
  }
  const names = Array.from({ length: options.nodes }, (_, index) => `node${index + 1}`);
  const voters = names.slice(0, localClusterVotersMax);
  const p2pAddress = (index: number) => `/ip4/127.0.0.1/tcp/${basePort + 100 + index + 1}`;
  // Every node gets a thread per core: a gateway codes the chunks it receives itself (jobs.codeAtGateway),
  // so the node taking an upload is the busy one, and a share of the cores would leave it one thread of
  // two on a 2-core machine with 3 nodes. The threads of idle nodes cost memory, not CPU.
  const workers = availableParallelism();

  return names.map((name, index) => {
    const input: NodeConfigInput = {
      name,
      listen: [p2pAddress(index)],
      bootstrap: voters.filter((voter) => voter !== name).map((voter) => p2pAddress(names.indexOf(voter))),
      dataDir: join(options.dataDir, name),
      role: voters.includes(name) ? 'voter' : 'worker',
      voters,
      gateway: { host: '127.0.0.1', port: basePort + index + 1, allowedHosts: [], cors: { origins: [] } },
      workers,
      ...options.overrides,
      blobStore: { kind: 'folder', path: join(options.dataDir, 'blobs') },
    };
    if (options.pskFile !== undefined) input.pskFile = options.pskFile;
    if (options.token !== undefined) input.token = options.token;
    return parseConfig(input, { source: `<local cluster ${name}>`, baseDir: process.cwd() });
  });
}
