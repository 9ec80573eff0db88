/**
 * The argument checks both stores share, made once: every public method checks that the store is open and
 * checks its key, prefix, range and metadata before a backend sees them, so both stores refuse the same
 * things with the same codes and messages. A backend gets checked arguments, the metadata as a checked
 * copy, and `where` (the store, the action, the key) to name in its own failures.
 */
import { checkCompose, checkKey, checkMetadata, checkPrefix, checkRange } from './keys.ts';
import { BlobError, type BlobInfo, type BlobStore, type DeletePrefixOptions, type ReadRange } from './types.ts';

type Metadata = Record<string, string>;

/** What a store does once its arguments are known to be good. */
export interface BlobBackend {
  readonly kind: BlobStore['kind'];
  /** How messages name an action on a key, e.g. `folder store get "jobs/3f2a"`. */
  describe(action: string, key: string): string;
  /** How messages name an action on a prefix. */
  describePrefix(action: string, prefix: string): string;
  put(key: string, data: Uint8Array, metadata: Metadata, where: string): Promise<BlobInfo>;
  putStream(key: string, source: AsyncIterable<Uint8Array>, metadata: Metadata, where: string): Promise<BlobInfo>;
  get(key: string, where: string): Promise<Uint8Array>;
  getStream(key: string, range: ReadRange | undefined, where: string): AsyncIterable<Uint8Array>;
  getRange(key: string, range: ReadRange, where: string): Promise<Uint8Array>;
  stat(key: string, where: string): Promise<BlobInfo | undefined>;
  list(prefix: string, where: string): Promise<string[]>;
  delete(key: string, where: string): Promise<void>;
  deletePrefix(prefix: string, options: DeletePrefixOptions | undefined, where: string): Promise<number>;
  compose(sources: readonly string[], destination: string, metadata: Metadata, where: string): Promise<BlobInfo>;
}

/** A BlobStore over `backend` that checks every argument first; after close() every call fails with IO. */
export function checkedStore(backend: BlobBackend): BlobStore {
  let closed = false;
  const assertOpen = (where: string): void => {
    if (closed) throw new BlobError('IO', `${where}: the store is closed`);
  };
  /** The `where` of an action on a key, after checking the store is open and the key is good. */
  const onKey = (action: string, key: string): string => {
    const where = backend.describe(action, key);
    assertOpen(where);
    checkKey(key, where);
    return where;
  };
  const onPrefix = (action: string, prefix: string): string => {
    const where = backend.describePrefix(action, prefix);
    assertOpen(where);
    checkPrefix(prefix, where);
    return where;
  };
  const rangeAction = (action: string, range: ReadRange): string => `${action} [${range.start}, ${range.end}) of`;

  return {
    kind: backend.kind,

    async put(key, data, options) {
      const where = onKey('put', key);
      const metadata = checkMetadata(options?.metadata, where);
      if (!(data instanceof Uint8Array)) throw new BlobError('IO', `${where}: data is not a Uint8Array`);
      return backend.put(key, data, metadata, where);
    },

    async putStream(key, source, options) {
      const where = onKey('putStream', key);
      return backend.putStream(key, source, checkMetadata(options?.metadata, where), where);
    },

    async get(key) {
      return backend.get(key, onKey('get', key));
    },

    getStream(key, range) {
      const action = range === undefined ? 'getStream' : rangeAction('getStream', range);
      // A copy, so the caller changing its range object later does not change what is read.
      const wanted = range === undefined ? undefined : { start: range.start, end: range.end };
      // Every failure, bad arguments included, comes out of the iteration, where callers handle errors.
      return (async function* () {
        const where = onKey(action, key);
        if (wanted !== undefined) checkRange(wanted, where);
        yield* backend.getStream(key, wanted, where);
      })();
    },

    async getRange(key, range) {
      const where = onKey(rangeAction('getRange', range), key);
      checkRange(range, where);
      return backend.getRange(key, range, where);
    },

    async stat(key) {
      return backend.stat(key, onKey('stat', key));
    },

    async list(prefix) {
      return backend.list(prefix, onPrefix('list', prefix));
    },

    async delete(key) {
      return backend.delete(key, onKey('delete', key));
    },

    async deletePrefix(prefix, options) {
      return backend.deletePrefix(prefix, options, onPrefix('deletePrefix', prefix));
    },

    async compose(sources, destination, options) {
      const where = backend.describe('compose into', destination);
      assertOpen(where);
      return backend.compose(sources, destination, checkCompose(sources, destination, options?.metadata, where), where);
    },

    async close() {
      closed = true;
    },
  };
}
