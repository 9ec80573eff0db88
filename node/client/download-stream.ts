/**
 * One download as it arrives: its frames wait in a queue until the consumer reads them, and the socket
 * stops being read (backpressure, see heartbeat.ts) while that queue is over its high mark, so TCP slows
 * the node down instead of this process buffering the file.
 */
import type { DownloadEndMessage, DownloadStartMessage } from '../protocol/index.ts';
import { DcasClientError } from './errors.ts';
import type { Backpressure } from './heartbeat.ts';
import type { DownloadOptions, DownloadStream } from './types.ts';

/** A download pauses the socket above this many unconsumed bytes and resumes below the low mark. */
const downloadQueueBytesHigh = 4 * 1024 * 1024;
const downloadQueueBytesLow = 1024 * 1024;

export interface IncomingDownloadParts {
  requestId: number;
  jobId: string;
  backpressure: Backpressure;
  /** The download is over for this connection (ended, failed or abandoned): frees its turn. */
  finish(): void;
  /** Asks the node to stop sending (download-cancel), if the connection is still open. */
  cancel(): void;
}

/** The receiving side: what the connection hands on, queued for the consumer. */
export class IncomingDownload {
  readonly requestId: number;
  readonly jobId: string;
  /** download-start arrived: binary frames from now on are this download's. */
  started = false;
  readonly #parts: IncomingDownloadParts;
  readonly #queue: Buffer[] = [];
  #queuedBytes = 0;
  #receivedBytes = 0;
  #ended: DownloadEndMessage | undefined;
  #failure: Error | undefined;
  #wake: (() => void) | undefined;
  /** The consumer stopped early: what still arrives is dropped. */
  #abandoned = false;
  readonly #header: Promise<DownloadStartMessage>;
  #start!: { resolve: (message: DownloadStartMessage) => void; reject: (error: Error) => void };

  constructor(parts: IncomingDownloadParts) {
    this.requestId = parts.requestId;
    this.jobId = parts.jobId;
    this.#parts = parts;
    this.#header = new Promise<DownloadStartMessage>((resolve, reject) => (this.#start = { resolve, reject }));
  }

  onStart(message: DownloadStartMessage): void {
    this.started = true;
    this.#start.resolve(message);
  }

  onBytes(bytes: Buffer): void {
    if (this.#abandoned) return;
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    this.#receivedBytes += bytes.length;
    if (this.#queuedBytes > downloadQueueBytesHigh) this.#parts.backpressure.pause(true);
    this.#wake?.();
  }

  onEnd(message: DownloadEndMessage): void {
    this.#ended = message;
    if (this.#abandoned) this.#parts.finish();
    this.#wake?.();
  }

  onError(error: Error): void {
    this.#failure ??= error;
    this.#start.reject(error);
    this.#parts.finish();
    this.#wake?.();
  }

  /** download-start, or TIMEOUT when it does not come within `timeoutMs`. */
  async header(timeoutMs: number): Promise<DownloadStartMessage> {
    const timer = setTimeout(() => this.onError(new DcasClientError('TIMEOUT', `download of job ${this.jobId}: no answer within ${timeoutMs} ms`, this.jobId)), timeoutMs);
    try {
      return await this.#header;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The consumer stopped early (break, throw, cancel): tell the node, drop what still arrives, free the turn at download-end. */
  abandon(): void {
    if (this.#ended !== undefined || this.#failure !== undefined) {
      this.#parts.finish();
      return;
    }
    if (this.#abandoned) return;
    this.#abandoned = true;
    this.#queue.length = 0;
    this.#queuedBytes = 0;
    this.#parts.backpressure.pause(false);
    this.#parts.cancel();
  }

  /** The bytes in order; ends with SIZE_MISMATCH unless exactly `size` bytes arrived and the node ended cleanly. */
  async *pieces(size: number, onProgress: DownloadOptions['onProgress']): AsyncGenerator<Uint8Array> {
    let deliveredBytes = 0;
    try {
      for (;;) {
        const piece = this.#next();
        if (piece !== undefined) {
          deliveredBytes += piece.length;
          onProgress?.(deliveredBytes, size);
          yield piece;
          continue;
        }
        if (this.#failure !== undefined) throw this.#failure;
        if (this.#ended !== undefined) break;
        await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = undefined;
      }
      const ended = this.#ended;
      if (ended.cancelled || this.#receivedBytes !== size || ended.bytes !== size) {
        throw new DcasClientError('SIZE_MISMATCH', `download of job ${this.jobId}: ${this.#receivedBytes} bytes arrived, ${size} announced`, this.jobId);
      }
    } finally {
      this.abandon();
    }
  }

  #next(): Buffer | undefined {
    const piece = this.#queue.shift();
    if (piece === undefined) return undefined;
    this.#queuedBytes -= piece.length;
    if (this.#queuedBytes < downloadQueueBytesLow) this.#parts.backpressure.pause(false);
    return piece;
  }
}

/** What `client.download` returns: the header's facts and the bytes, readable once. */
export class IncomingDownloadStream implements DownloadStream {
  readonly jobId: string;
  readonly compressed: boolean;
  readonly size: number;
  readonly fileName: string;
  readonly sha256: string | null;
  readonly #incoming: IncomingDownload;
  readonly #onProgress: DownloadOptions['onProgress'];
  #iterated = false;

  constructor(incoming: IncomingDownload, header: DownloadStartMessage, compressed: boolean, onProgress: DownloadOptions['onProgress']) {
    this.jobId = incoming.jobId;
    this.compressed = compressed;
    this.size = header.size;
    this.fileName = header.fileName;
    this.sha256 = header.sha256;
    this.#incoming = incoming;
    this.#onProgress = onProgress;
  }

  async cancel(): Promise<void> {
    this.#incoming.abandon();
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<Uint8Array> {
    if (this.#iterated) throw new DcasClientError('BAD_ARGUMENT', `download of job ${this.jobId}: a download stream can be read once`);
    this.#iterated = true;
    const incoming = this.#incoming;
    const generator = incoming.pieces(this.size, this.#onProgress);
    // A generator that never started skips its finally on return(); abandon() covers that case.
    return {
      next: () => generator.next(),
      return: async (value?: unknown) => {
        incoming.abandon();
        return generator.return(value as undefined);
      },
      throw: (error?: unknown) => generator.throw(error),
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }
}
