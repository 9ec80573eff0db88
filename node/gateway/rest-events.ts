/**
 * GET /v1/jobs/:id/events: Server-Sent Events, `state` when the job enters a state, `progress` when chunks
 * or uploaded bytes move, each with the whole job. Event ids are the job's progress, so `Last-Event-ID`
 * resumes without repeats.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { JobState, JobView } from '../jobs/index.ts';
import { ended, HttpError, retryAfterSeconds, type RestJobs } from './rest-common.ts';
import { dropIfNotReading } from './reply.ts';

/** Event streams open at once on this node; one more is answered 503 with Retry-After. */
const eventStreamsMax = 256;
const stateRank: Record<JobState, number> = { pending: 0, uploading: 1, processing: 2, merging: 3, completed: 4, failed: 5 };
const eventStreamHeaders = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store' };

/** Monotone progress of a job, so a resumed event stream never repeats or goes back. */
function progressId(job: JobView): string {
  return `${stateRank[job.state]}.${job.chunksDone}.${job.uploadedBytes}`;
}

function newer(id: string, than: string | undefined): boolean {
  if (than === undefined) return true;
  const a = id.split('.').map(Number);
  const b = than.split('.').map(Number);
  if (b.length !== 3 || b.some((part) => !Number.isSafeInteger(part))) return true;
  for (let index = 0; index < 3; index++) if (a[index] !== b[index]) return a[index] > b[index];
  return false;
}

export interface RestEventsOptions {
  node: string;
  jobs: RestJobs;
  /** SSE streams send a comment this often so proxies and the idle timeout keep them open. */
  heartbeatMs: number;
  logger: Logger;
}

/** The node's event streams, counted against eventStreamsMax. */
export class RestEvents {
  readonly #options: RestEventsOptions;
  #streamsOpen = 0;

  constructor(options: RestEventsOptions) {
    this.#options = options;
  }

  /** HEAD: the headers a stream would start with, for a job that exists. */
  async head(response: ServerResponse, id: string): Promise<void> {
    await this.#options.jobs.jobOrNotFound(id);
    response.writeHead(200, eventStreamHeaders);
    response.end();
  }

  async stream(request: IncomingMessage, response: ServerResponse, id: string): Promise<void> {
    const { node } = this.#options;
    if (this.#streamsOpen >= eventStreamsMax) throw new HttpError(503, 'BUSY', `node ${node} has ${eventStreamsMax} event streams open; try again later`, { 'retry-after': retryAfterSeconds });
    const lastHeader = request.headers['last-event-id'];
    const lastId = typeof lastHeader === 'string' ? lastHeader.slice(0, 64) : undefined;
    this.#streamsOpen++;
    const stream = new JobEventStream(response, lastId, () => this.#streamsOpen--);
    await stream.open(id, this.#options);
  }
}

/** One client's stream of one job: a heartbeat and a watch, both ended when either side closes. */
class JobEventStream {
  readonly #response: ServerResponse;
  #release: (() => void) | undefined;
  #lastId: string | undefined;
  #lastState: JobState | undefined;
  #heartbeat: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;

  /**
   * `release` gives back the stream's place in the node's count, exactly once: when the response closes
   * or the stream fails to start, whichever comes first. (Releasing only while a heartbeat or watch was
   * still set lost the place of every stream of an already ended job, whose watch ends it at once; after
   * 256 of them the node answered 503 to every stream.)
   */
  constructor(response: ServerResponse, lastId: string | undefined, release: () => void) {
    this.#response = response;
    this.#lastId = lastId;
    this.#release = release;
    response.once('close', () => {
      this.#releaseOnce();
      this.#close();
    });
  }

  #releaseOnce(): void {
    const release = this.#release;
    this.#release = undefined;
    release?.();
  }

  async open(id: string, options: RestEventsOptions): Promise<void> {
    const response = this.#response;
    let headersSent = false;
    try {
      await options.jobs.jobOrNotFound(id);
      response.writeHead(200, { ...eventStreamHeaders, 'x-accel-buffering': 'no' });
      headersSent = true;
      response.write(`retry: 2000\n\n`);
      this.#heartbeat = setInterval(() => response.write(': keep-alive\n\n'), options.heartbeatMs);
      this.#unsubscribe = await options.jobs.service().watch(id, (job) => this.#deliver(job));
      if (response.writableEnded || response.destroyed) this.#close();
    } catch (error) {
      this.#close();
      this.#releaseOnce();
      if (headersSent) {
        options.logger.debug({ err: error, job: id }, 'rest: event stream failed');
        response.destroy();
        return;
      }
      throw error;
    }
  }

  #close(): void {
    if (this.#heartbeat !== undefined) clearInterval(this.#heartbeat);
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    this.#heartbeat = undefined;
  }

  #deliver(job: JobView): void {
    const response = this.#response;
    if (response.destroyed || dropIfNotReading(response)) return;
    const eventId = progressId(job);
    if (newer(eventId, this.#lastId)) {
      const type = job.state !== this.#lastState ? 'state' : 'progress';
      response.write(`id: ${eventId}\nevent: ${type}\ndata: ${JSON.stringify(job)}\n\n`);
      this.#lastId = eventId;
    }
    this.#lastState = job.state;
    if (ended(job)) response.end();
  }
}
