/**
 * Fuzzed config files: whatever a file holds, loading it either succeeds or fails with a ConfigError
 * whose message is one line naming the file (and, for a bad field, the field). Never another error.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { ConfigError, formatPsk, loadConfig } from '../node/config/index.ts';
import { withTempDir } from './helpers.ts';

const valid = {
  name: 'node1',
  role: 'voter',
  voters: ['node1', 'node2', 'node3'],
  listen: ['/ip4/127.0.0.1/tcp/7801'],
  bootstrap: ['/ip4/127.0.0.1/tcp/7802', '127.0.0.1:7803'],
  dataDir: 'data/node1',
  pskFile: 'cluster.key',
  gateway: { host: '127.0.0.1', port: 7701 },
  workers: 2,
  membership: { heartbeatMs: 500, suspectMs: 1500, deadMs: 3000 },
  raft: { tickMs: 100, electionTicks: 10, heartbeatTicks: 1 },
  jobs: { chunkSize: 4194304, leaseMs: 30000, attemptsMax: 5 },
  token: 'secret',
  blobStore: { kind: 'folder', path: 'blobs' },
};

const paths: string[][] = [];
(function collect(value: unknown, path: string[]) {
  if (path.length > 0) paths.push(path);
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) for (const [key, child] of Object.entries(value)) collect(child, [...path, key]);
})(valid, []);

const jsonValue = fc.jsonValue({ maxDepth: 2 });

/** A valid config with one field replaced, removed, or an unknown one added. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('replace' as const), path: fc.constantFrom(...paths), value: jsonValue }),
  fc.record({ kind: fc.constant('remove' as const), path: fc.constantFrom(...paths), value: fc.constant(null) }),
  fc.record({ kind: fc.constant('add' as const), path: fc.constantFrom(...paths).map((path) => [...path.slice(0, -1), 'surplus']), value: jsonValue }),
);

function mutate(kind: 'replace' | 'remove' | 'add', path: string[], value: unknown): Record<string, unknown> {
  const copy = structuredClone(valid) as Record<string, unknown>;
  let parent = copy;
  for (const key of path.slice(0, -1)) {
    if (parent[key] === null || typeof parent[key] !== 'object') return copy;
    parent = parent[key] as Record<string, unknown>;
  }
  const last = path[path.length - 1];
  if (kind === 'remove') delete parent[last];
  else parent[last] = value;
  return copy;
}

function checkLoad(dir: string, fileName: string, text: string): void {
  const path = join(dir, fileName);
  writeFileSync(path, text);
  try {
    loadConfig(path);
  } catch (error) {
    assert.instance(error, ConfigError, `not a ConfigError: ${(error as Error)?.stack}`);
    const message = (error as Error).message;
    assert.not.match(message, /\n/, `message has more than one line: ${message}`);
    assert.ok(message.includes(fileName), `message does not name the file: ${message}`);
  }
}

test('mutated configs (YAML and JSON) load or fail with one line naming the file and the field', async () => {
  await withTempDir(async (dir) => {
    writeFileSync(join(dir, 'cluster.key'), formatPsk());
    fc.assert(
      fc.property(mutation, fc.boolean(), ({ kind, path, value }, asYaml) => {
        const document = mutate(kind, path, value);
        checkLoad(dir, asYaml ? 'fuzz.yaml' : 'fuzz.json', asYaml ? stringify(document) : JSON.stringify(document));
      }),
      { numRuns: 400, seed: 20261121 },
    );
  });
});

test('a wrong value in a field is reported with that field', async () => {
  await withTempDir(async (dir) => {
    writeFileSync(join(dir, 'cluster.key'), formatPsk());
    for (const [path, value] of [[['gateway', 'port'], 'lots'], [['raft', 'electionTicks'], -3], [['jobs', 'leaseMs'], 'soon'], [['membership', 'deadMs'], {}]] as const) {
      const file = join(dir, 'one.json');
      writeFileSync(file, JSON.stringify(mutate('replace', [...path], value)));
      try {
        loadConfig(file);
        assert.unreachable(`${path.join('.')} = ${JSON.stringify(value)} was accepted`);
      } catch (error) {
        assert.instance(error, ConfigError);
        assert.ok((error as Error).message.includes(path.join('.')), (error as Error).message);
      }
    }
  });
});

test('arbitrary bytes as a config file fail with one line, never a crash', async () => {
  await withTempDir(async (dir) => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.constantFrom('bytes.yaml', 'bytes.json', 'bytes.yml'), (bytes, fileName) => {
        checkLoad(dir, fileName, Buffer.from(bytes).toString('latin1'));
      }),
      { numRuns: 300, seed: 7 },
    );
  });
});

test.run();
