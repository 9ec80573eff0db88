/**
 * `npm run test:fast`'s runner (test/fast.ts) on a folder of small test files: it runs only the files
 * that start no process, each in its own process, prints each file's output whole, sums the counts, and
 * exits 1 when a test fails. The folder is a temporary one; its files import uvu by its path here.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'uvu';
import * as assert from 'uvu/assert';

const root = new URL('..', import.meta.url).pathname;
const runner = join(root, 'test', 'fast.ts');
const uvuUrl = pathToFileURL(join(root, 'node_modules', 'uvu', 'dist', 'index.mjs')).href;
const uvuAssertUrl = pathToFileURL(join(root, 'node_modules', 'uvu', 'assert', 'index.mjs')).href;
const runTimeoutMs = 120_000;

/** A test file that prints `lines` numbered lines, yielding to the event loop between them. */
function chattyFile(name: string, lines: number, failing: boolean): string {
  return `import { test } from '${uvuUrl}';
import * as assert from '${uvuAssertUrl}';
test('${name} talks', async () => {
  for (let i = 0; i < ${lines}; i++) {
    process.stdout.write('${name} line ' + i + '\\n');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
});
test('${name} checks', () => assert.is(1 + 1, ${failing ? 3 : 2}));
test.run();
`;
}

function runRunner(args: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [runner, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (data) => (output += String(data)));
    child.stderr.on('data', (data) => (output += String(data)));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`test/fast.ts did not finish within ${runTimeoutMs} ms:\n${output}`));
    }, runTimeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output: output.replace(/\x1b\[[0-9;]*m/g, '') });
    });
  });
}

function withFolder(files: Record<string, string>, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'dcas-fast-runner-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

test('files run in parallel each print their output whole; a failing test makes the sum and the exit say so; a file that starts processes is not run', async () => {
  const files = {
    'one.test.ts': chattyFile('one', 20, false),
    'two.test.ts': chattyFile('two', 20, true),
    'three.test.ts': chattyFile('three', 20, false),
    'spawns.test.ts': `import { spawn } from 'node:child_process';\n${chattyFile('spawns', 1, true)}`,
  };
  await withFolder(files, async (dir) => {
    const { code, output } = await runRunner(['--dir', dir, '--jobs', '3']);
    assert.is(code, 1, output);
    assert.not.match(output, 'spawns line', 'the file that imports node:child_process is left to npm test');
    for (const name of ['one', 'two', 'three']) {
      const lines = output.split('\n').filter((line) => /^(one|two|three) line \d+$/.test(line));
      const first = lines.findIndex((line) => line.startsWith(`${name} line`));
      const own = lines.slice(first, first + 20);
      assert.equal(own, Array.from({ length: 20 }, (_, i) => `${name} line ${i}`), `${name}'s lines together and in order`);
    }
    assert.match(output, /Files:\s+3 of 3 run/);
    assert.match(output, /Total:\s+6\n/);
    assert.match(output, /Passed:\s+5\n/);
    assert.match(output, /Failed:\s+1 \(in two\.test\.ts exit 1\)/);
  });
});

test('when every test passes the exit is 0; a bad --jobs is a usage error (exit 2) on one line', async () => {
  await withFolder({ 'one.test.ts': chattyFile('one', 2, false), 'two.test.ts': chattyFile('two', 2, false) }, async (dir) => {
    const passing = await runRunner(['--dir', dir]);
    assert.is(passing.code, 0, passing.output);
    assert.match(passing.output, /Failed:\s+0\n/);
    const usage = await runRunner(['--dir', dir, '--jobs', 'many']);
    assert.is(usage.code, 2);
    assert.is(usage.output, 'test/fast.ts: --jobs many: expected a whole number from 1 to 32\n');
  });
});

test.run();
