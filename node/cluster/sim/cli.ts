/**
 * Runs the Raft simulation from the command line.
 *
 *   node node/cluster/sim/cli.ts --seed 42            replay one seed; print its trace on failure
 *   node node/cluster/sim/cli.ts --seed 42 --verbose  replay one seed and print every event and message
 *   node node/cluster/sim/cli.ts --seeds 10000 [--from 1]   a campaign; exit 1 on any safety violation
 *
 * Options: --fault-ticks N (default 600), --json (the campaign summary as one JSON document).
 * Exit status: 0 when no seed broke safety (liveness failures are reported, not fatal), 1 on any
 * safety violation, 2 on a usage error.
 */
import { parseArgs } from 'node:util';
import { runCampaign } from './campaign.ts';
import { defaultSimOptions, runSeed } from './simulation.ts';
import type { SimOptions, SimResult } from './simulation.ts';

const usage = 'usage: node node/cluster/sim/cli.ts (--seed S [--verbose] | --seeds N [--from S] [--json]) [--fault-ticks N]';
const traceTailLines = 300;

/** A bad option value: main() prints it with the usage and exits 2. */
class UsageError extends Error {}

function integer(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < 0) throw new UsageError(`--${name} must be a non-negative integer, got ${value}`);
  return parsed;
}

function replayCommand(seed: number, options: SimOptions): string {
  const faultTicks = options.faultTicks === defaultSimOptions.faultTicks ? '' : ` --fault-ticks ${options.faultTicks}`;
  return `node node/cluster/sim/cli.ts --seed ${seed}${faultTicks}`;
}

async function replayOne(seed: number, options: SimOptions, verbose: boolean): Promise<number> {
  // Messages are always traced: logging draws no randomness, so the history is the same either way.
  const result = await runSeed(seed, { ...options, trace: true, traceMessages: true });
  console.log(`seed ${seed}: ${JSON.stringify(result.scenario)}`);
  const failed = result.safety !== null || result.liveness !== null;
  if (verbose) {
    console.log(result.trace.join('\n'));
  } else if (failed) {
    const tail = result.trace.slice(-traceTailLines);
    if (tail.length < result.trace.length) console.log(`... (${result.trace.length - tail.length} earlier events; --verbose prints them all)`);
    console.log(tail.join('\n'));
  }
  console.log(`stats: ${JSON.stringify(result.stats)}`);
  console.log(`ticks run: ${result.ticks}; ticks to a leader after heal: ${result.ticksToLeader ?? '-'}; ticks to commit a fresh proposal everywhere: ${result.ticksToCommit ?? '-'}`);
  if (result.safety !== null) console.log(`SAFETY VIOLATION: ${result.safety}`);
  if (result.liveness !== null) console.log(`LIVENESS FAILURE: ${result.liveness}`);
  if (!failed) console.log('ok: safe, and live after heal');
  return result.safety !== null ? 1 : 0;
}

async function campaign(from: number, count: number, options: SimOptions, json: boolean): Promise<number> {
  let done = 0;
  const progressEvery = Math.max(1, Math.floor(count / 20));
  const onResult = (result: SimResult): void => {
    done += 1;
    if (result.safety !== null) console.error(`seed ${result.seed}: SAFETY VIOLATION: ${result.safety.split('\n')[0]}\n  replay: ${replayCommand(result.seed, options)}`);
    else if (result.liveness !== null) console.error(`seed ${result.seed}: liveness failure: ${result.liveness}\n  replay: ${replayCommand(result.seed, options)}`);
    if (!json && done % progressEvery === 0 && done < count) console.error(`  ${done}/${count} seeds...`);
  };
  const summary = await runCampaign(from, count, options, onResult);
  const seconds = summary.milliseconds / 1000;
  if (json) {
    console.log(
      JSON.stringify({
        seedStart: summary.seedStart,
        seedsRun: summary.seedsRun,
        safetyViolations: summary.safetyViolations.map((r) => r.seed),
        livenessFailures: summary.livenessFailures.map((r) => r.seed),
        ticksToLeaderMax: summary.ticksToLeaderMax,
        ticksToLeaderMean: summary.ticksToLeaderMean,
        ticksToCommitMax: summary.ticksToCommitMax,
        persistsSlow: summary.persistsSlow,
        inputsWhilePersisting: summary.inputsWhilePersisting,
        overwrittenWhilePersisting: summary.overwrittenWhilePersisting,
        seedsOverwrittenWhilePersisting: summary.seedsOverwrittenWhilePersisting,
        seconds,
      }),
    );
  } else {
    console.log(`seeds run:                      ${summary.seedsRun} (${from}..${from + count - 1}, ${options.faultTicks} fault ticks each)`);
    console.log(`safety violations:              ${summary.safetyViolations.length}${summary.safetyViolations.length > 0 ? ` (seeds ${summary.safetyViolations.map((r) => r.seed).join(', ')})` : ''}`);
    console.log(`liveness failures:              ${summary.livenessFailures.length}${summary.livenessFailures.length > 0 ? ` (seeds ${summary.livenessFailures.map((r) => r.seed).join(', ')})` : ''}`);
    console.log(`max ticks to a leader after heal: ${summary.ticksToLeaderMax} (mean ${summary.ticksToLeaderMean.toFixed(1)})`);
    console.log(`max ticks from leader to a fresh proposal applied everywhere: ${summary.ticksToCommitMax}`);
    console.log(`leaders elected: ${summary.leadersElected}; crashes: ${summary.crashes}; snapshots installed: ${summary.snapshotsInstalled}; messages delivered: ${summary.messagesDelivered}`);
    console.log(`slow persists: ${summary.persistsSlow}; inputs taken while persisting: ${summary.inputsWhilePersisting}; Readys overwritten while persisting: ${summary.overwrittenWhilePersisting} (in ${summary.seedsOverwrittenWhilePersisting} seeds)`);
    console.log(`time taken:                     ${seconds.toFixed(1)} s (${(summary.seedsRun / seconds).toFixed(0)} seeds/s)`);
  }
  return summary.safetyViolations.length > 0 ? 1 : 0;
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        seed: { type: 'string' },
        seeds: { type: 'string' },
        from: { type: 'string' },
        'fault-ticks': { type: 'string' },
        verbose: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', default: false },
      },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage}`);
    return 2;
  }
  const values = parsed.values;
  if (values.help) {
    console.log(usage);
    return 0;
  }
  try {
    return await run(values);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(`${error.message}\n${usage}`);
    return 2;
  }
}

async function run(values: { seed?: string; seeds?: string; from?: string; 'fault-ticks'?: string; verbose: boolean; json: boolean }): Promise<number> {
  const options: SimOptions = { ...defaultSimOptions, faultTicks: integer('fault-ticks', values['fault-ticks'], defaultSimOptions.faultTicks) };
  if (values.seed !== undefined && values.seeds === undefined) return replayOne(integer('seed', values.seed, 0), options, values.verbose);
  if (values.seeds !== undefined && values.seed === undefined) return campaign(integer('from', values.from, 1), integer('seeds', values.seeds, 0), options, values.json);
  console.error(usage);
  return 2;
}

process.exitCode = await main();
