/** Following one job: a listener gets its view at once and again after each change, coalesced. */
import type { ReplicatedState } from '../cluster/index.ts';
import { chunkPrefix, jobKey } from './records.ts';
import { JobError, type JobView } from './types.ts';

const watchCoalesceMs = 50;

/**
 * Calls `listener` with job `id`'s view now and after the changes that touch it (at most one read per
 * watchCoalesceMs, and only when the view changed); returns the function that stops it. NOT_FOUND when
 * there is no such job.
 */
export async function watchJob(state: ReplicatedState, id: string, view: (id: string) => Promise<JobView | undefined>, listener: (job: JobView) => void): Promise<() => void> {
  // Subscribe before the first read: a change applied while that read runs would otherwise fall
  // between the read and the subscription and never be delivered (a lost wake-up: `upload --wait`
  // hung on a job that completed right then). Reads run one after another, so views arrive in order.
  let timer: NodeJS.Timeout | undefined;
  let last: string | undefined;
  let reads: Promise<void>;
  const deliver = (next: JobView | undefined) => {
    const text = JSON.stringify(next);
    if (next !== undefined && text !== last) {
      last = text;
      listener(next);
    }
  };
  const touched = (key: string) => key === jobKey(id) || key.startsWith(chunkPrefix(id));
  const unsubscribe = state.subscribe((change) => {
    if (!change.applied || !change.command.ops.some((op) => touched(op.key)) || timer !== undefined) return;
    timer = setTimeout(() => {
      timer = undefined;
      reads = reads.then(() => view(id)).then(deliver, () => {});
    }, watchCoalesceMs);
  });
  const stop = () => {
    unsubscribe();
    if (timer !== undefined) clearTimeout(timer);
  };
  const firstRead = view(id);
  reads = firstRead.then(() => {}, () => {});
  let first: JobView | undefined;
  try {
    first = await firstRead;
  } catch (error) {
    stop();
    throw error;
  }
  if (first === undefined) {
    stop();
    throw new JobError('NOT_FOUND', `no job ${id}`);
  }
  deliver(first);
  return stop;
}
