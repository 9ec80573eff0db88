/**
 * The storage room's door: the LevelDB state store's command and value types, the blob stores (folder and
 * GCS behind one interface) and the free-space guard. Other rooms import only this file; `blob/` is inside
 * the room.
 */
export {
  decodeCommand,
  encodeCommand,
  openStateStore,
  validateCommand,
  type ApplyResult,
  type StateChange,
  type StateCommand,
  type StateGuard,
  type StateOp,
  type StateStore,
  type StateValue,
} from './state-store.ts';
export { createSpaceGuard, InsufficientStorageError, type SpaceGuard, type SpaceGuardOptions } from './space.ts';
export * from './blob/index.ts';
