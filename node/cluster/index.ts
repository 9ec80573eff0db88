/**
 * The cluster room's door: the libp2p host and its membership, the replicated state (Raft over the host,
 * applied to the LevelDB state store), and the seeded random generator the simulations share. Other rooms
 * import only this file; `host/`, `raft/` and `sim/` are inside the room.
 */
export { createHost, peerIdOfDataDir, pinPeers, type HostWithStats, type Member } from './host/index.ts';
export {
  createReplicatedState,
  isNoSpaceError,
  ProposalError,
  type ProposalErrorCode,
  type ReplicatedState,
} from './replicated.ts';
export { SeededRandom } from './sim/index.ts';
