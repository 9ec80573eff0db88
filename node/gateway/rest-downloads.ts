/**
 * GET and HEAD /v1/jobs/:id/original and /compressed: a completed job's bytes with an ETag, If-None-Match
 * and one `Range`, streamed at the pace the client reads.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Download, JobView } from '../jobs/index.ts';
import { HttpError, type RestJobs } from './rest-common.ts';

/** A single `bytes=` range of a body of `size` bytes as [start, end); undefined when absent; throws 416. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined {
  if (header === undefined) return undefined;
  const unsatisfiable = (why: string) => new HttpError(416, 'RANGE_NOT_SATISFIABLE', `Range ${JSON.stringify(header.slice(0, 80))}: ${why}`, { 'content-range': `bytes */${size}` });
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (match === null) throw unsatisfiable('expected one range, bytes=FIRST-LAST, bytes=FIRST- or bytes=-SUFFIX');
  const [first, last] = [match[1], match[2]];
  if (first === '' && last === '') throw unsatisfiable('no first or last byte');
  if (first === '') {
    const suffix = Math.min(Number(last), size);
    if (suffix === 0) throw unsatisfiable(`an empty suffix of a ${size}-byte body`);
    return { start: size - suffix, end: size };
  }
  const start = Number(first);
  const end = last === '' ? size : Math.min(Number(last) + 1, size);
  if (start >= size) throw unsatisfiable(`starts at ${start}, the body has ${size} bytes`);
  if (end <= start) throw unsatisfiable('the last byte is before the first');
  return { start, end };
}

function contentDisposition(fileName: string): string {
  const plain = fileName.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${plain}"; filename*=UTF-8''${encodeURIComponent(fileName)}`;
}

/**
 * Writes one piece of a download, waiting while the response is over its buffer. Once written, the piece
 * goes back to the jobs room (`done`: a decoded chunk's buffer is decoded into again, any other piece
 * freed), not to V8's next major collection (tested over the WebSocket path: test/download-memory.test.ts).
 */
async function writeWithBackpressure(response: ServerResponse, piece: Uint8Array, done: (piece: Uint8Array) => void): Promise<void> {
  if (response.write(piece, () => done(piece))) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      response.off('drain', done);
      response.off('close', done);
      resolve();
    };
    response.on('drain', done);
    response.on('close', done);
  });
}

function downloadHeaders(id: string, job: JobView, whole: Download, compressed: boolean): Record<string, string> {
  return {
    'content-type': compressed ? 'application/octet-stream' : (job.mime ?? 'application/octet-stream'),
    'content-disposition': contentDisposition(whole.fileName),
    etag: `"${job.sha256 ?? id}${compressed ? '.dcz' : ''}"`,
    'accept-ranges': 'bytes',
    'cache-control': 'no-cache',
  };
}

export class RestDownloads {
  readonly #jobs: RestJobs;
  readonly #logger: Logger;

  constructor(jobs: RestJobs, logger: Logger) {
    this.#jobs = jobs;
    this.#logger = logger;
  }

  async download(request: IncomingMessage, response: ServerResponse, id: string, compressed: boolean): Promise<void> {
    const job = await this.#jobs.jobOrNotFound(id);
    if (job.state !== 'completed') throw new HttpError(409, 'NOT_READY', `job ${id} is ${job.state}; only completed jobs can be downloaded`);
    // Opening reads nothing yet (the stream is lazy): it tells the size a Range is checked against.
    const whole = await this.#jobs.service().openDownload(id, { compressed });
    const headers = downloadHeaders(id, job, whole, compressed);
    const closeWhole = () => whole.stream[Symbol.asyncIterator]().return?.(undefined);
    if (request.headers['if-none-match'] === headers.etag) {
      await closeWhole();
      response.writeHead(304, headers);
      response.end();
      return;
    }
    const range = parseRange(request.headers.range, whole.size);
    if (range !== undefined || request.method === 'HEAD') await closeWhole();
    const source = range === undefined ? whole : await this.#jobs.service().openDownload(id, { compressed, range });
    if (range !== undefined) headers['content-range'] = `bytes ${range.start}-${range.end - 1}/${whole.size}`;
    response.writeHead(range === undefined ? 200 : 206, { ...headers, 'content-length': String(source.size) });
    if (request.method === 'HEAD') {
      response.end();
      return;
    }
    await this.#sendBody(response, id, source);
  }

  async #sendBody(response: ServerResponse, id: string, source: Download): Promise<void> {
    let sentBytes = 0;
    for await (const piece of source.stream) {
      if (response.destroyed) break;
      sentBytes += piece.length;
      await writeWithBackpressure(response, piece, source.done);
    }
    if (!response.destroyed && sentBytes !== source.size) {
      this.#logger.error({ job: id, sentBytes, size: source.size }, 'rest: a download gave a different number of bytes than announced');
      response.destroy();
      return;
    }
    response.end();
  }
}
