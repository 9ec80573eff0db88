/**
 * Whether this node can persist Raft state, and the retry that brings it back when it cannot: after a
 * failed write the same Ready is tried again after a backoff, until a write succeeds.
 */
import type { Logger } from 'pino';
import type { NodeId } from './raft/index.ts';
import { isNoSpaceError, StorageFailure, type StorageFailureCode } from './replicated-errors.ts';

/** A failed persist is retried after this, doubling up to the maximum, until it succeeds. */
const storageRetryMsMin = 500;
const storageRetryMsMax = 30_000;

export interface StorageRetryOptions {
  id: NodeId;
  logger: Logger;
  /** Called once when persisting starts failing, and once when a retry succeeded (with null). */
  onStorageFailure?: (failure: StorageFailure | null) => void;
  /** Drains again; called by the retry timer. */
  retry: () => void;
}

export class StorageRetry {
  readonly #options: StorageRetryOptions;
  #failure: StorageFailure | null = null;
  #retryMs = storageRetryMsMin;
  #retryTimer: NodeJS.Timeout | undefined;

  constructor(options: StorageRetryOptions) {
    this.#options = options;
  }

  /** Why this node cannot persist Raft state right now, or null when it can. */
  get failure(): StorageFailure | null {
    return this.#failure;
  }

  /**
   * A failed write leaves the core ahead of its storage. Stepping on could break Raft's promises and
   * exiting would take a member away; so the node stops taking input and retries the same Ready.
   */
  failed(error: unknown, stopped: boolean): void {
    const { id, logger } = this.#options;
    const code: StorageFailureCode = isNoSpaceError(error) ? 'INSUFFICIENT_STORAGE' : 'STORAGE_FAILED';
    const first = this.#failure === null;
    this.#failure = new StorageFailure(code, `node ${id}: cannot persist Raft state (${code === 'INSUFFICIENT_STORAGE' ? 'disk full' : 'write failed'}): ${(error as Error)?.message ?? String(error)}`, { cause: error });
    logger.error({ err: error, code, retryMs: this.#retryMs }, 'raft: persisting or applying failed; not acking or voting until a retry succeeds; still serving reads');
    if (first) this.#options.onStorageFailure?.(this.#failure);
    if (stopped) return;
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#options.retry();
    }, this.#retryMs);
    this.#retryMs = Math.min(this.#retryMs * 2, storageRetryMsMax);
  }

  /** A Ready was handled: if persisting had failed, it works again. */
  recovered(): void {
    if (this.#failure === null) return;
    this.#failure = null;
    this.#retryMs = storageRetryMsMin;
    this.#options.logger.warn('raft: persisting works again; taking part in the cluster');
    this.#options.onStorageFailure?.(null);
  }

  cancel(): void {
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
  }
}
