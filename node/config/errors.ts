/**
 * Typed errors of the config room. A user reads these in a terminal without a debugger, so every
 * message is one line that names the file, the field path and what is wrong with it.
 */

import { CodedError } from '../errors.ts';

export type ConfigErrorCode =
  | 'UNREADABLE' // the file (or a file it names, like the PSK) cannot be read
  | 'SYNTAX' // the file is not valid YAML or JSON
  | 'UNSUPPORTED_FORMAT' // the file extension is neither .yaml, .yml nor .json
  | 'INVALID'; // the document parsed, but a field is missing, unknown or out of range

export class ConfigError extends CodedError<ConfigErrorCode> {
  /** The file the error is about, as the caller named it. */
  readonly file: string;
  /** The dotted field path, or '' when the error concerns the whole file. */
  readonly field: string;

  constructor(code: ConfigErrorCode, file: string, field: string, problem: string) {
    const where = field === '' ? file : `${file}: ${field}`;
    super(code, `${where}: ${oneLine(problem)}`);
    this.file = file;
    this.field = field;
  }
}

/** Messages from parsers span several lines (context, caret); a config error stays on one. */
function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}
