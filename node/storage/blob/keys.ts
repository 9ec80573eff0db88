/**
 * The rules both stores apply at their edge, so they refuse the same things with the same codes:
 * keys, list prefixes, read ranges, metadata. Also the CRC32C text form GCS uses.
 */

import { BlobError, type ReadRange } from './types.ts';

/** GCS allows 1024 bytes per object name, prefix included; leave room for a store prefix. */
export const keyBytesMax = 768;
/** A segment is a file name in the folder store; 255 bytes minus room for ".<name>.tmp-<pid>-<hex>". */
export const segmentBytesMax = 200;
/** GCS allows 8 KiB of custom metadata per object (keys and values together). */
export const metadataBytesMax = 8 * 1024;
export const metadataKeyBytesMax = 128;

const segmentPattern = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;

/** Why `key` is not a key, or '' when it is one. */
export function keyProblem(key: string): string {
  if (typeof key !== 'string') return 'not a string';
  if (key.length === 0) return 'empty';
  if (key.length > keyBytesMax) return `longer than ${keyBytesMax} bytes`;
  if (key.startsWith('/')) return 'absolute (starts with "/")';
  for (const segment of key.split('/')) {
    const problem = segmentProblem(segment);
    if (problem !== '') return problem;
  }
  return '';
}

function segmentProblem(segment: string): string {
  if (segment.length === 0) return 'has an empty segment ("//" or a trailing "/")';
  if (segment === '.' || segment === '..') return `has a "${segment}" segment`;
  if (segment.length > segmentBytesMax) return `has a segment longer than ${segmentBytesMax} bytes`;
  if (segment.startsWith('.')) return `has a segment starting with "." (${segment}), which the stores keep for themselves`;
  if (!segmentPattern.test(segment)) return `has a character outside [A-Za-z0-9._-] in segment "${segment}"`;
  return '';
}

/** Throws BAD_KEY naming the store, the action and the key. */
export function checkKey(key: string, where: string): void {
  const problem = keyProblem(key);
  if (problem !== '') throw new BlobError('BAD_KEY', `${where}: bad key ${JSON.stringify(key)}: ${problem}`);
}

/**
 * A list prefix is whole segments followed by the start of one (possibly empty): "" and "jobs/" and
 * "staging/3f2a/in/000" are prefixes; "/x", "a//b", "../x" are not.
 */
export function checkPrefix(prefix: string, where: string): void {
  const fail = (problem: string): never => {
    throw new BlobError('BAD_KEY', `${where}: bad prefix ${JSON.stringify(prefix)}: ${problem}`);
  };
  if (typeof prefix !== 'string') fail('not a string');
  if (prefix === '') return;
  if (prefix.length > keyBytesMax) fail(`longer than ${keyBytesMax} bytes`);
  if (prefix.startsWith('/')) fail('absolute (starts with "/")');
  const segments = prefix.split('/');
  const partial = segments.pop() as string;
  for (const segment of segments) {
    const problem = segmentProblem(segment);
    if (problem !== '') fail(problem);
  }
  if (partial !== '') {
    const problem = segmentProblem(partial);
    if (problem !== '') fail(problem);
  }
}

export function checkRange(range: ReadRange, where: string): void {
  const { start, end } = range;
  const fine = Number.isSafeInteger(start) && Number.isSafeInteger(end) && start >= 0 && end >= start;
  if (!fine) throw new BlobError('BAD_RANGE', `${where}: bad range [${start}, ${end}): need integers 0 <= start <= end`);
}

/** Throws BAD_RANGE when a well-formed range runs past the blob's end. */
export function checkRangeWithin(range: ReadRange, size: number, where: string): void {
  if (range.end > size) {
    throw new BlobError('BAD_RANGE', `${where}: range [${range.start}, ${range.end}) runs past the end of the blob (${size} bytes)`);
  }
}

/** Returns a plain copy of the metadata after checking it, so later changes by the caller do not leak in. */
export function checkMetadata(metadata: Record<string, string> | undefined, where: string): Record<string, string> {
  const copy: Record<string, string> = {};
  if (metadata === undefined) return copy;
  const fail = (problem: string): never => {
    throw new BlobError('BAD_METADATA', `${where}: bad metadata: ${problem}`);
  };
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) fail('not an object of strings');
  let bytes = 0;
  for (const [name, value] of Object.entries(metadata)) {
    if (name.length === 0 || Buffer.byteLength(name) > metadataKeyBytesMax) fail(`name ${JSON.stringify(name)} is empty or longer than ${metadataKeyBytesMax} bytes`);
    if (typeof value !== 'string') fail(`value of ${JSON.stringify(name)} is not a string`);
    bytes += Buffer.byteLength(name) + Buffer.byteLength(value);
    copy[name] = value;
  }
  if (bytes > metadataBytesMax) fail(`${bytes} bytes, more than ${metadataBytesMax}`);
  return copy;
}

/** GCS writes a CRC32C as the base64 of its four big-endian bytes. */
/** A compose's arguments, checked alike by both stores; returns the destination's metadata. */
export function checkCompose(sources: readonly string[], destination: string, metadata: Record<string, string> | undefined, where: string): Record<string, string> {
  checkKey(destination, where);
  for (const source of sources) checkKey(source, where);
  if (sources.includes(destination)) throw new BlobError('BAD_KEY', `${where}: the destination is also a source`);
  return checkMetadata(metadata, where);
}

export function crc32cToBase64(value: number): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value >>> 0, 0);
  return bytes.toString('base64');
}

/** The inverse of crc32cToBase64; undefined when the text is not four bytes of base64. */
export function crc32cFromBase64(text: string): number | undefined {
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length !== 4 || bytes.toString('base64') !== text) return undefined;
  return bytes.readUInt32BE(0);
}

export function crc32cHex(value: number): string {
  return (value >>> 0).toString(16).padStart(8, '0');
}
