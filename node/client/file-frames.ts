/**
 * An uploaded file's frames, read into a few buffers of the client's own: a buffer the socket has
 * written is read into again. Reading each frame into a fresh buffer (as `createReadStream` does) cost
 * a page fault per 4 KiB on every frame, a third of the client's CPU on a machine where a fault costs
 * 10 µs (docs/SCALING.md).
 */
import { open } from 'node:fs/promises';

/** Buffers kept for reuse; one the socket still holds past these is left to the collector. */
const spareBuffersMax = 16;

export class FileFrames {
  readonly #path: string;
  readonly #spares: Buffer[] = [];
  #frameBytes = 0;

  constructor(path: string) {
    this.#path = path;
  }

  /** The file from its start, one frame of at most `frameBytes` at a time; a frame is the reader's until `release`d. */
  async *frames(frameBytes: number): AsyncGenerator<Uint8Array> {
    if (frameBytes !== this.#frameBytes) this.#spares.length = 0;
    this.#frameBytes = frameBytes;
    const handle = await open(this.#path, 'r');
    try {
      let position = 0;
      for (;;) {
        const buffer = this.#spares.pop() ?? Buffer.allocUnsafeSlow(this.#frameBytes);
        const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
        if (bytesRead === 0) {
          this.#spares.push(buffer);
          return;
        }
        position += bytesRead;
        yield buffer.subarray(0, bytesRead);
      }
    } finally {
      await handle.close();
    }
  }

  /** The socket no longer needs `frame` (written or failed): its buffer is read into again. */
  release(frame: Uint8Array): void {
    if (this.#spares.length >= spareBuffersMax || frame.byteOffset !== 0 || frame.buffer.byteLength !== this.#frameBytes) return;
    this.#spares.push(Buffer.from(frame.buffer as ArrayBuffer));
  }
}
