/**
 * Runs the real `dcas` command as a child process, as a user's shell would: arguments, a working
 * folder, optionally bytes on stdin; collects stdout (as bytes and text), stderr and the exit code.
 */
import { spawn } from 'node:child_process';
import * as assert from 'uvu/assert';

export const dcasEntry = new URL('../../node/cli/dcas.ts', import.meta.url).pathname;

export interface DcasRun {
  code: number | null;
  stdout: string;
  stdoutBytes: Buffer;
  stderr: string;
}

export interface DcasRunOptions {
  entry?: string;
  /** Bytes written to the child's stdin, which is then closed; without them stdin is empty. */
  input?: Uint8Array;
}

export function runDcas(args: string[], cwd: string, options: DcasRunOptions = {}): Promise<DcasRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [options.entry ?? dcasEntry, ...args], { cwd, stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (data: Buffer) => stdout.push(data));
    child.stderr.on('data', (data) => (stderr += data));
    child.stdin.on('error', () => {}); // a child that exits before reading all of stdin is a result, not a test failure
    child.stdin.end(options.input ?? new Uint8Array(0));
    child.on('error', reject);
    child.on('close', (code) => {
      const bytes = Buffer.concat(stdout);
      resolve({ code, stdout: bytes.toString('utf8'), stdoutBytes: bytes, stderr });
    });
  });
}

export function assertOneLineError(result: DcasRun, pattern: RegExp): void {
  const lines = result.stderr.trimEnd().split('\n');
  assert.is(lines.length, 1, `expected one line on stderr, got: ${result.stderr}`);
  assert.match(lines[0], /^dcas: /);
  assert.match(lines[0], pattern);
}
