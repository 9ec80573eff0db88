// Constants of the kernel frame format (docs/KERNEL.md) and the fixed memory regions of the kernel.
// Every table lives at a static address so the hot loops address it with constant offsets and nothing
// is allocated after start-up.

/** Bits of a decode-table index; also the longest code the format allows. */
export const TABLE_LOG: u32 = 11;
export const TABLE_SIZE: u32 = 1 << TABLE_LOG;
export const TABLE_MASK: u32 = TABLE_SIZE - 1;

export const SYMBOL_COUNT: u32 = 256;
export const BLOCK_BYTES_MAX: u32 = 128 * 1024;
/** Granularity of the adaptive block splitter: blocks are whole runs of sub-blocks. */
export const SUB_BLOCK_BYTES: u32 = 8 * 1024;
export const CHUNK_BYTES_MAX: u32 = 64 * 1024 * 1024;

export const FRAME_VERSION: u8 = 1;
export const FRAME_HEADER_BYTES: u32 = 5;
export const BLOCK_HEADER_BYTES: u32 = 3;
export const STREAM_COUNT: u32 = 4;
export const STREAM_SIZES_BYTES: u32 = 2 * STREAM_COUNT;

export const BLOCK_RAW: u32 = 0;
export const BLOCK_RLE: u32 = 1;
export const BLOCK_HUFFMAN: u32 = 2;
export const BLOCK_REPEAT: u32 = 3;

/** Zeroed bytes after every buffer, so 8-byte loads and stores near an end stay inside the buffer. */
export const BUFFER_SLACK_BYTES: u32 = 16;

// Encoder regions.
/** Eight histograms of u16 counters side by side, so consecutive bytes increment different counters. */
export const COUNT_LANE_COUNT: usize = 8;
export const COUNT_LANE_BYTES: usize = SYMBOL_COUNT * 2;
export const COUNT_LANES: usize = memory.data(<i32>(COUNT_LANE_COUNT * COUNT_LANE_BYTES), 64);
export const SUB_HISTOGRAM: usize = memory.data(SYMBOL_COUNT * 4, 64);
export const BLOCK_HISTOGRAM: usize = memory.data(SYMBOL_COUNT * 4, 64);
/** Code lengths of the block being coded (u8 per symbol). */
export const LENGTHS: usize = memory.data(SYMBOL_COUNT, 64);
/** Lengths of the frame's current table: the last Huffman block's, which a repeat block reuses. */
export const TABLE_LENGTHS: usize = memory.data(SYMBOL_COUNT, 64);
/** Encoder codes of the current table, bit-reversed (u16 per symbol); their lengths are TABLE_LENGTHS. */
export const CODES: usize = memory.data(SYMBOL_COUNT * 2, 64);
/** CODES widened to u32, and 2^length per symbol, for building the pair tables with SIMD. */
export const CODES_WIDE: usize = memory.data(SYMBOL_COUNT * 4, 64);
export const LENGTH_POWERS: usize = memory.data(SYMBOL_COUNT * 4, 64);
/** Codes of byte pairs (u32, indexed by the pair as a little-endian u16) and their lengths (u8). */
export const PAIR_CODES: usize = memory.data(SYMBOL_COUNT * SYMBOL_COUNT * 4, 64);
export const PAIR_LENGTHS: usize = memory.data(SYMBOL_COUNT * SYMBOL_COUNT, 64);
/** The description of LENGTHS, made before the block's kind is chosen: top byte, up to 7 bits per symbol. */
export const TABLE_DESCRIPTION: usize = memory.data(1 + SYMBOL_COUNT + 16, 64);
/** Codes of the table description by change of length + TABLE_LOG (see lengthChangeCode). */
export const LENGTH_CHANGE_CODES: usize = memory.data((2 * TABLE_LOG + 1) * 4, 64);
/** Sort keys (count << 8 | symbol) and tree workspace of the code-length builder. */
export const SORT_KEYS: usize = memory.data(SYMBOL_COUNT * 4, 64);
export const SORT_SPARE: usize = memory.data(SYMBOL_COUNT * 4, 64);
export const RADIX_BUCKETS: usize = memory.data(256 * 4, 64);
export const TREE: usize = memory.data(SYMBOL_COUNT * 4, 64);
/** Number of codes of each length, 0..63 (u32 each). */
export const LENGTH_COUNTS: usize = memory.data(64 * 4, 64);
export const NEXT_CODES: usize = memory.data(16 * 4, 64);
/** log2(i) in 16.16 fixed point for i < 2^LOG2_TABLE_BITS, for the splitter's cost estimate. */
export const LOG2_TABLE_BITS: u32 = 12;
export const LOG2_TABLE: usize = memory.data((1 << LOG2_TABLE_BITS) * 4, 64);
/** Bit reversal of a byte. */
export const REVERSE_BYTE: usize = memory.data(256, 64);

// Decoder regions.
export const DECODE_LENGTHS: usize = memory.data(SYMBOL_COUNT, 64);
/** How to read a table description entry, by its next 7 bits (see initLengthChangeParse). */
export const LENGTH_CHANGE_PARSE: usize = memory.data(128 * 4, 64);
/** Symbols ordered by (code length, symbol): the order canonical codes are assigned in. */
export const DECODE_ORDER: usize = memory.data(SYMBOL_COUNT, 64);
export const DECODE_OFFSETS: usize = memory.data(16 * 4, 64);
/** Reversed canonical code of each symbol of DECODE_ORDER (u16). */
export const DECODE_REVERSED: usize = memory.data(SYMBOL_COUNT * 2, 64);
/** What the bits after a first code of one length decode to, as a partial two-symbol entry (u32). */
export const DECODE_PAIRS: usize = memory.data(TABLE_SIZE * 4, 64);
/** One symbol per lookup: symbol in the low byte, code length in the high byte (u16 entries). */
export const DECODE_X1: usize = memory.data(TABLE_SIZE * 2, 64);
/**
 * Up to two symbols per lookup (u32 entries): first symbol in byte 0, second in byte 1, bits used by
 * both in byte 2, number of symbols (1 or 2) in byte 3.
 */
export const DECODE_X2: usize = memory.data(TABLE_SIZE * 4, 64);
