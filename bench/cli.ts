/**
 * The local CLI as a user runs it: `dcas compress` and `dcas decompress` as whole processes on all
 * cores, timed from spawn to exit (start-up included), beside the speed the CLI reports for its own work.
 */

import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CliFigures } from './results.ts';
import { megabytesPerSecond, spread } from './stats.ts';

/** The launcher the README documents (bin/dcas): what a user runs, with its environment. */
const dcasLauncher = new URL('../bin/dcas', import.meta.url).pathname;

interface CliReport {
  originalSize: number;
  compressedSize: number;
  threads: number;
  mbPerSecond: number;
}

function runDcas(args: string[]): Promise<{ report: CliReport; seconds: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(dcasLauncher, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data) => (stdout += String(data)));
    child.stderr.on('data', (data) => (stderr += String(data)));
    child.once('error', reject);
    child.once('exit', (code) => {
      const seconds = (performance.now() - started) / 1000;
      if (code !== 0) return reject(new Error(`dcas ${args.join(' ')} exited ${code}: ${stderr.trim()}`));
      try {
        resolve({ report: JSON.parse(stdout) as CliReport, seconds });
      } catch {
        reject(new Error(`dcas ${args.join(' ')} printed no JSON: ${stdout.slice(0, 200)}`));
      }
    });
  });
}

export async function benchCli(dataset: { name: string; bytes: Uint8Array }, options: { runs: number; bytesMax: number }): Promise<CliFigures> {
  const folder = await mkdtemp(join(tmpdir(), 'dcas-bench-cli-'));
  try {
    const input = join(folder, `${dataset.name}.bin`);
    const bytes = dataset.bytes.subarray(0, Math.min(dataset.bytes.length, options.bytesMax));
    await writeFile(input, bytes);
    const compressed = `${input}.dcz`;
    const restored = join(folder, 'restored.bin');
    const compressRuns: Array<{ report: CliReport; seconds: number }> = [];
    const decompressRuns: Array<{ report: CliReport; seconds: number }> = [];
    for (let run = 0; run < options.runs; run++) {
      compressRuns.push(await runDcas(['compress', input, '-o', compressed, '--force', '--json']));
      decompressRuns.push(await runDcas(['decompress', compressed, '-o', restored, '--force', '--json']));
      const restoredBytes = (await stat(restored)).size;
      if (restoredBytes !== bytes.length) throw new Error(`dcas decompress gave ${restoredBytes} bytes for ${bytes.length}`);
    }
    const last = compressRuns[compressRuns.length - 1].report;
    return {
      dataset: dataset.name,
      inputBytes: bytes.length,
      compressedBytes: last.compressedSize,
      ratio: last.compressedSize / Math.max(bytes.length, 1),
      threads: last.threads ?? availableParallelism(),
      compressMBps: spread(compressRuns.map(({ seconds }) => megabytesPerSecond(bytes.length, seconds))),
      decompressMBps: spread(decompressRuns.map(({ seconds }) => megabytesPerSecond(bytes.length, seconds))),
      compressReportedMBps: spread(compressRuns.map(({ report }) => report.mbPerSecond)),
      decompressReportedMBps: spread(decompressRuns.map(({ report }) => report.mbPerSecond)),
    };
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}
