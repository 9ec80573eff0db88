/**
 * Batches of images: the client packs files and folders into one tar stream (a file at a time, never
 * all images in memory) and uploads it as one images job; one image of a finished batch is read out of
 * the job's archive as it streams by.
 *
 *   const job = await uploadImages(client, ['photos/'], { mode: 'png-lossless' });
 *   await downloadImage(client, job.id, 'cat.png', 'cat-small.png');
 */
import { createReadStream } from 'node:fs';
import { readdir, stat, writeFile } from 'node:fs/promises';
import { basename, join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import * as tar from 'tar-stream';
import type { DcasClient, UploadOptions } from './types.ts';
import { DcasClientError } from './errors.ts';
import type { JobView } from '../jobs/index.ts';

export interface ImageBatchOptions {
  /** png-lossless, png-lossy or jpeg. */
  mode: string;
  /** "MIN-MAX" or "MAX" (0 to 100); default: the mode's. */
  quality?: string;
  /** Strip metadata; default true. */
  strip?: boolean;
  /** The job's file name (the archive's name on download); default images.tar. */
  fileName?: string;
  onProgress?: UploadOptions['onProgress'];
}

/** A file of the batch: where it is on disk, and its name in the archive. */
export interface BatchFile {
  path: string;
  name: string;
  bytes: number;
}

/** Files in a batch at most (the cluster refuses more than 2000 images a job). */
const batchFilesMax = 2000;
/** An image of at most this many bytes (the cluster's image limit, 64 MiB). */
const imageBytesMax = 64 * 1024 * 1024;

async function filesUnder(folder: string, into: BatchFile[]): Promise<void> {
  const entries = await readdir(folder, { recursive: true, withFileTypes: true });
  const files = entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name));
  for (const path of files.sort()) into.push({ path, name: relative(folder, path).split(sep).join('/'), bytes: (await stat(path)).size });
}

/**
 * The files of a batch: each file by its base name, each folder's files (recursively, sorted) by their
 * path inside it. Two files with one name, too many files or a file too large is BAD_INPUT naming it.
 */
export async function listBatch(paths: readonly string[]): Promise<BatchFile[]> {
  const files: BatchFile[] = [];
  for (const path of paths) {
    const info = await stat(path).catch(() => undefined);
    if (info === undefined) throw new DcasClientError('BAD_ARGUMENT', `${path}: no such file or folder`);
    if (info.isDirectory()) await filesUnder(path, files);
    else files.push({ path, name: basename(path), bytes: info.size });
  }
  const seen = new Set<string>();
  for (const file of files) {
    if (seen.has(file.name)) throw new DcasClientError('BAD_ARGUMENT', `${file.path}: a second image named "${file.name}" in the batch`);
    if (file.bytes > imageBytesMax) throw new DcasClientError('BAD_ARGUMENT', `${file.path}: ${file.bytes} bytes, more than an image may have (${imageBytesMax})`);
    seen.add(file.name);
  }
  if (files.length === 0) throw new DcasClientError('BAD_ARGUMENT', `no files in ${paths.join(', ')}`);
  if (files.length > batchFilesMax) throw new DcasClientError('BAD_ARGUMENT', `${files.length} files: a batch holds at most ${batchFilesMax}; split it`);
  return files;
}

/** The tar stream of a batch, packed one file at a time as the upload reads it. */
export function batchTar(files: readonly BatchFile[]): AsyncIterable<Uint8Array> {
  const pack = tar.pack();
  void (async () => {
    for (const file of files) {
      const entry = pack.entry({ name: file.name, size: file.bytes, mtime: new Date(0), mode: 0o644 });
      await pipeline(createReadStream(file.path), entry);
    }
    pack.finalize();
  })().catch((error: unknown) => pack.destroy(error as Error));
  return pack as AsyncIterable<Uint8Array>;
}

/** Uploads files and folders of images as one images job; the job's tasks are the images. */
export async function uploadImages(client: DcasClient, paths: readonly string[], options: ImageBatchOptions): Promise<JobView> {
  const files = await listBatch(paths);
  return client.upload(batchTar(files), {
    mode: 'images',
    fileName: options.fileName ?? 'images.tar',
    image: { mode: options.mode, quality: options.quality, strip: options.strip },
    onProgress: options.onProgress,
  });
}

/**
 * Writes the image `name` of a completed images job to `output`, read out of its archive as it streams
 * (the archive is read up to that image). NOT_FOUND names the image when the archive has none.
 */
export async function downloadImage(client: DcasClient, jobId: string, name: string, output: string): Promise<{ path: string; bytes: number }> {
  const stream = await client.download(jobId, { compressed: true });
  const extract = tar.extract();
  const feeding = pipeline(stream, extract).catch(() => {});
  try {
    for await (const entry of extract) {
      if (entry.header.name !== name) {
        entry.resume();
        continue;
      }
      const pieces: Buffer[] = [];
      for await (const piece of entry) pieces.push(piece as Buffer);
      const bytes = Buffer.concat(pieces);
      await writeFile(output, bytes);
      return { path: output, bytes: bytes.length };
    }
  } finally {
    await stream.cancel().catch(() => {});
    extract.destroy();
    await feeding;
  }
  throw new DcasClientError('NOT_FOUND', `job ${jobId}: its archive has no image "${name}"`);
}
