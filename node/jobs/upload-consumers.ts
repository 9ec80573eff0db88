/**
 * The consumer loops of an upload, one per job mode: each reads the upload's byte stream, hands its
 * chunks to UploadChunks, and returns the job's fields the whole input decides (sizes, SHA-256, MIME).
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import type { ReplicatedState } from '../cluster/index.ts';
import { choiceOf, CodecError, format, freedAfterUse, imageInputBytesMaxDefault, rechunk, streamSource, type ByteSource } from '../codec/index.ts';
import type { RecordProposer } from './record-proposer.ts';
import { updateJob, type JobRecord } from './records.ts';
import { tarImages } from './tar.ts';
import { JobError } from './types.ts';
import { detectMime } from './upload-checks.ts';
import type { UploadChunks } from './upload-chunks.ts';

const probeBytes = 4100;
/**
 * Images in one images job: each one's sizes fold into the job record when it completes, and a record
 * travels in one Raft entry (appendBytesMax, 1 MiB), so a batch stays well under it (names <= 200 bytes).
 */
export const imagesPerJobMax = 2000;

export interface ConsumerContext {
  jobId: string;
  input: Readable;
  chunkSize: number;
  state: ReplicatedState;
  chunks: UploadChunks;
  records: RecordProposer;
  /** Bytes the upload has received so far. */
  received(): number;
}

export type Consumer = (context: ConsumerContext) => Promise<Partial<JobRecord>>;

/** Compress mode: cut into chunkSize pieces; hash and sniff the original on the way. */
async function consumeOriginal({ input, chunkSize, chunks }: ConsumerContext): Promise<Partial<JobRecord>> {
  const hash = createHash('sha256');
  let probe = new Uint8Array(0);
  let originalSize = 0;
  try {
    for await (const piece of rechunk(freedAfterUse(input), chunkSize, chunks.take)) {
      hash.update(piece);
      if (probe.length < probeBytes) probe = Buffer.concat([probe, piece.subarray(0, probeBytes - probe.length)]);
      originalSize += piece.length;
      await chunks.place(piece);
    }
    await chunks.codedHere();
  } finally {
    // A failed upload cleans up its staged blobs: no chunk coded here may land after that.
    await chunks.settled();
  }
  return { originalSize, sha256: hash.digest('hex'), mime: await detectMime(probe), compressedSize: null };
}

/** A chunk of an uploaded .dcz as its records and index place it. */
interface ContainerEntry {
  offset: number;
  originalBytes: number;
  compressedBytes: number;
  checksum: number;
}

/** Reads exactly `length` bytes, or fails saying which part of the container was cut short. */
async function exact(source: ByteSource, length: number, what: string): Promise<Uint8Array> {
  const bytes = await source.read(length);
  if (bytes.length !== length) throw new CodecError('TRUNCATED', `${what}: truncated`);
  return bytes;
}

/** Decompress mode: parse the .dcz; each chunk record is staged whole; the trailer gives size and SHA-256. */
async function consumeContainer(context: ConsumerContext): Promise<Partial<JobRecord>> {
  const { jobId, state, records } = context;
  const source: ByteSource = streamSource(context.input);
  // Any codec of the registry: the workers decode each chunk with the codec the header names.
  const header = format.decodeHeader(await source.read(format.headerBytes), { anyCodec: true });
  const codec = choiceOf(header.codec, header.level ?? 0);
  // Recorded before any chunk is staged: a worker assigned one reads the codec from the job.
  const recorded = await updateJob(state, jobId, (current) => (current.state === 'uploading' ? { ...current, codec: codec.codec.name, level: codec.level } : undefined));
  if (recorded === undefined) throw new JobError('UNAVAILABLE', `job ${jobId} ended before its codec was recorded`);
  records.rebase(recorded);
  const { entries, offset } = await stageContainerChunks(source, header, context.chunks);
  await checkContainerIndex(source, entries);
  const trailer = format.decodeTrailer(await source.read(format.trailerBytes));
  if (trailer.indexOffset !== offset || trailer.chunkCount !== entries.length) throw new CodecError('CORRUPT_CONTAINER', 'trailer: disagrees with the chunks');
  if ((await source.read(1)).length !== 0) throw new CodecError('CORRUPT_CONTAINER', 'trailer: unexpected bytes after the end of the container');
  const originalSize = entries.reduce((sum, entry) => sum + entry.originalBytes, 0);
  if (trailer.originalBytes !== originalSize) throw new CodecError('CORRUPT_CONTAINER', 'trailer: original size disagrees with the chunks');
  return { originalSize, sha256: Buffer.from(trailer.sha256).toString('hex'), mime: null, compressedSize: context.received(), chunkSize: header.chunkBytes };
}

/** Stages the .dcz's chunk records up to its index tag (read too); returns them as entries and where the index starts. */
async function stageContainerChunks(source: ByteSource, header: ReturnType<typeof format.decodeHeader>, chunks: UploadChunks): Promise<{ entries: ContainerEntry[]; offset: number }> {
  const entries: ContainerEntry[] = [];
  let offset = format.headerBytes;
  for (;;) {
    const tag = await exact(source, 4, `chunk ${entries.length}`);
    const tagValue = Buffer.from(tag).readUInt32LE(0);
    if (tagValue === format.tagIndex) break;
    if (tagValue !== format.tagChunk) throw new CodecError('CORRUPT_CONTAINER', `chunk ${entries.length}: expected a chunk or the index`);
    const record = new Uint8Array(format.chunkHeaderBytes);
    record.set(tag, 0);
    record.set(await exact(source, format.chunkHeaderBytes - 4, `chunk ${entries.length} header`), 4);
    const fields = format.decodeChunkHeader(record, entries.length, header.chunkBytes, header.codec);
    const frame = await exact(source, fields.compressedBytes, `chunk ${entries.length}`);
    entries.push({ offset, ...fields });
    offset += format.chunkHeaderBytes + fields.compressedBytes;
    const staged = Buffer.concat([record, frame]);
    await chunks.stage(await chunks.next(staged.length), staged, { originalBytes: fields.originalBytes, checksum: fields.checksum });
  }
  return { entries, offset };
}

/** Reads the .dcz's index (its tag already read) and checks that it lists exactly the chunks seen. */
async function checkContainerIndex(source: ByteSource, entries: readonly ContainerEntry[]): Promise<void> {
  const countBytes = await exact(source, 4, 'index');
  const count = Buffer.from(countBytes).readUInt32LE(0);
  if (count !== entries.length) throw new CodecError('CORRUPT_CONTAINER', `index: lists ${count} chunks, the file holds ${entries.length}`);
  const indexRest = await exact(source, count * format.indexEntryBytes + 4, 'index');
  const listed = format.decodeIndex(Buffer.concat([Buffer.from(Uint32Array.of(format.tagIndex).buffer), countBytes, indexRest]));
  listed.forEach((entry, i) => {
    const seen = entries[i];
    if (entry.offset !== seen.offset || entry.originalBytes !== seen.originalBytes || entry.compressedBytes !== seen.compressedBytes || entry.checksum !== seen.checksum) {
      throw new CodecError('CORRUPT_CONTAINER', `index: entry ${i} does not match chunk ${i}`);
    }
  });
}

/**
 * Images mode: one task per regular file of the uploaded tar, staged raw with its name for whichever
 * node the coordinator assigns it (an image is seconds of work: spreading them beats locality). The
 * job's originalSize is the images' bytes, its sha256 the tar's.
 */
async function consumeImages({ jobId, input, chunks }: ConsumerContext): Promise<Partial<JobRecord>> {
  const hash = createHash('sha256');
  let originalSize = 0;
  async function* hashed() {
    for await (const piece of input) {
      hash.update(piece);
      yield piece as Uint8Array;
    }
  }
  for await (const image of tarImages(hashed(), imageInputBytesMaxDefault)) {
    if (chunks.count >= imagesPerJobMax) throw new JobError('TOO_LARGE', `images job ${jobId}: more than ${imagesPerJobMax} images; split the batch`);
    originalSize += image.bytes.length;
    const facts = { name: image.name, outputBytes: null, kept: false, error: null };
    await chunks.stage(await chunks.next(image.bytes.length), image.bytes, { originalBytes: image.bytes.length, checksum: null, image: facts });
  }
  if (chunks.count === 0) throw new JobError('BAD_INPUT', `images job ${jobId}: the tar holds no files`);
  return { originalSize, sha256: hash.digest('hex'), mime: 'application/x-tar', compressedSize: null, chunkSize: 0 };
}

export const consumers: Record<JobRecord['mode'], Consumer> = { compress: consumeOriginal, decompress: consumeContainer, images: consumeImages };
