/**
 * Downloads over the WebSocket protocol: one at a time per connection, the job's bytes in binary frames
 * of at most frameBytesMax, waiting while more than downloadBufferedBytesMax are queued to the client.
 */
import type { DownloadCancelMessage, DownloadMessage } from '../protocol/index.ts';
import type { Connection } from './ws-connection.ts';
import type { WebSocketParts } from './ws-parts.ts';

export interface DownloadState {
  jobId: string;
  cancelled: boolean;
}

export class WebSocketDownloads {
  readonly #parts: WebSocketParts;

  constructor(parts: WebSocketParts) {
    this.#parts = parts;
  }

  async start(connection: Connection, message: DownloadMessage): Promise<void> {
    const { jobId, id, compressed } = message;
    if (connection.download !== undefined) {
      connection.rejectRequest('OUT_OF_ORDER', `one download at a time per connection; job ${connection.download.jobId} is downloading`, { id, jobId });
      return;
    }
    const state: DownloadState = { jobId, cancelled: false };
    const jobs = this.#parts.jobs!;
    const frameBytesMax = this.#parts.limits.frameBytesMax;
    connection.download = state;
    this.#parts.counters.downloadsActive++;
    try {
      const source = await jobs.openDownload(jobId, { compressed });
      if (connection.closed) {
        await source.stream[Symbol.asyncIterator]().return?.();
        return;
      }
      // The protocol promises the original's SHA-256 with either form; the jobs room may leave it to the job.
      const sha256 = source.sha256 ?? (await jobs.getJob(jobId))?.sha256 ?? null;
      connection.send({ type: 'download-start', id, jobId, compressed, size: source.size, fileName: source.fileName, sha256 });
      let sentBytes = 0;
      for await (const piece of source.stream) {
        if (state.cancelled) break;
        const pieceBytes = piece.length;
        for (let at = 0; at < pieceBytes && !state.cancelled; at += frameBytesMax) {
          const frame = piece.subarray(at, at + frameBytesMax);
          const frameBytes = frame.length;
          const last = at + frameBytesMax >= pieceBytes;
          // Once its last frame is written, a piece goes back to the jobs room (a decoded chunk's buffer is
          // decoded into again, any other piece freed), not to V8's next major collection.
          await connection.sendBinary(frame, last ? () => source.done(piece) : undefined);
          sentBytes += frameBytes;
        }
      }
      if (connection.closed) return;
      if (!state.cancelled && sentBytes !== source.size) {
        throw new Error(`download of job ${jobId}: the stream gave ${sentBytes} bytes, the jobs room announced ${source.size}`);
      }
      connection.send({ type: 'download-end', id, jobId, bytes: sentBytes, cancelled: state.cancelled });
    } finally {
      this.#parts.counters.downloadsActive--;
      if (connection.download === state) connection.download = undefined;
    }
  }

  cancel(connection: Connection, message: DownloadCancelMessage): void {
    // Idempotent: the download may have ended while this message was on its way.
    if (connection.download?.jobId === message.jobId) connection.download.cancelled = true;
  }

  onClosed(connection: Connection): void {
    if (connection.download !== undefined) connection.download.cancelled = true;
  }
}
