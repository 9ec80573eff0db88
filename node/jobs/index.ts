export { createJobService, toView, type JobPeers, type JobServiceOptions, type RunningJobService } from './service.ts';
export { JobError, type Download, type DownloadRequest, type JobErrorCode, type JobMetrics, type JobMode, type JobService, type JobState, type JobView, type UploadRequest, type UploadSession } from './types.ts';
export { jobIdPattern } from './records.ts';
export { ChunkMemory, chunkMemoryBytesDefault } from './upload-chunks.ts';
