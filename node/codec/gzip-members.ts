/**
 * A gzip member that says how long it is, so a reader can find every member of a file without decoding
 * it and decode them in parallel: the header gains an extra field (RFC 1952, FLG.FEXTRA) holding one
 * subfield, `DC`, of 8 bytes: the member's whole length and its decoded length, u32 little-endian each.
 * `gzip -d`, `pigz -d` and every other reader skip extra fields they do not know (docs/FORMAT.md).
 */

const id1 = 0x1f;
const id2 = 0x8b;
const deflate = 8;
const flagExtra = 0x04;
/** What zlib writes: ID1 ID2 CM FLG MTIME(4) XFL OS, with no optional fields. */
const plainHeaderBytes = 10;
/** XLEN (2), then the subfield: SI1 SI2 LEN(2) and its 8 bytes. */
const subfieldBytes = 4 + 8;
const extraBytes = 2 + subfieldBytes;
/** Where, in a sized member, the subfield's id and its two lengths are. */
const subfieldAt = plainHeaderBytes + 2;
const memberBytesAt = subfieldAt + 4;
const originalBytesAt = memberBytesAt + 4;
/** A sized member's header: the plain header, then the extra field. */
export const sizedHeaderBytes = plainHeaderBytes + extraBytes;
const subfieldId = [0x44, 0x43]; // "DC"

/**
 * The member zlib coded (`member`, whose header has no optional field), with the size field added, as new
 * memory with `headroom` unwritten bytes before it: one copy of the member, which a codec thread makes
 * anyway (coders.ts) and the file pipeline's zlib coders pay (about 0.1 ms for a 4 MiB chunk's member).
 */
export function sizedMember(member: Uint8Array, originalBytes: number, headroom = 0): Uint8Array {
  if (member.length < plainHeaderBytes + 8 || member[0] !== id1 || member[1] !== id2 || member[3] !== 0) {
    throw new Error('sizedMember: not a gzip member with a plain header');
  }
  const length = member.length + extraBytes;
  const out = new Uint8Array(Buffer.allocUnsafeSlow(headroom + length).buffer, 0, headroom + length);
  const view = new DataView(out.buffer, headroom, sizedHeaderBytes);
  out.set(member.subarray(0, plainHeaderBytes), headroom);
  out[headroom + 3] = flagExtra;
  view.setUint16(plainHeaderBytes, subfieldBytes, true);
  out.set(subfieldId, headroom + subfieldAt);
  view.setUint16(subfieldAt + 2, 8, true);
  view.setUint32(memberBytesAt, length, true);
  view.setUint32(originalBytesAt, originalBytes >>> 0, true);
  out.set(member.subarray(plainHeaderBytes), headroom + sizedHeaderBytes);
  return out;
}

/** A sized member's lengths from its first sizedHeaderBytes bytes, or undefined when they are not one's. */
export function memberSizes(header: Uint8Array): { memberBytes: number; originalBytes: number } | undefined {
  if (header.length < sizedHeaderBytes || header[0] !== id1 || header[1] !== id2 || header[2] !== deflate) return undefined;
  if (header[3] !== flagExtra) return undefined;
  const view = new DataView(header.buffer, header.byteOffset, sizedHeaderBytes);
  if (view.getUint16(plainHeaderBytes, true) !== subfieldBytes || header[subfieldAt] !== subfieldId[0] || header[subfieldAt + 1] !== subfieldId[1] || view.getUint16(subfieldAt + 2, true) !== 8) return undefined;
  const memberBytes = view.getUint32(memberBytesAt, true);
  if (memberBytes < sizedHeaderBytes + 8) return undefined;
  return { memberBytes, originalBytes: view.getUint32(originalBytesAt, true) };
}
