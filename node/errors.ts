/**
 * The one base of DCaS's typed errors: a stable `code` a program can switch on, a `name` that is the
 * subclass's own (so a log line says `BlobError`, not `Error`), and the standard `cause`. A leaf module that
 * imports nothing, so every room may import it. Each room's error is a subclass, so `instanceof` tells them
 * apart and the code's type lists only that room's codes.
 */
export class CodedError<Code extends string> extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}
