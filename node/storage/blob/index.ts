/**
 * The door of the blob-store room: one interface (types.ts), two stores (a folder shared by the
 * processes of one machine; Google Cloud Storage), and the factory the node config picks from.
 */

import { createFolderStore, type FolderStoreOptions } from './folder.ts';
import type { GcsStoreOptions } from './gcs.ts';
import type { BlobStore } from './types.ts';

export { BlobError } from './types.ts';
export type { BlobErrorCode, BlobInfo, BlobStore, DeletePrefixOptions, PutOptions, ReadRange } from './types.ts';
export { createFolderStore } from './folder.ts';
export type { FolderStoreOptions } from './folder.ts';
export type { GcsRetryOptions, GcsStoreOptions } from './gcs.ts';
export { keyProblem, keyBytesMax, metadataBytesMax } from './keys.ts';

/** The node config's blobStore field (validated by node/config). */
export type BlobStoreSetting =
  | { kind: 'folder'; path: string; fsync?: boolean }
  | { kind: 'gcs'; bucket: string; prefix: string; apiEndpoint?: string };

/** Options the config file does not carry: credentials, retry tuning, buffer sizes. */
export interface BlobStoreTuning {
  folder?: Omit<FolderStoreOptions, 'root' | 'fsync'>;
  gcs?: Omit<GcsStoreOptions, 'bucket' | 'prefix' | 'apiEndpoint'>;
}

/**
 * The store a node's config asks for. The GCS client library is loaded only for a GCS store: it
 * costs a node about 30 MB of memory that a folder store never needs. (createGcsStore itself lives
 * in ./gcs.ts for callers that want it directly.)
 */
export async function createBlobStore(setting: BlobStoreSetting, tuning: BlobStoreTuning = {}): Promise<BlobStore> {
  switch (setting.kind) {
    case 'folder':
      return createFolderStore({ ...tuning.folder, root: setting.path, fsync: setting.fsync ?? true });
    case 'gcs':
      return (await import('./gcs.ts')).createGcsStore({
        ...tuning.gcs,
        bucket: setting.bucket,
        prefix: setting.prefix,
        ...(setting.apiEndpoint === undefined ? {} : { apiEndpoint: setting.apiEndpoint }),
      });
  }
}
