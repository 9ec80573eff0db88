/**
 * Image benchmark: DCaS's image codecs beside the Debian tools on the seeded corpus
 * (bench/images-corpus.ts), whole processes for the peers, each on its own copy of every image:
 *
 *   png-lossless (oxipng in @napi-rs/image) beside `optipng -o2`
 *   png-lossy --quality 60-80 (libimagequant in sharp, then oxipng) beside `pngquant --quality 60-80`
 *
 * Both sides run as many at once as the machine has cores; an image whose output is not smaller counts
 * at its input size on both sides (pngquant: --skip-if-larger, and exit 99 when the quality is not met).
 * Prints total bytes, ratio (output / input), images/s and the checks: within 5% of each peer's
 * total, PASS or FAIL with the figures.
 *
 *   npm run bench:images -- [--dir DIR] [--seed N] [--count N] [--threads N] [--json]
 *   npm run bench:images -- --cluster [--count N]   (only the cluster part: one node against three)
 */

import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createImagePool, type ImageOptions } from '../node/codec/index.ts';
import { corpusCountDefault, generateImageCorpus, type CorpusImage } from './images-corpus.ts';
import { benchImagesCluster } from './images-cluster.ts';

export interface ImageBenchRow {
  name: string;
  images: number;
  inputBytes: number;
  outputBytes: number;
  /** Output bytes over input bytes. */
  ratio: number;
  seconds: number;
  imagesPerSecond: number;
}

export interface ImageBenchCheck {
  name: string;
  ours: number;
  peer: number;
  /** ours / peer - 1, as a fraction: 0.03 is 3% larger than the peer. */
  excess: number;
  pass: boolean;
}

/** The bar: our total within 5% of the peer's. */
const excessMax = 0.05;

/** Runs `work` on every item, `concurrency` at a time, in order of the list. */
async function eachLimited<T>(items: readonly T[], concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!);
  });
  await Promise.all(lanes);
}

function runProcess(command: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let errors = '';
    child.stderr.on('data', (data: Buffer) => (errors = (errors + data.toString()).slice(-2000)));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === null) reject(new Error(`${command} ${args.join(' ')}: killed`));
      else if (code !== 0 && code !== 98 && code !== 99) reject(new Error(`${command} ${args.join(' ')}: exit ${code}: ${errors.trim()}`));
      else resolve(code);
    });
  });
}

function row(name: string, images: number, inputBytes: number, outputBytes: number, seconds: number): ImageBenchRow {
  return { name, images, inputBytes, outputBytes, ratio: outputBytes / inputBytes, seconds, imagesPerSecond: images / seconds };
}

async function benchOurs(name: string, corpus: CorpusImage[], options: ImageOptions, threads: number): Promise<ImageBenchRow> {
  const pool = createImagePool({ threads });
  let inputBytes = 0;
  let outputBytes = 0;
  try {
    const inputs = corpus.map((image) => readFileSync(image.path));
    const started = performance.now();
    await eachLimited(inputs, threads * 2, async (bytes) => {
      const result = await pool.optimize(bytes, options);
      inputBytes += result.inputBytes;
      outputBytes += result.outputBytes;
    });
    return row(name, corpus.length, inputBytes, outputBytes, (performance.now() - started) / 1000);
  } finally {
    await pool.close();
  }
}

/** A peer tool on copies: `args(input, output)` writes `output`, or leaves it absent for "keep the input". */
async function benchPeer(name: string, command: string, corpus: CorpusImage[], threads: number, args: (input: string, output: string) => string[]): Promise<ImageBenchRow> {
  const work = mkdtempSync(join(tmpdir(), 'dcas-images-peer-'));
  try {
    const copies = corpus.map((image, index) => {
      const input = join(work, `${index}-in.png`);
      copyFileSync(image.path, input);
      return { input, output: join(work, `${index}-out.png`), inputBytes: statSync(input).size };
    });
    const started = performance.now();
    await eachLimited(copies, threads, async (copy) => void (await runProcess(command, args(copy.input, copy.output))));
    const seconds = (performance.now() - started) / 1000;
    let inputBytes = 0;
    let outputBytes = 0;
    for (const copy of copies) {
      inputBytes += copy.inputBytes;
      outputBytes += existsSync(copy.output) ? Math.min(statSync(copy.output).size, copy.inputBytes) : copy.inputBytes;
    }
    return row(name, corpus.length, inputBytes, outputBytes, seconds);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function check(name: string, ours: ImageBenchRow, peer: ImageBenchRow): ImageBenchCheck {
  const excess = ours.outputBytes / peer.outputBytes - 1;
  return { name, ours: ours.outputBytes, peer: peer.outputBytes, excess, pass: excess <= excessMax };
}

export interface ImageBenchResult {
  corpus: { images: number; inputBytes: number; dir: string | undefined; seed: number };
  threads: number;
  rows: ImageBenchRow[];
  checks: ImageBenchCheck[];
}

export async function benchImages(options: { dir?: string; seed: number; count: number; threads: number; log: (line: string) => void }): Promise<ImageBenchResult> {
  const corpus = await generateImageCorpus({ dir: options.dir, seed: options.seed, count: options.count });
  const inputBytes = corpus.reduce((total, image) => total + statSync(image.path).size, 0);
  options.log(`${corpus.length} images, ${inputBytes} bytes, ${options.threads} at a time`);
  const quality = { min: 60, max: 80 };
  const rows: ImageBenchRow[] = [];
  const measure = async (result: Promise<ImageBenchRow>): Promise<ImageBenchRow> => {
    const measured = await result;
    rows.push(measured);
    options.log(formatRow(measured));
    return measured;
  };
  const lossless = await measure(benchOurs('dcas png-lossless', corpus, { mode: 'png-lossless' }, options.threads));
  const optipng = await measure(benchPeer('optipng -o2', 'optipng', corpus, options.threads, (input, output) => ['-quiet', '-o2', '-out', output, input]));
  const lossy = await measure(benchOurs('dcas png-lossy 60-80', corpus, { mode: 'png-lossy', quality }, options.threads));
  const pngquant = await measure(
    benchPeer('pngquant --quality 60-80', 'pngquant', corpus, options.threads, (input, output) => ['--quality', '60-80', '--skip-if-larger', '--force', '--output', output, input]),
  );
  const checks = [check('png-lossless within 5% of optipng -o2 total', lossless, optipng), check('png-lossy within 5% of pngquant total', lossy, pngquant)];
  return { corpus: { images: corpus.length, inputBytes, dir: options.dir, seed: options.seed }, threads: options.threads, rows, checks };
}

function formatRow(measured: ImageBenchRow): string {
  return `${measured.name.padEnd(26)} ${String(measured.inputBytes).padStart(10)} -> ${String(measured.outputBytes).padStart(10)} bytes  ratio ${measured.ratio.toFixed(3)}  ${measured.imagesPerSecond.toFixed(2).padStart(6)} images/s  (${measured.seconds.toFixed(1)} s)`;
}

export function formatChecks(checks: ImageBenchCheck[]): string[] {
  return checks.map((entry) => `${entry.pass ? 'PASS' : 'FAIL'} ${entry.name}: ${entry.ours} vs ${entry.peer} bytes (${entry.excess >= 0 ? '+' : ''}${(entry.excess * 100).toFixed(1)}%, limit +5.0%)`);
}

// ---- Command line --------------------------------------------------------------------------------

const usageText = `usage: npm run bench:images -- [--dir DIR] [--seed N] [--count N] [--threads N] [--json]
  --dir DIR     corpus folder (made if missing; default in the system's temporary folder)
  --seed N      corpus seed (default 1)
  --count N     images in the corpus (default ${corpusCountDefault}, at least 8)
  --threads N   images coded at once, by our threads and by peer processes alike (default: cores)
  --json        print one JSON document instead of the table
  --cluster     only the cluster part: the corpus as one png-lossy 60-80 images job on a local
                1-node and then 3-node cluster (dcas cluster up): images/s, ratio, images per node`;

function usage(message: string): never {
  process.stderr.write(`bench images: ${message}\n${usageText}\n`);
  process.exit(2);
}

async function main(): Promise<void> {
  let values: { dir?: string; seed?: string; count?: string; threads?: string; json?: boolean; cluster?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: { dir: { type: 'string' }, seed: { type: 'string' }, count: { type: 'string' }, threads: { type: 'string' }, json: { type: 'boolean' }, cluster: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (error) {
    usage((error as Error).message);
  }
  if (values.help === true) {
    process.stdout.write(`${usageText}\n`);
    return;
  }
  const seed = Number(values.seed ?? 1);
  const count = Number(values.count ?? corpusCountDefault);
  const threads = Number(values.threads ?? availableParallelism());
  if (!Number.isSafeInteger(seed) || seed < 0) usage(`--seed: expected a non-negative integer, got ${values.seed}`);
  if (!Number.isInteger(count) || count < 8) usage(`--count: expected an integer of at least 8, got ${values.count}`);
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) usage(`--threads: expected an integer 1 to 256, got ${values.threads}`);
  const json = values.json === true;
  if (values.cluster === true) return mainCluster({ dir: values.dir, seed, count, json });
  let result: ImageBenchResult;
  try {
    result = await benchImages({ dir: values.dir, seed, count, threads, log: (line) => (json ? undefined : process.stdout.write(`${line}\n`)) });
  } catch (error) {
    process.stderr.write(`bench images: ${(error as Error).message}\n`);
    process.exit(1);
  }
  if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  else process.stdout.write(`${formatChecks(result.checks).join('\n')}\n`);
  process.exitCode = result.checks.every((entry) => entry.pass) ? 0 : 1;
}

async function mainCluster(options: { dir?: string; seed: number; count: number; json: boolean }): Promise<void> {
  const log = (line: string) => (options.json ? undefined : process.stdout.write(`${line}\n`));
  try {
    const corpus = await generateImageCorpus({ dir: options.dir, seed: options.seed, count: options.count });
    log(`${corpus.length} images as one images job, png-lossy 60-80, one node against three`);
    const rows = await benchImagesCluster({ corpus, mode: 'png-lossy', quality: '60-80', log });
    if (options.json) process.stdout.write(`${JSON.stringify({ corpus: { images: corpus.length, seed: options.seed }, rows }, null, 2)}\n`);
  } catch (error) {
    process.stderr.write(`bench images: ${(error as Error).message}\n`);
    process.exit(1);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
