/**
 * HTTP odds and ends of the GCS server: errors in the JSON API's shape, bounded body reads.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { finished } from 'node:stream/promises';

/** An error the server answers with: a status, a GCS error reason and a message. */
export class HttpError extends Error {
  readonly status: number;
  readonly reason: string;

  constructor(status: number, reason: string, message: string) {
    super(message);
    this.name = 'HttpError';
    this.status = status;
    this.reason = reason;
  }
}

export const notFound = (message: string): HttpError => new HttpError(404, 'notFound', message);
export const badRequest = (message: string): HttpError => new HttpError(400, 'invalid', message);

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json; charset=UTF-8', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** The JSON API's error document: { error: { code, message, errors: [{ domain, reason, message }] } }. */
export function sendError(res: ServerResponse, status: number, reason: string, message: string, headers: Record<string, string> = {}): void {
  sendJson(res, status, { error: { code: status, message, errors: [{ domain: 'global', reason, message }] } }, headers);
}

/** Reads a whole body into memory, refusing more than `bytesMax`. */
export async function readBody(req: IncomingMessage, bytesMax: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (declared > bytesMax) throw new HttpError(413, 'uploadTooLarge', `body of ${declared} bytes is larger than this server's limit of ${bytesMax}`);
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > bytesMax) throw new HttpError(413, 'uploadTooLarge', `body is larger than this server's limit of ${bytesMax} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

export async function readJson(req: IncomingMessage, bytesMax: number): Promise<Record<string, unknown>> {
  const body = await readBody(req, bytesMax);
  if (body.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw new HttpError(400, 'parseError', 'Parse Error: the request body is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw badRequest('the request body is not a JSON object');
  return parsed as Record<string, unknown>;
}

/** Reads and discards the rest of a body, so the client sees our answer rather than a broken pipe. */
export async function drain(req: IncomingMessage): Promise<void> {
  if (req.readableEnded) return;
  req.resume();
  await finished(req).catch(() => {});
}
