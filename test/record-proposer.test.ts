/**
 * An upload's chunk records share Raft entries (node/jobs/record-proposer.ts): records queued back to
 * back go out 16 to a proposal, a lone record waits a moment for company and is then proposed without
 * being asked, and drain sends whatever waits at once.
 *
 * Real parts: a one-voter Raft state on a real LevelDB; the proposals are counted on it as they pass.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { ReplicatedState } from '../node/cluster/replicated.ts';
import { pendingChunk } from '../node/jobs/core/index.ts';
import { createRecordProposer } from '../node/jobs/record-proposer.ts';
import { createJobOps, readChunks, type JobRecord } from '../node/jobs/records.ts';
import { eventually } from './support/gateway.ts';
import { startLoneVoter, type LoneVoter } from './support/lone-voter.ts';

function uploadingJob(id: string): JobRecord {
  const now = new Date().toISOString();
  return {
    id,
    state: 'uploading',
    mode: 'compress',
    fileName: `${id}.txt`,
    chunkSize: 65_536,
    gateway: 'node1',
    chunks: null,
    originalSize: null,
    compressedSize: null,
    sha256: null,
    mime: null,
    codec: 'huffman',
    timestamps: { pending: now, uploading: now },
    chunkNodes: {},
    output: null,
    error: null,
    processSeconds: null,
  };
}

let voter: LoneVoter;
let state: ReplicatedState;
let proposals = 0;
/** The state as the proposer sees it: the same state, counting the proposals that pass through. */
let counted: ReplicatedState;

test.before(async () => {
  voter = await startLoneVoter('record-proposer');
  state = voter.state;
  counted = Object.create(state) as ReplicatedState;
  counted.propose = (...args: Parameters<ReplicatedState['propose']>) => {
    proposals++;
    return state.propose(...args);
  };
});

test.after(async () => {
  await voter.stop();
});

async function createdJob(id: string): Promise<JobRecord> {
  const job = uploadingJob(id);
  assert.ok((await state.propose(createJobOps(job))).applied, 'the job is created');
  return job;
}

const record = (job: string, index: number) => pendingChunk(job, index, 65_536, { originalBytes: 65_536, checksum: null });

test('40 records queued back to back are recorded in 3 proposals, all of them, once drained', async () => {
  const job = await createdJob('batched');
  const proposer = createRecordProposer(counted, job);
  proposals = 0;
  for (let index = 0; index < 40; index++) await proposer.add(record(job.id, index));
  await proposer.drain();
  assert.is(proposals, 3, '16 + 16 + 8');
  const chunks = await readChunks(state, job.id);
  assert.equal(
    chunks.map((chunk) => chunk.index).sort((a, b) => a - b),
    Array.from({ length: 40 }, (_, index) => index),
  );
});

test('a lone record waits for company, then is proposed without a drain', async () => {
  const job = await createdJob('lone');
  const proposer = createRecordProposer(counted, job);
  proposals = 0;
  const added = Date.now();
  await proposer.add(record(job.id, 0));
  assert.is(proposals, 0, 'not proposed at once');
  await eventually(async () => (await readChunks(state, job.id)).length === 1, 'the lone record is recorded', 5_000);
  assert.ok(Date.now() - added >= 150, `recorded after ${Date.now() - added} ms, not before its wait`);
  assert.is(proposals, 1);
  await proposer.drain();
  assert.is(proposals, 1, 'nothing left to send');
});

test.run();
