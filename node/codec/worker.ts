/**
 * A codec worker thread: one WASM kernel instance per thread, loaded once, reused for every task
 * (codec-tasks.ts), whose buffers go back to the caller transferred, not copied.
 */
import { workerData } from 'node:worker_threads';
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { createCodecTaskRunner } from './codec-tasks.ts';
import { loadKernel } from './kernel.ts';
import type { CodecTask, CodecTaskResult, CodecWorkerData } from './pool.ts';

/** Piscina's protocol for returning a value whose buffers move to the caller instead of being copied. */
function transferring(result: CodecTaskResult, views: Uint8Array[]): object {
  const transferable = { [transferableSymbol]: views.map((view) => view.buffer), [valueSymbol]: result };
  return move(transferable as unknown as ArrayBuffer);
}

const runTask = createCodecTaskRunner(loadKernel((workerData as CodecWorkerData | undefined)?.kernelModule));

export default async function run(task: CodecTask): Promise<CodecTaskResult | object> {
  const { result, handedOver } = await runTask(task);
  return handedOver.length > 0 ? transferring(result, handedOver) : result;
}
