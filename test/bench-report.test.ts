/**
 * The benchmark report, end to end: a real tiny run of the harness (codecs on real data, the CLI, the
 * peers and every codec through the CLI beside its tool,
 * clusters of 1, 2 and 3 nodes, a load test) writes its JSON and HTML; headless Chromium opens the HTML
 * from disk with the network cut off, and every chart must have drawn every one of its datasets. A
 * report with a section missing must fail the same check, so the check cannot pass on empty charts.
 */

import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { chartProblems, openReport } from '../bench/browser.ts';
import { chromiumPath } from '../tools/chromium.ts';
import { chartIds, renderReport } from '../bench/report.ts';
import type { BenchResults } from '../bench/results.ts';
import { withTempDir } from './helpers.ts';

const runScript = new URL('../bench/run.ts', import.meta.url).pathname;
const codecNames = ['dcas-kernel', 'zlib-huffman', 'gzip-1', 'gzip-6', 'brotli-4', 'zstd-3'];
const runTimeoutMs = 240_000;

function runBench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // Its own process group, so a timeout can end the harness and every node it started.
    const child = spawn(process.execPath, [runScript, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (data) => (stdout += String(data)));
    child.stderr.on('data', (data) => (stderr += String(data)));
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Gone already.
      }
      reject(new Error(`bench did not finish within ${runTimeoutMs} ms:\n${stderr.slice(-3000)}`));
    }, runTimeoutMs);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function assertResults(results: BenchResults): void {
  assert.ok(results.machine.cpuModel.length > 0);
  assert.ok(results.machine.cores >= 1);
  assert.match(results.machine.commit, /^[0-9a-f]{40}$/);
  assert.ok(results.codecs.datasets.length >= 2);
  for (const dataset of results.codecs.datasets) {
    assert.equal(dataset.codecs.map((figures) => figures.codec), codecNames, dataset.name);
    for (const figures of dataset.codecs) {
      const where = `${dataset.name} ${figures.codec}`;
      assert.ok(figures.compressMBps.median > 0, where);
      assert.ok(figures.decompressMBps.median > 0, where);
      assert.ok(figures.compressMBps.min <= figures.compressMBps.median && figures.compressMBps.median <= figures.compressMBps.max, where);
      assert.ok(figures.ratio > 0 && figures.ratio < 1.1, where);
    }
  }
  assert.ok(results.cli !== null && results.cli.compressMBps.median > 0 && results.cli.decompressMBps.median > 0);
  const peers = results.peers!;
  assert.ok(peers.peers[0].name.startsWith('dcas'), peers.peers[0].name);
  for (const peer of peers.peers) {
    assert.ok(peer.compressSeconds.min > 0 && peer.decompressSeconds.min > 0, peer.name);
    assert.ok(peer.ratio > 0 && peer.ratio < 1.1, peer.name);
  }
  // Every target is reported, as a value with a verdict, or as not measured (1 GiB targets on a tiny run).
  assert.is(peers.targets.length, 8);
  assert.ok(peers.targets.slice(0, 5).every((target) => target.value !== null || target.met === null));
  // Every codec through the CLI beside its tool: each round trip checked by the harness, each size target reported.
  const codecPeers = results.codecPeers!;
  const codecRows = codecPeers.peers.map((peer) => peer.name);
  for (const codec of ['huffman', 'zstd', 'gzip', 'brotli', 'xz', 'bzip2']) assert.ok(codecRows.includes(`dcas --codec ${codec}`), codecRows.join(', '));
  assert.ok(codecPeers.peers.every((peer) => peer.compressedBytes > 0 && peer.ratio < 1.1), codecRows.join(', '));
  assert.is(codecPeers.targets.length, 5);
  assert.equal(results.cluster?.clusters.map((run) => run.nodes), [1, 2, 3]);
  for (const run of results.cluster!.clusters) {
    assert.ok(run.throughputMBps.median > 0);
    assert.is(Object.keys(run.peakRssBytes).length, run.nodes);
    assert.ok(Object.values(run.peakRssBytes).every((bytes) => bytes > 10 * 1024 * 1024));
    assert.ok(run.phases.upload.median > 0 && run.phases.process.median > 0);
  }
  const load = results.load!;
  assert.is(load.successes, load.uploads, JSON.stringify(load.errors));
  assert.equal(load.errors, {});
  assert.ok(load.latencySeconds.p50 > 0 && load.latencySeconds.p50 <= load.latencySeconds.p95 && load.latencySeconds.p95 <= load.latencySeconds.p99);
  assert.is(load.latencySeconds.samples.length, load.uploads);
}

test('a tiny run writes results and a report whose every chart draws data in headless Chromium', async () => {
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing (apt-get install chromium)`);
  await withTempDir(async (folder) => {
    const run = await runBench(['--tiny', '--out', folder]);
    assert.is(run.code, 0, run.stderr.slice(-3000));
    const files = readdirSync(folder).sort();
    assert.is(files.length, 2, files.join(', '));
    const [htmlFile, jsonFile] = files;
    assert.match(jsonFile, /^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ\.json$/);
    assert.is(htmlFile, jsonFile.replace(/\.json$/, '.html'));
    const results = JSON.parse(readFileSync(join(folder, jsonFile), 'utf8')) as BenchResults;
    assertResults(results);
    assert.match(run.stdout, /Load test, 4 concurrent uploads/);

    const report = await openReport(join(folder, htmlFile));
    try {
      const inspection = await report.inspect(chartIds(results));
      assert.equal(chartProblems(inspection), []);
      assert.is(inspection.charts.length, results.codecs.datasets.length + 11);
    } finally {
      await report.close();
    }

    // The same results with the load test, the CLI and the peers missing: those charts must be reported empty.
    const partial: BenchResults = { ...results, load: null, cli: null, peers: null, codecPeers: null };
    const partialPath = join(folder, 'partial.html');
    writeFileSync(partialPath, renderReport(partial));
    const partialReport = await openReport(partialPath);
    try {
      const problems = chartProblems(await partialReport.inspect(chartIds(partial)));
      assert.ok(problems.some((problem) => problem.startsWith('load-latency:')), problems.join('\n'));
      assert.ok(problems.some((problem) => problem.startsWith('cli-speed:')), problems.join('\n'));
      assert.ok(problems.some((problem) => problem.startsWith('peers-compress:')), problems.join('\n'));
      assert.ok(problems.some((problem) => problem.startsWith('codec-peers-compress:')), problems.join('\n'));
      assert.not.ok(problems.some((problem) => problem.startsWith('cluster-throughput:')), problems.join('\n'));
    } finally {
      await partialReport.close();
    }
  });
});

test.run();
