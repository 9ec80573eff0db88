// Line and word counts of a chunk, as `wc -l -w` counts them in the C locale (node/codec/text-counts.ts
// has the rules and joins chunks): a "\n" is a line; a printable byte other than space (0x21-0x7e) starts
// a word when not in one; whitespace (space, \t \n \v \f \r) ends it; any other byte leaves the state.
// 16 bytes at a time: SIMD compares give bitmasks of word, whitespace and newline bytes, and the word
// state runs through the block with integer arithmetic, without branches; the last 0-15 bytes take the
// byte loop.

const CLASS_PASS_OVER: u32 = 0;
const CLASS_SPACE: u32 = 1;
const CLASS_WORD: u32 = 2;

// Three results of one pass, left in exported globals because a WASM export returns one number;
// node/codec/kernel.ts reads them right after countText on the same thread (nothing runs in between).
// Writing them to linear memory instead would cost the JS side a view and three loads for the same thing.
export let countedLines: u32 = 0;
export let countedWords: u32 = 0;
/** Bit 0: the first significant byte is a word byte; bit 1: the last is; bit 2: no byte is significant. */
export let countedEdges: u32 = 0;

// @ts-ignore: decorator
@inline function classOf(byte: u32): u32 {
  if (byte - 0x21 < 0x5e) return CLASS_WORD;
  if (byte == 0x20 || byte - 9 < 5) return CLASS_SPACE;
  return CLASS_PASS_OVER;
}

/** The byte loop over [from, to), starting in the word state `inWord`; returns the state after it. */
function countBytes(from: usize, to: usize, inWord: u32): u32 {
  let lines: u32 = 0;
  let words: u32 = 0;
  for (let at = from; at < to; at++) {
    const byte = <u32>load<u8>(at);
    const kind = classOf(byte);
    const isWord = kind >> 1;
    words += isWord & (inWord ^ 1);
    inWord = isWord | (inWord & (kind ^ 1));
    lines += <u32>(byte == 0x0a);
  }
  countedLines += lines;
  countedWords += words;
  return inWord;
}

/** The class of the first significant byte from `start` towards `end` by `step`. */
function edgeClass(start: isize, end: isize, step: isize, base: usize): u32 {
  for (let at = start; at != end; at += step) {
    const kind = classOf(<u32>load<u8>(base + <usize>at));
    if (kind != CLASS_PASS_OVER) return kind;
  }
  return CLASS_PASS_OVER;
}

/** Counts the `length` bytes at `pointer` into countedLines, countedWords and countedEdges. */
export function countTextAt(pointer: usize, length: u32): void {
  countedLines = 0;
  countedWords = 0;
  let inWord: u32 = 0;
  const end = pointer + <usize>length;
  const blockEnd = pointer + (<usize>length & ~15);
  const wordLow = i8x16.splat(0x20);
  const wordHigh = i8x16.splat(0x7f);
  const spaceByte = i8x16.splat(0x20);
  const tabByte = i8x16.splat(9);
  const controlSpan = i8x16.splat(5);
  const newlineByte = i8x16.splat(0x0a);
  let lines: u32 = 0;
  let words: u32 = 0;
  for (let at = pointer; at < blockEnd; at += 16) {
    const bytes = v128.load(at);
    // Signed compares: 0x80-0xff are negative, so they fall outside 0x21-0x7e as they should.
    const word = <u32>i8x16.bitmask(v128.and(i8x16.gt_s(bytes, wordLow), i8x16.lt_s(bytes, wordHigh)));
    const space = <u32>i8x16.bitmask(v128.or(i8x16.eq(bytes, spaceByte), i8x16.lt_u(i8x16.sub(bytes, tabByte), controlSpan)));
    // "In a word" after each byte: set by word bytes, cleared by whitespace, carried through the other
    // bytes. Adding a seed bit at the start of a run of carried bytes clears that run (the carry runs
    // through it), so the cleared bits are the ones the state carries into.
    const carried = ~(word | space) & 0xffff;
    const seeded = ((word << 1) | inWord) & carried;
    const state = word | (carried & ~(carried + seeded));
    lines += <u32>popcnt(i8x16.bitmask(i8x16.eq(bytes, newlineByte)));
    words += <u32>popcnt(word & ~((state << 1) | inWord));
    inWord = (state >> 15) & 1;
  }
  countedLines += lines;
  countedWords += words;
  countBytes(blockEnd, end, inWord);
  const first = edgeClass(0, <isize>length, 1, pointer);
  const last = edgeClass(<isize>length - 1, -1, -1, pointer);
  countedEdges = <u32>(first == CLASS_WORD) | (<u32>(last == CLASS_WORD) << 1) | (<u32>(first == CLASS_PASS_OVER) << 2);
}
