/**
 * Downloads: one at a time per client, each holding its turn until its stream ends, is cancelled or
 * fails (not merely until it opens), since the protocol allows one download per connection.
 */
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { FileError, freeBuffer, writeAtomically } from '../codec/index.ts';
import type { DownloadEndMessage, DownloadStartMessage } from '../protocol/index.ts';
import type { Connection } from './connection.ts';
import { IncomingDownload, IncomingDownloadStream } from './download-stream.ts';
import { DcasClientError } from './errors.ts';
import type { Requests } from './requests.ts';
import { serial } from './turns.ts';
import type { DownloadOptions, DownloadResult, DownloadStream } from './types.ts';

export class Downloads {
  readonly #connection: Connection;
  readonly #requests: Requests;
  /** How long download-start may take. */
  readonly #requestTimeoutMs: number;
  readonly #turn = serial();
  #active: IncomingDownload | undefined;

  constructor(connection: Connection, requests: Requests, requestTimeoutMs: number) {
    this.#connection = connection;
    this.#requests = requests;
    this.#requestTimeoutMs = requestTimeoutMs;
  }

  download(jobId: string, options: DownloadOptions = {}): Promise<DownloadStream> {
    // The turn is held until the stream ends, is cancelled or fails, not merely until it opens.
    return new Promise<DownloadStream>((resolve, reject) => {
      void this.#turn(
        () =>
          new Promise<void>((release) => {
            this.#open(jobId, options, release).then(resolve, (error: unknown) => {
              release();
              reject(error);
            });
          }),
      );
    });
  }

  /** Writes through a temporary file moved into place when complete and, for originals, verified. */
  async downloadToFile(jobId: string, path: string, options: DownloadOptions & { force?: boolean } = {}): Promise<DownloadResult> {
    const force = options.force ?? false;
    if (!force) {
      const exists = await stat(path).then(() => true, () => false);
      if (exists) throw new DcasClientError('OUTPUT_EXISTS', `${path}: already exists (use --force to replace it)`, jobId);
    }
    const stream = await this.download(jobId, options);
    const expected = stream.compressed ? null : stream.sha256;
    const hash = createHash('sha256');
    let bytes = 0;
    const iterator = stream[Symbol.asyncIterator]();
    async function* verified(): AsyncGenerator<Uint8Array> {
      for (;;) {
        const step = await iterator.next();
        if (step.done) break;
        hash.update(step.value);
        bytes += step.value.length;
        yield step.value;
        // Written: a frame the socket's reader made for this message is freed now, so the next one
        // reuses its memory instead of faulting in fresh pages (a view into a socket read is left alone).
        freeBuffer(step.value);
      }
      // Thrown before writeAtomically syncs and moves the file: an unverified file never gets the final name.
      if (expected !== null && hash.copy().digest('hex') !== expected) {
        throw new DcasClientError('CHECKSUM_MISMATCH', `job ${jobId}: the downloaded file's SHA-256 is not the job's ${expected}`, jobId);
      }
    }
    try {
      await writeAtomically(path, verified(), force);
    } catch (error) {
      if (error instanceof FileError && error.code === 'OUTPUT_EXISTS') throw new DcasClientError('OUTPUT_EXISTS', error.message, jobId);
      throw error;
    } finally {
      await iterator.return?.();
    }
    return { path, bytes, sha256: hash.digest('hex'), verified: expected !== null };
  }

  onStart(message: DownloadStartMessage): void {
    if (this.#active !== undefined && message.id === this.#active.requestId) this.#active.onStart(message);
  }

  onEnd(message: DownloadEndMessage): void {
    if (this.#active !== undefined && message.id === this.#active.requestId) this.#active.onEnd(message);
  }

  /** A binary frame: the download's once download-start arrived (before that, none is expected). */
  onBytes(bytes: Buffer): void {
    if (this.#active?.started) this.#active.onBytes(bytes);
  }

  /** An error frame answering request `id`; true when it was about the download in progress (which now fails). */
  onError(id: unknown, error: DcasClientError): boolean {
    if (this.#active === undefined || id !== this.#active.requestId) return false;
    this.#active.onError(error);
    return true;
  }

  onClosed(error: DcasClientError): void {
    this.#active?.onError(error);
  }

  async #open(jobId: string, options: DownloadOptions, release: () => void): Promise<DownloadStream> {
    const compressed = options.compressed ?? false;
    const finish = () => {
      if (this.#active === incoming) this.#active = undefined;
      this.#connection.backpressure.pause(false);
      release();
    };
    const cancel = () => {
      if (!this.#connection.closed) this.#connection.send({ type: 'download-cancel', jobId });
    };
    const incoming = new IncomingDownload({ requestId: this.#requests.nextId(), jobId, backpressure: this.#connection.backpressure, finish, cancel });
    this.#active = incoming;
    try {
      this.#connection.send({ type: 'download', id: incoming.requestId, jobId, compressed });
    } catch (error) {
      finish();
      throw error;
    }
    const header = await incoming.header(this.#requestTimeoutMs);
    return new IncomingDownloadStream(incoming, header, compressed, options.onProgress);
  }
}
