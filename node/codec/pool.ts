/**
 * A pool of codec worker threads (piscina), each running its own WASM kernel instance.
 * Buffers are transferred, not copied, in both directions.
 */
import { availableParallelism } from 'node:os';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { isMarkedAsUntransferable } from 'node:worker_threads';
import { piscinaClass } from './piscina.ts';
import { createCodecTaskRunner, type CodecTaskOutcome } from './codec-tasks.ts';
import { choiceOf, codecById, codingBytesMax, huffmanChoice, type CodecChoice } from './codecs.ts';
import { CodecError, type CodecErrorCode } from './errors.ts';
import { mainThreadOnlyBytesMax, mayCodeOnMainThread, threadEnvironment } from './file-threads.ts';
import { chunkBytesDefault } from './format.ts';
import { compileKernel, loadKernel, type KernelModule } from './kernel.ts';
import type { TextCounts } from './text-counts.ts';

/** `codec` and `level` as a .dcz header records them (codecs.ts). */
export type CodecTask =
  /**
   * `countText`: also count lines and words of the chunk (text-counts.ts), in the same visit to the thread.
   * `record`: answer the whole .dcz chunk record (its header, then the frame), put together on the codec
   * thread rather than by the caller. `giveBack`: transfer `data` back with the answer, for reuse.
   */
  | { op: 'compress'; codec: number; level: number; data: Uint8Array; countText?: boolean; record?: boolean; giveBack?: boolean; into?: ArrayBuffer }
  /** A piece of a standard format has no CRC32C of ours (`checksum` undefined; the format checks itself), and a bzip2 stream no known length (`originalBytes` undefined). */
  | { op: 'decompress'; codec: number; level: number; frame: Uint8Array; originalBytes: number | undefined; checksum: number | undefined; into?: ArrayBuffer };

export type CodecTaskResult =
  | { ok: true; op: 'compress'; frame: Uint8Array; checksum: number; text?: TextCounts; input?: Uint8Array }
  | { ok: true; op: 'decompress'; data: Uint8Array }
  | { ok: false; code: CodecErrorCode; message: string };

export interface CompressedChunk {
  /** The coded chunk: its frame, or its whole .dcz chunk record when asked for one. */
  frame: Uint8Array;
  /** CRC32C of the original bytes. */
  checksum: number;
  /** Line and word counts of the original bytes, when asked for. */
  text?: TextCounts;
  /** The original bytes handed back (`giveBack`): the caller's to reuse. */
  input?: Uint8Array;
}

export interface CompressOptions {
  countText?: boolean;
  /** The whole .dcz chunk record (header, then frame) instead of the bare frame. */
  record?: boolean;
  /** Hand the original bytes back with the answer (CompressedChunk.input) rather than dropping them on the codec thread. */
  giveBack?: boolean;
  /**
   * A spare buffer of the caller's (a frame of an earlier chunk, done with), transferred with the task:
   * the Huffman kernel codes into it when the frame fits (the frame then views it from its start), so a
   * node coding chunk after chunk does not fault fresh memory in for every frame. Other codecs drop it.
   */
  into?: ArrayBuffer;
}

export interface DecodeOptions {
  /**
   * The caller gives up the whole ArrayBuffer under `frame` (a chunk record read for this decode, its
   * header before the frame): it is transferred to the thread as it is, not copied into a buffer of the
   * frame's own. The caller must not use it again.
   */
  giveBuffer?: boolean;
  /** A spare buffer of the caller's for the decoded bytes (transferred); the Huffman kernel decodes into it when they fit. */
  into?: ArrayBuffer;
}

export interface CodecPool {
  readonly threads: number;
  memory(): CodecPoolMemory;
  /** Codes one chunk (with the Huffman kernel unless told); `data` is transferred to the worker and unusable afterwards. */
  compress(data: Uint8Array, choice?: CodecChoice, options?: CompressOptions): Promise<CompressedChunk>;
  /** Decodes one chunk and checks its CRC32C; `label` names the chunk in errors ("chunk 3"). */
  decompress(frame: Uint8Array, originalBytes: number, checksum: number, label: string, choice?: CodecChoice, options?: DecodeOptions): Promise<Uint8Array>;
  /** Decodes one frame, member or stream of a standard format, which checks itself; `originalBytes` when the file records it. */
  decodePiece(frame: Uint8Array, originalBytes: number | undefined, label: string, choice: CodecChoice): Promise<Uint8Array>;
  close(): Promise<void>;
}

export interface CodecWorkerData {
  kernelModule: object;
}

export interface CodecPoolOptions {
  threads?: number;
  /**
   * Memory the pool's codings may hold at once (codecs.ts codingBytesMax per chunk); a chunk that does
   * not fit waits for others to finish. One chunk always runs, whatever its cost, so none waits forever.
   */
  memoryBytesMax?: number;
  /** A thread idle this long ends, and its heap and WASM memory (which never shrinks) go back. */
  idleTimeoutMs?: number;
  /**
   * The calling thread codes the kernel's and store's chunks too (createMainThreadLane), as the CLI's
   * file pipeline does: for a command, whose thread has nothing else to do. Never for a node, whose
   * event loop must stay free.
   */
  mainThread?: boolean;
}

export interface CodecPoolMemory {
  /** Threads running now: none until the first chunk, since threads start when work comes. */
  threadsStarted: number;
  bytesReserved: number;
  /** The most reserved at once since the pool started, and the most chunks coding at once. */
  bytesReservedPeak: number;
  codingsPeak: number;
}

/** The default memory budget of a pool's codings: a few Huffman chunks, or one xz -6 chunk. */
export const codecMemoryBytesDefault = 128 * 1024 * 1024;
const idleTimeoutMsDefault = 10_000;

const workerUrl = new URL('./worker.ts', import.meta.url).href;

export function createCodecPool(options: CodecPoolOptions = {}): CodecPool {
  const threads = options.threads ?? availableParallelism();
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  // Chunks live in ArrayBuffers and WASM memory, outside the JS heap: a small heap per thread is plenty,
  // and keeps a node's resident memory bounded.
  // No thread starts before work comes (an idle node held 25 OS threads and ~170 MB); each costs tens of
  // milliseconds to start, nothing beside a chunk's coding.
  const Piscina = piscinaClass();
  const kernelModule = compileKernel();
  const here = options.mainThread === true ? createMainThreadLane(kernelModule) : undefined;
  const piscina = new Piscina({
    filename: workerUrl,
    minThreads: 0,
    maxThreads: threads,
    idleTimeout: options.idleTimeoutMs ?? idleTimeoutMsDefault,
    resourceLimits: { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 },
    // The kernel compiled once here, not once per thread.
    workerData: { kernelModule } satisfies CodecWorkerData,
    env: threadEnvironment(),
  });

  const budget = createMemoryBudget(options.memoryBytesMax ?? codecMemoryBytesDefault);

  async function run(task: CodecTask, transfer: ArrayBufferLike[]): Promise<CodecTaskResult> {
    if (here?.takes(task)) return here.run(task);
    const bytes = taskBytes(task);
    await budget.reserve(bytes);
    try {
      return await piscina.run(task, { transferList: transfer as ArrayBuffer[] });
    } finally {
      budget.release(bytes);
    }
  }

  /**
   * Transferring detaches the whole ArrayBuffer, so a view into a larger one (such as Node's Buffer
   * pool, which is also marked untransferable) is copied first, unless the caller `gave` the whole
   * buffer (DecodeOptions.giveBuffer). `new Uint8Array(view)` copies; `Buffer#slice` would not.
   */
  function owned(bytes: Uint8Array, gave = false): Uint8Array {
    const whole = gave || (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength);
    const transferable = !(bytes.buffer instanceof SharedArrayBuffer) && !isMarkedAsUntransferable(bytes.buffer);
    return whole && transferable ? bytes : new Uint8Array(bytes);
  }

  return {
    threads,
    memory: () => ({ threadsStarted: piscina.threads.length, ...budget.stats() }),
    async compress(input, choice = huffmanChoice, compressOptions = {}) {
      const data = owned(input);
      const into = compressOptions.into !== undefined && compressOptions.into.byteLength > 0 ? compressOptions.into : undefined;
      const task = { op: 'compress' as const, codec: choice.codec.id, level: choice.level, data, ...compressOptions, into };
      const result = await run(task, into === undefined ? [data.buffer] : [data.buffer, into]);
      if (!result.ok) throw new CodecError(result.code, result.message);
      if (result.op !== 'compress') throw new Error('codec worker answered a compress task with a decompress result');
      return { frame: result.frame, checksum: result.checksum, text: result.text, input: result.input };
    },
    decompress: (input, originalBytes, checksum, label, choice = huffmanChoice, options = {}) => decode(input, originalBytes, checksum, label, choice, options),
    decodePiece: (input, originalBytes, label, choice) => decode(input, originalBytes, undefined, label, choice, {}),
    async close() {
      await Promise.all([piscina.close(), here?.idle()]);
    },
  };

  async function decode(input: Uint8Array, originalBytes: number | undefined, checksum: number | undefined, label: string, choice: CodecChoice, options: DecodeOptions): Promise<Uint8Array> {
    const frame = owned(input, options.giveBuffer);
    const into = options.into !== undefined && options.into.byteLength > 0 ? options.into : undefined;
    const task = { op: 'decompress' as const, codec: choice.codec.id, level: choice.level, frame, originalBytes, checksum, into };
    const result = await run(task, into === undefined ? [frame.buffer] : [frame.buffer, into]);
    if (!result.ok) throw new CodecError(result.code, `${label}: ${result.message}`);
    if (result.op !== 'decompress') throw new Error('codec worker answered a decompress task with a compress result');
    return result.data;
  }
}

/**
 * The calling thread's lane of a pool that codes there too (CodecPoolOptions.mainThread): the kernel's
 * and store's tasks, one at a time, each once the events waiting then are handled. It takes a task
 * when it is free, and also when busy while the chunks it took are few (mainThreadOnlyBytesMax, as for
 * a file): a small stream then starts no thread at all. A codec thread takes 80-150 ms to start on
 * this VM: `dcas compress -c` from stdin, alternating runs, 1 KB 0.31 -> 0.19-0.20 s, 16 MB 0.46-0.61 ->
 * 0.34-0.42 s, 150 MB 1.18-1.49 -> 0.94-1.07 s; its `decompress -c` 1.09-1.21 -> 0.79-0.92 s.
 */
function createMainThreadLane(kernelModule: KernelModule): { takes(task: CodecTask): boolean; run(task: CodecTask): Promise<CodecTaskResult>; idle(): Promise<unknown> } {
  let runTask: ((task: CodecTask) => Promise<CodecTaskOutcome>) | undefined;
  let pending = 0;
  let bytesTaken = 0;
  let tail: Promise<unknown> = Promise.resolve();
  return {
    takes(task) {
      const codec = codecById(task.codec);
      if (codec === undefined || !mayCodeOnMainThread({ codec, level: task.level })) return false;
      return pending === 0 || bytesTaken < mainThreadOnlyBytesMax;
    },
    run(task) {
      pending += 1;
      bytesTaken += task.op === 'compress' ? task.data.byteLength : (task.originalBytes ?? task.frame.byteLength);
      const result = tail.then(async () => {
        await nextTurn();
        runTask ??= createCodecTaskRunner(loadKernel(kernelModule));
        return (await runTask(task)).result;
      });
      tail = result.then(
        () => (pending -= 1),
        () => (pending -= 1),
      );
      return result;
    },
    idle: () => tail,
  };
}

/** A task's cost in the budget; a piece whose length the file does not record counts as 4 MiB or 4 times its frame. */
function taskBytes(task: CodecTask): number {
  const choice = choiceOf(task.codec, task.level);
  if (task.op === 'compress') return codingBytesMax(choice, 'compress', task.data.byteLength);
  const originalBytes = task.originalBytes ?? Math.max(chunkBytesDefault, 4 * task.frame.byteLength);
  return codingBytesMax(choice, 'decompress', originalBytes);
}

interface MemoryBudget {
  reserve(bytes: number): Promise<void>;
  release(bytes: number): void;
  stats(): { bytesReserved: number; bytesReservedPeak: number; codingsPeak: number };
}

/** First come, first served: a large reservation is not overtaken by small ones forever. */
function createMemoryBudget(bytesMax: number): MemoryBudget {
  if (!Number.isSafeInteger(bytesMax) || bytesMax < 1) throw new RangeError(`memoryBytesMax must be a positive integer, got ${bytesMax}`);
  const waiting: { bytes: number; grant: () => void }[] = [];
  let bytesReserved = 0;
  let codings = 0;
  let bytesReservedPeak = 0;
  let codingsPeak = 0;
  const fits = (bytes: number) => codings === 0 || bytesReserved + bytes <= bytesMax;
  function take(bytes: number): void {
    bytesReserved += bytes;
    codings++;
    bytesReservedPeak = Math.max(bytesReservedPeak, bytesReserved);
    codingsPeak = Math.max(codingsPeak, codings);
  }
  return {
    reserve(bytes) {
      if (waiting.length === 0 && fits(bytes)) {
        take(bytes);
        return Promise.resolve();
      }
      return new Promise((grant) => waiting.push({ bytes, grant: () => grant() }));
    },
    release(bytes) {
      bytesReserved -= bytes;
      codings--;
      if (bytesReserved < 0 || codings < 0) throw new Error('codec pool: memory released that was never reserved');
      while (waiting.length > 0 && fits(waiting[0].bytes)) {
        const next = waiting.shift()!;
        take(next.bytes);
        next.grant();
      }
    },
    stats: () => ({ bytesReserved, bytesReservedPeak, codingsPeak }),
  };
}
