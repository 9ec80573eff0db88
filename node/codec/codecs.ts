/**
 * The codec registry: what each codec is called, its stable id (the .dcz header's codec byte, never
 * reused), its levels and default. Only descriptions live here, so any room (the CLI, the job record)
 * can name and check a codec without loading one; the coding itself runs on codec threads (coders.ts).
 */
import { CodecError } from './errors.ts';

export type CodecName = 'huffman' | 'store' | 'zstd' | 'gzip' | 'brotli' | 'xz' | 'bzip2';

export interface CodecInfo {
  /** The .dcz header's codec byte. */
  readonly id: number;
  readonly name: CodecName;
  readonly levelMin: number;
  readonly levelMax: number;
  readonly levelDefault: number;
}

/** A codec with its level: what a file or a job is coded with. */
export interface CodecChoice {
  readonly codec: CodecInfo;
  readonly level: number;
}

// Ids are append-only: a .dcz records the id, so an id once given keeps its meaning forever.
const registry: readonly CodecInfo[] = [
  { id: 1, name: 'huffman', levelMin: 0, levelMax: 0, levelDefault: 0 },
  { id: 2, name: 'store', levelMin: 0, levelMax: 0, levelDefault: 0 },
  { id: 3, name: 'zstd', levelMin: 1, levelMax: 19, levelDefault: 3 },
  { id: 4, name: 'gzip', levelMin: 1, levelMax: 9, levelDefault: 6 },
  { id: 5, name: 'brotli', levelMin: 0, levelMax: 11, levelDefault: 5 },
  { id: 6, name: 'xz', levelMin: 0, levelMax: 9, levelDefault: 6 },
  { id: 7, name: 'bzip2', levelMin: 1, levelMax: 9, levelDefault: 9 },
];

export const codecs: readonly CodecInfo[] = registry;
export const codecHuffmanId = 1;

export function codecById(id: number): CodecInfo | undefined {
  return registry.find((codec) => codec.id === id);
}

export function codecByName(name: string): CodecInfo | undefined {
  return registry.find((codec) => codec.name === name);
}

/** The default: the WASM Huffman kernel. */
export const huffmanChoice: CodecChoice = { codec: registry[0], level: 0 };

function levelsOf(codec: CodecInfo): string {
  return codec.levelMin === codec.levelMax ? 'no levels' : `levels ${codec.levelMin}-${codec.levelMax}, default ${codec.levelDefault}`;
}

/** Every codec and its levels, for usage errors and help: "huffman, store, zstd (levels 1-19, default 3), ...". */
export function codecsDescribed(): string {
  return registry.map((codec) => (codec.levelMin === codec.levelMax ? codec.name : `${codec.name} (${levelsOf(codec)})`)).join(', ');
}

/** A level for `codec`, or a CodecError naming the valid ones. */
export function checkedLevel(codec: CodecInfo, level: number): number {
  if (!Number.isInteger(level) || level < codec.levelMin || level > codec.levelMax) {
    throw new CodecError('UNSUPPORTED', `codec ${codec.name}: level ${level} is not valid (${levelsOf(codec)})`);
  }
  return level;
}

/** Parses "zstd", "zstd:9" or "huffman"; an unknown codec or level is a CodecError that lists the valid ones. */
export function parseCodecChoice(text: string): CodecChoice {
  const match = /^([a-z0-9]+)(?::(\d{1,2}))?$/.exec(text.trim().toLowerCase());
  const codec = match === null ? undefined : codecByName(match[1]);
  if (match === null || codec === undefined) throw new CodecError('UNSUPPORTED', `unknown codec "${text}": choose one of ${codecsDescribed()}`);
  const level = match[2] === undefined ? codec.levelDefault : checkedLevel(codec, Number(match[2]));
  return { codec, level };
}

/** A choice from a codec id and level as a .dcz header records them; refuses ids and levels this build does not know. */
export function choiceOf(id: number, level: number): CodecChoice {
  const codec = codecById(id);
  if (codec === undefined) throw new CodecError('UNSUPPORTED', `codec id ${id} is not supported (this build knows ${registry.map((known) => `${known.id} ${known.name}`).join(', ')})`);
  return { codec, level: checkedLevel(codec, level) };
}

/** "zstd:9", or just the name for a codec without levels. */
export function choiceName(choice: CodecChoice): string {
  return choice.codec.levelMin === choice.codec.levelMax ? choice.codec.name : `${choice.codec.name}:${choice.level}`;
}

/**
 * The largest coded chunk a reader accepts for `originalBytes` bytes, refused before allocating. The
 * Huffman kernel's bound is the one version 1 always had; other codecs may grow incompressible data by
 * more (bzip2's worst case is 1% plus 600 bytes), so theirs is 1/64 plus 1 KiB.
 */
export function codedBytesMax(codecId: number, originalBytes: number): number {
  if (codecId === codecHuffmanId) return originalBytes + (originalBytes >>> 7) + 1024;
  return originalBytes + (originalBytes >>> 6) + 1024;
}

const mebibyte = 1024 * 1024;
/** xz(1)'s compressor memory at presets 0-9, in MiB (its --help-memory table, preset 6 the default). */
const xzCompressorMebibytes = [3, 9, 17, 32, 48, 94, 94, 186, 370, 674];
/** xz's dictionary at presets 0-9, in MiB (xz(1)): what its decoder holds at most. */
export const xzDictionaryMebibytes: readonly number[] = [0.25, 1, 2, 4, 4, 8, 8, 16, 32, 64];

/**
 * The xz preset a chunk is coded with at `level`. Presets 7-9 differ from 6 only in their dictionary (16,
 * 32 and 64 MiB), and their encoder's memory grows with it past what a node may hold (xz(1): 186-674 MiB;
 * measured here at preset 9: RSS +159 MB on an 8 MiB chunk, +241 MB on 16 MiB, +911 MB for a process on
 * its 64 MiB chunks). So, as `xz --memlimit-compress` shrinks the dictionary until the encoder fits, they
 * code with preset 6's 8 MiB dictionary, which is then preset 6 itself; the level is still recorded.
 */
export function xzPresetOf(level: number): number {
  return Math.min(level, 6);
}

/** What a codec keeps beside its buffers to code one chunk, whatever the chunk's size. */
function coderStateBytes(choice: CodecChoice, op: 'compress' | 'decompress'): number {
  const { name } = choice.codec;
  // A decoder needs the dictionary the stream was coded with: a file coded elsewhere at -9 needs 64 MiB.
  if (name === 'xz' && op === 'compress') return xzCompressorMebibytes[xzPresetOf(choice.level)] * mebibyte;
  if (name === 'xz') return xzDictionaryMebibytes[choice.level] * mebibyte;
  // zstd's match tables grow with the level (measured on a 4 MiB chunk: 2 MiB at level 3, 49 MiB at 19).
  if (name === 'zstd' && op === 'compress') return (choice.level >= 16 ? 64 : choice.level >= 10 ? 32 : 8) * mebibyte;
  if (name === 'brotli' && op === 'compress') return (choice.level >= 10 ? 16 : 4) * mebibyte;
  if (name === 'bzip2') return 8 * mebibyte;
  return mebibyte;
}

/** Copies of the chunk a coding holds at its peak: input, output, and the codec's own copies. */
function chunkCopies(name: CodecName, op: 'compress' | 'decompress'): number {
  // Measured peaks (HWM of a fresh process, 4 and 32 MiB text chunks): the kernel and bzip2 stage input
  // and output in WASM memory and copy the result out; xz's decoder returns external memory, copied.
  if (name === 'xz' && op === 'decompress') return 4;
  if (name === 'huffman' || name === 'bzip2') return op === 'compress' ? 3 : 4;
  return 2;
}

/**
 * The most memory a codec thread uses to code one chunk of `chunkBytes` original bytes: the codec's
 * state plus the copies of the chunk it holds. A node admits codings while their sum stays within its
 * budget (pool.ts), so a slow, hungry codec (xz, zstd:19) runs fewer chunks at once rather than more memory.
 */
export function codingBytesMax(choice: CodecChoice, op: 'compress' | 'decompress', chunkBytes: number): number {
  return coderStateBytes(choice, op) + chunkCopies(choice.codec.name, op) * chunkBytes;
}
