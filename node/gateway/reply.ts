/**
 * JSON replies shared by the gateway's HTTP routes (http.ts) and the REST API (rest.ts): one body shape,
 * `{"error":{"code","message"}}` for errors, and a bound on what a client may leave unread.
 */
import type { ServerResponse } from 'node:http';

/** Bytes a client may leave unread on its socket before the node stops answering it (pipelined requests). */
const responseBufferedBytesMax = 8 * 1024 * 1024;

/**
 * A client with more than the bound unread on its socket is not reading: it is disconnected instead of
 * answered. Node stops parsing pipelined requests while a response waits, so this is a second line.
 */
export function dropIfNotReading(response: ServerResponse): boolean {
  if ((response.socket?.writableLength ?? 0) <= responseBufferedBytesMax) return false;
  response.socket?.destroy();
  return true;
}

export function send(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (dropIfNotReading(response)) return;
  const text = `${JSON.stringify(body)}\n`;
  response.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': String(Buffer.byteLength(text)),
    'cache-control': 'no-store',
    ...headers,
  });
  response.end(text);
}

export function fail(response: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  send(response, status, { error: { code, message } }, headers);
}

/** HTTP status for each jobs-room error code. */
export const jobErrorStatus: Record<string, number> = { NOT_FOUND: 404, NOT_READY: 503, BUSY: 503, UNAVAILABLE: 503, TOO_LARGE: 413, BAD_INPUT: 400, INSUFFICIENT_STORAGE: 507, CONFLICT: 409 };
