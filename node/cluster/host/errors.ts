/**
 * Typed errors of the host room (libp2p host, membership, transport).
 */

import { CodedError } from '../../errors.ts';

export type HostErrorCode =
  | 'IDENTITY' // the peer key in the data folder cannot be read or is not a key
  | 'PSK' // the private network key file cannot be read
  | 'TRUST' // this node's peer id is not the one pinned for its name, or known-peers.json is broken
  | 'NOT_STARTED' // an operation that needs a running host was called before start or after stop
  | 'UNKNOWN_MEMBER' // no heartbeat has named this member yet
  | 'MEMBER_DEAD' // the member stopped sending heartbeats
  | 'SELF' // a message addressed to this node itself: a caller bug
  | 'UNREACHABLE' // dialing the member or opening a stream failed
  | 'TIMEOUT' // a request got no response in time
  | 'ABORTED' // the caller gave up on a request (e.g. the member it waited on is no longer the leader)
  | 'FRAME_TOO_LARGE' // a payload exceeds the frame limit
  | 'BAD_PROTOCOL' // a protocol id outside /dcas/
  | 'NO_HANDLER' // the remote has no handler for the protocol
  | 'REMOTE_ERROR'; // the remote handler threw; the message is the remote's

export class HostError extends CodedError<HostErrorCode> {}
