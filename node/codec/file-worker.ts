/**
 * A file codec thread: runs the tasks of file-tasks.ts that the main thread hands it (chunk positions,
 * never chunk bytes), one after another in the order they came, and says when it is ready for them.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createFileTaskRunner, fileWorkerReady, type FileTask, type FileTaskResult, type FileWorkerData } from './file-tasks.ts';

const run = await createFileTaskRunner(workerData as FileWorkerData);

/**
 * The main thread queues the next task behind the current one (file-threads.ts), and an xz chunk awaits
 * its coder's end, during which another task must not start (they share the scratch buffer).
 */
let previous: Promise<void> = Promise.resolve();

parentPort?.on('message', (task: FileTask) => {
  previous = previous.then(async () => {
    const result: FileTaskResult = await run(task);
    const transfer = result.ok && result.frame !== undefined ? [result.frame.buffer as ArrayBuffer] : [];
    parentPort?.postMessage(result, transfer);
  });
});
parentPort?.postMessage(fileWorkerReady);
