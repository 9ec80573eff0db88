/**
 * Any error a command meets, told as one line for a user: what failed and where, naming the file the
 * user gave, with the exit code it deserves (1 failure, 2 usage).
 */
import { CodecError, FileError } from '../codec/index.ts';
import { CliError, exitFailure } from './output.ts';

/** System error codes that reach here without a sentence of ours, in words. */
const errnoWords: Record<string, string> = {
  EPIPE: 'the reader of the output went away (broken pipe)',
  ENOSPC: 'no space left on the device',
  EACCES: 'permission denied',
  ENOENT: 'no such file or folder',
  EIO: 'input/output error',
};

export async function describeError(error: unknown, input: string | undefined): Promise<{ message: string; exitCode: number }> {
  if (error instanceof CliError) return { message: error.message, exitCode: error.exitCode };
  if (error instanceof CodecError) return { message: input ? `${input}: ${error.message}` : error.message, exitCode: exitFailure };
  if (error instanceof FileError) return { message: error.message, exitCode: exitFailure };
  const errno = error as NodeJS.ErrnoException;
  if (typeof errno?.code === 'string' && typeof errno.message === 'string') {
    const words = errnoWords[errno.code];
    if (words !== undefined) return { message: input ? `${input}: ${words}` : words, exitCode: exitFailure };
    return { message: errno.message, exitCode: exitFailure };
  }
  if (process.env.DCAS_DEBUG) console.error(error);
  return { message: `internal error: ${(error as Error)?.message ?? String(error)} (set DCAS_DEBUG=1 for details)`, exitCode: exitFailure };
}
