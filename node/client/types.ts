/**
 * The client library's public shapes: what a program passes to `connect` and gets back. The behaviour
 * behind them is split by concern: connection.ts (handshake, heartbeat, deadline, close), requests.ts
 * (requests and their replies), uploads.ts, watches.ts, downloads.ts and download-stream.ts.
 */
import type { JobMode, JobView } from '../jobs/index.ts';
import type { ProtocolLimits } from '../protocol/index.ts';
import type { RetryOptions } from './retry.ts';

export interface ConnectOptions {
  /** A node's gateway: http://host:port, https://…, ws://host:port or ws://host:port/ws. */
  server: string;
  /** Other gateways of the same cluster, tried in order when `server` cannot be reached or is full. */
  fallbackServers?: readonly string[];
  /**
   * An overall deadline (epoch ms) for everything this client does: connecting, every request, watches
   * and transfers. When it passes, whatever is still waiting rejects with TIMEOUT and the connection
   * closes. Without it, a call can wait as long as the node keeps the connection alive.
   */
  deadlineAtMs?: number;
  token?: string;
  /** Handshake and hello together. Default 10 s. */
  connectTimeoutMs?: number;
  /** How long a request waits for its reply (status, jobs, upload start, download start). Default 30 s. */
  requestTimeoutMs?: number;
  /**
   * BUSY and UNAVAILABLE (connecting, or starting an upload) are retried with exponential backoff and
   * jitter, never sooner than the node's retry-after, until `deadlineAtMs` (or a few attempts without
   * one). false: fail at the first refusal.
   */
  retry?: RetryOptions | false;
}

export interface UploadProgress {
  jobId: string;
  /** Bytes sent so far. */
  bytes: number;
  /** The upload's size when known. */
  totalBytes: number | null;
}

export interface UploadOptions {
  /** The name the job records; default: the source path's base name (required for streams). */
  fileName?: string;
  /** "compress" (default) or "decompress" (the source is a .dcz). */
  mode?: JobMode;
  chunkSize?: number;
  /** "NAME[:LEVEL]" from the codec registry (mode "compress"); default: huffman, or the format's codec. */
  codec?: string;
  /** dcz (default), zst, gz, xz or bz2 (mode "compress"). */
  format?: string;
  /** Mode "images" (the source is a tar of images; see uploadImages): how each image is coded. */
  image?: { mode: string; quality?: string; strip?: boolean };
  /** The size in bytes, if known; for a path it is read from the file. */
  size?: number;
  onProgress?: (progress: UploadProgress) => void;
  /** The upload waits in the node's admission queue at this place (1 is next); called as it moves. */
  onQueued?: (place: number) => void;
}

export interface DownloadOptions {
  /** true: the .dcz as stored; false (default): the original bytes. */
  compressed?: boolean;
  onProgress?: (bytes: number, totalBytes: number) => void;
}

export interface DownloadStream extends AsyncIterable<Uint8Array> {
  readonly jobId: string;
  readonly compressed: boolean;
  readonly size: number;
  readonly fileName: string;
  /** SHA-256 (hex) of the original file. */
  readonly sha256: string | null;
  /** Stops the download; needed only when the stream is not read to its end or broken out of. */
  cancel(): Promise<void>;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  /** SHA-256 (hex) of the bytes written. */
  sha256: string;
  /** true when the file is the original and its SHA-256 matched the job's. */
  verified: boolean;
}

export interface Watch {
  stop(): Promise<void>;
}

export interface DcasClient {
  /** The node's name, from its welcome. */
  readonly node: string;
  /** The gateway this client is connected to, as it was given. */
  readonly server: string;
  /**
   * The WebSocket URLs of the cluster's gateways (its members' `gateway`), read from the node's
   * /cluster right after connecting, for failing over later; empty if that read failed.
   */
  gateways(): Promise<string[]>;
  readonly limits: ProtocolLimits;
  /** "token" when the node checked the token; "none" when it has auth off. */
  readonly auth: 'token' | 'none';
  upload(source: string | Uint8Array | AsyncIterable<Uint8Array>, options?: UploadOptions): Promise<JobView>;
  status(jobId: string): Promise<JobView>;
  jobs(options?: { limit?: number }): Promise<JobView[]>;
  /** Calls `onJob` with the job now and on every change; resolves once the first view arrived. */
  watch(jobId: string, onJob: (job: JobView) => void): Promise<Watch>;
  /** Follows the job until it is completed or failed and returns that view (a failed job is not an error). */
  waitForCompletion(jobId: string, options?: { onJob?: (job: JobView) => void }): Promise<JobView>;
  download(jobId: string, options?: DownloadOptions): Promise<DownloadStream>;
  /** Removes the job and its blobs; a job being coded or merged is cancelled. CONFLICT while it uploads. */
  delete(jobId: string): Promise<{ jobId: string; state: JobView['state']; cancelled: boolean }>;
  /** Writes through a temporary file moved into place when complete and, for originals, verified. */
  downloadToFile(jobId: string, path: string, options?: DownloadOptions & { force?: boolean }): Promise<DownloadResult>;
  close(): Promise<void>;
}

