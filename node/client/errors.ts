/**
 * The client's one error type. `code` is the server's error code (docs/PROTOCOL.md) when the node
 * refused something, or one of the client's own codes when the failure happened on this side.
 */
import type { ErrorCode } from '../protocol/index.ts';
import { CodedError } from '../errors.ts';

export type ClientErrorCode =
  | ErrorCode
  /** The node could not be reached (refused, DNS, TLS, handshake timeout, non-101 answer). */
  | 'UNREACHABLE'
  /** The connection closed while a request was waiting. */
  | 'DISCONNECTED'
  /** The node said something this client does not understand. */
  | 'PROTOCOL'
  /** A downloaded original's SHA-256 is not the job's. */
  | 'CHECKSUM_MISMATCH'
  /** A download ended with more or fewer bytes than announced. */
  | 'SIZE_MISMATCH'
  | 'OUTPUT_EXISTS'
  | 'BAD_ARGUMENT';

export class DcasClientError extends CodedError<ClientErrorCode> {
  /** The job the failure is about, when there is one. */
  readonly jobId: string | undefined;
  /** With BUSY: when the node said to try again (its error frame's retryAfterMs, or HTTP Retry-After). */
  readonly retryAfterMs: number | undefined;

  constructor(code: ClientErrorCode, message: string, jobId?: string, retryAfterMs?: number) {
    super(code, message);
    this.jobId = jobId;
    this.retryAfterMs = retryAfterMs;
  }
}
