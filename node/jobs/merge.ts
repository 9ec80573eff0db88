/**
 * Merging a job's coded chunks into its final objects in the blob store.
 *
 * Mode "compress": the workers wrote each chunk as a whole .dcz chunk record (header and frame), so
 * the .dcz is the concatenation  header · record 0 · … · record N-1 · index+trailer, composed by the
 * store (GCS compose in rounds, or a streaming concatenation in the folder store).
 * Mode "decompress": the decoded chunks concatenate into the original, whose SHA-256 is checked
 * against the uploaded trailer's; the uploaded .dcz is recomposed from its staged chunk records too.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { isNoSpaceError, type ReplicatedState } from '../cluster/replicated.ts';
import { format } from '../codec/index.ts';
import type { BlobStore } from '../storage/blob/types.ts';
import type { StateOp } from '../storage/state-store.ts';
import { blobKeys, chunkKey, readChunks, readJob, stamp, updateJob, type ChunkRecord, type JobRecord } from './records.ts';

export interface Merger {
  /** Merges a job whose chunks are all done; safe to call again after a crash or a leader change. */
  merge(jobId: string): Promise<void>;
  /** Removes a job's staged blobs. */
  cleanup(jobId: string): Promise<void>;
}

export interface MergerOptions {
  state: ReplicatedState;
  blobs: BlobStore;
  logger: Logger;
  keepOriginal: boolean;
}

/** The .dcz around already-coded chunk records: header blob, tail blob (index and trailer). */
async function writeContainerParts(blobs: BlobStore, job: JobRecord, records: Array<{ bytes: number; originalBytes: number; checksum: number }>, originalSize: number, sha256: string): Promise<number> {
  const header = format.encodeHeader({ version: format.formatVersion, codec: format.codecHuffman, chunkBytes: job.chunkSize });
  let offset = header.length;
  const entries = records.map((record) => {
    const entry = { offset, originalBytes: record.originalBytes, compressedBytes: record.bytes - format.chunkHeaderBytes, checksum: record.checksum };
    offset += record.bytes;
    return entry;
  });
  const index = format.encodeIndex(entries);
  const trailer = format.encodeTrailer({ indexOffset: offset, chunkCount: entries.length, originalBytes: originalSize, sha256: Buffer.from(sha256, 'hex') });
  await blobs.put(blobKeys.header(job.id), header);
  await blobs.put(blobKeys.tail(job.id), Buffer.concat([index, trailer]));
  return offset + index.length + trailer.length;
}

async function sha256Of(blobs: BlobStore, key: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const piece of blobs.getStream(key)) hash.update(piece);
  return hash.digest('hex');
}

function chunkNodes(chunks: readonly ChunkRecord[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const chunk of chunks) if (chunk.node !== null) counts[chunk.node] = (counts[chunk.node] ?? 0) + 1;
  return counts;
}

function processSeconds(chunks: readonly ChunkRecord[]): number | null {
  const assigned = chunks.map((chunk) => Date.parse(chunk.assignedAt ?? '')).filter(Number.isFinite);
  const done = chunks.map((chunk) => Date.parse(chunk.doneAt ?? '')).filter(Number.isFinite);
  if (assigned.length === 0 || done.length === 0) return null;
  return Math.max(0, (Math.max(...done) - Math.min(...assigned)) / 1000);
}

export function createMerger(options: MergerOptions): Merger {
  const { state, blobs, logger } = options;

  async function cleanup(jobId: string): Promise<void> {
    const removed = await blobs.deletePrefix(blobKeys.stagingPrefix(jobId), { abandonWrites: true });
    logger.debug({ job: jobId, removed }, 'merge: staged blobs removed');
  }

  async function mergeCompressed(job: JobRecord, chunks: readonly ChunkRecord[]): Promise<{ size: number; output: string }> {
    const expected = await writeContainerParts(
      blobs,
      job,
      chunks.map((chunk) => ({ bytes: chunk.outputBytes!, originalBytes: chunk.originalBytes, checksum: chunk.checksum! })),
      job.originalSize!,
      job.sha256!,
    );
    const sources = [blobKeys.header(job.id), ...chunks.map((chunk) => chunk.output!), blobKeys.tail(job.id)];
    const info = await blobs.compose(sources, blobKeys.dcz(job.id), { metadata: { job: job.id, fileName: job.fileName } });
    if (info.size !== expected) throw new Error(`job ${job.id}: merged .dcz has ${info.size} bytes, expected ${expected}`);
    if (options.keepOriginal) {
      await blobs.compose(chunks.map((chunk) => chunk.input), blobKeys.original(job.id), { metadata: { job: job.id, fileName: job.fileName } });
    }
    return { size: info.size, output: blobKeys.dcz(job.id) };
  }

  async function mergeDecompressed(job: JobRecord, chunks: readonly ChunkRecord[]): Promise<{ size: number; output: string }> {
    const info = await blobs.compose(chunks.map((chunk) => chunk.output!), blobKeys.original(job.id), { metadata: { job: job.id, fileName: job.fileName } });
    if (info.size !== job.originalSize) throw new Error(`job ${job.id}: decoded ${info.size} bytes, the .dcz trailer says ${job.originalSize}`);
    const sha256 = await sha256Of(blobs, blobKeys.original(job.id));
    if (sha256 !== job.sha256) {
      await blobs.delete(blobKeys.original(job.id));
      throw Object.assign(new Error(`job ${job.id}: SHA-256 of the decoded file does not match the .dcz trailer`), { permanent: true });
    }
    await writeContainerParts(
      blobs,
      job,
      chunks.map((chunk) => ({ bytes: chunk.inputBytes, originalBytes: chunk.originalBytes, checksum: chunk.checksum! })),
      job.originalSize!,
      job.sha256!,
    );
    await blobs.compose([blobKeys.header(job.id), ...chunks.map((chunk) => chunk.input), blobKeys.tail(job.id)], blobKeys.dcz(job.id));
    return { size: info.size, output: blobKeys.original(job.id) };
  }

  return {
    cleanup,
    async merge(jobId) {
      const current = await readJob(state, jobId);
      if (current === undefined || (current.state !== 'processing' && current.state !== 'merging')) return;
      const merging = current.state === 'merging' ? current : await updateJob(state, jobId, (job) => (job.state === 'processing' ? stamp(job, 'merging') : undefined));
      if (merging === undefined) return;
      const chunks = await readChunks(state, jobId);
      if (chunks.length !== merging.chunks || chunks.some((chunk) => chunk.state !== 'done')) throw new Error(`job ${jobId}: merge started before every chunk was done`);
      let result: { size: number; output: string };
      try {
        result = merging.mode === 'compress' ? await mergeCompressed(merging, chunks) : await mergeDecompressed(merging, chunks);
      } catch (error) {
        // A full disk is final for this job: retrying the merge forever would hold its staged blobs,
        // the very space that failing the job gives back.
        const full = isNoSpaceError(error) || (error as { code?: string }).code === 'INSUFFICIENT_STORAGE';
        if (!(error as { permanent?: boolean }).permanent && !full) throw error;
        const reason = full ? `INSUFFICIENT_STORAGE: merging job ${jobId} ran out of disk space: ${(error as Error).message}` : (error as Error).message;
        await updateJob(state, jobId, (job) => (job.state === 'merging' ? { ...stamp(job, 'failed'), error: reason } : undefined));
        await cleanup(jobId);
        return;
      }
      const retire = (): StateOp[] => chunks.map((chunk) => ({ op: 'del', key: chunkKey(jobId, chunk.index) }) as StateOp);
      if ((await readJob(state, jobId)) === undefined) {
        // Deleted (cancelled) while this merge composed: nothing will ever refer to what it made.
        await Promise.all([blobs.delete(blobKeys.dcz(jobId)), blobs.delete(blobKeys.original(jobId)), cleanup(jobId)]);
        return;
      }
      const completed = await updateJob(
        state,
        jobId,
        (job) =>
          job.state === 'merging'
            ? {
                ...stamp(job, 'completed'),
                compressedSize: job.mode === 'compress' ? result.size : job.compressedSize,
                output: result.output,
                chunkNodes: chunkNodes(chunks),
                processSeconds: processSeconds(chunks),
              }
            : undefined,
        retire,
      );
      if (completed !== undefined) {
        await cleanup(jobId);
        logger.info({ job: jobId, chunks: chunks.length, size: result.size }, 'merge: job completed');
      } else {
        // Another coordinator finished this job first (and may have cleaned up already): what this merge
        // staged (header, tail) would otherwise outlive it. The final objects are the same bytes.
        await cleanup(jobId);
      }
    },
  };
}
