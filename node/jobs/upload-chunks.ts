/**
 * One upload's chunks as its consumer hands them over: numbered once the disk has room, then staged raw
 * for the coordinator to assign, or coded here on this node's worker (locality) and recorded done.
 */
import type { JobsConfig } from '../config/index.ts';
import type { BlobStore, SpaceGuard } from '../storage/index.ts';
import { pendingChunk } from './core/index.ts';
import type { RecordProposer } from './record-proposer.ts';
import type { ChunkRecord, JobCoding } from './records.ts';
import type { CodedHere, Worker } from './worker.ts';

/** Chunks of one upload coded here and not yet recorded (coding, or their output being written). */
const codedChunksHeldMax = 2;
/** Spare chunk buffers the node keeps for reuse, of each size. */
const spareBuffersMax = 4;
/**
 * The chunk buffers of all of a node's uploads at once, in bytes: six 4 MiB chunks, enough for an upload
 * at full speed (one being filled, one waiting for a slot, two coding) with room for another; the node's
 * two codec threads code no faster for more. Each upload held its own before, and ten clients flooding
 * one node took it from 165 MB to 278-308 MB; with 48 MiB for all, 279-288 MB; with 24 MiB, 250-267 MB.
 */
export const chunkMemoryBytesDefault = 24 * 1024 * 1024;

/**
 * The chunk-sized buffers of a node's uploads: an upload takes one to cut its next chunk into, and waits
 * (first in, first out) while the node's uploads hold `bytesMax` between them; it gives the buffer back
 * when the chunk is coded (the codec thread hands it back) or staged. A waiting upload takes no more of
 * its stream, so its client gets no more credit. One buffer is always granted when none is out, whatever
 * its size. Buffers given back are kept for the next chunk of that size: a fresh 4 MiB per chunk cost the
 * gateway page faults and collections for every chunk of a large upload.
 */
export class ChunkMemory {
  readonly #bytesMax: number;
  #bytesOut = 0;
  readonly #waiting: { bytes: number; grant: () => void }[] = [];
  readonly #spares = new Map<number, Uint8Array[]>();

  constructor(bytesMax = chunkMemoryBytesDefault) {
    this.#bytesMax = bytesMax;
  }

  /** Bytes of buffers taken and not yet given back or released. */
  get bytesOut(): number {
    return this.#bytesOut;
  }

  /** A buffer of exactly `bytes`, once the node's uploads hold room for it; `signal` gives up the wait. */
  async take(bytes: number, signal?: AbortSignal): Promise<Uint8Array> {
    if (this.#waiting.length > 0 || !this.#fits(bytes)) await this.#wait(bytes, signal);
    else this.#bytesOut += bytes;
    return this.#spares.get(bytes)?.pop() ?? new Uint8Array(Buffer.allocUnsafeSlow(bytes).buffer, 0, bytes);
  }

  /** A buffer `take` gave is back (kept for reuse when it is a whole one of its size); its room is free. */
  give(buffer: Uint8Array, bytes: number): void {
    if (buffer.byteOffset === 0 && buffer.buffer.byteLength === bytes) {
      const spares = this.#spares.get(bytes) ?? [];
      if (spares.length < spareBuffersMax) spares.push(new Uint8Array(buffer.buffer, 0, bytes));
      this.#spares.set(bytes, spares);
    }
    this.release(bytes);
  }

  /** A buffer `take` gave will not come back (dropped, or lost with a failed coding): its room is free. */
  release(bytes: number): void {
    this.#bytesOut = Math.max(0, this.#bytesOut - bytes);
    while (this.#waiting.length > 0 && this.#fits(this.#waiting[0].bytes)) {
      const next = this.#waiting.shift()!;
      this.#bytesOut += next.bytes;
      next.grant();
    }
  }

  #fits(bytes: number): boolean {
    return this.#bytesOut === 0 || this.#bytesOut + bytes <= this.#bytesMax;
  }

  #wait(bytes: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const entry = {
        bytes,
        grant: () => {
          signal?.removeEventListener('abort', abandon);
          resolve();
        },
      };
      const abandon = () => {
        this.#waiting.splice(this.#waiting.indexOf(entry), 1);
        reject(signal?.reason ?? new Error('chunk memory: wait abandoned'));
      };
      if (signal?.aborted) return abandon();
      signal?.addEventListener('abort', abandon, { once: true });
      this.#waiting.push(entry);
    });
  }
}

/** What a chunk record says of its original beyond its input's size. */
export type ChunkFields = Pick<ChunkRecord, 'originalBytes' | 'checksum' | 'image'>;

export interface UploadChunksOptions {
  jobId: string;
  node: string;
  blobs: BlobStore;
  space: SpaceGuard;
  config: JobsConfig;
  records: RecordProposer;
  coding: JobCoding;
  /** This node's worker: chunks it has a free slot for are coded here, where their bytes already are. */
  compressHere?: Worker['compressHere'];
  slotFreed?: Worker['slotFreed'];
  /** True when a live peer runs on another machine (UploadContext.peersElsewhere). */
  peersElsewhere?: () => boolean;
  /** Bytes of a full chunk: the size of the buffers `take` hands out. */
  chunkBytes: number;
  /** The node's chunk buffers, shared by its uploads; without one, this upload's own, unbounded. */
  memory?: ChunkMemory;
}

export class UploadChunks {
  readonly #options: UploadChunksOptions;
  /** Chunks being coded on this node right now (bounded by the worker's slots). */
  readonly #codingHere = new Set<Promise<void>>();
  #codingFailure: unknown;
  #count = 0;
  readonly #memory: ChunkMemory;
  /** Buffers this upload took from the node's chunk memory and has not given back. */
  #buffersOut = 0;
  readonly #stopWaiting = new AbortController();

  constructor(options: UploadChunksOptions) {
    this.#options = options;
    this.#memory = options.memory ?? new ChunkMemory(Number.MAX_SAFE_INTEGER);
  }

  /** A buffer to cut the next chunk of the original into (rechunk), once the node's uploads have room for it. */
  readonly take = async (): Promise<Uint8Array> => {
    const buffer = await this.#memory.take(this.#options.chunkBytes, this.#stopWaiting.signal);
    this.#buffersOut += 1;
    return buffer;
  };

  /**
   * A chunk's buffer is done with: back to the node's chunk memory (which keeps only whole buffers; the
   * last, shorter chunk is a copy, whose buffer's room this frees).
   */
  #give(buffer: Uint8Array | undefined): void {
    if (this.#buffersOut === 0) return;
    this.#buffersOut -= 1;
    if (buffer === undefined) this.#memory.release(this.#options.chunkBytes);
    else this.#memory.give(buffer, this.#options.chunkBytes);
  }

  /**
   * The upload is over, either way: a wait for a buffer ends, and the room of buffers not given back
   * (one being filled when the upload failed, those lost with a failed coding) is freed.
   */
  close(): void {
    this.#stopWaiting.abort(new Error(`upload ${this.#options.jobId} ended`));
    this.#memory.release(this.#buffersOut * this.#options.chunkBytes);
    this.#buffersOut = 0;
  }

  /** Chunks numbered so far. */
  get count(): number {
    return this.#count;
  }

  /** The next chunk's index, once the disk has room for its bytes. */
  async next(bytes: number): Promise<number> {
    const index = this.#count++;
    await this.#options.space.check(bytes, `upload ${this.#options.jobId}: chunk ${index}`);
    return index;
  }

  /** Stages a chunk's raw bytes for whichever node the coordinator assigns it to. */
  async stage(index: number, bytes: Uint8Array, fields: ChunkFields): Promise<void> {
    const record = pendingChunk(this.#options.jobId, index, bytes.length, fields);
    await this.#options.blobs.put(record.input, bytes);
    await this.#options.records.add(record);
  }

  /**
   * Locality: a chunk of the original is coded on this node when its worker has a free slot, and
   * recorded done at once (node: this gateway, attempt 1); only the coded chunk is staged. When the
   * slots are busy it waits for one (or, with peers on other machines, stages the raw bytes for the
   * coordinator to assign). Coding runs beside the upload, which goes on reading. A node that keeps
   * originals stages every chunk raw (the merge composes them), as does one with codeAtGateway off.
   */
  async place(piece: Uint8Array): Promise<void> {
    if (this.#codingFailure !== undefined) throw this.#codingFailure;
    const inputBytes = piece.length;
    const index = await this.next(inputBytes);
    const assignedAt = new Date().toISOString();
    const { config, compressHere, slotFreed, coding: jobCoding, jobId } = this.#options;
    if (config.keepOriginal || !config.codeAtGateway || compressHere === undefined) return this.#stageRaw(index, piece);
    // Coded chunks waiting for their write hold memory: a few per upload.
    while (this.#codingHere.size >= codedChunksHeldMax) await Promise.race(this.#codingHere);
    let coding = compressHere(jobId, index, piece, jobCoding);
    while (coding === undefined && this.#options.peersElsewhere?.() === false && slotFreed !== undefined && (await slotFreed())) coding = compressHere(jobId, index, piece, jobCoding);
    if (coding === undefined) return this.#stageRaw(index, piece);
    this.#recordWhenCoded(index, inputBytes, assignedAt, coding);
  }

  /** Stages a chunk of the original raw; its buffer is reused once written. */
  async #stageRaw(index: number, piece: Uint8Array): Promise<void> {
    await this.stage(index, piece, { originalBytes: piece.length, checksum: null });
    this.#give(piece);
  }

  /** Records a chunk coded here as done once its output is staged; the first failure fails the upload at its next chunk. */
  #recordWhenCoded(index: number, inputBytes: number, assignedAt: string, coding: Promise<CodedHere>): void {
    const recorded: Promise<void> = coding
      .then((coded) => {
        this.#give(coded.input);
        return this.#options.records.add({
          ...pendingChunk(this.#options.jobId, index, inputBytes, coded),
          state: 'done',
          attempt: coded.attempt,
          node: this.#options.node,
          output: coded.output,
          outputBytes: coded.outputBytes,
          text: coded.text,
          assignedAt,
          doneAt: new Date().toISOString(),
        });
      })
      .catch((error: unknown) => {
        this.#codingFailure ??= error;
      })
      .finally(() => this.#codingHere.delete(recorded));
    this.#codingHere.add(recorded);
  }

  /** Waits for the chunks coded here; the first failure among them fails the upload. */
  async codedHere(): Promise<void> {
    await Promise.all(this.#codingHere);
    if (this.#codingFailure !== undefined) throw this.#codingFailure;
  }

  /** Waits for the chunks coded here, whatever their outcome. */
  async settled(): Promise<void> {
    await Promise.all(this.#codingHere);
  }
}
