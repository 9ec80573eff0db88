/**
 * A short chaos run on real processes (3 voters, 2 workers): 55 s of uploads while nodes are killed
 * (-9) and restarted, the coordinator at least twice, and paused with SIGSTOP. `npm run chaos` is the
 * long version; this one keeps the same invariants in CI.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { formatSummary, runChaos, type ChaosSummary } from '../tools/chaos/run.ts';

let summary: ChaosSummary;

test.before(async () => {
  summary = await runChaos({
    durationMs: 55_000,
    seed: 6,
    uploadBytesMin: 64 * 1024,
    uploadBytesMax: 2 * 1024 * 1024,
    uploadersMin: 2,
    uploadersMax: 3,
    coordinatorKillMsMin: 12_000,
    coordinatorKillMsMax: 18_000,
    faultMsMin: 7_000,
    faultMsMax: 12_000,
    settleTimeoutMs: 120_000,
  });
});

const context = () => `\n${formatSummary(summary)}`;

test('faults happened: at least 2 coordinator kills, a pause, and a failover observed', () => {
  assert.ok(summary.faults.coordinatorKills >= 2, `coordinator kills: ${summary.faults.coordinatorKills}${context()}`);
  assert.ok(summary.failovers >= 1, `failovers: ${summary.failovers}${context()}`);
  assert.is(summary.electionsTimedOut, 0, context());
});

test('every acknowledged job reached a terminal state; a failed one carries a reason (0 lost)', () => {
  assert.ok(summary.jobs.acknowledged >= 5, `acknowledged: ${summary.jobs.acknowledged}${context()}`);
  assert.is(summary.jobs.lost, 0, context());
  assert.is(summary.jobs.completed + summary.jobs.failed, summary.jobs.acknowledged, context());
});

test('every completed job downloads byte-identical, its .dcz decodes, its output never changed (0 corrupted)', () => {
  assert.ok(summary.jobs.completed >= 1, context());
  assert.is(summary.jobs.corrupted, 0, context());
});

test('no staged blobs are left for completed jobs, and no other invariant broke', () => {
  assert.is(summary.jobs.stagingLeftovers, 0, context());
  assert.equal(summary.problems, [], context());
});

test.run();
