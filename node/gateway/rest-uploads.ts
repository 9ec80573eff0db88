/**
 * POST /v1/jobs?name= and PUT /v1/jobs/FILE: the request body is the file, streamed into a new job after
 * the upload waited for a slot in the node's admission queue (shared with the WebSocket protocol).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { JobError, type JobView } from '../jobs/index.ts';
import type { AdmissionTicket, UploadAdmission } from './admission.ts';
import { ended, HttpError, restPrefix, type RestJobs } from './rest-common.ts';
import { send } from './reply.ts';

const fileNameBytesMax = 255;
const uploadParameters = new Set(['name', 'mode', 'chunkSize', 'wait', 'codec', 'format']);

export interface RestUploadsOptions {
  jobs: RestJobs;
  /** Upload slots and their queue, shared with the WebSocket protocol. */
  admission: UploadAdmission;
  /** Count uploads per client address (the node has no token, so the address is all that tells clients apart). */
  uploadsPerAddress: boolean;
  /** A streaming upload whose client sends nothing for this long is dropped. */
  uploadIdleMs: number;
  logger: Logger;
}

type UploadParameters = ReturnType<typeof uploadRequest>;

/** The last path segment of PUT /v1/jobs/FILE as a file name; 400 when its percent-encoding is broken. */
export function decodedName(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, 'BAD_REQUEST', `file name ${JSON.stringify(segment.slice(0, 80))}: not valid percent-encoding`);
  }
}

function uploadRequest(url: URL, fileName: string) {
  for (const key of url.searchParams.keys()) {
    if (!uploadParameters.has(key)) throw new HttpError(400, 'BAD_REQUEST', `unknown query parameter ${JSON.stringify(key.slice(0, 40))}; expected one of ${[...uploadParameters].join(', ')}`);
  }
  if (fileName === '' || Buffer.byteLength(fileName) > fileNameBytesMax || /[/\\\0]/.test(fileName)) {
    throw new HttpError(400, 'BAD_REQUEST', `file name ${JSON.stringify(fileName.slice(0, 80))}: 1 to ${fileNameBytesMax} bytes without "/", "\\" or NUL`);
  }
  const mode = url.searchParams.get('mode') ?? 'compress';
  if (mode !== 'compress' && mode !== 'decompress') throw new HttpError(400, 'BAD_REQUEST', `mode ${JSON.stringify(mode.slice(0, 40))}: expected compress or decompress`);
  const chunkText = url.searchParams.get('chunkSize');
  const chunkSize = chunkText === null ? undefined : Number(chunkText);
  if (chunkSize !== undefined && !Number.isSafeInteger(chunkSize)) throw new HttpError(400, 'BAD_REQUEST', `chunkSize ${JSON.stringify(chunkText!.slice(0, 40))}: expected a whole number of bytes`);
  const wait = url.searchParams.get('wait');
  if (wait !== null && wait !== 'true' && wait !== 'false') throw new HttpError(400, 'BAD_REQUEST', `wait ${JSON.stringify(wait.slice(0, 40))}: expected true or false`);
  // codec and format are checked by the jobs room against the registry, as the WebSocket upload's are.
  const codec = url.searchParams.get('codec') ?? undefined;
  const format = url.searchParams.get('format') ?? undefined;
  return { fileName, mode, chunkSize, wait: wait === 'true', codec, format } as const;
}

export class RestUploads {
  readonly #options: RestUploadsOptions;

  constructor(options: RestUploadsOptions) {
    this.#options = options;
  }

  /**
   * The request body is the file. Each piece is written to the jobs room before the next is read, so the
   * socket is not read while the room is busy: TCP pushes back on the client, whatever it sends.
   */
  async upload(request: IncomingMessage, response: ServerResponse, url: URL, fileName: string): Promise<void> {
    const parameters = uploadRequest(url, fileName);
    const lengthHeader = request.headers['content-length'];
    const size = lengthHeader === undefined ? undefined : Number(lengthHeader);
    // Refused before its body is read: closing after the answer stops the client from sending the body.
    response.setHeader('connection', 'close');
    const ticket = await this.#admit(request);
    if (ticket === undefined) return;
    let job: JobView | undefined;
    try {
      job = await this.#receive(request, response, parameters, size);
    } finally {
      ticket.release();
    }
    if (job === undefined) return;
    if (parameters.wait) job = await this.#untilEnded(response, job);
    send(response, 201, job, { location: `${restPrefix}/jobs/${job.id}` });
  }

  /**
   * A slot for an HTTP upload, after waiting in the node's queue if all are taken. Its body is not read
   * meanwhile (TCP holds the client back), and the request's idle timeout is lifted: the queue's own
   * timeout bounds the wait. undefined: the client went away while waiting.
   */
  async #admit(request: IncomingMessage): Promise<AdmissionTicket | undefined> {
    const address = request.socket.remoteAddress?.replace(/^::ffff:/, '') ?? 'unknown';
    const queued = this.#options.admission.request({ onPlace: () => {} }, this.#options.uploadsPerAddress ? address : undefined);
    request.setTimeout(0);
    let onClose!: () => void;
    const gone = new Promise<undefined>((resolve) => request.socket.once('close', (onClose = () => resolve(undefined))));
    try {
      const ticket = await Promise.race([queued.admitted, gone]);
      if (ticket !== undefined && !request.socket.destroyed) return ticket;
      queued.leave();
      ticket?.release();
      return undefined;
    } finally {
      request.socket.off('close', onClose);
    }
  }

  /** The body streamed into a new job; undefined when the client went away (the job is failed). */
  async #receive(request: IncomingMessage, response: ServerResponse, parameters: UploadParameters, size: number | undefined): Promise<JobView | undefined> {
    const { fileName } = parameters;
    const { uploadIdleMs, logger } = this.#options;
    const session = await this.#options.jobs.service().startUpload({ fileName: parameters.fileName, mode: parameters.mode, chunkSize: parameters.chunkSize, size, codec: parameters.codec, format: parameters.format });
    response.removeHeader('connection');
    request.setTimeout(uploadIdleMs, () => request.destroy(new Error(`no bytes for ${uploadIdleMs} ms`)));
    let job: JobView;
    try {
      for await (const piece of request) await session.write(piece as Buffer);
      job = await session.finish();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      await session.abort(`HTTP upload of ${fileName}: ${reason}`).catch(() => {});
      response.setHeader('connection', 'close');
      if (request.destroyed && !(error instanceof JobError)) {
        logger.info({ job: session.jobId, reason }, 'rest: an HTTP upload ended early; the job is failed');
        response.destroy();
        return undefined;
      }
      throw error;
    }
    request.setTimeout(0);
    return job;
  }

  /** The job once it completed or failed; while waiting the socket may idle (the client chose to wait). */
  async #untilEnded(response: ServerResponse, job: JobView): Promise<JobView> {
    if (ended(job)) return job;
    let stop: (() => void) | undefined;
    try {
      return await new Promise<JobView>((resolve, reject) => {
        response.once('close', () => reject(new Error('the client went away while waiting')));
        this.#options.jobs
          .service()
          .watch(job.id, (next) => {
            if (ended(next)) resolve(next);
          })
          .then((unsubscribe) => (stop = unsubscribe), reject);
      });
    } finally {
      stop?.();
    }
  }
}
