/**
 * Long file commands run with the memory governor, so dead chunk buffers are collected promptly.
 */
/**
 * A command that runs longer than this starts the memory governor, so a small file never loads it. The
 * governor reports nothing for a command (no logger): loading pino for it cost about 40 ms of CPU on
 * this thread while the codec threads worked, and a flush of stdout at exit.
 */
const governorDelayMs = 200;

/**
 * Runs a file command with dead chunk buffers collected promptly, so memory stays bounded on any file
 * size. The threaded pipeline holds few buffers on this thread; the streaming decoder, which a damaged
 * .dcz falls back to, holds every decoded chunk here until it is written (measured on a 1 GiB file with
 * a damaged trailer: peak RSS 278 MB without the governor, 259 MB with it).
 */
export async function governed<T>(run: () => Promise<T>): Promise<T> {
  let memory: { stop(): void } | undefined;
  let stopped = false;
  const timer = setTimeout(async () => {
    const { startMemoryGovernor } = await import('../runtime/index.ts');
    // 16 MiB, not a node's 64: a command's heap is small, so a forced collection costs it little, and its
    // streaming decoder's buffers are the most of its memory.
    if (!stopped) memory = startMemoryGovernor({ externalBytesMax: 16 * 1024 * 1024 });
  }, governorDelayMs);
  try {
    return await run();
  } finally {
    stopped = true;
    clearTimeout(timer);
    memory?.stop();
  }
}

