/**
 * Group commit of one upload's chunk records: each proposal carries what queued while the last was in
 * flight, so a fast upload costs a few Raft entries, not one per chunk.
 */
import type { ReplicatedState } from '../cluster/index.ts';
import { createChunks, type ChunkRecord, type JobRecord } from './records.ts';

/**
 * Chunk records travel in batches: at most this many proposals of one upload in flight, each with
 * whatever chunks arrived meanwhile, at most recordsPerProposalMax of them (about 500 bytes each).
 */
const proposalsInFlightMax = 2;
const recordsPerProposalMax = 64;
/**
 * A record waits up to this long for others to share its proposal, unless this many are queued. Every
 * Raft entry costs each voter several messages; on this 2-core VM a local 3-node cluster's leader
 * spent about 9 ms of CPU per entry, and chunks of a fast upload arrive every 30-40 ms, so without
 * the wait each chunk was an entry of its own (132 entries for 128 chunks).
 */
const lingerMs = 200;
const recordsSentAtOnce = 16;

export interface RecordProposer {
  /** Queues a new chunk record; waits while a whole batch is already queued. Throws once a batch failed. */
  add(record: ChunkRecord): Promise<void>;
  /** Waits until every queued record is recorded; throws if any batch failed. */
  drain(): Promise<void>;
  /** Waits until no proposal is in flight, whatever their outcome. */
  settle(): Promise<void>;
  /** The job record as this upload changed it (a decompress job records its .dcz's codec): later batches are guarded on it. */
  rebase(job: JobRecord): void;
}

/** Group commit of one upload's chunk records: each proposal carries what queued while the last was in flight. */
export function createRecordProposer(state: ReplicatedState, created: JobRecord): RecordProposer {
  const jobId = created.id;
  let job = created;
  const waiting: ChunkRecord[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;
  let lingering: NodeJS.Timeout | undefined;
  /** Set once the upload waits for its records: from then on nothing lingers. */
  let draining = false;

  function send(): void {
    const batch = waiting.splice(0, recordsPerProposalMax);
    const settled: Promise<void> = createChunks(state, job, batch)
      .then((applied) => {
        if (!applied) throw new Error(`job ${jobId}: chunks ${batch[0].index} to ${batch[batch.length - 1].index} were not recorded: the job ended or they already were`);
      })
      .catch((error: unknown) => {
        failure ??= error;
      })
      .finally(() => {
        inFlight.delete(settled);
        schedule();
      });
    inFlight.add(settled);
  }

  /** Proposes what waits now, if a proposal may start. */
  function flush(): void {
    clearTimeout(lingering);
    lingering = undefined;
    if (waiting.length > 0 && inFlight.size < proposalsInFlightMax && failure === undefined) send();
  }

  /** Proposes what waits when enough has queued (or the upload is draining), else lets it wait for company. */
  function schedule(): void {
    if (waiting.length === 0 || failure !== undefined) return;
    if (draining || waiting.length >= recordsSentAtOnce) flush();
    else lingering ??= setTimeout(flush, lingerMs);
  }

  async function settle(): Promise<void> {
    draining = true;
    flush();
    while (inFlight.size > 0) await Promise.race(inFlight);
  }

  return {
    async add(record) {
      if (failure !== undefined) throw failure;
      waiting.push(record);
      schedule();
      while (waiting.length >= recordsPerProposalMax && failure === undefined) await Promise.race(inFlight);
      if (failure !== undefined) throw failure;
    },
    async drain() {
      await settle();
      if (failure !== undefined) throw failure;
    },
    settle,
    rebase(changed) {
      job = changed;
    },
  };
}
