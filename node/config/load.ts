/**
 * Reading a node config: file → document (YAML or JSON by extension) → schema → cross-field rules
 * → absolute paths. Every failure is a ConfigError whose one-line message names file and field.
 */

import { readFileSync } from 'node:fs';
import { extname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import type * as z from 'zod';
import { ConfigError } from './errors.ts';
import { pskProblem } from './psk.ts';
import { bootstrapToMultiaddr, configSchema } from './schema.ts';
import type { BlobStoreConfig, NodeConfig } from './schema.ts';

/** Config files are small; a bigger one is a wrong path, not a config. */
export const configFileBytesMax = 1 << 20;

export interface ParseOptions {
  /** How errors name the document: the file path as the user gave it, or a label. */
  source: string;
  /** The folder relative paths (dataDir, pskFile, blobStore.path) are resolved against. */
  baseDir: string;
}

/** Reads, validates and completes the node config at `path` (.yaml, .yml or .json). */
export function loadConfig(path: string): NodeConfig {
  const text = readText(path, path, '');
  const document = parseDocument(path, text);
  return parseConfig(document, { source: path, baseDir: resolve(path, '..') });
}

/** Validates an already-parsed document (what loadConfig does after reading the file). */
export function parseConfig(document: unknown, options: ParseOptions): NodeConfig {
  const result = configSchema.safeParse(document ?? {});
  if (!result.success) throw errorFromIssues(options.source, result.error.issues);
  const raw = result.data;
  const fail = (field: string, problem: string): never => {
    throw new ConfigError('INVALID', options.source, field, problem);
  };

  const voters = raw.voters ?? (raw.role === 'voter' ? [raw.name] : fail('voters', 'is required for a worker: list the names of the cluster\'s voters'));
  const duplicate = voters.find((voter, index) => voters.indexOf(voter) !== index);
  if (duplicate !== undefined) fail('voters', `expected distinct names, got "${duplicate}" twice`);
  if (raw.role === 'voter' && !voters.includes(raw.name)) {
    fail('voters', `expected to include this node's name "${raw.name}" because its role is "voter"`);
  }
  if (raw.role === 'worker' && voters.includes(raw.name)) {
    fail('role', `expected "voter" because voters includes this node's name "${raw.name}", got "worker"`);
  }

  if (raw.peers !== undefined) {
    const missing = voters.find((voter) => raw.peers![voter] === undefined);
    if (missing !== undefined) fail('peers', `expected every voter to be pinned, but "${missing}" has no peer id`);
    const ids = Object.values(raw.peers);
    const shared = ids.find((id, index) => ids.indexOf(id) !== index);
    if (shared !== undefined) fail('peers', `expected one name per peer id, got ${shared} twice`);
    if (raw.peers[raw.name] === undefined && raw.joinToken === undefined) {
      fail('peers', `expected this node "${raw.name}" to be pinned, or a joinToken for it to join with`);
    }
  }

  const dataDir = resolve(options.baseDir, raw.dataDir ?? `data/${raw.name}`);
  const pskFile = raw.pskFile === undefined ? undefined : resolve(options.baseDir, raw.pskFile);
  if (pskFile !== undefined) {
    const problem = pskProblem(readText(pskFile, options.source, 'pskFile'));
    if (problem !== '') fail('pskFile', `${pskFile}: not a libp2p pnet key: ${problem}`);
  }

  // Without a blob store setting, nodes that share a parent data folder share one blob folder:
  // on one machine that folder plays the part object storage plays in a real deployment.
  const blobStore: BlobStoreConfig =
    raw.blobStore === undefined
      ? { kind: 'folder', path: resolve(dataDir, '..', 'blobs'), fsync: true }
      : raw.blobStore.kind === 'folder'
        ? { ...raw.blobStore, path: resolve(options.baseDir, raw.blobStore.path) }
        : raw.blobStore;

  // The certificate is read once here, so a wrong path stops the node with one line naming the field.
  const tls = raw.gateway.tls === undefined ? undefined : { certFile: resolve(options.baseDir, raw.gateway.tls.certFile), keyFile: resolve(options.baseDir, raw.gateway.tls.keyFile) };
  if (tls !== undefined) {
    if (!readText(tls.certFile, options.source, 'gateway.tls.certFile').includes('-----BEGIN CERTIFICATE-----')) fail('gateway.tls.certFile', `${tls.certFile}: expected a PEM certificate`);
    if (!readText(tls.keyFile, options.source, 'gateway.tls.keyFile').includes('PRIVATE KEY-----')) fail('gateway.tls.keyFile', `${tls.keyFile}: expected a PEM private key`);
  }

  const bootstrap = raw.bootstrap.map((text) => bootstrapToMultiaddr(text) ?? fail('bootstrap', `not an address: ${text}`));

  return {
    source: options.source,
    name: raw.name,
    listen: raw.listen,
    bootstrap,
    dataDir,
    role: raw.role,
    voters,
    pskFile,
    peers: raw.peers,
    joinToken: raw.joinToken,
    gateway: tls === undefined ? raw.gateway : { ...raw.gateway, tls },
    workers: raw.workers,
    codecMemoryBytesMax: raw.codecMemoryBytesMax,
    membership: raw.membership,
    raft: raw.raft,
    jobs: raw.jobs,
    token: raw.token,
    blobStore,
  };
}

function readText(path: string, source: string, field: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    const problem = field === '' ? `cannot read: ${reason}` : `cannot read ${path}: ${reason}`;
    throw new ConfigError('UNREADABLE', source, field, problem);
  }
  if (text.length > configFileBytesMax) {
    throw new ConfigError('UNREADABLE', source, field, `expected at most ${configFileBytesMax} bytes, got ${text.length}`);
  }
  return text;
}

function parseDocument(path: string, text: string): unknown {
  const extension = extname(path).toLowerCase();
  if (extension === '.json') {
    try {
      return JSON.parse(text);
    } catch (error) {
      throw new ConfigError('SYNTAX', path, '', `invalid JSON: ${(error as Error).message}`);
    }
  }
  if (extension === '.yaml' || extension === '.yml') {
    try {
      return parseYaml(text, { prettyErrors: false });
    } catch (error) {
      // The yaml package's messages carry a code excerpt on the following lines; keep the first.
      const firstLine = (error as Error).message.split('\n')[0];
      throw new ConfigError('SYNTAX', path, '', `invalid YAML: ${firstLine}`);
    }
  }
  throw new ConfigError('UNSUPPORTED_FORMAT', path, '', `expected a .yaml, .yml or .json file, got "${extension}"`);
}

function errorFromIssues(source: string, issues: z.core.$ZodIssue[]): ConfigError {
  const first = issues[0];
  let field = fieldPath(first.path);
  let problem = first.message;
  if (first.code === 'unrecognized_keys') {
    field = fieldPath([...first.path, first.keys[0]]);
    problem = 'unknown field';
  } else if (first.code === 'invalid_type' && problem.endsWith(', got nothing')) {
    problem = `is required (${problem.replace(/, got nothing$/, '')})`;
  } else if (first.code === 'invalid_type' && first.path.length === 0) {
    problem = 'expected a mapping of fields (name, listen, …)';
  }
  const more = issues.length - 1;
  const suffix = more > 0 ? ` (and ${more} more problem${more === 1 ? '' : 's'})` : '';
  return new ConfigError('INVALID', source, field, problem + suffix);
}

function fieldPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const key of path) {
    if (typeof key === 'number') text += `[${key}]`;
    else text += text === '' ? String(key) : `.${String(key)}`;
  }
  return text;
}
