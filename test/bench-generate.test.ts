/**
 * The benchmark's record generator: every committed schema loads, output is reproducible from its seed,
 * exactly as large as asked (less than one record short), and well-formed CSV or JSON lines whose
 * columns are the schema's fields; schema mistakes are refused with the field named.
 */

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { builtInSchemaPath, generateBuffer, loadRecordSchema, parseRecordSchema, parseSize, recordFormats, SchemaError, type RecordFormat } from '../bench/generate.ts';
import { withTempDir } from './helpers.ts';

const schemaNames = ['iot', 'stocks', 'weblog'];
const sizeBytes = 200_000;

/** Splits one CSV line into cells (RFC 4180 quoting). */
function csvCells(line: string): string[] {
  const cells: string[] = [];
  let cell = '';
  let quoted = false;
  for (let index = 0; index < line.length; index++) {
    const char = line[index];
    if (quoted) {
      if (char === '"' && line[index + 1] === '"') {
        cell += '"';
        index++;
      } else if (char === '"') quoted = false;
      else cell += char;
    } else if (char === '"') quoted = true;
    else if (char === ',') {
      cells.push(cell);
      cell = '';
    } else cell += char;
  }
  cells.push(cell);
  return cells;
}

function lines(bytes: Uint8Array): string[] {
  const text = Buffer.from(bytes).toString('utf8');
  assert.ok(text.endsWith('\n'), 'output ends with a whole record');
  return text.slice(0, -1).split('\n');
}

for (const name of schemaNames) {
  for (const format of recordFormats) {
    test(`${name} ${format}: the same seed gives the same bytes; another seed gives others`, () => {
      const schema = loadRecordSchema(builtInSchemaPath(name));
      const first = generateBuffer(schema, { format, seed: 7, sizeBytes });
      const again = generateBuffer(schema, { format, seed: 7, sizeBytes });
      const other = generateBuffer(schema, { format, seed: 8, sizeBytes });
      assert.ok(first.equals(again));
      assert.not.ok(first.equals(other));
    });

    test(`${name} ${format}: output is at most the size asked and less than one record short`, () => {
      const schema = loadRecordSchema(builtInSchemaPath(name));
      for (const size of [1_000, 65_537, sizeBytes]) {
        const bytes = generateBuffer(schema, { format, seed: 1, sizeBytes: size });
        const records = lines(bytes);
        const longest = Math.max(...records.map((record) => Buffer.byteLength(record) + 1));
        assert.ok(bytes.length <= size, `${bytes.length} bytes for a size of ${size}`);
        assert.ok(size - bytes.length < longest, `${size - bytes.length} bytes short, longest record ${longest}`);
      }
    });
  }

  test(`${name} csv: a header of the field names, then rows of as many cells`, () => {
    const schema = loadRecordSchema(builtInSchemaPath(name));
    const [header, ...rows] = lines(generateBuffer(schema, { format: 'csv', seed: 3, sizeBytes }));
    assert.equal(csvCells(header), schema.fields.map((field) => field.name));
    assert.ok(rows.length > 100);
    for (const row of rows) assert.is(csvCells(row).length, schema.fields.length, row);
  });

  test(`${name} jsonl: each line is a JSON object with the fields in order; numeric fields are numbers`, () => {
    const schema = loadRecordSchema(builtInSchemaPath(name));
    const numeric = new Set(['integer', 'number', 'walk', 'offset']);
    for (const line of lines(generateBuffer(schema, { format: 'jsonl', seed: 3, sizeBytes }))) {
      const record = JSON.parse(line) as Record<string, unknown>;
      assert.equal(Object.keys(record), schema.fields.map((field) => field.name));
      for (const field of schema.fields) {
        if (numeric.has(field.type)) assert.type(record[field.name], 'number', `${field.name} in ${line}`);
      }
    }
  });
}

test('walks stay within their bounds and offsets follow their base field', () => {
  const schema = loadRecordSchema(builtInSchemaPath('stocks'));
  for (const line of lines(generateBuffer(schema, { format: 'jsonl', seed: 5, sizeBytes }))) {
    const tick = JSON.parse(line) as { price: number; bid: number; ask: number };
    assert.ok(tick.price >= 1 && tick.price <= 5000, line);
    assert.ok(tick.bid < tick.price && tick.price < tick.ask, line);
  }
});

test('a schema that refers to a later or missing field is refused, naming the field', () => {
  const fields = [
    { name: 'price', type: 'walk', by: 'symbol', start: [1, 2], step: 0.1, min: 0, max: 10 },
    { name: 'symbol', type: 'choice', values: ['A', 'B'] },
  ];
  assert.throws(() => parseRecordSchema({ name: 'bad', fields }, 'bad.json'), (error: Error) => error instanceof SchemaError && /fields\.0 \(price\).*symbol/.test(error.message));
  assert.throws(
    () => parseRecordSchema({ name: 'bad', fields: [{ name: 'n', type: 'choice', values: ['a', 'b'], weights: [1] }] }, 'bad.json'),
    (error: Error) => /fields\.0 \(n\): 1 weights for 2 values/.test(error.message),
  );
  assert.throws(() => parseRecordSchema({ name: 'bad', fields: [{ name: 'n', type: 'nope' }] }, 'bad.json'), (error: Error) => /^bad\.json: fields\.0/.test(error.message));
});

test('sizes take decimal and binary units', () => {
  assert.is(parseSize('100MB'), 100_000_000);
  assert.is(parseSize('64MiB'), 64 * 1024 * 1024);
  assert.is(parseSize('1.5GB'), 1_500_000_000);
  assert.is(parseSize('512'), 512);
  assert.throws(() => parseSize('12 parsecs'), /size "12 parsecs"/);
});

test('the CLI writes the file it reports, the same as the library', async () => {
  await withTempDir(async (folder) => {
    const output = join(folder, 'iot.jsonl');
    const script = new URL('../bench/generate.ts', import.meta.url).pathname;
    const run = spawnSync(process.execPath, [script, '--schema', builtInSchemaPath('iot'), '--size', '50KB', '--format', 'jsonl', '--seed', '9', '-o', output], { encoding: 'utf8' });
    assert.is(run.status, 0, run.stderr);
    const expected = generateBuffer(loadRecordSchema(builtInSchemaPath('iot')), { format: 'jsonl' as RecordFormat, seed: 9, sizeBytes: 50_000 });
    assert.ok(readFileSync(output).equals(expected));
    assert.match(run.stdout, new RegExp(`${expected.length} bytes`));
    const bad = spawnSync(process.execPath, [script, '--schema', 'iot', '--size', '1MB', '--format', 'xml', '-o', output], { encoding: 'utf8' });
    assert.is(bad.status, 2);
    assert.match(bad.stderr, /--format xml/);
  });
});

test.run();
