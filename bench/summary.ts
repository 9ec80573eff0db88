/**
 * The text summary a bench run prints (the same figures as the report, in aligned columns), and the
 * Markdown the README's Performance section quotes.
 *
 *   node bench/summary.ts RESULTS.json [--markdown]
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { BenchResults, PeerRunsSection, PeerTarget, Spread } from './results.ts';

const fixed = (value: number, digits: number) => value.toFixed(digits);
const spreadText = (spread: Spread, digits: number) => `${fixed(spread.median, digits)} (${fixed(spread.min, digits)}..${fixed(spread.max, digits)})`;
const mebibytes = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MiB`;

function columns(rows: string[][], rightAligned: boolean[]): string {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) => row.map((cell, column) => (rightAligned[column] ? cell.padStart(widths[column]) : cell.padEnd(widths[column]))).join('  ').trimEnd()).join('\n');
}

const optional = (value: number | null, digits: number) => (value === null ? '-' : fixed(value, digits));

function peersHeading(peers: PeerRunsSection, what = 'Peers'): string {
  return (
    `${what}, whole processes from spawn to exit, ${peers.dataset} (${fixed(peers.inputBytes / 1e6, 0)} MB), ${peers.cores} cores, best of ${peers.runs} runs ` +
    `(CPU s = user + sys of the best run)${peers.missing.length > 0 ? `; not installed: ${peers.missing.join(', ')}` : ''}`
  );
}

function peerRows(peers: PeerRunsSection): string[][] {
  return peers.peers.map((peer) => [
    peer.name,
    fixed(peer.compressSeconds.min, 2),
    fixed(peer.decompressSeconds.min, 2),
    fixed(peer.ratio, 3),
    fixed(peer.compressMBps, 0),
    fixed(peer.decompressMBps, 0),
    `${optional(peer.compressCpuSeconds, 2)} / ${optional(peer.decompressCpuSeconds, 2)}`,
  ]);
}

const peerHeaders = ['command', 'compress s', 'decompress s', 'ratio', 'compress MB/s', 'decompress MB/s', 'CPU s (c / d)'];

function targetCells(target: PeerTarget): string[] {
  const verdict = target.met === null ? 'not measured in this run' : target.met ? 'met' : 'not met';
  const comparison = target.unit === 'x' ? `at most ${String(target.limit)}x` : target.unit === 'MB/s min' ? `at least ${target.limit} MB/s` : `under ${target.limit} ${target.unit}`;
  const value = target.value === null ? '-' : target.unit === 'x' ? `${fixed(target.value, 3)}x` : `${fixed(target.value, 0)} ${target.unit === 'MB/s min' ? 'MB/s' : target.unit}`;
  return [target.what, value, comparison, verdict];
}

/** The sections of whole-process commands: issue 9's peers, and issue 10's codecs beside their tools. */
function peerSectionsOf(results: BenchResults): { section: PeerRunsSection | null | undefined; what: string; issue: string }[] {
  return [
    { section: results.peers, what: 'Peers', issue: 'issue 9' },
    { section: results.codecPeers, what: 'Every codec through the CLI beside its tool', issue: 'issue 10' },
  ];
}

export function formatSummary(results: BenchResults): string {
  const machine = results.machine;
  const lines: string[] = [];
  lines.push(`DCaS benchmark, ${results.mode} run, ${results.startedAt}, ${fixed(results.wallSeconds, 0)} s`);
  lines.push(
    `machine: ${machine.cpuModel}, ${machine.cores} cores, ${(machine.memoryBytes / 1024 ** 3).toFixed(1)} GiB, Node ${machine.nodeVersion}, ` +
      `commit ${machine.commit.slice(0, 12)}${machine.dirty ? ' (uncommitted changes)' : ''}, load ${fixed(machine.loadAverageAtStart, 2)} at start`,
  );
  if (results.codecs.datasets.length > 0) {
    lines.push('', `Codecs, one thread, ${mebibytes(results.codecs.chunkBytes)} chunks, median (min..max) of ${results.codecs.runs} runs; MB/s of original bytes; ratio = compressed/original`);
    const rows = [['data set', 'codec', 'compress MB/s', 'decompress MB/s', 'ratio']];
    for (const dataset of results.codecs.datasets) {
      dataset.codecs.forEach((figures, index) => {
        rows.push([index === 0 ? `${dataset.name} (${mebibytes(dataset.codedBytes)})` : '', figures.codec, spreadText(figures.compressMBps, 0), spreadText(figures.decompressMBps, 0), fixed(figures.ratio, 3)]);
      });
    }
    lines.push(columns(rows, [false, false, true, true, true]));
  }
  if (results.cli !== null) {
    const cli = results.cli;
    lines.push(
      '',
      `Local CLI, ${cli.threads} threads, ${cli.dataset} ${mebibytes(cli.inputBytes)}, whole process: compress ${spreadText(cli.compressMBps, 0)} MB/s, ` +
        `decompress ${spreadText(cli.decompressMBps, 0)} MB/s (the CLI's own figures: ${fixed(cli.compressReportedMBps.median, 0)} and ${fixed(cli.decompressReportedMBps.median, 0)} MB/s); ratio ${fixed(cli.ratio, 3)}`,
    );
  }
  for (const { section: peers, what, issue } of peerSectionsOf(results)) {
    if (!peers) continue;
    lines.push('', peersHeading(peers, what), columns([peerHeaders, ...peerRows(peers)], [false, true, true, true, true, true, true]));
    lines.push('', `Targets (${issue})`, columns([['target', 'value', 'limit', ''], ...peers.targets.map(targetCells)], [false, true, false, false]));
  }
  if (results.cluster !== null) {
    const cluster = results.cluster;
    lines.push('', `Cluster, upload to completed, ${fixed(cluster.fileBytes / 1e6, 0)} MB stocks CSV, ${mebibytes(cluster.chunkBytes)} chunks, median (min..max) of ${cluster.runs} runs`);
    const rows = [['nodes', 'MB/s', 'upload s', 'process s', 'merge s', 'chunks per node', 'peak RSS per node']];
    for (const run of cluster.clusters) {
      rows.push([
        String(run.nodes),
        spreadText(run.throughputMBps, 1),
        fixed(run.phases.upload.median, 2),
        fixed(run.phases.process.median, 2),
        fixed(run.phases.merge.median, 2),
        Object.entries(run.chunkNodes).map(([node, chunks]) => `${node}:${chunks}`).join(' '),
        Object.entries(run.peakRssBytes).map(([node, bytes]) => `${node}:${(bytes / 1024 / 1024).toFixed(0)}MiB`).join(' '),
      ]);
    }
    lines.push(columns(rows, [true, true, true, true, true, false, false]));
  }
  if (results.load !== null) {
    const load = results.load;
    const errors = Object.entries(load.errors).map(([kind, count]) => `${kind} ${count}`).join(', ') || 'none';
    lines.push(
      '',
      `Load test, ${load.concurrency} concurrent uploads of ${fixed(load.uploadBytes / 1e6, 1)} MB over ${load.nodes} gateways, ${load.rounds} round(s): ` +
        `${load.successes}/${load.uploads} completed, errors: ${errors}`,
      `  latency (connect to completed) p50 ${fixed(load.latencySeconds.p50, 2)} s, p95 ${fixed(load.latencySeconds.p95, 2)} s, p99 ${fixed(load.latencySeconds.p99, 2)} s, max ${fixed(load.latencySeconds.max, 2)} s; ` +
        `throughput ${spreadText(load.throughputMBps, 1)} MB/s; peak RSS ${Object.entries(load.peakRssBytes).map(([node, bytes]) => `${node}:${(bytes / 1024 / 1024).toFixed(0)}MiB`).join(' ')}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

/** The figures as Markdown tables, for the README's Performance section. */
export function formatMarkdown(results: BenchResults): string {
  const machine = results.machine;
  const out: string[] = [];
  out.push(
    `Run of ${results.startedAt.slice(0, 10)}, \`${results.command}\` (${results.mode}, ${fixed(results.wallSeconds / 60, 1)} min), commit \`${machine.commit.slice(0, 12)}\`${machine.dirty ? ' with uncommitted changes' : ''}: ` +
      `${machine.cpuModel}, ${machine.cores} cores, ${(machine.memoryBytes / 1024 ** 3).toFixed(0)} GiB, Node ${machine.nodeVersion}; load average ${fixed(machine.loadAverageAtStart, 1)} at the start (a shared machine).`,
  );
  const datasets = results.codecs.datasets;
  if (datasets.length > 0) {
    out.push(
      '',
      `**Codecs, one thread** — compress / decompress MB/s (median of ${results.codecs.runs} runs) and ratio (compressed/original), ${mebibytes(results.codecs.chunkBytes)} chunks coded alone:`,
      '',
      `| codec | ${datasets.map((dataset) => `${dataset.name} (${mebibytes(dataset.codedBytes)})`).join(' | ')} |`,
      `|---|${datasets.map(() => '---').join('|')}|`,
    );
    for (const codec of results.codecs.codecs) {
      const cells = datasets.map((dataset) => {
        const figures = dataset.codecs.find((candidate) => candidate.codec === codec.name)!;
        return `${fixed(figures.compressMBps.median, 0)} / ${fixed(figures.decompressMBps.median, 0)}, ${fixed(figures.ratio, 3)}`;
      });
      out.push(`| ${codec.name} | ${cells.join(' | ')} |`);
    }
  }
  if (results.cli !== null) {
    const cli = results.cli;
    out.push(
      '',
      `**Local CLI, all cores (${cli.threads} threads)**, ${cli.dataset} (${mebibytes(cli.inputBytes)}), whole process from spawn to exit: compress ${spreadText(cli.compressMBps, 0)} MB/s, ` +
        `decompress ${spreadText(cli.decompressMBps, 0)} MB/s; without process start-up (the CLI's own figure) ${fixed(cli.compressReportedMBps.median, 0)} and ${fixed(cli.decompressReportedMBps.median, 0)} MB/s.`,
    );
  }
  for (const { section: peers, what } of peerSectionsOf(results)) {
    if (!peers) continue;
    out.push('', `**${peersHeading(peers, what)}:**`, '', `| ${peerHeaders.join(' | ')} |`, `|---|${peerHeaders.slice(1).map(() => '---:').join('|')}|`);
    for (const row of peerRows(peers)) out.push(`| \`${row[0]}\` | ${row.slice(1).join(' | ')} |`);
    out.push('', '| target | value | limit | |', '|---|---:|---|---|');
    for (const cells of peers.targets.map(targetCells)) out.push(`| ${cells.join(' | ')} |`);
  }
  if (results.cluster !== null) {
    const cluster = results.cluster;
    out.push(
      '',
      `**Cluster end to end**: one ${fixed(cluster.fileBytes / 1e6, 0)} MB CSV of stock ticks uploaded to node1, connect to job completed, ${mebibytes(cluster.chunkBytes)} chunks, median (min..max) of ${cluster.runs} runs:`,
      '',
      '| nodes | MB/s | upload s | process s | merge s | chunks per node | peak RSS per node |',
      '|---:|---:|---:|---:|---:|---|---|',
    );
    for (const run of cluster.clusters) {
      out.push(
        `| ${run.nodes} | ${spreadText(run.throughputMBps, 1)} | ${fixed(run.phases.upload.median, 2)} | ${fixed(run.phases.process.median, 2)} | ${fixed(run.phases.merge.median, 2)} | ` +
          `${Object.entries(run.chunkNodes).map(([node, chunks]) => `${node} ${chunks}`).join(', ')} | ${Object.entries(run.peakRssBytes).map(([node, bytes]) => `${node} ${(bytes / 1024 / 1024).toFixed(0)} MiB`).join(', ')} |`,
      );
    }
  }
  if (results.load !== null) {
    const load = results.load;
    const errors = Object.entries(load.errors).map(([kind, count]) => `${kind} ${count}`).join(', ') || 'no errors';
    out.push(
      '',
      `**Load test**: ${load.concurrency} concurrent uploads of ${fixed(load.uploadBytes / 1e6, 0)} MB spread over ${load.nodes} gateways, ${load.rounds} rounds: ${load.successes}/${load.uploads} completed, ${errors}; ` +
        `latency from connect to completed p50 ${fixed(load.latencySeconds.p50, 2)} s, p95 ${fixed(load.latencySeconds.p95, 2)} s, p99 ${fixed(load.latencySeconds.p99, 2)} s; ` +
        `throughput ${spreadText(load.throughputMBps, 1)} MB/s; peak RSS ${Object.entries(load.peakRssBytes).map(([node, bytes]) => `${node} ${(bytes / 1024 / 1024).toFixed(0)} MiB`).join(', ')}.`,
    );
  }
  return `${out.join('\n')}\n`;
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [path, flag] = process.argv.slice(2);
  if (path === undefined || (flag !== undefined && flag !== '--markdown')) {
    console.error('usage: node bench/summary.ts RESULTS.json [--markdown]');
    process.exitCode = 2;
  } else {
    const results = JSON.parse(readFileSync(path, 'utf8')) as BenchResults;
    process.stdout.write(flag === '--markdown' ? formatMarkdown(results) : formatSummary(results));
  }
}
