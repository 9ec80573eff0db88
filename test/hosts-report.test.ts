/**
 * The bench report's scaling section: results with a hosts section (as `npm run bench -- --hosts`
 * writes them) render a table with efficiencies and failures, and the hosts-scaling chart draws the
 * measured curve, the bare codec processes and the ideal line in headless Chromium. Runs no hosts itself.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chartProblems, openReport } from '../bench/browser.ts';
import { chromiumPath } from '../tools/chromium.ts';
import type { HostsRun } from '../bench/hosts.ts';
import { chartIds, renderReport } from '../bench/report.ts';
import type { BenchResults } from '../bench/results.ts';
import { withTempDir } from './helpers.ts';

function hostsRun(workerHosts: number, throughputMBps: number, single: number): HostsRun {
  return {
    workerHosts,
    throughputMBps,
    seconds: 256 / throughputMBps,
    phases: { uploadSeconds: 200 / throughputMBps, processSeconds: 250 / throughputMBps, mergeSeconds: 1 },
    efficiency: throughputMBps / (workerHosts * single),
    workerThreadCpu: Array.from({ length: workerHosts }, () => ({ main: 0.9, codec: 3.25, other: 0.3 })),
    voterCpuShare: [0.13, 0.07, 0.08],
    machineBusyCores: 0.4 + 0.2 * workerHosts,
    bare: { seconds: 10 / workerHosts, throughputMBps: 25 * workerHosts * 0.96, cpuSeconds: Array(workerHosts).fill(4), efficiency: 0.96, machineBusyCores: 0.35 + 0.18 * workerHosts },
    chunkNodes: { node1: 10, node4: 54 },
    loadAverageBefore: 3.5,
    loadAverageAfter: 4.25,
  };
}

const results: BenchResults = {
  version: 1,
  startedAt: '2026-12-03T06:00:00.000Z',
  mode: 'full',
  wallSeconds: 600,
  command: 'npm run bench -- --hosts',
  machine: { cpuModel: 'test', cores: 2, memoryBytes: 2 ** 34, nodeVersion: 'v24', platform: 'linux', kernelRelease: '6', commit: '0'.repeat(40), dirty: false, kernelWasmSha256: '0'.repeat(64), loadAverageAtStart: 3.5 },
  codecs: { chunkBytes: 4 * 2 ** 20, runs: 1, codecs: [], datasets: [] },
  cli: null,
  peers: null,
  cluster: null,
  load: null,
  hosts: {
    dataset: 'stocks',
    fileBytes: 256 * 2 ** 20,
    chunkBytes: 4 * 2 ** 20,
    voterCpu: 0.2,
    workerCpu: 0.4,
    linkMbit: 1000,
    rounds: 2,
    runs: [hostsRun(1, 20, 20), hostsRun(2, 38, 20), hostsRun(4, 68, 20)],
    everyRun: [{ workerHosts: 1, throughputMBps: 20, seconds: 12.8, bareSeconds: 10 }, { workerHosts: 4, throughputMBps: 68, seconds: 3.76 }],
    failures: [{ workerHosts: 3, attempt: 1, error: 'command x was not applied within 10000 ms', loadAverage: 40 }],
  },
};

test('a run with a hosts section: table with efficiency, the bare processes, CPU by thread and failures, and the scaling chart draws its three lines', async () => {
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing (apt-get install chromium)`);
  assert.ok(chartIds(results).includes('hosts-scaling'));
  assert.not.ok(chartIds({ ...results, hosts: null }).includes('hosts-scaling'), 'no hosts chart is expected when the section was not run');
  const html = renderReport(results);
  assert.match(html, /<td>4<\/td><td>68\.0<\/td>/);
  assert.match(html, /<td>0\.85<\/td><td>96\.0<\/td><td>0\.96<\/td><td>0\.9\/3\.3\/0\.3, 0\.9\/3\.3\/0\.3, 0\.9\/3\.3\/0\.3, 0\.9\/3\.3\/0\.3<\/td><td>0\.13, 0\.07, 0\.08<\/td><td>1\.20 \(bare 1\.07\)<\/td>/, 'the efficiency at 4 worker hosts, the bare processes beside it, the CPU by thread, the voters and the machine');
  assert.match(html, /2 rounds, alternating over the worker counts; each row is that count's median run \(every run: 1 host\(s\) 12\.8 s \(bare 10\.0 s\), 4 host\(s\) 3\.8 s\)/);
  assert.match(html, /3 worker host\(s\), attempt 1 \(load 40\.0\): command x was not applied/);
  assert.match(renderReport({ ...results, hosts: null }), /Not measured in this run: <code>sudo npm run bench -- --hosts<\/code>/);
  await withTempDir(async (folder) => {
    const path = join(folder, 'hosts.html');
    writeFileSync(path, html);
    const report = await openReport(path);
    try {
      const inspection = await report.inspect(['hosts-scaling']);
      assert.equal(chartProblems(inspection), []);
      const chart = inspection.charts[0]!;
      assert.equal(chart.datasets.map((dataset) => [dataset.label, dataset.drawn]), [['measured', 3], ['bare codec processes, no cluster', 3], ['ideal (N × 1 host)', 3]]);
    } finally {
      await report.close();
    }
  });
});

test.run();
