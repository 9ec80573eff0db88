/**
 * What a person sees of a node and of `cluster up`: `dcas node` writes JSON lines for machines (each
 * field once) and readable lines with `--pretty`, and prints its peer id for pinning; banners break
 * between words at the terminal's width.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { peerIdOfDataDir } from '../node/cluster/host/index.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { wrapWords } from '../node/cli/output.ts';
import { freeBasePort } from '../tools/local-cluster.ts';
import { dcasEntry } from './support/dcas-process.ts';

/** Runs `dcas node` until it has logged that it started and become leader, then stops it with SIGINT. */
async function nodeOutput(extraArgs: string[]): Promise<string> {
  const folder = await mkdtemp(join(tmpdir(), 'dcas-node-logs-'));
  try {
    const port = await freeBasePort(1);
    const configPath = join(folder, 'solo.json');
    await writeFile(configPath, JSON.stringify({ name: 'solo', dataDir: join(folder, 'data'), listen: ['/ip4/127.0.0.1/tcp/0'], gateway: { port }, workers: 1 }));
    const child = spawn(process.execPath, [dcasEntry, 'node', '--config', configPath, ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (data) => (output += data));
    child.stderr.on('data', (data) => (output += data));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const deadline = Date.now() + 30_000;
    while (!/role changed/.test(output) && Date.now() < deadline && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 50));
    child.kill('SIGINT');
    assert.is(await exited, 0, output);
    return output;
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

test('dcas node on a pipe writes JSON lines that name the node once', async () => {
  const output = await nodeOutput([]);
  const lines = output.trim().split('\n');
  assert.ok(lines.length >= 3, output);
  for (const line of lines) {
    const record = JSON.parse(line) as { node?: string; msg?: string };
    assert.is(record.node, 'solo', line);
    assert.is(line.split('"node":').length - 1, 1, `"node" appears once in ${line}`);
  }
  assert.ok(lines.some((line) => (JSON.parse(line) as { msg: string }).msg === 'node started'));
});

test('dcas node --pretty writes one readable line per event: time, level, node and room, message', async () => {
  const output = await nodeOutput(['--pretty']);
  const lines = output.trim().split('\n');
  assert.ok(lines.length >= 3, output);
  for (const line of lines) assert.match(line, /^\[\d\d:\d\d:\d\d\.\d{3}\] (INFO|WARN|ERROR|DEBUG): solo( [a-z-]+)?: \S/, line);
  assert.ok(lines.some((line) => /INFO: solo: node started/.test(line)), output);
  assert.ok(lines.some((line) => /solo host: host started/.test(line)), output);
});

test('dcas node --peer-id prints the identity other configs pin: made once, private, the same on every call', async () => {
  const folder = await mkdtemp(join(tmpdir(), 'dcas-peer-id-'));
  try {
    const configPath = join(folder, 'a.json');
    await writeFile(configPath, JSON.stringify({ name: 'a', dataDir: join(folder, 'data') }));
    const run = () => promisify(execFile)(process.execPath, [dcasEntry, 'node', '--config', configPath, '--peer-id']).then(({ stdout }) => stdout);
    const first = await run();
    assert.match(first, /^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}\n$/);
    assert.is(await run(), first, 'the same identity, not a new one');
    assert.is((await stat(join(folder, 'data', 'peer.key'))).mode & 0o777, 0o600);
    assert.is(await peerIdOfDataDir(join(folder, 'data')), first.trim(), 'the id a node started from this folder has');
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
});

test('banner lines break between words, never inside one, and fit the width', () => {
  const line = 'logs: /tmp/a-rather-long-folder/.dcas/cluster/<node>/node.log; a node that exits is restarted (backoff 1 s doubling to 30 s) and p2p /ip4/127.0.0.1/tcp/7801';
  for (const width of [40, 80, 120]) {
    const wrapped = wrapWords(line, width).split('\n');
    for (const piece of wrapped) assert.ok(piece.length <= width || !piece.trim().includes(' '), `${piece.length} > ${width} with several words: ${piece}`);
    assert.equal(wrapped.join(' ').split(' ').filter(Boolean), line.split(' ').filter(Boolean), 'every word kept whole, in order');
  }
  assert.is(wrapWords(line, Number.POSITIVE_INFINITY), line, 'no width: one line');
  assert.is(wrapWords('a-word-longer-than-the-width x', 10), 'a-word-longer-than-the-width\n    x', 'a long word stands alone, uncut');
});

test.run();
