/**
 * The GCS server's objects: bytes in files under a root folder, resources (the JSON the API returns)
 * indexed in memory and saved beside the bytes, so a server started on the same root finds them.
 *
 * Layout under the root:
 *   buckets/<bucket>/_bucket.json                  the bucket resource
 *   buckets/<bucket>/<sha256(name)>.json           { resource, dataFile }: the object's commit record
 *   buckets/<bucket>/<sha256(name)>.<gen>.data     the bytes of one generation
 *   incoming/<id>                                  uploads and composes in progress
 * Object names are hashed because they may be 1024 bytes long and hold "/".
 *
 * A commit renames the new bytes in under their generation's name, then writes the record (the
 * commit point on disk), then updates the index and removes the previous generation's bytes.
 * Commits run one at a time, so the index and the records on disk agree.
 */

import { createHash, randomUUID } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { HttpError, notFound } from './http.ts';

export interface ObjectResource {
  kind: 'storage#object';
  id: string;
  name: string;
  bucket: string;
  /** Decimal strings, as the JSON API sends 64-bit integers. */
  generation: string;
  metageneration: string;
  contentType: string;
  storageClass: string;
  size: string;
  /** Absent on composite objects, as in GCS. */
  md5Hash?: string;
  /** Base64 of the big-endian CRC32C. */
  crc32c: string;
  etag: string;
  timeCreated: string;
  updated: string;
  metadata?: Record<string, string>;
  /** Present on composite objects: how many uploaded objects they are made of. */
  componentCount?: number;
}

export interface BucketResource {
  kind: 'storage#bucket';
  id: string;
  name: string;
  projectNumber: string;
  location: string;
  storageClass: string;
  metageneration: string;
  timeCreated: string;
  updated: string;
}

export interface StoredObject {
  resource: ObjectResource;
  dataPath: string;
}

/** What a writer knows about new bytes waiting in an incoming file. */
export interface NewObject {
  contentType: string;
  metadata?: Record<string, string>;
  size: number;
  crc32c: number;
  md5Base64?: string;
  componentCount?: number;
}

export interface ListQuery {
  prefix: string;
  delimiter: string;
  /** The last entry (name or prefix) of the previous page. */
  after: string | undefined;
  maxResults: number;
}

export interface ListPage {
  items: ObjectResource[];
  prefixes: string[];
  /** The last entry of this page when more follow. */
  last: string | undefined;
}

export interface ObjectStore {
  readonly root: string;
  createBucket(name: string): Promise<BucketResource>;
  bucket(name: string): BucketResource | undefined;
  get(bucket: string, name: string): StoredObject | undefined;
  list(bucket: string, query: ListQuery): ListPage;
  /** A fresh path for bytes on their way in. */
  incomingPath(): string;
  /** Publishes the bytes at `incomingPath` as the object's next generation (the file moves). */
  commit(bucket: string, name: string, incomingPath: string, object: NewObject, ifGenerationMatch?: string): Promise<ObjectResource>;
  delete(bucket: string, name: string): Promise<boolean>;
  /** Opens an object's bytes (the current generation, or `generation` if it is current); 404 otherwise. */
  open(bucket: string, name: string, generation?: string): Promise<OpenObject>;
  /** Concatenates the sources' bytes into a new composite object. */
  compose(bucket: string, sources: readonly SourceObject[], name: string, fields: ComposeFields, ifGenerationMatch?: string): Promise<ObjectResource>;
  /** Fault injection for tests: flips one stored byte without touching the object's hashes. */
  corrupt(bucket: string, name: string, offset: number): Promise<void>;
}

export interface OpenObject {
  resource: ObjectResource;
  file: FileHandle;
}

export interface SourceObject {
  name: string;
  generation?: string;
}

export interface ComposeFields {
  contentType: string;
  metadata?: Record<string, string>;
}

interface BucketState {
  resource: BucketResource;
  folder: string;
  objects: Map<string, StoredObject>;
}

const recordSuffix = '.json';
const bucketRecord = '_bucket.json';
const bucketNamePattern = /^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$/;

export async function openObjectStore(root: string): Promise<ObjectStore> {
  const bucketsFolder = join(root, 'buckets');
  const incomingFolder = join(root, 'incoming');
  await rm(incomingFolder, { recursive: true, force: true }); // uploads do not survive a restart
  await mkdir(incomingFolder, { recursive: true });
  await mkdir(bucketsFolder, { recursive: true });
  const buckets = new Map<string, BucketState>();
  for (const name of await readdir(bucketsFolder)) {
    const state = await loadBucket(join(bucketsFolder, name));
    if (state !== undefined) buckets.set(state.resource.name, state);
  }
  return new FolderObjectStore(root, buckets);
}

/** Objects in files under `root`, indexed in `buckets`; commits, deletes and opens run one at a time. */
class FolderObjectStore implements ObjectStore {
  readonly root: string;
  readonly #bucketsFolder: string;
  readonly #incomingFolder: string;
  readonly #buckets: Map<string, BucketState>;
  #lastGeneration = 0;
  #commitTail: Promise<unknown> = Promise.resolve();

  constructor(root: string, buckets: Map<string, BucketState>) {
    this.root = root;
    this.#bucketsFolder = join(root, 'buckets');
    this.#incomingFolder = join(root, 'incoming');
    this.#buckets = buckets;
  }

  async createBucket(name: string): Promise<BucketResource> {
    if (!bucketNamePattern.test(name)) throw new HttpError(400, 'invalid', `Invalid bucket name: '${name}'`);
    if (this.#buckets.has(name)) throw new HttpError(409, 'conflict', `Your previous request to create the named bucket succeeded and you already own it: ${name}`);
    const now = new Date().toISOString();
    const resource: BucketResource = {
      kind: 'storage#bucket', id: name, name, projectNumber: '0', location: 'LOCAL', storageClass: 'STANDARD',
      metageneration: '1', timeCreated: now, updated: now,
    };
    const folder = join(this.#bucketsFolder, name);
    await mkdir(folder, { recursive: true });
    await writeFile(join(folder, bucketRecord), JSON.stringify(resource));
    this.#buckets.set(name, { resource, folder, objects: new Map() });
    return resource;
  }

  bucket(name: string): BucketResource | undefined {
    return this.#buckets.get(name)?.resource;
  }

  get(bucket: string, name: string): StoredObject | undefined {
    return this.#bucketOrFail(bucket).objects.get(name);
  }

  list(bucket: string, query: ListQuery): ListPage {
    const { prefix, delimiter, after, maxResults } = query;
    // Code-unit order, which is GCS's UTF-8 byte order for every name without astral characters.
    const { objects } = this.#bucketOrFail(bucket);
    const names = [...objects.keys()].filter((name) => name.startsWith(prefix)).sort();
    const page: ListPage = { items: [], prefixes: [], last: undefined };
    const skipUnder = after !== undefined && delimiter !== '' && after.endsWith(delimiter) ? after : undefined;
    let entries = 0;
    for (const name of names) {
      if (after !== undefined && (name <= after || (skipUnder !== undefined && name.startsWith(skipUnder)))) continue;
      const cut = delimiter === '' ? -1 : name.indexOf(delimiter, prefix.length);
      const entry = cut < 0 ? name : name.slice(0, cut + delimiter.length);
      if (entry === page.prefixes.at(-1)) continue;
      if (entries === maxResults) return page; // `last` set: one more entry exists
      entries++;
      if (cut < 0) page.items.push((objects.get(name) as StoredObject).resource);
      else page.prefixes.push(entry);
      page.last = entry;
    }
    page.last = undefined;
    return page;
  }

  incomingPath(): string {
    return join(this.#incomingFolder, randomUUID());
  }

  commit(bucket: string, name: string, incomingPath: string, object: NewObject, ifGenerationMatch?: string): Promise<ObjectResource> {
    return this.#serialized(async () => {
      const state = this.#bucketOrFail(bucket);
      const previous = state.objects.get(name);
      checkGenerationMatch(previous, ifGenerationMatch, name);
      const resource = resourceOf(bucket, name, String(this.#nextGeneration()), object);
      const stem = nameHash(name);
      const dataFile = `${stem}.${resource.generation}.data`;
      const dataPath = join(state.folder, dataFile);
      await rename(incomingPath, dataPath);
      const recordPath = join(state.folder, stem + recordSuffix);
      await writeFile(`${recordPath}.new`, JSON.stringify({ resource, dataFile }));
      await rename(`${recordPath}.new`, recordPath);
      state.objects.set(name, { resource, dataPath });
      // Readers that opened the old bytes keep them until they close: unlinking does not cut them off.
      if (previous !== undefined) await rm(previous.dataPath, { force: true });
      return resource;
    });
  }

  delete(bucket: string, name: string): Promise<boolean> {
    return this.#serialized(async () => {
      const state = this.#bucketOrFail(bucket);
      const stored = state.objects.get(name);
      if (stored === undefined) return false;
      await rm(join(state.folder, nameHash(name) + recordSuffix), { force: true });
      state.objects.delete(name);
      await rm(stored.dataPath, { force: true });
      return true;
    });
  }

  open(bucket: string, name: string, generation?: string): Promise<OpenObject> {
    // Opening inside the commit queue means no commit or delete can unlink the bytes first.
    return this.#serialized(async () => {
      const stored = this.#bucketOrFail(bucket).objects.get(name);
      if (stored === undefined || (generation !== undefined && generation !== stored.resource.generation)) {
        throw notFound(`No such object: ${bucket}/${name}${generation === undefined ? '' : ` (generation ${generation})`}`);
      }
      return { resource: stored.resource, file: await open(stored.dataPath, 'r') };
    });
  }

  async compose(bucket: string, sources: readonly SourceObject[], name: string, fields: ComposeFields, ifGenerationMatch?: string): Promise<ObjectResource> {
    const opened: OpenObject[] = [];
    const path = this.incomingPath();
    try {
      for (const source of sources) opened.push(await this.open(bucket, source.name, source.generation));
      const { size, crc } = await concatenate(opened, path);
      const componentCount = opened.reduce((sum, { resource }) => sum + (resource.componentCount ?? 1), 0);
      return await this.commit(bucket, name, path, { ...fields, size, crc32c: crc, componentCount }, ifGenerationMatch);
    } catch (error) {
      await rm(path, { force: true });
      throw error;
    } finally {
      for (const { file } of opened) await file.close();
    }
  }

  async corrupt(bucket: string, name: string, offset: number): Promise<void> {
    const stored = this.#bucketOrFail(bucket).objects.get(name);
    if (stored === undefined) throw new Error(`corrupt: no object ${bucket}/${name}`);
    const size = Number(stored.resource.size);
    if (!(offset >= 0 && offset < size)) throw new Error(`corrupt: offset ${offset} outside ${bucket}/${name} (${size} bytes)`);
    const file = await open(stored.dataPath, 'r+');
    try {
      const byte = Buffer.alloc(1);
      await file.read(byte, 0, 1, offset);
      byte[0] ^= 0xff;
      await file.write(byte, 0, 1, offset);
    } finally {
      await file.close();
    }
  }

  #nextGeneration(): number {
    this.#lastGeneration = Math.max(Date.now() * 1000, this.#lastGeneration + 1);
    return this.#lastGeneration;
  }

  #serialized<T>(step: () => Promise<T>): Promise<T> {
    const run = this.#commitTail.then(step, step);
    this.#commitTail = run.catch(() => {});
    return run;
  }

  #bucketOrFail(name: string): BucketState {
    const state = this.#buckets.get(name);
    if (state === undefined) throw notFound(`The specified bucket does not exist: ${name}`);
    return state;
  }
}

/** The resource of an object's new generation, as GCS would return it. */
function resourceOf(bucket: string, name: string, generation: string, object: NewObject): ObjectResource {
  const now = new Date().toISOString();
  return {
    kind: 'storage#object', id: `${bucket}/${name}/${generation}`, name, bucket, generation, metageneration: '1',
    contentType: object.contentType, storageClass: 'STANDARD', size: String(object.size),
    ...(object.md5Base64 === undefined ? {} : { md5Hash: object.md5Base64 }),
    crc32c: crc32cToBase64(object.crc32c), etag: Buffer.from(generation).toString('base64'),
    timeCreated: now, updated: now,
    ...(object.metadata === undefined || Object.keys(object.metadata).length === 0 ? {} : { metadata: { ...object.metadata } }),
    ...(object.componentCount === undefined ? {} : { componentCount: object.componentCount }),
  };
}

/** Writes the opened objects' bytes one after another into a new file at `path`; their size and CRC32C. */
async function concatenate(opened: readonly OpenObject[], path: string): Promise<{ size: number; crc: number }> {
  const output = await open(path, 'w');
  let size = 0;
  let crc = 0;
  try {
    const buffer = Buffer.allocUnsafe(1 << 20);
    for (const { file } of opened) {
      for (;;) {
        const { bytesRead } = await file.read(buffer, 0, buffer.length, null);
        if (bytesRead === 0) break;
        const piece = buffer.subarray(0, bytesRead);
        await writeFully(output, piece, size);
        crc = crc32c(piece, crc);
        size += bytesRead;
      }
    }
  } finally {
    await output.close();
  }
  return { size, crc };
}

/** Loads one bucket folder: its resource and the objects whose records and bytes are both there. */
async function loadBucket(folder: string): Promise<BucketState | undefined> {
  let resource: BucketResource;
  try {
    resource = JSON.parse(await readFile(join(folder, bucketRecord), 'utf8')) as BucketResource;
  } catch {
    return undefined; // not a bucket folder
  }
  const objects = new Map<string, StoredObject>();
  const files = await readdir(folder);
  for (const file of files) {
    if (!file.endsWith(recordSuffix) || file === bucketRecord) continue;
    const record = JSON.parse(await readFile(join(folder, file), 'utf8')) as { resource: ObjectResource; dataFile: string };
    if (files.includes(record.dataFile)) objects.set(record.resource.name, { resource: record.resource, dataPath: join(folder, record.dataFile) });
  }
  // Bytes no record points to were left by a crash between the two renames of a commit.
  const referenced = new Set([...objects.values()].map((stored) => stored.dataPath));
  for (const file of files) {
    if ((file.endsWith('.data') && !referenced.has(join(folder, file))) || file.endsWith('.new')) await rm(join(folder, file), { force: true });
  }
  return { resource, folder, objects };
}

function checkGenerationMatch(current: StoredObject | undefined, ifGenerationMatch: string | undefined, name: string): void {
  if (ifGenerationMatch === undefined) return;
  const currentGeneration = current?.resource.generation ?? '0';
  if (currentGeneration !== ifGenerationMatch) {
    throw new HttpError(412, 'conditionNotMet', `At least one of the pre-conditions you specified did not hold: ${name} is at generation ${currentGeneration}, not ${ifGenerationMatch}`);
  }
}

export async function writeFully(file: FileHandle, bytes: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < bytes.length; ) {
    const { bytesWritten } = await file.write(bytes, done, bytes.length - done, position + done);
    done += bytesWritten;
  }
}

function nameHash(name: string): string {
  return createHash('sha256').update(name).digest('hex');
}

export function crc32cToBase64(value: number): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(value >>> 0, 0);
  return bytes.toString('base64');
}
