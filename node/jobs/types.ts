/**
 * The shapes the jobs room shares with the gateway, the client and the CLI.
 * A job is one uploaded file: compressed into a .dcz (mode "compress"), or a .dcz decoded back into
 * the original (mode "decompress"). Its state lives in the replicated state machine.
 */

import type { OutputFormat } from '../codec/index.ts';
import { CodedError } from '../errors.ts';

export type JobState = 'pending' | 'uploading' | 'processing' | 'merging' | 'completed' | 'failed';
/** "images": a tar of images, each optimised on its own by an image codec (docs/IMAGES.md, batches). */
export type JobMode = 'compress' | 'decompress' | 'images';

/** How an images job codes each image: an image mode, a quality range ("60-80"), and whether metadata is stripped. */
export interface ImageJobRequest {
  mode: string;
  quality?: string;
  /** Strip metadata (EXIF, ICC, text chunks); default true. */
  strip?: boolean;
}

/** An images job's options and what became of its images. */
export interface ImageJobView {
  mode: string;
  /** The quality range asked for ("60-80"); null: the mode's default. */
  quality: string | null;
  strip: boolean;
  /** Images coded so far (the job's chunksDone counts them too), and of those kept as they were. */
  imagesDone: number;
  imagesKept: number;
  /** Images that could not be coded (kept as they were, with the reason in `images`). */
  imagesFailed: number;
  /** Sum of the images' output bytes (without tar headers); null until every image is coded. */
  outputBytes: number | null;
  /** Per image, in input order; filled when the job completed. */
  images: ImageEntryView[];
}

/** One image of a batch: its tar entry name, its bytes in and out, and why it was kept as it was (null: it was coded). */
export interface ImageEntryView {
  name: string;
  inputBytes: number;
  /** Bytes in the output archive: the optimised image, or the input when it did not shrink or could not be coded. */
  outputBytes: number | null;
  kept: boolean;
  error: string | null;
}

export interface JobView {
  id: string;
  state: JobState;
  mode: JobMode;
  fileName: string;
  /** Bytes of the original file (known once the upload finished, or from the .dcz trailer). */
  originalSize: number | null;
  /** Bytes of the .dcz (known once merged; for mode "decompress": the uploaded .dcz's size). */
  compressedSize: number | null;
  /** compressedSize / originalSize, once both are known. */
  ratio: number | null;
  /** SHA-256 of the original, hex. */
  sha256: string | null;
  /** MIME type of the original, detected from its first bytes (file-type), or application/octet-stream. */
  mime: string | null;
  /** The codec's registry name ("huffman", "zstd", ...), its level (0 for codecs without levels), and the compressed object's format. */
  codec: string;
  level: number;
  format: OutputFormat;
  /** Lines ("\n") and words of the original, as `wc -l -w` counts them; null until a compress job completed. */
  lines: number | null;
  words: number | null;
  chunkSize: number;
  /** Number of chunks (grows while uploading; final once the upload finished). */
  chunks: number;
  chunksDone: number;
  /** Bytes received by the gateway so far. */
  uploadedBytes: number;
  /** Which node coded how many chunks. */
  chunkNodes: Record<string, number>;
  /** ISO timestamps of entering each state. */
  timestamps: Partial<Record<JobState, string>>;
  /** Seconds spent per phase, once known: upload, process (first chunk queued to last chunk done), merge. */
  phases: { uploadSeconds: number | null; processSeconds: number | null; mergeSeconds: number | null };
  /** Set when failed: what failed and where. */
  error: string | null;
  /** The gateway node that received the upload. */
  gateway: string;
  /** Mode "images": the image options, totals, and per image its bytes in and out; absent for other modes. */
  image?: ImageJobView;
}

export interface UploadRequest {
  fileName: string;
  mode: JobMode;
  /** Original bytes per chunk (mode "compress"); ignored for "decompress" (the .dcz says). */
  chunkSize?: number;
  /** Declared size in bytes, if the client knows it; checked against what arrives. */
  size?: number;
  /** "NAME[:LEVEL]" from the codec registry (mode "compress"); default huffman, or the format's codec. */
  codec?: string;
  /** The compressed object's format: dcz (default), zst, gz, xz, bz2 (mode "compress"). */
  format?: string;
  /** Mode "images": how each image of the uploaded tar is coded. */
  image?: ImageJobRequest;
}

/** One upload in progress on this node. Write bytes in order; await each write (backpressure). */
export interface UploadSession {
  readonly jobId: string;
  /** Accepts the next bytes; resolves when they are buffered or staged and more may be sent. */
  write(bytes: Uint8Array): Promise<void>;
  /** The client sent everything; resolves with the job once the upload is recorded as complete. */
  finish(): Promise<JobView>;
  /** The client went away or broke the protocol: the job is marked failed and staged blobs removed. */
  abort(reason: string): Promise<void>;
}

export interface DownloadRequest {
  /** true: the .dcz as stored; false: the original bytes (decoded, every checksum verified). */
  compressed: boolean;
  /**
   * Only the bytes [start, end) of the chosen form. For the original decoded from a .dcz, only the
   * chunks that cover them are read and decoded (found through the seek index); each chunk's CRC32C is
   * verified, the whole file's SHA-256 cannot be. The caller checks start < end <= size.
   */
  range?: { start: number; end: number };
}

export interface Download {
  size: number;
  fileName: string;
  sha256: string | null;
  stream: AsyncIterable<Uint8Array>;
  /**
   * The caller is done with a piece the stream yielded (it is written): its memory is reused for a later
   * chunk or freed at once, not at V8's next major collection. The caller must not read it again; a
   * piece never handed back is left to the collector.
   */
  done(piece: Uint8Array): void;
}

/** INSUFFICIENT_STORAGE: this node's disk (data or blob folder) is too full to take new work; reads still work. */
/** CONFLICT: the job's state does not allow the request now (deleting a job that is still uploading). */
export type JobErrorCode = 'NOT_FOUND' | 'NOT_READY' | 'BUSY' | 'TOO_LARGE' | 'BAD_INPUT' | 'UNAVAILABLE' | 'INSUFFICIENT_STORAGE' | 'CONFLICT';

export class JobError extends CodedError<JobErrorCode> {}

/** What the gateway needs from the jobs room on every node. */
export interface JobService {
  startUpload(request: UploadRequest): Promise<UploadSession>;
  getJob(id: string): Promise<JobView | undefined>;
  listJobs(options?: { limit?: number }): Promise<JobView[]>;
  /** Calls `listener` with the job now and on every change until unsubscribed. */
  watch(id: string, listener: (job: JobView) => void): Promise<() => void>;
  openDownload(id: string, request: DownloadRequest): Promise<Download>;
  /**
   * Removes the job's record and blobs; a job being coded or merged is cancelled by it (no more chunks
   * assigned, no merge). NOT_FOUND when there is no such job, CONFLICT while it is still uploading.
   */
  deleteJob(id: string): Promise<JobDeleted>;
  /** Counters for /metrics. */
  metrics(): JobMetrics;
}

export interface JobDeleted {
  id: string;
  /** The state the job was in when it was deleted. */
  state: JobState;
  /** true when the job was still being coded or merged and was stopped. */
  cancelled: boolean;
}

export interface JobMetrics {
  jobsByState: Record<JobState, number>;
  chunksCoded: number;
  bytesIn: number;
  bytesOut: number;
  /** Kernel throughput over the last chunks coded on this node, MB/s of original bytes. */
  kernelMBps: number;
  queueDepth: number;
  inFlight: number;
  /** Chunks this node decoded for downloads (whole or ranged); shows that a range reads only its chunks. */
  chunksDecoded: number;
}
