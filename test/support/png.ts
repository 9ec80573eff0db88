/**
 * PNG surgery for the image tests: chunks with their CRCs, a decompression bomb, a chunk inserted after
 * the header (an acTL makes an animated PNG).
 */
import { crc32, deflateSync } from 'node:zlib';

export function chunk(type: string, data: Uint8Array): Buffer {
  const header = Buffer.alloc(8);
  header.writeUInt32BE(data.length, 0);
  header.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([header.subarray(4), data])), 0);
  return Buffer.concat([header, data, crc]);
}

const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A PNG whose header claims width x height while its data is a few hundred bytes of zeros. */
export function bomb(width: number, height: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 0, 0, 0, 0], 8); // 8-bit grey, deflate, adaptive filters, no interlace
  const data = deflateSync(Buffer.alloc(1 << 20));
  return Buffer.concat([signature, chunk('IHDR', header), chunk('IDAT', data), chunk('IEND', new Uint8Array(0))]);
}

/** Inserts a chunk right after IHDR (8-byte signature + 25-byte IHDR chunk). */
export function insertAfterHeader(png: Uint8Array, inserted: Buffer): Buffer {
  return Buffer.concat([png.subarray(0, 33), inserted, png.subarray(33)]);
}

/** An animated PNG (APNG): an acTL chunk (2 frames, looping) right after the header. */
export function animated(png: Uint8Array): Buffer {
  const control = Buffer.alloc(8);
  control.writeUInt32BE(2, 0);
  return insertAfterHeader(png, chunk('acTL', control));
}
