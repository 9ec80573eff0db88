/**
 * The worker's queue against a real one-voter Raft state, a real folder blob store and a real codec
 * thread: a chunk that waits in the queue and is moved to another worker (the coordinator's tail
 * rebalance, core/coordinator.ts) leaves the queue when the move is applied and is never coded here.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { pino } from 'pino';
import { createCodecPool } from '../node/codec/index.ts';
import { createFolderStore } from '../node/storage/blob/index.ts';
import { activeKey, blobKeys, chunkCasCommand, chunkKey, jobKey, newJobRecord, pendingChunk } from '../node/jobs/core/index.ts';
import { createWorker } from '../node/jobs/worker.ts';
import type { ChunkRecord } from '../node/jobs/records.ts';
import { startLoneVoter } from './support/lone-voter.ts';
import { eventually } from './support/gateway.ts';

/** Words from a seeded generator: text xz works hard on. */
function text(bytes: number, seed: number): Uint8Array {
  const words = ['queue', 'chunk', 'worker', 'lease', 'thread', 'merge', 'raft', 'node', 'tail', 'idle'];
  let state = seed;
  let out = '';
  while (out.length < bytes) {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    out += `${words[state % words.length]}${state % 997} `;
  }
  return new TextEncoder().encode(out.slice(0, bytes));
}

test('a queued chunk moved to another worker leaves the queue at once and is never coded here; the running one completes', async () => {
  const voter = await startLoneVoter('worker-queue');
  const root = await mkdtemp(join(tmpdir(), 'dcas-worker-queue-'));
  const pool = createCodecPool({ threads: 1 });
  try {
    const blobs = createFolderStore({ root });
    const worker = createWorker({ name: 'node1', state: voter.state, blobs, pool, logger: pino({ level: 'silent' }), concurrency: 1 });
    await worker.start();
    // xz at preset 9 over 4 MB keeps the one slot busy for seconds: the second chunk waits behind it.
    const id = 'jobqueue1';
    const job = { ...newJobRecord({ id, mode: 'compress', fileName: 'q.txt', chunkSize: 4_000_000, gateway: 'node1', codec: 'xz', level: 9, format: 'dcz' }, Date.now()), state: 'processing' as const, chunks: 2 };
    const inputs = [text(4_000_000, 1), text(1_000, 2)];
    for (const [index, input] of inputs.entries()) await blobs.put(blobKeys.input(id, index), input);
    const assigned = inputs.map((input, index): ChunkRecord => ({ ...pendingChunk(id, index, input.length, { originalBytes: input.length, checksum: null }), state: 'assigned', node: 'node1', attempt: 1 }));
    await voter.state.propose({ guards: [], ops: [{ op: 'put', key: jobKey(id), value: job as never }, { op: 'put', key: activeKey(id), value: true }, ...assigned.map((chunk) => ({ op: 'put' as const, key: chunkKey(id, chunk.index), value: chunk as never }))] });
    await eventually(() => worker.stats().inFlight === 1 && worker.stats().queued === 1, 'one chunk runs and one waits', 5_000);
    const moved: ChunkRecord = { ...assigned[1]!, node: 'node2', attempt: 2 };
    assert.ok((await voter.state.propose(chunkCasCommand(assigned[1]!, moved))).applied);
    assert.is(worker.stats().queued, 0, 'the moved chunk left the queue when its move was applied');
    assert.is(((await voter.state.get(chunkKey(id, 0))) as unknown as ChunkRecord).state, 'assigned', 'the first chunk is still coding');
    await eventually(async () => ((await voter.state.get(chunkKey(id, 0))) as unknown as ChunkRecord).state === 'done', 'the running chunk completes', 60_000);
    await eventually(() => worker.stats().inFlight === 0, 'the worker is idle', 5_000);
    assert.equal(await voter.state.get(chunkKey(id, 1)), moved as never, 'the moved chunk is as the move left it');
    const outputs = await blobs.list(`${blobKeys.stagingPrefix(id)}out/`);
    assert.equal(outputs.map((key) => key.split('/').pop()!.split('.').slice(0, 2).join('.')), ['00000000.1'], 'only the first chunk was coded');
    await worker.stop();
  } finally {
    await pool.close();
    await voter.stop();
    await rm(root, { recursive: true, force: true });
  }
});

test.run();
