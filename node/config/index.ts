/**
 * The config room's door: a node's settings, validated once at the edge.
 */

export { ConfigError } from './errors.ts';
export type { ConfigErrorCode } from './errors.ts';
export { loadConfig, parseConfig, configFileBytesMax } from './load.ts';
export type { ParseOptions } from './load.ts';
export { localClusterConfigs, localClusterNodesMax, localClusterVotersMax } from './local-cluster.ts';
export type { LocalClusterOptions } from './local-cluster.ts';
export { formatPsk, pskProblem } from './psk.ts';
export { configSchema } from './schema.ts';
export type { BlobStoreConfig, JobsConfig, NodeConfig, NodeConfigInput, NodeRole } from './schema.ts';
