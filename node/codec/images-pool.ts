/**
 * A pool of image worker threads (piscina) running optimizeImage, one image per thread at a time.
 * The output comes back transferred, not copied.
 */
import { availableParallelism } from 'node:os';
import { piscinaClass } from './piscina.ts';
import { threadEnvironment } from './file-threads.ts';
import { ImageError, type ImageOptions, type ImageResult } from './images.ts';
import type { ImageTask, ImageTaskResult } from './images-worker.ts';

export interface ImagePoolOptions {
  threads?: number;
  /** Images waiting for a thread beyond this are refused with IMAGE_QUEUE_FULL; default 256. */
  queuedMax?: number;
}

export interface ImagePool {
  readonly threads: number;
  /** Images coded by the pool's threads so far, including those that failed with an ImageError. */
  readonly completed: number;
  /** Optimises one image on a worker thread. */
  optimize(bytes: Uint8Array, options: ImageOptions): Promise<ImageResult & { threadId: number }>;
  close(): Promise<void>;
}

const workerUrl = new URL('./images-worker.ts', import.meta.url).href;
const queuedMaxDefault = 256;

export function createImagePool(options: ImagePoolOptions = {}): ImagePool {
  const threads = options.threads ?? availableParallelism();
  const queuedMax = options.queuedMax ?? queuedMaxDefault;
  if (!Number.isInteger(threads) || threads < 1) throw new RangeError(`threads must be a positive integer, got ${threads}`);
  if (!Number.isInteger(queuedMax) || queuedMax < 0) throw new RangeError(`queuedMax must be a non-negative integer, got ${queuedMax}`);
  // Decoded pixels live in libvips and oxipng (native memory); the JS heap holds only the input and
  // output buffers, which are external to it, so a modest heap per thread is enough.
  const Piscina = piscinaClass();
  const piscina = new Piscina({
    filename: workerUrl,
    minThreads: threads,
    maxThreads: threads,
    maxQueue: queuedMax,
    idleTimeout: 60_000,
    resourceLimits: { maxYoungGenerationSizeMb: 8, maxOldGenerationSizeMb: 128 },
    env: threadEnvironment(),
  });

  return {
    threads,
    get completed() {
      return piscina.completed;
    },
    async optimize(input, imageOptions) {
      // A copy the thread takes over: the caller keeps its bytes, and copying costs far less than coding.
      const bytes = new Uint8Array(input);
      let answer: ImageTaskResult;
      try {
        answer = await piscina.run({ bytes, options: imageOptions } satisfies ImageTask, { transferList: [bytes.buffer as ArrayBuffer] });
      } catch (error) {
        if (piscina.queueSize >= queuedMax) throw new ImageError('IMAGE_QUEUE_FULL', `image queue full: ${queuedMax} images wait for ${threads} threads`);
        throw error;
      }
      if (!answer.ok) throw new ImageError(answer.code, answer.message);
      return { ...answer.result, threadId: answer.threadId };
    },
    async close() {
      await piscina.close();
    },
  };
}
