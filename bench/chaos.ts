/**
 * `npm run chaos -- [--minutes M] [--seed S] [--json]`: a 5-node local cluster (3 voters, 2 workers)
 * under uploads and a seeded fault schedule (kill -9 and restart, the coordinator every 20-30 s;
 * SIGSTOP/SIGCONT), then the end-of-run checks. Exit 1 on any lost or corrupted job or other broken
 * invariant, 2 on a usage error. The summary goes to stdout; progress lines to stderr.
 */

import { parseArgs } from 'node:util';
import { chaosPassed, formatSummary, runChaos } from '../tools/chaos/run.ts';

function usage(message: string): never {
  process.stderr.write(`chaos: ${message}\nusage: npm run chaos -- [--minutes M] [--seed S] [--json]\n`);
  process.exit(2);
}

const help = `usage: npm run chaos -- [--minutes M] [--seed S] [--json]
A 5-node local cluster (3 voters, 2 workers) under uploads and a seeded fault schedule: kill -9 and
restart (the coordinator every 20-30 s), SIGSTOP/SIGCONT; then every acknowledged job must have ended,
every completed one download byte-identical. Exit 0 if nothing was lost or corrupted, 1 otherwise, 2 on
a usage error.
  --minutes M   how long faults are injected (default 10)
  --seed S      the fault schedule's seed (default: random, printed in the summary)
  --json        print the summary as JSON
`;

let values: { minutes?: string; seed?: string; json?: boolean; help?: boolean };
try {
  ({ values } = parseArgs({ options: { minutes: { type: 'string' }, seed: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }));
} catch (error) {
  usage((error as Error).message);
}
if (values.help) {
  process.stdout.write(help);
  process.exit(0);
}
const minutes = Number(values.minutes ?? 10);
if (!Number.isFinite(minutes) || minutes <= 0 || minutes > 24 * 60) usage(`--minutes: expected a number of minutes above 0, got ${values.minutes}`);
const seed = values.seed === undefined ? Math.floor(Math.random() * 1_000_000) : Number(values.seed);
if (!Number.isSafeInteger(seed) || seed < 0) usage(`--seed: expected a non-negative integer, got ${values.seed}`);

const started = Date.now();
const log = (line: string) => process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s] ${line}\n`);
const summary = await runChaos({ durationMs: Math.round(minutes * 60_000), seed, log });
process.stdout.write(values.json ? `${JSON.stringify(summary, null, 2)}\n` : `${formatSummary(summary)}\n`);
process.exitCode = chaosPassed(summary) ? 0 : 1;
