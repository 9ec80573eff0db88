/**
 * Keeps a node's garbage chunk buffers from piling up.
 *
 * Chunks live in ArrayBuffers outside the JS heap. V8 collects them only when its heap heuristics
 * say so, and a node that moves gigabytes through a small heap can hold hundreds of megabytes of
 * dead buffers between collections (measured: 279 MB of external memory after a 1 GiB download,
 * 14 MB after one forced collection). The governor looks at external memory a few times a second
 * and, when it grew past what the last collection left by more than an allowance, asks for a
 * collection: a minor one first (young buffers die young), a major one if that was not enough.
 *
 * Measured from what survived, not from zero: during an upload the live buffers (credit window, chunks
 * being staged) alone exceed the allowance, and a fixed threshold then forced a major collection every
 * 100 ms for as long as the upload ran (on a node held to 0.2 CPU, 72% of its time went to the collector
 * and a 32 MiB upload took 190 s). What survived decays by `decayBytesPerTick`, so a node whose live
 * memory shrank without a collection is looked at again within seconds.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Logger } from 'pino';

type GcFunction = (options?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => void;

export interface MemoryGovernorOptions {
  /** Where a missing `gc` and event-loop stalls are reported; without one (a CLI command), nowhere. */
  logger?: Pick<Logger, 'warn'>;
  /** External (ArrayBuffer) bytes above which a collection is asked for. */
  externalBytesMax?: number;
  intervalMs?: number;
}

export interface MemoryGovernor {
  stop(): void;
  collections(): number;
}

/** `gc` as --expose-gc would give it; obtained at run time so no command-line flag is needed. */
function obtainGc(): GcFunction | undefined {
  const exposed = (globalThis as { gc?: GcFunction }).gc;
  if (typeof exposed === 'function') return exposed;
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as GcFunction | undefined;
  return typeof gc === 'function' ? gc : undefined;
}

/**
 * When to collect, as a pure decision: external bytes above what survived the last collection (decaying)
 * plus the allowance.
 */
export class CollectionPolicy {
  readonly #allowanceBytes: number;
  readonly #decayBytesPerTick: number;
  #survived = 0;

  constructor(allowanceBytes: number, decayBytesPerTick: number) {
    this.#allowanceBytes = allowanceBytes;
    this.#decayBytesPerTick = decayBytesPerTick;
  }

  /** One look at external memory: whether to collect now. */
  due(externalBytes: number): boolean {
    this.#survived = Math.max(0, Math.min(this.#survived - this.#decayBytesPerTick, externalBytes));
    return this.over(externalBytes);
  }

  /** Whether external memory is past the allowance (after a minor collection: whether a major one is needed). */
  over(externalBytes: number): boolean {
    return externalBytes > this.#survived + this.#allowanceBytes;
  }

  /** After a collection: what survived it is the base of the next decision. */
  collected(externalBytes: number): void {
    this.#survived = externalBytes;
  }
}

/**
 * 32 MiB. At 64 MiB, V8's own soft limit on external memory growth between collections, the governor
 * only acted when V8 did not (a node gone quiet with dead buffers): with V8's heap growing factor of 2
 * V8 collected streaming buffers itself at about that pace. Since the factor is 3 (nodeProcessFlags in
 * cli/cluster-commands.ts: fewer major collections), V8 lets more pile up, and at 64 MiB a gateway
 * receiving 1 GiB peaked at 281 MB; at 32 MiB the governor's collections (minor first: an upload's
 * socket reads die young) bring it back to 265 MB. Lower raced V8 with atomic major collections: at
 * 16 MiB (factor 2) a gateway receiving 1 GiB on a 3-node cluster forced 106 of them (2.6 s of its main
 * thread; `upload --wait` 18.1-20.0 s against 15.6-16.2 s at 64 MiB on an earlier machine).
 */
const externalAllowanceBytesDefault = 32 * 1024 * 1024;

export function startMemoryGovernor(options: MemoryGovernorOptions): MemoryGovernor {
  const externalBytesMax = options.externalBytesMax ?? externalAllowanceBytesDefault;
  const gc = obtainGc();
  let collections = 0;
  if (gc === undefined) {
    options.logger?.warn('memory governor: no gc function available; relying on V8 alone');
    return { stop() {}, collections: () => 0 };
  }
  // V8's own count, as process.memoryUsage().external gives it, without reading /proc for the RSS that
  // call also returns (an open, a read and a close ten times a second on every node).
  const external = () => getHeapStatistics().external_memory;
  const stallReport = options.logger === undefined ? undefined : reportStalls(options.logger);
  const policy = new CollectionPolicy(externalBytesMax, externalBytesMax / 16);
  const timer = setInterval(() => {
    if (!policy.due(external())) return;
    gc({ type: 'minor' });
    collections++;
    if (policy.over(external())) gc({ type: 'major' });
    policy.collected(external());
  }, options.intervalMs ?? 100);
  timer.unref();
  return {
    stop: () => {
      clearInterval(timer);
      stallReport?.stop();
    },
    collections: () => collections,
  };
}

/** A stalled event loop delays Raft heartbeats and replies: said to `logger` when it happens. Watched only when there is someone to tell. */
function reportStalls(logger: Pick<Logger, 'warn'>): { stop(): void } {
  // Only stalls over 500 ms are told, and a sample every 100 ms sees them as well as one every 20 ms.
  const delay = monitorEventLoopDelay({ resolution: 100 });
  delay.enable();
  const report = setInterval(() => {
    const maxMs = delay.max / 1e6;
    if (maxMs > 500) logger.warn({ eventLoopDelayMaxMs: Math.round(maxMs) }, 'node: the event loop stalled');
    delay.reset();
  }, 5_000);
  report.unref();
  return {
    stop() {
      clearInterval(report);
      delay.disable();
    },
  };
}
