/**
 * The argument checks both stores share, made once: every public method checks that the store is open and
 * checks its key, prefix, range and metadata before a backend sees them, so both stores refuse the same
 * things with the same codes and messages. A backend gets checked arguments, the metadata as a checked
 * copy, and `where` (the store, the action, the key) to name in its own failures.
 */
import { checkCompose, checkKey, checkMetadata, checkPrefix, checkRange } from './keys.ts';
import { BlobError, type BlobInfo, type BlobStore, type DeletePrefixOptions, type PutOptions, type ReadRange } from './types.ts';

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
  return new CheckedStore(backend);
}

class CheckedStore implements BlobStore {
  readonly kind: BlobStore['kind'];
  readonly #backend: BlobBackend;
  #closed = false;

  constructor(backend: BlobBackend) {
    this.#backend = backend;
    this.kind = backend.kind;
  }

  async put(key: string, data: Uint8Array, options?: PutOptions): Promise<BlobInfo> {
    const where = this.#onKey('put', key);
    const metadata = checkMetadata(options?.metadata, where);
    if (!(data instanceof Uint8Array)) throw new BlobError('IO', `${where}: data is not a Uint8Array`);
    return this.#backend.put(key, data, metadata, where);
  }

  async putStream(key: string, source: AsyncIterable<Uint8Array>, options?: PutOptions): Promise<BlobInfo> {
    const where = this.#onKey('putStream', key);
    return this.#backend.putStream(key, source, checkMetadata(options?.metadata, where), where);
  }

  async get(key: string): Promise<Uint8Array> {
    return this.#backend.get(key, this.#onKey('get', key));
  }

  getStream(key: string, range?: ReadRange): AsyncIterable<Uint8Array> {
    const action = range === undefined ? 'getStream' : rangeAction('getStream', range);
    // A copy, so the caller changing its range object later does not change what is read.
    const wanted = range === undefined ? undefined : { start: range.start, end: range.end };
    // Every failure, bad arguments included, comes out of the iteration, where callers handle errors.
    return this.#checkedStream(action, key, wanted);
  }

  async *#checkedStream(action: string, key: string, wanted: ReadRange | undefined): AsyncGenerator<Uint8Array> {
    const where = this.#onKey(action, key);
    if (wanted !== undefined) checkRange(wanted, where);
    yield* this.#backend.getStream(key, wanted, where);
  }

  async getRange(key: string, range: ReadRange): Promise<Uint8Array> {
    const where = this.#onKey(rangeAction('getRange', range), key);
    checkRange(range, where);
    return this.#backend.getRange(key, range, where);
  }

  async stat(key: string): Promise<BlobInfo | undefined> {
    return this.#backend.stat(key, this.#onKey('stat', key));
  }

  async list(prefix: string): Promise<string[]> {
    return this.#backend.list(prefix, this.#onPrefix('list', prefix));
  }

  async delete(key: string): Promise<void> {
    return this.#backend.delete(key, this.#onKey('delete', key));
  }

  async deletePrefix(prefix: string, options?: DeletePrefixOptions): Promise<number> {
    return this.#backend.deletePrefix(prefix, options, this.#onPrefix('deletePrefix', prefix));
  }

  async compose(sources: readonly string[], destination: string, options?: PutOptions): Promise<BlobInfo> {
    const where = this.#backend.describe('compose into', destination);
    this.#assertOpen(where);
    return this.#backend.compose(sources, destination, checkCompose(sources, destination, options?.metadata, where), where);
  }

  async close(): Promise<void> {
    this.#closed = true;
  }

  #assertOpen(where: string): void {
    if (this.#closed) throw new BlobError('IO', `${where}: the store is closed`);
  }

  /** The `where` of an action on a key, after checking the store is open and the key is good. */
  #onKey(action: string, key: string): string {
    const where = this.#backend.describe(action, key);
    this.#assertOpen(where);
    checkKey(key, where);
    return where;
  }

  #onPrefix(action: string, prefix: string): string {
    const where = this.#backend.describePrefix(action, prefix);
    this.#assertOpen(where);
    checkPrefix(prefix, where);
    return where;
  }
}

function rangeAction(action: string, range: ReadRange): string {
  return `${action} [${range.start}, ${range.end}) of`;
}
