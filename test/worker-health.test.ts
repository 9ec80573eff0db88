/**
 * Workers earn work: the coordinator's pure assignment decision (node/jobs/worker-health.ts), driven
 * with explicit times, no processes.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import {
  allowance,
  completionRate,
  lapseCountsAgainstChunk,
  planAssignments,
  recordCompletion,
  recordLapse,
  type HealthBook,
  type HealthPolicy,
  type WorkerSlots,
} from '../node/jobs/worker-health.ts';

const leaseMs = 1_000;
const policy: HealthPolicy = { quarantineMsBase: leaseMs, quarantineMsMax: 16 * leaseMs };
const blackHole: WorkerSlots = { name: 'hole', slots: 128, inFlight: 0, queue: 0 };
const honest = (name: string, inFlight = 0): WorkerSlots => ({ name, slots: 4, inFlight, queue: 0 });

function count(plan: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const name of plan) counts[name] = (counts[name] ?? 0) + 1;
  return counts;
}

test('a new worker advertising 128 free slots gets one chunk, not every chunk (slow start)', () => {
  const book: HealthBook = new Map();
  const plan = planAssignments(100, [blackHole, honest('node1'), honest('node2')], book, 0);
  assert.is(count(plan).hole, 1);
  assert.is(count(plan).node1, 1);
  assert.is(count(plan).node2, 1);
});

test('each completion doubles what a worker may hold, up to its advertised slots', () => {
  const book: HealthBook = new Map();
  assert.is(allowance(book, honest('node1'), 0), 1);
  recordCompletion(book, 'node1');
  assert.is(allowance(book, honest('node1'), 0), 2);
  recordCompletion(book, 'node1');
  assert.is(allowance(book, honest('node1'), 0), 4);
  recordCompletion(book, 'node1');
  assert.is(allowance(book, honest('node1'), 0), 4, 'never more than the 4 slots it advertises');
  assert.is(allowance(book, honest('node1', 3), 0), 1, 'minus what it holds');
});

test('a lapse quarantines the worker for one lease; then it gets a probe of one chunk', () => {
  const book: HealthBook = new Map();
  recordLapse(book, 'hole', 10_000, policy);
  assert.is(allowance(book, blackHole, 10_000), 0);
  assert.is(allowance(book, blackHole, 10_000 + leaseMs - 1), 0);
  assert.is(allowance(book, blackHole, 10_000 + leaseMs), 1, 'one probe once the backoff ended');
  assert.equal(planAssignments(10, [blackHole], book, 10_000 + leaseMs), ['hole']);
});

test('lapses in a row double the quarantine up to its maximum; lapses during it do not extend it', () => {
  const book: HealthBook = new Map();
  let now = 0;
  const ends: number[] = [];
  for (let probe = 0; probe < 7; probe++) {
    recordLapse(book, 'hole', now, policy);
    // Chunks it held before the quarantine lapse too; they must not push the end further out.
    recordLapse(book, 'hole', now + 1, policy);
    const end = book.get('hole')!.quarantinedUntilMs;
    ends.push(end - now);
    now = end;
  }
  assert.equal(ends, [1_000, 2_000, 4_000, 8_000, 16_000, 16_000, 16_000]);
});

test('a completion ends the quarantine and restarts the slow-start window', () => {
  const book: HealthBook = new Map();
  recordLapse(book, 'node1', 0, policy);
  recordCompletion(book, 'node1');
  assert.is(allowance(book, honest('node1'), 1), 2);
  assert.is(book.get('node1')!.quarantinedUntilMs, 0);
});

test('chunks go to the worker with the best completion rate first', () => {
  const book: HealthBook = new Map();
  for (let i = 0; i < 4; i++) recordCompletion(book, 'node2');
  recordLapse(book, 'node1', 0, policy);
  recordCompletion(book, 'node1');
  assert.ok(completionRate(book, 'node2') > completionRate(book, 'node1'));
  const plan = planAssignments(5, [honest('node1'), honest('node2')], book, 0);
  assert.equal(plan, ['node2', 'node2', 'node2', 'node2', 'node1']);
});

test('a quarantined worker gets nothing while others have room; with no room anywhere nothing is assigned', () => {
  const book: HealthBook = new Map();
  recordCompletion(book, 'node1');
  recordLapse(book, 'hole', 0, policy);
  assert.equal(planAssignments(3, [blackHole, honest('node1')], book, 10), ['node1', 'node1']);
  assert.equal(planAssignments(3, [blackHole, honest('node1', 2)], book, 10), []);
});

test('a lapse uses up a chunk attempt only on a worker that completed work since its last lapse', () => {
  const book: HealthBook = new Map();
  assert.is(lapseCountsAgainstChunk(book, 'hole'), false, 'a new worker proved nothing');
  recordLapse(book, 'hole', 0, policy);
  assert.is(lapseCountsAgainstChunk(book, 'hole'), false, 'a quarantined or probed worker proves nothing');
  recordCompletion(book, 'node1');
  assert.is(lapseCountsAgainstChunk(book, 'node1'), true, 'a healthy worker lapsing points at the chunk');
});

test('a black hole probed for an hour of simulated time holds at most one chunk at a time and is probed ever less often', () => {
  const book: HealthBook = new Map();
  const hour = 3_600_000;
  let probes = 0;
  let now = 0;
  while (now < hour) {
    const plan = planAssignments(50, [blackHole, honest('node1', 0)], book, now);
    const held = plan.filter((name) => name === 'hole').length;
    assert.ok(held <= 1, `black hole given ${held} chunks at ${now} ms`);
    if (held === 1) {
      probes++;
      // It never answers: the lease lapses.
      now += leaseMs;
      recordLapse(book, 'hole', now, policy);
    }
    recordCompletion(book, 'node1');
    now += 100;
  }
  // 1+2+4+8+16 leases of backoff, then one probe per 16 leases: about 3600/17 + 5, far below 3600.
  assert.ok(probes < 250, `${probes} probes in an hour`);
});

test.run();
