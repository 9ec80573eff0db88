/**
 * How the CLI speaks: one-line errors on stderr, JSON documents on stdout, progress bars on a terminal.
 */
import { createRequire } from 'node:module';
import type * as CliProgress from 'cli-progress';
import { CodedError } from '../errors.ts';

export const exitOk = 0;
export const exitFailure = 1;
export const exitUsage = 2;

/** An error whose message is already fit for a user: printed as one line, exit 1 (or `exitCode`). */
export class CliError extends CodedError<'USAGE' | 'FAILURE'> {
  readonly exitCode: number;

  constructor(message: string, exitCode = exitFailure) {
    super(exitCode === exitUsage ? 'USAGE' : 'FAILURE', message);
    this.exitCode = exitCode;
  }
}

export interface OutputOptions {
  json?: boolean;
  quiet?: boolean;
}

/**
 * Characters that change how a terminal shows what follows them, or hide themselves: C0 and C1
 * controls (escape sequences), bidirectional overrides and isolates (text that reads backwards, so
 * `evil\u202Etxt.exe` shows as `evilexe.txt`), zero-width characters and line separators.
 */
const deceptiveCharacters = /[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]/g;

/**
 * A name from the cluster (file names, node names, error texts) as it is safe to print: each of the
 * characters above becomes a visible `\u{…}` escape and a backslash becomes `\\`, so two names that
 * print alike are alike.
 */
export function escapeForTerminal(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(deceptiveCharacters, (character) => `\\u{${character.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}}`);
}

/** The same, less C0 controls: JSON.stringify escapes those inside strings, and the rest is layout. */
const deceptiveInJson = /[\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]/g;

/** JSON with the same characters written as \uXXXX escapes: the document means the same, and prints safely. */
export function printJson(document: unknown): void {
  const text = JSON.stringify(document, null, 2).replace(deceptiveInJson, (character) => `\\u${character.charCodeAt(0).toString(16).padStart(4, '0')}`);
  process.stdout.write(`${text}\n`);
}

export function oneLine(message: string): string {
  return message.replace(/\s*\n\s*/g, ' ').trim();
}

export function printError(message: string): void {
  process.stderr.write(`dcas: ${escapeForTerminal(oneLine(message))}\n`);
}

/** "1 chunk", "3 chunks": a count with its noun, singular for one. */
export function counted(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

export interface ProgressBar {
  update(done: number): void;
  stop(): void;
}

/** A progress line's parts after the label, each with the most columns it takes, in the order they are kept. */
const progressParts = [
  { text: '{percentage}%', columns: 4 },
  { text: '{doneText} / {totalText}', columns: 23 },
  { text: '{speed} MB/s', columns: 10 },
  { text: 'ETA {eta_formatted}', columns: 12 },
] as const;
const separator = ' | ';
const barColumnsMin = 10;
const barColumnsMax = 40;

/**
 * The line's format for a terminal `columns` wide: a line longer than the terminal is cut at its end,
 * losing speed and ETA, so parts are dropped instead, in a fixed order: the bar first, then the ETA.
 * At 80 columns everything but a full bar fits.
 */
export function progressLayout(label: string, columns: number): { format: string; barsize: number } {
  for (const kept of [progressParts.length, progressParts.length - 1, 2]) {
    const parts = progressParts.slice(0, kept);
    const text = parts.map((part) => part.text).join(separator);
    const width = label.length + 1 + parts.reduce((sum, part) => sum + part.columns, 0) + separator.length * (parts.length - 1);
    const barsize = Math.min(barColumnsMax, columns - 1 - width - 1);
    if (kept === progressParts.length && barsize >= barColumnsMin) return { format: `${label} {bar} ${text}`, barsize };
    if (width < columns || kept === 2) return { format: `${label} ${text}`, barsize: 0 };
  }
  throw new Error('unreachable: the last layout is always returned');
}

/** A progress bar on stderr when it is a terminal and neither --json nor --quiet was given. */
export function progressBar(label: string, total: number, options: OutputOptions): ProgressBar {
  if (options.json || options.quiet || !process.stderr.isTTY || total === 0) return { update() {}, stop() {} };
  const started = performance.now();
  const { format, barsize } = progressLayout(label, process.stderr.columns ?? 80);
  // Loaded only when a bar is drawn: 5-7 ms of start-up that a command in a pipe or script never needs.
  const { SingleBar } = createRequire(import.meta.url)('cli-progress') as typeof CliProgress;
  const bar = new SingleBar({
    stream: process.stderr,
    format,
    barsize,
    hideCursor: true,
    clearOnComplete: true,
    etaBuffer: 20,
  });
  const fields = (done: number) => ({
    doneText: formatBytes(done),
    totalText: formatBytes(total),
    speed: (done / 1e6 / Math.max((performance.now() - started) / 1000, 1e-3)).toFixed(0),
  });
  bar.start(total, 0, fields(0));
  return {
    update: (done) => bar.update(Math.min(done, total), fields(done)),
    stop: () => bar.stop(),
  };
}

/**
 * `text` broken at spaces into lines of at most `width` columns (a word longer than that stands alone
 * on its line, never cut), continuation lines indented by `indent` spaces. For banners printed to a
 * terminal, where the terminal's own wrapping would break words anywhere.
 */
export function wrapWords(text: string, width: number, indent = 4): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    const candidate = line === '' ? word : `${line} ${word}`;
    if (candidate.length <= width || line.trim() === '') line = candidate;
    else {
      lines.push(line);
      line = `${' '.repeat(indent)}${word}`;
    }
  }
  lines.push(line);
  return lines.join('\n');
}
