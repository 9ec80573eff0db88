/**
 * The file commands where one end is a stream (stdin or stdout), and the read-only verbs on a .dcz
 * (test, list). Chunks go through a codec pool; at most twice its threads chunks are in memory at once,
 * and a slow reader of the output holds the coding back (backpressure), so memory stays bounded
 * whatever the size. Files at both ends take the threaded pipeline instead (files.ts).
 */
import { once } from 'node:events';
import { availableParallelism, freemem } from 'node:os';
import type { Writable } from 'node:stream';
import { chunkBytesFor, chunkBytesMax } from './format.ts';
import { decodeDcz, encodeDcz, headerChoice, validateChunkBytes, type ByteSource, type DczLayout, type Progress } from './container.ts';
import { createCodecPool, type CodecPool } from './pool.ts';
import { choiceName, codingBytesMax, huffmanChoice, type CodecChoice } from './codecs.ts';
import type { OutputFormat } from './standard-formats.ts';
import { decodeStandardStream, detectBytes, detectKind, prepended } from './standard-decode.ts';

/** Where coded bytes go: a stream, a file written atomically (files.ts), or nowhere (test). Returns the bytes written. */
export type ByteSink = (source: AsyncIterable<Uint8Array>) => Promise<number>;

export interface StreamResult {
  originalBytes: number;
  compressedBytes: number;
  chunks: number;
  threads: number;
  /** Decoding: what was verified, in words ("every CRC32C and the SHA-256", "the zstd frames' checksums"). */
  checked?: string;
}

export interface StreamOptions {
  threads?: number;
  chunkBytes?: number;
  /** The codec and level to compress with; the Huffman kernel by default. */
  codec?: CodecChoice;
  /** A .dcz (the default) or a standard format of the codec's frames. */
  format?: OutputFormat;
  /**
   * The calling thread codes the kernel's and store's chunks too, and a small stream alone (pool.ts):
   * what the CLI does, whose thread has nothing else to do. Off by default: a server's event loop must
   * stay free.
   */
  mainThread?: boolean;
  onProgress?: (progress: Progress) => void;
}

/**
 * Memory one coding thread may hold: its chunks in flight (two, each with its frame) and its
 * WebAssembly memory. Threads past cores only wait; threads past memory would swap or abort.
 */
const threadBytesMax = 4 * chunkBytesMax + 64 * 1024 * 1024;

/**
 * Memory the codec threads of one file command use when the user leaves their number to us (-T 0):
 * threads are added while their codings fit. Measured on 72 MB of text at xz -6 (24 MiB chunks): 2
 * threads peaked at 384 MB, 1 thread at about 250 MB.
 */
export const fileThreadsMemoryBytes = 256 * 1024 * 1024;

/** What one thread coding `work` holds: its coding (codecs.ts) and two more chunks in flight. */
function threadBytes(work: CodingWork): number {
  return codingBytesMax(work.codec, work.op, work.chunkBytes) + 2 * work.chunkBytes;
}

export interface CodingWork {
  codec: CodecChoice;
  op: 'compress' | 'decompress';
  chunkBytes: number;
}

/**
 * Threads to code with: as asked (all cores by default), but no more than the cores and the free memory
 * allow; by default also no more than `fileThreadsMemoryBytes` holds for `work` (never fewer than one).
 */
export function threadsWithin(requested: number | undefined, work?: CodingWork): number {
  const cores = availableParallelism();
  const memoryBound = Math.floor(freemem() / threadBytesMax);
  const budgetBound = requested === undefined && work !== undefined ? Math.floor(fileThreadsMemoryBytes / threadBytes(work)) : cores;
  return Math.max(1, Math.min(requested ?? cores, cores, memoryBound, budgetBound));
}

async function withPool<T>(options: StreamOptions, run: (pool: CodecPool) => Promise<T>, work?: CodingWork): Promise<T> {
  const pool = createCodecPool({ threads: threadsWithin(options.threads, work), mainThread: options.mainThread });
  try {
    return await run(pool);
  } finally {
    await pool.close();
  }
}

/** Writes to a stream, waiting for it to drain when it asks; a stream error (EPIPE, say) rejects. */
export function streamSink(stream: Writable): ByteSink {
  return async (source) => {
    let failure: Error | undefined;
    const onError = (error: Error) => (failure = error);
    stream.on('error', onError);
    try {
      let written = 0;
      for await (const piece of source) {
        if (failure !== undefined) throw failure;
        written += piece.length;
        if (!stream.write(piece)) await once(stream, 'drain');
      }
      if (failure !== undefined) throw failure;
      return written;
    } finally {
      stream.off('error', onError);
    }
  };
}

/** Consumes every piece and keeps none: for a test that verifies and writes nothing. */
export const discardSink: ByteSink = async (source) => {
  let bytes = 0;
  for await (const piece of source) bytes += piece.length;
  return bytes;
};

/**
 * Compresses `source` into a .dcz given to `sink`. `owned` says the source yields fresh chunks of
 * exactly `chunkBytes` (fileChunks), handed to the threads without a copy; other streams are re-cut.
 * The original's size is not needed up front: the trailer records it.
 */
export async function compressTo(source: AsyncIterable<Uint8Array>, owned: boolean, sink: ByteSink, options: StreamOptions = {}): Promise<StreamResult> {
  const chunkBytes = validateChunkBytes(options.chunkBytes ?? chunkBytesFor(options.codec ?? huffmanChoice));
  return withPool(options, async (pool) => {
    const progress: Progress = { originalBytes: 0, containerBytes: 0, chunks: 0 };
    const encoded = encodeDcz(source, {
      pool,
      chunkBytes,
      codec: options.codec,
      format: options.format,
      owned,
      onProgress: (step) => {
        Object.assign(progress, step);
        options.onProgress?.(step);
      },
    });
    const compressedBytes = await sink(encoded);
    return { originalBytes: progress.originalBytes, compressedBytes, chunks: progress.chunks, threads: pool.threads };
  }, { codec: options.codec ?? huffmanChoice, op: 'compress', chunkBytes });
}

/** Decodes the .dcz read from `source` into `sink`, checking every chunk's CRC32C and the whole SHA-256. */
export async function decompressTo(input: ByteSource, sink: ByteSink, options: StreamOptions = {}): Promise<StreamResult> {
  // The format is read from the first bytes, which are then put back for the decoder.
  const head = await input.read(detectBytes);
  const kind = detectKind(head);
  const source = prepended(head, input);
  if (kind !== undefined && kind !== 'dcz') {
    const originalBytes = await sink(decodeStandardStream(kind, source));
    // One stream through zlib: no chunks of ours, and the format's own checksums are what was verified.
    return { originalBytes, compressedBytes: 0, chunks: 1, threads: 1, checked: kind === 'zst' ? "the zstd frames' checksums" : "the gzip members' CRC32s" };
  }
  return withPool(options, async (pool) => {
    const progress: Progress = { originalBytes: 0, containerBytes: 0, chunks: 0 };
    const decoded = decodeDcz(source, {
      pool,
      onProgress: (step) => {
        Object.assign(progress, step);
        options.onProgress?.(step);
      },
    });
    const originalBytes = await sink(decoded);
    return { originalBytes, compressedBytes: progress.containerBytes, chunks: progress.chunks, threads: pool.threads, checked: 'every CRC32C and the SHA-256' };
  });
}

/** What `dcas -l` shows of a .dcz: read from its header, index and trailer, no chunk decoded. */
export interface DczListing {
  /** The codec's name, with its level for codecs that have levels ("zstd:3"). */
  codec: string;
  chunkBytes: number;
  chunks: number;
  originalBytes: number;
  compressedBytes: number;
  sha256: string;
}

export function listingOf(layout: DczLayout, compressedBytes: number): DczListing {
  return {
    codec: choiceName(headerChoice(layout.header)),
    chunkBytes: layout.header.chunkBytes,
    chunks: layout.entries.length,
    originalBytes: layout.trailer.originalBytes,
    compressedBytes,
    sha256: Buffer.from(layout.trailer.sha256).toString('hex'),
  };
}

