/**
 * Line and word counts of a chunk, as `wc -l -w` counts them in the C locale (GNU coreutils 9.1,
 * checked byte by byte): a line is a "\n"; a word starts at a printable byte other than space
 * (0x21-0x7e) when not already in a word, and ends at whitespace (space, \t, \n, \v, \f, \r). Every
 * other byte (controls, NUL, 0x7f-0xff) neither starts nor ends a word: `printf 'a\0b' | wc -w` is 1,
 * `printf '\1 \1' | wc -w` is 0. Counted on the codec thread beside the coding, in one pass.
 *
 * A word cut by a chunk boundary is counted in both chunks; each chunk records whether its first and
 * last significant bytes (word or whitespace) are word bytes, so joining chunks in order subtracts one
 * where a word runs across a boundary. A chunk without significant bytes passes the state through.
 */

export interface TextCounts {
  lines: number;
  words: number;
  /** The first significant byte is a word byte. */
  startsInWord: boolean;
  /** The last significant byte is a word byte. */
  endsInWord: boolean;
  /** No byte is significant (empty, or only bytes wc passes over): a word may run through the chunk. */
  transparent: boolean;
}

const passOver = 0;
const space = 1;
const wordByte = 2;

/** Each byte's class in the C locale. */
const classes = new Uint8Array(256);
for (let byte = 0x21; byte <= 0x7e; byte++) classes[byte] = wordByte;
for (const byte of [0x20, 0x09, 0x0a, 0x0b, 0x0c, 0x0d]) classes[byte] = space;

/** One pass over `data`. */
export function countText(data: Uint8Array): TextCounts {
  let lines = 0;
  let words = 0;
  let inWord = 0;
  let first = passOver;
  let last = passOver;
  const length = data.length;
  for (let i = 0; i < length; i++) {
    const byte = data[i];
    const kind = classes[byte];
    if (kind === wordByte) {
      words += inWord ^ 1;
      inWord = 1;
      last = wordByte;
    } else if (kind === space) {
      inWord = 0;
      last = space;
      lines += byte === 0x0a ? 1 : 0;
    }
    if (first === passOver) first = kind;
  }
  return { lines, words, startsInWord: first === wordByte, endsInWord: last === wordByte, transparent: first === passOver };
}

/** The counts of chunks joined in order: a word running across a boundary is one word, not two. */
export function joinTextCounts(parts: readonly TextCounts[]): { lines: number; words: number } {
  let lines = 0;
  let words = 0;
  let inWord = false;
  for (const part of parts) {
    lines += part.lines;
    words += part.words;
    if (part.transparent) continue;
    if (inWord && part.startsInWord) words--;
    inWord = part.endsInWord;
  }
  return { lines, words };
}
