/**
 * The one correct order of handling a Ready, as code: persist, then send, then apply, then advance.
 * Wrappers (LevelDB + libp2p, the simulation) call these instead of re-deriving the order, because
 * sending before persisting is the classic way to elect two leaders in one term.
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

export interface ReadyEffectsAsync {
  persist(ready: Ready): Promise<void>;
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

/**
 * The same for an asynchronous store. The core may be stepped while the write is pending; what that
 * produces waits for the next Ready. Do not call it again until the returned promise settles.
 */
export async function handleReadyAsync(core: RaftCore, effects: ReadyEffectsAsync): Promise<boolean> {
  if (!core.hasReady()) return false;
  const ready = core.ready();
  await effects.persist(ready);
  if (ready.messages.length > 0) await effects.send(ready.messages);
  if (ready.snapshot !== null || ready.committedEntries.length > 0) await effects.apply(ready.snapshot, ready.committedEntries);
  core.advance(ready);
  return true;
}
