/**
 * The codec on buffers and streams, for programs that embed DCaS.
 */
import { Duplex } from 'node:stream';
import { decodeDcz, encodeDcz, streamSource } from './container.ts';
import { createCodecPool, type CodecPool } from './pool.ts';

export interface CodecOptions {
  /** A pool to use; without one, a pool is made for this call and closed after it. */
  pool?: CodecPool;
  threads?: number;
  chunkBytes?: number;
}

async function* single(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function collect(source: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const pieces: Uint8Array[] = [];
  for await (const piece of source) pieces.push(piece);
  return Buffer.concat(pieces);
}

async function* withPool(options: CodecOptions, run: (pool: CodecPool) => AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const pool = options.pool ?? createCodecPool({ threads: options.threads });
  try {
    yield* run(pool);
  } finally {
    if (options.pool === undefined) await pool.close();
  }
}

/** Compresses a whole buffer into a .dcz container. */
export function compress(data: Uint8Array, options: CodecOptions = {}): Promise<Uint8Array> {
  return collect(withPool(options, (pool) => encodeDcz(single(data), { pool, chunkBytes: options.chunkBytes })));
}

/** Decompresses a whole .dcz container, verifying every checksum. */
export function decompress(dcz: Uint8Array, options: CodecOptions = {}): Promise<Uint8Array> {
  return collect(withPool(options, (pool) => decodeDcz(streamSource(single(dcz)), { pool })));
}

/** A duplex stream: write original bytes, read a .dcz container. */
export function compressStream(options: CodecOptions = {}): Duplex {
  return Duplex.from((source: AsyncIterable<Uint8Array>) => withPool(options, (pool) => encodeDcz(source, { pool, chunkBytes: options.chunkBytes })));
}

/** A duplex stream: write a .dcz container, read original bytes. */
export function decompressStream(options: CodecOptions = {}): Duplex {
  return Duplex.from((source: AsyncIterable<Uint8Array>) => withPool(options, (pool) => decodeDcz(streamSource(source), { pool })));
}
