/**
 * What a codec pool's thread does with one task (pool.ts CodecTask), on whichever thread runs it: a
 * pool thread (worker.ts), or the calling thread of a pool that codes there too (CodecPoolOptions
 * mainThread). Errors of the data go back as values, because a thrown error loses its class and code
 * crossing threads.
 */
import { crc32c } from '@node-rs/crc32';
import { compressChunk, decompressChunk, prepareCoder } from './coders.ts';
import { choiceOf, codecHuffmanId } from './codecs.ts';
import { freeBacking } from './buffers.ts';
import { CodecError } from './errors.ts';
import { chunkHeaderBytes, encodeChunkHeader } from './format.ts';
import type { Kernel } from './kernel.ts';
import type { CodecTask, CodecTaskResult } from './pool.ts';

/** A task's result and the views in it whose buffers a thread hands over with it (to transfer, not copy). */
export interface CodecTaskOutcome {
  result: CodecTaskResult;
  handedOver: Uint8Array[];
}

/** Runs tasks with `kernel`, this thread's instance of the Huffman kernel; other codecs go through coders.ts. */
export function createCodecTaskRunner(kernel: Kernel): (task: CodecTask) => Promise<CodecTaskOutcome> {
  /** The frame starts `headroom` bytes in. */
  async function compressWith(task: Extract<CodecTask, { op: 'compress' }>, headroom: number): Promise<Uint8Array> {
    if (task.codec === codecHuffmanId) return kernel.compress(task.data, headroom, task.into);
    const choice = choiceOf(task.codec, task.level);
    await prepareCoder(choice.codec.name);
    return compressChunk(choice, task.data, headroom);
  }

  async function decompressWith(task: Extract<CodecTask, { op: 'decompress' }>): Promise<Uint8Array> {
    if (task.codec === codecHuffmanId) {
      if (task.originalBytes === undefined) throw new CodecError('CORRUPT_CONTAINER', 'a Huffman frame needs its original length');
      return kernel.decompress(task.frame, task.originalBytes, task.into);
    }
    const choice = choiceOf(task.codec, task.level);
    await prepareCoder(choice.codec.name);
    return decompressChunk(choice, task.frame, task.originalBytes);
  }

  async function compress(task: Extract<CodecTask, { op: 'compress' }>): Promise<CodecTaskOutcome> {
    const checksum = crc32c(task.data);
    const text = task.countText === true ? kernel.countText(task.data) : undefined;
    const originalBytes = task.data.length;
    // A .dcz chunk record: the frame is coded behind room for its header, which is written here.
    const headroom = task.record === true ? chunkHeaderBytes : 0;
    const frame = await compressWith(task, headroom);
    if (headroom > 0) frame.set(encodeChunkHeader({ originalBytes, compressedBytes: frame.length - headroom, checksum }), 0);
    if (task.giveBack === true) return { result: { ok: true, op: 'compress', frame, checksum, text, input: task.data }, handedOver: [frame, task.data] };
    return { result: { ok: true, op: 'compress', frame, checksum, text }, handedOver: [frame] };
  }

  async function decompress(task: Extract<CodecTask, { op: 'decompress' }>): Promise<CodecTaskOutcome> {
    const data = await decompressWith(task);
    // The frame's buffer came with the task: freed now, not at the thread's next collection, unless
    // the decoded bytes are in it (a stored chunk).
    if (data.buffer !== task.frame.buffer) freeBacking(task.frame);
    if (task.checksum !== undefined && crc32c(data) !== task.checksum) {
      return { result: { ok: false, code: 'CHECKSUM_MISMATCH', message: 'checksum mismatch: decoded bytes differ from what was written' }, handedOver: [] };
    }
    return { result: { ok: true, op: 'decompress', data }, handedOver: [data] };
  }

  return async (task) => {
    try {
      return task.op === 'compress' ? await compress(task) : await decompress(task);
    } catch (error) {
      if (error instanceof CodecError) return { result: { ok: false, code: error.code, message: error.message }, handedOver: [] };
      throw error;
    }
  };
}
