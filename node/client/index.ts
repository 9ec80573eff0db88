/**
 * The DCaS client library: upload files to a cluster, follow jobs, download results.
 *
 *   const client = await connect({ server: 'http://127.0.0.1:7701', token });
 *   const job = await client.upload('big.log', { onProgress: ({ bytes }) => ... });
 *   const done = await client.waitForCompletion(job.id);
 *   await client.downloadToFile(job.id, 'big.log.dcz', { compressed: true });
 *   await client.close();
 */
export { connect, followJob } from './client.ts';
export { terminalStates } from './watches.ts';
export { webSocketUrl } from './connection.ts';
export type {
  ConnectOptions,
  DcasClient,
  DownloadOptions,
  DownloadResult,
  DownloadStream,
  UploadOptions,
  UploadProgress,
  Watch,
} from './types.ts';
export { DcasClientError, type ClientErrorCode } from './errors.ts';
export { isRetryable, retryableCodes, retryDelayMs, withRetry, type RetryNotice, type RetryOptions } from './retry.ts';
export type { JobMode, JobState, JobView } from '../jobs/index.ts';
export { batchTar, downloadImage, listBatch, uploadImages, type BatchFile, type ImageBatchOptions } from './images.ts';
