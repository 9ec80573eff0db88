/**
 * Deleting a job (HTTP DELETE /v1/jobs/:id, the WebSocket `delete`, `dcas rm`): its record goes, and so
 * do its blobs. A job still being coded or merged is cancelled by the same step: its record, its
 * active/ marker and every chunk record leave the state in one guarded command, so from that entry on
 * the coordinator assigns none of its chunks (there are none), a worker's completion of a chunk it was
 * coding fails its compare-and-set (and the worker drops its output), and a merge does not start (the
 * merger finds no job) or does not commit (its compare-and-set on the job fails). A job still uploading
 * is refused (CONFLICT): its chunk records are still being created by the gateway that holds the upload,
 * which is the one place that can stop it (the client aborts or disconnects; the job then ends failed and
 * can be deleted).
 */
import type { Logger } from 'pino';
import type { ReplicatedState } from '../cluster/index.ts';
import type { StateOp, StateValue } from '../storage/index.ts';
import type { BlobStore } from '../storage/index.ts';
import { activeKey, blobKeys, chunkKey, jobKey, readChunks, readJob } from './records.ts';
import { JobError, type JobDeleted } from './types.ts';

/** A delete that keeps losing its compare-and-set to the job's own progress gives up after this many. */
const attemptsMax = 20;

export interface DeleteContext {
  state: ReplicatedState;
  blobs: BlobStore;
  logger: Logger;
}

export async function deleteJob(context: DeleteContext, id: string): Promise<JobDeleted> {
  const { state, blobs, logger } = context;
  for (let attempt = 0; attempt < attemptsMax; attempt++) {
    const job = await readJob(state, id);
    if (job === undefined) throw new JobError('NOT_FOUND', `job ${id}: not found`);
    if (job.state === 'pending' || job.state === 'uploading') {
      throw new JobError('CONFLICT', `job ${id} is still uploading; abort its upload (or let it end) and delete it then`);
    }
    const running = job.state === 'processing' || job.state === 'merging';
    const chunkKeys = (await readChunks(state, id)).map((chunk) => chunkKey(id, chunk.index));
    const ops: StateOp[] = [
      { op: 'del', key: jobKey(id) },
      { op: 'del', key: activeKey(id) },
      ...chunkKeys.map((key) => ({ op: 'del', key }) as const),
    ];
    const result = await state.propose({ guards: [{ key: jobKey(id), equals: job as unknown as StateValue }], ops });
    if (!result.applied) continue;
    // The record is gone: nothing refers to these blobs any more. A merge that was composing when the
    // delete landed removes what it made when its own commit fails (merge.ts).
    await Promise.all([blobs.delete(blobKeys.dcz(id)), blobs.delete(blobKeys.pieces(id)), blobs.delete(blobKeys.original(id)), blobs.deletePrefix(blobKeys.stagingPrefix(id), { abandonWrites: true })]);
    logger.info({ job: id, state: job.state, cancelled: running }, 'jobs: job deleted');
    return { id, state: job.state, cancelled: running };
  }
  throw new JobError('UNAVAILABLE', `job ${id}: changed ${attemptsMax} times while being deleted; try again`);
}
