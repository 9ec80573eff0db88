/**
 * The jobs room on one node: the JobService the gateway calls, plus this node's worker actor and,
 * while this node leads, the coordinator's scheduler and merger.
 */
import { createHash } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { decode, encode } from 'cborg';
import { crc32c } from '@node-rs/crc32';
import type { Logger } from 'pino';
import * as z from 'zod';
import type { Member } from '../cluster/index.ts';
import type { ReplicatedState } from '../cluster/index.ts';
import { choiceOf, codecHuffmanId, CodecError, format, mapOrdered, suffixOf, type CodecPool, type ImagePool } from '../codec/index.ts';
import type { JobsConfig } from '../config/index.ts';
import type { BlobStore } from '../storage/index.ts';
import type { SpaceGuard } from '../storage/index.ts';
import { codes } from './core/index.ts';
import { handBackChunks } from './hand-back.ts';
import { createMerger } from './merge.ts';
import { deleteJob } from './delete.ts';
import { imageEntries } from './core/index.ts';
import { blobKeys, chunkPrefix, codingOf, jobIdPattern, jobKey, readChunks, readJob, type ChunkRecord, type JobRecord } from './records.ts';
import { createScheduler } from './scheduler.ts';
import { startUploadSession } from './upload.ts';
import { createWorker, type WorkerStats } from './worker.ts';
import { JobError, type Download, type ImageJobView, type JobMetrics, type JobService, type JobState, type JobView, type UploadSession } from './types.ts';

/** What the jobs room needs of the network to share decoding work: members and one request/response. */
export interface JobPeers {
  members(): readonly Member[];
  request(toName: string, protocol: string, bytes: Uint8Array, options?: { timeoutMs?: number }): Promise<Uint8Array>;
  handle(protocol: string, handler: (fromName: string, bytes: Uint8Array) => Promise<Uint8Array>): void;
}

export interface JobServiceOptions {
  node: string;
  /** Peers to share download decoding with; without them the gateway decodes alone. */
  peers?: JobPeers;
  state: ReplicatedState;
  blobs: BlobStore;
  /** Free space on this node's disks: new uploads are refused with INSUFFICIENT_STORAGE when it runs low. */
  space: SpaceGuard;
  pool: CodecPool;
  /** The node's image pool, created on first use: images jobs code their images on it. */
  imagePool?: () => ImagePool;
  config: JobsConfig;
  logger: Logger;
  members: () => readonly Member[];
}

export interface RunningJobService extends JobService {
  start(): Promise<void>;
  /** Stops coding, hands back the chunks this node still holds, then stops the coordinator and the worker. */
  stop(): Promise<void>;
  workerStats(): WorkerStats;
  /** Whether this node takes chunks: `jobs.code`, until it starts stopping. Its heartbeat advertises it. */
  codes(): boolean;
  /** Takes no more chunks from now on (a stop follows): called first so the heartbeat can say so at once. */
  stopCoding(): void;
}

const jobStates: JobState[] = ['pending', 'uploading', 'processing', 'merging', 'completed', 'failed'];
const decodeProtocol = '/dcas/decode/1.0.0';

/** This machine's own IP addresses, loopback included. */
function ownAddresses(): Set<string> {
  const own = new Set<string>(['127.0.0.1', '::1']);
  for (const entries of Object.values(networkInterfaces())) for (const entry of entries ?? []) own.add(entry.address);
  return own;
}

/** True when every libp2p address a member announced is on this machine. */
function onThisMachine(member: Member, own: ReadonlySet<string>): boolean {
  const hosts = member.addresses.map((address) => /^\/ip[46]\/([^/]+)\//.exec(address)?.[1]).filter((host): host is string => host !== undefined);
  return hosts.length > 0 && hosts.every((host) => own.has(host) || host.startsWith('127.'));
}
const decodeTimeoutMs = 30_000;

/** One chunk of a stored .dcz to decode: where its record is, and what it must decode to. */
/** A decode request comes from another node: every field is checked before it touches the blob store. */
const offset = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const decodeRequestSchema = z.strictObject({
  key: z.string().startsWith('jobs/').max(1024),
  start: offset,
  end: offset,
  chunk: offset,
  originalBytes: z.number().int().min(0).max(format.chunkBytesMax),
  checksum: z.number().int().min(0).max(0xffff_ffff),
  label: z.string().max(1024),
  // Absent from nodes that predate codecs: their chunks are Huffman .dcz chunk records.
  codec: z.number().int().min(1).max(255).default(codecHuffmanId),
  level: z.number().int().min(0).max(255).default(0),
  /** True when the range is a .dcz chunk record (header and frame), false for a bare standard-format piece. */
  framed: z.boolean().default(true),
});

/** The decode request in a frame from another node, or an error saying which field is wrong. */
export function parseDecodeRequest(bytes: Uint8Array): DecodeRequest {
  const parsed = decodeRequestSchema.safeParse(decode(bytes));
  if (!parsed.success) throw new Error(`decode request: ${parsed.error.issues[0].path.join('.') || 'frame'}: ${parsed.error.issues[0].message}`);
  if (parsed.data.end < parsed.data.start) throw new Error('decode request: end is before start');
  return parsed.data;
}

export interface DecodeRequest {
  key: string;
  start: number;
  end: number;
  chunk: number;
  originalBytes: number;
  checksum: number;
  label: string;
  codec: number;
  level: number;
  framed: boolean;
}
const watchCoalesceMs = 50;

/** An images job's options and image totals: from its record once completed, from its chunks before. */
function imageView(job: JobRecord, chunks: readonly ChunkRecord[]): ImageJobView | undefined {
  if (job.image === undefined) return undefined;
  const images = job.images ?? imageEntries(chunks.filter((chunk) => chunk.state === 'done'));
  const quality = job.image.quality === null ? null : `${job.image.quality.min}-${job.image.quality.max}`;
  const completed = job.state === 'completed';
  return {
    mode: job.image.mode,
    quality,
    strip: job.image.strip,
    imagesDone: images.length,
    imagesKept: images.filter((image) => image.kept).length,
    imagesFailed: images.filter((image) => image.error !== null).length,
    outputBytes: completed ? images.reduce((sum, image) => sum + (image.outputBytes ?? 0), 0) : null,
    images: completed ? images : [],
  };
}

export function toView(job: JobRecord, chunks: readonly ChunkRecord[]): JobView {
  const coding = codingOf(job);
  const done = chunks.filter((chunk) => chunk.state === 'done');
  const nodes: Record<string, number> = { ...job.chunkNodes };
  if (job.state !== 'completed') for (const chunk of done) if (chunk.node !== null) nodes[chunk.node] = (nodes[chunk.node] ?? 0) + 1;
  const seconds = (from: JobState, to: JobState) => {
    const start = Date.parse(job.timestamps[from] ?? '');
    const end = Date.parse(job.timestamps[to] ?? '');
    return Number.isFinite(start) && Number.isFinite(end) ? (end - start) / 1000 : null;
  };
  const completed = job.state === 'completed';
  const chunkCount = job.chunks ?? chunks.length;
  const uploaded = job.state === 'uploading' ? chunks.reduce((sum, chunk) => sum + chunk.inputBytes, 0) : job.mode === 'decompress' ? (job.compressedSize ?? 0) : (job.originalSize ?? 0);
  return {
    id: job.id,
    state: job.state,
    mode: job.mode,
    fileName: job.fileName,
    originalSize: job.originalSize,
    compressedSize: job.compressedSize,
    ratio: job.originalSize && job.compressedSize !== null ? Number((job.compressedSize / job.originalSize).toFixed(4)) : job.originalSize === 0 && job.compressedSize !== null ? 1 : null,
    sha256: job.sha256,
    mime: job.mime,
    codec: job.image?.mode ?? coding.choice.codec.name,
    level: coding.choice.level,
    format: coding.format,
    lines: job.lines ?? null,
    words: job.words ?? null,
    chunkSize: job.chunkSize,
    chunks: chunkCount,
    chunksDone: completed ? chunkCount : done.length,
    uploadedBytes: uploaded,
    chunkNodes: nodes,
    timestamps: job.timestamps,
    phases: { uploadSeconds: seconds('uploading', 'processing'), processSeconds: job.processSeconds, mergeSeconds: seconds('merging', 'completed') },
    error: job.error,
    gateway: job.gateway,
    ...(job.image === undefined ? {} : { image: imageView(job, chunks) }),
  };
}

function checkId(id: string): void {
  if (!jobIdPattern.test(id)) throw new JobError('NOT_FOUND', `no job ${JSON.stringify(id.slice(0, 64))}: job ids are 16 lowercase hex characters`);
}

export function createJobService(options: JobServiceOptions): RunningJobService {
  const { node, state, blobs, pool, config, logger } = options;
  const merger = createMerger({ state, blobs, logger, keepOriginal: config.keepOriginal });
  const worker = createWorker({ name: node, state, blobs, pool, imagePool: options.imagePool, logger, concurrency: pool.threads * config.inFlightPerWorker });
  const scheduler = createScheduler({ state, members: options.members, merger, config, logger });
  let coding = config.code;
  let uploads = 0;
  let bytesServed = 0;
  let chunksDecoded = 0;
  const jobStateById = new Map<string, JobState>();
  let unsubscribeStates: (() => void) | undefined;

  async function view(id: string): Promise<JobView | undefined> {
    const job = await readJob(state, id);
    if (job === undefined) return undefined;
    return toView(job, job.state === 'completed' ? [] : await readChunks(state, id));
  }

  async function completedJob(id: string): Promise<JobRecord> {
    checkId(id);
    const job = await readJob(state, id);
    if (job === undefined) throw new JobError('NOT_FOUND', `no job ${id}`);
    if (job.state !== 'completed') throw new JobError('NOT_READY', `job ${id} is ${job.state}${job.error ? `: ${job.error}` : ''}; only completed jobs can be downloaded`);
    return job;
  }

  /** Where each chunk of the stored object is: the .dcz's own index, or a standard format's pieces index. */
  async function readIndex(job: JobRecord, key: string) {
    if (codingOf(job).format !== 'dcz') return format.decodeIndex(await blobs.get(blobKeys.pieces(job.id)));
    const info = await blobs.stat(key);
    if (info === undefined) throw new JobError('UNAVAILABLE', `job ${job.id}: its .dcz is missing from the blob store`);
    const trailer = format.decodeTrailer(await blobs.getRange(key, { start: info.size - format.trailerBytes, end: info.size }));
    return format.decodeIndex(await blobs.getRange(key, { start: trailer.indexOffset, end: info.size - format.trailerBytes }));
  }

  /** Decodes a stored .dcz chunk by chunk (ranged reads, in parallel on this node's threads), verifying everything. */
  async function* decodeStored(job: JobRecord, key: string): AsyncGenerator<Uint8Array> {
    const entries = await readIndex(job, key);
    const hash = createHash('sha256');
    async function* indexed() {
      yield* entries.map((entry, index) => ({ entry, index }));
    }
    for await (const data of mapOrdered(indexed(), (item) => decodeEntry(job, key, item.entry, item.index), decodeSlots())) {
      hash.update(data);
      bytesServed += data.length;
      yield data;
    }
    if (hash.digest('hex') !== job.sha256) throw new CodecError('CHECKSUM_MISMATCH', `job ${job.id}: SHA-256 of the decoded file does not match`);
  }

  function decodeEntry(job: JobRecord, key: string, entry: format.ChunkEntry, index: number): Promise<Uint8Array> {
    chunksDecoded++;
    const { choice, format: objectFormat } = codingOf(job);
    const framed = objectFormat === 'dcz';
    return decodeAnywhere({
      key,
      start: entry.offset,
      end: entry.offset + (framed ? format.chunkHeaderBytes : 0) + entry.compressedBytes,
      codec: choice.codec.id,
      level: choice.level,
      framed,
      chunk: index,
      originalBytes: entry.originalBytes,
      checksum: entry.checksum,
      label: `job ${job.id}: chunk ${index}`,
    });
  }

  /**
   * The original's bytes [start, end) from a stored .dcz: the seek index gives each chunk's place in the
   * original, so only the chunks overlapping the range are read and decoded (each CRC32C verified).
   */
  async function* decodeStoredRange(job: JobRecord, key: string, range: { start: number; end: number }): AsyncGenerator<Uint8Array> {
    const entries = await readIndex(job, key);
    const covering: Array<{ entry: format.ChunkEntry; index: number; originalStart: number }> = [];
    let originalStart = 0;
    entries.forEach((entry, index) => {
      if (originalStart < range.end && originalStart + entry.originalBytes > range.start) covering.push({ entry, index, originalStart });
      originalStart += entry.originalBytes;
    });
    async function* listed() {
      yield* covering;
    }
    const decodeCut = async (item: (typeof covering)[number]) => {
      const data = await decodeEntry(job, key, item.entry, item.index);
      return data.subarray(Math.max(range.start - item.originalStart, 0), Math.min(range.end - item.originalStart, data.length));
    };
    for await (const data of mapOrdered(listed(), decodeCut, decodeSlots())) {
      bytesServed += data.length;
      yield data;
    }
  }

  /**
   * Reads one chunk from the store and decodes it on this node's threads with the job's codec,
   * verifying its CRC32C (a standard piece also checks itself: zstd's checksum, gzip's CRC32, ...).
   */
  async function decodeHere(request: DecodeRequest): Promise<Uint8Array> {
    const choice = choiceOf(request.codec, request.level);
    const record = await blobs.getRange(request.key, { start: request.start, end: request.end });
    if (!request.framed) return pool.decompress(record, request.originalBytes, request.checksum, request.label, choice);
    const fields = format.decodeChunkHeader(record.subarray(0, format.chunkHeaderBytes), request.chunk, format.chunkBytesMax, request.codec);
    if (fields.checksum !== request.checksum || fields.originalBytes !== request.originalBytes || format.chunkHeaderBytes + fields.compressedBytes !== record.length) {
      throw new CodecError('CORRUPT_CONTAINER', `${request.label}: header does not match the index`);
    }
    return pool.decompress(record.subarray(format.chunkHeaderBytes), request.originalBytes, request.checksum, request.label, choice);
  }

  const own = ownAddresses();

  /**
   * Members worth sending work to (decoding, and raw chunks while this node is busy): alive, and on another machine. A peer on this machine
   * shares its cores with us, and shipping it a chunk costs encryption at both ends, so there it
   * only slows a download down (measured: 4x slower on a 3-node cluster on one 2-core machine).
   */
  function decodePeers(): Member[] {
    return (options.peers?.members() ?? []).filter((member) => member.status === 'alive' && !member.self && codes(member) && !onThisMachine(member, own));
  }

  /** Chunks decoded at once for one download: twice this node's threads, plus twice each remote peer's. */
  function decodeSlots(): number {
    return 2 * (pool.threads + decodePeers().reduce((sum, member) => sum + (member.load?.workers ?? 1), 0));
  }

  let nextPeer = 0;
  let localDecodes = 0;
  /**
   * Decodes a chunk here while this node's threads have room, and on a peer on another machine
   * (round robin) when they do not, so a download can use the whole cluster's cores. A remote
   * result is checked against the chunk's CRC32C here; any remote failure falls back to decoding
   * locally, which reports a real corruption with its chunk.
   */
  async function decodeAnywhere(request: DecodeRequest): Promise<Uint8Array> {
    const peers = decodePeers();
    if (localDecodes < pool.threads * 2 || peers.length === 0 || options.peers === undefined) {
      localDecodes++;
      try {
        return await decodeHere(request);
      } finally {
        localDecodes--;
      }
    }
    const target = peers[nextPeer++ % peers.length];
    try {
      const data = await options.peers.request(target.name, decodeProtocol, encode(request), { timeoutMs: decodeTimeoutMs });
      if (data.length === request.originalBytes && crc32c(data) === request.checksum) return data;
      logger.warn({ peer: target.name, chunk: request.chunk }, 'download: a peer returned a chunk that fails its checksum; decoding here');
    } catch (error) {
      logger.debug({ err: error, peer: target.name, chunk: request.chunk }, 'download: remote decode failed; decoding here');
    }
    return decodeHere(request);
  }

  options.peers?.handle(decodeProtocol, async (_from, bytes) => {
    const request = parseDecodeRequest(bytes);
    const data = await decodeHere(request);
    bytesServed += data.length;
    return data;
  });

  async function* streamBlob(key: string, range?: { start: number; end: number }): AsyncGenerator<Uint8Array> {
    for await (const piece of blobs.getStream(key, range)) {
      bytesServed += piece.length;
      yield piece;
    }
  }

  return {
    async start() {
      for (const [, value] of await state.list('jobs/')) jobStateById.set((value as unknown as JobRecord).id, (value as unknown as JobRecord).state);
      unsubscribeStates = state.subscribe((change) => {
        if (!change.applied) return;
        for (const op of change.command.ops) {
          if (op.op === 'put' && op.key.startsWith('jobs/')) jobStateById.set((op.value as unknown as JobRecord).id, (op.value as unknown as JobRecord).state);
        }
      });
      // A node that does not code never starts its worker: it takes no assignment, and compressHere finds no slot.
      if (coding) await worker.start();
      scheduler.start();
    },
    async stop() {
      unsubscribeStates?.();
      coding = false;
      await scheduler.stop();
      // The worker takes nothing more from here (stop() turns it off before its first await). Every chunk
      // it holds goes back, those it is coding too: their runs finish but lose their compare-and-set and
      // delete their output, so the cluster does not wait for this node's slowest chunk.
      const workerStopped = worker.stop();
      if (config.code) await handBackChunks(state, node, logger);
      await workerStopped;
    },
    workerStats: () => worker.stats(),
    codes: () => coding,
    stopCoding() {
      coding = false;
    },

    async startUpload(request) {
      if (uploads >= config.uploadsMax) throw new JobError('BUSY', `this node is serving ${uploads} uploads, its limit; retry later or use another node`);
      uploads++;
      let session;
      try {
        session = await startUploadSession(request, { node, state, blobs, config, logger, space: options.space, onEnd: () => uploads--, compressHere: worker.compressHere, slotFreed: worker.slotFreed, peersElsewhere: () => decodePeers().length > 0, members: options.members });
      } catch (error) {
        uploads--;
        throw error;
      }
      const staging = session;
      return {
        jobId: staging.jobId,
        write: (bytes) => staging.write(bytes),
        finish: async () => toView(await staging.finish(), await readChunks(state, staging.jobId)),
        abort: (reason) => staging.abort(reason),
      } satisfies UploadSession;
    },

    async getJob(id) {
      if (!jobIdPattern.test(id)) return undefined;
      return view(id);
    },

    async deleteJob(id) {
      checkId(id);
      return deleteJob({ state, blobs, logger }, id);
    },

    async listJobs(listOptions = {}) {
      const limit = Math.min(listOptions.limit ?? 1000, 10_000);
      const jobs = (await state.list('jobs/')).map(([, value]) => value as unknown as JobRecord);
      jobs.sort((a, b) => (b.timestamps.pending ?? '').localeCompare(a.timestamps.pending ?? ''));
      return Promise.all(jobs.slice(0, limit).map(async (job) => toView(job, job.state === 'completed' || job.state === 'failed' ? [] : await readChunks(state, job.id))));
    },

    async watch(id, listener) {
      checkId(id);
      // Subscribe before the first read: a change applied while that read runs would otherwise fall
      // between the read and the subscription and never be delivered (a lost wake-up: `upload --wait`
      // hung on a job that completed right then). Reads run one after another, so views arrive in order.
      let timer: NodeJS.Timeout | undefined;
      let last: string | undefined;
      let reads: Promise<void>;
      const deliver = (next: JobView | undefined) => {
        const text = JSON.stringify(next);
        if (next !== undefined && text !== last) {
          last = text;
          listener(next);
        }
      };
      const touched = (key: string) => key === jobKey(id) || key.startsWith(chunkPrefix(id));
      const unsubscribe = state.subscribe((change) => {
        if (!change.applied || !change.command.ops.some((op) => touched(op.key)) || timer !== undefined) return;
        timer = setTimeout(() => {
          timer = undefined;
          reads = reads.then(() => view(id)).then(deliver, () => {});
        }, watchCoalesceMs);
      });
      const stop = () => {
        unsubscribe();
        if (timer !== undefined) clearTimeout(timer);
      };
      const firstRead = view(id);
      reads = firstRead.then(() => {}, () => {});
      let first: JobView | undefined;
      try {
        first = await firstRead;
      } catch (error) {
        stop();
        throw error;
      }
      if (first === undefined) {
        stop();
        throw new JobError('NOT_FOUND', `no job ${id}`);
      }
      deliver(first);
      return stop;
    },

    async openDownload(id, request): Promise<Download> {
      const job = await completedJob(id);
      const range = request.range;
      const sized = (size: number) => (range === undefined ? size : range.end - range.start);
      // An images job keeps only its archive: both forms are the tar of optimised images.
      if (job.mode === 'images') {
        const info = await blobs.stat(blobKeys.dcz(id));
        if (info === undefined) throw new JobError('UNAVAILABLE', `job ${id}: its tar is missing from the blob store`);
        return { size: sized(info.size), fileName: job.fileName, sha256: null, stream: streamBlob(blobKeys.dcz(id), range) };
      }
      if (request.compressed) {
        const info = await blobs.stat(blobKeys.dcz(id));
        const suffix = suffixOf(codingOf(job).format);
        if (info === undefined) throw new JobError('UNAVAILABLE', `job ${id}: its ${suffix} is missing from the blob store`);
        return { size: sized(info.size), fileName: job.mode === 'compress' ? `${job.fileName}${suffix}` : job.fileName, sha256: null, stream: streamBlob(blobKeys.dcz(id), range) };
      }
      const fileName = job.mode === 'decompress' && job.fileName.endsWith('.dcz') ? job.fileName.slice(0, -4) : job.fileName;
      const original = await blobs.stat(blobKeys.original(id));
      if (original !== undefined) return { size: sized(original.size), fileName, sha256: job.sha256, stream: streamBlob(blobKeys.original(id), range) };
      const stream = range === undefined ? decodeStored(job, blobKeys.dcz(id)) : decodeStoredRange(job, blobKeys.dcz(id), range);
      return { size: sized(job.originalSize ?? 0), fileName, sha256: job.sha256, stream };
    },

    metrics(): JobMetrics {
      const stats = worker.stats();
      const jobsByState = Object.fromEntries(jobStates.map((name) => [name, 0])) as Record<JobState, number>;
      for (const jobState of jobStateById.values()) jobsByState[jobState]++;
      return {
        jobsByState,
        chunksCoded: stats.chunksCoded,
        bytesIn: stats.bytesIn,
        bytesOut: stats.bytesOut + bytesServed,
        kernelMBps: stats.kernelMBps,
        queueDepth: stats.queued,
        inFlight: stats.inFlight,
        chunksDecoded,
      };
    },
  };
}
