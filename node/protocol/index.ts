/**
 * The protocol room: the WebSocket protocol, version 1, the wire contract shared by the gateway and the
 * client library (node/client). It is a room of its own so the client loads it without the gateway's
 * server. Types and constants, and one piece of pure behaviour both sides share: the upload credit
 * window (`credit.ts`). docs/PROTOCOL.md is the specification these shapes follow.
 *
 * Control messages are JSON objects in text frames, each with a `type`; file bytes travel in binary
 * frames. A request may carry an `id` (a string or integer the client picks); every direct reply and
 * every error about that request echoes it.
 */
import type { JobMode, JobView } from '../jobs/index.ts';

export { CreditReceiver, CreditSender, type FrameVerdict } from './credit.ts';

export const protocolVersion = 1;
export const protocolVersionsSupported: readonly number[] = [protocolVersion];
/** The path of the WebSocket endpoint on a gateway's HTTP port. */
export const webSocketPath = '/ws';

/** Job ids as they may appear in a request or a URL path: no separators, no dots, bounded. */
export const jobIdPattern = /^[A-Za-z0-9_-]{1,64}$/;

export const errorCodes = [
  'AUTH',
  'BAD_MESSAGE',
  'UNSUPPORTED_VERSION',
  'OUT_OF_ORDER',
  'NOT_FOUND',
  'FLOW_CONTROL',
  'FRAME_TOO_LARGE',
  'BUSY',
  'TOO_LARGE',
  'NOT_READY',
  'BAD_INPUT',
  'UNAVAILABLE',
  'INSUFFICIENT_STORAGE',
  'CONFLICT',
  'TIMEOUT',
  'CORRUPT',
  'INTERNAL',
] as const;
export type ErrorCode = (typeof errorCodes)[number];

/** WebSocket close codes the gateway uses (RFC 6455 section 7.4.1). */
export const closeCodes = {
  normal: 1000,
  goingAway: 1001,
  policyViolation: 1008,
  messageTooBig: 1009,
  internalError: 1011,
  tryAgainLater: 1013,
} as const;

export type RequestId = string | number;

/** What the welcome tells a client about this node's limits, so a well-behaved client never hits one. */
export interface ProtocolLimits {
  /** Largest frame, binary or text, the node accepts; a larger one closes the connection with 1009. */
  frameBytesMax: number;
  /** Largest text (control) frame the node accepts. */
  controlBytesMax: number;
  /** Upload credit at the start of an upload, and the most bytes the node holds unwritten for it. */
  uploadWindowBytes: number;
  /** Concurrent uploads on this node, over all connections. */
  uploadsMax: number;
  /** Jobs one connection may watch at a time. */
  watchesMax: number;
  /** The node pings every this many ms; a connection that misses a pong is dropped. */
  heartbeatMs: number;
  /** An upload that receives nothing for this long fails with TIMEOUT. */
  uploadIdleMs: number;
}

// Client → server.
export interface HelloMessage {
  type: 'hello';
  id?: RequestId;
  version: number;
  token?: string;
}
export interface UploadMessage {
  type: 'upload';
  id?: RequestId;
  fileName: string;
  mode: JobMode;
  chunkSize?: number;
  size?: number;
  /** "NAME[:LEVEL]" from the codec registry, e.g. "zstd:9" (mode "compress"); default huffman, or the format's codec. */
  codec?: string;
  /** dcz (default), zst, gz, xz or bz2 (mode "compress"); a standard format implies its codec. */
  format?: string;
  /** Mode "images" (the upload is a tar of images): the image mode, quality range and metadata stripping. */
  image?: { mode: string; quality?: string; strip?: boolean };
}
export interface UploadEndMessage {
  type: 'upload-end';
  id?: RequestId;
  jobId: string;
}
export interface UploadAbortMessage {
  type: 'upload-abort';
  id?: RequestId;
  jobId: string;
  reason?: string;
}
export interface WatchMessage {
  type: 'watch';
  id?: RequestId;
  jobId: string;
}
export interface UnwatchMessage {
  type: 'unwatch';
  id?: RequestId;
  /** Without a job id: every watch of this connection. */
  jobId?: string;
}
export interface StatusMessage {
  type: 'status';
  id?: RequestId;
  jobId: string;
}
export interface JobsMessage {
  type: 'jobs';
  id?: RequestId;
  limit?: number;
}
export interface DownloadMessage {
  type: 'download';
  id?: RequestId;
  jobId: string;
  compressed: boolean;
}
export interface DownloadCancelMessage {
  type: 'download-cancel';
  id?: RequestId;
  jobId: string;
}
/** Removes a job and its blobs; a job being coded or merged is cancelled (docs/PROTOCOL.md). */
export interface DeleteMessage {
  type: 'delete';
  id?: RequestId;
  jobId: string;
}
export type ClientMessage =
  | HelloMessage
  | UploadMessage
  | UploadEndMessage
  | UploadAbortMessage
  | WatchMessage
  | UnwatchMessage
  | StatusMessage
  | JobsMessage
  | DownloadMessage
  | DownloadCancelMessage
  | DeleteMessage;

// Server → client.
export interface WelcomeMessage {
  type: 'welcome';
  version: number;
  node: string;
  /** "token": the hello's token was checked; "none": this node has no token configured. */
  auth: 'token' | 'none';
  limits: ProtocolLimits;
}
export interface UploadAcceptedMessage {
  type: 'upload-accepted';
  id?: RequestId;
  jobId: string;
  /** Bytes the client may send now. */
  credit: number;
}
/**
 * The upload waits for one of the node's upload slots: `place` 1 is next. Sent when it joins the queue
 * and again each time it moves up; `upload-accepted` (or an error, BUSY when it waited too long) ends it.
 */
export interface QueuedMessage {
  type: 'queued';
  id?: RequestId;
  place: number;
}
export interface CreditMessage {
  type: 'credit';
  jobId: string;
  /** Further bytes the client may send, on top of what it was granted before. */
  bytes: number;
}
export interface UploadDoneMessage {
  type: 'upload-done';
  id?: RequestId;
  job: JobView;
}
export interface UploadAbortedMessage {
  type: 'upload-aborted';
  id?: RequestId;
  jobId: string;
}
export interface JobMessage {
  type: 'job';
  id?: RequestId;
  job: JobView;
}
export interface JobsListMessage {
  type: 'jobs';
  id?: RequestId;
  jobs: JobView[];
}
export interface UnwatchedMessage {
  type: 'unwatched';
  id?: RequestId;
  jobIds: string[];
}
export interface DownloadStartMessage {
  type: 'download-start';
  id?: RequestId;
  jobId: string;
  compressed: boolean;
  size: number;
  fileName: string;
  /** SHA-256 (hex) of the original file, whichever form is streamed. */
  sha256: string | null;
}
export interface DownloadEndMessage {
  type: 'download-end';
  id?: RequestId;
  jobId: string;
  bytes: number;
  cancelled: boolean;
}
export interface DeletedMessage {
  type: 'deleted';
  id?: RequestId;
  jobId: string;
  /** The state the job was in. */
  state: JobView['state'];
  /** true when the job was still being coded or merged and was stopped. */
  cancelled: boolean;
}
export interface ErrorMessage {
  type: 'error';
  code: ErrorCode;
  message: string;
  id?: RequestId;
  jobId?: string;
  /** With BUSY (and where the node can tell): milliseconds to wait before trying again. */
  retryAfterMs?: number;
}
export type ServerMessage =
  | WelcomeMessage
  | UploadAcceptedMessage
  | QueuedMessage
  | CreditMessage
  | UploadDoneMessage
  | UploadAbortedMessage
  | JobMessage
  | JobsListMessage
  | UnwatchedMessage
  | DownloadStartMessage
  | DownloadEndMessage
  | DeletedMessage
  | ErrorMessage;
