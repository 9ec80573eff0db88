/**
 * A job as the gateway, the client and the CLI see it (JobView), made from its replicated records: the
 * job's own record, and its chunk records while it runs.
 */
import { imageEntries } from './core/index.ts';
import { codingOf, type ChunkRecord, type JobRecord } from './records.ts';
import type { ImageJobView, JobState, JobView } from './types.ts';

/** An images job's options and image totals: from its record once completed, from its chunks before. */
function imageView(job: JobRecord, chunks: readonly ChunkRecord[]): ImageJobView | undefined {
  if (job.image === undefined) return undefined;
  const images = job.images ?? imageEntries(chunks.filter((chunk) => chunk.state === 'done'));
  const quality = job.image.quality === null ? null : `${job.image.quality.min}-${job.image.quality.max}`;
  const completed = job.state === 'completed';
  return {
    mode: job.image.mode,
    quality,
    strip: job.image.strip,
    imagesDone: images.length,
    imagesKept: images.filter((image) => image.kept).length,
    imagesFailed: images.filter((image) => image.error !== null).length,
    outputBytes: completed ? images.reduce((sum, image) => sum + (image.outputBytes ?? 0), 0) : null,
    images: completed ? images : [],
  };
}

export function toView(job: JobRecord, chunks: readonly ChunkRecord[]): JobView {
  const coding = codingOf(job);
  const done = chunks.filter((chunk) => chunk.state === 'done');
  const nodes: Record<string, number> = { ...job.chunkNodes };
  if (job.state !== 'completed') for (const chunk of done) if (chunk.node !== null) nodes[chunk.node] = (nodes[chunk.node] ?? 0) + 1;
  const seconds = (from: JobState, to: JobState) => {
    const start = Date.parse(job.timestamps[from] ?? '');
    const end = Date.parse(job.timestamps[to] ?? '');
    return Number.isFinite(start) && Number.isFinite(end) ? (end - start) / 1000 : null;
  };
  const completed = job.state === 'completed';
  const chunkCount = job.chunks ?? chunks.length;
  const uploaded = job.state === 'uploading' ? chunks.reduce((sum, chunk) => sum + chunk.inputBytes, 0) : job.mode === 'decompress' ? (job.compressedSize ?? 0) : (job.originalSize ?? 0);
  return {
    id: job.id,
    state: job.state,
    mode: job.mode,
    fileName: job.fileName,
    originalSize: job.originalSize,
    compressedSize: job.compressedSize,
    ratio: job.originalSize && job.compressedSize !== null ? Number((job.compressedSize / job.originalSize).toFixed(4)) : job.originalSize === 0 && job.compressedSize !== null ? 1 : null,
    sha256: job.sha256,
    mime: job.mime,
    codec: job.image?.mode ?? coding.choice.codec.name,
    level: coding.choice.level,
    format: coding.format,
    lines: job.lines ?? null,
    words: job.words ?? null,
    chunkSize: job.chunkSize,
    chunks: chunkCount,
    chunksDone: completed ? chunkCount : done.length,
    uploadedBytes: uploaded,
    chunkNodes: nodes,
    timestamps: job.timestamps,
    phases: { uploadSeconds: seconds('uploading', 'processing'), processSeconds: job.processSeconds, mergeSeconds: seconds('merging', 'completed') },
    error: job.error,
    gateway: job.gateway,
    ...(job.image === undefined ? {} : { image: imageView(job, chunks) }),
  };
}
