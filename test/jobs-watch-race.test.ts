/**
 * The jobs room's `watch` must never lose a change that lands while it reads the job (issue 16: a
 * completion between the read and the subscription was never delivered, so `upload --wait` hung).
 *
 * Real parts: a one-voter Raft state on a real LevelDB, the real job service, a real folder blob store
 * and codec pool. The race is made certain, not likely: the state handed to the job service holds the
 * watch's read of the job until a completion of that job has been committed and applied, then returns
 * what it read before it. A watch that subscribes after its read misses that completion for good.
 */
import { join } from 'node:path';
import { pino } from 'pino';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { createCodecPool, type CodecPool } from '../node/codec/index.ts';
import type { ReplicatedState } from '../node/cluster/replicated.ts';
import { createJobService, type JobView } from '../node/jobs/index.ts';
import { createSpaceGuard } from '../node/storage/space.ts';
import { jobKey, type JobRecord } from '../node/jobs/records.ts';
import { createBlobStore } from '../node/storage/blob/index.ts';
import { eventually } from './support/gateway.ts';
import { startLoneVoter, type LoneVoter } from './support/lone-voter.ts';

function record(id: string, state: JobRecord['state']): JobRecord {
  const now = new Date().toISOString();
  return {
    id,
    state,
    mode: 'compress',
    fileName: 'race.txt',
    chunkSize: 65_536,
    gateway: 'node1',
    chunks: 1,
    originalSize: 10,
    compressedSize: state === 'completed' ? 8 : null,
    sha256: null,
    mime: null,
    codec: 'huffman',
    timestamps: { pending: now, processing: now, ...(state === 'completed' ? { completed: now } : {}) },
    chunkNodes: {},
    output: null,
    error: null,
    processSeconds: null,
  };
}

let voter: LoneVoter;
let dataDir: string;
let state: ReplicatedState;
let pool: CodecPool;

test.before(async () => {
  voter = await startLoneVoter('watch-race');
  ({ state, dataDir } = voter);
  pool = createCodecPool({ threads: 1 });
});

test.after(async () => {
  await pool.close();
  await voter.stop();
});

test('a job that completes while watch reads it is still delivered as completed', async () => {
  const id = 'race0001';
  await state.propose({ ops: [{ op: 'put', key: jobKey(id), value: record(id, 'processing') as never }] });
  let armed = true;
  // The state the job service sees: the real one, except that the watch's first read of the job
  // returns only after the job's completion was applied (and returns the view from before it).
  const racing: ReplicatedState = Object.create(state);
  racing.get = async (key) => {
    const value = await state.get(key);
    if (armed && key === jobKey(id)) {
      armed = false;
      await state.propose({ ops: [{ op: 'put', key: jobKey(id), value: record(id, 'completed') as never }] });
    }
    return value;
  };
  racing.subscribe = (listener) => state.subscribe(listener);
  const blobs = await createBlobStore({ kind: 'folder', path: join(dataDir, 'blobs') });
  const jobs = createJobService({
    node: 'node1',
    state: racing,
    blobs,
    pool,
    config: { chunkSize: 65_536, leaseMs: 30_000, stagingSweepMs: 60_000, attemptsMax: 5, inFlightPerWorker: 2, uploadBytesMax: 1 << 30, uploadsMax: 16, diskReserveBytes: 0, keepOriginal: false, codeAtGateway: true, code: true },
    space: createSpaceGuard({ folders: [dataDir], reserveBytes: 0 }),
    logger: pino({ level: 'silent' }),
    members: () => [],
  });
  const seen: JobView[] = [];
  const stop = await jobs.watch(id, (job) => seen.push(job));
  try {
    assert.is(seen[0]?.state, 'processing', 'the first view is the one read');
    await eventually(() => seen.some((job) => job.state === 'completed'), `the completion is delivered (saw ${seen.map((job) => job.state).join(', ')})`, 5_000);
    assert.is(seen.at(-1)!.state, 'completed');
  } finally {
    stop();
  }
});

test.run();
