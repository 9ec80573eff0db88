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
/** Chunk buffers an upload keeps for reuse: about as many as it has in flight. */
const spareBuffersMax = 4;

/**
 * Chunk-sized buffers of one upload: a chunk's buffer comes back once the chunk is coded (the codec
 * thread hands it back) or staged, and the next chunk is cut into it. A fresh 4 MiB buffer per chunk
 * cost the gateway page faults and collections for every chunk of a large upload.
 */
class ChunkBuffers {
  readonly #bytes: number;
  readonly #spares: Uint8Array[] = [];

  constructor(bytes: number) {
    this.#bytes = bytes;
  }

  /** A buffer of exactly the chunk size, whose bytes the caller overwrites before reading any. */
  take(): Uint8Array {
    return this.#spares.pop() ?? new Uint8Array(Buffer.allocUnsafeSlow(this.#bytes).buffer, 0, this.#bytes);
  }

  /** Keeps a whole chunk buffer nobody uses any more; anything else is left to the collector. */
  give(buffer: Uint8Array | undefined): void {
    if (buffer === undefined || buffer.byteOffset !== 0 || buffer.length !== this.#bytes || buffer.buffer.byteLength !== this.#bytes) return;
    if (this.#spares.length < spareBuffersMax) this.#spares.push(buffer);
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
}

export class UploadChunks {
  readonly #options: UploadChunksOptions;
  /** Chunks being coded on this node right now (bounded by the worker's slots). */
  readonly #codingHere = new Set<Promise<void>>();
  #codingFailure: unknown;
  #count = 0;
  readonly #buffers: ChunkBuffers;

  constructor(options: UploadChunksOptions) {
    this.#options = options;
    this.#buffers = new ChunkBuffers(options.chunkBytes);
  }

  /** A buffer to cut the next chunk of the original into (rechunk): one that `place` was given back, when there is one. */
  readonly take = (): Uint8Array => this.#buffers.take();

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
    this.#buffers.give(piece);
  }

  /** Records a chunk coded here as done once its output is staged; the first failure fails the upload at its next chunk. */
  #recordWhenCoded(index: number, inputBytes: number, assignedAt: string, coding: Promise<CodedHere>): void {
    const recorded: Promise<void> = coding
      .then((coded) => {
        this.#buffers.give(coded.input);
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
