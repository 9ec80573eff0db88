/**
 * The one correct order of handling a Ready, as code: persist, then send, then apply, then advance.
 * Nothing re-derives the order, because sending before persisting is the classic way to elect two
 * leaders in one term. `handleReady` is for a synchronous store (the core's unit tests); production
 * and the simulation both drive the core through `ReadyDriver` (driver.ts), which awaits the persist.
 */
import type { RaftCore } from './core.ts';
import type { Entry, Message, Ready, Snapshot } from './types.ts';

export interface ReadyEffects {
  /** Make every durable field of `ready` durable (see Ready for what each field asks). */
  persist(ready: Ready): void;
  send(messages: readonly Message[]): void;
  /** Replace the application's state with `snapshot` if given, then apply `entries` in order. */
  apply(snapshot: Snapshot | null, entries: readonly Entry[]): void;
}

/** The same effects for an asynchronous store; the core may be stepped while `persist` is awaited. */
export interface ReadyEffectsAsync {
  /** Resolves once `ready` is durable; may return at once when the write already finished. */
  persist(ready: Ready): void | Promise<void>;
  send(messages: readonly Message[]): void | Promise<void>;
  apply(snapshot: Snapshot | null, entries: readonly Entry[]): void | Promise<void>;
}

/** Handles one Ready if the core has one; returns whether it did. */
export function handleReady(core: RaftCore, effects: ReadyEffects): boolean {
  if (!core.hasReady()) return false;
  const ready = core.ready();
  effects.persist(ready);
  if (ready.messages.length > 0) effects.send(ready.messages);
  if (ready.snapshot !== null || ready.committedEntries.length > 0) effects.apply(ready.snapshot, ready.committedEntries);
  core.advance(ready);
  return true;
}
