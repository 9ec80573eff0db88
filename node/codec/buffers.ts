/**
 * Frees a buffer's memory now rather than at V8's next major collection.
 *
 * A chunk's bytes live in an ArrayBuffer outside the JS heap, which V8 frees only when a major
 * collection finds it unreachable; until then it holds resident memory and counts towards the next
 * collection (V8 adds the external memory allocated since the last one to the old generation's size
 * when it decides to start marking). A node moving 512 MB through its gateway allocates about three
 * times that in frames, chunks and frames coded: measured, a collection every 80 ms and 2-3 s of CPU
 * on V8's helper threads per 512 MB upload.
 */

/**
 * Detaches the ArrayBuffer under `bytes` (ArrayBuffer.prototype.transfer(0)), which frees its memory at
 * once, when `bytes` views all of it: a view of part of a buffer (a slice of a socket read, a pooled
 * small Buffer) is left alone, as other views may share it. The caller must own the buffer and hold no
 * other use of it: every view of it reads as empty afterwards. Returns whether it freed anything.
 */
export function freeBuffer(bytes: Uint8Array): boolean {
  const buffer = bytes.buffer;
  if (!(buffer instanceof ArrayBuffer) || buffer.resizable || bytes.byteOffset !== 0 || bytes.byteLength !== buffer.byteLength || buffer.byteLength === 0) return false;
  buffer.transfer(0);
  return true;
}

/**
 * Frees the whole buffer under `view` (freeBuffer) for a caller that owns all of it though the view covers
 * only part: a zlib call's output, sized for the largest frame; a frame that came to a thread with its
 * task. A buffer no larger than Buffer's pool may be the pool, shared with other views, and is left to the
 * collector. Returns whether it freed anything.
 */
export function freeBacking(view: Uint8Array): boolean {
  const buffer = view.buffer;
  if (!(buffer instanceof ArrayBuffer) || buffer.byteLength <= Buffer.poolSize) return false;
  return freeBuffer(new Uint8Array(buffer));
}

/**
 * Yields `source`'s buffers, freeing each one (freeBuffer) when the next is asked for: for a consumer
 * that has copied all it needs out of a buffer before it asks for the next (container.ts rechunk).
 */
export async function* freedAfterUse(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  for await (const bytes of source) {
    yield bytes;
    freeBuffer(bytes);
  }
}

/**
 * Buffers done with, kept to be written into again (the codec threads' frames, the decoded chunks a
 * download sent): a fresh buffer costs a page fault per 4 KiB when first written, on a VM about 10 us
 * each, 1,024 for a 4 MiB chunk. At most `countMax` buffers and `bytesMax` bytes are kept; what does not
 * fit is freed (freeBuffer).
 */
export class SpareBuffers {
  readonly #buffers: ArrayBuffer[] = [];
  readonly #countMax: number;
  readonly #bytesMax: number;
  #bytes = 0;

  constructor(countMax: number, bytesMax: number) {
    this.#countMax = countMax;
    this.#bytesMax = bytesMax;
  }

  take(): ArrayBuffer | undefined {
    const buffer = this.#buffers.pop();
    this.#bytes -= buffer?.byteLength ?? 0;
    return buffer;
  }

  /** Keeps the whole buffer under `bytes` (which the caller owns and no longer uses) when there is room, else frees it. */
  give(bytes: Uint8Array): void {
    const buffer = bytes.buffer;
    if (!(buffer instanceof ArrayBuffer) || buffer.resizable || buffer.byteLength === 0) return;
    if (this.#buffers.length < this.#countMax && this.#bytes + buffer.byteLength <= this.#bytesMax) {
      this.#buffers.push(buffer);
      this.#bytes += buffer.byteLength;
    } else {
      freeBuffer(new Uint8Array(buffer));
    }
  }
}
