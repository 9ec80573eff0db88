/**
 * `npm run test:fast`: the inner-loop tier. It runs the test files that start no process and no browser
 * (unit tests, the Raft and jobs simulations, in-process libp2p and worker threads), found by reading each
 * test file's imports within the repository: a file is slow when it, or a test, tools or bench module it imports,
 * imports `node:child_process` or playwright. New tests fall into a tier by themselves; `npm test` still
 * runs everything. Arguments are passed to uvu (e.g. `-b` to stop at the first failure).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { spawnSync } from 'node:child_process';

const testDir = dirname(new URL(import.meta.url).pathname);
const root = resolve(testDir, '..');
const slowImport = /from\s+['"](node:child_process|playwright-core|playwright)['"]/;
const relativeImport = /(?:import|export)[^'"]*?from\s+['"](\.{1,2}\/[^'"]+)['"]/g;

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

const fast = readdirSync(testDir)
  .filter((name) => name.endsWith('.test.ts'))
  .filter((name) => !startsProcesses(join(testDir, name)));
if (process.argv.includes('--list')) {
  process.stdout.write(`${fast.join('\n')}\n`);
  process.exit(0);
}
const pattern = `^(${fast.map((name) => name.replace(/[.]/g, '\\.')).join('|')})$`;
const uvu = join(root, 'node_modules', '.bin', 'uvu');
const result = spawnSync(uvu, ['test', pattern, ...process.argv.slice(2)], { stdio: 'inherit', cwd: root });
process.exit(result.status ?? 1);
