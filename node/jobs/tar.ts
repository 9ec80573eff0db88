/**
 * The tar archives of images jobs, through tar-stream: the gateway reads an uploaded tar entry by entry
 * (one image per task), and each worker writes its image as one whole tar entry (header, data, padding),
 * so the merge composes the archive from the entries and an end marker without reading any image again.
 */
import { pipeline, Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { ImageError } from '../codec/index.ts';

/** Two zero blocks end a tar archive. */
export const tarEndBytes = 1024;

/** An image's tar entry name: a relative path of at most this many bytes, no "..", no absolute path. */
export const imageNameBytesMax = 200;

/** A regular file of an uploaded tar: its name and its bytes (one image, bounded by the caller's limit). */
export interface TarImage {
  name: string;
  bytes: Uint8Array;
}

/** The name as an archive entry may carry it, or a reason it may not. */
export function checkImageName(name: string): string | undefined {
  if (name.length === 0 || Buffer.byteLength(name) > imageNameBytesMax) return `entry names are 1..${imageNameBytesMax} bytes`;
  if (name.startsWith('/') || name.split('/').includes('..') || /[\u0000-\u001f\\]/.test(name)) return 'entry names are relative paths without "..", "\\" or control characters';
  return undefined;
}

/**
 * The regular files of a tar stream, in order, each read whole (at most `entryBytesMax`); directories are
 * skipped, links and devices refused. A malformed tar throws from the iteration.
 */
export async function* tarImages(input: AsyncIterable<Uint8Array>, entryBytesMax: number): AsyncGenerator<TarImage> {
  const extract = tar.extract();
  // pipeline, not pipe: an error on either side destroys the other, and reaches the loop below through
  // `extract`. With pipe, a source failing after the parser refused the bytes had no listener (a crash).
  pipeline(Readable.from(input), extract, () => {});
  for await (const entry of extract) {
    const { name, type, size } = entry.header;
    if (type === 'directory') {
      entry.resume();
      continue;
    }
    if (type !== 'file' && type !== 'contiguous-file') throw new ImageError('NOT_IMAGE', `tar entry "${name.slice(0, 80)}": a ${type}, not a file`);
    const refused = checkImageName(name);
    if (refused !== undefined) throw new ImageError('NOT_IMAGE', `tar entry "${name.slice(0, 80)}": ${refused}`);
    if ((size ?? 0) > entryBytesMax) throw new ImageError('IMAGE_TOO_LARGE', `tar entry "${name}": ${size} bytes, more than the ${entryBytesMax} an image may have`);
    const pieces: Buffer[] = [];
    for await (const piece of entry) pieces.push(piece as Buffer);
    yield { name, bytes: Buffer.concat(pieces) };
  }
}

/** One whole tar entry (header, data, padding to 512 bytes; a long name gets its pax header too). */
export async function tarEntry(name: string, bytes: Uint8Array): Promise<Buffer> {
  const pack = tar.pack();
  pack.entry({ name, size: bytes.length, mtime: new Date(0), mode: 0o644 }, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length));
  pack.finalize();
  const pieces: Buffer[] = [];
  for await (const piece of pack) pieces.push(piece as Buffer);
  const whole = Buffer.concat(pieces);
  return whole.subarray(0, whole.length - tarEndBytes);
}

/** The end of an archive. */
export function tarEnd(): Buffer {
  return Buffer.alloc(tarEndBytes);
}
