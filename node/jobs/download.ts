/**
 * Downloads of completed jobs: a stored object streamed as it is, or decoded chunk by chunk (ranged
 * reads, in parallel) on this node's threads and, when they are busy, on peers on other machines, each
 * chunk verified against its CRC32C and the whole file against its SHA-256.
 */
import { createHash } from 'node:crypto';
import { networkInterfaces } from 'node:os';
import { decode, encode } from 'cborg';
import { crc32c } from '@node-rs/crc32';
import type { Logger } from 'pino';
import * as z from 'zod';
import type { Member } from '../cluster/index.ts';
import { choiceOf, codecHuffmanId, CodecError, format, freeBuffer, mapOrdered, SpareBuffers, suffixOf, type CodecPool } from '../codec/index.ts';
import type { BlobStore } from '../storage/index.ts';
import { codes } from './core/index.ts';
import { blobKeys, codingOf, type JobRecord } from './records.ts';
import { JobError, type Download, type DownloadRequest } from './types.ts';

/** What the jobs room needs of the network to share decoding work: members and one request/response. */
export interface JobPeers {
  members(): readonly Member[];
  request(toName: string, protocol: string, bytes: Uint8Array, options?: { timeoutMs?: number }): Promise<Uint8Array>;
  handle(protocol: string, handler: (fromName: string, bytes: Uint8Array) => Promise<Uint8Array>): void;
}

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
/**
 * Decoded chunks a download has sent, kept to decode later chunks into: as many as a download decodes at
 * once on two threads (#decodeSlots), at most 16 MiB, so chunks larger than 4 MiB keep fewer. Measured,
 * a 512 MB download from a local node: each chunk had been read into a fresh buffer, copied into another
 * for its codec thread, and decoded into a third, 180,000-200,000 page faults at about 10 us each.
 */
const spareDecodedMax = 4;
const spareDecodedBytesMax = 16 * 1024 * 1024;

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

export interface DownloadsOptions {
  blobs: BlobStore;
  pool: CodecPool;
  logger: Logger;
  /** Peers to share download decoding with; without them this node decodes alone. */
  peers?: JobPeers;
}

type ByteRange = { start: number; end: number };

/** This node's downloads, and its side of decoding for other nodes' downloads (the decode protocol). */
export class Downloads {
  /** Bytes sent to downloads and to peers' decode requests. */
  bytesServed = 0;
  /** Chunks decoded for downloads here (those sent to a peer included). */
  chunksDecoded = 0;
  readonly #blobs: BlobStore;
  readonly #pool: CodecPool;
  readonly #logger: Logger;
  readonly #peers: JobPeers | undefined;
  readonly #own = ownAddresses();
  #nextPeer = 0;
  #localDecodes = 0;
  readonly #spares = new SpareBuffers(spareDecodedMax, spareDecodedBytesMax);
  /** Buffers this node decoded chunks into: given back by `done`, they are decoded into again. */
  readonly #decoded = new WeakSet<ArrayBufferLike>();

  constructor(options: DownloadsOptions) {
    this.#blobs = options.blobs;
    this.#pool = options.pool;
    this.#logger = options.logger;
    this.#peers = options.peers;
    this.#peers?.handle(decodeProtocol, async (_from, bytes) => {
      const request = parseDecodeRequest(bytes);
      const data = await this.#decodeHere(request);
      this.bytesServed += data.length;
      return data;
    });
  }

  /** True when a live peer that codes runs on another machine: worth sending work to. */
  peersElsewhere(): boolean {
    return this.#decodePeers().length > 0;
  }

  /** A completed job's download: its stored objects as they are, or its original decoded from its .dcz. */
  async open(job: JobRecord, request: DownloadRequest): Promise<Download> {
    const id = job.id;
    const range = request.range;
    const sized = (size: number) => (range === undefined ? size : range.end - range.start);
    // An images job keeps only its archive: both forms are the tar of optimised images.
    if (job.mode === 'images') {
      const info = await this.#blobs.stat(blobKeys.dcz(id));
      if (info === undefined) throw new JobError('UNAVAILABLE', `job ${id}: its tar is missing from the blob store`);
      return { size: sized(info.size), fileName: job.fileName, sha256: null, stream: this.#streamBlob(blobKeys.dcz(id), range), done: this.#done };
    }
    if (request.compressed) {
      const info = await this.#blobs.stat(blobKeys.dcz(id));
      const suffix = suffixOf(codingOf(job).format);
      if (info === undefined) throw new JobError('UNAVAILABLE', `job ${id}: its ${suffix} is missing from the blob store`);
      return { size: sized(info.size), fileName: job.mode === 'compress' ? `${job.fileName}${suffix}` : job.fileName, sha256: null, stream: this.#streamBlob(blobKeys.dcz(id), range), done: this.#done };
    }
    const fileName = job.mode === 'decompress' && job.fileName.endsWith('.dcz') ? job.fileName.slice(0, -4) : job.fileName;
    const original = await this.#blobs.stat(blobKeys.original(id));
    if (original !== undefined) return { size: sized(original.size), fileName, sha256: job.sha256, stream: this.#streamBlob(blobKeys.original(id), range), done: this.#done };
    const stream = range === undefined ? this.#decodeStored(job, blobKeys.dcz(id)) : this.#decodeStoredRange(job, blobKeys.dcz(id), range);
    return { size: sized(job.originalSize ?? 0), fileName, sha256: job.sha256, stream, done: this.#done };
  }

  /** A piece a download yielded is written: a chunk decoded here is decoded into again, any other piece freed. */
  readonly #done = (piece: Uint8Array): void => {
    if (this.#decoded.has(piece.buffer)) {
      this.#decoded.delete(piece.buffer);
      this.#spares.give(piece);
    } else {
      freeBuffer(piece);
    }
  };

  async *#streamBlob(key: string, range?: ByteRange): AsyncGenerator<Uint8Array> {
    for await (const piece of this.#blobs.getStream(key, range)) {
      this.bytesServed += piece.length;
      yield piece;
    }
  }

  /** Where each chunk of the stored object is: the .dcz's own index, or a standard format's pieces index. */
  async #readIndex(job: JobRecord, key: string) {
    const blobs = this.#blobs;
    if (codingOf(job).format !== 'dcz') return format.decodeIndex(await blobs.get(blobKeys.pieces(job.id)));
    const info = await blobs.stat(key);
    if (info === undefined) throw new JobError('UNAVAILABLE', `job ${job.id}: its .dcz is missing from the blob store`);
    const trailer = format.decodeTrailer(await blobs.getRange(key, { start: info.size - format.trailerBytes, end: info.size }));
    return format.decodeIndex(await blobs.getRange(key, { start: trailer.indexOffset, end: info.size - format.trailerBytes }));
  }

  /** Decodes a stored .dcz chunk by chunk (ranged reads, in parallel on this node's threads), verifying everything. */
  async *#decodeStored(job: JobRecord, key: string): AsyncGenerator<Uint8Array> {
    const entries = await this.#readIndex(job, key);
    const hash = createHash('sha256');
    async function* indexed() {
      yield* entries.map((entry, index) => ({ entry, index }));
    }
    for await (const data of mapOrdered(indexed(), (item) => this.#decodeEntry(job, key, item.entry, item.index), this.#decodeSlots())) {
      hash.update(data);
      this.bytesServed += data.length;
      yield data;
    }
    if (hash.digest('hex') !== job.sha256) throw new CodecError('CHECKSUM_MISMATCH', `job ${job.id}: SHA-256 of the decoded file does not match`);
  }

  #decodeEntry(job: JobRecord, key: string, entry: format.ChunkEntry, index: number): Promise<Uint8Array> {
    this.chunksDecoded++;
    const { choice, format: objectFormat } = codingOf(job);
    const framed = objectFormat === 'dcz';
    return this.#decodeAnywhere({
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
  async *#decodeStoredRange(job: JobRecord, key: string, range: ByteRange): AsyncGenerator<Uint8Array> {
    const entries = await this.#readIndex(job, key);
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
      const data = await this.#decodeEntry(job, key, item.entry, item.index);
      return data.subarray(Math.max(range.start - item.originalStart, 0), Math.min(range.end - item.originalStart, data.length));
    };
    for await (const data of mapOrdered(listed(), decodeCut, this.#decodeSlots())) {
      this.bytesServed += data.length;
      yield data;
    }
  }

  /**
   * Reads one chunk from the store and decodes it on this node's threads with the job's codec,
   * verifying its CRC32C (a standard piece also checks itself: zstd's checksum, gzip's CRC32, ...).
   */
  async #decodeHere(request: DecodeRequest): Promise<Uint8Array> {
    const pool = this.#pool;
    const choice = choiceOf(request.codec, request.level);
    const record = await this.#blobs.getRange(request.key, { start: request.start, end: request.end });
    if (!request.framed) return pool.decompress(record, request.originalBytes, request.checksum, request.label, choice);
    const fields = format.decodeChunkHeader(record.subarray(0, format.chunkHeaderBytes), request.chunk, format.chunkBytesMax, request.codec);
    if (fields.checksum !== request.checksum || fields.originalBytes !== request.originalBytes || format.chunkHeaderBytes + fields.compressedBytes !== record.length) {
      throw new CodecError('CORRUPT_CONTAINER', `${request.label}: header does not match the index`);
    }
    // The record goes to the codec thread whole (the frame is a view into it, after its header), and a
    // Huffman chunk is decoded into a spare buffer when one is kept.
    const into = request.codec === codecHuffmanId ? this.#spares.take() : undefined;
    const data = await pool.decompress(record.subarray(format.chunkHeaderBytes), request.originalBytes, request.checksum, request.label, choice, { giveBuffer: true, into });
    this.#decoded.add(data.buffer);
    return data;
  }

  /**
   * Members worth sending work to (decoding, and raw chunks while this node is busy): alive, and on another machine. A peer on this machine
   * shares its cores with us, and shipping it a chunk costs encryption at both ends, so there it
   * only slows a download down (measured: 4x slower on a 3-node cluster on one 2-core machine).
   */
  #decodePeers(): Member[] {
    return (this.#peers?.members() ?? []).filter((member) => member.status === 'alive' && !member.self && codes(member) && !onThisMachine(member, this.#own));
  }

  /** Chunks decoded at once for one download: twice this node's threads, plus twice each remote peer's. */
  #decodeSlots(): number {
    return 2 * (this.#pool.threads + this.#decodePeers().reduce((sum, member) => sum + (member.load?.workers ?? 1), 0));
  }

  /**
   * Decodes a chunk here while this node's threads have room, and on a peer on another machine
   * (round robin) when they do not, so a download can use the whole cluster's cores. A remote
   * result is checked against the chunk's CRC32C here; any remote failure falls back to decoding
   * locally, which reports a real corruption with its chunk.
   */
  async #decodeAnywhere(request: DecodeRequest): Promise<Uint8Array> {
    const peers = this.#decodePeers();
    if (this.#localDecodes < this.#pool.threads * 2 || peers.length === 0 || this.#peers === undefined) {
      this.#localDecodes++;
      try {
        return await this.#decodeHere(request);
      } finally {
        this.#localDecodes--;
      }
    }
    const target = peers[this.#nextPeer++ % peers.length];
    try {
      const data = await this.#peers.request(target.name, decodeProtocol, encode(request), { timeoutMs: decodeTimeoutMs });
      if (data.length === request.originalBytes && crc32c(data) === request.checksum) return data;
      this.#logger.warn({ peer: target.name, chunk: request.chunk }, 'download: a peer returned a chunk that fails its checksum; decoding here');
    } catch (error) {
      this.#logger.debug({ err: error, peer: target.name, chunk: request.chunk }, 'download: remote decode failed; decoding here');
    }
    return this.#decodeHere(request);
  }
}
