/**
 * The main thread's side of the file pipeline: a fixed set of file codec threads (file-worker.ts) fed
 * from one bounded queue, which the main thread also codes from for the kernel and store (file-tasks.ts;
 * a small file it codes alone), and the whole-file SHA-256 (sha-worker.ts on a thread of its own, or
 * here). Threads start once per file command; the kernel is compiled once here and posted to each.
 */
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { getCompileCacheDir } from 'node:module';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { huffmanChoice, type CodecChoice } from './codecs.ts';
import { CodecError } from './errors.ts';
import { createFileTaskRunner, fileWorkerReady, type FileTask, type FileTaskResult, type FileTaskRunner, type FileWorkerData } from './file-tasks.ts';
import { compileKernel } from './kernel.ts';
import type { ShaAnswer, ShaMessage, ShaWorkerData } from './sha-worker.ts';

const fileWorkerUrl = new URL('./file-worker.ts', import.meta.url);
const shaWorkerUrl = new URL('./sha-worker.ts', import.meta.url);
/** Chunks live in kernel memory and ArrayBuffers, outside the JS heap: a small heap per thread is plenty. */
const resourceLimits = { maxYoungGenerationSizeMb: 4, maxOldGenerationSizeMb: 64 };

/**
 * @napi-rs/lzma allocates with mimalloc, which keeps freed pages resident for a while: a thread that
 * coded three 4 MiB xz chunks held 93 MB more (RSS 161 MB against 80 MB with a purge delay of 0). Its
 * arenas add to that: an xz:6 chunk coded after the first touched 35 MB more than the first, as the
 * coder's tables came from fresh arena space instead of the memory just freed (peak of one thread over
 * eight 4 MiB chunks 183 MB, 147 MB with no arena reserved; two threads 311 MB, 234 MB). mimalloc
 * reads the process environment (not a thread's copy of it) when the addon first allocates, so these
 * are set here, on the main thread, before any codec thread starts; a user's own settings are kept.
 */
function releaseFreedNativeMemory(): void {
  if (process.env.MIMALLOC_PURGE_DELAY === undefined) process.env.MIMALLOC_PURGE_DELAY = '0';
  if (process.env.MIMALLOC_ARENA_RESERVE === undefined) process.env.MIMALLOC_ARENA_RESERVE = '0';
}

/**
 * The environment for a codec thread. A thread does not inherit the compile cache the process enabled
 * (module.enableCompileCache), but takes it from its environment: with it, a thread is ready in about
 * half the time (measured: 38-48 ms instead of 70-75 ms for two threads).
 */
export function threadEnvironment(): NodeJS.ProcessEnv {
  releaseFreedNativeMemory();
  const cacheDirectory = getCompileCacheDir();
  return cacheDirectory === undefined ? process.env : { ...process.env, NODE_COMPILE_CACHE: cacheDirectory };
}

function threadOptions(workerData: unknown): WorkerOptions {
  return { workerData, resourceLimits, env: threadEnvironment() };
}

/** The SHA-256 thread's read size: large sequential reads, few calls. */
const shaReadBytes = 4 * 1024 * 1024;
/**
 * Files up to this size are hashed on the calling thread: that takes under 8 ms here, less than
 * starting a thread costs (measured: 25-60 ms of CPU on this 2-core machine).
 */
const shaInlineBytesMax = 8 * 1024 * 1024;

type Distribute<T> = T extends unknown ? Omit<T, 'id'> : never;
export type FileThreadTask = Distribute<FileTask>;

export interface FileThreads {
  readonly threads: number;
  /** Chunks to hand these coders at once (the pipeline's bound on chunks in flight). */
  readonly inFlightMax: number;
  /** Whether the main thread codes chunks too (then it also hashes beside one codec thread, startSha). */
  readonly codesOnMainThread: boolean;
  /**
   * Codes the input's bytes [position, position + length); resolves with the frame and the CRC32C of the
   * bytes, and the bytes themselves (`input`) when they were read into this thread's memory, for the
   * caller to hash instead of reading them again.
   */
  compress(position: number, length: number): Promise<{ frame: Uint8Array; checksum: number; input?: Uint8Array }>;
  /**
   * Hands a written frame's memory back, to hold a later frame or to be freed, and the chunk's input, to
   * hold a later chunk (a few of each are kept). Either may be detached: the caller reads neither after.
   */
  recycle(frame: Uint8Array, input?: Uint8Array): void;
  /** Reads, checks, decodes and writes one chunk at its place in the output; answers the decoded bytes when they are in this thread's memory. */
  decompress(task: Extract<FileThreadTask, { op: 'decompress' }>): Promise<Uint8Array | undefined>;
  close(): Promise<void>;
}

function failureOf(result: Extract<FileTaskResult, { ok: false }>): Error {
  if (result.code === 'IO') return Object.assign(new Error(result.message), { code: result.errno });
  return new CodecError(result.code, result.message);
}

export interface FileThreadsOptions {
  /** Chunks coded at once: codec threads, and the main thread itself for the codecs it codes (mayCodeOnMainThread). */
  threads: number;
  /** The bytes the file holds decoded: a small file is coded on the main thread alone. */
  totalBytes: number;
  /**
   * Whether the main thread codes chunks too, for the codecs that allow it (mayCodeOnMainThread): for a
   * command, whose main thread has nothing else to do. Off by default, for a caller whose event loop
   * must stay free.
   */
  mainThread?: boolean;
  inputFd: number;
  outputFd: number;
  chunkBytes: number;
  codec?: CodecChoice;
}

export function startFileThreads(options: FileThreadsOptions): FileThreads {
  if (!Number.isInteger(options.threads) || options.threads < 1) throw new RangeError(`threads must be a positive integer, got ${options.threads}`);
  return new FileThreadSet(options);
}

/**
 * Whether the main thread codes chunks too, beside its codec threads: only for codecs that code a chunk
 * in a few milliseconds (the kernel, store), so it never holds the main thread for longer.
 */
export function mayCodeOnMainThread(choice: CodecChoice): boolean {
  return choice.codec.name === 'huffman' || choice.codec.name === 'store';
}

/**
 * Files up to this size are coded on the main thread alone. A codec thread takes 80-150 ms to start on
 * this 2-core VM (an isolate deserialised, its pages faulted in at about 10 us each, then its modules),
 * and on two cores its start competes with the coding. `dcas compress`, whole process, main thread alone
 * against main thread and one codec thread (4 runs each): 16 MB 0.26-0.31 s against 0.29-0.33 s, 32 MB
 * 0.29-0.34 s against 0.34-0.47 s, 64 MB 0.39-0.41 s against 0.47-0.50 s, 100 MB even, 150 MB 0.60-0.62 s
 * against 0.55-0.59 s. A machine whose threads start faster gains from them sooner: 32 MiB is below
 * the even point here.
 */
export const mainThreadOnlyBytesMax = 32 * 1024 * 1024;

/** The codec threads to start for `threads` chunks coded at once, when the main thread codes too (or not). */
function codecThreadsFor(options: FileThreadsOptions, codesHere: boolean): number {
  if (!codesHere) return options.threads;
  return options.totalBytes <= mainThreadOnlyBytesMax ? 0 : options.threads - 1;
}

/**
 * The tasks a codec thread holds, the ones queued behind the one it codes, so it starts the next at once
 * instead of waiting for the main thread to wake, take its answer and send another: on a loaded machine
 * a wake-up can take longer than coding a chunk. When the main thread codes too, it is away for a chunk's
 * coding (6-10 ms) and its hashing at a time, in which a thread with two tasks ran dry: with three (and
 * three chunks in flight per coding thread, FileThreads.inFlightMax), alternating runs, 1 GiB compress
 * 1.76-1.85 -> 1.58-1.66 s and 2.18-2.39 -> 1.92-2.13 s in a noisier hour, 1 GiB decompress 1.94-3.00 ->
 * 1.78-2.15 s, 150 MB even, the same CPU.
 */
function tasksPerThread(codesHere: boolean): number {
  return codesHere ? 3 : 2;
}

/** The threads, the queue that feeds them, the answers awaited, and the spare frame buffers. */
class FileThreadSet implements FileThreads {
  readonly threads: number;
  readonly inFlightMax: number;
  readonly codesOnMainThread: boolean;
  /** A thread's free task slots: it appears once for each task it could take now (none before it is ready). */
  readonly #idle: Worker[] = [];
  readonly #queue: FileTask[] = [];
  readonly #spares: ArrayBuffer[] = [];
  readonly #waiting = new Map<number, { resolve: (result: FileTaskResult) => void; reject: (error: Error) => void }>();
  readonly #workers: Worker[];
  readonly #tasksMax: number;
  readonly #workerData: FileWorkerData;
  /** The main thread's own runner, made when it first codes a chunk. */
  #runner: Promise<FileTaskRunner> | undefined;
  /** The task the main thread is coding, awaited by close() so that nothing writes after it. */
  #hereTask: Promise<void> | undefined;
  #nextId = 0;
  #broken: Error | undefined;

  constructor(options: FileThreadsOptions) {
    const choice = options.codec ?? huffmanChoice;
    const { inputFd, outputFd, chunkBytes } = options;
    this.#workerData = { kernelModule: compileKernel(), inputFd, outputFd, chunkBytes, codec: choice.codec.id, level: choice.level };
    this.codesOnMainThread = options.mainThread === true && mayCodeOnMainThread(choice);
    this.#workers = Array.from({ length: codecThreadsFor(options, this.codesOnMainThread) }, () => this.#startWorker());
    this.threads = this.#workers.length + (this.codesOnMainThread ? 1 : 0);
    this.inFlightMax = this.threads * tasksPerThread(this.codesOnMainThread);
    // Callers bound their chunks in flight (inFlightMax); this catches one that does not.
    this.#tasksMax = this.inFlightMax * 2;
  }

  async compress(position: number, length: number): Promise<{ frame: Uint8Array; checksum: number }> {
    const result = await this.#run({ op: 'compress', position, length });
    if (!result.ok) throw failureOf(result);
    if (result.frame === undefined || result.checksum === undefined) throw new Error('codec thread answered a compress task without a frame');
    return { frame: result.frame, checksum: result.checksum };
  }

  recycle(frame: Uint8Array): void {
    if (this.#spares.length < this.inFlightMax && frame.buffer instanceof ArrayBuffer) this.#spares.push(frame.buffer);
  }

  async decompress(task: Extract<FileThreadTask, { op: 'decompress' }>): Promise<undefined> {
    const result = await this.#run(task);
    if (!result.ok) throw failureOf(result);
    return undefined;
  }

  async close(): Promise<void> {
    this.#broken ??= new Error('codec threads closed');
    await Promise.all([...this.#workers.map((worker) => worker.terminate()), this.#hereTask]);
  }

  #startWorker(): Worker {
    const worker = new Worker(fileWorkerUrl, threadOptions(this.#workerData));
    worker.on('message', (message: FileTaskResult | typeof fileWorkerReady) => {
      if (message === fileWorkerReady) {
        for (let slot = 0; slot < tasksPerThread(this.codesOnMainThread); slot++) this.#idle.push(worker);
        this.#dispatch();
        return;
      }
      this.#idle.push(worker);
      this.#dispatch();
      this.#answer(message);
    });
    worker.on('error', (error) => this.#failAll(new Error(`codec thread failed: ${error.message}`)));
    worker.on('exit', (code) => this.#failAll(new Error(`codec thread exited with code ${code}`)));
    return worker;
  }

  #answer(result: FileTaskResult): void {
    const pending = this.#waiting.get(result.id);
    this.#waiting.delete(result.id);
    pending?.resolve(result);
  }

  #run(task: FileThreadTask): Promise<FileTaskResult> {
    if (this.#broken !== undefined) return Promise.reject(this.#broken);
    if (this.#waiting.size >= this.#tasksMax) return Promise.reject(new RangeError(`codec threads: more than ${this.#tasksMax} tasks at once`));
    const id = this.#nextId++;
    const result = new Promise<FileTaskResult>((resolve, reject) => this.#waiting.set(id, { resolve, reject }));
    this.#queue.push({ ...task, id } as FileTask);
    this.#dispatch();
    return result;
  }

  #dispatch(): void {
    while (this.#idle.length > 0 && this.#queue.length > 0) {
      const worker = this.#idle.pop()!;
      const task = this.#nextTask();
      if (task.op === 'compress' && task.spare !== undefined) worker.postMessage(task, [task.spare]);
      else worker.postMessage(task);
    }
    if (this.codesOnMainThread && this.#hereTask === undefined && this.#queue.length > 0) this.#hereTask = this.#codeHere(this.#nextTask());
  }

  /** The queue's first task, given a spare frame buffer if it compresses and one is free. */
  #nextTask(): FileTask {
    const task = this.#queue.shift()!;
    const spare = task.op === 'compress' ? this.#spares.pop() : undefined;
    return task.op === 'compress' && spare !== undefined ? { ...task, spare } : task;
  }

  /**
   * Codes `task` on this thread, once the events waiting now (a thread's answer, its readiness) are
   * handled: one chunk, a few milliseconds, then the event loop runs again.
   */
  async #codeHere(task: FileTask): Promise<void> {
    await nextTurn();
    let result: FileTaskResult | undefined;
    try {
      if (this.#broken === undefined) {
        this.#runner ??= createFileTaskRunner(this.#workerData);
        result = await (await this.#runner)(task);
      }
    } catch (error) {
      this.#failAll(new Error(`coding on the main thread failed: ${(error as Error).message}`));
    }
    this.#hereTask = undefined;
    if (result === undefined) return;
    this.#dispatch();
    this.#answer(result);
  }

  #failAll(error: Error): void {
    this.#broken ??= error;
    for (const { reject } of this.#waiting.values()) reject(error);
    this.#waiting.clear();
    this.#queue.length = 0;
  }
}

export interface ShaThread {
  /** Announces that the file's first `bytes` bytes are in place and may be hashed. */
  hashUpTo(bytes: number): void;
  /** The SHA-256 of everything announced. */
  digest(): Promise<Uint8Array>;
  close(): Promise<void>;
}

/**
 * The SHA-256 of the file `fd` as it grows to `totalBytes`, for the pipeline's `coders`: on a thread of
 * its own, unless the file is small or the main thread codes beside one codec thread at most. Then the
 * main thread hashes each chunk as it is announced, at 1.6 GB/s, faster than one codec thread codes, and
 * no thread starts for it: 150 MB `dcas compress` on 2 cores, 4 runs each, 0.55-0.59 s and 0.87 CPU-s
 * against 0.64-0.77 s and 1.02-1.19 CPU-s with a hashing thread; 1 GiB even (1.9-2.2 s).
 */
export function startSha(fd: number, totalBytes: number, coders: Pick<FileThreads, 'threads' | 'codesOnMainThread'>): ShaThread {
  const mainThreadHasRoom = coders.codesOnMainThread && coders.threads <= 2;
  return totalBytes <= shaInlineBytesMax || mainThreadHasRoom ? inlineSha(fd) : startShaThread(fd);
}

function inlineSha(fd: number): ShaThread {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(shaReadBytes);
  let hashed = 0;
  return {
    hashUpTo(upTo) {
      while (hashed < upTo) {
        const bytesRead = readSync(fd, buffer, 0, Math.min(shaReadBytes, upTo - hashed), hashed);
        if (bytesRead === 0) throw Object.assign(new Error(`hashing: file ended at byte ${hashed} while hashing up to ${upTo}`), { code: 'INPUT_CHANGED' });
        hash.update(buffer.subarray(0, bytesRead));
        hashed += bytesRead;
      }
    },
    digest: async () => new Uint8Array(hash.digest()),
    close: async () => {},
  };
}

function startShaThread(fd: number): ShaThread {
  const worker = new Worker(shaWorkerUrl, threadOptions({ fd, readBytesMax: shaReadBytes } satisfies ShaWorkerData));
  const answer = new Promise<Uint8Array>((resolve, reject) => {
    worker.once('message', (message: ShaAnswer) => {
      if ('digest' in message) resolve(message.digest);
      else reject(Object.assign(new Error(`hashing: ${message.error}`), { code: message.errno }));
    });
    worker.once('error', (error) => reject(new Error(`hashing thread failed: ${error.message}`)));
    worker.once('exit', (code) => reject(new Error(`hashing thread exited with code ${code}`)));
  });
  answer.catch(() => {});
  const send = (message: ShaMessage) => worker.postMessage(message);
  return {
    hashUpTo: (bytes) => send({ upTo: bytes }),
    digest() {
      send({ digest: true });
      return answer;
    },
    async close() {
      await worker.terminate();
    },
  };
}
