/**
 * /metrics: Prometheus text from a registry of this gateway's own (not prom-client's global one, so
 * several gateways in one process, as in tests, do not collide). Values from the jobs room and the
 * Raft runtime are read at scrape time; the gateway's own counters are kept here.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type { JobService, JobState } from '../jobs/index.ts';
import type { AdmissionStats } from './admission.ts';
import type { ErrorCode } from '../protocol/index.ts';

export interface RaftStatus {
  term: number;
  /** leader, follower, candidate, learner, ... */
  role: string;
}

export interface GatewayStats extends AdmissionStats {
  connections: number;
  /** Sockets admitted but not yet past hello (part of `connections` once their handshake is done). */
  connectionsPending: number;
  /** Connections cut off because they did not read their replies, since start. */
  clientsDropped: number;
  uploadsActive: number;
  downloadsActive: number;
  watches: number;
  /** Bytes received from upload clients that the jobs room has not yet taken (over all uploads). */
  uploadBufferedBytes: number;
}

export interface GatewayMetrics {
  readonly contentType: string;
  render(): Promise<string>;
  protocolError(code: ErrorCode): void;
  uploadBytes(bytes: number): void;
  downloadBytes(bytes: number): void;
  connectionOpened(): void;
}

const jobStates: readonly JobState[] = ['pending', 'uploading', 'processing', 'merging', 'completed', 'failed'];

type Registers = Registry[];

/** A gauge that reads its value at scrape time. */
function gaugeReading(registers: Registers, name: string, help: string, read: () => number): Gauge {
  return new Gauge({
    name,
    help,
    registers,
    collect() {
      this.set(read());
    },
  });
}

/** A counter mirroring a cumulative count kept elsewhere, read at scrape time. */
function counterReading(registers: Registers, name: string, help: string, read: () => number): Counter {
  return new Counter({
    name,
    help,
    registers,
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

/** The jobs room's figures: jobs by state, coding counters and the worker queue. */
function registerJobMetrics(registers: Registers, jobs: JobService): void {
  const jobMetrics = () => jobs.metrics();
  new Gauge({
    name: 'dcas_jobs',
    help: 'Jobs known to this node, by state',
    labelNames: ['state'],
    registers,
    collect() {
      const byState = jobMetrics().jobsByState;
      for (const state of jobStates) this.set({ state }, byState[state] ?? 0);
    },
  });
  counterReading(registers, 'dcas_chunks_coded_total', 'Chunks coded by this node\'s worker actors', () => jobMetrics().chunksCoded);
  counterReading(registers, 'dcas_download_chunks_decoded_total', 'Chunks this node decoded for downloads, whole or ranged', () => jobMetrics().chunksDecoded);
  counterReading(registers, 'dcas_job_bytes_in_total', 'Bytes read by the kernel on this node', () => jobMetrics().bytesIn);
  counterReading(registers, 'dcas_job_bytes_out_total', 'Bytes written by the kernel on this node', () => jobMetrics().bytesOut);
  gaugeReading(registers, 'dcas_kernel_megabytes_per_second', 'Kernel throughput over the last chunks coded here, MB/s of original bytes', () => jobMetrics().kernelMBps);
  gaugeReading(registers, 'dcas_queue_depth', 'Chunks queued for this node\'s worker actors', () => jobMetrics().queueDepth);
  gaugeReading(registers, 'dcas_chunks_in_flight', 'Chunks being coded on this node now', () => jobMetrics().inFlight);
}

/** The Raft runtime's term and role. */
function registerRaftMetrics(registers: Registers, raftStatus: () => RaftStatus): void {
  gaugeReading(registers, 'dcas_raft_term', 'Current Raft term as this node sees it', () => raftStatus().term);
  new Gauge({
    name: 'dcas_raft_role',
    help: 'This node\'s Raft role: 1 for the current role',
    labelNames: ['role'],
    registers,
    collect() {
      this.reset();
      this.set({ role: raftStatus().role }, 1);
    },
  });
}

/** The gateway's own gauges, read from its stats at scrape time. */
function registerGatewayStats(registers: Registers, stats: () => GatewayStats): void {
  const statGauge = (name: string, help: string, read: (current: GatewayStats) => number) => gaugeReading(registers, name, help, () => read(stats()));
  statGauge('dcas_gateway_connections', 'Open WebSocket connections', (current) => current.connections);
  statGauge('dcas_gateway_connections_pending', 'Connections that have not said hello yet', (current) => current.connectionsPending);
  statGauge('dcas_gateway_clients_dropped', 'Connections cut off since start because they did not read their replies', (current) => current.clientsDropped);
  statGauge('dcas_gateway_uploads_active', 'Uploads in progress on this gateway', (current) => current.uploadsActive);
  statGauge('dcas_gateway_uploads_queued', 'Uploads waiting in the admission queue for a slot', (current) => current.uploadsQueued);
  statGauge('dcas_gateway_uploads_queued_peak', 'Most uploads waiting in the admission queue at once since start', (current) => current.uploadsQueuedPeak);
  statGauge('dcas_gateway_uploads_refused_busy', 'Uploads refused with BUSY since start (queue full or waited too long)', (current) => current.uploadsRefusedBusy);
  statGauge('dcas_gateway_downloads_active', 'Downloads in progress on this gateway', (current) => current.downloadsActive);
  statGauge('dcas_gateway_upload_buffered_bytes', 'Uploaded bytes held by the gateway, not yet taken by the jobs room', (current) => current.uploadBufferedBytes);
}

export function createGatewayMetrics(options: { jobs?: JobService; raftStatus?: () => RaftStatus; stats: () => GatewayStats }): GatewayMetrics {
  const registry = new Registry();
  // The event-loop lag histogram samples every 100 ms, not prom-client's 10: its timer was half of an
  // idle node's wake-ups (a worker of an idle local 7-node cluster: about 210 a second, then 100).
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 });
  const registers = [registry];
  if (options.jobs !== undefined) registerJobMetrics(registers, options.jobs);
  if (options.raftStatus !== undefined) registerRaftMetrics(registers, options.raftStatus);
  registerGatewayStats(registers, options.stats);
  const connectionsTotal = new Counter({ name: 'dcas_gateway_connections_total', help: 'WebSocket connections accepted', registers });
  const errorsTotal = new Counter({ name: 'dcas_gateway_errors_total', help: 'Error frames sent, by code', labelNames: ['code'], registers });
  const uploadBytesTotal = new Counter({ name: 'dcas_gateway_upload_bytes_total', help: 'Bytes received in upload frames', registers });
  const downloadBytesTotal = new Counter({ name: 'dcas_gateway_download_bytes_total', help: 'Bytes sent in download frames', registers });

  return {
    contentType: registry.contentType,
    render: () => registry.metrics(),
    protocolError: (code) => errorsTotal.inc({ code }),
    uploadBytes: (bytes) => uploadBytesTotal.inc(bytes),
    downloadBytes: (bytes) => downloadBytesTotal.inc(bytes),
    connectionOpened: () => connectionsTotal.inc(),
  };
}
