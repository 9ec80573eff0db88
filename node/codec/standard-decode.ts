/**
 * `dcas decompress` on files of the standard formats, recognised by their first bytes, not their names.
 * Where the file says where its pieces are, they are decoded in parallel (a .zst's frames and a .gz's
 * members on libuv's threads, the others' pieces on the codec pool) and written in order: a .zst's seek
 * table, the lengths our .gz members carry in their headers (gzip-members.ts), the chain of an .xz's
 * stream footers and indexes (read from the end), the byte-aligned stream signatures of a .bz2 that a
 * parallel writer made (ours, lbzip2's, pbzip2's). A .zst without a seek table and a .gz of another tool
 * (a plain member does not record its length) are decoded as one stream by Node's zlib, which runs on
 * libuv's threads, not the event loop.
 */
import type { FileHandle } from 'node:fs/promises';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { pipeline } from 'node:stream/promises';
import { Readable, Writable } from 'node:stream';
import { parseCodecChoice, type CodecChoice } from './codecs.ts';
import { freeBuffer } from './buffers.ts';
import { mapOrdered, type ByteSource, type Progress } from './container.ts';
import { CodecError } from './errors.ts';
import { fileMagic } from './format.ts';
import { memberSizes, sizedHeaderBytes } from './gzip-members.ts';
import type { CodecPool } from './pool.ts';
import { decodeSeekTable, seekableMagic } from './standard-formats.ts';

export type InputKind = 'dcz' | 'zst' | 'gz' | 'xz' | 'bz2';

const magics: ReadonlyArray<[InputKind, Uint8Array]> = [
  ['dcz', fileMagic],
  ['zst', Uint8Array.of(0x28, 0xb5, 0x2f, 0xfd)],
  ['gz', Uint8Array.of(0x1f, 0x8b, 0x08)],
  ['xz', Uint8Array.of(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)],
  ['bz2', Uint8Array.of(0x42, 0x5a, 0x68)],
];

/** Bytes that identify any of the formats. */
export const detectBytes = 8;

/** The format `head` (a file's first bytes) starts with, or undefined. */
export function detectKind(head: Uint8Array): InputKind | undefined {
  // A zstd stream may start with a skippable frame (magics 0x184D2A50..0x184D2A5F), as a bare seek table does.
  if (head.length >= 4 && (new DataView(head.buffer, head.byteOffset, 4).getUint32(0, true) & 0xfffffff0) >>> 0 === 0x184d2a50) return 'zst';
  for (const [kind, magic] of magics) {
    if (head.length >= magic.length && magic.every((byte, i) => head[i] === byte)) return kind;
  }
  return undefined;
}

/** One independently decodable piece: where it is, how long, and its decoded length if the file records it. */
interface Piece {
  offset: number;
  compressedBytes: number;
  originalBytes: number | undefined;
}

async function readAt(file: FileHandle, position: number, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await file.read(out, filled, length - filled, position + filled);
    if (bytesRead === 0) throw new CodecError('TRUNCATED', `file ends at byte ${position + filled}, expected ${position + length}`);
    filled += bytesRead;
  }
  return out;
}

/**
 * A .gz's members, when each says its length (gzip-members.ts: ours), found by reading each member's
 * header in turn; undefined when any does not (a file of another tool, or ours with one appended), or
 * the lengths do not add up to the file: it is then decoded as one stream.
 */
async function gzPieces(file: FileHandle, size: number): Promise<Piece[] | undefined> {
  const pieces: Piece[] = [];
  for (let offset = 0; offset < size; ) {
    if (size - offset < sizedHeaderBytes) return undefined;
    const sizes = memberSizes(await readAt(file, offset, sizedHeaderBytes));
    if (sizes === undefined || sizes.memberBytes > size - offset) return undefined;
    pieces.push({ offset, compressedBytes: sizes.memberBytes, originalBytes: sizes.originalBytes });
    offset += sizes.memberBytes;
  }
  return pieces.length > 0 ? pieces : undefined;
}

/** A .zst's frames from its seek table, or undefined for a plain zstd file. */
async function zstPieces(file: FileHandle, size: number): Promise<Piece[] | undefined> {
  if (size < 17) return undefined;
  const footer = await readAt(file, size - 9, 9);
  const view = new DataView(footer.buffer);
  if (view.getUint32(5, true) !== seekableMagic) return undefined;
  const entryBytes = footer[4] & 0x80 ? 12 : 8;
  const tableBytes = 8 + view.getUint32(0, true) * entryBytes + 9;
  if (tableBytes > size) throw new CodecError('CORRUPT_CONTAINER', 'seek table: lists more frames than the file can hold');
  return decodeSeekTable(await readAt(file, size - tableBytes, tableBytes), size);
}

/** Reads an xz variable-length integer at `at`; returns [value, next position]. */
function readVarint(bytes: Uint8Array, at: number): [number, number] {
  let value = 0;
  for (let i = 0; i < 9; i++) {
    if (at + i >= bytes.length) break;
    const byte = bytes[at + i];
    value += (byte & 0x7f) * 2 ** (7 * i);
    if ((byte & 0x80) === 0) return [value, at + i + 1];
  }
  throw new CodecError('CORRUPT_CONTAINER', 'xz index: a size field is malformed');
}

const xzIndexBytesMax = 64 * 1024 * 1024;

/**
 * An .xz file's streams, found from the end: each stream's footer gives its index's size, the index
 * lists its blocks' sizes, and so where the stream starts (xz file format 1.x, sections 2.1.2 and 4).
 */
async function xzPieces(file: FileHandle, size: number): Promise<Piece[]> {
  const pieces: Piece[] = [];
  let end = size;
  while (end > 0) {
    const last4 = await readAt(file, end - 4, 4);
    if (last4.every((byte) => byte === 0)) {
      end -= 4; // stream padding
      continue;
    }
    if (end < 24) throw new CodecError('CORRUPT_CONTAINER', `xz: ${end} bytes before stream ${pieces.length} from the end are too few for a stream`);
    const footer = await readAt(file, end - 12, 12);
    if (footer[10] !== 0x59 || footer[11] !== 0x5a) throw new CodecError('CORRUPT_CONTAINER', `xz: no stream footer at byte ${end - 12}`);
    const indexBytes = (new DataView(footer.buffer).getUint32(4, true) + 1) * 4;
    if (indexBytes > xzIndexBytesMax || indexBytes > end - 24) throw new CodecError('CORRUPT_CONTAINER', `xz: stream footer at byte ${end - 12} records an impossible index size`);
    const index = await readAt(file, end - 12 - indexBytes, indexBytes);
    if (index[0] !== 0) throw new CodecError('CORRUPT_CONTAINER', `xz: no index before the stream footer at byte ${end - 12}`);
    let [records, at] = readVarint(index, 1);
    let blocksBytes = 0;
    let originalBytes = 0;
    for (; records > 0; records--) {
      const [unpadded, next] = readVarint(index, at);
      const [uncompressed, after] = readVarint(index, next);
      blocksBytes += Math.ceil(unpadded / 4) * 4;
      originalBytes += uncompressed;
      at = after;
    }
    const start = end - 12 - indexBytes - blocksBytes - 12;
    if (start < 0) throw new CodecError('CORRUPT_CONTAINER', `xz: the index before byte ${end - 12} lists more blocks than the file holds`);
    pieces.unshift({ offset: start, compressedBytes: end - start, originalBytes });
    end = start;
  }
  return pieces;
}

const bz2ScanBytes = 4 * 1024 * 1024;
/** "BZh", a block size digit, then a block's magic (pi) or the end-of-stream magic (sqrt pi) of an empty stream. */
function isBz2StreamStart(bytes: Uint8Array, at: number): boolean {
  if (bytes[at] !== 0x42 || bytes[at + 1] !== 0x5a || bytes[at + 2] !== 0x68 || bytes[at + 3] < 0x31 || bytes[at + 3] > 0x39) return false;
  const block = [0x31, 0x41, 0x59, 0x26, 0x53, 0x59];
  const end = [0x17, 0x72, 0x45, 0x38, 0x50, 0x90];
  const matches = (magic: number[]) => magic.every((byte, i) => bytes[at + 4 + i] === byte);
  return matches(block) || matches(end);
}

/**
 * A .bz2 file's streams, split where a stream signature starts at a byte boundary (streams are padded to
 * bytes; the 10 signature bytes inside compressed data are about a 2^-80 chance per position). A split
 * that is wrong shows as a stream that does not decode, named by its number.
 */
async function bz2Pieces(file: FileHandle, size: number): Promise<Piece[]> {
  const starts: number[] = [];
  const overlap = 9;
  for (let position = 0; position < size; position += bz2ScanBytes) {
    const length = Math.min(bz2ScanBytes + overlap, size - position);
    const bytes = await readAt(file, position, length);
    const scanEnd = Math.min(bz2ScanBytes, length);
    for (let at = bytes.indexOf(0x42); at !== -1 && at < scanEnd; at = bytes.indexOf(0x42, at + 1)) {
      if (isBz2StreamStart(bytes, at)) starts.push(position + at);
    }
  }
  if (starts[0] !== 0) throw new CodecError('CORRUPT_CONTAINER', 'bz2: the file does not start with a stream signature');
  return starts.map((offset, i) => ({ offset, compressedBytes: (starts[i + 1] ?? size) - offset, originalBytes: undefined }));
}

/**
 * A piece is decoded whole in one thread's memory: bounds on what one piece may take, so a foreign file
 * made as one huge stream is refused in words instead of exhausting memory.
 */
const pieceCompressedBytesMax = 256 * 1024 * 1024;
const pieceOriginalBytesMax = 1024 * 1024 * 1024;

function checkPiece(piece: Piece, label: string, tool: string): void {
  if (piece.compressedBytes > pieceCompressedBytesMax || (piece.originalBytes ?? 0) > pieceOriginalBytesMax) {
    throw new CodecError('TOO_LARGE', `${label}: one piece of ${piece.compressedBytes} bytes is more than dcas decodes at once (${pieceCompressedBytesMax} coded, ${pieceOriginalBytesMax} decoded); use ${tool}`);
  }
}

/**
 * Each standard format: the codec of its pieces, what a piece is called in messages, the tool to use on
 * one too large for us, and how its pieces are found (undefined: decode the file as one stream).
 */
const standardKinds: Record<Exclude<InputKind, 'dcz'>, { codec: CodecChoice; piece: string; tool: string; findPieces(file: FileHandle, size: number): Promise<Piece[] | undefined> }> = {
  zst: { codec: parseCodecChoice('zstd'), piece: 'frame', tool: 'zstd -d', findPieces: zstPieces },
  gz: { codec: parseCodecChoice('gzip'), piece: 'member', tool: 'gzip -d', findPieces: gzPieces },
  xz: { codec: parseCodecChoice('xz'), piece: 'stream', tool: 'xz -d', findPieces: xzPieces },
  bz2: { codec: parseCodecChoice('bzip2'), piece: 'stream', tool: 'bzip2 -d', findPieces: bz2Pieces },
};

/** The codec a standard format's pieces are coded with. */
export function codecOfKind(kind: Exclude<InputKind, 'dcz'>): CodecChoice {
  return standardKinds[kind].codec;
}

/** What decodes a file's pieces: a codec pool's threads, or libuv's for zlib's codecs (file-zlib.ts zlibPieceDecoder). */
export type PieceDecoder = Pick<CodecPool, 'threads' | 'decodePiece'>;

export interface StandardDecodeResult {
  originalBytes: number;
  pieces: number;
}

/** Decodes the standard-format `input` (`size` bytes, of `kind`) into `output`, in parallel where it finds the pieces. */
export async function decodeStandardFile(
  kind: Exclude<InputKind, 'dcz'>,
  input: FileHandle,
  size: number,
  output: FileHandle,
  decoder: PieceDecoder,
  onProgress: (progress: Progress) => void,
): Promise<StandardDecodeResult> {
  const { codec: choice, piece: pieceName, tool, findPieces } = standardKinds[kind];
  const pieces = await findPieces(input, size);
  if (pieces === undefined) return decodeStreaming(kind === 'zst' ? 'zst' : 'gz', input, output, onProgress);
  const progress: Progress = { originalBytes: 0, containerBytes: 0, chunks: 0 };
  const decode = async (piece: Piece, i: number) => {
    const label = `${pieceName} ${i} (offset ${piece.offset})`;
    checkPiece(piece, label, tool);
    return { piece, data: await decoder.decodePiece(await readAt(input, piece.offset, piece.compressedBytes), piece.originalBytes, label, choice) };
  };
  async function* listed(): AsyncGenerator<Piece> {
    yield* pieces!;
  }
  for await (const { piece, data } of mapOrdered(listed(), decode, decoder.threads * 2)) {
    await output.write(data, 0, data.length, progress.originalBytes);
    progress.originalBytes += data.length;
    freeBuffer(data);
    progress.containerBytes = piece.offset + piece.compressedBytes;
    progress.chunks += 1;
    onProgress(progress);
  }
  return { originalBytes: progress.originalBytes, pieces: pieces.length };
}

/**
 * What a stream reads and zlib writes at a time: zlib's 16 KiB default made a write call (and a promise)
 * for every 16 KiB decoded, about 9,000 for 150 MB: `dcas decompress` of a 150 MB .gz took 1.14-1.25 s,
 * now 0.58-0.66 s (from stdin 0.93-1.04 s, now 0.63 s).
 */
const streamPieceBytes = 1024 * 1024;

/** One stream through Node's zlib (every frame or member in turn, skippable frames passed over). */
async function decodeStreaming(kind: 'zst' | 'gz', input: FileHandle, output: FileHandle, onProgress: (progress: Progress) => void): Promise<StandardDecodeResult> {
  const progress: Progress = { originalBytes: 0, containerBytes: 0, chunks: 1 };
  const sink = new Writable({
    write(piece: Buffer, _encoding, done) {
      output.write(piece, 0, piece.length, progress.originalBytes).then(() => {
        progress.originalBytes += piece.length;
        onProgress(progress);
        done();
      }, done);
    },
  });
  try {
    const pieces = { chunkSize: streamPieceBytes };
    await pipeline(input.createReadStream({ start: 0, autoClose: false, highWaterMark: streamPieceBytes }), kind === 'zst' ? createZstdDecompress(pieces) : createGunzip(pieces), sink);
  } catch (error) {
    throw zlibFailure(kind, error);
  }
  return { originalBytes: progress.originalBytes, pieces: 1 };
}

/** `source` with `head`, already read from it, put back in front. */
export function prepended(head: Uint8Array, source: ByteSource): ByteSource {
  let rest = head;
  return {
    async read(length) {
      if (rest.length === 0) return source.read(length);
      const fromHead = rest.subarray(0, Math.min(length, rest.length));
      rest = rest.subarray(fromHead.length);
      if (fromHead.length === length) return fromHead;
      const more = await source.read(length - fromHead.length);
      const out = new Uint8Array(fromHead.length + more.length);
      out.set(fromHead, 0);
      out.set(more, fromHead.length);
      return out;
    },
    close: () => source.close(),
  };
}

/**
 * A .zst or .gz read from a stream (stdin), decoded as one stream by Node's zlib (on libuv's threads).
 * An .xz or .bz2 is found piece by piece from its end, which a stream does not have: refused in words.
 */
export async function* decodeStandardStream(kind: Exclude<InputKind, 'dcz'>, source: ByteSource): AsyncGenerator<Uint8Array> {
  if (kind === 'xz' || kind === 'bz2') {
    throw new CodecError('UNSUPPORTED', `.${kind} from a stream: dcas finds its streams from the end of a file; name the file, or use ${kind === 'xz' ? 'xz -d' : 'bzip2 -d'}`);
  }
  async function* raw(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const piece = await source.read(streamPieceBytes);
      if (piece.length === 0) return;
      yield piece;
    }
  }
  const pieces = { chunkSize: streamPieceBytes };
  const decoder = kind === 'zst' ? createZstdDecompress(pieces) : createGunzip(pieces);
  const input = Readable.from(raw());
  input.on('error', (error) => decoder.destroy(error));
  input.pipe(decoder);
  try {
    for await (const piece of decoder) yield piece as Uint8Array;
  } catch (error) {
    throw zlibFailure(kind, error);
  } finally {
    input.destroy();
  }
}

function zlibFailure(kind: 'zst' | 'gz', error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  if (code.startsWith('Z_') || code.startsWith('ZSTD_') || code.startsWith('ERR_')) return new CodecError('CORRUPT_BLOCK', `${kind === 'zst' ? 'zstd' : 'gzip'} data does not decode: ${(error as Error).message}`);
  return error;
}
