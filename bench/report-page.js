// The report's page script: draws every chart of a bench results document with Chart.js (inlined by
// bench/report.ts before this script, with the results as window.BENCH). Plain browser JavaScript, no
// network. When done it sets document.body.dataset.rendered to "true" and window.benchCharts to
// { id: Chart }; a failure is written into the page and into document.body.dataset.error.
/* global Chart */
(function () {
  'use strict';
  const results = window.BENCH;
  const palette = {
    'dcas-kernel': '#d62728',
    'zlib-huffman': '#ff7f0e',
    'gzip-1': '#1f77b4',
    'gzip-6': '#17becf',
    'brotli-4': '#2ca02c',
    'zstd-3': '#9467bd',
  };
  const spare = ['#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#1f77b4', '#17becf', '#2ca02c', '#9467bd'];
  const colorOf = (name, index) => palette[name] || spare[index % spare.length];
  const nodeColors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd'];
  const phaseColors = { upload: '#1f77b4', process: '#d62728', merge: '#2ca02c' };
  const mib = 1024 * 1024;
  const charts = {};

  Chart.defaults.animation = false;
  Chart.defaults.responsive = true;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.font.size = 12;

  const fixed = (value, digits) => (value === null || value === undefined ? '-' : Number(value).toFixed(digits));
  const spreadText = (spread, digits) => `${fixed(spread.median, digits)} (${fixed(spread.min, digits)}..${fixed(spread.max, digits)})`;

  function draw(id, config) {
    const canvas = document.getElementById(id);
    if (!canvas) throw new Error(`no canvas #${id}`);
    charts[id] = new Chart(canvas, config);
  }

  /** Log-axis ticks at 1, 2 and 5 times a power of ten only, so labels never crowd. */
  const logTicks = {
    callback(value) {
      const leading = Number(value) / Math.pow(10, Math.floor(Math.log10(Number(value))));
      return [1, 2, 5].some((digit) => Math.abs(leading - digit) < 1e-9) ? Number(value).toLocaleString('en') : '';
    },
    autoSkip: false,
    maxRotation: 0,
  };

  function title(text) {
    return { display: true, text, font: { size: 14, weight: 'bold' } };
  }

  function codecCharts() {
    const section = results.codecs;
    const codecNames = section.codecs.map((codec) => codec.name);
    for (const dataset of section.datasets) {
      draw(`ratio-speed-${dataset.name}`, {
        type: 'scatter',
        data: {
          datasets: dataset.codecs.map((figures, index) => ({
            label: figures.codec,
            data: [{ x: figures.compressMBps.median, y: figures.ratio, decompress: figures.decompressMBps.median }],
            backgroundColor: colorOf(figures.codec, index),
            borderColor: colorOf(figures.codec, index),
            pointRadius: 7,
            pointHoverRadius: 9,
          })),
        },
        options: {
          plugins: {
            title: title(`${dataset.name}: ratio vs compress speed`),
            tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${fixed(item.raw.x, 0)} MB/s compress, ${fixed(item.raw.decompress, 0)} MB/s decompress, ratio ${fixed(item.raw.y, 3)}` } },
          },
          scales: {
            x: { type: 'logarithmic', ticks: logTicks, title: { display: true, text: 'compress MB/s (log)' } },
            y: { title: { display: true, text: 'compressed / original (lower is better)' }, suggestedMin: 0 },
          },
        },
      });
    }
    for (const direction of ['compress', 'decompress']) {
      const key = `${direction}MBps`;
      draw(`${direction}-speed`, {
        type: 'bar',
        data: {
          labels: section.datasets.map((dataset) => dataset.name),
          datasets: codecNames.map((codec, index) => ({
            label: codec,
            data: section.datasets.map((dataset) => dataset.codecs.find((figures) => figures.codec === codec)[key].median),
            spreads: section.datasets.map((dataset) => dataset.codecs.find((figures) => figures.codec === codec)[key]),
            backgroundColor: colorOf(codec, index),
          })),
        },
        options: {
          plugins: {
            title: title(`${direction} MB/s, one thread (median of ${section.runs} runs; log scale)`),
            tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${spreadText(item.dataset.spreads[item.dataIndex], 0)} MB/s` } },
          },
          scales: { y: { type: 'logarithmic', ticks: logTicks, title: { display: true, text: 'MB/s' } } },
        },
      });
    }
  }

  function cliChart() {
    const cli = results.cli;
    const rows = cli ? [cli.compressMBps, cli.decompressMBps] : [];
    const reported = cli ? [cli.compressReportedMBps, cli.decompressReportedMBps] : [];
    draw('cli-speed', {
      type: 'bar',
      data: {
        labels: cli ? ['dcas compress', 'dcas decompress'] : [],
        datasets: [
          { label: 'whole process (spawn to exit)', data: rows.map((spread) => spread.median), spreads: rows, backgroundColor: '#1f77b4' },
          { label: 'as the CLI reports (no start-up)', data: reported.map((spread) => spread.median), spreads: reported, backgroundColor: '#aec7e8' },
        ],
      },
      options: {
        indexAxis: 'y',
        plugins: {
          title: title(cli ? `Local CLI, ${cli.threads} threads, ${cli.dataset} ${fixed(cli.inputBytes / mib, 0)} MiB` : 'Local CLI (not measured)'),
          tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${spreadText(item.dataset.spreads[item.dataIndex], 0)} MB/s` } },
        },
        scales: { x: { title: { display: true, text: 'MB/s' }, beginAtZero: true } },
      },
    });
  }

  /** Ratio against speed for a section of whole-process commands (results.peers or results.codecPeers). */
  function peersCharts(section, idPrefix, what) {
    const peers = section ? section.peers : [];
    for (const direction of ['compress', 'decompress']) {
      draw(`${idPrefix}-${direction}`, {
        type: 'scatter',
        data: {
          datasets: peers.map((peer, index) => ({
            label: peer.name,
            data: [{ x: peer[`${direction}MBps`], y: peer.ratio, seconds: peer[`${direction}Seconds`].min }],
            backgroundColor: peer.name.startsWith('dcas') ? '#d62728' : spare[index % spare.length],
            borderColor: peer.name.startsWith('dcas') ? '#d62728' : spare[index % spare.length],
            pointStyle: peer.name.startsWith('dcas') ? 'rectRot' : 'circle',
            pointRadius: 7,
            pointHoverRadius: 9,
          })),
        },
        options: {
          plugins: {
            title: title(section ? `${what}: ratio vs ${direction} speed, ${fixed(section.inputBytes / 1e6, 0)} MB text` : `${what} (not measured)`),
            tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${fixed(item.raw.x, 0)} MB/s (${fixed(item.raw.seconds, 2)} s), ratio ${fixed(item.raw.y, 3)}` } },
          },
          scales: {
            x: { type: 'logarithmic', ticks: logTicks, title: { display: true, text: `${direction} MB/s, spawn to exit (log)` } },
            y: { title: { display: true, text: 'compressed / original (lower is better)' }, suggestedMin: 0 },
          },
        },
      });
    }
  }

  function clusterCharts() {
    const clusters = results.cluster ? results.cluster.clusters : [];
    const labels = clusters.map((run) => `${run.nodes} node${run.nodes === 1 ? '' : 's'}`);
    draw('cluster-throughput', {
      type: 'bar',
      data: {
        labels,
        datasets: [
          { label: 'median', data: clusters.map((run) => run.throughputMBps.median), backgroundColor: '#d62728', spreads: clusters.map((run) => run.throughputMBps), order: 1 },
          // Drawn over the median bar as a thin floating bar: an error bar from min to max.
          {
            label: 'min..max',
            data: clusters.map((run) => [run.throughputMBps.min, run.throughputMBps.max]),
            backgroundColor: 'rgba(0,0,0,0.65)',
            spreads: clusters.map((run) => run.throughputMBps),
            grouped: false,
            barPercentage: 0.08,
            minBarLength: 2,
            order: 0,
          },
        ],
      },
      options: {
        plugins: {
          title: title(results.cluster ? `Cluster: upload to completed, ${fixed(results.cluster.fileBytes / 1e6, 0)} MB file (median of ${results.cluster.runs})` : 'Cluster (not measured)'),
          tooltip: { callbacks: { label: (item) => `${spreadText(item.dataset.spreads[item.dataIndex], 1)} MB/s` } },
        },
        scales: { y: { beginAtZero: true, title: { display: true, text: 'MB/s' } } },
      },
    });
    draw('cluster-phases', {
      type: 'bar',
      data: {
        labels,
        datasets: [
          ...['upload', 'process', 'merge'].map((phase) => ({
            label: phase,
            data: clusters.map((run) => run.phases[phase].median),
            backgroundColor: phaseColors[phase],
            stack: 'phases',
            order: 1,
          })),
          {
            type: 'line',
            label: 'upload to completed (wall)',
            data: clusters.map((run) => run.seconds.median),
            stack: 'wall',
            borderColor: '#111',
            backgroundColor: '#111',
            pointStyle: 'crossRot',
            pointRadius: 9,
            borderWidth: 2,
            showLine: false,
            order: 0,
          },
        ],
      },
      options: {
        plugins: {
          title: title('Cluster: seconds per job phase (median)'),
          subtitle: { display: true, text: 'phases overlap: chunks are coded while the upload goes on, so the stack can exceed the wall time' },
        },
        scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: 'seconds' } } },
      },
    });
    const groups = clusters.map((run, index) => ({ label: labels[index], peaks: run.peakRssBytes }));
    if (results.load) groups.push({ label: `load test (${results.load.nodes} nodes)`, peaks: results.load.peakRssBytes });
    const nodeNames = [...new Set(groups.flatMap((group) => Object.keys(group.peaks)))].sort();
    draw('memory', {
      type: 'bar',
      data: {
        labels: groups.map((group) => group.label),
        datasets: nodeNames.map((name, index) => ({
          label: name,
          data: groups.map((group) => (group.peaks[name] === undefined ? null : group.peaks[name] / mib)),
          backgroundColor: nodeColors[index % nodeColors.length],
        })),
      },
      options: {
        plugins: {
          title: title('Peak resident memory per node (VmHWM, MiB)'),
          tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${fixed(item.raw, 0)} MiB` } },
        },
        scales: { y: { beginAtZero: true, title: { display: true, text: 'MiB' } } },
      },
    });
  }

  function loadChart() {
    const load = results.load;
    const samples = load ? load.latencySeconds.samples : [];
    const points = samples.map((seconds, index) => ({ x: seconds, y: (index + 1) / samples.length }));
    const marks = load ? ['p50', 'p95', 'p99'].map((key) => ({ key, x: load.latencySeconds[key] })) : [];
    draw('load-latency', {
      type: 'scatter',
      data: {
        datasets: [
          { label: 'uploads (CDF)', data: points, showLine: true, stepped: true, borderColor: '#1f77b4', backgroundColor: '#1f77b4', pointRadius: 3 },
          ...marks.map((mark, index) => ({
            label: `${mark.key} ${fixed(mark.x, 2)} s`,
            data: [{ x: mark.x, y: 0 }, { x: mark.x, y: 1 }],
            showLine: true,
            borderDash: [6, 4],
            borderColor: ['#2ca02c', '#ff7f0e', '#d62728'][index],
            backgroundColor: ['#2ca02c', '#ff7f0e', '#d62728'][index],
            pointRadius: 0,
          })),
        ],
      },
      options: {
        plugins: {
          title: title(load ? `Load test: ${load.concurrency} concurrent x ${fixed(load.uploadBytes / 1e6, 0)} MB on ${load.nodes} nodes, ${load.successes}/${load.uploads} completed` : 'Load test (not measured)'),
        },
        scales: {
          x: { beginAtZero: true, title: { display: true, text: 'seconds from connect to completed' } },
          y: { min: 0, max: 1, title: { display: true, text: 'fraction of uploads' } },
        },
      },
    });
  }

  function hostsChart() {
    const hosts = results.hosts;
    if (!hosts) return;
    const single = (hosts.runs.find((run) => run.workerHosts === 1) || {}).throughputMBps;
    draw('hosts-scaling', {
      type: 'scatter',
      data: {
        datasets: [
          {
            label: 'measured',
            data: hosts.runs.map((run) => ({ x: run.workerHosts, y: run.throughputMBps, efficiency: run.efficiency })),
            showLine: true,
            borderColor: '#d62728',
            backgroundColor: '#d62728',
            pointRadius: 5,
          },
          {
            label: 'bare codec processes, no cluster',
            data: hosts.runs.filter((run) => run.bare).map((run) => ({ x: run.workerHosts, y: run.bare.throughputMBps, efficiency: run.bare.efficiency })),
            showLine: true,
            borderColor: '#1f77b4',
            backgroundColor: '#1f77b4',
            pointRadius: 4,
          },
          {
            label: 'ideal (N × 1 host)',
            data: single === undefined ? [] : hosts.runs.map((run) => ({ x: run.workerHosts, y: run.workerHosts * single })),
            showLine: true,
            borderDash: [6, 4],
            borderColor: '#777',
            backgroundColor: '#777',
            pointRadius: 0,
          },
        ],
      },
      options: {
        plugins: {
          title: title(`Throughput against worker hosts (${hosts.workerCpu} CPU each, ${hosts.linkMbit} Mbit/s links)`),
          tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${fixed(item.raw.y, 1)} MB/s${item.raw.efficiency === undefined ? '' : `, efficiency ${fixed(item.raw.efficiency, 2)}`}` } },
        },
        scales: {
          x: { min: 0, ticks: { stepSize: 1 }, title: { display: true, text: 'worker hosts' } },
          y: { beginAtZero: true, title: { display: true, text: 'MB/s' } },
        },
      },
    });
  }

  try {
    codecCharts();
    cliChart();
    peersCharts(results.peers, 'peers', 'Whole processes');
    peersCharts(results.codecPeers, 'codec-peers', 'Every codec through the CLI');
    clusterCharts();
    loadChart();
    hostsChart();
    window.benchCharts = charts;
    document.body.dataset.rendered = 'true';
  } catch (error) {
    document.body.dataset.error = String(error && error.stack ? error.stack : error);
    const box = document.createElement('pre');
    box.className = 'error';
    box.textContent = `The report failed to draw: ${document.body.dataset.error}`;
    document.body.prepend(box);
  }
})();
