/**
 * The shape of bench/results/<timestamp>.json: what the harness (run.ts) writes and the report
 * (report.ts) reads. Speeds are MB/s of original bytes (1 MB = 10^6 bytes); ratios are compressed size
 * over original size (lower is better), as in a job's `ratio`.
 */

import type { HostsSection } from './hosts.ts';

/** A figure measured over several runs: the median with the smallest and largest, and every run. */
export interface Spread {
  median: number;
  min: number;
  max: number;
  samples: number[];
}

export interface Machine {
  cpuModel: string;
  cores: number;
  memoryBytes: number;
  nodeVersion: string;
  platform: string;
  kernelRelease: string;
  /** git rev-parse HEAD of the tree that ran, and whether it had uncommitted changes. */
  commit: string;
  dirty: boolean;
  /** SHA-256 of build/kernel.wasm, which the kernel engineer may rebuild between runs. */
  kernelWasmSha256: string;
  /** 1-minute load average when the run started: other work on the machine skews every figure. */
  loadAverageAtStart: number;
}

export interface CodecFigures {
  codec: string;
  compressMBps: Spread;
  decompressMBps: Spread;
  compressedBytes: number;
  ratio: number;
}

export interface DatasetFigures {
  name: string;
  description: string;
  /** Size of the whole data set, and of the part coded (quick runs take a prefix). */
  datasetBytes: number;
  codedBytes: number;
  codecs: CodecFigures[];
}

export interface CodecSection {
  chunkBytes: number;
  runs: number;
  codecs: Array<{ name: string; description: string }>;
  datasets: DatasetFigures[];
}

export interface CliFigures {
  dataset: string;
  inputBytes: number;
  compressedBytes: number;
  ratio: number;
  threads: number;
  /** Whole process, spawn to exit, over original bytes. */
  compressMBps: Spread;
  decompressMBps: Spread;
  /** What the CLI itself reported (--json mbPerSecond): its work without process start-up. */
  compressReportedMBps: Spread;
  decompressReportedMBps: Spread;
}

/** One command of the peers table: whole processes, spawn to exit, on the same file in the same run. */
export interface PeerFigures {
  name: string;
  compressSeconds: Spread;
  decompressSeconds: Spread;
  /** Fewest CPU seconds (user + sys) of any run, and the largest peak RSS; null without /usr/bin/time. */
  compressCpuSeconds: number | null;
  decompressCpuSeconds: number | null;
  compressPeakRssBytes: number | null;
  decompressPeakRssBytes: number | null;
  compressedBytes: number;
  ratio: number;
  /** Original bytes over the best run's seconds. */
  compressMBps: number;
  decompressMBps: number;
}

/** One of the targets: `value` against `limit` (a ratio or a figure); null where this run cannot tell. */
export interface PeerTarget {
  what: string;
  value: number | null;
  limit: number;
  unit: string;
  met: boolean | null;
}

/** Commands run side by side on one file (peers.ts): what each measured, and the targets they meet. */
export interface PeerRunsSection {
  dataset: string;
  inputBytes: number;
  cores: number;
  runs: number;
  /** Programs not installed; their rows are absent. */
  missing: string[];
  peers: PeerFigures[];
  targets: PeerTarget[];
}

export interface PeersSection extends PeerRunsSection {
  versionSeconds: Spread;
  /** Best --json mbPerSecond of dcas's runs: its work without process start-up. */
  compressReportedMBps: number;
  decompressReportedMBps: number;
}

export interface PhaseSeconds {
  upload: Spread;
  process: Spread;
  merge: Spread;
}

export interface ClusterRun {
  nodes: number;
  /** Upload start to job completed, over original bytes. */
  throughputMBps: Spread;
  seconds: Spread;
  phases: PhaseSeconds;
  ratio: number;
  /** Which node coded how many chunks, in the last run. */
  chunkNodes: Record<string, number>;
  /** Peak resident memory of each node process over the cluster's life (VmHWM), bytes. */
  peakRssBytes: Record<string, number>;
  startSeconds: number;
}

export interface ClusterSection {
  dataset: string;
  fileBytes: number;
  chunkBytes: number;
  runs: number;
  clusters: ClusterRun[];
}

export interface LoadSection {
  nodes: number;
  concurrency: number;
  uploadBytes: number;
  rounds: number;
  uploads: number;
  successes: number;
  errors: Record<string, number>;
  /** Upload start (connect) to job completed, seconds, over every successful upload of every round. */
  latencySeconds: { p50: number; p95: number; p99: number; min: number; max: number; samples: number[] };
  /** Successful original bytes over each round's wall time. */
  throughputMBps: Spread;
  /** Peak resident memory of each node (VmHWM), bytes: during the load test alone when the peaks could be reset. */
  peakRssBytes: Record<string, number>;
  peakRssScope: 'load test' | 'cluster life';
}

export interface BenchResults {
  version: 1;
  startedAt: string;
  mode: 'full' | 'quick' | 'tiny';
  wallSeconds: number;
  command: string;
  machine: Machine;
  codecs: CodecSection;
  cli: CliFigures | null;
  /** Absent in results written before the peers section existed. */
  peers?: PeersSection | null;
  /** Every codec through `dcas compress --codec` beside its own tool (issue 10); absent in older results. */
  codecPeers?: PeerRunsSection | null;
  cluster: ClusterSection | null;
  load: LoadSection | null;
  /** The scaling curve across namespace hosts (bench/hosts.ts); absent before it existed. */
  hosts?: HostsSection | null;
}
