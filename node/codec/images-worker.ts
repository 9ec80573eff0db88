/**
 * An image worker thread: runs optimizeImage on one image at a time. Errors go back as values, because a
 * thrown error loses its class and code crossing threads.
 */
import { threadId } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { ImageError, optimizeImage, type ImageOptions, type ImageResult, type ImageErrorCode } from './images.ts';

export interface ImageTask {
  bytes: Uint8Array;
  options: ImageOptions;
}

export type ImageTaskResult = { ok: true; result: ImageResult; threadId: number } | { ok: false; code: ImageErrorCode; message: string };

export default async function run(task: ImageTask): Promise<ImageTaskResult | object> {
  try {
    const result = await optimizeImage(task.bytes, task.options);
    // Native libraries return Buffers over memory they own, which cannot be transferred: one copy into
    // an ArrayBuffer of our own, which then moves to the caller (piscina's transfer protocol).
    const bytes = new Uint8Array(result.bytes);
    const answer: ImageTaskResult = { ok: true, result: { ...result, bytes }, threadId };
    return move({ [transferableSymbol]: [bytes.buffer], [valueSymbol]: answer } as unknown as ArrayBuffer);
  } catch (error) {
    if (error instanceof ImageError) return { ok: false, code: error.code, message: error.message };
    throw error;
  }
}
