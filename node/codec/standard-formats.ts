/**
 * Files any tool reads: the chunks' frames written back to back in a standard format instead of a .dcz.
 * Each codec already codes a chunk as one complete frame, member or stream of its format (coders.ts), and
 * each of these formats is defined as a concatenation of such pieces: `zstd -d`, `gunzip`, `xz -d` and
 * `bzip2 -d` decode the whole file. A .zst ends with a seek table in the zstd seekable format
 * (facebook/zstd contrib/seekable_format/zstd_seekable_compression_format.md), a skippable frame that
 * `zstd -d` passes over and that lets a reader find every frame without decoding the ones before it.
 */
import { codecByName, type CodecChoice } from './codecs.ts';
import { CodecError } from './errors.ts';
import { encodeChunkHeader, encodeHeader, encodeIndex, encodeTrailer, formatVersion, type ChunkEntry } from './format.ts';

export type OutputFormat = 'dcz' | 'zst' | 'gz' | 'xz' | 'bz2';
export const outputFormats: readonly OutputFormat[] = ['dcz', 'zst', 'gz', 'xz', 'bz2'];

/** The codec each standard format needs. */
const formatCodecs = { zst: 'zstd', gz: 'gzip', xz: 'xz', bz2: 'bzip2' } as const;

/**
 * The format and codec a command line asked for: a standard format needs its codec, and implies it when
 * none is given (`--format zst` is zstd at its default level); a .dcz takes any codec.
 */
export function resolveOutput(format: OutputFormat | undefined, codec: CodecChoice | undefined): { format: OutputFormat; codec: CodecChoice | undefined } {
  if (format === undefined || format === 'dcz') return { format: 'dcz', codec };
  const needed = codecByName(formatCodecs[format]);
  if (needed === undefined) throw new Error(`format ${format}: its codec ${formatCodecs[format]} is not in the registry`);
  if (codec === undefined) return { format, codec: { codec: needed, level: needed.levelDefault } };
  if (codec.codec.id !== needed.id) throw new CodecError('UNSUPPORTED', `--format ${format} needs --codec ${needed.name}, not ${codec.codec.name}`);
  return { format, codec };
}

/** The file name suffix of a format. */
export function suffixOf(format: OutputFormat): string {
  return `.${format}`;
}

export const skippableMagic = 0x184d2a5e;
export const seekableMagic = 0x8f92eab1;
const seekFooterBytes = 9;
const seekEntryBytes = 8;
/** A seek table entry holds 32-bit sizes; chunks (at most 64 MiB) and their frames always fit. */
const seekSizeMax = 0xffffffff;

/** The seek table for frames of these sizes: a skippable frame, one entry per frame, no checksums (each frame carries its own). */
export function encodeSeekTable(frames: readonly { compressedBytes: number; originalBytes: number }[]): Uint8Array {
  const bodyBytes = frames.length * seekEntryBytes + seekFooterBytes;
  const out = new Uint8Array(8 + bodyBytes);
  const view = new DataView(out.buffer);
  view.setUint32(0, skippableMagic, true);
  view.setUint32(4, bodyBytes, true);
  let at = 8;
  for (const frame of frames) {
    if (frame.compressedBytes > seekSizeMax || frame.originalBytes > seekSizeMax) throw new RangeError('seek table: a frame larger than 4 GiB');
    view.setUint32(at, frame.compressedBytes, true);
    view.setUint32(at + 4, frame.originalBytes, true);
    at += seekEntryBytes;
  }
  view.setUint32(at, frames.length, true);
  view.setUint8(at + 4, 0); // descriptor: no checksums, reserved bits zero
  view.setUint32(at + 5, seekableMagic, true);
  return out;
}

export interface SeekFrame {
  /** Where the frame starts in the file. */
  offset: number;
  compressedBytes: number;
  originalBytes: number;
}

/**
 * The frames a .zst's seek table lists, read from its last bytes, or undefined when the file has no
 * seek table (a plain zstd file). A table that is there but does not add up is CORRUPT_CONTAINER.
 */
export function decodeSeekTable(tail: Uint8Array, fileBytes: number): SeekFrame[] | undefined {
  if (tail.length < 8 + seekFooterBytes) return undefined;
  const view = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  const footer = tail.length - seekFooterBytes;
  if (view.getUint32(footer + 5, true) !== seekableMagic) return undefined;
  const count = view.getUint32(footer, true);
  const descriptor = view.getUint8(footer + 4);
  const entryBytes = descriptor & 0x80 ? 12 : 8;
  if ((descriptor & 0x7c) !== 0) throw new CodecError('CORRUPT_CONTAINER', 'seek table: reserved descriptor bits are set');
  const tableBytes = 8 + count * entryBytes + seekFooterBytes;
  if (tableBytes > tail.length || tableBytes > fileBytes) throw new CodecError('CORRUPT_CONTAINER', `seek table: lists ${count} frames, more than the file can hold`);
  const start = tail.length - tableBytes;
  if (view.getUint32(start, true) !== skippableMagic || view.getUint32(start + 4, true) !== tableBytes - 8) {
    throw new CodecError('CORRUPT_CONTAINER', 'seek table: its skippable frame header is missing or has the wrong size');
  }
  const frames: SeekFrame[] = [];
  let offset = 0;
  for (let i = 0, at = start + 8; i < count; i++, at += entryBytes) {
    const compressedBytes = view.getUint32(at, true);
    const originalBytes = view.getUint32(at + 4, true);
    frames.push({ offset, compressedBytes, originalBytes });
    offset += compressedBytes;
  }
  if (offset !== fileBytes - tableBytes) throw new CodecError('CORRUPT_CONTAINER', `seek table: its frames add up to ${offset} bytes, the file holds ${fileBytes - tableBytes} before the table`);
  return frames;
}

/** The bytes around the chunks' frames: a .dcz's header, chunk headers, index and trailer, or a standard format's. */
export interface Framing {
  /** Whether `end` needs the original's SHA-256 (only a .dcz records it). */
  readonly needsSha256: boolean;
  start(): Uint8Array[];
  /** What goes before the frame of a chunk that starts at `offset` in the output. */
  beforeFrame(entry: ChunkEntry): Uint8Array[];
  end(entries: readonly ChunkEntry[], offset: number, originalBytes: number, sha256: Uint8Array | undefined): Uint8Array[];
}

/**
 * The piece each format codes an empty input into, as the system tools write it (`zstd -c`, `gzip -n -c`,
 * `xz -c`, `bzip2 -c` of nothing): an empty input still makes a file the tools accept, which zero bytes
 * are not.
 */
const emptyPieces: Record<Exclude<OutputFormat, 'dcz'>, Uint8Array> = {
  zst: Buffer.from('28b52ffd240001000099e9d851', 'hex'),
  gz: Buffer.from('1f8b080000000000000303000000000000000000', 'hex'),
  xz: Buffer.from('fd377a585a000004e6d6b446000000001cdf44211fb6f37d010000000004595a', 'hex'),
  bz2: Buffer.from('425a683917724538509000000000', 'hex'),
};

export function framingOf(format: OutputFormat, codec: CodecChoice, chunkBytes: number): Framing {
  if (format !== 'dcz') {
    return {
      needsSha256: false,
      start: () => [],
      beforeFrame: () => [],
      end(entries) {
        const empty = entries.length === 0 ? [emptyPieces[format]] : [];
        const frames = entries.length === 0 ? [{ compressedBytes: emptyPieces[format].length, originalBytes: 0 }] : entries;
        return format === 'zst' ? [...empty, encodeSeekTable(frames)] : empty;
      },
    };
  }
  return {
    needsSha256: true,
    start: () => [encodeHeader({ version: formatVersion, codec: codec.codec.id, level: codec.level, chunkBytes })],
    beforeFrame: (entry) => [encodeChunkHeader(entry)],
    end(entries, offset, originalBytes, sha256) {
      if (sha256 === undefined) throw new Error('a .dcz trailer needs the SHA-256 of the original');
      return [encodeIndex(entries), encodeTrailer({ indexOffset: offset, chunkCount: entries.length, originalBytes, sha256 })];
    },
  };
}
