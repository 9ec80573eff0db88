// Histograms, length-limited Huffman code lengths and canonical code assignment.

import {
  COUNT_LANES, LENGTH_COUNTS, LOG2_TABLE, LOG2_TABLE_BITS, NEXT_CODES, REVERSE_BYTE, SORT_KEYS,
  SYMBOL_COUNT, TABLE_LOG, TREE,
} from './layout';

/** Fills the constant tables; called once when the module starts. */
export function initTables(): void {
  for (let i: u32 = 0; i < 256; i++) {
    let reversed: u32 = 0;
    for (let bit: u32 = 0; bit < 8; bit++) reversed |= ((i >> bit) & 1) << (7 - bit);
    store<u8>(REVERSE_BYTE + i, <u8>reversed);
  }
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

// @ts-ignore: decorator
@inline function increment(address: usize): void {
  store<u32>(address, load<u32>(address) + 1);
}

/** Counts the bytes of [source, source + length) into `histogram` (256 u32). */
export function histogram(source: usize, length: u32, histogram: usize): void {
  memory.fill(COUNT_LANES, 0, 4 * SYMBOL_COUNT * 4);
  let cursor = source;
  const end8 = source + (length & ~7);
  // Eight bytes per load, spread over four count tables, so increments of equal bytes do not wait
  // for each other's store.
  while (cursor < end8) {
    const word = load<u64>(cursor);
    const low = <u32>word;
    const high = <u32>(word >> 32);
    increment(COUNT_LANES + ((low & 255) << 2));
    increment(COUNT_LANES + 1024 + (((low >> 8) & 255) << 2));
    increment(COUNT_LANES + 2048 + (((low >> 16) & 255) << 2));
    increment(COUNT_LANES + 3072 + ((low >> 24) << 2));
    increment(COUNT_LANES + ((high & 255) << 2));
    increment(COUNT_LANES + 1024 + (((high >> 8) & 255) << 2));
    increment(COUNT_LANES + 2048 + (((high >> 16) & 255) << 2));
    increment(COUNT_LANES + 3072 + ((high >> 24) << 2));
    cursor += 8;
  }
  const end = source + length;
  while (cursor < end) {
    increment(COUNT_LANES + (<usize>load<u8>(cursor) << 2));
    cursor++;
  }
  for (let offset: usize = 0; offset < SYMBOL_COUNT * 4; offset += 4) {
    const sum = load<u32>(COUNT_LANES + offset) + load<u32>(COUNT_LANES + offset, 1024)
      + load<u32>(COUNT_LANES + offset, 2048) + load<u32>(COUNT_LANES + offset, 3072);
    store<u32>(histogram + offset, sum);
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
  for (let offset: usize = 0; offset < SYMBOL_COUNT * 4; offset += 4) {
    sum += countLogCount(load<u32>(histogram + offset));
  }
  return sum;
}

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

/** The highest symbol with a nonzero count, or -1 for an empty histogram. */
export function maxSymbol(histogram: usize): i32 {
  let symbol: i32 = SYMBOL_COUNT - 1;
  while (symbol >= 0 && load<u32>(histogram + (<usize>symbol << 2)) == 0) symbol--;
  return symbol;
}

/**
 * Computes code lengths (at most TABLE_LOG bits, Kraft sum exactly 1) for the symbols of `histogram`
 * into `lengths` (u8 per symbol; 0 = absent). Returns the number of symbols present; for fewer than 2
 * no lengths are assigned.
 */
export function buildLengths(histogram: usize, lengths: usize): u32 {
  memory.fill(lengths, 0, SYMBOL_COUNT);
  let present: u32 = 0;
  for (let symbol: u32 = 0; symbol < SYMBOL_COUNT; symbol++) {
    const count = load<u32>(histogram + (<usize>symbol << 2));
    if (count != 0) {
      store<u32>(SORT_KEYS + (<usize>present << 2), (count << 8) | symbol);
      present++;
    }
  }
  if (present < 2) return present;
  sortKeys(present);
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

/** Sorts SORT_KEYS[0..n) ascending: counts ascending, ties by symbol (keys are distinct). */
function sortKeys(n: u32): void {
  // Shell sort with a short gap sequence: at most 256 keys, no workspace.
  for (let gapIndex = 0; gapIndex < 4; gapIndex++) {
    const gap: u32 = gapIndex == 0 ? 57 : gapIndex == 1 ? 23 : gapIndex == 2 ? 4 : 1;
    for (let i: u32 = gap; i < n; i++) {
      const key = load<u32>(SORT_KEYS + (<usize>i << 2));
      let j = i;
      while (j >= gap) {
        const previous = load<u32>(SORT_KEYS + (<usize>(j - gap) << 2));
        if (previous <= key) break;
        store<u32>(SORT_KEYS + (<usize>j << 2), previous);
        j -= gap;
      }
      store<u32>(SORT_KEYS + (<usize>j << 2), key);
    }
  }
}

/**
 * In-place minimum-redundancy code lengths (Moffat & Katajainen, 1995): `weights` holds n >= 2
 * ascending weights and ends up holding each leaf's depth, deepest first.
 */
function minimumRedundancyDepths(weights: usize, n: u32): void {
  // First pass, left to right: combine the two lightest of leaves and internal nodes; internal node
  // `next` takes slot `next`, and a consumed internal node's slot keeps a pointer to its parent.
  store<u32>(weights, load<u32>(weights) + load<u32>(weights, 4));
  let root: u32 = 0;
  let leaf: u32 = 2;
  for (let next: u32 = 1; next < n - 1; next++) {
    const at = weights + (<usize>next << 2);
    if (leaf >= n || load<u32>(weights + (<usize>root << 2)) < load<u32>(weights + (<usize>leaf << 2))) {
      store<u32>(at, load<u32>(weights + (<usize>root << 2)));
      store<u32>(weights + (<usize>root << 2), next);
      root++;
    } else {
      store<u32>(at, load<u32>(weights + (<usize>leaf << 2)));
      leaf++;
    }
    if (leaf >= n || (root < next && load<u32>(weights + (<usize>root << 2)) < load<u32>(weights + (<usize>leaf << 2)))) {
      store<u32>(at, load<u32>(at) + load<u32>(weights + (<usize>root << 2)));
      store<u32>(weights + (<usize>root << 2), next);
      root++;
    } else {
      store<u32>(at, load<u32>(at) + load<u32>(weights + (<usize>leaf << 2)));
      leaf++;
    }
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

/** Encoder codes from `lengths` into `codes`: bit-reversed code | length << 16. */
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
      entry = reverseBits(code, length) | (length << 16);
    }
    store<u32>(codes + (<usize>symbol << 2), entry);
  }
}
