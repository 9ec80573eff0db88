/**
 * The jobs core's rules, one by one, on records built by hand: no processes, no clock, no randomness.
 * Each of the five races the chaos run found has a named test here; the seeded simulation
 * (jobs-sim.test.ts) hunts for them among interleavings.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  chunkOutputKey,
  chunksCreateCommand,
  Coordinator,
  jobKey,
  mergeCleansUp,
  mergeFailureCleansUp,
  newJobRecord,
  orphanReason,
  outputToDeleteAfterCompletion,
  outputToDeleteAfterUnknownCompletion,
  pendingChunk,
  JobInvariantError,
  completedChunk,
  chunksToHandBack,
  handedBackChunk,
  stagedJobId,
  StagingSweeper,
  type MemberFacts,
} from '../node/jobs/core/index.ts';
import type { ChunkRecord, JobRecord } from '../node/jobs/records.ts';

const startMs = Date.UTC(2026, 0, 1);
const config = { leaseMs: 1_000, attemptsMax: 3, inFlightPerWorker: 2, workersDefault: 1 };
const member = (name: string, fields: Partial<MemberFacts> = {}): MemberFacts => ({ name, status: 'alive', startedAt: startMs - 60_000, heartbeatAgeMs: 0, load: { workers: 1, queue: 0 }, ...fields });

function job(state: JobRecord['state'], chunks: number | null = 2): JobRecord {
  return { ...newJobRecord({ id: 'job00001', mode: 'compress', fileName: 'a.bin', chunkSize: 1024, gateway: 'n0', codec: 'huffman', level: 0, format: 'dcz' }, startMs), state, chunks };
}

function chunk(index: number, fields: Partial<ChunkRecord> = {}): ChunkRecord {
  return { ...pendingChunk('job00001', index, 10, { originalBytes: 10, checksum: null }), ...fields };
}

const done = (index: number) => chunk(index, { state: 'done', attempt: 1, node: 'n1', output: `out${index}`, outputBytes: 5, checksum: 7 });

test('bug 1 (output keys per attempt): two runs of the same attempt write different keys, so a losing run deletes only its own output', () => {
  const assigned = chunk(0, { state: 'assigned', attempt: 1, node: 'n1' });
  const first = chunkOutputKey(assigned, 'aaaa');
  const second = chunkOutputKey(assigned, 'bbbb');
  assert.is.not(first, second);
  assert.is(outputToDeleteAfterCompletion(false, second), second);
  assert.is(outputToDeleteAfterCompletion(true, first), undefined);
});

test('bug 2 (a losing merge leaving staged blobs): a merge cleans up whether its completion won or lost, and after a failure once the job ended', () => {
  assert.ok(mergeCleansUp(true));
  assert.ok(mergeCleansUp(false));
  assert.ok(mergeFailureCleansUp(job('completed')));
  assert.ok(mergeFailureCleansUp(undefined));
  assert.not.ok(mergeFailureCleansUp(job('merging')), 'a merge that will be retried keeps what is staged');
});

test('bug 3 (orphaned uploads): an upload whose gateway restarted is failed at once; one whose gateway only went quiet waits a lease', () => {
  const uploading = job('uploading', null);
  assert.match(orphanReason(uploading, [member('n0', { startedAt: startMs + 5 })], config.leaseMs) ?? '', /gateway n0 restarted/);
  assert.is(orphanReason(uploading, [member('n0', { status: 'dead', heartbeatAgeMs: 500 })], config.leaseMs), undefined);
  assert.match(orphanReason(uploading, [member('n0', { status: 'dead', heartbeatAgeMs: 1_500 })], config.leaseMs) ?? '', /unreachable for over 1000 ms/);
  assert.is(orphanReason(uploading, [member('n0')], config.leaseMs), undefined);
});

test('bug 4 (merges stuck after a coordinator died): a new coordinator merges a job already "merging", once until that merge ends', () => {
  const coordinator = new Coordinator(config);
  const snapshot = [{ job: job('merging'), chunks: [done(0), done(1)] }];
  const merges = (plan: ReturnType<Coordinator['round']>) => plan.jobs.flatMap((entry) => entry.steps).filter((step) => step.kind === 'merge');
  assert.equal(merges(coordinator.round(snapshot, [member('n1')], startMs)), [{ kind: 'merge', job: 'job00001' }]);
  assert.equal(merges(coordinator.round(snapshot, [member('n1')], startMs + 10)), [], 'not twice at once');
  coordinator.mergeEnded('job00001');
  assert.equal(merges(coordinator.round(snapshot, [member('n1')], startMs + 20)).length, 1);
});

test('bug 5 (a deposed coordinator\'s merge killed after writing its header and tail, found by chaos): the sweep removes the staging of ended, retired jobs only', () => {
  const sweeper = new StagingSweeper(60_000);
  assert.ok(sweeper.due(startMs), 'a new coordinator sweeps on its first round');
  const retired = { id: 'done1', record: { ...job('completed'), id: 'done1' }, active: false };
  const cleaning = { id: 'done2', record: { ...job('completed'), id: 'done2' }, active: true };
  const running = { id: 'run1', record: { ...job('processing'), id: 'run1' }, active: true };
  const failed = { id: 'fail1', record: { ...job('failed'), id: 'fail1' }, active: false };
  const unknown = { id: 'new1', record: undefined, active: false };
  assert.equal(sweeper.sweep([retired, cleaning, running, failed, unknown], startMs), ['done1', 'fail1'], 'an active job is left to its own cleanup; a job without a record waits one sweep');
  assert.not.ok(sweeper.due(startMs + 59_999));
  assert.ok(sweeper.due(startMs + 60_000));
  assert.equal(sweeper.sweep([unknown], startMs + 60_000), ['new1'], 'without a record at two sweeps in a row: swept');
  sweeper.sweep([], startMs + 120_000);
  assert.equal(sweeper.sweep([unknown], startMs + 180_000), [], 'seen again after a sweep without it: waits again');
  sweeper.leadershipChanged();
  assert.ok(sweeper.due(startMs + 180_001), 'a change of leader sweeps at the next round');
  assert.equal(sweeper.sweep([unknown], startMs + 180_001), [], 'and forgets what it saw missing');
  assert.is(stagedJobId('staging/abc/out/00000001.1.ff'), 'abc');
  assert.is(stagedJobId('staging/abc/header'), 'abc');
  assert.is(stagedJobId('jobs/abc.dcz'), undefined);
});

test('a lease that lapses takes the chunk back; a dead node loses its chunks at once (Reference: issue 14, leases)', () => {
  const coordinator = new Coordinator(config);
  const held = chunk(0, { state: 'assigned', attempt: 1, node: 'n1' });
  const members = [member('n1'), member('n2')];
  assert.equal(coordinator.round([{ job: job('processing', 1), chunks: [held] }], members, startMs).jobs, [], 'a fresh lease is kept');
  const lapsed = coordinator.round([{ job: job('processing', 1), chunks: [held] }], members, startMs + 1_001);
  const released = lapsed.jobs[0].steps[0];
  assert.is(released.kind, 'propose');
  if (released.kind === 'propose') assert.match(String(released.log?.fields.reason), /lease of 1000 ms lapsed on n1/);
  const dead = new Coordinator(config).round([{ job: job('processing', 1), chunks: [held] }], [member('n1', { status: 'dead' })], startMs);
  assert.is(dead.jobs[0].steps.length, 1);
});

test('pending chunks go to alive workers only, one per worker to start with (slow start), each a new attempt', () => {
  const coordinator = new Coordinator(config);
  const plan = coordinator.round([{ job: job('processing', 3), chunks: [chunk(0), chunk(1), chunk(2)] }], [member('n1'), member('n2', { status: 'suspect' })], startMs);
  assert.is(plan.assignments.length, 1);
  const put = plan.assignments[0].ops[0];
  assert.ok(put.op === 'put');
  if (put.op === 'put') assert.equal([(put.value as unknown as ChunkRecord).node, (put.value as unknown as ChunkRecord).attempt], ['n1', 1]);
});

test('a job with a dead chunk fails and its staged blobs are removed after, not before', () => {
  const plan = new Coordinator(config).round([{ job: job('processing', 1), chunks: [chunk(0, { state: 'dead', failures: 3, lastError: 'boom' })] }], [member('n1')], startMs);
  assert.equal(plan.jobs[0].steps.map((step) => step.kind), ['propose', 'cleanup']);
});

test('a completion whose outcome is unknown keeps its output while it may still win, and drops it once the chunk moved on', () => {
  const assigned = chunk(0, { state: 'assigned', attempt: 1, node: 'n1' });
  assert.is(outputToDeleteAfterUnknownCompletion(assigned, structuredClone(assigned), 'mine'), undefined);
  assert.is(outputToDeleteAfterUnknownCompletion(assigned, { ...done(0), output: 'mine' }, 'mine'), undefined);
  assert.is(outputToDeleteAfterUnknownCompletion(assigned, { ...assigned, attempt: 2, node: 'n2' }, 'mine'), 'mine');
  assert.is(outputToDeleteAfterUnknownCompletion(assigned, undefined, 'mine'), 'mine');
});

test('an upload creates chunk records only while its job is still the record its gateway created', () => {
  const created = job('uploading', null);
  const command = chunksCreateCommand(created, [chunk(0)]);
  assert.equal(command.guards[0], { key: jobKey('job00001'), equals: created as never });
});

test('a broken invariant throws a coded error naming the chunk: completing a chunk that is not assigned', () => {
  try {
    completedChunk(chunk(3), { output: 'x', outputBytes: 1, checksum: 1, originalBytes: 1 }, startMs);
    assert.unreachable('completedChunk accepted a pending chunk');
  } catch (error) {
    assert.instance(error, JobInvariantError);
    assert.is((error as JobInvariantError).code, 'JOB_INVARIANT');
    assert.match((error as Error).message, /chunk 3 of job job00001/);
  }
});

test('hand-back (issue 13): a stopping worker moves the chunks it holds back to pending, no attempt used, and the coordinator reassigns them at once, long before the lease', () => {
  const held = [chunk(0, { state: 'assigned', attempt: 1, node: 'n1', failures: 1 }), chunk(1, { state: 'assigned', attempt: 2, node: 'n1' })];
  const others = [chunk(2, { state: 'assigned', attempt: 1, node: 'n2' }), done(3)];
  const moves = chunksToHandBack([...held, ...others], 'n1');
  assert.equal(moves.map(({ before }) => before.index), [0, 1], 'only the chunks n1 holds');
  for (const { before, after } of moves) {
    assert.equal([after.state, after.node, after.attempt, after.failures], ['pending', null, before.attempt, before.failures]);
    assert.match(after.lastError ?? '', /handed back by n1/);
  }
  // Leases of 60 s: only the hand-back explains n2 getting the chunks 1 ms later.
  const coordinator = new Coordinator({ ...config, leaseMs: 60_000 });
  // n1 stopping advertises no workers; n2 is busy with its one slow-start chunk; n3 is free.
  const members = [member('n1', { load: { workers: 0, queue: 0 } }), member('n2', { load: { workers: 2, queue: 0 } }), member('n3', { load: { workers: 2, queue: 0 } })];
  coordinator.round([{ job: job('processing', 4), chunks: [...held, ...others] }], members, startMs);
  const plan = coordinator.round([{ job: job('processing', 4), chunks: [...moves.map(({ after }) => after), ...others] }], members, startMs + 1);
  const assigned = plan.assignments.map((command) => command.ops[0]).map((op) => (op.op === 'put' ? (op.value as unknown as ChunkRecord) : undefined));
  assert.ok(assigned.length > 0, 'a handed-back chunk is reassigned in the next round');
  for (const record of assigned) assert.equal([record?.node, record?.state], ['n3', 'assigned']);
  for (const record of assigned) assert.is(record?.attempt, held[record!.index].attempt + 1, 'each reassignment is a new attempt');
});

test('a member that advertises no workers (jobs.code false, or stopping) is never assigned a chunk', () => {
  const members = [member('voter', { load: { workers: 0, queue: 0 } }), member('worker')];
  const plan = new Coordinator(config).round([{ job: job('processing', 2), chunks: [chunk(0), chunk(1)] }], members, startMs);
  const nodes = plan.assignments.map((command) => command.ops[0]).map((op) => (op.op === 'put' ? (op.value as unknown as ChunkRecord).node : undefined));
  assert.ok(nodes.length > 0);
  assert.not.ok(nodes.includes('voter'), `assigned to ${nodes.join(', ')}`);
  const none = new Coordinator(config).round([{ job: job('processing', 1), chunks: [chunk(0)] }], [members[0]], startMs);
  assert.equal(none.assignments, [], 'with only non-coding members, nothing is assigned');
});

test('handing back a chunk another node holds is a broken invariant, named', () => {
  assert.throws(() => handedBackChunk(chunk(4, { state: 'assigned', attempt: 1, node: 'n2' }), 'n1'), (error: unknown) => error instanceof JobInvariantError && /chunk 4 of job job00001: n1 hands back a chunk held by n2/.test((error as Error).message));
});

/** The chunk records a round's assignments propose. */
const proposed = (plan: { assignments: readonly { ops: readonly { op: string; value?: unknown }[] }[] }) => plan.assignments.map((command) => command.ops[0]!.value as unknown as ChunkRecord);

test('the tail of a job: with nothing pending, an idle worker takes the chunk queued last on the fullest worker, as a new attempt; nobody takes a running one', () => {
  const coordinator = new Coordinator({ ...config, leaseMs: 60_000 });
  const jobRecord = job('processing', 4);
  const members = [member('n1'), member('n2'), member('n3')];
  // Every worker has one thread. n1 codes chunk 1 and n2 chunk 2; n3 is idle, but nothing waits yet.
  const coding = [done(0), chunk(1, { state: 'assigned', attempt: 1, node: 'n1' }), chunk(2, { state: 'assigned', attempt: 1, node: 'n2' })];
  assert.equal(coordinator.round([{ job: jobRecord, chunks: coding }], members, startMs).assignments, []);
  // Then n1 is given chunk 3 as well (its lease ends later than chunk 1's): it waits in n1's queue.
  const moved = proposed(coordinator.round([{ job: jobRecord, chunks: [...coding, chunk(3, { state: 'assigned', attempt: 2, node: 'n1' })] }], members, startMs + 10));
  assert.equal(moved.map((record) => [record.index, record.node, record.attempt, record.state, record.failures]), [[3, 'n3', 3, 'assigned', 0]]);
  // A worker new to this coordinator is in slow start (one chunk): with two idle threads it still takes one.
  const fresh = new Coordinator({ ...config, leaseMs: 60_000 });
  const threeOnN1 = [1, 2, 3].map((index) => chunk(index, { state: 'assigned', attempt: 1, node: 'n1' }));
  const takers = [member('n1'), member('n4', { load: { workers: 2, queue: 0 } })];
  assert.equal(proposed(fresh.round([{ job: jobRecord, chunks: [done(0), ...threeOnN1] }], takers, startMs)).map((record) => [record.index, record.node]), [[3, 'n4']]);
  // Each worker now holds what its thread runs: nothing moves.
  assert.equal(coordinator.round([{ job: jobRecord, chunks: [...coding, moved[0]!] }], members, startMs + 20).assignments, []);
});

test('no chunk moves while any is pending, nor to a worker that has not earned it, nor from a worker holding no more than its threads', () => {
  const members = [member('n1', { load: { workers: 2, queue: 0 } }), member('n2')];
  const twoRunning = [chunk(0, { state: 'assigned', attempt: 1, node: 'n1' }), chunk(1, { state: 'assigned', attempt: 1, node: 'n1' })];
  assert.equal(new Coordinator(config).round([{ job: job('processing', 2), chunks: twoRunning }], members, startMs).assignments, [], 'n1 runs both on its two threads');
  const queued = [chunk(0, { state: 'assigned', attempt: 1, node: 'n1' }), chunk(1, { state: 'assigned', attempt: 1, node: 'n1' }), chunk(2, { state: 'assigned', attempt: 1, node: 'n1' }), chunk(3)];
  const withPending = proposed(new Coordinator(config).round([{ job: job('processing', 4), chunks: queued }], members, startMs));
  assert.equal(withPending.map((record) => [record.index, record.node]), [[3, 'n2']], 'the pending chunk goes to n2; nothing is taken from n1');
  const lapsing = new Coordinator({ ...config, leaseMs: 1_000 });
  const n2Holds = [chunk(4, { state: 'assigned', attempt: 1, node: 'n2' })];
  lapsing.round([{ job: job('processing', 5), chunks: [...queued.slice(0, 3), ...n2Holds] }], members, startMs);
  // n2's lease lapses: it is quarantined, and takes nothing from n1 while it is.
  lapsing.round([{ job: job('processing', 5), chunks: [...queued.slice(0, 3), ...n2Holds] }], members, startMs + 1_001);
  assert.equal(lapsing.round([{ job: job('processing', 5), chunks: queued.slice(0, 3) }], members, startMs + 1_002).assignments, []);
});

test.run();
