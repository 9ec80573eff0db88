/**
 * A pool of codec worker threads (piscina), each running its own WASM kernel instance.
 * Buffers are transferred, not copied, in both directions.
 */
import { availableParallelism } from 'node:os';
import { isMarkedAsUntransferable } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { huffmanChoice, type CodecChoice } from './codecs.ts';
import { CodecError, type CodecErrorCode } from './errors.ts';
import { threadEnvironment } from './file-threads.ts';
import { compileKernel } from './kernel.ts';
import type { TextCounts } from './text-counts.ts';

/** `codec` and `level` as a .dcz header records them (codecs.ts). */
export type CodecTask =
  /** `countText`: also count lines and words of the chunk (text-counts.ts), in the same visit to the thread. */
  | { op: 'compress'; codec: number; level: number; data: Uint8Array; countText?: boolean }
  /** A piece of a standard format has no CRC32C of ours (`checksum` undefined; the format checks itself), and a bzip2 stream no known length (`originalBytes` undefined). */
  | { op: 'decompress'; codec: number; level: number; frame: Uint8Array; originalBytes: number | undefined; checksum: number | undefined };

export type CodecTaskResult =
  | { ok: true; op: 'compress'; frame: Uint8Array; checksum: number; text?: TextCounts }
  | { ok: true; op: 'decompress'; data: Uint8Array }
  | { ok: false; code: CodecErrorCode; message: string };

export interface CompressedChunk {
  frame: Uint8Array;
  /** CRC32C of the original bytes. */
  checksum: number;
  /** Line and word counts of the original bytes, when asked for. */
  text?: TextCounts;
}

export interface CodecPool {
  readonly threads: number;
  /** Codes one chunk (with the Huffman kernel unless told); `data` is transferred to the worker and unusable afterwards. */
  compress(data: Uint8Array, choice?: CodecChoice, options?: { countText?: boolean }): Promise<CompressedChunk>;
  /** Decodes one chunk and checks its CRC32C; `label` names the chunk in errors ("chunk 3"). */
  decompress(frame: Uint8Array, originalBytes: number, checksum: number, label: string, choice?: CodecChoice): Promise<Uint8Array>;
  /** Decodes one frame, member or stream of a standard format, which checks itself; `originalBytes` when the file records it. */
  decodePiece(frame: Uint8Array, originalBytes: number | undefined, label: string, choice: CodecChoice): Promise<Uint8Array>;
  close(): Promise<void>;
}

export interface CodecWorkerData {
  kernelModule: object;
}

export interface CodecPoolOptions {
  threads?: number;
}

const workerUrl = new URL('./worker.ts', import.meta.url).href;

export function createCodecPool(options: CodecPoolOptions = {}): CodecPool {
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  // Chunks live in ArrayBuffers and WASM memory, outside the JS heap: a small heap per thread is plenty,
  // and keeps a node's resident memory bounded.
  const piscina = new Piscina({
    filename: workerUrl,
    minThreads: threads,
    maxThreads: threads,
    idleTimeout: 60_000,
    resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 },
    // The kernel compiled once here, not once per thread.
    workerData: { kernelModule: compileKernel() } satisfies CodecWorkerData,
    env: threadEnvironment(),
  });

  async function run(task: CodecTask, transfer: ArrayBufferLike): Promise<CodecTaskResult> {
    return piscina.run(task, { transferList: [transfer as ArrayBuffer] });
  }

  /**
   * Transferring detaches the whole ArrayBuffer, so a view into a larger one (such as Node's Buffer
   * pool, which is also marked untransferable) is copied first. `new Uint8Array(view)` copies;
   * `Buffer#slice` would not.
   */
  function owned(bytes: Uint8Array): Uint8Array {
    const whole = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength;
    if (whole && !(bytes.buffer instanceof SharedArrayBuffer) && !isMarkedAsUntransferable(bytes.buffer)) return bytes;
    return new Uint8Array(bytes);
  }

  return {
    threads,
    async compress(input, choice = huffmanChoice, compressOptions = {}) {
      const data = owned(input);
      const result = await run({ op: 'compress', codec: choice.codec.id, level: choice.level, data, countText: compressOptions.countText }, data.buffer);
      if (!result.ok) throw new CodecError(result.code, result.message);
      if (result.op !== 'compress') throw new Error('codec worker answered a compress task with a decompress result');
      return { frame: result.frame, checksum: result.checksum, text: result.text };
    },
    decompress: (input, originalBytes, checksum, label, choice = huffmanChoice) => decode(input, originalBytes, checksum, label, choice),
    decodePiece: (input, originalBytes, label, choice) => decode(input, originalBytes, undefined, label, choice),
    async close() {
      await piscina.close();
    },
  };

  async function decode(input: Uint8Array, originalBytes: number | undefined, checksum: number | undefined, label: string, choice: CodecChoice): Promise<Uint8Array> {
    const frame = owned(input);
    const result = await run({ op: 'decompress', codec: choice.codec.id, level: choice.level, frame, originalBytes, checksum }, frame.buffer);
    if (!result.ok) throw new CodecError(result.code, `${label}: ${result.message}`);
    if (result.op !== 'decompress') throw new Error('codec worker answered a decompress task with a compress result');
    return result.data;
  }
}
