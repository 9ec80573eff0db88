/**
 * The main thread's side of the file pipeline: a fixed set of file codec threads (file-worker.ts) fed
 * from one bounded queue, and the whole-file SHA-256 (sha-worker.ts on a thread of its own, or here for
 * small files). Threads start once per file command; the kernel is compiled once here and posted to each.
 */
import { createHash } from 'node:crypto';
import { readSync } from 'node:fs';
import { getCompileCacheDir } from 'node:module';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { huffmanChoice, type CodecChoice } from './codecs.ts';
import { CodecError } from './errors.ts';
import type { FileTask, FileTaskResult, FileWorkerData } from './file-worker.ts';
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
  /**
   * Codes the input's bytes [position, position + length); resolves with the frame and the CRC32C of the
   * bytes, and the bytes themselves (`input`) when they were read into this thread's memory, for the
   * caller to hash instead of reading them again.
   */
  compress(position: number, length: number): Promise<{ frame: Uint8Array; checksum: number; input?: Uint8Array }>;
  /** Hands a written frame's memory back, to hold a later frame, and the chunk's input, to hold a later chunk (a few of each are kept). */
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
  threads: number;
  inputFd: number;
  outputFd: number;
  chunkBytes: number;
  codec?: CodecChoice;
}

export function startFileThreads(options: FileThreadsOptions): FileThreads {
  if (!Number.isInteger(options.threads) || options.threads < 1) throw new RangeError(`threads must be a positive integer, got ${options.threads}`);
  return new FileThreadSet(options);
}

// Each thread holds up to this many tasks, the next one queued behind the one it codes, so it starts
// that one at once instead of waiting for this thread to wake, take its answer and send another: on
// a loaded machine a wake-up can take longer than coding a chunk.
const tasksPerThread = 2;

/** The threads, the queue that feeds them, the answers awaited, and the spare frame buffers. */
class FileThreadSet implements FileThreads {
  readonly threads: number;
  /** A thread's free task slots: it appears once for each task it could take now. */
  readonly #idle: Worker[] = [];
  readonly #queue: FileTask[] = [];
  readonly #spares: ArrayBuffer[] = [];
  readonly #waiting = new Map<number, { resolve: (result: FileTaskResult) => void; reject: (error: Error) => void }>();
  readonly #workers: Worker[];
  // Callers bound their chunks in flight (twice the threads); this catches one that does not.
  readonly #tasksMax: number;
  #nextId = 0;
  #broken: Error | undefined;

  constructor(options: FileThreadsOptions) {
    this.threads = options.threads;
    this.#tasksMax = options.threads * 4;
    const { codec, level } = options.codec ?? huffmanChoice;
    const workerData: FileWorkerData = { kernelModule: compileKernel(), inputFd: options.inputFd, outputFd: options.outputFd, chunkBytes: options.chunkBytes, codec: codec.id, level };
    this.#workers = Array.from({ length: options.threads }, () => this.#startWorker(workerData));
    // One free slot per task a thread may hold, interleaved, so the first tasks go to different threads.
    for (let slot = 0; slot < tasksPerThread; slot++) this.#idle.push(...this.#workers);
  }

  async compress(position: number, length: number): Promise<{ frame: Uint8Array; checksum: number }> {
    const result = await this.#run({ op: 'compress', position, length });
    if (!result.ok) throw failureOf(result);
    if (result.frame === undefined || result.checksum === undefined) throw new Error('codec thread answered a compress task without a frame');
    return { frame: result.frame, checksum: result.checksum };
  }

  recycle(frame: Uint8Array): void {
    if (this.#spares.length < this.threads * 2 && frame.buffer instanceof ArrayBuffer) this.#spares.push(frame.buffer);
  }

  async decompress(task: Extract<FileThreadTask, { op: 'decompress' }>): Promise<undefined> {
    const result = await this.#run(task);
    if (!result.ok) throw failureOf(result);
    return undefined;
  }

  async close(): Promise<void> {
    this.#broken ??= new Error('codec threads closed');
    await Promise.all(this.#workers.map((worker) => worker.terminate()));
  }

  #startWorker(workerData: FileWorkerData): Worker {
    const worker = new Worker(fileWorkerUrl, threadOptions(workerData));
    worker.on('message', (result: FileTaskResult) => {
      const pending = this.#waiting.get(result.id);
      this.#waiting.delete(result.id);
      this.#idle.push(worker);
      this.#dispatch();
      pending?.resolve(result);
    });
    worker.on('error', (error) => this.#failAll(new Error(`codec thread failed: ${error.message}`)));
    worker.on('exit', (code) => this.#failAll(new Error(`codec thread exited with code ${code}`)));
    return worker;
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
      const task = this.#queue.shift()!;
      const spare = task.op === 'compress' ? this.#spares.pop() : undefined;
      if (spare === undefined) worker.postMessage(task);
      else worker.postMessage({ ...task, spare }, [spare]);
    }
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

/** The SHA-256 of the file `fd` as it grows to `totalBytes`: on a thread of its own, unless the file is small. */
export function startSha(fd: number, totalBytes: number): ShaThread {
  return totalBytes <= shaInlineBytesMax ? inlineSha(fd) : startShaThread(fd);
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
