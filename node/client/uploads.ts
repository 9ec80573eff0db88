/**
 * Uploads: one at a time per client (the protocol allows one per connection; further calls wait their
 * turn), never more than the node's credit in flight (docs/PROTOCOL.md, "Flow control"). The credit
 * window itself is the protocol room's `CreditSender`; this file sends the frames it allows.
 */
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { JobView } from '../jobs/index.ts';
import { CreditSender, type CreditMessage, type UploadAcceptedMessage, type UploadDoneMessage } from '../protocol/index.ts';
import type { Connection } from './connection.ts';
import { DcasClientError } from './errors.ts';
import { FileFrames } from './file-frames.ts';
import type { Requests } from './requests.ts';
import { withRetry, type RetryOptions } from './retry.ts';
import { serial } from './turns.ts';
import type { UploadOptions } from './types.ts';

/** Bytes sent per upload frame: the node's limit, capped so progress and credit stay fine-grained. */
const uploadFrameBytesMax = 1024 * 1024;
const finishTimeoutMs = 300_000;

export type UploadSource = string | Uint8Array | AsyncIterable<Uint8Array>;

interface OpenedSource {
  fileName: string;
  size: number | undefined;
  /** The source in frames of at most `frameBytes` (read from its start when called). */
  frames(frameBytes: number): AsyncIterable<Uint8Array>;
  /** A frame the socket has written; given for a path, whose buffers are the client's own (a caller's never are). */
  release?: (frame: Uint8Array) => void;
}

/** The upload the node accepted and this client is sending. */
class ActiveUpload {
  readonly jobId: string;
  readonly credit: CreditSender;
  /** Set when the node failed the upload or the connection closed; the sending loop throws it. */
  failure: DcasClientError | undefined;
  #wake: (() => void) | undefined;

  constructor(jobId: string, credit: CreditSender) {
    this.jobId = jobId;
    this.credit = credit;
  }

  waitForCredit(): Promise<void> {
    return new Promise<void>((resolve) => (this.#wake = resolve));
  }

  /** Credit arrived or the upload failed: the sending loop looks again. */
  wake(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

export interface UploadSettings {
  retry: RetryOptions | false | undefined;
  deadlineAtMs: number | undefined;
  requestTimeoutMs: number;
}

export class Uploads {
  readonly #connection: Connection;
  readonly #requests: Requests;
  readonly #settings: UploadSettings;
  readonly #turn = serial();
  #active: ActiveUpload | undefined;

  constructor(connection: Connection, requests: Requests, settings: UploadSettings) {
    this.#connection = connection;
    this.#requests = requests;
    this.#settings = settings;
  }

  upload(source: UploadSource, options: UploadOptions): Promise<JobView> {
    return this.#turn(() => this.#retrying(source, options));
  }

  onCredit(message: CreditMessage): void {
    const active = this.#active;
    if (active === undefined || active.jobId !== message.jobId) return;
    // CreditSender throws on a grant that is not a positive number; from the socket's event handler that
    // would take the process down, so a malformed grant fails this upload instead (a grant of 0 adds nothing).
    if (message.bytes === 0) return;
    if (!(typeof message.bytes === 'number' && message.bytes > 0)) {
      active.failure = new DcasClientError('PROTOCOL', `upload of job ${active.jobId}: a credit message of ${String(message.bytes)} bytes from ${this.#connection.welcome.node}`, active.jobId);
    } else {
      active.credit.grant(message.bytes);
    }
    active.wake();
  }

  /** An error frame about job `jobId`; true when it was about the upload in progress (which now fails). */
  onError(jobId: string | undefined, error: DcasClientError): boolean {
    const active = this.#active;
    if (active === undefined || jobId !== active.jobId) return false;
    active.failure = error;
    active.wake();
    return true;
  }

  onClosed(error: DcasClientError): void {
    const active = this.#active;
    if (active === undefined) return;
    active.failure ??= error;
    active.wake();
  }

  /**
   * An upload the node refused with BUSY or UNAVAILABLE is tried again after a backoff, on this
   * connection, while it is open: any time for a path or a buffer (read again from the start), and for
   * a stream only if none of it was read yet (the refusal came before upload-accepted).
   */
  #retrying(source: UploadSource, options: UploadOptions): Promise<JobView> {
    const { retry, deadlineAtMs } = this.#settings;
    if (retry === false) return this.#run(source, options, () => {});
    const replayable = typeof source === 'string' || source instanceof Uint8Array;
    let consumed = false;
    return withRetry(() => this.#run(source, options, () => (consumed = true)), deadlineAtMs, retry, () => !this.#connection.closed && (replayable || !consumed));
  }

  async #run(source: UploadSource, options: UploadOptions, onConsumed: () => void): Promise<JobView> {
    const opened = await openSource(source, options);
    const active = await this.#start(opened, options);
    this.#active = active;
    let ending = false;
    try {
      onConsumed();
      await this.#sendFrames(active, opened, options);
      if (active.failure !== undefined) throw active.failure;
      ending = true;
      const done = await this.#requests.request<UploadDoneMessage>({ type: 'upload-end', id: this.#requests.nextId(), jobId: active.jobId }, 'upload-done', finishTimeoutMs);
      return done.job;
    } catch (error) {
      // Free the connection for the next upload unless the node already ended this one.
      if (!ending && !this.#connection.closed) {
        const reason = error instanceof Error ? error.message.slice(0, 200) : 'client error';
        this.#connection.send({ type: 'upload-abort', id: this.#requests.nextId(), jobId: active.jobId, reason });
      }
      if (error instanceof DcasClientError && error.jobId === undefined) throw new DcasClientError(error.code, error.message, active.jobId);
      throw error;
    } finally {
      this.#active = undefined;
    }
  }

  /** Asks for the upload and waits (through the node's admission queue) until it is accepted. */
  async #start(opened: OpenedSource, options: UploadOptions): Promise<ActiveUpload> {
    // The file is opened only when its frames are read, so a refused upload leaves nothing open.
    const accepted = await this.#requests.request<UploadAcceptedMessage>(
      { type: 'upload', id: this.#requests.nextId(), fileName: opened.fileName, mode: options.mode ?? 'compress', chunkSize: options.chunkSize, size: opened.size, codec: options.codec, format: options.format, image: options.image },
      'upload-accepted',
      this.#settings.requestTimeoutMs,
      options.onQueued,
    );
    if (!(typeof accepted.credit === 'number' && accepted.credit >= 0)) {
      throw new DcasClientError('PROTOCOL', `upload of job ${accepted.jobId}: upload-accepted from ${this.#connection.welcome.node} with a credit of ${String(accepted.credit)}`, accepted.jobId);
    }
    return new ActiveUpload(accepted.jobId, new CreditSender(accepted.credit));
  }

  /** Every byte of the source, each frame no larger than the credit left when it is sent. */
  async #sendFrames(active: ActiveUpload, opened: OpenedSource, options: UploadOptions): Promise<void> {
    let sentBytes = 0;
    const { release } = opened;
    for await (const frame of opened.frames(Math.min(this.#connection.welcome.limits.frameBytesMax, uploadFrameBytesMax))) {
      let at = 0;
      while (at < frame.length) {
        if (active.failure !== undefined) throw active.failure;
        if (active.credit.creditBytes === 0) {
          await active.waitForCredit();
          continue;
        }
        const length = active.credit.take(frame.length - at);
        const last = at + length === frame.length;
        this.#connection.sendBinary(frame.subarray(at, at + length), last && release !== undefined ? () => release(frame) : undefined);
        at += length;
        sentBytes += length;
        options.onProgress?.({ jobId: active.jobId, bytes: sentBytes, totalBytes: opened.size ?? null });
      }
    }
  }
}

async function* framesOf(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, frameBytes: number): AsyncGenerator<Uint8Array> {
  for await (const piece of source) {
    for (let at = 0; at < piece.length; at += frameBytes) yield piece.subarray(at, at + frameBytes);
  }
}

async function openSource(source: UploadSource, options: UploadOptions): Promise<OpenedSource> {
  if (typeof source === 'string') {
    let size: number;
    try {
      const info = await stat(source);
      if (!info.isFile()) throw new DcasClientError('BAD_ARGUMENT', `${source}: not a regular file`);
      size = info.size;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new DcasClientError('BAD_ARGUMENT', `${source}: no such file`);
      throw error;
    }
    const file = new FileFrames(source);
    return { fileName: options.fileName ?? basename(source), size: options.size ?? size, frames: (frameBytes) => file.frames(frameBytes), release: (frame) => file.release(frame) };
  }
  if (options.fileName === undefined) throw new DcasClientError('BAD_ARGUMENT', 'upload: a fileName is needed when the source is not a path');
  if (source instanceof Uint8Array) {
    return { fileName: options.fileName, size: options.size ?? source.length, frames: (frameBytes) => framesOf([source], frameBytes) };
  }
  return { fileName: options.fileName, size: options.size, frames: (frameBytes) => framesOf(source, frameBytes) };
}
