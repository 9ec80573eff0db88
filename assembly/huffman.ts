// Histograms, length-limited Huffman code lengths and canonical code assignment.

import {
  COUNT_LANE_BYTES, COUNT_LANE_COUNT, COUNT_LANES, LENGTH_CHANGE_CODES, LENGTH_CHANGE_PARSE, LENGTH_COUNTS,
  LOG2_TABLE, LOG2_TABLE_BITS, NEXT_CODES, RADIX_BUCKETS, REVERSE_BYTE, SORT_KEYS, SORT_SPARE, SYMBOL_COUNT,
  TABLE_LOG, TREE,
} from './layout';

/** Fills the constant tables; called once when the module starts. */
export function initTables(): void {
  for (let i: u32 = 0; i < 256; i++) {
    let reversed: u32 = 0;
    for (let bit: u32 = 0; bit < 8; bit++) reversed |= ((i >> bit) & 1) << (7 - bit);
    store<u8>(REVERSE_BYTE + i, <u8>reversed);
  }
  initLengthChangeCodes();
  initLengthChangeParse();
  store<u32>(LOG2_TABLE, 0);
  for (let i: u32 = 1; i < (1 << LOG2_TABLE_BITS); i++) {
    store<u32>(LOG2_TABLE + (<usize>i << 2), <u32>Math.round(Math.log2(<f64>i) * 65536.0));
  }
}

/** The low `length` bits of `code`, in reverse order (length <= 16). */
// @ts-ignore: decorator
@inline export function reverseBits(code: u32, length: u32): u32 {
  const reversed16 = (<u32>load<u8>(REVERSE_BYTE + (code & 255)) << 8) | load<u8>(REVERSE_BYTE + ((code >> 8) & 255));
  return reversed16 >> (16 - length);
}

/** Counts the bytes of [source, source + length) into `histogram` (256 u32); length < 65536. */
export function histogram(source: usize, length: u32, histogram: usize): void {
  memory.fill(COUNT_LANES, 0, COUNT_LANE_COUNT * COUNT_LANE_BYTES);
  let cursor = source;
  const end8 = source + (length & ~7);
  // Each of eight consecutive bytes increments its own table (u16 counters), so runs of equal bytes do
  // not wait for each other's store. Byte loads take fewer instructions than extracting bytes from a word.
  while (cursor < end8) {
    let counter: usize;
    counter = <usize>load<u8>(cursor) << 1; store<u16>(counter, load<u16>(counter, COUNT_LANES) + 1, COUNT_LANES);
    counter = <usize>load<u8>(cursor, 1) << 1; store<u16>(counter, load<u16>(counter, COUNT_LANES + 1 * COUNT_LANE_BYTES) + 1, COUNT_LANES + 1 * COUNT_LANE_BYTES);
    counter = <usize>load<u8>(cursor, 2) << 1; store<u16>(counter, load<u16>(counter, COUNT_LANES + 2 * COUNT_LANE_BYTES) + 1, COUNT_LANES + 2 * COUNT_LANE_BYTES);
    counter = <usize>load<u8>(cursor, 3) << 1; store<u16>(counter, load<u16>(counter, COUNT_LANES + 3 * COUNT_LANE_BYTES) + 1, COUNT_LANES + 3 * COUNT_LANE_BYTES);
    counter = <usize>load<u8>(cursor, 4) << 1; store<u16>(counter, load<u16>(counter, COUNT_LANES + 4 * COUNT_LANE_BYTES) + 1, COUNT_LANES + 4 * COUNT_LANE_BYTES);
    counter = <usize>load<u8>(cursor, 5) << 1; store<u16>(counter, load<u16>(counter, COUNT_LANES + 5 * COUNT_LANE_BYTES) + 1, COUNT_LANES + 5 * COUNT_LANE_BYTES);
    counter = <usize>load<u8>(cursor, 6) << 1; store<u16>(counter, load<u16>(counter, COUNT_LANES + 6 * COUNT_LANE_BYTES) + 1, COUNT_LANES + 6 * COUNT_LANE_BYTES);
    counter = <usize>load<u8>(cursor, 7) << 1; store<u16>(counter, load<u16>(counter, COUNT_LANES + 7 * COUNT_LANE_BYTES) + 1, COUNT_LANES + 7 * COUNT_LANE_BYTES);
    cursor += 8;
  }
  const end = source + length;
  while (cursor < end) {
    const counter = <usize>load<u8>(cursor) << 1;
    store<u16>(counter, load<u16>(counter, COUNT_LANES) + 1, COUNT_LANES);
    cursor++;
  }
  // Sum the tables eight counters at a time (no u16 overflow: length < 65536), widened to u32.
  for (let offset: usize = 0; offset < COUNT_LANE_BYTES; offset += 16) {
    let sum = v128.load(COUNT_LANES + offset);
    for (let lane: usize = 1; lane < COUNT_LANE_COUNT; lane++) {
      sum = i16x8.add(sum, v128.load(COUNT_LANES + lane * COUNT_LANE_BYTES + offset));
    }
    v128.store(histogram + (offset << 1), i32x4.extend_low_i16x8_u(sum));
    v128.store(histogram + (offset << 1), i32x4.extend_high_i16x8_u(sum), 16);
  }
}

/** count * log2(count) in 16.16 fixed point. */
// @ts-ignore: decorator
@inline function countLogCount(count: u32): u64 {
  if (count < (1 << LOG2_TABLE_BITS)) return <u64>count * load<u32>(LOG2_TABLE + (<usize>count << 2));
  const shift = (32 - LOG2_TABLE_BITS) - clz<u32>(count);
  const log2 = load<u32>(LOG2_TABLE + (<usize>(count >> shift) << 2)) + (shift << 16);
  return <u64>count * log2;
}

/** Sum of count * log2(count) over a histogram, 16.16 fixed point. */
export function sumCountLogCount(histogram: usize): u64 {
  let sum: u64 = 0;
  let present: u32 = 0;
  for (let offset: usize = 0; offset < SYMBOL_COUNT * 4; offset += 4) {
    const count = load<u32>(histogram + offset);
    sum += countLogCount(count);
    present += <u32>(count != 0);
  }
  presentSymbols = present;
  return sum;
}

/**
 * Symbols with a nonzero count in the histogram of the last sumCountLogCount: a second result of the same
 * pass, kept in a module global because a function returns one value (its sum already) and counting in the
 * caller would walk the 256 counts again for every sub-block. The caller reads it right after the call.
 */
export let presentSymbols: u32 = 0;

/** Like sumCountLogCount of the sum of two histograms. */
export function sumCountLogCountMerged(first: usize, second: usize): u64 {
  let sum: u64 = 0;
  for (let offset: usize = 0; offset < SYMBOL_COUNT * 4; offset += 4) {
    sum += countLogCount(load<u32>(first + offset) + load<u32>(second + offset));
  }
  return sum;
}

/**
 * Entropy bound in bits of `total` symbols whose histogram has the given sum of count*log2(count):
 * total*log2(total) - sum(count*log2(count)).
 */
export function entropyBits(total: u32, sumCountLog: u64): u64 {
  const totalLog = countLogCount(total);
  return totalLog > sumCountLog ? (totalLog - sumCountLog) >> 16 : 0;
}

/**
 * Computes code lengths (at most TABLE_LOG bits, Kraft sum exactly 1) for the symbols of `histogram`
 * into `lengths` (u8 per symbol; 0 = absent). Returns the number of symbols present; for fewer than 2
 * no lengths are assigned.
 */
export function buildLengths(histogram: usize, lengths: usize): u32 {
  memory.fill(lengths, 0, SYMBOL_COUNT);
  let present: u32 = 0;
  let countMax: u32 = 0;
  for (let symbol: u32 = 0; symbol < SYMBOL_COUNT; symbol++) {
    const count = load<u32>(histogram + (<usize>symbol << 2));
    store<u32>(SORT_KEYS + (<usize>present << 2), (count << 8) | symbol);
    present += <u32>(count != 0);
    countMax = max(countMax, count);
  }
  if (present < 2) return present;
  sortKeys(present, countMax);
  for (let i: u32 = 0; i < present; i++) {
    store<u32>(TREE + (<usize>i << 2), load<u32>(SORT_KEYS + (<usize>i << 2)) >> 8);
  }
  minimumRedundancyDepths(TREE, present);
  countDepths(present);
  limitLengths();
  // The least frequent symbols take the longest codes.
  let rank: u32 = 0;
  for (let length: u32 = TABLE_LOG; length >= 1; length--) {
    const count = load<u32>(LENGTH_COUNTS + (<usize>length << 2));
    for (let i: u32 = 0; i < count; i++) {
      const symbol = load<u32>(SORT_KEYS + (<usize>rank << 2)) & 255;
      store<u8>(lengths + symbol, <u8>length);
      rank++;
    }
  }
  return present;
}

/**
 * Sorts SORT_KEYS[0..n) ascending by count (key >> 8), ties in symbol order: an LSD radix sort, one
 * pass per byte of the largest count, because a comparison sort's mispredicted branches cost more.
 */
function sortKeys(n: u32, countMax: u32): void {
  let from = SORT_KEYS;
  let to = SORT_SPARE;
  for (let shift: u32 = 8; shift < 32 && (countMax >> (shift - 8)) != 0; shift += 8) {
    memory.fill(RADIX_BUCKETS, 0, 256 * 4);
    for (let i: u32 = 0; i < n; i++) {
      const bucket = RADIX_BUCKETS + (<usize>((load<u32>(from + (<usize>i << 2)) >> shift) & 255) << 2);
      store<u32>(bucket, load<u32>(bucket) + 1);
    }
    let sum: u32 = 0;
    for (let offset: usize = 0; offset < 256 * 4; offset += 4) {
      const count = load<u32>(RADIX_BUCKETS + offset);
      store<u32>(RADIX_BUCKETS + offset, sum);
      sum += count;
    }
    for (let i: u32 = 0; i < n; i++) {
      const key = load<u32>(from + (<usize>i << 2));
      const bucket = RADIX_BUCKETS + (<usize>((key >> shift) & 255) << 2);
      const rank = load<u32>(bucket);
      store<u32>(bucket, rank + 1);
      store<u32>(to + (<usize>rank << 2), key);
    }
    const swap = from;
    from = to;
    to = swap;
  }
  if (from != SORT_KEYS) memory.copy(SORT_KEYS, from, <usize>n << 2);
}

/**
 * In-place minimum-redundancy code lengths (Moffat & Katajainen, 1995): `weights` holds n >= 2
 * ascending weights and ends up holding each leaf's depth, deepest first.
 */
function minimumRedundancyDepths(weights: usize, n: u32): void {
  // First pass, left to right: combine the two lightest of leaves and internal nodes; internal node
  // `next` takes slot `next`, and a consumed internal node's slot keeps a pointer to its parent. Written
  // with selects rather than branches: the comparisons are unpredictable. A[n] may be read (the slot
  // past the leaves) but is never chosen.
  store<u32>(weights, load<u32>(weights) + load<u32>(weights, 4));
  let root: u32 = 0;
  let leaf: u32 = 2;
  for (let next: u32 = 1; next < n - 1; next++) {
    const at = weights + (<usize>next << 2);
    let rootAt = weights + (<usize>root << 2);
    let rootWeight = load<u32>(rootAt);
    let leafWeight = load<u32>(weights + (<usize>leaf << 2));
    let takeRoot = leaf >= n || rootWeight < leafWeight;
    const first = takeRoot ? rootWeight : leafWeight;
    store<u32>(rootAt, takeRoot ? next : rootWeight);
    root += <u32>takeRoot;
    leaf += <u32>!takeRoot;
    rootAt = weights + (<usize>root << 2);
    rootWeight = load<u32>(rootAt);
    leafWeight = load<u32>(weights + (<usize>leaf << 2));
    takeRoot = leaf >= n || (root < next && rootWeight < leafWeight);
    const second = takeRoot ? rootWeight : leafWeight;
    // A taken root gets its parent pointer; otherwise the slot keeps its weight (or, when root == next,
    // is overwritten by the sum just below).
    store<u32>(rootAt, takeRoot ? next : rootWeight);
    store<u32>(at, first + second);
    root += <u32>takeRoot;
    leaf += <u32>!takeRoot;
  }
  // Second pass, right to left: depth of each internal node from its parent's.
  store<u32>(weights + (<usize>(n - 2) << 2), 0);
  for (let next: i32 = <i32>n - 3; next >= 0; next--) {
    const parent = load<u32>(weights + (<usize>next << 2));
    store<u32>(weights + (<usize>next << 2), load<u32>(weights + (<usize>parent << 2)) + 1);
  }
  // Third pass, right to left: leaf depths from the number of internal nodes at each depth.
  let available: u32 = 1;
  let used: u32 = 0;
  let depth: u32 = 0;
  let rootIndex: i32 = <i32>n - 2;
  let next: i32 = <i32>n - 1;
  while (available > 0) {
    while (rootIndex >= 0 && load<u32>(weights + (<usize>rootIndex << 2)) == depth) {
      used++;
      rootIndex--;
    }
    while (available > used) {
      store<u32>(weights + (<usize>next << 2), depth);
      next--;
      available--;
    }
    available = 2 * used;
    depth++;
    used = 0;
  }
}

/** LENGTH_COUNTS[d] = number of leaves at depth d in TREE[0..n), depths beyond TABLE_LOG clamped. */
function countDepths(n: u32): void {
  memory.fill(LENGTH_COUNTS, 0, 64 * 4);
  for (let i: u32 = 0; i < n; i++) {
    let depth = load<u32>(TREE + (<usize>i << 2));
    if (depth > TABLE_LOG) depth = TABLE_LOG;
    const at = LENGTH_COUNTS + (<usize>depth << 2);
    store<u32>(at, load<u32>(at) + 1);
  }
}

/**
 * Makes the clamped length counts satisfy Kraft with equality again (as zlib and miniz do): each round
 * drops one longest code and splits the deepest shorter code into two, lowering the Kraft sum by one
 * unit of 2^-TABLE_LOG, until it is exactly 1.
 */
function limitLengths(): void {
  let kraft: u32 = 0;
  for (let length: u32 = 1; length <= TABLE_LOG; length++) {
    kraft += load<u32>(LENGTH_COUNTS + (<usize>length << 2)) << (TABLE_LOG - length);
  }
  const full: u32 = 1 << TABLE_LOG;
  while (kraft > full) {
    const longest = LENGTH_COUNTS + (<usize>TABLE_LOG << 2);
    store<u32>(longest, load<u32>(longest) - 1);
    for (let length: u32 = TABLE_LOG - 1; length > 0; length--) {
      const at = LENGTH_COUNTS + (<usize>length << 2);
      const count = load<u32>(at);
      if (count != 0) {
        store<u32>(at, count - 1);
        store<u32>(at + 4, load<u32>(at + 4) + 2);
        break;
      }
    }
    kraft--;
  }
}

/**
 * Canonical codes for `lengths` (deflate's rule: by length, then by symbol, consecutive values):
 * NEXT_CODES[length] becomes the first code of each length. Requires LENGTH_COUNTS of the lengths.
 */
export function firstCodes(): void {
  let code: u32 = 0;
  store<u32>(NEXT_CODES, 0);
  for (let length: u32 = 1; length <= TABLE_LOG; length++) {
    code = (code + (length == 1 ? 0 : load<u32>(LENGTH_COUNTS + (<usize>(length - 1) << 2)))) << 1;
    store<u32>(NEXT_CODES + (<usize>length << 2), code);
  }
}

/** Counts the lengths of `lengths` into LENGTH_COUNTS[0..TABLE_LOG]; returns the Kraft sum in units of 2^-TABLE_LOG. */
export function countLengths(lengths: usize): u32 {
  memory.fill(LENGTH_COUNTS, 0, 64 * 4);
  let kraft: u32 = 0;
  for (let symbol: u32 = 0; symbol < SYMBOL_COUNT; symbol++) {
    const length: u32 = load<u8>(lengths + symbol);
    if (length != 0) {
      const at = LENGTH_COUNTS + (<usize>length << 2);
      store<u32>(at, load<u32>(at) + 1);
      kraft += (1 << TABLE_LOG) >> length;
    }
  }
  return kraft;
}

/** Encoder codes from `lengths` into `codes` (u16 per symbol): each code bit-reversed. */
export function buildEncoderCodes(lengths: usize, codes: usize): void {
  countLengths(lengths);
  firstCodes();
  for (let symbol: u32 = 0; symbol < SYMBOL_COUNT; symbol++) {
    const length: u32 = load<u8>(lengths + symbol);
    let entry: u32 = 0;
    if (length != 0) {
      const at = NEXT_CODES + (<usize>length << 2);
      const code = load<u32>(at);
      store<u32>(at, code + 1);
      entry = reverseBits(code, length);
    }
    store<u16>(codes + (<usize>symbol << 1), <u16>entry);
  }
}

/**
 * The code of a table description for one symbol, going from `previous` to `length`: in its low 16 bits
 * the bits (first bit lowest), in the high 16 bits their number. 0 = same; 1 0 x = one longer (x = 0) or
 * shorter (x = 1); 1 1 0 x = two longer or shorter; 1 1 1 vvvv = the length v itself. Branch-free: the
 * change indexes LENGTH_CHANGE_CODES, whose explicit entries let the length in through a mask.
 */
// @ts-ignore: decorator
@inline export function lengthChangeCode(previous: u32, length: u32): u32 {
  const entry = load<u32>(<usize>(length - previous + TABLE_LOG) << 2, LENGTH_CHANGE_CODES);
  return (entry & 0xffff007f) | ((length << 3) & (entry >> 8) & 0x78);
}

/**
 * LENGTH_CHANGE_PARSE[next 7 bits]: bits used in bits 0..2, 0x80 if the length follows explicitly,
 * else the change as a signed byte in bits 8..15.
 */
function initLengthChangeParse(): void {
  for (let bits: u32 = 0; bits < 128; bits++) {
    let entry: u32;
    if ((bits & 1) == 0) entry = 1;
    else if ((bits & 2) == 0) entry = 3 | ((<u32>((bits & 4) == 0 ? 1 : -1) & 255) << 8);
    else if ((bits & 4) == 0) entry = 4 | ((<u32>((bits & 8) == 0 ? 2 : -2) & 255) << 8);
    else entry = 7 | 0x80;
    store<u32>(<usize>bits << 2, entry, LENGTH_CHANGE_PARSE);
  }
}

function initLengthChangeCodes(): void {
  for (let change: i32 = -(<i32>TABLE_LOG); change <= <i32>TABLE_LOG; change++) {
    let entry: u32 = 7 | (0x78 << 8) | (7 << 16);
    if (change == 0) entry = 1 << 16;
    if (change == 1) entry = 1 | (3 << 16);
    if (change == -1) entry = 5 | (3 << 16);
    if (change == 2) entry = 3 | (4 << 16);
    if (change == -2) entry = 11 | (4 << 16);
    store<u32>(<usize>(change + <i32>TABLE_LOG) << 2, entry, LENGTH_CHANGE_CODES);
  }
}
