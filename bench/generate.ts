/**
 * Seeded generator of structured records (stock ticks, IoT readings, web-server logs) from a schema
 * file, as CSV or JSON lines, of a requested size. The same schema, seed, format and size always give
 * the same bytes.
 *
 *   node bench/generate.ts --schema bench/schemas/iot.json --size 100MB --format csv --seed 1 -o out.csv
 *   npm run bench:generate -- --schema bench/schemas/weblog.json --size 64MiB --format jsonl -o out.jsonl
 *
 * Size: the output is the longest run of whole records (CSV: after its header line) that fits in the
 * requested size, so it falls short by less than one record. Sizes take KB/MB/GB (10^3, 10^6, 10^9) or
 * KiB/MiB/GiB (2^10, 2^20, 2^30).
 *
 * Schema (JSON): { "name", "description", "fields": [ { "name", "type", ...options } ] }. Field types:
 * - timestamp: start (ISO), stepMs [min, max] between records, format "iso" | "epoch_ms"
 * - integer / number: min, max, distribution "uniform" | "log" (log-uniform, for sizes and latencies);
 *   number also takes decimals
 * - walk: a random walk, one per value of the field named by "by" (e.g. a price per symbol): start
 *   [min, max], step (largest absolute move) or stepRelative (largest move as a fraction), min, max, decimals
 * - offset: the value of an earlier numeric field "of" plus uniform [min, max], decimals (bid = price - spread)
 * - choice: values (strings or numbers), weights (numbers, or "zipf")
 * - id: prefix + a number 1..count, zero-padded to digits; skew "uniform" | "zipf"
 * - ipv4: addresses from a pool of count hosts; skew "uniform" | "zipf"
 * - uuid: a random version-4 UUID
 * - template: values with placeholders {int:MIN:MAX} and {hex:N}, weights as for choice
 */

import { closeSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import * as z from 'zod';
import { seededRandom } from '../tools/data.ts';

export const recordFormats = ['csv', 'jsonl'] as const;
export type RecordFormat = (typeof recordFormats)[number];

/** A schema field's values are at most this long, so a record stays far below any block size. */
const valueLengthMax = 4096;
/** Pools (ids, addresses, zipf tables) are built up front; this bounds their memory. */
const poolSizeMax = 1_000_000;
/** Output is handed to the writer in blocks of about this many bytes. */
const blockBytes = 1 << 20;

// ---- Schema ------------------------------------------------------------------------------------

const fieldName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'a field name of letters, digits and "_" (1 to 64)');
const range = z.tuple([z.number(), z.number()]).refine(([low, high]) => low <= high, 'a range [min, max] with min <= max');
const decimals = z.number().int().min(0).max(12).default(0);
const distribution = z.enum(['uniform', 'log']).default('uniform');
const skew = z.enum(['uniform', 'zipf']).default('uniform');
const weights = z.union([z.array(z.number().nonnegative()), z.literal('zipf')]).optional();
const poolSize = z.number().int().min(1).max(poolSizeMax);

const fieldSchema = z.discriminatedUnion('type', [
  z.object({ name: fieldName, type: z.literal('timestamp'), start: z.iso.datetime({ offset: true }), stepMs: range, format: z.enum(['iso', 'epoch_ms']).default('iso') }),
  z.object({ name: fieldName, type: z.literal('integer'), min: z.number().int(), max: z.number().int(), distribution }),
  z.object({ name: fieldName, type: z.literal('number'), min: z.number(), max: z.number(), decimals, distribution }),
  z.object({
    name: fieldName,
    type: z.literal('walk'),
    by: fieldName.optional(),
    start: range,
    step: z.number().nonnegative().optional(),
    stepRelative: z.number().nonnegative().max(1).optional(),
    min: z.number(),
    max: z.number(),
    decimals,
  }),
  z.object({ name: fieldName, type: z.literal('offset'), of: fieldName, min: z.number(), max: z.number(), decimals }),
  z.object({ name: fieldName, type: z.literal('choice'), values: z.array(z.union([z.string().max(valueLengthMax), z.number()])).min(1).max(poolSizeMax), weights }),
  z.object({ name: fieldName, type: z.literal('id'), prefix: z.string().max(64).default(''), count: poolSize, digits: z.number().int().min(0).max(20).default(0), skew }),
  z.object({ name: fieldName, type: z.literal('ipv4'), count: poolSize, skew }),
  z.object({ name: fieldName, type: z.literal('uuid') }),
  z.object({ name: fieldName, type: z.literal('template'), values: z.array(z.string().max(valueLengthMax)).min(1).max(poolSizeMax), weights }),
]);

export const recordSchemaSchema = z.object({
  name: fieldName,
  description: z.string().max(1000).default(''),
  fields: z.array(fieldSchema).min(1).max(256),
});

export type RecordSchema = z.infer<typeof recordSchemaSchema>;
type Field = z.infer<typeof fieldSchema>;

export class SchemaError extends Error {
  constructor(source: string, problem: string) {
    super(`${source}: ${problem}`);
    this.name = 'SchemaError';
  }
}

/** Validates a schema document: shapes here, cross-field rules (references, ranges, weights) below. */
export function parseRecordSchema(document: unknown, source: string): RecordSchema {
  const result = recordSchemaSchema.safeParse(document);
  if (!result.success) {
    const issue = result.error.issues[0];
    throw new SchemaError(source, `${issue.path.join('.') || '(document)'}: ${issue.message}`);
  }
  const schema = result.data;
  const seen = new Map<string, Field>();
  schema.fields.forEach((field, index) => {
    const where = `fields.${index} (${field.name})`;
    const fail = (problem: string): never => {
      throw new SchemaError(source, `${where}: ${problem}`);
    };
    if (seen.has(field.name)) fail('a field of this name comes earlier');
    if ((field.type === 'integer' || field.type === 'number' || field.type === 'walk' || field.type === 'offset') && field.min > field.max) fail('min is above max');
    if ((field.type === 'integer' || field.type === 'number') && field.distribution === 'log' && field.min <= 0) fail('a log distribution needs min > 0');
    if (field.type === 'walk') {
      if (field.by !== undefined && !seen.has(field.by)) fail(`"by" names ${field.by}, which is not an earlier field`);
      if ((field.step === undefined) === (field.stepRelative === undefined)) fail('give exactly one of step and stepRelative');
      if (field.start[0] < field.min || field.start[1] > field.max) fail('start lies outside [min, max]');
    }
    if (field.type === 'offset') {
      const base = seen.get(field.of);
      if (base === undefined) fail(`"of" names ${field.of}, which is not an earlier field`);
      else if (!['integer', 'number', 'walk', 'offset'].includes(base.type)) fail(`"of" names ${field.of}, which is not numeric`);
    }
    if ((field.type === 'choice' || field.type === 'template') && Array.isArray(field.weights)) {
      if (field.weights.length !== field.values.length) fail(`${field.weights.length} weights for ${field.values.length} values`);
      if (!field.weights.some((weight) => weight > 0)) fail('every weight is zero');
    }
    seen.set(field.name, field);
  });
  return schema;
}

export function loadRecordSchema(path: string): RecordSchema {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new SchemaError(path, `cannot read: ${(error as Error).message}`);
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch (error) {
    throw new SchemaError(path, `not JSON: ${(error as Error).message}`);
  }
  return parseRecordSchema(document, path);
}

/** The schemas committed beside this file, by name (iot, stocks, weblog). */
export function builtInSchemaPath(name: string): string {
  return fileURLToPath(new URL(`./schemas/${name}.json`, import.meta.url));
}

// ---- Randomness ----------------------------------------------------------------------------------

/** Picks indexes 0..n-1 in proportion to weights, by binary search over the cumulative sums. */
function weightedPicker(weightList: number[], random: () => number): () => number {
  const cumulative = new Float64Array(weightList.length);
  let total = 0;
  weightList.forEach((weight, index) => {
    total += weight;
    cumulative[index] = total;
  });
  return () => {
    const target = random() * total;
    let low = 0;
    let high = cumulative.length - 1;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (cumulative[middle] > target) high = middle;
      else low = middle + 1;
    }
    return low;
  };
}

function picker(count: number, weighting: 'uniform' | 'zipf' | number[] | undefined, random: () => number): () => number {
  if (weighting === undefined || weighting === 'uniform') return () => Math.floor(random() * count);
  const weightList = weighting === 'zipf' ? Array.from({ length: count }, (_, rank) => 1 / (rank + 1)) : weighting;
  return weightedPicker(weightList, random);
}

// ---- Records -------------------------------------------------------------------------------------

/** One field's next value: its text, and whether JSON writes it as a string (else as a number). */
interface FieldSource {
  name: string;
  quoted: boolean;
  next(values: string[], numbers: number[]): { text: string; number: number };
}

function uniformIn(random: () => number, min: number, max: number, log: boolean): number {
  if (log) return Math.exp(Math.log(min) + random() * (Math.log(max) - Math.log(min)));
  return min + random() * (max - min);
}

function fieldSource(field: Field, fields: Field[], random: () => number): FieldSource {
  const indexOf = (name: string) => fields.findIndex((candidate) => candidate.name === name);
  const numeric = (value: number, places: number) => ({ text: value.toFixed(places), number: value });
  const textual = (text: string) => ({ text, number: NaN });
  switch (field.type) {
    case 'timestamp': {
      let time = Date.parse(field.start);
      const [stepMin, stepMax] = field.stepMs;
      return {
        name: field.name,
        quoted: field.format === 'iso',
        next() {
          time += Math.round(stepMin + random() * (stepMax - stepMin));
          return field.format === 'iso' ? textual(new Date(time).toISOString()) : numeric(time, 0);
        },
      };
    }
    case 'integer':
      return {
        name: field.name,
        quoted: false,
        next: () => numeric(Math.min(field.max, Math.floor(uniformIn(random, field.min, field.max + 1, field.distribution === 'log'))), 0),
      };
    case 'number':
      return { name: field.name, quoted: false, next: () => numeric(uniformIn(random, field.min, field.max, field.distribution === 'log'), field.decimals) };
    case 'walk': {
      const key = field.by === undefined ? -1 : indexOf(field.by);
      const positions = new Map<string, number>();
      return {
        name: field.name,
        quoted: false,
        next(values) {
          const walker = key < 0 ? '' : values[key];
          let position = positions.get(walker) ?? field.start[0] + random() * (field.start[1] - field.start[0]);
          const stepMax = field.step ?? Math.abs(position) * (field.stepRelative ?? 0);
          position = Math.min(field.max, Math.max(field.min, position + (random() * 2 - 1) * stepMax));
          positions.set(walker, position);
          return numeric(position, field.decimals);
        },
      };
    }
    case 'offset': {
      const base = indexOf(field.of);
      return { name: field.name, quoted: false, next: (_values, numbers) => numeric(numbers[base] + field.min + random() * (field.max - field.min), field.decimals) };
    }
    case 'choice': {
      const pick = picker(field.values.length, field.weights, random);
      const quoted = field.values.some((value) => typeof value === 'string');
      const texts = field.values.map(String);
      return { name: field.name, quoted, next: () => ({ text: texts[pick()], number: NaN }) };
    }
    case 'id': {
      const pick = picker(field.count, field.skew, random);
      return { name: field.name, quoted: true, next: () => textual(`${field.prefix}${String(pick() + 1).padStart(field.digits, '0')}`) };
    }
    case 'ipv4': {
      const pool = Array.from({ length: field.count }, () => {
        const address = Math.floor(random() * 0x100000000);
        return `${(address >>> 24) % 223 + 1}.${(address >>> 16) & 255}.${(address >>> 8) & 255}.${(address & 255) || 1}`;
      });
      const pick = picker(field.count, field.skew, random);
      return { name: field.name, quoted: true, next: () => textual(pool[pick()]) };
    }
    case 'uuid':
      return { name: field.name, quoted: true, next: () => textual(uuid(random)) };
    case 'template': {
      const pick = picker(field.values.length, field.weights, random);
      const parts = field.values.map(parseTemplate);
      return { name: field.name, quoted: true, next: () => textual(renderTemplate(parts[pick()], random)) };
    }
  }
}

const hexDigits = '0123456789abcdef';

function hex(random: () => number, length: number): string {
  let text = '';
  for (let i = 0; i < length; i++) text += hexDigits[Math.floor(random() * 16)];
  return text;
}

function uuid(random: () => number): string {
  const variant = hexDigits[8 + Math.floor(random() * 4)];
  return `${hex(random, 8)}-${hex(random, 4)}-4${hex(random, 3)}-${variant}${hex(random, 3)}-${hex(random, 12)}`;
}

type TemplatePart = string | { kind: 'int'; min: number; max: number } | { kind: 'hex'; length: number };

function parseTemplate(template: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  const placeholder = /\{(int):(-?\d+):(-?\d+)\}|\{(hex):(\d{1,3})\}/g;
  let at = 0;
  for (const match of template.matchAll(placeholder)) {
    if (match.index > at) parts.push(template.slice(at, match.index));
    if (match[1] === 'int') parts.push({ kind: 'int', min: Number(match[2]), max: Number(match[3]) });
    else parts.push({ kind: 'hex', length: Number(match[5]) });
    at = match.index + match[0].length;
  }
  if (at < template.length) parts.push(template.slice(at));
  return parts;
}

function renderTemplate(parts: TemplatePart[], random: () => number): string {
  let text = '';
  for (const part of parts) {
    if (typeof part === 'string') text += part;
    else if (part.kind === 'int') text += String(part.min + Math.floor(random() * (part.max - part.min + 1)));
    else text += hex(random, part.length);
  }
  return text;
}

function csvCell(text: string): string {
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

export interface RecordSource {
  /** Written once before the records (CSV: the header line with its newline; JSON lines: empty). */
  header: string;
  /** The next record, newline included. */
  next(): string;
}

/** An endless stream of records. All randomness comes from `seed`, drawn in a fixed order. */
export function recordSource(schema: RecordSchema, format: RecordFormat, seed: number): RecordSource {
  const random = seededRandom(seed);
  const sources = schema.fields.map((field) => fieldSource(field, schema.fields, random));
  const keys = sources.map((source) => `${JSON.stringify(source.name)}:`);
  const values: string[] = new Array(sources.length);
  const numbers: number[] = new Array(sources.length);
  const header = format === 'csv' ? `${sources.map((source) => csvCell(source.name)).join(',')}\n` : '';
  return {
    header,
    next() {
      for (let index = 0; index < sources.length; index++) {
        const value = sources[index].next(values, numbers);
        values[index] = value.text;
        numbers[index] = value.number;
      }
      if (format === 'csv') return `${values.map(csvCell).join(',')}\n`;
      let line = '{';
      for (let index = 0; index < sources.length; index++) {
        if (index > 0) line += ',';
        line += keys[index] + (sources[index].quoted ? JSON.stringify(values[index]) : values[index]);
      }
      return `${line}}\n`;
    },
  };
}

export interface GenerateOptions {
  format: RecordFormat;
  seed: number;
  /** The output is at most this many bytes and less than one record short of it. */
  sizeBytes: number;
}

export interface GenerateResult {
  bytes: number;
  records: number;
}

/**
 * Writes records to `write` in blocks of about 1 MiB until the next record would pass the size.
 * Records are checked to be ASCII-sized as they are counted, so the byte count is exact.
 */
export function generateRecords(schema: RecordSchema, options: GenerateOptions, write: (block: string) => void): GenerateResult {
  if (!Number.isSafeInteger(options.sizeBytes) || options.sizeBytes < 0) throw new RangeError(`size: expected a whole number of bytes, got ${options.sizeBytes}`);
  const source = recordSource(schema, options.format, options.seed);
  let block = source.header;
  let bytes = Buffer.byteLength(block);
  if (bytes > options.sizeBytes) return { bytes: 0, records: 0 };
  let records = 0;
  for (;;) {
    const record = source.next();
    const recordBytes = Buffer.byteLength(record);
    if (bytes + recordBytes > options.sizeBytes) break;
    block += record;
    bytes += recordBytes;
    records++;
    if (block.length >= blockBytes) {
      write(block);
      block = '';
    }
  }
  if (block.length > 0) write(block);
  return { bytes, records };
}

/** The records as one buffer (for data sets that fit in memory). */
export function generateBuffer(schema: RecordSchema, options: GenerateOptions): Buffer {
  const blocks: Buffer[] = [];
  generateRecords(schema, options, (block) => blocks.push(Buffer.from(block)));
  const buffer = Buffer.concat(blocks);
  if (buffer.length > options.sizeBytes) throw new Error(`generator wrote ${buffer.length} bytes for a size of ${options.sizeBytes}`);
  return buffer;
}

/** Streams the records into `path` through a temporary file moved into place when complete. */
export function generateFile(schema: RecordSchema, options: GenerateOptions, path: string): GenerateResult {
  const partial = `${path}.partial-${process.pid}`;
  const descriptor = openSync(partial, 'w');
  let result: GenerateResult;
  try {
    result = generateRecords(schema, options, (block) => writeSync(descriptor, block));
  } finally {
    closeSync(descriptor);
  }
  renameSync(partial, path);
  return result;
}

const sizeUnits: Record<string, number> = { '': 1, B: 1, KB: 1e3, MB: 1e6, GB: 1e9, KIB: 1024, MIB: 1024 ** 2, GIB: 1024 ** 3, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

/** "100MB" → 100_000_000, "64MiB" → 67_108_864, "512" → 512. */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(text);
  const unit = match === null ? undefined : sizeUnits[match[2].toUpperCase()];
  if (match === null || unit === undefined) throw new RangeError(`size ${JSON.stringify(text)}: expected a number with an optional unit (B, KB, MB, GB, KiB, MiB, GiB)`);
  return Math.round(Number(match[1]) * unit);
}

// ---- CLI -----------------------------------------------------------------------------------------

const usage = 'usage: node bench/generate.ts --schema FILE|iot|stocks|weblog --size SIZE [--format csv|jsonl] [--seed N] -o OUT';

function main(argv: string[]): void {
  const { values } = parseArgs({
    args: argv,
    options: {
      schema: { type: 'string' },
      size: { type: 'string' },
      format: { type: 'string', default: 'csv' },
      seed: { type: 'string', default: '1' },
      output: { type: 'string', short: 'o' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(usage);
    return;
  }
  if (values.schema === undefined || values.size === undefined || values.output === undefined) {
    console.error(usage);
    process.exitCode = 2;
    return;
  }
  const format = values.format as RecordFormat;
  const seed = Number(values.seed);
  try {
    if (!recordFormats.includes(format)) throw new RangeError(`--format ${values.format}: expected csv or jsonl`);
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new RangeError(`--seed ${values.seed}: expected an integer from 0 to 4294967295`);
    const schemaPath = /^[a-z]+$/.test(values.schema) ? builtInSchemaPath(values.schema) : values.schema;
    const schema = loadRecordSchema(schemaPath);
    const started = performance.now();
    const result = generateFile(schema, { format, seed, sizeBytes: parseSize(values.size) }, values.output);
    const seconds = (performance.now() - started) / 1000;
    console.log(`${values.output}: ${result.records} ${schema.name} records, ${result.bytes} bytes (${format}, seed ${seed}) in ${seconds.toFixed(1)} s`);
  } catch (error) {
    console.error(`generate: ${(error as Error).message}`);
    process.exitCode = error instanceof SchemaError ? 1 : 2;
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) main(process.argv.slice(2));
