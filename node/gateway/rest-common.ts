/**
 * What every REST handler (rest.ts and its rest-*.ts parts) shares: the coded HttpError an answer is made
 * from, the jobs room's errors turned into HTTP statuses, and the jobs room reached only once it runs.
 */
import { JobError, type JobService, type JobView } from '../jobs/index.ts';
import { BusyError, TooManyUploadsError } from './admission.ts';
import { jobErrorStatus } from './reply.ts';

export const restPrefix = '/v1';
/** Seconds a client is told to wait after a 503 (busy, not ready) before trying again. */
export const retryAfterSeconds = '5';

export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  readonly headers: Record<string, string>;

  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    super(message);
    this.status = status;
    this.code = code;
    this.headers = headers;
  }
}

export function fromJobError(error: JobError): HttpError {
  if (error instanceof TooManyUploadsError) return new HttpError(429, 'TOO_MANY_REQUESTS', error.message, { 'retry-after': String(Math.ceil(error.retryAfterMs / 1000)) });
  const status = jobErrorStatus[error.code] ?? 500;
  const retryAfter = error instanceof BusyError ? String(Math.ceil(error.retryAfterMs / 1000)) : retryAfterSeconds;
  return new HttpError(status, error.code, error.message, status === 503 ? { 'retry-after': retryAfter } : {});
}

export const ended = (job: JobView) => job.state === 'completed' || job.state === 'failed';

/** The jobs room as the REST handlers reach it: 503 NOT_READY until the node runs one, 404 for an unknown job. */
export class RestJobs {
  readonly #node: string;
  readonly #jobs: JobService | undefined;

  constructor(node: string, jobs: JobService | undefined) {
    this.#node = node;
    this.#jobs = jobs;
  }

  service(): JobService {
    if (this.#jobs === undefined) throw new HttpError(503, 'NOT_READY', `node ${this.#node} has no jobs service running yet`, { 'retry-after': retryAfterSeconds });
    return this.#jobs;
  }

  async jobOrNotFound(id: string): Promise<JobView> {
    const job = await this.service().getJob(id);
    if (job === undefined) throw new HttpError(404, 'NOT_FOUND', `job ${id}: not found on node ${this.#node}`);
    return job;
  }
}
