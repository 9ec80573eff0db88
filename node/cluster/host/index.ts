/**
 * The host room's door: the libp2p host of a node, gossip membership with failure detection, and
 * name-addressed messages and requests between members.
 */

export { createHost } from './host.ts';
export type { HostOptions, HostWithStats } from './host.ts';
export { HostError } from './errors.ts';
export type { HostErrorCode } from './errors.ts';
export { raftProtocol, defaultTransportLimits } from './transport.ts';
export type { TransportLimits, TransportStats } from './transport.ts';
export { defaultBootstrapLimits } from './bootstrap.ts';
export type { BootstrapLimits } from './bootstrap.ts';
export { encodeHeartbeat, heartbeatTopic } from './heartbeat.ts';
export { heartbeatProtocol } from './direct-heartbeats.ts';
export type { Heartbeat as HeartbeatFrame } from './heartbeat.ts';
export { createMemberView } from './member-view.ts';
export type { MemberEvent, MemberView, MemberViewNotes, MemberTimings } from './member-view.ts';
export { peerKeyFileName, peerIdOfDataDir, pinPeers } from './identity.ts';
export { joinProof, knownPeersFileName } from './trust.ts';
export type { TrustMode } from './trust.ts';
export type { MembershipStats } from './membership.ts';
export type {
  Host,
  LoadInfo,
  Member,
  MemberEventType,
  MemberListener,
  MemberStatus,
  MessageListener,
  RaftInfo,
  RequestHandler,
  RequestOptions,
  StatusProvider,
  StatusReport,
} from './types.ts';
