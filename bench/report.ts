/**
 * The HTML report of a bench run: one self-contained file (Chart.js, the results and the page script
 * inlined; no network) with charts and the full tables. `node bench/report.ts RESULTS.json [-o OUT.html]`
 * renders one again from its JSON.
 *
 * Every chart has a canvas whatever the run measured, so a missing section shows as an empty chart
 * (and fails the report test) rather than vanishing.
 */

import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { BenchResults, PeerRunsSection, Spread } from './results.ts';

const chartLibraryPath = fileURLToPath(new URL('../node_modules/chart.js/dist/chart.umd.js', import.meta.url));
const pageScriptPath = fileURLToPath(new URL('./report-page.js', import.meta.url));

/** The ids of every chart the report draws for these results (the report test checks each one). */
export function chartIds(results: BenchResults): string[] {
  return [
    ...results.codecs.datasets.map((dataset) => `ratio-speed-${dataset.name}`),
    'compress-speed',
    'decompress-speed',
    'cli-speed',
    'peers-compress',
    'peers-decompress',
    'codec-peers-compress',
    'codec-peers-decompress',
    'cluster-throughput',
    'cluster-phases',
    'load-latency',
    'memory',
    // Opt-in (root and namespaces): only a run that measured it has the chart.
    ...(results.hosts ? ['hosts-scaling'] : []),
  ];
}

function escapeHtml(text: string): string {
  return text.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** Text safe inside a <script> element: no "</script", no "<!--". */
function scriptText(text: string): string {
  return text.replaceAll('</script', '<\\/script').replaceAll('<!--', '<\\!--');
}

const fixed = (value: number | null | undefined, digits: number) => (value === null || value === undefined ? '-' : value.toFixed(digits));
const spreadCell = (spread: Spread, digits: number) => `${fixed(spread.median, digits)} <small>(${fixed(spread.min, digits)}..${fixed(spread.max, digits)})</small>`;
const mebibytes = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MiB`;

function table(headers: string[], rows: string[][]): string {
  const head = headers.map((header) => `<th>${header}</th>`).join('');
  const body = rows.map((row) => `<tr>${row.map((cell) => `<td>${cell}</td>`).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

function canvas(id: string, wide = false): string {
  return `<div class="chart${wide ? ' wide' : ''}"><canvas id="${escapeHtml(id)}"></canvas></div>`;
}

function machineSection(results: BenchResults): string {
  const machine = results.machine;
  const rows = [
    ['CPU', `${escapeHtml(machine.cpuModel)}, ${machine.cores} cores`],
    ['memory', `${(machine.memoryBytes / 1024 ** 3).toFixed(1)} GiB`],
    ['Node', escapeHtml(machine.nodeVersion)],
    ['OS', `${escapeHtml(machine.platform)} ${escapeHtml(machine.kernelRelease)}`],
    ['commit', `${escapeHtml(machine.commit)}${machine.dirty ? ' (with uncommitted changes)' : ''}`],
    ['kernel.wasm SHA-256', `<code>${escapeHtml(machine.kernelWasmSha256.slice(0, 16))}…</code>`],
    ['load average at start', fixed(machine.loadAverageAtStart, 2)],
    ['mode, wall time', `${results.mode}, ${fixed(results.wallSeconds, 0)} s`],
    ['command', `<code>${escapeHtml(results.command)}</code>`],
  ];
  return table(['machine', ''], rows.map(([key, value]) => [key, value]));
}

function codecTable(results: BenchResults): string {
  const rows = results.codecs.datasets.flatMap((dataset) =>
    dataset.codecs.map((figures, index) => [
      index === 0 ? `<b>${escapeHtml(dataset.name)}</b><br><small>${mebibytes(dataset.codedBytes)} of ${mebibytes(dataset.datasetBytes)}</small>` : '',
      escapeHtml(figures.codec),
      spreadCell(figures.compressMBps, 0),
      spreadCell(figures.decompressMBps, 0),
      fixed(figures.ratio, 3),
    ]),
  );
  return table(['data set', 'codec', 'compress MB/s', 'decompress MB/s', 'ratio'], rows);
}

/** The best run's seconds (what the peers table compares), with the range of every run. */
const bestCell = (spread: Spread) => `${fixed(spread.min, 2)} <small>(${fixed(spread.min, 2)}..${fixed(spread.max, 2)})</small>`;

function peersSection(peers: PeerRunsSection | null | undefined, issue: string): string {
  if (!peers) return '<p class="missing">These commands were not measured in this run.</p>';
  const rows = peers.peers.map((peer) => [
    `<code>${escapeHtml(peer.name)}</code>`,
    bestCell(peer.compressSeconds),
    bestCell(peer.decompressSeconds),
    fixed(peer.ratio, 3),
    fixed(peer.compressMBps, 0),
    fixed(peer.decompressMBps, 0),
    `${fixed(peer.compressCpuSeconds, 2)} / ${fixed(peer.decompressCpuSeconds, 2)}`,
  ]);
  const targets = peers.targets.map((target) => [
    escapeHtml(target.what),
    target.value === null ? '-' : target.unit === 'x' ? `${fixed(target.value, 3)}x` : fixed(target.value, 0),
    escapeHtml(target.unit === 'x' ? `≤ ${String(target.limit)}x` : target.unit === 'MB/s min' ? `≥ ${target.limit} MB/s` : `< ${target.limit} ${target.unit}`),
    target.met === null ? 'not measured' : target.met ? '<b>met</b>' : '<span class="missing">not met</span>',
  ]);
  const missing = peers.missing.length > 0 ? `<p class="missing">Not installed, so not measured: ${escapeHtml(peers.missing.join(', '))}.</p>` : '';
  return `${missing}${table(['command', 'compress s, best', 'decompress s, best', 'ratio', 'compress MB/s', 'decompress MB/s', 'CPU s (c / d)'], rows)}
${table([`target (${issue})`, 'value', 'limit', ''], targets)}`;
}

function clusterTable(results: BenchResults): string {
  if (results.cluster === null) return '<p class="missing">The cluster was not measured in this run.</p>';
  const rows = results.cluster.clusters.map((run) => [
    String(run.nodes),
    spreadCell(run.throughputMBps, 1),
    spreadCell(run.seconds, 2),
    fixed(run.phases.upload.median, 2),
    fixed(run.phases.process.median, 2),
    fixed(run.phases.merge.median, 2),
    fixed(run.ratio, 3),
    escapeHtml(Object.entries(run.chunkNodes).map(([node, chunks]) => `${node}: ${chunks}`).join(', ')),
    escapeHtml(Object.entries(run.peakRssBytes).map(([node, bytes]) => `${node}: ${mebibytes(bytes)}`).join(', ')),
    fixed(run.startSeconds, 1),
  ]);
  return table(['nodes', 'MB/s', 'seconds', 'upload s', 'process s', 'merge s', 'ratio', 'chunks per node (last run)', 'peak RSS', 'start s'], rows);
}

function loadTable(results: BenchResults): string {
  const load = results.load;
  if (load === null) return '<p class="missing">The load test did not run.</p>';
  const errors = Object.entries(load.errors).map(([kind, count]) => `${escapeHtml(kind)}: ${count}`).join(', ') || 'none';
  return table(
    ['nodes', 'uploads', 'completed', 'errors', 'p50 s', 'p95 s', 'p99 s', 'max s', 'MB/s'],
    [[
      String(load.nodes),
      `${load.rounds} × ${load.concurrency} × ${fixed(load.uploadBytes / 1e6, 1)} MB`,
      String(load.successes),
      errors,
      fixed(load.latencySeconds.p50, 2),
      fixed(load.latencySeconds.p95, 2),
      fixed(load.latencySeconds.p99, 2),
      fixed(load.latencySeconds.max, 2),
      spreadCell(load.throughputMBps, 1),
    ]],
  );
}

function hostsSection(results: BenchResults): string {
  const hosts = results.hosts;
  if (!hosts) return '<p class="note">Not measured in this run: <code>sudo npm run bench -- --hosts</code> measures it (root, iproute2, cgroup v1 cpu).</p>';
  const rows = hosts.runs.map((run) => [
    String(run.workerHosts),
    fixed(run.throughputMBps, 1),
    fixed(run.seconds, 1),
    fixed(run.ingestSeconds ?? run.phases.uploadSeconds, 1),
    fixed(run.efficiency, 2),
    run.bare === undefined ? '' : fixed(run.bare.throughputMBps, 1),
    run.bare === undefined ? '' : fixed(run.bare.efficiency, 2),
    escapeHtml((run.workerThreadCpu ?? []).map((cpu) => `${fixed(cpu.main, 1)}/${fixed(cpu.codec, 1)}/${fixed(cpu.other, 1)}`).join(', ')),
    escapeHtml((run.voterCpuShare ?? []).map((share) => fixed(share, 2)).join(', ')),
    run.machineBusyCores === undefined ? '' : `${fixed(run.machineBusyCores, 2)}${run.bare?.machineBusyCores === undefined ? '' : ` (bare ${fixed(run.bare.machineBusyCores, 2)})`}`,
    `${fixed(run.loadAverageBefore, 1)} → ${fixed(run.loadAverageAfter, 1)}`,
    escapeHtml(Object.entries(run.chunkNodes).map(([node, chunks]) => `${node}: ${chunks}`).join(', ')),
  ]);
  return `<p class="note">One ${mebibytes(hosts.fileBytes)} file (${escapeHtml(hosts.dataset)}) in ${mebibytes(hosts.chunkBytes)} chunks${hosts.codec === undefined ? '' : `, codec ${escapeHtml(hosts.codec)}`}, uploaded to node1's gateway from outside the hosts while no worker host runs (the upload column), then coded by the worker hosts: MB/s and seconds are the coding phase (first chunk assigned to last chunk done). 3 voter hosts at ${hosts.voterCpu} CPU each that do not code (jobs.code false), worker hosts at ${hosts.workerCpu} CPU each, every link ${hosts.linkMbit} Mbit/s each way and no added delay. Efficiency is throughput(N) / (N × throughput(1)). The bare columns: right after each run, one plain process per worker host, under the same quota, codes its share of the same chunks with the same codec and no cluster (bench/hosts-bare.ts): what this machine itself gives N hosts coding at once. CPU s per worker host: its node's main thread / codec threads / other threads, over the coding phase. Voter hosts: the CPU each voter's node used over the coding phase, in cores. Machine: cores of the whole machine busy over the coding phase (and over the bare run): coders that share a core take more CPU per chunk than one alone. The load average (1 minute) of the shared machine is given before and after each run.${(hosts.rounds ?? 1) > 1 ? ` ${hosts.rounds} rounds, alternating over the worker counts; each row is that count's median run (every run: ${(hosts.everyRun ?? []).map((run) => `${run.workerHosts} host(s) ${fixed(run.seconds, 1)} s${run.bareSeconds === undefined ? '' : ` (bare ${fixed(run.bareSeconds, 1)} s)`}`).join(', ')}).` : ''} (Results from before this layout timed upload and coding together.)</p>
<div class="grid">${canvas('hosts-scaling', true)}</div>
${(hosts.failures ?? []).length === 0 ? '' : `<p class="missing">Failed: ${(hosts.failures ?? []).map((failure) => `${failure.workerHosts} worker host(s), attempt ${failure.attempt} (load ${fixed(failure.loadAverage, 1)}): ${escapeHtml(failure.error)}`).join('; ')}</p>`}
${table(['worker hosts', 'MB/s', 'seconds', 'upload s', 'efficiency', 'bare MB/s', 'bare efficiency', 'CPU s per worker host (main/codec/other)', 'voter hosts, cores', 'machine, busy cores', 'load average', 'chunks per host'], rows)}`;
}

const style = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 16px; }
.chart { position: relative; height: 300px; border: 1px solid #eee; padding: 6px; }
.chart.wide { grid-column: 1 / -1; height: 340px; }
table { border-collapse: collapse; margin: 8px 0; } td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; vertical-align: top; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; } small { color: #777; }
.note { color: #555; } .missing { color: #a00; } pre.error { color: #a00; white-space: pre-wrap; }
`;

export function renderReport(results: BenchResults): string {
  const chartLibrary = readFileSync(chartLibraryPath, 'utf8');
  const pageScript = readFileSync(pageScriptPath, 'utf8');
  const data = JSON.stringify(results).replaceAll('<', '\\u003c');
  const codecNotes = results.codecs.codecs.map((codec) => `<li><b>${escapeHtml(codec.name)}</b>: ${escapeHtml(codec.description)}</li>`).join('');
  const datasetNotes = results.codecs.datasets.map((dataset) => `<li><b>${escapeHtml(dataset.name)}</b>: ${escapeHtml(dataset.description)}</li>`).join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>DCaS benchmark ${escapeHtml(results.startedAt)} (${results.mode})</title>
<style>${style}</style>
</head>
<body>
<h1>DCaS benchmark</h1>
<p class="note">${escapeHtml(results.startedAt)} · ${results.mode} run · ${escapeHtml(results.machine.cpuModel)}, ${results.machine.cores} cores, Node ${escapeHtml(results.machine.nodeVersion)} · commit ${escapeHtml(results.machine.commit.slice(0, 12))}${results.machine.dirty ? '+' : ''}.
MB/s are 10<sup>6</sup> bytes of original data per second; ratio is compressed size / original size (lower is better); each figure is the median of several runs, with min..max.</p>
${machineSection(results)}

<h2>Codecs, one thread, same data</h2>
<p class="note">Each data set is cut into ${mebibytes(results.codecs.chunkBytes)} chunks (as the .dcz container cuts files) and every codec codes each chunk alone; median of ${results.codecs.runs} runs after one checked warm-up run.</p>
<div class="grid">
${results.codecs.datasets.map((dataset) => canvas(`ratio-speed-${dataset.name}`)).join('\n')}
</div>
<div class="grid">
${canvas('compress-speed', true)}
${canvas('decompress-speed', true)}
</div>
${codecTable(results)}
<ul class="note">${codecNotes}</ul>
<ul class="note">${datasetNotes}</ul>

<h2>Local CLI, all cores</h2>
<div class="grid">${canvas('cli-speed', true)}</div>
${results.cli === null ? '<p class="missing">The CLI was not measured in this run.</p>' : table(['data set', 'input', 'threads', 'ratio', 'compress MB/s', 'decompress MB/s', 'compress MB/s (CLI says)', 'decompress MB/s (CLI says)'], [[escapeHtml(results.cli.dataset), mebibytes(results.cli.inputBytes), String(results.cli.threads), fixed(results.cli.ratio, 3), spreadCell(results.cli.compressMBps, 0), spreadCell(results.cli.decompressMBps, 0), spreadCell(results.cli.compressReportedMBps, 0), spreadCell(results.cli.decompressReportedMBps, 0)]])}

<h2>Peers, whole processes</h2>
<p class="note">${results.peers ? `${escapeHtml(results.peers.dataset)}; every command from spawn to exit on the same file in the same run, ${results.peers.cores} cores, interleaved runs, best of ${results.peers.runs} (min..max beside it); CPU s is user + sys of the best run. Speeds are over original bytes, from the best run.` : ''}</p>
<div class="grid">
${canvas('peers-compress')}
${canvas('peers-decompress')}
</div>
${peersSection(results.peers, 'issue 9')}

<h2>Every codec through the CLI, beside its own tool</h2>
<p class="note">${results.codecPeers ? `${escapeHtml(results.codecPeers.dataset)}; <code>dcas compress --codec NAME</code> at the codec's default level and chunk size beside the command-line tool of its format at the same level, ${results.codecPeers.cores} cores, interleaved runs, best of ${results.codecPeers.runs}.` : ''}</p>
<div class="grid">
${canvas('codec-peers-compress')}
${canvas('codec-peers-decompress')}
</div>
${peersSection(results.codecPeers, 'issue 10')}

<h2>Cluster, end to end</h2>
<p class="note">${results.cluster === null ? '' : `Local clusters started with <code>dcas cluster up</code>; one ${fixed(results.cluster.fileBytes / 1e6, 0)} MB file (${escapeHtml(results.cluster.dataset)}) uploaded with the client library to the first node, timed from connect to the job completed; ${mebibytes(results.cluster.chunkBytes)} chunks. All nodes share this machine's cores.`}</p>
<div class="grid">
${canvas('cluster-throughput')}
${canvas('cluster-phases')}
${canvas('memory')}
</div>
${clusterTable(results)}

<h2>Load test</h2>
<p class="note">${results.load === null ? '' : `${results.load.concurrency} uploads at once, each on its own connection, spread over the ${results.load.nodes} gateways; ${results.load.rounds} round(s). Peak memory: ${results.load.peakRssScope === 'load test' ? 'during the load test alone' : 'over the cluster’s whole life'}.`}</p>
<div class="grid">${canvas('load-latency', true)}</div>
${loadTable(results)}

<h2>Scaling across hosts</h2>
${hostsSection(results)}

<script>${scriptText(chartLibrary)}</script>
<script>window.BENCH = ${data};</script>
<script>${scriptText(pageScript)}</script>
</body>
</html>
`;
}

function main(argv: string[]): void {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: { output: { type: 'string', short: 'o' } } });
  if (positionals.length !== 1) {
    console.error('usage: node bench/report.ts RESULTS.json [-o OUT.html]');
    process.exitCode = 2;
    return;
  }
  const input = positionals[0];
  const output = values.output ?? input.replace(/\.json$/, '') + '.html';
  writeFileSync(output, renderReport(JSON.parse(readFileSync(input, 'utf8')) as BenchResults));
  console.log(output);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) main(process.argv.slice(2));
