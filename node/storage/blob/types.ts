/**
 * One blob-store interface, two implementations (a local folder, Google Cloud Storage).
 * Keys are relative paths of "/"-separated segments from [A-Za-z0-9._-] (no "..", no leading "/").
 * A segment may not start with "." either: such names are the stores' own (temporary files,
 * compose intermediates), so no key can collide with them. Limits: keys.ts.
 * Every blob carries a CRC32C of its bytes, checked when a whole blob is read: a mismatch is a
 * BlobError('CHECKSUM_MISMATCH'), never silent bad data. Writes are atomic: a blob is either absent
 * or whole under its key.
 */

import { CodedError } from '../../errors.ts';

export interface BlobInfo {
  key: string;
  size: number;
  /** CRC32C of the whole blob, as an unsigned 32-bit integer. */
  crc32c: number;
  metadata: Record<string, string>;
}

export interface PutOptions {
  /** Small string pairs kept with the blob (at most 8 KiB in all, as GCS allows). */
  metadata?: Record<string, string>;
}

export interface ReadRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, exclusive. */
  end: number;
}

export interface DeletePrefixOptions {
  /**
   * Also remove writes still in progress under the prefix (the folder store's temporary files), for a
   * prefix nobody should write to any more, such as a finished job's staging area. A writer still
   * running there then fails. Without it, only temporary files over an hour old are swept.
   */
  abandonWrites?: boolean;
}

export interface BlobStore {
  readonly kind: 'folder' | 'gcs';
  /** Writes a whole blob from memory. */
  put(key: string, data: Uint8Array, options?: PutOptions): Promise<BlobInfo>;
  /**
   * Writes a blob from a stream of any length, with bounded memory. A chunk may be reused by the
   * caller once the store asks for the next one. If the source throws, its error is rethrown and
   * the key keeps what it held before (nothing, or the previous whole blob).
   */
  putStream(key: string, source: AsyncIterable<Uint8Array>, options?: PutOptions): Promise<BlobInfo>;
  /** Reads a whole blob and checks its CRC32C. */
  get(key: string): Promise<Uint8Array>;
  /**
   * Reads a blob (or a byte range of it) as a stream; a whole-blob read (no range) checks the
   * CRC32C at the end and throws CHECKSUM_MISMATCH there. A range must lie within the blob
   * (0 <= start <= end <= size), else BAD_RANGE.
   */
  getStream(key: string, range?: ReadRange): AsyncIterable<Uint8Array>;
  /** A byte range into memory (no whole-blob CRC check: callers check the container's chunk CRC). */
  getRange(key: string, range: ReadRange): Promise<Uint8Array>;
  /** Size, CRC32C and metadata, or undefined when the blob does not exist. */
  stat(key: string): Promise<BlobInfo | undefined>;
  /** Keys under a prefix, in key order. */
  list(prefix: string): Promise<string[]>;
  /** Removes a blob; removing an absent blob is not an error. */
  delete(key: string): Promise<void>;
  /** Removes every blob under a prefix. */
  deletePrefix(prefix: string, options?: DeletePrefixOptions): Promise<number>;
  /**
   * Concatenates `sources` in order into `destination` (which may not be one of them) and returns
   * its info. GCS composes server-side, at most 32 sources per call, so in rounds; the folder store
   * streams. Sources are left in place.
   */
  compose(sources: readonly string[], destination: string, options?: PutOptions): Promise<BlobInfo>;
  close(): Promise<void>;
}

/**
 * NOT_FOUND: no blob under the key. CHECKSUM_MISMATCH: stored bytes do not match their CRC32C.
 * BAD_KEY: a key or prefix breaks the rules above (or, in the folder store, a key is both a blob and
 * a prefix of others). BAD_RANGE: a range outside the blob. BAD_METADATA: metadata too large or
 * not strings. UNAVAILABLE: the backend failed transiently and retries ran out. INSUFFICIENT_STORAGE:
 * the disk (or quota) is full. IO: anything else.
 */
export type BlobErrorCode = 'NOT_FOUND' | 'CHECKSUM_MISMATCH' | 'BAD_KEY' | 'BAD_RANGE' | 'BAD_METADATA' | 'UNAVAILABLE' | 'INSUFFICIENT_STORAGE' | 'IO';

export class BlobError extends CodedError<BlobErrorCode> {}
