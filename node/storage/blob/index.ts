/**
 * The door of the blob-store room: one interface (types.ts), two stores (a folder shared by the
 * processes of one machine; Google Cloud Storage), and the factory the node config picks from.
 */

import { createFolderStore, type FolderStoreOptions } from './folder.ts';
import { createGcsStore, type GcsStoreOptions } from './gcs.ts';
import type { BlobStore } from './types.ts';

export { BlobError } from './types.ts';
export type { BlobErrorCode, BlobInfo, BlobStore, PutOptions, ReadRange } from './types.ts';
export { createFolderStore } from './folder.ts';
export type { FolderStoreOptions } from './folder.ts';
export { composeSourcesMax, createGcsStore } from './gcs.ts';
export type { GcsRetryOptions, GcsStoreOptions } from './gcs.ts';
export { keyProblem, keyBytesMax, metadataBytesMax } from './keys.ts';

/** The node config's blobStore field (validated by node/config). */
export type BlobStoreSetting =
  | { kind: 'folder'; path: string }
  | { kind: 'gcs'; bucket: string; prefix: string; apiEndpoint?: string };

/** Options the config file does not carry: credentials, retry tuning, buffer sizes. */
export interface BlobStoreTuning {
  folder?: Omit<FolderStoreOptions, 'root'>;
  gcs?: Omit<GcsStoreOptions, 'bucket' | 'prefix' | 'apiEndpoint'>;
}

export function createBlobStore(setting: BlobStoreSetting, tuning: BlobStoreTuning = {}): BlobStore {
  switch (setting.kind) {
    case 'folder':
      return createFolderStore({ ...tuning.folder, root: setting.path });
    case 'gcs':
      return createGcsStore({
        ...tuning.gcs,
        bucket: setting.bucket,
        prefix: setting.prefix,
        ...(setting.apiEndpoint === undefined ? {} : { apiEndpoint: setting.apiEndpoint }),
      });
  }
}
