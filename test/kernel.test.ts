/**
 * The WASM Huffman kernel: round trips at the edges of the format, properties over random inputs, a
 * decoder written from docs/KERNEL.md that must agree with the kernel, and a decoder that stays total
 * (CodecError only, never a hang) on truncated, mutated and hand-made invalid frames.
 */

import fc from 'fast-check';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CodecError } from '../node/codec/errors.ts';
import { chunkBytesMax, loadKernel } from '../node/codec/kernel.ts';

const kernel = loadKernel();
const blockBytesMax = 128 * 1024;

// ---------------------------------------------------------------------------------------------------
// Seeded inputs

function xorshift(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state;
  };
}

function uniformBytes(length: number, seed: number, symbols = 256): Uint8Array {
  const next = xorshift(seed);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = next() % symbols;
  return bytes;
}

/** Byte k with probability about (1 - p) p^k. */
function geometricBytes(length: number, seed: number, p = 0.5): Uint8Array {
  const next = xorshift(seed);
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    let symbol = 0;
    while (symbol < 255 && next() / 2 ** 32 < p) symbol++;
    bytes[i] = symbol;
  }
  return bytes;
}

/** Word-salad text: the byte statistics of prose, so blocks get real Huffman tables. */
function textBytes(length: number, seed: number): Uint8Array {
  const words = ['the', 'kernel', 'codes', 'a', 'chunk', 'as', 'blocks', 'of', 'Huffman', 'streams', 'and',
    'tables', 'from', 'mail', 'Received:', 'by', 'with', 'id', 'for', '<user@example.org>', '2002', '\n'];
  const next = xorshift(seed);
  const bytes = new Uint8Array(length);
  let i = 0;
  while (i < length) {
    const word = words[next() % words.length];
    for (let k = 0; k < word.length && i < length; k++) bytes[i++] = word.charCodeAt(k);
    if (i < length) bytes[i++] = 0x20;
  }
  return bytes;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}

function roundTrip(input: Uint8Array): Uint8Array {
  const frame = kernel.compress(input);
  const output = kernel.decompress(frame, input.length);
  assert.is(output.length, input.length, 'decoded length');
  assert.ok(Buffer.from(output).equals(Buffer.from(input)), 'decoded bytes equal the input');
  assert.equal(referenceDecode(frame, input.length), input, 'the reference decoder agrees');
  return frame;
}

// ---------------------------------------------------------------------------------------------------
// A decoder and an encoder written from docs/KERNEL.md alone, bit by bit.

class BitReader {
  private bit = 0;
  private readonly bytes: Uint8Array;
  private readonly start: number;
  private readonly end: number;

  constructor(bytes: Uint8Array, start: number, end: number) {
    this.bytes = bytes;
    this.start = start;
    this.end = end;
  }

  read(): number {
    const byte = this.start + (this.bit >> 3);
    if (byte >= this.end) throw new Error('bit stream runs past its end');
    const value = (this.bytes[byte] >> (this.bit & 7)) & 1;
    this.bit++;
    return value;
  }

  /** Consumes the zero padding to the byte boundary; returns the bytes used. */
  finish(): number {
    while ((this.bit & 7) !== 0) if (this.read() !== 0) throw new Error('nonzero padding');
    return this.bit >> 3;
  }
}

function canonicalCodes(lengths: number[]): Map<string, number> {
  const count = new Array(12).fill(0);
  for (const length of lengths) if (length > 0) count[length]++;
  const next = new Array(12).fill(0);
  let code = 0;
  for (let length = 1; length <= 11; length++) {
    code = (code + count[length - 1]) << 1;
    next[length] = code;
  }
  const codes = new Map<string, number>();
  lengths.forEach((length, symbol) => {
    if (length > 0) codes.set(`${length}:${next[length]++}`, symbol);
  });
  return codes;
}

function referenceDecode(frame: Uint8Array, n: number): Uint8Array {
  const u16 = (at: number) => frame[at] | (frame[at + 1] << 8);
  const need = (at: number, bytes: number) => {
    if (at + bytes > frame.length) throw new Error('runs past the frame');
  };
  need(0, 5);
  if (frame[0] !== 1) throw new Error('version');
  if ((frame[1] | (frame[2] << 8) | (frame[3] << 16) | (frame[4] << 24)) >>> 0 !== n) throw new Error('length');
  const out = new Uint8Array(n);
  let at = 5;
  let written = 0;
  let current: number[] = new Array(256).fill(0);
  let codes: Map<string, number> | undefined;
  while (written < n) {
    need(at, 3);
    const header = frame[at] | (frame[at + 1] << 8) | (frame[at + 2] << 16);
    at += 3;
    const kind = header & 3;
    const m = (header >> 2) + 1;
    if (m > blockBytesMax || written + m > n) throw new Error('block length');
    if (kind === 0) {
      need(at, m);
      out.set(frame.subarray(at, at + m), written);
      at += m;
    } else if (kind === 1) {
      need(at, 1);
      out.fill(frame[at], written, written + m);
      at += 1;
    } else {
      if (kind === 2) {
        need(at, 1);
        const top = frame[at];
        const reader = new BitReader(frame, at + 1, frame.length);
        const lengths = new Array(256).fill(0);
        for (let symbol = 0; symbol <= top; symbol++) {
          let length = current[symbol];
          if (reader.read() === 1) {
            if (reader.read() === 0) length += reader.read() === 0 ? 1 : -1;
            else if (reader.read() === 0) length += reader.read() === 0 ? 2 : -2;
            else length = reader.read() | (reader.read() << 1) | (reader.read() << 2) | (reader.read() << 3);
          }
          if (length < 0 || length > 11) throw new Error('length above 11');
          lengths[symbol] = length;
        }
        at += 1 + reader.finish();
        if (lengths.reduce((sum, length) => sum + (length > 0 ? 2 ** (11 - length) : 0), 0) !== 2048) throw new Error('incomplete');
        current = lengths;
        codes = canonicalCodes(lengths);
      } else if (codes === undefined) {
        throw new Error('repeat without a table');
      }
      need(at, 8);
      const sizes = [u16(at), u16(at + 2), u16(at + 4), u16(at + 6)];
      at += 8;
      const q = m >> 2;
      for (let stream = 0; stream < 4; stream++) {
        const count = stream < 3 ? q : m - 3 * q;
        need(at, sizes[stream]);
        const reader = new BitReader(frame, at, at + sizes[stream]);
        for (let i = 0; i < count; i++) {
          let code = 0;
          let length = 0;
          let symbol: number | undefined;
          while (symbol === undefined) {
            code = (code << 1) | reader.read();
            length++;
            if (length > 11) throw new Error('no code');
            symbol = codes.get(`${length}:${code}`);
          }
          out[written + stream * q + i] = symbol;
        }
        if (reader.finish() !== sizes[stream]) throw new Error('stream ends early');
        at += sizes[stream];
      }
    }
    written += m;
  }
  if (at !== frame.length) throw new Error('trailing bytes');
  return out;
}

class BitWriter {
  readonly bytes: number[] = [];
  private bit = 0;

  write(value: number, count: number): void {
    for (let i = 0; i < count; i++) {
      if ((this.bit & 7) === 0) this.bytes.push(0);
      this.bytes[this.bytes.length - 1] |= ((value >> i) & 1) << (this.bit & 7);
      this.bit++;
    }
  }
}

interface ReferenceBlock {
  header: number[];
  /** The top byte and the description's bytes. */
  table: number[];
  sizes: number[];
  streams: number[][];
}

function u24(value: number): number[] {
  return [value & 255, (value >> 8) & 255, value >> 16];
}

/** A Huffman (kind 2) block for `data` with the given lengths, described as changes from `previous`. */
function referenceHuffmanBlock(data: Uint8Array, lengths: number[], previous: number[]): ReferenceBlock {
  const m = data.length;
  const top = lengths.reduce((highest, length, symbol) => (length > 0 ? symbol : highest), 0);
  const description = new BitWriter();
  for (let symbol = 0; symbol <= top; symbol++) {
    const change = lengths[symbol] - previous[symbol];
    if (change === 0) description.write(0, 1);
    else if (Math.abs(change) === 1) description.write(change === 1 ? 0b001 : 0b101, 3);
    else if (Math.abs(change) === 2) description.write(change === 2 ? 0b0011 : 0b1011, 4);
    else description.write(0b111 | (lengths[symbol] << 3), 7);
  }
  const codeOf = new Map<number, [number, number]>();
  for (const [key, symbol] of canonicalCodes(lengths)) {
    const [length, code] = key.split(':').map(Number);
    codeOf.set(symbol, [code, length]);
  }
  const q = m >> 2;
  const streams = [0, 1, 2, 3].map((stream) => {
    const writer = new BitWriter();
    for (const byte of data.subarray(stream * q, stream < 3 ? (stream + 1) * q : m)) {
      const [code, length] = codeOf.get(byte)!;
      for (let bit = length - 1; bit >= 0; bit--) writer.write((code >> bit) & 1, 1);
    }
    return writer.bytes;
  });
  return {
    header: u24(2 | ((m - 1) << 2)),
    table: [top, ...description.bytes],
    sizes: streams.map((stream) => stream.length),
    streams,
  };
}

function blockBytes(block: ReferenceBlock): number[] {
  const sizes = block.sizes.flatMap((size) => [size & 255, size >> 8]);
  return [...block.header, ...block.table, ...sizes, ...block.streams.flat()];
}

/** The same streams as a repeat (kind 3) block. */
function asRepeat(block: ReferenceBlock): ReferenceBlock {
  const m = ((block.header[0] | (block.header[1] << 8) | (block.header[2] << 16)) >> 2) + 1;
  return { ...block, header: u24(3 | ((m - 1) << 2)), table: [] };
}

function referenceFrame(n: number, ...blocks: ReferenceBlock[]): Uint8Array {
  return Uint8Array.from([1, n & 255, (n >> 8) & 255, (n >> 16) & 255, n >>> 24, ...blocks.flatMap(blockBytes)]);
}

/** Lengths of a complete code of 2^bits symbols (0 .. 2^bits - 1), all `bits` long; bits <= 8. */
function flatLengths(bits: number): number[] {
  const lengths = new Array(256).fill(0);
  for (let symbol = 0; symbol < 1 << bits; symbol++) lengths[symbol] = bits;
  return lengths;
}

const noTable: number[] = new Array(256).fill(0);

function expectCorrupt(frame: Uint8Array, n: number, message?: RegExp): void {
  try {
    kernel.decompress(frame, n);
  } catch (error) {
    assert.instance(error, CodecError);
    assert.is((error as CodecError).code, 'CORRUPT_BLOCK');
    if (message) assert.match((error as CodecError).message, message, (error as CodecError).message);
    return;
  }
  assert.unreachable('the frame was accepted');
}

/** Block kinds of a kernel frame, in order. */
function blockKinds(frame: Uint8Array): number[] {
  const kinds: number[] = [];
  let at = 5;
  while (at < frame.length) {
    const header = frame[at] | (frame[at + 1] << 8) | (frame[at + 2] << 16);
    const kind = header & 3;
    const m = (header >> 2) + 1;
    kinds.push(kind);
    at += 3;
    if (kind === 0) at += m;
    else if (kind === 1) at += 1;
    else {
      if (kind === 2) {
        const reader = new BitReader(frame, at + 1, frame.length);
        for (let symbol = 0; symbol <= frame[at]; symbol++) {
          if (reader.read() === 1) {
            if (reader.read() === 0) reader.read();
            else if (reader.read() === 0) reader.read();
            else for (let i = 0; i < 4; i++) reader.read();
          }
        }
        at += 1 + reader.finish();
      }
      at += 8 + [0, 2, 4, 6].reduce((sum, offset) => sum + (frame[at + offset] | (frame[at + offset + 1] << 8)), 0);
    }
  }
  return kinds;
}

// ---------------------------------------------------------------------------------------------------
// Round trips at the edges

test('empty input codes as the 5-byte header alone and decodes to nothing', () => {
  const frame = roundTrip(new Uint8Array(0));
  assert.equal([...frame], [1, 0, 0, 0, 0]);
});

test('a single byte round-trips', () => {
  roundTrip(Uint8Array.of(0xa7));
});

test('a short run of one byte codes as one RLE block', () => {
  const frame = roundTrip(new Uint8Array(1000).fill(42));
  assert.equal(blockKinds(frame), [1]);
  assert.is(frame.length, 5 + 3 + 1);
});

test('a run longer than 128 KiB codes as RLE blocks of at most 128 KiB', () => {
  const frame = roundTrip(new Uint8Array(3 * blockBytesMax + 17).fill(0));
  assert.equal(blockKinds(frame), [1, 1, 1, 1]);
});

test('uniformly random bytes round-trip as raw blocks, within the frame bound', () => {
  const input = uniformBytes(300_000, 1);
  const frame = roundTrip(input);
  assert.ok(blockKinds(frame).every((kind) => kind === 0));
  assert.ok(frame.length <= 5 + input.length + 3 * Math.ceil(input.length / 8192));
});

test('skewed distributions round-trip and shrink: geometric, two symbols, 255 symbols', () => {
  const geometric = roundTrip(geometricBytes(200_000, 2));
  assert.ok(geometric.length < 200_000 * 0.27, `geometric: ${geometric.length}`);
  const twoSymbols = uniformBytes(200_000, 3, 2).map((bit) => (bit ? 0x41 : 0x7a));
  const two = roundTrip(twoSymbols);
  assert.ok(two.length < 200_000 / 8 + 1000, `two symbols: ${two.length}`);
  const skewed255 = geometricBytes(200_000, 4, 0.97).map((value) => Math.min(value, 254));
  assert.ok(new Set(skewed255).size > 200);
  const many = roundTrip(skewed255);
  assert.ok(many.length < 200_000, `255 symbols: ${many.length}`);
});

test('lengths at the block limit round-trip: 128 KiB - 1, 128 KiB, 128 KiB + 1', () => {
  for (const length of [blockBytesMax - 1, blockBytesMax, blockBytesMax + 1]) {
    const frame = roundTrip(textBytes(length, length));
    assert.ok(frame.length < length * 0.75, `${length}: ${frame.length}`);
  }
});

test('blocks of 1 to 3 bytes have empty streams 0 to 2 and decode; chunks of 1 to 12 bytes round-trip', () => {
  // After an RLE block, so the frame stays within the bound for its length.
  const run = { header: u24(1 | ((8192 - 1) << 2)), table: [7], sizes: [], streams: [] };
  for (let m = 1; m <= 3; m++) {
    const data = Uint8Array.from({ length: m }, (_, i) => i % 2);
    const block = referenceHuffmanBlock(data, [1, 1, ...new Array(254).fill(0)], noTable);
    assert.equal(block.sizes.slice(0, 3), [0, 0, 0]);
    const frame = Uint8Array.from([1, ...u24(8192 + m), 0, ...run.header, ...run.table, ...blockBytes(block)]);
    assert.equal(kernel.decompress(frame, 8192 + m), concat(new Uint8Array(8192).fill(7), data));
  }
  for (let length = 1; length <= 12; length++) roundTrip(textBytes(length, 7));
});

test('a multi-block chunk of mixed content round-trips with every block kind', () => {
  const input = concat(
    textBytes(400_000, 5),
    new Uint8Array(20_000).fill(7),
    uniformBytes(50_000, 6),
    geometricBytes(100_000, 7),
    textBytes(300_000, 8),
  );
  const kinds = new Set(blockKinds(roundTrip(input)));
  assert.equal([...kinds].sort(), [0, 1, 2, 3], `kinds ${[...kinds]}`);
});

test('a 4 MiB chunk of text round-trips and shrinks', () => {
  const input = textBytes(4 * 1024 * 1024, 9);
  const frame = kernel.compress(input);
  assert.ok(frame.length < input.length * 0.7);
  assert.ok(Buffer.from(kernel.decompress(frame, input.length)).equals(input));
});

test('compress into a spare buffer: a frame that fits views it from its start; one that does not gets a buffer with room for the largest frame', () => {
  const input = textBytes(1024 * 1024, 11);
  const headroom = 20;
  const plain = kernel.compress(input, headroom);
  const spare = new ArrayBuffer(2 * 1024 * 1024);
  new Uint8Array(spare).fill(0xee);
  const into = kernel.compress(input, headroom, spare);
  assert.is(into.buffer, spare, 'the frame is in the spare buffer');
  assert.is(into.byteOffset, 0);
  assert.ok(Buffer.from(into.subarray(headroom)).equals(Buffer.from(plain.subarray(headroom))), 'the same frame as without a spare');
  assert.ok(Buffer.from(kernel.decompress(into.subarray(headroom), input.length)).equals(input));
  const small = new ArrayBuffer(1000);
  const grown = kernel.compress(input, headroom, small);
  assert.is.not(grown.buffer, small, 'a spare too small is not written past its end');
  assert.is(grown.byteOffset, 0);
  assert.is(grown.buffer.byteLength, headroom + kernel.frameBytesMax(input.length), 'room for the largest frame of this input');
  assert.ok(Buffer.from(grown.subarray(headroom)).equals(Buffer.from(plain.subarray(headroom))));
  // The grown buffer is itself a spare that fits the next frame of a chunk this size.
  const again = kernel.compress(textBytes(1024 * 1024, 12), headroom, grown.buffer as ArrayBuffer);
  assert.is(again.buffer, grown.buffer);
});

test('decompress into a spare buffer: decoded bytes that fit view it from its start; a spare too small is left unwritten', () => {
  const input = textBytes(1024 * 1024, 13);
  const frame = kernel.compress(input);
  const spare = new ArrayBuffer(2 * 1024 * 1024);
  const decoded = kernel.decompress(frame, input.length, spare);
  assert.is(decoded.buffer, spare, 'the decoded bytes are in the spare buffer');
  assert.is(decoded.byteOffset, 0);
  assert.ok(Buffer.from(decoded).equals(input));
  const small = new ArrayBuffer(1000);
  new Uint8Array(small).fill(0xee);
  const fresh = kernel.decompress(frame, input.length, small);
  assert.is.not(fresh.buffer, small);
  assert.ok(Buffer.from(fresh).equals(input));
  assert.ok(new Uint8Array(small).every((byte) => byte === 0xee), 'the small spare is not written');
});

// ---------------------------------------------------------------------------------------------------
// Properties

type Distribution =
  | { kind: 'uniform'; symbols: number }
  | { kind: 'geometric'; p: number }
  | { kind: 'text' }
  | { kind: 'runs'; run: number };

const distributions: fc.Arbitrary<Distribution> = fc.oneof(
  fc.record({ kind: fc.constant('uniform' as const), symbols: fc.integer({ min: 1, max: 256 }) }),
  fc.record({ kind: fc.constant('geometric' as const), p: fc.double({ min: 0.05, max: 0.98, noNaN: true }) }),
  fc.record({ kind: fc.constant('text' as const) }),
  fc.record({ kind: fc.constant('runs' as const), run: fc.integer({ min: 1, max: 5000 }) }),
);

function sample(distribution: Distribution, length: number, seed: number): Uint8Array {
  if (distribution.kind === 'uniform') return uniformBytes(length, seed, distribution.symbols);
  if (distribution.kind === 'geometric') return geometricBytes(length, seed, distribution.p);
  if (distribution.kind === 'text') return textBytes(length, seed);
  const bytes = uniformBytes(length, seed);
  for (let i = 0; i < length; i++) bytes[i] = bytes[i - (i % distribution.run)];
  return bytes;
}

test('property: bytes of any length and distribution round-trip, and the reference decoder agrees', () => {
  fc.assert(
    fc.property(
      fc.array(fc.record({ distribution: distributions, length: fc.integer({ min: 0, max: 40_000 }), seed: fc.integer() }), { minLength: 1, maxLength: 4 }),
      (parts) => {
        roundTrip(concat(...parts.map((part) => sample(part.distribution, part.length, part.seed))));
      },
    ),
    { numRuns: 60 },
  );
});

test('property: a frame is never longer than 5 + n + 3 per started 8 KiB', () => {
  fc.assert(
    fc.property(distributions, fc.integer({ min: 0, max: 70_000 }), fc.integer(), (distribution, length, seed) => {
      const frame = kernel.compress(sample(distribution, length, seed));
      assert.ok(frame.length <= 5 + length + 3 * Math.ceil(length / 8192));
    }),
    { numRuns: 100 },
  );
});

// ---------------------------------------------------------------------------------------------------
// The decoder is total

test('a frame decoded with another original length is rejected', () => {
  const input = textBytes(10_000, 10);
  const frame = kernel.compress(input);
  expectCorrupt(frame, input.length - 1, /length differs/);
  expectCorrupt(frame, input.length + 1, /length differs/);
});

test('every truncation of a frame is rejected with CORRUPT_BLOCK', () => {
  const input = concat(textBytes(20_000, 11), new Uint8Array(100).fill(3), uniformBytes(300, 12));
  const frame = kernel.compress(input);
  for (let length = 0; length < frame.length; length++) expectCorrupt(frame.subarray(0, length), input.length);
});

test('bytes after the last block are rejected', () => {
  const input = textBytes(5000, 13);
  const frame = kernel.compress(input);
  expectCorrupt(concat(frame, Uint8Array.of(0)), input.length, /after its last block/);
});

test('random bytes given as a frame are rejected with CORRUPT_BLOCK', () => {
  for (let seed = 1; seed <= 300; seed++) {
    const frame = uniformBytes(5 + (seed * 37) % 2000, seed);
    frame[0] = 1;
    const n = (seed * 7919) % 50_000;
    frame.set([n & 255, (n >> 8) & 255, (n >> 16) & 255, 0], 1);
    expectCorrupt(frame, n);
  }
});

test('mutated frames never hang and throw only CodecError; a frame that decodes has exactly originalLength bytes', () => {
  const inputs = [
    textBytes(30_000, 14),
    concat(textBytes(140_000, 15), new Uint8Array(9000).fill(1), uniformBytes(2000, 16), textBytes(9000, 17)),
    geometricBytes(20_000, 18, 0.8),
    uniformBytes(3000, 19, 3),
  ];
  const next = xorshift(20);
  let mutations = 0;
  let accepted = 0;
  for (const input of inputs) {
    const frame = kernel.compress(input);
    for (let round = 0; round < 1500; round++) {
      const mutated = new Uint8Array(frame);
      const edits = 1 + (next() % 3);
      for (let edit = 0; edit < edits; edit++) {
        const at = next() % mutated.length;
        const choice = next() % 4;
        if (choice === 0) mutated[at] ^= 1 << (next() % 8);
        else if (choice === 1) mutated[at] = next() & 255;
        else if (choice === 2) mutated[at] = (mutated[at] + (next() % 2 ? 1 : 255)) & 255;
        else mutated[Math.min(at, 20 + (next() % 60))] ^= 1 << (next() % 8);
      }
      const cut = next() % 8 === 0 ? next() % mutated.length : mutated.length;
      mutations++;
      try {
        const output = kernel.decompress(mutated.subarray(0, cut), input.length);
        assert.is(output.length, input.length);
        accepted++;
      } catch (error) {
        if (!(error instanceof CodecError)) throw error;
        assert.is(error.code, 'CORRUPT_BLOCK');
      }
    }
  }
  assert.ok(accepted < mutations / 2, `${accepted} of ${mutations} mutations decoded`);
});

test('on mutated frames the kernel accepts exactly what the reference decoder accepts, with the same bytes', () => {
  const inputs = [
    uniformBytes(9000, 30),
    concat(textBytes(3000, 31), new Uint8Array(600).fill(9), uniformBytes(500, 32)),
    concat(new Uint8Array(9000).fill(1), uniformBytes(9000, 33)),
    geometricBytes(2500, 34, 0.7),
  ];
  const next = xorshift(35);
  for (const input of inputs) {
    const frame = kernel.compress(input);
    for (let round = 0; round < 250; round++) {
      const mutated = new Uint8Array(frame);
      const at = next() % Math.min(mutated.length, next() % 2 ? 24 : mutated.length);
      if (next() % 2) mutated[at] ^= 1 << (next() % 8);
      else mutated[at] = next() & 255;
      let expected: Uint8Array | undefined;
      try {
        expected = referenceDecode(mutated, input.length);
      } catch {
        expected = undefined;
      }
      let actual: Uint8Array | undefined;
      try {
        actual = kernel.decompress(mutated, input.length);
      } catch (error) {
        assert.instance(error, CodecError);
      }
      if (expected === undefined) assert.is(actual, undefined, `accepted a frame the reference rejects (byte ${at})`);
      else assert.equal(actual, expected, `byte ${at}`);
    }
  }
});

test('frames built from docs/KERNEL.md by hand decode in the kernel', () => {
  const data = uniformBytes(1000, 21, 16);
  const block = referenceHuffmanBlock(data, flatLengths(4), noTable);
  assert.equal(referenceDecode(referenceFrame(1000, block), 1000), data);
  assert.equal(kernel.decompress(referenceFrame(1000, block), 1000), data);
  assert.equal(kernel.decompress(referenceFrame(2000, block, asRepeat(block)), 2000), concat(data, data));
  const skewed = geometricBytes(3000, 22, 0.6).map((value) => Math.min(value, 7));
  const lengths = [1, 2, 3, 4, 5, 6, 7, 7, ...new Array(248).fill(0)];
  const second = referenceHuffmanBlock(skewed, lengths, flatLengths(4));
  assert.equal(kernel.decompress(referenceFrame(4000, block, second), 4000), concat(data, skewed));
});

test('a table whose lengths are not a complete prefix code is rejected', () => {
  const data = uniformBytes(1000, 23, 15);
  const incomplete = flatLengths(4);
  incomplete[15] = 0;
  expectCorrupt(referenceFrame(1000, referenceHuffmanBlock(data, incomplete, noTable)), 1000, /^block 0: table is not a complete prefix code$/);
  const oversubscribed = flatLengths(4);
  oversubscribed[16] = 4;
  expectCorrupt(referenceFrame(1000, referenceHuffmanBlock(data, oversubscribed, noTable)), 1000, /not a complete prefix code/);
  const single = [1, ...new Array(255).fill(0)];
  expectCorrupt(referenceFrame(1000, referenceHuffmanBlock(new Uint8Array(1000), single, noTable)), 1000, /not a complete prefix code/);
});

test('a code length above 11 is rejected', () => {
  const block = referenceHuffmanBlock(new Uint8Array(1000), flatLengths(4), noTable);
  // Symbol 0 is described as 1 1 1 then its length 4; make that length 12.
  block.table[1] = (block.table[1] & 0x80) | 0b111 | (12 << 3);
  expectCorrupt(referenceFrame(1000, block), 1000, /^block 0: table has a code length above 11/);
});

test('a repeat block with no earlier table in the frame is rejected', () => {
  const block = referenceHuffmanBlock(uniformBytes(400, 24, 16), flatLengths(4), noTable);
  const raw = { header: u24(0 | (9 << 2)), table: new Array(10).fill(5), sizes: [], streams: [] };
  const rawBytes = (b: typeof raw) => [...b.header, ...b.table];
  const frame = Uint8Array.from([1, ...u24(410), 0, ...rawBytes(raw), ...blockBytes(asRepeat(block))]);
  expectCorrupt(frame, 410, /^block 1: repeat block has no earlier table to repeat$/);
});

test('streams that lie about their sizes are rejected, naming the block and stream', () => {
  const data = uniformBytes(4000, 25, 16);
  const lying = (edit: (sizes: number[]) => void) => {
    const block = referenceHuffmanBlock(data, flatLengths(4), noTable);
    edit(block.sizes);
    return referenceFrame(4000, block);
  };
  expectCorrupt(lying((sizes) => { sizes[1] -= 1; sizes[2] += 1; }), 4000, /^block 0: stream 1 overruns its length$/);
  expectCorrupt(lying((sizes) => { sizes[1] += 1; sizes[2] -= 1; }), 4000, /^block 0: stream 1 ends before its last byte$/);
  expectCorrupt(lying((sizes) => { sizes[3] += 1; }), 4000, /^block 0: block runs past the end of the frame$/);
  const padded = referenceHuffmanBlock(data, flatLengths(4), noTable);
  padded.streams[0].push(0);
  padded.sizes[0] += 1;
  expectCorrupt(referenceFrame(4000, padded), 4000, /^block 0: stream 0 ends before its last byte$/);
});

test('nonzero padding bits after a stream are rejected', () => {
  // Five 1-bit codes per stream leave three padding bits in each stream's only byte.
  const block = referenceHuffmanBlock(new Uint8Array(20), [1, 2, 3, 3, ...new Array(252).fill(0)], noTable);
  assert.equal(kernel.decompress(referenceFrame(20, block), 20), new Uint8Array(20));
  block.streams[2][0] |= 0x80;
  expectCorrupt(referenceFrame(20, block), 20, /^block 0: stream 2 has nonzero padding bits$/);
});

// ---------------------------------------------------------------------------------------------------
// Limits and instances

test('an original length or a chunk beyond 64 MiB throws TOO_LARGE', () => {
  assert.throws(() => kernel.decompress(new Uint8Array(10), chunkBytesMax + 1), (error: unknown) => error instanceof CodecError && error.code === 'TOO_LARGE');
  assert.throws(() => kernel.decompress(new Uint8Array(10), -1), (error: unknown) => error instanceof CodecError && error.code === 'TOO_LARGE');
  assert.throws(() => kernel.compress(new Uint8Array(chunkBytesMax + 1)), (error: unknown) => error instanceof CodecError && error.code === 'TOO_LARGE');
});

test('a frame longer than any frame of originalLength bytes is rejected', () => {
  expectCorrupt(new Uint8Array(5 + 100 + 3 + 1), 100, /longer than any frame/);
});

test('each loadKernel() owns its memory: interleaved calls on two kernels do not disturb each other', () => {
  const other = loadKernel();
  const big = textBytes(1_000_000, 25);
  const small = geometricBytes(5000, 26);
  const bigFrame = kernel.compress(big);
  const smallFrame = other.compress(small);
  assert.ok(Buffer.from(other.decompress(smallFrame, small.length)).equals(small));
  assert.ok(Buffer.from(kernel.decompress(bigFrame, big.length)).equals(big));
  // A smaller call after a larger one reuses the memory and still sees only its own bytes.
  assert.ok(Buffer.from(kernel.decompress(kernel.compress(small), small.length)).equals(small));
});

test('outputs are fresh buffers the caller owns', () => {
  const input = textBytes(10_000, 27);
  const frame = kernel.compress(input);
  const first = kernel.decompress(frame, input.length);
  const second = kernel.decompress(frame, input.length);
  assert.is.not(first.buffer, second.buffer);
  assert.is(first.byteOffset, 0);
  assert.is(first.buffer.byteLength, input.length);
  assert.is(frame.buffer.byteLength, frame.length);
});

test.run();
