/**
 * `dcas compress` and `dcas decompress`: the codec on local files, no cluster.
 */
import type { Command } from 'commander';
import { Option } from 'commander';
import { compressFile, decompressFile, type FileResult } from '../codec/index.ts';
import { format } from '../codec/index.ts';
import { CliError, exitUsage, formatBytes, printJson, progressBar, type OutputOptions } from './output.ts';

interface CodecCommandOptions extends OutputOptions {
  output?: string;
  force?: boolean;
  synchronous?: boolean;
  threads?: number;
  chunkSize?: number;
}

const sizeUnits: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3 };

/** Parses "4MiB", "512k", "1048576"; units are binary (k = 1024), as for memory. */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const multiplier = match ? sizeUnits[match[2].toLowerCase()] : undefined;
  if (!match || multiplier === undefined) throw new CliError(`invalid size "${text}" (examples: 4MiB, 512k, 1048576)`, exitUsage);
  return Math.floor(Number(match[1]) * multiplier);
}

function parseChunkSize(text: string): number {
  const value = parseSize(text);
  if (value < format.chunkBytesMin || value > format.chunkBytesMax) {
    throw new CliError(`--chunk-size ${text}: must be between ${formatBytes(format.chunkBytesMin)} and ${formatBytes(format.chunkBytesMax)}`, exitUsage);
  }
  return value;
}

export function parsePositiveInteger(text: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1) throw new CliError(`expected a positive integer, got "${text}"`, exitUsage);
  return value;
}

/**
 * A command that runs longer than this starts the memory governor. Loading it (and pino) costs about
 * 45 ms of start-up, more than a small file takes; a long command pays it while the codec threads work.
 */
const governorDelayMs = 200;

/**
 * Runs a file command with dead chunk buffers collected promptly, so memory stays bounded on any file
 * size. The threaded pipeline holds few buffers on this thread; the streaming decoder, which a damaged
 * .dcz falls back to, holds every decoded chunk here until it is written (measured on a 1 GiB file with
 * a damaged trailer: peak RSS 278 MB without the governor, 259 MB with it).
 */
async function governed<T>(run: () => Promise<T>): Promise<T> {
  let memory: { stop(): void } | undefined;
  let stopped = false;
  const timer = setTimeout(async () => {
    const [{ startMemoryGovernor }, { pino }] = await Promise.all([import('../runtime/memory.ts'), import('pino')]);
    if (!stopped) memory = startMemoryGovernor({ logger: pino({ level: 'silent' }) });
  }, governorDelayMs);
  try {
    return await run();
  } finally {
    stopped = true;
    clearTimeout(timer);
    memory?.stop();
  }
}

function report(command: string, result: FileResult, options: CodecCommandOptions): void {
  const ratio = result.originalBytes === 0 ? 1 : result.compressedBytes / result.originalBytes;
  const megabytesPerSecond = result.originalBytes / 1e6 / Math.max(result.seconds, 1e-9);
  if (options.json) {
    printJson({
      command,
      input: result.input,
      output: result.output,
      originalSize: result.originalBytes,
      compressedSize: result.compressedBytes,
      ratio: Number(ratio.toFixed(4)),
      chunks: result.chunks,
      threads: result.threads,
      seconds: Number(result.seconds.toFixed(3)),
      mbPerSecond: Number(megabytesPerSecond.toFixed(1)),
    });
  } else if (!options.quiet) {
    const sizes = `${formatBytes(result.originalBytes)} original, ${formatBytes(result.compressedBytes)} compressed (ratio ${ratio.toFixed(3)})`;
    process.stdout.write(`${result.output}: ${sizes}, ${result.seconds.toFixed(2)} s, ${megabytesPerSecond.toFixed(0)} MB/s on ${result.threads} threads\n`);
  }
}

function defaultDecompressOutput(input: string): string {
  if (!input.endsWith('.dcz') || input.length === 4) throw new CliError(`${input}: does not end in .dcz; name the output with -o`, exitUsage);
  return input.slice(0, -4);
}

function common(command: Command): Command {
  return command
    .option('-o, --output <file>', 'output file')
    .option('-f, --force', 'replace the output file if it exists')
    .option('--synchronous', 'flush the output to the disk before finishing, so it survives a system crash (slower)')
    .addOption(new Option('-t, --threads <n>', 'worker threads (default: all cores)').argParser(parsePositiveInteger))
    .option('--json', 'print one JSON document with sizes, ratio, seconds and MB/s')
    .option('-q, --quiet', 'print nothing on success');
}

export function addCodecCommands(program: Command): void {
  common(program.command('compress').argument('<file>', 'file to compress').description('compress a file into FILE.dcz, locally on all cores'))
    .addOption(new Option('--chunk-size <size>', `bytes per independently coded chunk (${formatBytes(format.chunkBytesMin)}..${formatBytes(format.chunkBytesMax)})`).argParser(parseChunkSize).default(format.chunkBytesDefault, '4MiB'))
    .action(async (file: string, options: CodecCommandOptions) => {
      const output = options.output ?? `${file}.dcz`;
      let bar: ReturnType<typeof progressBar> | undefined;
      const result = await governed(() => compressFile(file, output, {
        force: options.force,
        synchronous: options.synchronous,
        threads: options.threads,
        chunkBytes: options.chunkSize,
        onProgress: (progress, total) => {
          bar ??= progressBar('compress  ', total, options);
          bar.update(progress.originalBytes);
        },
      })).finally(() => bar?.stop());
      report('compress', result, options);
    });

  common(program.command('decompress').argument('<file>', '.dcz file to decompress').description('decompress FILE.dcz, checking every checksum, locally on all cores'))
    .action(async (file: string, options: CodecCommandOptions) => {
      const output = options.output ?? defaultDecompressOutput(file);
      let bar: ReturnType<typeof progressBar> | undefined;
      const result = await governed(() => decompressFile(file, output, {
        force: options.force,
        synchronous: options.synchronous,
        threads: options.threads,
        onProgress: (progress, total) => {
          bar ??= progressBar('decompress', total, options);
          bar.update(progress.containerBytes);
        },
      })).finally(() => bar?.stop());
      report('decompress', result, options);
    });
}
