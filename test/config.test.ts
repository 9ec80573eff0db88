/**
 * The node config file: valid files load with defaults filled; every wrong field is reported on one
 * line that names the file and the field.
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { ConfigError, formatPsk, loadConfig, localClusterConfigs } from '../node/config/index.ts';

const folder = mkdtempSync(join(tmpdir(), 'dcas-config-test-'));
writeFileSync(join(folder, 'good.key'), formatPsk());
writeFileSync(join(folder, 'bad.key'), '/key/swarm/psk/1.0.0/\n/base16/\nnot-hex\n');

function write(fileName: string, text: string): string {
  const path = join(folder, fileName);
  writeFileSync(path, text);
  return path;
}

/** Loads a YAML config and returns the ConfigError it must raise. */
function errorOf(text: string, fileName = 'node.yaml'): ConfigError {
  const path = write(fileName, text);
  try {
    loadConfig(path);
  } catch (error) {
    assert.instance(error, ConfigError);
    return error as ConfigError;
  }
  throw new Error(`expected ${fileName} to be rejected: ${text}`);
}

function assertOneLine(error: ConfigError, file: string, field: string, fragment: string) {
  assert.not.match(error.message, /\n/, 'the message is a single line');
  assert.ok(error.message.startsWith(`${file}: ${field}${field === '' ? '' : ': '}`), `names file and field: ${error.message}`);
  assert.ok(error.message.includes(fragment), `says what is wrong ("${fragment}"): ${error.message}`);
  assert.is(error.field, field);
}

/** gateway.images when the file does not say: 32 MiB, 50 megapixels, 8 image requests at once. */
const imageDefaults = { bytesMax: 32 * 1024 * 1024, pixelsMax: 50_000_000, requestsMax: 8 };

test('a config with only a name loads, every other field filled with its default', () => {
  const path = write('minimal.yaml', 'name: solo\n');
  const config = loadConfig(path);
  assert.is(config.name, 'solo');
  assert.equal(config.listen, ['/ip4/127.0.0.1/tcp/0']);
  assert.equal(config.bootstrap, []);
  assert.is(config.dataDir, resolve(folder, 'data/solo'), 'dataDir defaults to data/<name> beside the file');
  assert.is(config.role, 'voter');
  assert.equal(config.voters, ['solo'], 'a lone voter is the whole voter set');
  assert.is(config.pskFile, undefined);
  assert.equal(config.gateway, { host: '127.0.0.1', port: 7700, allowedHosts: [], uploadQueueMax: 256, uploadQueueTimeoutMs: 120_000, uploadsPerAddressMax: 32, cors: { origins: [] }, images: imageDefaults });
  assert.is(config.workers, availableParallelism());
  assert.is(config.codecMemoryBytesMax, 128 * 1024 * 1024);
  assert.equal(config.membership, { heartbeatMs: 500, suspectMs: 1500, deadMs: 3000 });
  assert.equal(config.raft, { tickMs: 100, electionTicks: 10, heartbeatTicks: 1 });
  assert.is(config.token, undefined);
  assert.equal(config.blobStore, { kind: 'folder', path: resolve(folder, 'data/blobs'), fsync: true }, 'blobs default to <dataDir>/../blobs, flushed to the disk');
});

test('YAML and JSON files with the same content give the same config; paths are relative to the file', () => {
  const document = {
    name: 'node-7',
    role: 'worker',
    voters: ['a', 'b', 'c'],
    listen: ['/ip4/0.0.0.0/tcp/7807'],
    bootstrap: ['/ip4/127.0.0.1/tcp/7801', '127.0.0.1:7802', 'peer-host:7803'],
    dataDir: 'state/n7',
    pskFile: 'good.key',
    gateway: { port: 7707, allowedHosts: ['dcas.internal', 'proxy.example:8443'], cors: { origins: ['https://console.example.com'] } },
    workers: 3,
    membership: { heartbeatMs: 100, suspectMs: 300, deadMs: 600 },
    raft: { electionTicks: 20 },
    token: 'secret-token',
    blobStore: { kind: 'gcs', bucket: 'dcas-blobs', apiEndpoint: 'http://127.0.0.1:4443' },
  };
  const fromJson = loadConfig(write('n7.json', JSON.stringify(document)));
  const yamlText = Object.entries(document).map(([key, value]) => `${key}: ${JSON.stringify(value)}`).join('\n');
  const fromYaml = loadConfig(write('n7.yml', yamlText));
  assert.equal({ ...fromYaml, source: '' }, { ...fromJson, source: '' });
  assert.is(fromJson.dataDir, resolve(folder, 'state/n7'));
  assert.is(fromJson.pskFile, resolve(folder, 'good.key'));
  assert.equal(fromJson.bootstrap, ['/ip4/127.0.0.1/tcp/7801', '/ip4/127.0.0.1/tcp/7802', '/dns/peer-host/tcp/7803']);
  assert.equal(fromJson.gateway, { host: '127.0.0.1', port: 7707, allowedHosts: ['dcas.internal', 'proxy.example:8443'], uploadQueueMax: 256, uploadQueueTimeoutMs: 120_000, uploadsPerAddressMax: 32, cors: { origins: ['https://console.example.com'] }, images: imageDefaults });
  assert.equal(fromJson.raft, { tickMs: 100, electionTicks: 20, heartbeatTicks: 1 });
  assert.equal(fromJson.blobStore, { kind: 'gcs', bucket: 'dcas-blobs', prefix: '', apiEndpoint: 'http://127.0.0.1:4443' });
});

test('a folder blob store flushes every blob to the disk unless blobStore.fsync is false', () => {
  assert.equal(loadConfig(write('fsync-on.yaml', 'name: n1\nblobStore: { kind: folder, path: blobs }\n')).blobStore, { kind: 'folder', path: resolve(folder, 'blobs'), fsync: true });
  assert.equal(loadConfig(write('fsync-off.yaml', 'name: n1\nblobStore: { kind: folder, path: blobs, fsync: false }\n')).blobStore, { kind: 'folder', path: resolve(folder, 'blobs'), fsync: false });
});

test('the committed cluster-config files load', () => {
  for (const name of ['single', 'node1', 'node2', 'node3']) {
    const config = loadConfig(`cluster-config/${name}.yaml`);
    assert.is(config.name, name);
    assert.ok(config.pskFile?.endsWith('cluster-config/cluster.key'));
  }
  assert.equal(loadConfig('cluster-config/node2.yaml').voters, ['node1', 'node2', 'node3']);
});

// One row per rule: the YAML body, the field the error must name, and a fragment of the problem.
const wrongFields: Array<[string, string, string]> = [
  ['name: n1\ngateway: { port: abc }', 'gateway.port', 'expected an integer from 1 to 65535, got "abc"'],
  ['name: n1\ngateway: { port: 70000 }', 'gateway.port', 'got 70000'],
  ['name: n1\ngateway: { uploadQueueMax: -1 }', 'gateway.uploadQueueMax', 'got -1'],
  ['name: n1\ngateway: { allowedHosts: ["evil.example/x"] }', 'gateway.allowedHosts[0]', 'expected a host name or address, optionally with ":port"'],
  ['name: n1\ngateway: { allowedHosts: dcas.internal }', 'gateway.allowedHosts', 'expected a list of host names'],
  ['name: n1\ngateway: { cors: { origins: ["https://console.example.com/app"] } }', 'gateway.cors.origins[0]', 'no path'],
  ['name: n1\ngateway: { cors: { origins: ["*"] } }', 'gateway.cors.origins[0]', 'got "*"'],
  ['name: n1\ngateway: { cors: { methods: [GET] } }', 'gateway.cors.methods', 'unknown field'],
  ['name: n1\ngateway: { images: { bytesMax: 10 } }', 'gateway.images.bytesMax', 'expected an integer from 1024 to 1073741824, got 10'],
  ['name: n1\ngateway: { images: { requestsMax: 0 } }', 'gateway.images.requestsMax', 'got 0'],
  ['name: n1\ngateway: { images: { threads: 2 } }', 'gateway.images.threads', 'unknown field'],
  ['name: N_1', 'name', "expected a name of lowercase letters, digits and '-'"],
  ['role: voter', 'name', 'is required'],
  ['name: n1\nlisten: ["not-a-multiaddr"]', 'listen[0]', 'expected a libp2p multiaddr'],
  ['name: n1\nlisten: []', 'listen', 'at least one listen multiaddr'],
  ['name: n1\nbootstrap: ["/ip4/127.0.0.1/tcp/1", "nowhere"]', 'bootstrap[1]', 'got "nowhere"'],
  ['name: n1\nrole: leader', 'role', 'expected "voter" or "worker", got "leader"'],
  ['name: n1\nvoters: [n2, n3]', 'voters', 'include this node\'s name "n1"'],
  ['name: n1\nvoters: [n1, n1]', 'voters', 'distinct'],
  ['name: n1\nrole: worker', 'voters', 'is required for a worker'],
  ['name: n1\nrole: worker\nvoters: [n1]', 'role', 'expected "voter"'],
  ['name: n1\nworkers: 0', 'workers', 'expected an integer from 1 to 1024, got 0'],
  ['name: n1\nworkers: 2.5', 'workers', 'got 2.5'],
  ['name: n1\ncodecMemoryBytesMax: 1000', 'codecMemoryBytesMax', 'expected an integer from 16777216'],
  ['name: n1\nmembership: { heartbeatMs: 500, suspectMs: 400 }', 'membership.suspectMs', 'more than heartbeatMs'],
  ['name: n1\nmembership: { deadMs: 1000 }', 'membership.deadMs', 'more than suspectMs (1500)'],
  ['name: n1\nraft: { electionTicks: 2, heartbeatTicks: 2 }', 'raft.heartbeatTicks', 'fewer than electionTicks'],
  ['name: n1\nraft: { tickMs: "fast" }', 'raft.tickMs', 'got "fast"'],
  ['name: n1\ntoken: ""', 'token', 'non-empty'],
  ['name: n1\nblobStore: { kind: s3 }', 'blobStore.kind', 'expected kind "folder" (with path) or "gcs" (with bucket), got "s3"'],
  ['name: n1\nblobStore: { kind: gcs, bucket: "Bad Bucket" }', 'blobStore.bucket', 'GCS bucket name'],
  ['name: n1\nblobStore: { kind: folder }', 'blobStore.path', 'is required'],
  ['name: n1\nblobStore: { kind: folder, path: blobs, fsync: "no" }', 'blobStore.fsync', 'expected true or false, got "no"'],
  ['name: n1\nblobStore: { kind: gcs, bucket: dcas, fsync: false }', 'blobStore.fsync', 'unknown field'],
  ['name: n1\npskFile: missing.key', 'pskFile', 'no such file'],
  ['name: n1\npskFile: bad.key', 'pskFile', '64 hex digits'],
  ['name: n1\npeers: { n1: "not-a-peer-id" }', 'peers.n1', 'expected a libp2p peer id'],
  ['name: n1\npeers: { N1: 12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA }', 'peers.N1', 'got "N1"'],
  ['name: n1\nvoters: [n1, n2]\npeers: { n1: 12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA }', 'peers', 'every voter to be pinned, but "n2"'],
  ['name: n1\nvoters: [n1, n2]\npeers: { n1: 12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA, n2: 12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA }', 'peers', 'one name per peer id'],
  ['name: w1\nrole: worker\nvoters: [n1]\npeers: { n1: 12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA }', 'peers', 'expected this node "w1" to be pinned, or a joinToken'],
  ['name: n1\njoinToken: short', 'joinToken', 'at least 16 characters'],
];

for (const [body, field, fragment] of wrongFields) {
  test(`a wrong ${field} is reported on one line naming the file and "${field}" (${body.split('\n').at(-1)})`, () => {
    const error = errorOf(body);
    assert.is(error.code, body.includes('pskFile: missing') ? 'UNREADABLE' : 'INVALID');
    assertOneLine(error, join(folder, 'node.yaml'), field, fragment);
  });
}

test('pinned peers and a join token load; a worker not pinned may join with the token', () => {
  const config = loadConfig(write('pinned.yaml', 'name: w1\nrole: worker\nvoters: [n1]\npeers: { n1: 12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA, w2: 12D3KooWLQxC4Uo3u4oMHdQBUqyHxUhcxQLmbbnQqBBNGQqxaxU7 }\njoinToken: a-join-token-of-some-length\n'));
  assert.equal(config.peers, { n1: '12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA', w2: '12D3KooWLQxC4Uo3u4oMHdQBUqyHxUhcxQLmbbnQqBBNGQqxaxU7' });
  assert.is(config.joinToken, 'a-join-token-of-some-length');
  assert.is(loadConfig(write('unpinned.yaml', 'name: solo\n')).peers, undefined, 'no peers: trust on first use');
});

test('an unknown field is an error naming it, at the top level and nested', () => {
  assertOneLine(errorOf('name: n1\nport: 7700'), join(folder, 'node.yaml'), 'port', 'unknown field');
  assertOneLine(errorOf('name: n1\ngateway: { prot: 7700 }'), join(folder, 'node.yaml'), 'gateway.prot', 'unknown field');
});

test('several problems report the first and count the rest', () => {
  const error = errorOf('name: n1\nworkers: 0\ngateway: { port: 0 }');
  assert.match(error.message, /: (workers|gateway\.port): expected an integer .*\(and 1 more problem\)$/);
});

test('broken YAML, broken JSON, a missing file and an unknown extension are one-line errors naming the file', () => {
  const yaml = errorOf('name: n1\n  gateway: [', 'broken.yaml');
  assert.is(yaml.code, 'SYNTAX');
  assertOneLine(yaml, join(folder, 'broken.yaml'), '', 'invalid YAML');
  const json = errorOf('{"name": "n1",', 'broken.json');
  assert.is(json.code, 'SYNTAX');
  assertOneLine(json, join(folder, 'broken.json'), '', 'invalid JSON');
  const toml = errorOf('name = "n1"', 'node.toml');
  assert.is(toml.code, 'UNSUPPORTED_FORMAT');
  assertOneLine(toml, join(folder, 'node.toml'), '', '".toml"');
  try {
    loadConfig(join(folder, 'absent.yaml'));
    assert.unreachable('a missing file is an error');
  } catch (error) {
    assert.instance(error, ConfigError);
    assertOneLine(error as ConfigError, join(folder, 'absent.yaml'), '', 'no such file');
  }
  assertOneLine(errorOf('', 'empty.yaml'), join(folder, 'empty.yaml'), 'name', 'is required');
  assertOneLine(errorOf('- a\n- b', 'list.yaml'), join(folder, 'list.yaml'), '', 'expected a mapping');
});

test('localClusterConfigs lays out N nodes on loopback: ports, voters, bootstrap, shared blobs', () => {
  const configs = localClusterConfigs({ nodes: 7, dataDir: join(folder, 'cluster'), basePort: 9000 });
  assert.is(configs.length, 7);
  assert.equal(configs.map((config) => config.name), ['node1', 'node2', 'node3', 'node4', 'node5', 'node6', 'node7']);
  assert.equal(configs[0].voters, ['node1', 'node2', 'node3', 'node4', 'node5'], 'at most five voters');
  assert.equal(configs.map((config) => config.role), ['voter', 'voter', 'voter', 'voter', 'voter', 'worker', 'worker']);
  assert.equal(configs[2].gateway, { host: '127.0.0.1', port: 9003, allowedHosts: [], uploadQueueMax: 256, uploadQueueTimeoutMs: 120_000, uploadsPerAddressMax: 32, cors: { origins: [] }, images: imageDefaults });
  assert.equal(configs[2].listen, ['/ip4/127.0.0.1/tcp/9103']);
  assert.equal(configs[2].bootstrap, ['/ip4/127.0.0.1/tcp/9101', '/ip4/127.0.0.1/tcp/9102', '/ip4/127.0.0.1/tcp/9104', '/ip4/127.0.0.1/tcp/9105']);
  assert.is(configs[6].bootstrap.length, 5, 'a worker bootstraps from every voter');
  assert.is(configs[2].dataDir, join(folder, 'cluster', 'node3'));
  assert.equal(configs[2].blobStore, { kind: 'folder', path: join(folder, 'cluster', 'blobs'), fsync: true });
  assert.equal(configs[5].blobStore, configs[0].blobStore, 'all nodes share one blob folder');
  assert.throws(() => localClusterConfigs({ nodes: 0, dataDir: folder }), /nodes: expected an integer from 1 to 99, got 0/);
});

test('the default local cluster matches the committed node1..node3 files', () => {
  const configs = localClusterConfigs({ nodes: 3, dataDir: resolve('.dcas') });
  for (const config of configs) {
    const file = loadConfig(`cluster-config/${config.name}.yaml`);
    assert.equal(config.gateway, file.gateway);
    assert.equal(config.listen, file.listen);
    assert.equal(config.bootstrap, file.bootstrap);
    assert.equal(config.voters, file.voters);
    assert.is(config.dataDir, file.dataDir);
  }
});

test.after(() => rmSync(folder, { recursive: true, force: true }));

test.run();
