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

/** Network failures that reach a message as bare codes, told in words. */
const networkPatterns: readonly [RegExp, string][] = [
  [/getaddrinfo (?:ENOTFOUND|EAI_AGAIN|EAI_NONAME) (\S+)/, 'host $1 not found'],
  [/\b(?:UND_ERR_SOCKET|ECONNRESET|socket hang up)\b/, 'connection closed by the server'],
  [/\b(?:ETIMEDOUT|UND_ERR_CONNECT_TIMEOUT)\b/, 'connection timed out'],
  [/\bEHOSTUNREACH\b/, 'host unreachable'],
  [/\bENETUNREACH\b/, 'network unreachable'],
  // Node's own wording suggests --use-system-ca, which is not how dcas is told to trust a CA.
  [
    /\b(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|CERT_HAS_EXPIRED|ERR_TLS_CERT_ALTNAME_INVALID|self-signed certificate|unable to verify the first certificate)\b(?:; if the root CA is installed locally, try running Node\.js with --use-system-ca)?/,
    "the gateway's TLS certificate is not trusted ($1); give its certificate authority with --ca FILE",
  ],
];

export function networkInWords(message: string): string {
  for (const [pattern, words] of networkPatterns) {
    const match = pattern.exec(message);
    if (match !== null) return message.slice(0, match.index) + match[0].replace(pattern, words) + message.slice(match.index + match[0].length);
  }
  return message;
}

/** The codes of an error and its causes (fetch hides the socket's code in `cause`). */
function codesOf(error: unknown): string {
  const codes: string[] = [];
  for (let at = error as { code?: unknown; cause?: unknown } | undefined, depth = 0; at !== undefined && at !== null && depth < 4; at = at.cause as typeof at, depth++) {
    if (typeof at.code === 'string') codes.push(at.code);
  }
  return codes.join(' ');
}

export async function describeError(error: unknown, input: string | undefined): Promise<{ message: string; exitCode: number }> {
  if (error instanceof CliError) return { message: error.message, exitCode: error.exitCode };
  if (error instanceof CodecError) return { message: input ? `${input}: ${error.message}` : error.message, exitCode: exitFailure };
  if (error instanceof FileError) return { message: error.message, exitCode: exitFailure };
  const codes = codesOf(error);
  const network = networkInWords(codes);
  if (network !== codes) return { message: input ? `${input}: ${network}` : network, exitCode: exitFailure };
  const errno = error as NodeJS.ErrnoException;
  if (typeof errno?.code === 'string' && typeof errno.message === 'string') {
    const words = errnoWords[errno.code];
    if (words !== undefined) return { message: input ? `${input}: ${words}` : words, exitCode: exitFailure };
    return { message: errno.message, exitCode: exitFailure };
  }
  if (process.env.DCAS_DEBUG) console.error(error);
  return { message: `internal error: ${(error as Error)?.message ?? String(error)} (set DCAS_DEBUG=1 for details)`, exitCode: exitFailure };
}
