/**
 * The node config file's schema. It is the one place where a node's settings are checked: after
 * `loadConfig` returns, the rest of the node trusts the values (ranges, cross-field rules, paths).
 *
 * Each leaf says what it expects in words, so a failure reads `gateway.port: expected an integer from
 * 1 to 65535, got "abc"` rather than a library's generic phrase.
 */

import { availableParallelism } from 'node:os';
import * as z from 'zod';
import { multiaddr } from '@multiformats/multiaddr';
import { peerIdFromString } from '@libp2p/peer-id';

/** Renders the value a user wrote, short enough for a one-line message. */
export function showValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function expecting(what: string) {
  return { error: (issue: { input?: unknown }) => `expected ${what}, got ${showValue(issue.input)}` };
}

function integerIn(min: number, max: number) {
  const e = expecting(`an integer from ${min} to ${max}`);
  return z.number(e).int(e).min(min, e).max(max, e);
}

const nameText = "a name of lowercase letters, digits and '-' (1 to 63 characters)";
const nameRegex = /^[a-z0-9][a-z0-9-]{0,62}$/;
const nodeName = z.string(expecting(nameText)).regex(nameRegex, expecting(nameText));

/** A test that holds when `parse` accepts the text (the libraries' parsers throw on bad input). */
function accepts(parse: (text: string) => unknown): (text: string) => boolean {
  return (text) => {
    try {
      parse(text);
      return true;
    } catch {
      return false;
    }
  };
}

const isMultiaddr = accepts(multiaddr);

const multiaddrText = 'a libp2p multiaddr such as "/ip4/127.0.0.1/tcp/7801"';
const multiaddrString = z.string(expecting(multiaddrText)).refine(isMultiaddr, expecting(multiaddrText));

/**
 * A bootstrap peer is a multiaddr, with or without a trailing /p2p/<peer id>, or the shorthand
 * "host:port" for TCP. Peer ids are optional because each node creates its identity on first start:
 * the dialer learns the id from the encrypted handshake.
 */
const bootstrapText = 'a multiaddr like "/ip4/127.0.0.1/tcp/7801" or "host:port"';
const hostPortRegex = /^([A-Za-z0-9.-]+):(\d{1,5})$/;
export function bootstrapToMultiaddr(text: string): string | undefined {
  const hostPort = hostPortRegex.exec(text);
  if (hostPort !== null) {
    const port = Number(hostPort[2]);
    if (port < 1 || port > 65535) return undefined;
    const host = hostPort[1];
    const family = /^\d+\.\d+\.\d+\.\d+$/.test(host) ? 'ip4' : 'dns';
    return `/${family}/${host}/tcp/${port}`;
  }
  return isMultiaddr(text) ? text : undefined;
}
const bootstrapString = z
  .string(expecting(bootstrapText))
  .refine((text) => bootstrapToMultiaddr(text) !== undefined, expecting(bootstrapText));

const isPeerId = accepts(peerIdFromString);

const peerIdText = 'a libp2p peer id such as "12D3KooW…"';
const peerIdString = z.string(expecting(peerIdText)).max(128, expecting(peerIdText)).refine(isPeerId, expecting(peerIdText));

const pathString = z.string(expecting('a file or folder path')).min(1, expecting('a non-empty path'));

/** Limits on the gateway's allow-lists: more than this is a mistake, not a deployment. */
export const gatewayNamesMax = 64;

const allowedHostText = 'a host name or address, optionally with ":port" (such as "dcas.internal" or "dcas.internal:8080")';
const allowedHost = z
  .string(expecting(allowedHostText))
  .max(253, expecting(allowedHostText))
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$/, expecting(allowedHostText));

const originText = 'an origin such as "https://console.example.com" or "http://localhost:3000" (scheme, host, optional port; no path)';
function isOrigin(text: string): boolean {
  try {
    const url = new URL(text);
    return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === text.replace(/\/$/, '').toLowerCase();
  } catch {
    return false;
  }
}
const origin = z.string(expecting(originText)).max(300, expecting(originText)).refine(isOrigin, expecting(originText));

const gateway = z.strictObject({
  host: z.string(expecting('a host name or IP address')).min(1, expecting('a host name')).default('127.0.0.1'),
  port: integerIn(1, 65535).default(7700),
  /** Names besides loopback, IP literals and `host` that clients use in the Host header. */
  allowedHosts: z
    .array(allowedHost, expecting('a list of host names'))
    .max(gatewayNamesMax, expecting(`at most ${gatewayNamesMax} host names`))
    .default([]),
  cors: z
    .strictObject({
      /** Web pages (origins) besides the gateway's own that may use it from a browser. */
      origins: z
        .array(origin, expecting('a list of origins'))
        .max(gatewayNamesMax, expecting(`at most ${gatewayNamesMax} origins`))
        .default([]),
    })
    .prefault({}),
  /**
   * Uploads that wait, first in first out, for one of the node's `jobs.uploadsMax` slots; one more is
   * refused with BUSY and a retry-after. A waiting upload holds a socket, not its body.
   */
  uploadQueueMax: integerIn(0, 100_000).default(256),
  /** An upload waiting this long in that queue is refused with BUSY (its client retries). */
  uploadQueueTimeoutMs: integerIn(1_000, 3_600_000).default(120_000),
  /** Uploads running or waiting from one client address when the node has no token; one more is HTTP 429. */
  uploadsPerAddressMax: integerIn(1, 100_000).default(32),
  /** Serve https:// and wss:// with this certificate (PEM files; relative paths from the config's folder). */
  tls: z.strictObject({ certFile: pathString, keyFile: pathString }).optional(),
  /** POST /v1/images: the synchronous image endpoint's limits. */
  images: z
    .strictObject({
      /** Largest image body accepted, bytes; the whole body is held in memory while it is coded. */
      bytesMax: integerIn(1024, 1024 * 1024 * 1024).default(32 * 1024 * 1024),
      /** Largest width x height accepted, read from the header before anything is decoded. */
      pixelsMax: integerIn(1, 1_000_000_000).default(50_000_000),
      /** Image requests held at once (reading, waiting or coding); one more is refused with 503. */
      requestsMax: integerIn(1, 1024).default(8),
    })
    .prefault({}),
});

export type GatewayConfig = z.output<typeof gateway>;

const membership = z
  .strictObject({
    heartbeatMs: integerIn(10, 60_000).default(500),
    suspectMs: integerIn(20, 600_000).default(1500),
    deadMs: integerIn(30, 600_000).default(3000),
  })
  .superRefine((value, context) => {
    if (value.suspectMs <= value.heartbeatMs) {
      context.addIssue({
        code: 'custom',
        path: ['suspectMs'],
        message: `expected more than heartbeatMs (${value.heartbeatMs}), got ${value.suspectMs}`,
      });
    }
    if (value.deadMs <= value.suspectMs) {
      context.addIssue({
        code: 'custom',
        path: ['deadMs'],
        message: `expected more than suspectMs (${value.suspectMs}), got ${value.deadMs}`,
      });
    }
  });

const raft = z
  .strictObject({
    tickMs: integerIn(1, 10_000).default(100),
    electionTicks: integerIn(2, 1000).default(10),
    heartbeatTicks: integerIn(1, 100).default(1),
  })
  .superRefine((value, context) => {
    if (value.heartbeatTicks >= value.electionTicks) {
      context.addIssue({
        code: 'custom',
        path: ['heartbeatTicks'],
        message: `expected fewer than electionTicks (${value.electionTicks}), got ${value.heartbeatTicks}`,
      });
    }
  });

const mebibyte = 1024 * 1024;
const jobs = z.strictObject({
  /** Default original bytes per chunk for uploads that do not choose. */
  chunkSize: integerIn(64 * 1024, 64 * mebibyte).default(4 * mebibyte),
  /** A chunk assigned to a node that has not completed within this is reassigned. */
  leaseMs: integerIn(100, 3_600_000).default(30_000),
  /**
   * How often the coordinator removes staged blobs left under jobs that already ended (a process that died
   * between writing a blob and removing it), ms.
   */
  stagingSweepMs: integerIn(1_000, 86_400_000).default(60_000),
  /** A chunk that fails (or lets its lease lapse) this many times is parked as dead; its job fails. */
  attemptsMax: integerIn(1, 100).default(5),
  /** Chunks assigned to one node at once, per worker thread of that node. */
  inFlightPerWorker: integerIn(1, 64).default(2),
  /** Largest upload accepted, bytes. */
  uploadBytesMax: integerIn(1, Number.MAX_SAFE_INTEGER).default(64 * 1024 * mebibyte),
  /** Uploads this node's gateway accepts at once. */
  uploadsMax: integerIn(1, 10_000).default(16),
  /**
   * Disk space kept free on the data folder and a folder blob store, bytes: an upload that would eat
   * into it is refused (or stopped) with INSUFFICIENT_STORAGE, so Raft's log never meets a full disk.
   */
  diskReserveBytes: integerIn(0, Number.MAX_SAFE_INTEGER).default(256 * mebibyte),
  /** Keep the original upload's staged chunks after the job completes. */
  keepOriginal: z.boolean(expecting('true or false')).default(false),
  /**
   * A gateway codes the chunks of an upload itself while its worker has a free slot (locality) and
   * stages only the coded chunks; false stages every chunk raw for the coordinator to assign.
   */
  codeAtGateway: z.boolean(expecting('true or false')).default(true),
  /**
   * This node codes chunks. false: it still votes (or learns), serves its gateway and decodes downloads
   * it serves, but advertises no worker threads, so the coordinator assigns it nothing, and its gateway
   * stages every upload's chunks raw for the nodes that do code.
   */
  code: z.boolean(expecting('true or false')).default(true),
});

const folderBlobStore = z.strictObject({
  kind: z.literal('folder'),
  path: pathString,
  /**
   * Flush every blob to the disk (fsync) before it counts as written, so a chunk a job recorded survives
   * a power cut. false trades that for speed on a machine whose blobs are scratch (benchmarks, tests).
   */
  fsync: z.boolean(expecting('true or false')).default(true),
});

const gcsBucketText = 'a GCS bucket name (3 to 222 characters: lowercase letters, digits, "-", "_", ".")';
const gcsBlobStore = z.strictObject({
  kind: z.literal('gcs'),
  bucket: z
    .string(expecting(gcsBucketText))
    .regex(/^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/, expecting(gcsBucketText)),
  prefix: z.string(expecting('an object name prefix')).default(''),
  apiEndpoint: z.url(expecting('a URL such as "http://127.0.0.1:4443"')).optional(),
});

// The union reports a bad `kind` with the whole object as input; show just the kind the user wrote.
const blobStore = z.discriminatedUnion('kind', [folderBlobStore, gcsBlobStore], {
  error: (issue: { input?: unknown }) => {
    const input = issue.input;
    const kind = typeof input === 'object' && input !== null && 'kind' in input ? input.kind : undefined;
    return `expected kind "folder" (with path) or "gcs" (with bucket), got ${showValue(kind)}`;
  },
});

/** Limits on list lengths: a config that needs more than these is a mistake, not a cluster. */
export const listenAddressesMax = 16;
export const bootstrapAddressesMax = 64;
export const votersMax = 15;
/** Pinned peers: voters and every worker admitted up front. */
export const peersMax = 256;

export const configSchema = z.strictObject({
  name: nodeName,
  listen: z
    .array(multiaddrString, expecting(`a list of multiaddrs`))
    .min(1, expecting('at least one listen multiaddr'))
    .max(listenAddressesMax, expecting(`at most ${listenAddressesMax} listen addresses`))
    .default(['/ip4/127.0.0.1/tcp/0']),
  bootstrap: z
    .array(bootstrapString, expecting('a list of peer addresses'))
    .max(bootstrapAddressesMax, expecting(`at most ${bootstrapAddressesMax} bootstrap addresses`))
    .default([]),
  dataDir: pathString.optional(),
  role: z.enum(['voter', 'worker'], expecting('"voter" or "worker"')).default('voter'),
  voters: z
    .array(nodeName, expecting('a list of node names'))
    .min(1, expecting('at least one voter'))
    .max(votersMax, expecting(`at most ${votersMax} voters`))
    .optional(),
  pskFile: pathString.optional(),
  peers: z
    .record(nodeName, peerIdString, expecting('a mapping of node names to libp2p peer ids'))
    .refine((value) => Object.keys(value).length <= peersMax, expecting(`at most ${peersMax} pinned peers`))
    .optional(),
  joinToken: z.string(expecting('a join token string')).min(16, expecting('a join token of at least 16 characters')).max(1024, expecting('a join token of at most 1024 characters')).optional(),
  gateway: gateway.prefault({}),
  workers: integerIn(1, 1024).default(() => availableParallelism()),
  /** Memory this node's codec threads may hold for chunks coding at once, bytes (codecs.ts codingBytesMax). */
  codecMemoryBytesMax: integerIn(16 * mebibyte, 1024 * 1024 * mebibyte).default(128 * mebibyte),
  membership: membership.prefault({}),
  raft: raft.prefault({}),
  jobs: jobs.prefault({}),
  token: z.string(expecting('a token string')).min(1, expecting('a non-empty token')).optional(),
  blobStore: blobStore.optional(),
});

/** What a config file may say: every field but `name` has a default. */
export type NodeConfigInput = z.input<typeof configSchema>;

export type BlobStoreConfig =
  | { kind: 'folder'; path: string; fsync: boolean }
  | { kind: 'gcs'; bucket: string; prefix: string; apiEndpoint?: string };

export type NodeRole = 'voter' | 'worker';

export type JobsConfig = z.output<typeof jobs>;

/** A validated node config: defaults filled, paths absolute, cross-field rules hold. */
export interface NodeConfig {
  /** The file it came from (absolute), or a label like "<local cluster node2>". */
  source: string;
  name: string;
  listen: string[];
  /** Bootstrap peers as multiaddrs ("host:port" already turned into /ip4|dns/…/tcp/…). */
  bootstrap: string[];
  dataDir: string;
  role: NodeRole;
  voters: string[];
  /** Absolute path of the pnet key file; undefined runs a public (unprotected) network. */
  pskFile: string | undefined;
  /**
   * Names bound to libp2p peer ids: only these peers (and workers holding the join token) are
   * members. Undefined: trust on first use (a name binds to the first peer id heard using it).
   */
  peers: Record<string, string> | undefined;
  /** The secret a worker not in `peers` proves it holds to be admitted (never sent in clear). */
  joinToken: string | undefined;
  gateway: GatewayConfig;
  workers: number;
  codecMemoryBytesMax: number;
  membership: { heartbeatMs: number; suspectMs: number; deadMs: number };
  raft: { tickMs: number; electionTicks: number; heartbeatTicks: number };
  jobs: JobsConfig;
  token: string | undefined;
  blobStore: BlobStoreConfig;
}
