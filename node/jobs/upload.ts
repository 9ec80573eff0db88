/**
 * An upload on the gateway node that received it: bytes in, staged chunks and chunk records out.
 *
 * `write` feeds a stream with a small high-water mark, so the client's bytes wait in the socket (its
 * flow-control credit), not in this process. A consumer loop cuts the stream into chunks (compress)
 * or parses it as a .dcz, record by record (decompress), stages each chunk in the blob store, and
 * proposes its chunk record; the coordinator starts assigning chunks while the upload goes on.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { fileTypeFromBuffer } from 'file-type';
import type { Logger } from 'pino';
import type { Member } from '../cluster/index.ts';
import { isNoSpaceError, ProposalError, type ReplicatedState } from '../cluster/index.ts';
import { choiceOf, CodecError, format, huffmanChoice, imageInputBytesMaxDefault, ImageError, imageModes, outputFormats, parseCodecChoice, parseImageQuality, rechunk, resolveOutput, streamSource, type ByteSource, type ImageMode, type OutputFormat } from '../codec/index.ts';
import type { JobsConfig } from '../config/index.ts';
import { BlobError, InsufficientStorageError, type BlobStore, type SpaceGuard } from '../storage/index.ts';
import { failedJob, newJobRecord, pendingChunk, uploadFinishedJob } from './core/index.ts';
import { blobKeys, chunkKey, createChunks, createJobOps, readChunks, readJob, updateJob, type ChunkRecord, type ImageCoding, type JobCoding, type JobRecord } from './records.ts';
import { tarImages } from './tar.ts';
import { JobError, type UploadRequest } from './types.ts';
import type { Worker } from './worker.ts';

/** An upload as the jobs room runs it; the service turns the finished record into a JobView. */
export interface StagingSession {
  readonly jobId: string;
  write(bytes: Uint8Array): Promise<void>;
  finish(): Promise<JobRecord>;
  abort(reason: string): Promise<void>;
}

export interface UploadContext {
  node: string;
  state: ReplicatedState;
  blobs: BlobStore;
  config: JobsConfig;
  logger: Logger;
  /** Free space on this node's disks, checked before the upload is accepted and before each chunk is staged. */
  space: SpaceGuard;
  /** Called when the session ends, either way. */
  onEnd: () => void;
  /** This node's worker: chunks it has a free slot for are coded here, where their bytes already are. */
  compressHere?: Worker['compressHere'];
  slotFreed?: Worker['slotFreed'];
  /**
   * True when a live peer runs on another machine. Only then is a chunk worth staging raw while this
   * node's slots are busy: a peer on this machine shares its cores, so the upload waits for a slot.
   */
  peersElsewhere?: () => boolean;
  /** This node's membership view (itself included): whether a majority of the voters is still alive. */
  members?: () => readonly Pick<Member, 'name' | 'status'>[];
}

const probeBytes = 4100;
/**
 * Chunk records travel in batches: at most this many proposals of one upload in flight, each with
 * whatever chunks arrived meanwhile, at most recordsPerProposalMax of them (about 500 bytes each).
 */
const proposalsInFlightMax = 2;
const recordsPerProposalMax = 64;
/** Chunks of one upload coded here and not yet recorded (coding, or their output being written). */
const codedChunksHeldMax = 2;
const fileNameBytesMax = 255;
/**
 * Images in one images job: each one's sizes fold into the job record when it completes, and a record
 * travels in one Raft entry (appendBytesMax, 1 MiB), so a batch stays well under it (names <= 200 bytes).
 */
export const imagesPerJobMax = 2000;

export function newJobId(): string {
  return randomBytes(8).toString('hex');
}

/**
 * The codec and format an upload asked for, checked as `dcas compress` checks them (an unknown codec,
 * level or format, or a format with another codec, is BAD_INPUT naming the valid ones). A decompress
 * job takes both from the .dcz it receives.
 */
export function validateCoding(request: UploadRequest): JobCoding {
  const formatText = request.format === undefined ? undefined : String(request.format);
  if (formatText !== undefined && !outputFormats.includes(formatText as OutputFormat)) {
    throw new JobError('BAD_INPUT', `unknown format "${formatText.slice(0, 40)}": choose one of ${outputFormats.join(', ')}`);
  }
  try {
    const codec = request.codec === undefined ? undefined : parseCodecChoice(String(request.codec).slice(0, 40));
    const resolved = resolveOutput(formatText as OutputFormat | undefined, codec);
    return { choice: resolved.codec ?? huffmanChoice, format: resolved.format };
  } catch (error) {
    if (error instanceof CodecError) throw new JobError('BAD_INPUT', error.message);
    throw error;
  }
}

/** An images job's options, checked as POST /v1/images checks them; BAD_INPUT names what is wrong. */
export function validateImageCoding(request: UploadRequest): ImageCoding | undefined {
  if (request.mode !== 'images') {
    if (request.image !== undefined) throw new JobError('BAD_INPUT', 'image options are for mode "images"');
    return undefined;
  }
  if (request.codec !== undefined || request.format !== undefined) throw new JobError('BAD_INPUT', 'codec and format are not for mode "images": it codes each image with its image mode');
  const mode = String(request.image?.mode ?? '');
  if (!imageModes.includes(mode as ImageMode)) throw new JobError('BAD_INPUT', `image mode "${mode.slice(0, 40)}": choose one of ${imageModes.join(', ')}`);
  try {
    const quality = request.image?.quality === undefined ? null : parseImageQuality(String(request.image.quality).slice(0, 20));
    return { mode: mode as ImageMode, quality, strip: request.image?.strip !== false };
  } catch (error) {
    if (error instanceof ImageError) throw new JobError('BAD_INPUT', error.message);
    throw error;
  }
}

export function validateUploadRequest(request: UploadRequest, config: JobsConfig): { fileName: string; chunkSize: number } {
  const fileName = String(request.fileName ?? '');
  if (fileName.length === 0 || Buffer.byteLength(fileName) > fileNameBytesMax || /[\u0000-\u001f/\\]/.test(fileName) || fileName === '.' || fileName === '..') {
    throw new JobError('BAD_INPUT', `fileName must be a plain file name of 1..${fileNameBytesMax} bytes without "/", "\\" or control characters`);
  }
  if (request.mode !== 'compress' && request.mode !== 'decompress' && request.mode !== 'images') throw new JobError('BAD_INPUT', 'mode must be "compress", "decompress" or "images"');
  const chunkSize = request.chunkSize ?? config.chunkSize;
  if (!Number.isInteger(chunkSize) || chunkSize < format.chunkBytesMin || chunkSize > format.chunkBytesMax) {
    throw new JobError('BAD_INPUT', `chunkSize must be an integer from ${format.chunkBytesMin} to ${format.chunkBytesMax}`);
  }
  if (request.size !== undefined && (!Number.isSafeInteger(request.size) || request.size < 0)) throw new JobError('BAD_INPUT', 'size must be a non-negative integer');
  if ((request.size ?? 0) > config.uploadBytesMax) throw new JobError('TOO_LARGE', `upload of ${request.size} bytes exceeds this node's limit of ${config.uploadBytesMax}`);
  return { fileName, chunkSize };
}

function looksLikeText(probe: Uint8Array): boolean {
  if (probe.length === 0 || probe.includes(0)) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(probe.subarray(0, Math.max(0, probe.length - 4)));
    return true;
  } catch {
    return false;
  }
}

export async function detectMime(probe: Uint8Array): Promise<string> {
  const type = await fileTypeFromBuffer(probe).catch(() => undefined);
  if (type !== undefined) return type.mime;
  return looksLikeText(probe) ? 'text/plain' : 'application/octet-stream';
}

/**
 * A failure that means "this node's disk is full", as the INSUFFICIENT_STORAGE the client gets, or
 * undefined for any other failure.
 */
export function storageJobError(error: unknown, state: ReplicatedState): JobError | undefined {
  if (error instanceof JobError) return error.code === 'INSUFFICIENT_STORAGE' ? error : undefined;
  const full =
    error instanceof InsufficientStorageError ||
    (error instanceof BlobError && error.code === 'INSUFFICIENT_STORAGE') ||
    (error instanceof ProposalError && error.code === 'STORAGE_FAILED' && state.storageFailure()?.code === 'INSUFFICIENT_STORAGE') ||
    isNoSpaceError(error);
  return full ? new JobError('INSUFFICIENT_STORAGE', (error as Error).message) : undefined;
}

/**
 * Why this node cannot reach any coordinator, or undefined when one may answer: no leader known and so
 * many voters dead in its membership view that the rest cannot form a majority. Such a node is cut off
 * (or the cluster lost its majority); its job-creating proposal could only wait out the proposal timeout,
 * so the upload is refused at once and the client retries elsewhere. A voter not heard of yet (a node
 * just started) is not counted dead, and with a majority possibly alive and no leader known an election
 * is under way: the upload waits for it as before.
 */
export function cutOffReason(leader: string | null, voters: readonly string[], members: readonly Pick<Member, 'name' | 'status'>[]): string | undefined {
  if (leader !== null || voters.length === 0) return undefined;
  const dead = new Set(members.filter((member) => member.status === 'dead').map((member) => member.name));
  const reachable = voters.filter((voter) => !dead.has(voter)).length;
  const majority = Math.floor(voters.length / 2) + 1;
  if (reachable >= majority) return undefined;
  return `no coordinator known and ${voters.length - reachable} of ${voters.length} voters dead as this node sees them (a majority is ${majority}): this node is cut off from the cluster; retry on another node`;
}

/**
 * Refuses new work while this node cannot persist Raft state, or when an upload of `bytes` would eat
 * into the disk reserve. A declared size counts twice: the staged original and its coded result.
 */
async function checkRoomForUpload(context: UploadContext, bytes: number, fileName: string): Promise<void> {
  const failure = context.state.storageFailure();
  if (failure !== null) throw new JobError(failure.code === 'INSUFFICIENT_STORAGE' ? 'INSUFFICIENT_STORAGE' : 'UNAVAILABLE', `upload of ${fileName} refused: ${failure.message}`);
  const cutOff = context.members === undefined ? undefined : cutOffReason(context.state.leader(), context.state.status().voters, context.members());
  if (cutOff !== undefined) throw new JobError('UNAVAILABLE', `upload of ${fileName} refused: ${cutOff}`);
  try {
    await context.space.check(bytes * 2, `upload of ${fileName}`);
  } catch (error) {
    throw storageJobError(error, context.state) ?? error;
  }
}

interface RecordProposer {
  /** Queues a new chunk record; waits while a whole batch is already queued. Throws once a batch failed. */
  add(record: ChunkRecord): Promise<void>;
  /** Waits until every queued record is recorded; throws if any batch failed. */
  drain(): Promise<void>;
  /** Waits until no proposal is in flight, whatever their outcome. */
  settle(): Promise<void>;
  /** The job record as this upload changed it (a decompress job records its .dcz's codec): later batches are guarded on it. */
  rebase(job: JobRecord): void;
}

/** Group commit of one upload's chunk records: each proposal carries what queued while the last was in flight. */
function createRecordProposer(state: ReplicatedState, created: JobRecord): RecordProposer {
  const jobId = created.id;
  let job = created;
  const waiting: ChunkRecord[] = [];
  const inFlight = new Set<Promise<void>>();
  let failure: unknown;

  function send(): void {
    const batch = waiting.splice(0, recordsPerProposalMax);
    const settled: Promise<void> = createChunks(state, job, batch)
      .then((applied) => {
        if (!applied) throw new Error(`job ${jobId}: chunks ${batch[0].index} to ${batch[batch.length - 1].index} were not recorded: the job ended or they already were`);
      })
      .catch((error: unknown) => {
        failure ??= error;
      })
      .finally(() => {
        inFlight.delete(settled);
        if (waiting.length > 0 && failure === undefined) send();
      });
    inFlight.add(settled);
  }

  async function settle(): Promise<void> {
    while (inFlight.size > 0) await Promise.race(inFlight);
  }

  return {
    async add(record) {
      if (failure !== undefined) throw failure;
      waiting.push(record);
      if (inFlight.size < proposalsInFlightMax) send();
      while (waiting.length >= recordsPerProposalMax && failure === undefined) await Promise.race(inFlight);
      if (failure !== undefined) throw failure;
    },
    async drain() {
      await settle();
      if (failure !== undefined) throw failure;
    },
    settle,
    rebase(changed) {
      job = changed;
    },
  };
}

/** tar-stream's errors for a malformed archive, as the job's reason; undefined for any other error. */
function tarFailure(error: unknown): string | undefined {
  const message = (error as Error)?.message ?? '';
  return /^(Invalid tar header|Unexpected end of data|Invalid header)/i.test(message) ? `not a valid tar of images: ${message}` : undefined;
}

export async function startUploadSession(request: UploadRequest, context: UploadContext): Promise<StagingSession> {
  const { state, blobs, config, logger, space } = context;
  const { fileName, chunkSize } = validateUploadRequest(request, config);
  const imageCoding = validateImageCoding(request);
  const jobCoding = imageCoding === undefined ? validateCoding(request) : { choice: choiceOf(2, 0), format: 'dcz' as const };
  if (request.mode === 'decompress' && (request.codec !== undefined || request.format !== undefined)) {
    throw new JobError('BAD_INPUT', 'codec and format are for mode "compress"; a decompress job reads them from its .dcz');
  }
  await checkRoomForUpload(context, request.size ?? 0, fileName);
  const id = newJobId();
  const job = newJobRecord({ id, mode: request.mode, fileName, chunkSize, gateway: context.node, codec: jobCoding.choice.codec.name, level: jobCoding.choice.level, format: jobCoding.format, ...(imageCoding === undefined ? {} : { image: imageCoding }) }, Date.now());
  const created = await state.propose(createJobOps(job));
  if (!created.applied) throw new JobError('UNAVAILABLE', `job id ${id} collided; retry the upload`);

  const input = new PassThrough({ highWaterMark: 1024 * 1024 });
  const records = createRecordProposer(state, job);
  /** Chunks being coded on this node right now (bounded by the worker's slots). */
  const codingHere = new Set<Promise<void>>();
  let codingFailure: unknown;
  let received = 0;
  let chunks = 0;
  let ended = false;

  /** The next chunk's index, once the disk has room for its bytes. */
  async function nextChunk(bytes: number): Promise<number> {
    const index = chunks++;
    await space.check(bytes, `upload ${id}: chunk ${index}`);
    return index;
  }

  function pendingRecord(index: number, inputBytes: number, fields: Pick<ChunkRecord, 'originalBytes' | 'checksum' | 'image'>): ChunkRecord {
    return pendingChunk(id, index, inputBytes, fields);
  }

  /** Stages a chunk's raw bytes for whichever node the coordinator assigns it to. */
  async function stage(index: number, bytes: Uint8Array, fields: Pick<ChunkRecord, 'originalBytes' | 'checksum' | 'image'>): Promise<void> {
    const record = pendingRecord(index, bytes.length, fields);
    await blobs.put(record.input, bytes);
    await records.add(record);
  }

  /**
   * Locality: a chunk of the original is coded on this node when its worker has a free slot, and
   * recorded done at once (node: this gateway, attempt 1); only the coded chunk is staged. When the
   * slots are busy it waits for one (or, with peers on other machines, stages the raw bytes for the
   * coordinator to assign). Coding runs beside the upload, which goes on reading. A node that keeps
   * originals stages every chunk raw (the merge composes them), as does one with codeAtGateway off.
   */
  async function place(piece: Uint8Array): Promise<void> {
    if (codingFailure !== undefined) throw codingFailure;
    const inputBytes = piece.length;
    const index = await nextChunk(inputBytes);
    const assignedAt = new Date().toISOString();
    const { compressHere, slotFreed } = context;
    if (config.keepOriginal || !config.codeAtGateway || compressHere === undefined) return stage(index, piece, { originalBytes: inputBytes, checksum: null });
    // Coded chunks waiting for their write hold memory: a few per upload.
    while (codingHere.size >= codedChunksHeldMax) await Promise.race(codingHere);
    let coding = compressHere(id, index, piece, jobCoding);
    while (coding === undefined && context.peersElsewhere?.() === false && slotFreed !== undefined && (await slotFreed())) coding = compressHere(id, index, piece, jobCoding);
    if (coding === undefined) return stage(index, piece, { originalBytes: inputBytes, checksum: null });
    const recorded: Promise<void> = coding
      .then((coded) =>
        records.add({
          ...pendingRecord(index, inputBytes, coded),
          state: 'done',
          attempt: coded.attempt,
          node: context.node,
          output: coded.output,
          outputBytes: coded.outputBytes,
          text: coded.text,
          assignedAt,
          doneAt: new Date().toISOString(),
        }),
      )
      .catch((error: unknown) => {
        codingFailure ??= error;
      })
      .finally(() => codingHere.delete(recorded));
    codingHere.add(recorded);
  }

  /** Waits for the chunks coded here; the first failure among them fails the upload. */
  async function codedHere(): Promise<void> {
    await Promise.all(codingHere);
    if (codingFailure !== undefined) throw codingFailure;
  }

  /** Compress mode: cut into chunkSize pieces; hash and sniff the original on the way. */
  async function consumeOriginal(): Promise<Partial<JobRecord>> {
    const hash = createHash('sha256');
    let probe = new Uint8Array(0);
    let originalSize = 0;
    try {
      for await (const piece of rechunk(input, chunkSize)) {
        hash.update(piece);
        if (probe.length < probeBytes) probe = Buffer.concat([probe, piece.subarray(0, probeBytes - probe.length)]);
        originalSize += piece.length;
        await place(piece);
      }
      await codedHere();
    } finally {
      // A failed upload cleans up its staged blobs: no chunk coded here may land after that.
      await Promise.all(codingHere);
    }
    return { originalSize, sha256: hash.digest('hex'), mime: await detectMime(probe), compressedSize: null };
  }

  /** Decompress mode: parse the .dcz; each chunk record is staged whole; the trailer gives size and SHA-256. */
  async function consumeContainer(): Promise<Partial<JobRecord>> {
    const source: ByteSource = streamSource(input);
    const exact = async (length: number, what: string) => {
      const bytes = await source.read(length);
      if (bytes.length !== length) throw new CodecError('TRUNCATED', `${what}: truncated`);
      return bytes;
    };
    // Any codec of the registry: the workers decode each chunk with the codec the header names.
    const header = format.decodeHeader(await source.read(format.headerBytes), { anyCodec: true });
    const codec = choiceOf(header.codec, header.level ?? 0);
    // Recorded before any chunk is staged: a worker assigned one reads the codec from the job.
    const recorded = await updateJob(state, id, (current) => (current.state === 'uploading' ? { ...current, codec: codec.codec.name, level: codec.level } : undefined));
    if (recorded === undefined) throw new JobError('UNAVAILABLE', `job ${id} ended before its codec was recorded`);
    records.rebase(recorded);
    const entries: Array<{ offset: number; originalBytes: number; compressedBytes: number; checksum: number }> = [];
    let offset = format.headerBytes;
    for (;;) {
      const tag = await exact(4, `chunk ${entries.length}`);
      const tagValue = Buffer.from(tag).readUInt32LE(0);
      if (tagValue === format.tagIndex) break;
      if (tagValue !== format.tagChunk) throw new CodecError('CORRUPT_CONTAINER', `chunk ${entries.length}: expected a chunk or the index`);
      const record = new Uint8Array(format.chunkHeaderBytes);
      record.set(tag, 0);
      record.set(await exact(format.chunkHeaderBytes - 4, `chunk ${entries.length} header`), 4);
      const fields = format.decodeChunkHeader(record, entries.length, header.chunkBytes, header.codec);
      const frame = await exact(fields.compressedBytes, `chunk ${entries.length}`);
      entries.push({ offset, ...fields });
      offset += format.chunkHeaderBytes + fields.compressedBytes;
      const staged = Buffer.concat([record, frame]);
      await stage(await nextChunk(staged.length), staged, { originalBytes: fields.originalBytes, checksum: fields.checksum });
    }
    const countBytes = await exact(4, 'index');
    const count = Buffer.from(countBytes).readUInt32LE(0);
    if (count !== entries.length) throw new CodecError('CORRUPT_CONTAINER', `index: lists ${count} chunks, the file holds ${entries.length}`);
    const indexRest = await exact(count * format.indexEntryBytes + 4, 'index');
    const listed = format.decodeIndex(Buffer.concat([Buffer.from(Uint32Array.of(format.tagIndex).buffer), countBytes, indexRest]));
    listed.forEach((entry, i) => {
      const seen = entries[i];
      if (entry.offset !== seen.offset || entry.originalBytes !== seen.originalBytes || entry.compressedBytes !== seen.compressedBytes || entry.checksum !== seen.checksum) {
        throw new CodecError('CORRUPT_CONTAINER', `index: entry ${i} does not match chunk ${i}`);
      }
    });
    const trailer = format.decodeTrailer(await source.read(format.trailerBytes));
    if (trailer.indexOffset !== offset || trailer.chunkCount !== entries.length) throw new CodecError('CORRUPT_CONTAINER', 'trailer: disagrees with the chunks');
    if ((await source.read(1)).length !== 0) throw new CodecError('CORRUPT_CONTAINER', 'trailer: unexpected bytes after the end of the container');
    const originalSize = entries.reduce((sum, entry) => sum + entry.originalBytes, 0);
    if (trailer.originalBytes !== originalSize) throw new CodecError('CORRUPT_CONTAINER', 'trailer: original size disagrees with the chunks');
    return { originalSize, sha256: Buffer.from(trailer.sha256).toString('hex'), mime: null, compressedSize: received, chunkSize: header.chunkBytes };
  }

  /**
   * Images mode: one task per regular file of the uploaded tar, staged raw with its name for whichever
   * node the coordinator assigns it (an image is seconds of work: spreading them beats locality). The
   * job's originalSize is the images' bytes, its sha256 the tar's.
   */
  async function consumeImages(): Promise<Partial<JobRecord>> {
    const hash = createHash('sha256');
    let originalSize = 0;
    async function* hashed() {
      for await (const piece of input) {
        hash.update(piece);
        yield piece as Uint8Array;
      }
    }
    for await (const image of tarImages(hashed(), imageInputBytesMaxDefault)) {
      if (chunks >= imagesPerJobMax) throw new JobError('TOO_LARGE', `images job ${id}: more than ${imagesPerJobMax} images; split the batch`);
      originalSize += image.bytes.length;
      const facts = { name: image.name, outputBytes: null, kept: false, error: null };
      await stage(await nextChunk(image.bytes.length), image.bytes, { originalBytes: image.bytes.length, checksum: null, image: facts });
    }
    if (chunks === 0) throw new JobError('BAD_INPUT', `images job ${id}: the tar holds no files`);
    return { originalSize, sha256: hash.digest('hex'), mime: 'application/x-tar', compressedSize: null, chunkSize: 0 };
  }

  const consumers = { compress: consumeOriginal, decompress: consumeContainer, images: consumeImages };
  const consumed = consumers[request.mode]().then(async (fields) => {
    await records.drain();
    return fields;
  });
  consumed.catch(() => input.destroy());

  function end(): void {
    if (ended) return;
    ended = true;
    context.onEnd();
  }

  async function fail(reason: string): Promise<void> {
    end();
    input.destroy();
    // Wait until the consumer has stopped: a chunk it was staging must not land after the cleanup.
    await consumed.catch(() => {});
    await records.settle();
    const chunkKeys = (await readChunks(state, id).catch(() => [])).map((chunk) => chunkKey(id, chunk.index));
    await updateJob(
      state,
      id,
      (current) => failedJob(current, reason, Date.now()),
      () => chunkKeys.map((key) => ({ op: 'del', key }) as const),
    ).catch((error: unknown) => logger.warn({ err: error, job: id }, 'upload: could not record the failure'));
    await blobs.deletePrefix(blobKeys.stagingPrefix(id), { abandonWrites: true }).catch((error: unknown) => logger.warn({ err: error, job: id }, 'upload: could not remove staged blobs'));
  }

  async function failed(error: unknown): Promise<never> {
    const full = storageJobError(error, state);
    const reason = full !== undefined ? `INSUFFICIENT_STORAGE: ${full.message}` : error instanceof CodecError ? `not a valid .dcz: ${error.message}` : tarFailure(error) ?? (error as Error).message;
    await fail(reason);
    const bad = error instanceof CodecError || error instanceof ImageError || tarFailure(error) !== undefined;
    throw full ?? (error instanceof JobError ? error : new JobError(bad ? 'BAD_INPUT' : 'UNAVAILABLE', reason));
  }

  return {
    jobId: id,
    async write(bytes) {
      if (ended) throw new JobError('BAD_INPUT', `upload ${id} has ended`);
      received += bytes.length;
      if (received > config.uploadBytesMax) return failed(new JobError('TOO_LARGE', `upload exceeds this node's limit of ${config.uploadBytesMax} bytes`));
      if (request.size !== undefined && received > request.size) return failed(new JobError('BAD_INPUT', `upload sent more than its declared ${request.size} bytes`));
      if (!input.write(bytes)) {
        // A consumer that stopped destroys the stream, so the wait for 'drain' fails with an AbortError:
        // the consumer's own error (it may still be waiting for chunks coded here) is the reason.
        const drained = once(input, 'drain').then(
          () => undefined,
          () => consumed.then(() => undefined),
        );
        await Promise.race([drained, consumed.then(() => undefined)]).catch(failed);
      }
    },
    async finish() {
      if (ended) throw new JobError('BAD_INPUT', `upload ${id} has ended`);
      if (request.size !== undefined && received !== request.size) return failed(new JobError('BAD_INPUT', `upload ended after ${received} of its declared ${request.size} bytes`));
      input.end();
      const fields = await consumed.catch(failed);
      const processing = await updateJob(state, id, (current) => uploadFinishedJob(current, fields, chunks, Date.now())).catch(failed);
      end();
      if (processing === undefined) {
        const current = await readJob(state, id);
        throw new JobError('BAD_INPUT', `upload ${id} cannot finish: the job is ${current?.state ?? 'gone'}${current?.error ? ` (${current.error})` : ''}`);
      }
      logger.info({ job: id, chunks, bytes: received, mode: request.mode }, 'upload: complete');
      return processing;
    },
    async abort(reason) {
      if (ended) return;
      logger.info({ job: id, reason }, 'upload: aborted');
      await fail(`upload aborted: ${reason}`);
    },
  };
}
