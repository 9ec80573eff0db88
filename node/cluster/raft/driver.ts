/**
 * The one way a node drives its core's Readys: production (LevelDB + libp2p, `replicated.ts`) and the
 * simulation (`node/cluster/sim`) both call `ReadyDriver.handleNext`, so the code the simulation
 * checks is the code that runs. One Ready at a time, in the only safe order: persist, then send,
 * then apply, then advance. The core may be stepped and ticked while the persist is awaited (a disk
 * write takes milliseconds, a network keeps delivering); what that produces waits for the next
 * Ready, and entries overwritten meanwhile are written again (see RaftCore's `#markStable`).
 */
import type { RaftCore } from './core.ts';
import { RaftUsageError } from './errors.ts';
import type { ReadyEffectsAsync } from './ready.ts';
import type { Ready } from './types.ts';

export class ReadyDriver {
  readonly #core: RaftCore;
  readonly #effects: ReadyEffectsAsync;
  /** Taken from the core and not yet advanced; kept after a failed persist so the retry writes it again. */
  #taken: Ready | null = null;
  #busy = false;

  constructor(core: RaftCore, effects: ReadyEffectsAsync) {
    this.#core = core;
    this.#effects = effects;
  }

  /** True while a Ready is between `ready()` and `advance()`: its persist is awaited or it failed. */
  get holdingReady(): boolean {
    return this.#taken !== null;
  }

  /**
   * Handles the next Ready (or, after a failure, the same one again) and returns it, or null when the
   * core has none. If persist, send or apply throws, the Ready stays taken and the error propagates;
   * the next call retries it whole. Never call again before the returned promise settles.
   */
  async handleNext(): Promise<Ready | null> {
    if (this.#busy) throw new RaftUsageError(`node ${this.#core.id}: handleNext() was called while the previous call is still running`);
    if (this.#taken === null && !this.#core.hasReady()) return null;
    this.#busy = true;
    try {
      this.#taken ??= this.#core.ready();
      const ready = this.#taken;
      await this.#effects.persist(ready);
      if (ready.messages.length > 0) await this.#effects.send(ready.messages);
      if (ready.snapshot !== null || ready.committedEntries.length > 0) await this.#effects.apply(ready.snapshot, ready.committedEntries);
      this.#core.advance(ready);
      this.#taken = null;
      return ready;
    } finally {
      this.#busy = false;
    }
  }
}
