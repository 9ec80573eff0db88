/**
 * What every concern of the WebSocket gateway (connections, uploads, watches, downloads) shares: the
 * node's services and limits, the counters behind `stats()`, and how a failure becomes an error frame.
 */
import type { Logger } from 'pino';
import { CodecError } from '../codec/index.ts';
import { ProposalError } from '../cluster/index.ts';
import { JobError, type JobService, type JobView } from '../jobs/index.ts';
import { BusyError } from './admission.ts';
import type { GatewayMetrics } from './metrics.ts';
import { errorCodes, type ErrorCode } from '../protocol/index.ts';
import type { GatewayLimits } from './ws-limits.ts';

export interface WebSocketParts {
  node: string;
  jobs: JobService | undefined;
  limits: GatewayLimits;
  logger: Logger;
  metrics: () => GatewayMetrics | undefined;
  counters: GatewayCounters;
}

/** The gateway's running counts over all its connections (its `stats()`, and so /metrics). */
export class GatewayCounters {
  uploadsActive = 0;
  downloadsActive = 0;
  /** Connections cut off because they did not read their replies, since start. */
  clientsDropped = 0;
  #uploadBufferedBytes = 0;
  #uploadBufferedBytesPeak = 0;

  /** Bytes received from upload clients that the jobs room has not yet taken (over all uploads). */
  get uploadBufferedBytes(): number {
    return this.#uploadBufferedBytes;
  }

  get uploadBufferedBytesPeak(): number {
    return this.#uploadBufferedBytesPeak;
  }

  uploadBuffered(bytes: number): void {
    this.#uploadBufferedBytes += bytes;
    this.#uploadBufferedBytesPeak = Math.max(this.#uploadBufferedBytesPeak, this.#uploadBufferedBytes);
  }

  uploadTaken(bytes: number): void {
    this.#uploadBufferedBytes -= bytes;
  }
}

export interface Failure {
  code: ErrorCode;
  message: string;
  retryAfterMs?: number;
}

export function assert(condition: boolean, message: string): asserts condition {
  if (!condition) throw new Error(`gateway invariant broken: ${message}`);
}

export function describeError(parts: WebSocketParts, error: unknown, what: string): Failure {
  const { node, logger } = parts;
  if (error instanceof BusyError) return { code: 'BUSY', message: error.message, retryAfterMs: error.retryAfterMs };
  if (error instanceof JobError && (errorCodes as readonly string[]).includes(error.code)) return { code: error.code, message: error.message };
  // A node cut off from the majority knows no leader: its proposals time out. That is the cluster being
  // unavailable from here, not a bug, and a client should go to another gateway.
  if (error instanceof ProposalError && (error.code === 'NO_LEADER' || error.code === 'TIMEOUT')) {
    return { code: 'UNAVAILABLE', message: `${what} failed on node ${node}: it reaches no coordinator (${error.message}); try another node` };
  }
  if (error instanceof CodecError) {
    logger.error({ err: error }, `gateway: ${what} failed verification`);
    return { code: 'CORRUPT', message: error.message };
  }
  logger.error({ err: error }, `gateway: ${what} failed`);
  return { code: 'INTERNAL', message: `${what} failed on node ${node}; see its log` };
}

/** The job, or NOT_FOUND. Called only once the jobs service runs (requests wait for it). */
export async function getJob(parts: WebSocketParts, jobId: string): Promise<JobView> {
  const job = await parts.jobs!.getJob(jobId);
  if (job === undefined) throw new JobError('NOT_FOUND', `job ${jobId}: not found on node ${parts.node}`);
  return job;
}
