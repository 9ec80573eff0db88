/**
 * Runs the jobs simulation from the command line.
 *
 *   npm run sim:jobs -- --seed 42             replay one seed; print its trace on a violation
 *   npm run sim:jobs -- --seed 42 --verbose   replay one seed and print its whole trace
 *   npm run sim:jobs -- --seeds 2000 [--from 1]   a campaign; exit 1 on any invariant violation
 *
 * Exit status: 0 when no seed broke an invariant, 1 when one did, 2 on a usage error.
 */
import { parseArgs } from 'node:util';
import { runJobsCampaign, runJobsSeed, type JobsSimResult } from './simulation.ts';

const usage = `usage: npm run sim:jobs -- (--seed S [--verbose] | --seeds N [--from S])
  --seed S      replay one seed; prints the trace's tail when it breaks an invariant (all of it with --verbose)
  --seeds N     run seeds from..from+N-1 (--from defaults to 1); exit 1 if any breaks an invariant
  --help        this text`;
const traceTailLines = 60;

function count(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isSafeInteger(parsed) || parsed < 0) throw new RangeError(`--${name} must be a non-negative integer, got ${JSON.stringify(value)}`);
  return parsed;
}

async function replay(seed: number, verbose: boolean): Promise<number> {
  const result = await runJobsSeed(seed);
  if (verbose || result.violation !== null) console.log(result.trace.slice(verbose ? 0 : -traceTailLines).join('\n'));
  console.log(`seed ${seed}: ${JSON.stringify(result.stats)}`);
  console.log(result.violation === null ? 'ok: every invariant held and every job ended' : `VIOLATION: ${result.violation}`);
  return result.violation === null ? 0 : 1;
}

async function campaign(from: number, seeds: number): Promise<number> {
  const started = performance.now();
  const onResult = (result: JobsSimResult) => {
    if (result.violation !== null) console.error(`seed ${result.seed}: VIOLATION: ${result.violation}\n  replay: npm run sim:jobs -- --seed ${result.seed}`);
  };
  const summary = await runJobsCampaign(from, seeds, {}, onResult);
  const seconds = (performance.now() - started) / 1000;
  console.log(`seeds run:            ${summary.seedsRun} (${from}..${from + seeds - 1})`);
  console.log(`invariant violations: ${summary.violations.length}${summary.violations.length > 0 ? ` (seeds ${summary.violations.map((result) => result.seed).join(', ')})` : ''}`);
  console.log(`jobs completed: ${summary.completed}; failed: ${summary.failed}; node crashes: ${summary.crashes}; leader changes: ${summary.leaderChanges}`);
  console.log(`time taken:           ${seconds.toFixed(1)} s`);
  return summary.violations.length > 0 ? 1 : 0;
}

async function main(): Promise<number> {
  let values;
  try {
    values = parseArgs({ options: { seed: { type: 'string' }, seeds: { type: 'string' }, from: { type: 'string' }, verbose: { type: 'boolean', default: false }, help: { type: 'boolean', default: false } } }).values;
    if (values.help) {
      console.log(usage);
      return 0;
    }
    if (values.seed !== undefined && values.seeds === undefined) return await replay(count('seed', values.seed, 0), values.verbose);
    if (values.seeds !== undefined && values.seed === undefined) return await campaign(count('from', values.from, 1), count('seeds', values.seeds, 0));
    throw new RangeError('give --seed or --seeds');
  } catch (error) {
    if (!(error instanceof RangeError || (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))) throw error;
    console.error(`sim:jobs: ${(error as Error).message}\n${usage}`);
    return 2;
  }
}

process.exitCode = await main();
