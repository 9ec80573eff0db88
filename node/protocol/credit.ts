/**
 * The upload credit window (docs/PROTOCOL.md, "Flow control"), as two pure objects: the gateway keeps a
 * `CreditReceiver` per upload, the client a `CreditSender`. Neither touches a socket, a timer or the
 * clock; the caller sends the frames and `credit` messages these objects decide on. Together they keep
 * the invariant the gateway's memory bound rests on: the bytes a client has sent never exceed the credit
 * granted, so an upload buffers at most one window at its gateway however fast the client sends.
 */

/** What the gateway does with a binary frame of an upload. */
export type FrameVerdict =
  | { accepted: true }
  /** The frame overran the credit: a protocol violation that closes the connection. */
  | { accepted: false; creditLeft: number };

/**
 * The gateway's side: the window is granted at upload-accepted; bytes come back as credit once the jobs
 * room has taken them, batched so a full window returns in about `grantsPerWindow` messages.
 */
export class CreditReceiver {
  readonly windowBytes: number;
  readonly grantsPerWindow: number;
  /** Credit granted since upload-accepted: the client may have sent at most this many bytes. */
  grantedBytes: number;
  receivedBytes = 0;
  /** Received and kept for the jobs room, not yet taken by it. */
  bufferedBytes = 0;
  /** Taken by the jobs room but not yet granted back (grants are batched). */
  owedBytes = 0;

  constructor(windowBytes: number, grantsPerWindow: number) {
    if (!(windowBytes > 0) || !(grantsPerWindow >= 1)) throw new RangeError(`credit window: ${windowBytes} bytes in ${grantsPerWindow} grants`);
    this.windowBytes = windowBytes;
    this.grantsPerWindow = grantsPerWindow;
    this.grantedBytes = windowBytes;
  }

  /** The credit the client has not used yet. */
  get creditLeft(): number {
    return this.grantedBytes - this.receivedBytes;
  }

  /**
   * A binary frame arrived. An accepted frame counts against the credit; `keep` says whether its bytes
   * are buffered for the jobs room (false once the upload failed: the frame was in flight and is dropped).
   */
  receive(bytes: number, keep: boolean): FrameVerdict {
    if (this.receivedBytes + bytes > this.grantedBytes) return { accepted: false, creditLeft: this.creditLeft };
    this.receivedBytes += bytes;
    if (keep) {
      this.bufferedBytes += bytes;
      if (this.bufferedBytes > this.windowBytes) throw new Error(`credit window broken: ${this.bufferedBytes} bytes buffered, window ${this.windowBytes}`);
    }
    return { accepted: true };
  }

  /**
   * The jobs room is done with `bytes` buffered bytes. When it took them (`grant` true: the upload is
   * still receiving) they are owed back; the result is the credit to grant now, or 0 to wait for more.
   */
  taken(bytes: number, grant: boolean): number {
    this.bufferedBytes -= bytes;
    if (this.bufferedBytes < 0) throw new Error(`credit window broken: ${-this.bufferedBytes} bytes taken that were never buffered`);
    if (!grant) return 0;
    this.owedBytes += bytes;
    if (this.owedBytes < this.windowBytes / this.grantsPerWindow && this.bufferedBytes > 0) return 0;
    const granting = this.owedBytes;
    this.grantedBytes += granting;
    this.owedBytes = 0;
    return granting;
  }
}

/** The client's side: what it may send now. */
export class CreditSender {
  /** Bytes the gateway has granted and the client has not sent. */
  creditBytes: number;

  constructor(initialCredit: number) {
    if (!(initialCredit >= 0)) throw new RangeError(`credit: ${initialCredit} bytes`);
    this.creditBytes = initialCredit;
  }

  /** A `credit` message arrived. */
  grant(bytes: number): void {
    if (!(bytes > 0)) throw new RangeError(`a credit message of ${bytes} bytes`);
    this.creditBytes += bytes;
  }

  /** How many of `wanted` bytes may go in the next frame (0: wait for credit); counted as sent. */
  take(wanted: number): number {
    const length = Math.min(this.creditBytes, wanted);
    this.creditBytes -= length;
    return length;
  }
}
