/**
 * `npm run test:fast`: the inner-loop tier. It runs the test files that start no process and no browser
 * (unit tests, the Raft and jobs simulations, in-process libp2p and worker threads), found by reading each
 * test file's imports within the repository: a file is slow when it, or a test, tools or bench module it imports,
 * imports `node:child_process` or playwright. New tests fall into a tier by themselves; `npm test` still
 * runs everything.
 *
 * The files spend most of their time waiting on timers, not on the CPU, so they run in a bounded pool of
 * parallel processes, each file alone in its own uvu process (its own module state, timers and ports, as
 * under `npm test`). A file's output is printed whole when it ends, so files never interleave; the longest
 * files (by their last run's time, kept in node_modules/.cache) start first so the tail is short.
 *
 *   node test/fast.ts [--jobs N] [-b] [--list] [--no-typecheck] [uvu options]
 *     --jobs N   files run at once (default 4: twice the cores of a 2-core machine, as they mostly wait)
 *     -b         stop at the first failure: in a file (uvu's -b), and no new files after a failing one
 *     --list     print the fast files and exit
 *     --dir DIR  run the fast files of DIR instead of test/, without the type check (the runner's own test)
 *     --no-typecheck  skip the type check, which otherwise runs beside the tests (tsc takes about 12 s of
 *                CPU; Node strips types without checking them, so the tests need not wait for it)
 * Other arguments are passed to uvu. Ends with `Total / Passed / Skipped / Failed` over every file, and
 * exits 1 when the type check, any test or any file's process failed.
 */
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { spawn } from 'node:child_process';

const testDir = dirname(new URL(import.meta.url).pathname);
const root = resolve(testDir, '..');
const slowImport = /from\s+['"](node:child_process|playwright-core|playwright)['"]/;
const relativeImport = /(?:import|export)[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)['"]/g;
const uvuBin = join(root, 'node_modules', 'uvu', 'bin.js');
const tscBin = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
/** Each file's wall time in its last run, so the next run starts the longest first. */
const timesFile = join(root, 'node_modules', '.cache', 'dcas-test-fast.json');
/** Files run at once: they mostly wait on timers, so twice the cores of the 2-core machine we run on. */
const jobsDefault = 4;
const jobsMax = 32;
/**
 * V8's code cache for the modules every file's process loads again (libp2p, ws, pino, tsc itself): about
 * 0.2 to 0.5 s of CPU less per process. Keyed by each module's contents, so a changed file is compiled anew.
 */
const compileCacheDir = join(root, 'node_modules', '.cache', 'node-compile-cache');

/** Whether `file` reaches a process launcher through test, tools or bench modules (node/ starts no processes on import). */
function startsProcesses(file: string, seen = new Set<string>()): boolean {
  if (seen.has(file)) return false;
  seen.add(file);
  const source = readFileSync(file, 'utf8');
  if (slowImport.test(source)) return true;
  for (const match of source.matchAll(relativeImport)) {
    const target = resolve(dirname(file), match[1]);
    if (!['test', 'bench', 'tools'].some((folder) => target.startsWith(join(root, folder)))) continue;
    if (target.endsWith('.ts') && startsProcesses(target, seen)) return true;
  }
  return false;
}


/** uvu's closing counts (`Total: 13 Passed: 12 Skipped: 0`), colours removed; zeros when the file crashed before them. */
function countsOf(output: string): { total: number; passed: number; skipped: number } {
  const plain = output.replace(/\x1b\[[0-9;]*m/g, '');
  const count = (label: string) => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(plain)?.[1] ?? 0);
  return { total: count('Total'), passed: count('Passed'), skipped: count('Skipped') };
}

interface ProcessResult {
  exitCode: number | null;
  signal: string | null;
  output: string;
  wallMs: number;
}

interface FileResult extends ProcessResult {
  file: string;
  total: number;
  passed: number;
  skipped: number;
}

/** Runs a Node script in the repository; its stdout and stderr together, in the order they came. */
function runNode(what: string, args: readonly string[]): Promise<ProcessResult> {
  const startedMs = performance.now();
  const env = { NODE_COMPILE_CACHE: compileCacheDir, ...process.env };
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
  return new Promise((resolveRun) => {
    child.once('error', (error) => chunks.push(Buffer.from(`test/fast.ts: cannot start ${what}: ${error.message}\n`)));
    child.once('close', (exitCode, signal) => {
      resolveRun({ exitCode, signal, output: Buffer.concat(chunks).toString('utf8'), wallMs: performance.now() - startedMs });
    });
  });
}

/** Runs one test file alone in its own uvu process. */
async function runFile(file: string, dir: string, uvuArgs: readonly string[]): Promise<FileResult> {
  const pattern = `^${file.replace(/[.]/g, '\\.')}$`;
  const result = await runNode(`uvu for ${file}`, [uvuBin, dir, pattern, ...uvuArgs]);
  return { file, ...result, ...countsOf(result.output) };
}

/** The type check, beside the tests rather than before them: Node strips the types it runs without checking them. */
async function typeCheck(): Promise<ProcessResult> {
  const result = await runNode('tsc', [tscBin, '--noEmit', '-p', 'tsconfig.json']);
  process.stdout.write(`type check (tsc --noEmit -p tsconfig.json): ${result.exitCode === 0 ? 'no errors' : 'FAILED'}\n${result.output}`);
  return result;
}

function failed(result: FileResult): boolean {
  return result.exitCode !== 0 || result.passed + result.skipped < result.total;
}

/** Runs `files` at most `jobs` at a time, printing each file's output as it ends; with `bail`, starts no more after a failure. */
async function runPool(files: readonly string[], options: Options): Promise<FileResult[]> {
  const queue = [...files];
  const results: FileResult[] = [];
  const worker = async () => {
    for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
      const result = await runFile(file, options.dir, options.uvuArgs);
      results.push(result);
      process.stdout.write(result.output.endsWith('\n') ? result.output : `${result.output}\n`);
      if (result.signal !== null) process.stdout.write(`test/fast.ts: ${file} ended by ${result.signal}\n`);
      if (options.bail && failed(result)) queue.length = 0;
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.jobs, files.length) }, worker));
  return results;
}

function readTimes(): Record<string, number> {
  try {
    return JSON.parse(readFileSync(timesFile, 'utf8')) as Record<string, number>;
  } catch {
    return {};
  }
}

/** Files without a recorded time first (a new file may be long), then the longest by the last run's time; sizes order the unknown. */
function longestFirst(files: readonly string[], dir: string): string[] {
  const times = dir === testDir ? readTimes() : {};
  const estimate = (file: string) => times[file] ?? statSync(join(dir, file)).size;
  return [...files].sort((a, b) => (times[b] === undefined ? 1 : 0) - (times[a] === undefined ? 1 : 0) || estimate(b) - estimate(a));
}

function recordTimes(results: readonly FileResult[]): void {
  const times = { ...readTimes(), ...Object.fromEntries(results.map((result) => [result.file, Math.round(result.wallMs)])) };
  try {
    mkdirSync(dirname(timesFile), { recursive: true });
    writeFileSync(timesFile, `${JSON.stringify(times, null, 2)}\n`);
  } catch {
    // Only the order of the next run depends on it.
  }
}

function summary(results: readonly FileResult[], fileCount: number, types: ProcessResult | undefined, wallMs: number): string {
  const sum = (pick: (result: FileResult) => number) => results.reduce((total, result) => total + pick(result), 0);
  const total = sum((result) => result.total);
  const passed = sum((result) => result.passed);
  const skipped = sum((result) => result.skipped);
  const failedFiles = results.filter(failed);
  const slowest = [...results].sort((a, b) => b.wallMs - a.wallMs).slice(0, 5);
  const lines = [
    '',
    ...(types === undefined ? [] : [`  Types:     ${types.exitCode === 0 ? 'no errors' : `tsc failed (exit ${types.exitCode ?? types.signal})`} (${(types.wallMs / 1000).toFixed(1)}s)`]),
    `  Files:     ${results.length} of ${fileCount} run`,
    `  Total:     ${total}`,
    `  Passed:    ${passed}`,
    `  Skipped:   ${skipped}`,
    `  Failed:    ${total - passed - skipped}${failedFiles.length > 0 ? ` (in ${failedFiles.map((result) => `${result.file}${result.exitCode === 0 ? '' : ` exit ${result.exitCode ?? result.signal}`}`).join(', ')})` : ''}`,
    `  Duration:  ${(wallMs / 1000).toFixed(1)}s (slowest: ${slowest.map((result) => `${result.file} ${(result.wallMs / 1000).toFixed(1)}s`).join(', ')})`,
    '',
  ];
  return `${lines.join('\n')}\n`;
}

interface Options {
  jobs: number;
  bail: boolean;
  list: boolean;
  typeCheck: boolean;
  dir: string;
  uvuArgs: string[];
}

/** --jobs N, -b, --list and --dir are ours; everything else goes to uvu. */
function parseArguments(argv: readonly string[]): Options {
  const options: Options = { jobs: jobsDefault, bail: false, list: false, typeCheck: true, dir: testDir, uvuArgs: [] };
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index];
    if (argument === '--list') options.list = true;
    else if (argument === '--no-typecheck') options.typeCheck = false;
    else if (argument === '-b' || argument === '--bail') {
      options.bail = true;
      options.uvuArgs.push(argument);
    }
    else if (argument === '--jobs' || argument === '-j') {
      const jobs = Number(argv[++index]);
      if (!Number.isInteger(jobs) || jobs < 1 || jobs > jobsMax) {
        process.stderr.write(`test/fast.ts: ${argument} ${argv[index] ?? ''}: expected a whole number from 1 to ${jobsMax}\n`);
        process.exit(2);
      }
      options.jobs = jobs;
    } else if (argument === '--dir') options.dir = resolve(argv[++index] ?? '.');
    else options.uvuArgs.push(argument);
  }
  return options;
}

const options = parseArguments(process.argv.slice(2));
if (!statSync(options.dir, { throwIfNoEntry: false })?.isDirectory()) {
  process.stderr.write(`test/fast.ts: --dir ${options.dir}: not a folder\n`);
  process.exit(2);
}
const fast = readdirSync(options.dir)
  .filter((name) => name.endsWith('.test.ts'))
  .filter((name) => !startsProcesses(join(options.dir, name)));
if (options.list) {
  process.stdout.write(`${fast.join('\n')}\n`);
  process.exit(0);
}
const startedMs = performance.now();
// The repository's type check, unless another folder's tests are run.
const typesChecked = options.typeCheck && options.dir === testDir ? typeCheck() : undefined;
const results = await runPool(longestFirst(fast, options.dir), options);
const types = await typesChecked;
if (options.dir === testDir) recordTimes(results);
process.stdout.write(summary(results, fast.length, types, performance.now() - startedMs));
process.exit(results.some(failed) || results.length < fast.length || (types !== undefined && types.exitCode !== 0) ? 1 : 0);
