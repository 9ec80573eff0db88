/**
 * The file pipeline's coders for node:zlib's codecs (zstd, gzip, brotli), with no threads of ours:
 * zlib's asynchronous calls code each chunk on libuv's thread pool, where the reads and writes run too,
 * and this thread only checksums (CRC32C, a fraction of a millisecond a chunk) and hands out work. A
 * codec thread of ours costs 40-60 ms of CPU to start (Node's bootstrap for the thread, then our
 * modules) before its first chunk, which on 2 cores was a tenth of a 150 MB command's CPU. The kernel's
 * Huffman, xz and bzip2 code on codec threads (file-threads.ts): they have no asynchronous call.
 */
import { read, write } from 'node:fs';
import { promisify } from 'node:util';
import { brotliCompress, brotliDecompress, constants, gunzip, gzip, zstdCompress, zstdDecompress } from 'node:zlib';
import { crc32c } from '@node-rs/crc32';
import { freeBacking, freeBuffer } from './buffers.ts';
import type { CodecChoice } from './codecs.ts';
import { CodecError } from './errors.ts';
import type { FileThreads, FileThreadsOptions } from './file-threads.ts';
import { checkChunkHeader, chunkHeaderBytes } from './format.ts';
import { sizedMember } from './gzip-members.ts';
import type { PieceDecoder } from './standard-decode.ts';
import { isZlibCodec, zlibCompressOptions, zlibDecompressOptions, type ZlibCodecName } from './zlib-options.ts';

type Coding = (data: Uint8Array, options: object) => Promise<Buffer>;

const compressors: Record<ZlibCodecName, Coding> = { zstd: promisify(zstdCompress), gzip: promisify(gzip), brotli: promisify(brotliCompress) };
const decompressors: Record<ZlibCodecName, Coding> = { zstd: promisify(zstdDecompress), gzip: promisify(gunzip), brotli: promisify(brotliDecompress) };
/**
 * The whole chunk coded in its first call, as the one-shot calls of a codec thread code it (the same
 * bytes): by default zlib's streams code their input in continued calls, and zstd then copies it into
 * its own window and codes it in its slower path for windows that wrap (perf: a quarter of the CPU).
 */
const finishAtOnce: Record<ZlibCodecName, { flush: number }> = {
  zstd: { flush: constants.ZSTD_e_end },
  gzip: { flush: constants.Z_FINISH },
  brotli: { flush: constants.BROTLI_OPERATION_FINISH },
};

/**
 * What a zlib zstd stream writes after a chunk coded to its end: its end of stream codes once more, an
 * empty frame (magic, descriptor, one empty last block, the checksum of nothing). Cut off, so a chunk is
 * one frame, for the seek table of a .zst to name.
 */
const emptyZstdFrame = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x24, 0x00, 0x01, 0x00, 0x00, 0x99, 0xe9, 0xd8, 0x51]);

function withoutEmptyFrame(name: ZlibCodecName, frame: Buffer): Buffer {
  if (name !== 'zstd' || frame.length <= emptyZstdFrame.length) return frame;
  const tail = frame.subarray(frame.length - emptyZstdFrame.length);
  return tail.equals(emptyZstdFrame) ? frame.subarray(0, frame.length - emptyZstdFrame.length) : frame;
}

const readAt = promisify(read);
const writeAt = promisify(write);

/** Whether the file pipeline codes `choice` on libuv's thread pool (startZlibCoders) rather than on codec threads. */
export function codesOnLibuv(choice: CodecChoice): boolean {
  return isZlibCodec(choice.codec.name);
}

/** Coders with the interface of file codec threads (file-threads.ts), `threads` chunks coding at once. */
export function startZlibCoders(options: FileThreadsOptions & { codec: CodecChoice }): FileThreads {
  const { codec } = options;
  const name = codec.codec.name;
  if (!isZlibCodec(name)) throw new Error(`startZlibCoders: ${name} is not a zlib codec`);
  const slots = createSlots(options.threads);
  // Inputs handed back (recycle): fresh 4 MiB buffers cost the kernel zeroed pages and the collector work on every chunk.
  const spareInputs: Buffer[] = [];
  let closed = false;
  const inFlightMax = options.threads * 2;

  async function fill(fd: number, into: Uint8Array, position: number): Promise<number> {
    let filled = 0;
    while (filled < into.length) {
      const { bytesRead } = await readAt(fd, into, filled, into.length - filled, position + filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
    }
    return filled;
  }

  return {
    threads: options.threads,
    inFlightMax,
    codesOnMainThread: false,
    async compress(position, length) {
      const spare = spareInputs.pop();
      const input = spare !== undefined && spare.length >= length ? spare.subarray(0, length) : Buffer.allocUnsafeSlow(Math.max(length, options.chunkBytes)).subarray(0, length);
      const bytesRead = await fill(options.inputFd, input, position);
      if (bytesRead !== length) {
        throw Object.assign(new Error(`input changed while being read: ended at byte ${position + bytesRead}, expected ${position + length}`), { code: 'INPUT_CHANGED' });
      }
      const checksum = crc32c(input);
      const coded = await slots.run(() => compressors[name](input, { ...zlibCompressOptions(codec, length), ...finishAtOnce[name] }));
      const frame = name === 'gzip' ? sizedMember(coded, length) : withoutEmptyFrame(name, coded);
      // zlib's output buffer is ours alone, sized for the largest frame: freed now, not at V8's next collection.
      if (frame.buffer !== coded.buffer) freeBacking(coded);
      return { frame, checksum, input };
    },
    recycle(frame, input) {
      freeBacking(frame);
      if (input !== undefined && input.byteOffset === 0 && spareInputs.length < inFlightMax + 1) spareInputs.push(Buffer.from(input.buffer as ArrayBuffer));
    },
    async decompress(task) {
      const label = `chunk ${task.chunk}`;
      const record = Buffer.allocUnsafeSlow(chunkHeaderBytes + task.compressedBytes);
      const bytesRead = await fill(options.inputFd, record, task.position);
      checkChunkHeader(record.subarray(0, Math.min(bytesRead, chunkHeaderBytes)), task.chunk, task.position, task, options.chunkBytes, codec.codec.id);
      if (bytesRead !== record.length) throw new CodecError('TRUNCATED', `${label}: truncated`);
      let decoded: Buffer;
      try {
        decoded = await decodeFrame(slots, name, record.subarray(chunkHeaderBytes), task.originalBytes, label);
      } finally {
        freeBuffer(record);
      }
      if (crc32c(decoded) !== task.checksum) throw new CodecError('CHECKSUM_MISMATCH', `${label}: checksum mismatch: decoded bytes differ from what was written`);
      if (closed) return undefined;
      let written = 0;
      while (written < decoded.length) written += (await writeAt(options.outputFd, decoded, written, decoded.length - written, task.outputPosition + written)).bytesWritten;
      return decoded;
    },
    async close() {
      closed = true;
    },
  };
}

/**
 * Pieces of a standard file (a .zst's frames) decoded on libuv's thread pool, `threads` at once, as a
 * codec pool decodes them on its threads (CodecPool.decodePiece), with the same checks and messages,
 * and no thread of ours to start: 150 MB `dcas decompress` of a .zst 0.82-0.87 s -> 0.45-0.5 s.
 */
export function zlibPieceDecoder(threads: number): PieceDecoder {
  const slots = createSlots(threads);
  return {
    threads,
    async decodePiece(frame, originalBytes, label, choice) {
      const name = choice.codec.name;
      if (!isZlibCodec(name)) throw new Error(`zlibPieceDecoder: ${name} is not a zlib codec`);
      return decodeFrame(slots, name, frame, originalBytes, label);
    },
  };
}

/** Decodes one frame in a slot; any failure, or a length other than `originalBytes` when known, is CORRUPT_BLOCK named by `label`. */
async function decodeFrame(slots: Slots, name: ZlibCodecName, frame: Uint8Array, originalBytes: number | undefined, label: string): Promise<Buffer> {
  let decoded: Buffer;
  try {
    decoded = await slots.run(() => decompressors[name](frame, zlibDecompressOptions(originalBytes)));
  } catch (error) {
    throw new CodecError('CORRUPT_BLOCK', `${label}: ${name} frame does not decode: ${(error as Error).message ?? String(error)}`);
  }
  if (originalBytes !== undefined && decoded.length !== originalBytes) throw new CodecError('CORRUPT_BLOCK', `${label}: ${name} frame decodes to ${decoded.length} bytes, expected ${originalBytes}`);
  return decoded;
}

type Slots = { run<T>(work: () => Promise<T>): Promise<T> };

/** At most `count` codings at once: more would only share the same cores and hold more memory. */
function createSlots(count: number): Slots {
  let free = count;
  const waiting: (() => void)[] = [];
  return {
    async run(work) {
      if (free === 0) await new Promise<void>((resolve) => waiting.push(resolve));
      else free -= 1;
      try {
        return await work();
      } finally {
        const next = waiting.shift();
        if (next !== undefined) next();
        else free += 1;
      }
    },
  };
}
