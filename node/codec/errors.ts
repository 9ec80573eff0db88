/**
 * Typed errors of the codec room. Every failure a user can cause with bad input surfaces as a
 * CodecError with a stable code, and a message that says what failed and where.
 */

import { CodedError } from '../errors.ts';

export type CodecErrorCode =
  | 'CORRUPT_BLOCK' // the kernel found an inconsistent block or stream
  | 'CHECKSUM_MISMATCH' // a chunk decoded, but its bytes are not what was written
  | 'NOT_DCZ' // the input does not start with the .dcz magic
  | 'UNSUPPORTED' // a version or codec this build does not know
  | 'TRUNCATED' // the input ended before the format said it would
  | 'CORRUPT_CONTAINER' // a header, index or footer field is inconsistent
  | 'TOO_LARGE'; // an input beyond a limit of the format or the kernel

export class CodecError extends CodedError<CodecErrorCode> {}
