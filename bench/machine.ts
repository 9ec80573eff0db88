/**
 * The machine a run measured, recorded beside its figures.
 */

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, platform, release, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { Machine } from './results.ts';

const repositoryRoot = fileURLToPath(new URL('../', import.meta.url));

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: repositoryRoot, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

export function describeMachine(): Machine {
  let kernelWasmSha256 = '';
  try {
    kernelWasmSha256 = createHash('sha256').update(readFileSync(new URL('../build/kernel.wasm', import.meta.url))).digest('hex');
  } catch {
    kernelWasmSha256 = '(build/kernel.wasm missing)';
  }
  return {
    cpuModel: cpus()[0]?.model.trim() ?? 'unknown',
    cores: availableParallelism(),
    memoryBytes: totalmem(),
    nodeVersion: process.version,
    platform: platform(),
    kernelRelease: release(),
    commit: git(['rev-parse', 'HEAD']) || 'unknown',
    dirty: git(['status', '--porcelain', '--untracked-files=no']) !== '',
    kernelWasmSha256,
    loadAverageAtStart: loadavg()[0],
  };
}
