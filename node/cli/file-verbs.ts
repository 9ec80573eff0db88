/**
 * What `dcas compress` and `dcas decompress` do with their files: pick the verb (-d, -t, -l), the
 * input (a file, or stdin for none or -) and the output (FILE.dcz, -o, or stdout for -c, -o - and
 * stdin), then run each file in turn. A failing file is reported on one line and the rest still run,
 * as in gzip; the exit code is then 1.
 */
import { readdir, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  compressFile,
  compressTo,
  decompressFile,
  decompressTo,
  discardSink,
  fileChunks,
  format,
  inputSource,
  listDczFile,
  resolveOutput,
  checkedLevel,
  choiceName,
  codecByName,
  huffmanChoice,
  suffixOf,
  CodecError,
  streamSource,
  streamSink,
  writeAtomically,
  type ByteSink,
  type CodecChoice,
  type CodecInfo,
  type OutputFormat,
  type FileResult,
  type StreamResult,
} from '../codec/index.ts';
import { describeError } from './errors.ts';
import { CliError, counted, exitFailure, exitUsage, formatBytes, printError, printJson, progressBar, type OutputOptions } from './output.ts';

export interface FileCommandOptions extends OutputOptions {
  decompress?: boolean;
  test?: boolean;
  list?: boolean;
  stdout?: boolean;
  output?: string;
  force?: boolean;
  keep?: boolean;
  recursive?: boolean;
  rm?: boolean;
  threads?: number;
  synchronous?: boolean;
  verbose?: boolean;
  chunkSize?: number;
  codec?: CodecChoice;
  format?: OutputFormat;
  /** `-1`..`-19` (or `--level N`): the codec's level, as zstd's flags; without `--codec` it picks zstd. */
  level?: number;
}

type Verb = 'compress' | 'decompress' | 'test' | 'list';

const stdinName = '-';

function verbOf(command: 'compress' | 'decompress', options: FileCommandOptions): Verb {
  if (options.list) return 'list';
  if (options.test) return 'test';
  return options.decompress ? 'decompress' : command;
}

/** Usage errors of the whole command line, found before any file is touched. */
function checkUsage(verb: Verb, inputs: readonly string[], options: FileCommandOptions): void {
  if (options.list && options.test) throw new CliError('-l/--list and -t/--test: choose one', exitUsage);
  if (options.keep && options.rm) throw new CliError('-k/--keep and --rm: choose one', exitUsage);
  if (options.output !== undefined && options.output !== '-' && inputs.length > 1) throw new CliError(`-o ${options.output}: names one output, but ${inputs.length} files were given`, exitUsage);
  if (inputs.filter((input) => input === stdinName).length > 1) throw new CliError('stdin (-) given more than once', exitUsage);
  if (verb === 'compress' && toStdout(stdinName === inputs[0], options) && inputs.length > 1) {
    throw new CliError('-c/--stdout: several .dcz files on stdout would not decode as one; compress them one at a time', exitUsage);
  }
}

/**
 * `--format`, `--codec` and a level flag together (compress and upload): a standard format needs its codec,
 * and implies it when none is given; a mismatch, or a level the codec lacks, is a usage error.
 */
export function resolveCodecFormat(outputFormat: OutputFormat | undefined, codec: CodecChoice | undefined, level?: number): { format: OutputFormat; codec: CodecChoice | undefined } {
  try {
    const resolved = resolveOutput(outputFormat, codec);
    return { format: resolved.format, codec: withLevel(resolved.codec, level) };
  } catch (error) {
    if (error instanceof CodecError) throw new CliError(error.message, exitUsage);
    throw error;
  }
}

/**
 * A level flag sets the level of the chosen codec, or picks zstd when no codec or format chose one (the
 * default codec, huffman, has no levels): `dcas compress -19 f` does what `zstd -19 f` would.
 */
function withLevel(choice: CodecChoice | undefined, level: number | undefined): CodecChoice | undefined {
  if (level === undefined) return choice;
  const codec = choice?.codec ?? zstdCodec();
  return { codec, level: checkedLevel(codec, level) };
}

function zstdCodec(): CodecInfo {
  const codec = codecByName('zstd');
  if (codec === undefined) throw new Error('the codec registry has no zstd');
  return codec;
}

function resolveFormat(options: FileCommandOptions): void {
  const resolved = resolveCodecFormat(options.format, options.codec, options.level);
  options.format = resolved.format;
  options.codec = resolved.codec;
}

function toStdout(fromStdin: boolean, options: FileCommandOptions): boolean {
  return options.stdout === true || options.output === '-' || (fromStdin && options.output === undefined);
}

function refuseTerminal(verb: Verb, options: FileCommandOptions): void {
  if (options.force) return;
  const what = verb === 'compress' ? 'compressed' : 'decompressed';
  if (process.stdout.isTTY) throw new CliError(`stdout is a terminal: refusing to write ${what} data to it (redirect it, use -o FILE, or --force)`, exitUsage);
}

export async function runFileCommand(command: 'compress' | 'decompress', files: string[], options: FileCommandOptions): Promise<void> {
  const verb = verbOf(command, options);
  const given = files.length === 0 ? [stdinName] : files;
  const inputs = options.recursive ? await withFolderFiles(given, verb) : given;
  checkUsage(verb, inputs, options);
  resolveFormat(options);
  const { governed } = await import('./governor.ts');
  let failures = 0;
  for (const input of inputs) {
    try {
      await governed(() => runOne(verb, input, options));
    } catch (error) {
      const { message, exitCode } = await describeError(error, displayName(input));
      printError(message);
      if (exitCode === exitUsage && inputs.length === 1) {
        process.exitCode = exitUsage;
        return;
      }
      failures++;
    }
  }
  if (failures > 0) process.exitCode = exitFailure;
}

/** A bound on the files one -r command takes, so a mistaken `-r /` stops at once instead of walking the disk. */
const recursiveFilesMax = 100_000;

/**
 * -r: each folder among `inputs` becomes the regular files under it, sorted (symbolic links are not
 * followed, as in gzip); compressing takes the files not yet ending in .dcz, the other verbs the .dcz files.
 */
async function withFolderFiles(inputs: readonly string[], verb: Verb): Promise<string[]> {
  const expanded: string[] = [];
  for (const input of inputs) {
    const isFolder = input !== stdinName && (await stat(input).then((info) => info.isDirectory(), () => false));
    if (!isFolder) {
      expanded.push(input);
      continue;
    }
    const entries = await readdir(input, { recursive: true, withFileTypes: true });
    const files = entries
      .filter((entry) => entry.isFile() && entry.name.endsWith('.dcz') === (verb !== 'compress'))
      .map((entry) => join(entry.parentPath, entry.name))
      .sort();
    expanded.push(...files);
    if (expanded.length > recursiveFilesMax) throw new CliError(`-r ${input}: more than ${recursiveFilesMax} files; name fewer folders`, exitUsage);
  }
  return expanded;
}

/** A folder named without -r is refused in words, as gzip does, instead of "not a regular file". */
async function refuseFolder(input: string): Promise<void> {
  const isFolder = await stat(input).then((info) => info.isDirectory(), () => false);
  if (isFolder) throw new CliError(`${input}: is a folder (-r takes the files in it)`);
}

function displayName(input: string): string {
  return input === stdinName ? 'stdin' : input;
}

async function runOne(verb: Verb, input: string, options: FileCommandOptions): Promise<void> {
  const fromStdin = input === stdinName;
  if (fromStdin && process.stdin.isTTY && !options.force) throw new CliError('stdin is a terminal: pipe data in or name a file (or --force to read the terminal)', exitUsage);
  if (!fromStdin) await refuseFolder(input);
  if (verb === 'list') return list(input, options);
  if (verb === 'test') return test(input, options);
  if (verb === 'compress' && !fromStdin && input.endsWith('.dcz') && !options.force) {
    if (!options.quiet) printError(`${input}: already has the .dcz suffix, skipped (--force compresses it again)`);
    return;
  }
  const started = performance.now();
  if (toStdout(fromStdin, options)) {
    refuseTerminal(verb, options);
    const result = await streamed(verb, input, streamSink(process.stdout), options);
    return report(verb, { input: displayName(input), output: 'stdout', ...result, seconds: (performance.now() - started) / 1000 }, options, true);
  }
  const output = options.output ?? (verb === 'compress' ? `${input}${suffixOf(options.format ?? 'dcz')}` : defaultDecompressOutput(input));
  if (fromStdin) {
    const sink: ByteSink = (source) => writeAtomically(output, source, options.force ?? false, options.synchronous ?? false);
    const result = await streamed(verb, input, sink, options);
    return report(verb, { input: 'stdin', output, ...result, seconds: (performance.now() - started) / 1000 }, options, false);
  }
  report(verb, await betweenFiles(verb, input, output, options), options, false);
  if (options.rm) {
    await unlink(input);
    if (options.verbose && !options.json) process.stderr.write(`dcas: ${input}: removed\n`);
  }
}

/**
 * A command's main thread has nothing to do but its file: it codes the kernel's and store's chunks too
 * (file-threads.ts, pool.ts), and a small input alone. A codec thread takes 80-150 ms to start on this
 * VM, which a 1 KB or 16 MB file paid before its first chunk.
 */
const mainThread = true;

/** One end is a stream: the chunks go through a codec pool (bounded memory, all threads). */
async function streamed(verb: 'compress' | 'decompress', input: string, sink: ByteSink, options: FileCommandOptions): Promise<StreamResult> {
  const threads = options.threads === 0 ? undefined : options.threads;
  if (verb === 'compress') {
    const { codec, format: outputFormat } = options;
    const chunkBytes = options.chunkSize ?? format.chunkBytesFor(codec ?? huffmanChoice);
    if (input === stdinName) return compressTo(process.stdin, false, sink, { threads, chunkBytes, codec, format: outputFormat, mainThread });
    return compressTo(fileChunks(input, chunkBytes), true, sink, { threads, chunkBytes, codec, format: outputFormat, mainThread });
  }
  const source = input === stdinName ? streamSource(process.stdin) : await inputSource(input);
  try {
    return await decompressTo(source, sink, { threads, mainThread });
  } finally {
    await source.close();
  }
}

/** Both ends are files: the threaded file pipeline, with a progress bar on a terminal. */
async function betweenFiles(verb: 'compress' | 'decompress', input: string, output: string, options: FileCommandOptions): Promise<FileResult> {
  let bar: ReturnType<typeof progressBar> | undefined;
  const common = { force: options.force, synchronous: options.synchronous, threads: options.threads === 0 ? undefined : options.threads, mainThread };
  try {
    if (verb === 'compress') {
      return await compressFile(input, output, {
        ...common,
        chunkBytes: options.chunkSize,
        codec: options.codec,
        format: options.format,
        onProgress: (progress, total) => {
          bar ??= progressBar('compress  ', total, options);
          bar.update(progress.originalBytes);
        },
      });
    }
    return await decompressFile(input, output, {
      ...common,
      onProgress: (progress, total) => {
        bar ??= progressBar('decompress', total, options);
        bar.update(progress.containerBytes);
      },
    });
  } finally {
    bar?.stop();
  }
}

async function test(input: string, options: FileCommandOptions): Promise<void> {
  const source = input === stdinName ? streamSource(process.stdin) : await inputSource(input);
  try {
    const result = await decompressTo(source, discardSink, { threads: options.threads === 0 ? undefined : options.threads, mainThread });
    if (options.json) printJson({ command: 'test', input: displayName(input), ok: true, originalSize: result.originalBytes, chunks: result.chunks });
    else if (!options.quiet) process.stdout.write(`${displayName(input)}: OK (${counted(result.chunks, 'chunk')}, ${formatBytes(result.originalBytes)}, ${result.checked ?? 'every checksum'} checked)\n`);
  } finally {
    await source.close();
  }
}

async function list(input: string, options: FileCommandOptions): Promise<void> {
  if (input === stdinName) throw new CliError('-l/--list needs a file: the index is at the end of a .dcz, not read from stdin', exitUsage);
  const listing = await listDczFile(input);
  const ratio = listing.originalBytes === 0 ? 1 : listing.compressedBytes / listing.originalBytes;
  if (options.json) {
    printJson({ command: 'list', input, ...listing, ratio: Number(ratio.toFixed(4)) });
    return;
  }
  const columns = [
    ['Chunks', String(listing.chunks)],
    ['Compressed', formatBytes(listing.compressedBytes)],
    ['Original', formatBytes(listing.originalBytes)],
    ['Ratio', ratio.toFixed(3)],
    ['Codec', listing.codec],
    ['Chunk size', formatBytes(listing.chunkBytes)],
    ['SHA-256', listing.sha256],
    ['File', input],
  ];
  const widths = columns.map(([title, value]) => Math.max(title.length, value.length));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd();
  if (!options.quiet) process.stdout.write(`${line(columns.map(([title]) => title))}\n${line(columns.map(([, value]) => value))}\n`);
}

/** Suffixes decompress strips to name its output (the format itself is read from the content). */
const compressedSuffixes = ['.dcz', '.zst', '.gz', '.xz', '.bz2'];

function defaultDecompressOutput(input: string): string {
  const suffix = compressedSuffixes.find((candidate) => input.endsWith(candidate) && input.length > candidate.length);
  if (suffix === undefined) throw new CliError(`${input}: does not end in ${compressedSuffixes.join(', ')}; name the output with -o, or use -c`, exitUsage);
  return input.slice(0, -suffix.length);
}

/** One line (or JSON document) per file; on stderr when the data itself went to stdout. */
function report(verb: Verb, result: FileResult, options: FileCommandOptions, dataOnStdout: boolean): void {
  const ratio = result.originalBytes === 0 ? 1 : result.compressedBytes / result.originalBytes;
  const megabytesPerSecond = result.originalBytes / 1e6 / Math.max(result.seconds, 1e-9);
  const write = (text: string) => (dataOnStdout ? process.stderr : process.stdout).write(text);
  if (options.json) {
    const document = {
      command: verb,
      input: result.input,
      output: result.output,
      originalSize: result.originalBytes,
      compressedSize: result.compressedBytes,
      ratio: Number(ratio.toFixed(4)),
      chunks: result.chunks,
      threads: result.threads,
      seconds: Number(result.seconds.toFixed(3)),
      mbPerSecond: Number(megabytesPerSecond.toFixed(1)),
      // What was written; decompress reads both from the file, so only compress reports them.
      ...(verb === 'compress' ? { codec: choiceName(options.codec ?? huffmanChoice), format: options.format ?? 'dcz' } : {}),
    };
    if (dataOnStdout) process.stderr.write(`${JSON.stringify(document)}\n`);
    else printJson(document);
  } else if (!options.quiet && (!dataOnStdout || options.verbose)) {
    const sizes = `${formatBytes(result.originalBytes)} original, ${formatBytes(result.compressedBytes)} compressed (ratio ${ratio.toFixed(3)})`;
    const detail = options.verbose ? `, ${counted(result.chunks, 'chunk')}` : '';
    write(`${result.output}: ${sizes}, ${result.seconds.toFixed(2)} s, ${megabytesPerSecond.toFixed(0)} MB/s on ${counted(result.threads, 'thread')}${detail}\n`);
  }
}
