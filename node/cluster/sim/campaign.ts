/** Runs many seeds and sums them up; used by the CLI and the tests. */
import { runSeed } from './simulation.ts';
import type { SimOptions, SimResult } from './simulation.ts';

export interface CampaignSummary {
  seedStart: number;
  seedsRun: number;
  safetyViolations: SimResult[];
  livenessFailures: SimResult[];
  ticksToLeaderMax: number;
  ticksToCommitMax: number;
  ticksToLeaderMean: number;
  leadersElected: number;
  crashes: number;
  snapshotsInstalled: number;
  messagesDelivered: number;
  /** Summed over seeds: see SimStats. */
  persistsSlow: number;
  inputsWhilePersisting: number;
  overwrittenWhilePersisting: number;
  /** Seeds in which some Ready's entries were overwritten while it was being persisted. */
  seedsOverwrittenWhilePersisting: number;
  milliseconds: number;
}

export async function runCampaign(
  seedStart: number,
  seedCount: number,
  options: Partial<SimOptions> = {},
  onResult?: (result: SimResult) => void,
): Promise<CampaignSummary> {
  const started = performance.now();
  const summary: CampaignSummary = {
    seedStart,
    seedsRun: 0,
    safetyViolations: [],
    livenessFailures: [],
    ticksToLeaderMax: 0,
    ticksToCommitMax: 0,
    ticksToLeaderMean: 0,
    leadersElected: 0,
    crashes: 0,
    snapshotsInstalled: 0,
    messagesDelivered: 0,
    persistsSlow: 0,
    inputsWhilePersisting: 0,
    overwrittenWhilePersisting: 0,
    seedsOverwrittenWhilePersisting: 0,
    milliseconds: 0,
  };
  let ticksToLeaderSum = 0;
  let ticksToLeaderCount = 0;
  for (let seed = seedStart; seed < seedStart + seedCount; seed += 1) {
    const result = await runSeed(seed, { ...options, trace: false });
    summary.seedsRun += 1;
    if (result.safety !== null) summary.safetyViolations.push(result);
    else if (result.liveness !== null) summary.livenessFailures.push(result);
    if (result.ticksToLeader !== null) {
      summary.ticksToLeaderMax = Math.max(summary.ticksToLeaderMax, result.ticksToLeader);
      ticksToLeaderSum += result.ticksToLeader;
      ticksToLeaderCount += 1;
    }
    if (result.ticksToCommit !== null) summary.ticksToCommitMax = Math.max(summary.ticksToCommitMax, result.ticksToCommit);
    summary.leadersElected += result.stats.leadersElected;
    summary.crashes += result.stats.crashes;
    summary.snapshotsInstalled += result.stats.snapshotsInstalled;
    summary.messagesDelivered += result.stats.messagesDelivered;
    summary.persistsSlow += result.stats.persistsSlow;
    summary.inputsWhilePersisting += result.stats.inputsWhilePersisting;
    summary.overwrittenWhilePersisting += result.stats.overwrittenWhilePersisting;
    if (result.stats.overwrittenWhilePersisting > 0) summary.seedsOverwrittenWhilePersisting += 1;
    onResult?.(result);
  }
  summary.ticksToLeaderMean = ticksToLeaderCount === 0 ? 0 : ticksToLeaderSum / ticksToLeaderCount;
  summary.milliseconds = performance.now() - started;
  return summary;
}
