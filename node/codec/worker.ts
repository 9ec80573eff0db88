/**
 * A codec worker thread: one WASM kernel instance per thread, loaded once, reused for every task.
 * Errors go back as values, because a thrown error loses its class and code crossing threads.
 */
import { crc32c } from '@node-rs/crc32';
import { workerData } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { compressChunk, decompressChunk, prepareCoder } from './coders.ts';
import { choiceOf, codecHuffmanId } from './codecs.ts';
import { freeBuffer } from './buffers.ts';
import { CodecError } from './errors.ts';
import { chunkHeaderBytes, encodeChunkHeader } from './format.ts';
import { loadKernel } from './kernel.ts';
import type { CodecTask, CodecTaskResult, CodecWorkerData } from './pool.ts';

/** Piscina's protocol for returning a value whose buffers move to the caller instead of being copied. */
function transferring(result: CodecTaskResult, ...views: Uint8Array[]): object {
  const transferable = { [transferableSymbol]: views.map((view) => view.buffer), [valueSymbol]: result };
  return move(transferable as unknown as ArrayBuffer);
}

const kernel = loadKernel((workerData as CodecWorkerData | undefined)?.kernelModule);

/** The Huffman kernel codes on this thread directly; other codecs go through coders.ts. The frame starts `headroom` bytes in. */
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

export default async function run(task: CodecTask): Promise<CodecTaskResult | object> {
  try {
    if (task.op === 'compress') {
      const checksum = crc32c(task.data);
      const text = task.countText === true ? kernel.countText(task.data) : undefined;
      const originalBytes = task.data.length;
      // A .dcz chunk record: the frame is coded behind room for its header, which is written here.
      const headroom = task.record === true ? chunkHeaderBytes : 0;
      const frame = await compressWith(task, headroom);
      if (headroom > 0) frame.set(encodeChunkHeader({ originalBytes, compressedBytes: frame.length - headroom, checksum }), 0);
      if (task.giveBack === true) return transferring({ ok: true, op: 'compress', frame, checksum, text, input: task.data }, frame, task.data);
      return transferring({ ok: true, op: 'compress', frame, checksum, text }, frame);
    }
    const data = await decompressWith(task);
    // The frame's buffer came with the task: freed now, not at this thread's next collection, unless
    // the decoded bytes are in it (a stored chunk).
    if (data.buffer !== task.frame.buffer) freeBuffer(new Uint8Array(task.frame.buffer));
    if (task.checksum !== undefined && crc32c(data) !== task.checksum) {
      return { ok: false, code: 'CHECKSUM_MISMATCH', message: 'checksum mismatch: decoded bytes differ from what was written' };
    }
    return transferring({ ok: true, op: 'decompress', data }, data);
  } catch (error) {
    if (error instanceof CodecError) return { ok: false, code: error.code, message: error.message };
    throw error;
  }
}
