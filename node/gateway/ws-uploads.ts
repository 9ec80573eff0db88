/**
 * Uploads over the WebSocket protocol (docs/PROTOCOL.md, "Uploads" and "Flow control"): one at a time
 * per connection, admitted through the node's upload slots, its bytes accepted only against credit, and
 * credit granted back only after the jobs room took earlier bytes (`session.write` resolved), so the bytes
 * a node holds for one upload never exceed the window however fast its client sends.
 */
import type { JobView, UploadSession } from '../jobs/index.ts';
import type { AdmissionTicket, UploadAdmission } from './admission.ts';
import type { TokenCheck } from './auth.ts';
import { closeCodes, CreditReceiver, type ErrorCode, type RequestId, type UploadAbortMessage, type UploadEndMessage, type UploadMessage } from '../protocol/index.ts';
import type { Connection } from './ws-connection.ts';
import { assert, describeError, type WebSocketParts } from './ws-parts.ts';

/**
 * Upload credit is granted back once the gateway owes at least window / creditGrantsPerWindow bytes (or
 * when the upload's buffer empties), so a full window comes back in about this many credit messages.
 */
const creditGrantsPerWindow = 8;

type UploadPhase = 'receiving' | 'finishing' | 'failed' | 'aborted' | 'done';

export interface UploadState {
  requestId: RequestId | undefined;
  jobId: string;
  session: UploadSession;
  /** The node's upload slot, given back when the upload leaves receiving/finishing. */
  ticket: AdmissionTicket;
  phase: UploadPhase;
  /** The credit window: bytes granted, received, buffered for `session.write`, owed back. */
  credit: CreditReceiver;
  /** Writes run one after another on this chain, in arrival order. */
  tail: Promise<void>;
  idleTimer: NodeJS.Timeout | undefined;
  failure: { code: ErrorCode; message: string } | undefined;
}

export class WebSocketUploads {
  readonly #parts: WebSocketParts;
  /** Upload slots and their queue, shared with the HTTP API. */
  readonly #admission: UploadAdmission;
  readonly #tokenCheck: TokenCheck;
  /** Session aborts still running; `settled()` waits for them. */
  readonly #pendingAborts = new Set<Promise<void>>();

  constructor(parts: WebSocketParts, admission: UploadAdmission, tokenCheck: TokenCheck) {
    this.#parts = parts;
    this.#admission = admission;
    this.#tokenCheck = tokenCheck;
  }

  async start(connection: Connection, message: UploadMessage): Promise<void> {
    if (connection.upload !== undefined || connection.uploadStarting) {
      const current = connection.upload;
      const detail = current?.phase === 'failed' ? `upload of job ${current.jobId} failed; send upload-abort for it first` : 'one upload at a time per connection';
      connection.rejectRequest('OUT_OF_ORDER', detail, { id: message.id });
      return;
    }
    connection.uploadStarting = true;
    let ticket: AdmissionTicket | undefined;
    let session: UploadSession;
    try {
      ticket = await this.#admit(connection, message);
      if (ticket === undefined) return;
      session = await this.#parts.jobs!.startUpload({ fileName: message.fileName, mode: message.mode, chunkSize: message.chunkSize, size: message.size, codec: message.codec, format: message.format, image: message.image });
    } catch (error) {
      ticket?.release();
      throw error;
    } finally {
      connection.uploadStarting = false;
    }
    this.#accept(connection, message, session, ticket);
  }

  /** A binary frame: upload bytes, accepted only against the upload's credit. */
  onBytes(connection: Connection, bytes: Buffer): void {
    const upload = connection.upload;
    if (upload === undefined) {
      connection.closeFor('FLOW_CONTROL', 'a binary frame without an accepted upload (no credit)', closeCodes.policyViolation);
      return;
    }
    // An overrun is checked before data after upload-end, so a frame that is both gets FLOW_CONTROL.
    if (bytes.length > upload.credit.creditLeft) {
      connection.closeFor('FLOW_CONTROL', `upload of job ${upload.jobId}: a frame of ${bytes.length} bytes with ${upload.credit.creditLeft} bytes of credit left`, closeCodes.policyViolation);
      return;
    }
    if (upload.phase === 'finishing') {
      connection.closeFor('OUT_OF_ORDER', `upload of job ${upload.jobId}: data after upload-end`, closeCodes.policyViolation);
      return;
    }
    // Frames that were in flight when the upload failed are counted against the credit and dropped.
    const verdict = upload.credit.receive(bytes.length, upload.phase === 'receiving');
    assert(verdict.accepted, `job ${upload.jobId}: a frame within the credit was refused`);
    this.#parts.metrics()?.uploadBytes(bytes.length);
    if (upload.phase !== 'receiving') return;
    this.#armIdleTimer(connection, upload);
    this.#parts.counters.uploadBuffered(bytes.length);
    upload.tail = upload.tail.then(() => this.#write(connection, upload, bytes));
  }

  /** upload-end: the client sent everything; the upload finishes once its writes are done. */
  end(connection: Connection, message: UploadEndMessage): void {
    const { jobId, id } = message;
    const upload = connection.upload;
    if (upload === undefined || upload.jobId !== jobId) {
      connection.rejectRequest('OUT_OF_ORDER', `upload-end for job ${jobId}, which is not this connection's upload`, { id, jobId });
      return;
    }
    if (upload.phase === 'failed') {
      connection.upload = undefined;
      connection.sendError(upload.failure!.code, upload.failure!.message, { id, jobId });
      return;
    }
    if (upload.phase !== 'receiving') {
      connection.rejectRequest('OUT_OF_ORDER', `upload of job ${jobId} is already ending`, { id, jobId });
      return;
    }
    upload.phase = 'finishing';
    clearTimeout(upload.idleTimer);
    // From here a disconnect no longer aborts: the client sent everything it meant to.
    upload.tail = upload.tail.then(() => this.#finish(connection, upload, id));
  }

  abort(connection: Connection, message: UploadAbortMessage): void {
    const { jobId, reason, id } = message;
    const upload = connection.upload;
    if (upload === undefined || upload.jobId !== jobId) {
      connection.rejectRequest('OUT_OF_ORDER', `upload-abort for job ${jobId}, which is not this connection's upload`, { id, jobId });
      return;
    }
    if (upload.phase === 'finishing') {
      connection.rejectRequest('OUT_OF_ORDER', `upload of job ${jobId} is already ending`, { id, jobId });
      return;
    }
    if (upload.phase === 'receiving') this.#end(upload, 'aborted', `client aborted the upload${reason ? `: ${reason}` : ''}`);
    connection.upload = undefined;
    connection.send({ type: 'upload-aborted', id, jobId });
  }

  /** The connection closed: a waiting upload leaves the queue, a receiving one is aborted. */
  onClosed(connection: Connection): void {
    connection.queuedUpload?.leave();
    connection.queuedUpload = undefined;
    const upload = connection.upload;
    connection.upload = undefined;
    if (upload !== undefined && upload.phase === 'receiving') this.#end(upload, 'aborted', 'client disconnected');
  }

  /** Waits for the session aborts still running. */
  async settled(): Promise<void> {
    await Promise.all([...this.#pendingAborts]);
  }

  /** The upload holds a slot and a session: it starts receiving, with a window of credit. */
  #accept(connection: Connection, message: UploadMessage, session: UploadSession, ticket: AdmissionTicket): void {
    const { limits, logger } = this.#parts;
    this.#parts.counters.uploadsActive++;
    const upload: UploadState = {
      requestId: message.id,
      jobId: session.jobId,
      session,
      ticket,
      phase: 'receiving',
      credit: new CreditReceiver(limits.uploadWindowBytes, creditGrantsPerWindow),
      tail: Promise.resolve(),
      idleTimer: undefined,
      failure: undefined,
    };
    if (connection.closed) {
      this.#end(upload, 'aborted', 'client disconnected');
      return;
    }
    connection.upload = upload;
    this.#armIdleTimer(connection, upload);
    logger.info({ connection: connection.id, job: upload.jobId, fileName: message.fileName, mode: message.mode, size: message.size }, 'gateway: upload started');
    connection.send({ type: 'upload-accepted', id: message.id, jobId: upload.jobId, credit: upload.credit.grantedBytes });
  }

  /**
   * A slot for the upload, after waiting in the node's queue if all are taken; the client hears its
   * place (`queued`) meanwhile. No credit is granted before the slot, so a waiting client sends no
   * bytes. undefined: the connection closed while waiting (the queue was left).
   */
  async #admit(connection: Connection, message: UploadMessage): Promise<AdmissionTicket | undefined> {
    const address = this.#tokenCheck.enabled ? undefined : connection.admission.address;
    const queued = this.#admission.request({ onPlace: (place) => connection.send({ type: 'queued', id: message.id, place }) }, address);
    connection.queuedUpload = queued;
    try {
      const ticket = await Promise.race([queued.admitted, connection.closedPromise.then(() => undefined)]);
      if (ticket !== undefined && connection.closed) {
        ticket.release();
        return undefined;
      }
      return ticket;
    } finally {
      if (connection.queuedUpload === queued) connection.queuedUpload = undefined;
    }
  }

  #armIdleTimer(connection: Connection, upload: UploadState): void {
    const idleMs = this.#parts.limits.uploadIdleMs;
    clearTimeout(upload.idleTimer);
    upload.idleTimer = setTimeout(() => {
      if (upload.phase !== 'receiving') return;
      // While the jobs room still holds bytes, the client is waiting for credit: not its fault.
      if (upload.credit.bufferedBytes > 0) {
        this.#armIdleTimer(connection, upload);
        return;
      }
      this.#fail(connection, upload, { code: 'TIMEOUT', message: `upload of job ${upload.jobId}: nothing received for ${idleMs} ms` });
    }, idleMs);
    upload.idleTimer.unref();
  }

  /** One step of an upload's write chain; never rejects, so the chain keeps its accounting. */
  async #write(connection: Connection, upload: UploadState, bytes: Buffer): Promise<void> {
    // The jobs room may free the frame's memory once it has copied it (upload-consumers.ts), so its length is taken first.
    const length = bytes.length;
    let written = false;
    let grantingBytes = 0;
    try {
      if (upload.phase === 'receiving' || upload.phase === 'finishing') {
        await upload.session.write(bytes);
        written = true;
      }
    } catch (error) {
      this.#fail(connection, upload, describeError(this.#parts, error, `writing upload bytes of job ${upload.jobId}`));
    } finally {
      // Only bytes the jobs room took while the upload still receives come back as credit.
      grantingBytes = upload.credit.taken(length, written && upload.phase === 'receiving');
      this.#parts.counters.uploadTaken(length);
    }
    if (grantingBytes === 0) return;
    connection.send({ type: 'credit', jobId: upload.jobId, bytes: grantingBytes });
    this.#armIdleTimer(connection, upload);
  }

  /** The last step of the write chain after upload-end: the session finishes and the client hears how. */
  async #finish(connection: Connection, upload: UploadState, id: RequestId | undefined): Promise<void> {
    const jobId = upload.jobId;
    // Nothing more can arrive for this upload: the connection is free for the next one once this ends.
    const release = () => {
      if (connection.upload === upload) connection.upload = undefined;
    };
    if (upload.phase !== 'finishing') {
      // A write failed after upload-end was sent: answer the upload-end with that failure too.
      release();
      if (upload.failure !== undefined) connection.sendError(upload.failure.code, upload.failure.message, { id, jobId });
      return;
    }
    let job: JobView;
    try {
      job = await upload.session.finish();
    } catch (error) {
      this.#fail(connection, upload, describeError(this.#parts, error, `finishing the upload of job ${jobId}`), id);
      release();
      return;
    }
    this.#end(upload, 'done', 'finished');
    release();
    this.#parts.logger.info({ connection: connection.id, job: jobId, bytes: upload.credit.receivedBytes }, 'gateway: upload finished');
    connection.send({ type: 'upload-done', id, job });
  }

  /** The upload fails; the connection stays open and drops its frames until upload-abort or upload-end. */
  #fail(connection: Connection, upload: UploadState, failure: { code: ErrorCode; message: string }, id = upload.requestId): void {
    if (upload.phase !== 'receiving' && upload.phase !== 'finishing') return;
    upload.failure = failure;
    connection.sendError(failure.code, failure.message, { id, jobId: upload.jobId });
    this.#end(upload, 'failed', failure.message);
  }

  /** Leaves the receiving/finishing phase for good: frees the node's upload slot, aborts the session after its writes. */
  #end(upload: UploadState, phase: 'failed' | 'aborted' | 'done', reason: string): void {
    const logger = this.#parts.logger;
    assert(upload.phase === 'receiving' || upload.phase === 'finishing', `job ${upload.jobId}: upload ended twice`);
    upload.phase = phase;
    clearTimeout(upload.idleTimer);
    this.#parts.counters.uploadsActive--;
    upload.ticket.release();
    if (phase === 'done') return;
    logger.info({ job: upload.jobId, reason }, 'gateway: upload aborted');
    const aborted = upload.tail
      .then(() => upload.session.abort(reason))
      .catch((error: unknown) => logger.warn({ err: error, job: upload.jobId }, 'gateway: aborting an upload failed'));
    this.#pendingAborts.add(aborted);
    void aborted.finally(() => this.#pendingAborts.delete(aborted));
  }
}
