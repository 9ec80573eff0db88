/**
 * Retrying what a busy or briefly unavailable cluster refused: BUSY (a node's upload queue is full) and
 * UNAVAILABLE (no coordinator reachable right now) pass with time; every other error would only repeat.
 * Waits grow exponentially with jitter, so a crowd of refused clients does not come back all at once,
 * and never less than the node's own retry-after. Bounded by a deadline, or by a number of attempts.
 */
import { DcasClientError } from './errors.ts';

/** Codes worth another try after a wait. */
export const retryableCodes: ReadonlySet<string> = new Set(['BUSY', 'UNAVAILABLE']);

export interface RetryNotice {
  /** The refused attempt's code (BUSY or UNAVAILABLE). */
  code: string;
  message: string;
  /** The attempt about to be made after the wait (2 for the first retry). */
  attempt: number;
  delayMs: number;
}

export interface RetryOptions {
  /** Tries in all, when there is no deadline; default 8 (about a minute of waiting). */
  attemptsMax?: number;
  /** The first wait before jitter; default 500 ms. */
  delayMsBase?: number;
  /** The longest wait; default 15 s. */
  delayMsMax?: number;
  /** Told before each wait, e.g. for a progress line. */
  onRetry?: (notice: RetryNotice) => void;
  /** Uniform in [0, 1); injectable so a test can fix the jitter. */
  random?: () => number;
}

const attemptsMaxDefault = 8;
/** With a deadline the deadline bounds the retries; this only stops a runaway loop. */
const attemptsMaxWithDeadline = 1_000;
const delayMsBaseDefault = 500;
const delayMsMaxDefault = 15_000;

/**
 * The wait before attempt `attempt + 1`: "equal jitter" (half the exponential step fixed, half random),
 * and at least the node's retry-after plus up to half of it again, so clients told the same time spread.
 */
export function retryDelayMs(attempt: number, retryAfterMs: number | undefined, options: RetryOptions = {}): number {
  const random = options.random ?? Math.random;
  const step = Math.min(options.delayMsMax ?? delayMsMaxDefault, (options.delayMsBase ?? delayMsBaseDefault) * 2 ** Math.max(attempt - 1, 0));
  const jittered = step / 2 + (random() * step) / 2;
  if (retryAfterMs === undefined || retryAfterMs <= 0) return Math.round(jittered);
  return Math.round(Math.max(jittered, retryAfterMs + (random() * retryAfterMs) / 2));
}

export function isRetryable(error: unknown): error is DcasClientError {
  return error instanceof DcasClientError && retryableCodes.has(error.code);
}

/**
 * Runs `work` until it succeeds, fails with a code not worth retrying, runs out of attempts, or the next
 * wait would end past `deadlineAtMs`; then the last error is thrown as it was.
 */
export async function withRetry<T>(work: (attempt: number) => Promise<T>, deadlineAtMs: number | undefined, options: RetryOptions = {}, canRetry: () => boolean = () => true): Promise<T> {
  const attemptsMax = deadlineAtMs === undefined ? (options.attemptsMax ?? attemptsMaxDefault) : attemptsMaxWithDeadline;
  for (let attempt = 1; ; attempt++) {
    try {
      return await work(attempt);
    } catch (error) {
      if (!isRetryable(error) || attempt >= attemptsMax || !canRetry()) throw error;
      const delayMs = retryDelayMs(attempt, error.retryAfterMs, options);
      if (deadlineAtMs !== undefined && Date.now() + delayMs >= deadlineAtMs) throw error;
      options.onRetry?.({ code: error.code, message: error.message, attempt: attempt + 1, delayMs });
      await new Promise<void>((resolve) => setTimeout(resolve, delayMs));
    }
  }
}
