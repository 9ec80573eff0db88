/**
 * The runtime room's door: one node started from its configuration (every room wired together), its status
 * views, the memory governor, and the helpers that write owner-only files for keys and tokens.
 *
 * The CLI loads this door for every command (token files, the governor on long file commands), and a
 * node's wiring pulls in libp2p, LevelDB and the gateway (hundreds of milliseconds). So `startNode` loads
 * `node.ts` when it is first called instead of when the door is imported; the types cost nothing.
 */
import type { Logger } from 'pino';
import type { NodeConfig } from '../config/index.ts';
import type { NodeRuntime } from './node.ts';

export type { ClusterStatusView, MemberStatusView, NodeRuntime } from './node.ts';
export { CollectionPolicy, startMemoryGovernor, type MemoryGovernor, type MemoryGovernorOptions } from './memory.ts';
export { privateFileMode, privateFolder, privateFolderMode, writePrivateFile } from './private-files.ts';

/** Starts one node: see `node.ts`. */
export async function startNode(config: NodeConfig, logger: Logger): Promise<NodeRuntime> {
  return (await import('./node.ts')).startNode(config, logger);
}
