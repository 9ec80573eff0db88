/**
 * `dcas compress` and `dcas decompress`: the codec on local files, no cluster, with the verbs and flags
 * of zstd and gzip (-d, -t, -l, -c, -k/--rm, -T, many files, stdin and stdout). See the README's table.
 */
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import { CodecError, codecsDescribed, format, outputFormats, parseCodecChoice, type CodecChoice } from '../codec/index.ts';
import { formatBytes } from './output.ts';
import { runFileCommand, type FileCommandOptions } from './file-verbs.ts';

const sizeUnits: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3 };

/** Parses "4MiB", "512k", "1048576"; units are binary (k = 1024), as for memory. */
export function parseSize(text: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text);
  const multiplier = match ? sizeUnits[match[2].toLowerCase()] : undefined;
  if (!match || multiplier === undefined) throw new InvalidArgumentError('expected a size such as 4MiB, 512k or 1048576.');
  return Math.floor(Number(match[1]) * multiplier);
}

function parseChunkSize(text: string): number {
  const value = parseSize(text);
  if (value < format.chunkBytesMin || value > format.chunkBytesMax) {
    throw new InvalidArgumentError(`must be between ${formatBytes(format.chunkBytesMin)} and ${formatBytes(format.chunkBytesMax)}.`);
  }
  return value;
}

/** `--codec NAME[:LEVEL]`: an unknown codec or level is a usage error that lists the valid ones. */
export function parseCodec(text: string): CodecChoice {
  try {
    return parseCodecChoice(text);
  } catch (error) {
    if (error instanceof CodecError) throw new InvalidArgumentError(`${error.message}.`);
    throw error;
  }
}

/** `--level N` (what `-N` becomes): a whole number; whether the codec has that level is checked with the codec. */
function parseLevel(text: string): number {
  if (!/^\s*\d{1,2}\s*$/.test(text)) throw new InvalidArgumentError('expected a whole number, e.g. -19 or --level 19.');
  return Number(text);
}

/** `-1`..`-19` or `--level N`, as compress and upload take it. */
export function levelOption(): Option {
  return new Option('--level <n>', 'the codec\'s level; -1 .. -19 are the same, as in zstd; without --codec it picks zstd at that level (huffman has no levels)').argParser(parseLevel);
}

/** `--codec NAME[:LEVEL]`, as compress and upload take it. */
export function codecOption(): Option {
  return new Option('--codec <name[:level]>', `codec of every chunk: ${codecsDescribed()}`).argParser(parseCodec);
}

/** `--format F`, as compress and upload take it. */
export function formatOption(): Option {
  return new Option('--format <format>', 'output: dcz (the default), or zst, gz, xz, bz2 (one frame, member or stream per chunk: zstd -d, gunzip, xz -d, bzip2 -d read it; zst implies --codec zstd, and so on)').choices(outputFormats);
}

export function parsePositiveInteger(text: string): number {
  const value = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isInteger(value) || value < 1) throw new InvalidArgumentError('expected a positive whole number.');
  return value;
}

/**
 * More threads than this is a mistake, not a wish (one command with 1000 threads once took 13.7 GB);
 * within it, the threads actually started are bounded by the cores and the free memory.
 */
export const threadsMax = 256;

/** `-T N`: 0 means all cores, as in zstd. */
export function parseThreads(text: string): number {
  const value = Number(text);
  if (!/^\s*\d+\s*$/.test(text) || !Number.isInteger(value) || value > threadsMax) {
    throw new InvalidArgumentError(`expected a whole number from 0 (all cores) to ${threadsMax}.`);
  }
  return value;
}

function fileOptions(command: Command): Command {
  return command
    .argument('[files...]', 'files to read; none or - reads stdin')
    .option('-d, --decompress', 'decompress (the default of `dcas decompress`)')
    .option('-t, --test', 'verify every checksum of each .dcz; write nothing')
    .option('-l, --list', 'list chunks, sizes, ratio, codec and SHA-256 of each .dcz, from its index')
    .option('-c, --stdout', 'write to stdout (also -o -); refused on a terminal unless --force')
    .option('-o, --output <file>', 'output file (one input only); - is stdout')
    .option('-f, --force', 'replace an existing regular output file; write to a terminal; compress a .dcz again')
    .option('-k, --keep', 'keep the input files (the default)')
    .option('--rm', 'remove each input file once its output is complete')
    .option('-r, --recursive', 'take the files in each folder given, and in its subfolders')
    .addOption(new Option('-T, --threads <n>', `codec threads, 0 = all cores (the default), at most ${threadsMax}; bounded by cores and memory`).argParser(parseThreads))
    .option('--synchronous', 'flush the output to the disk before finishing, so it survives a system crash (slower)')
    .option('-v, --verbose', 'say more: chunks, threads, inputs removed')
    .option('-q, --quiet', 'print nothing but errors')
    .option('--json', 'print one JSON document per file with sizes, ratio, seconds and MB/s');
}


export function addCodecCommands(program: Command): void {
  fileOptions(program.command('compress').description('compress files into FILE.dcz (or stdin to stdout), locally on all cores'))
    .addOption(codecOption())
    .addOption(levelOption())
    .addOption(formatOption())
    .addOption(new Option('--chunk-size <size>', `bytes per independently coded chunk (${formatBytes(format.chunkBytesMin)}..${formatBytes(format.chunkBytesMax)}; default: the codec's, 4MiB for huffman, 8MiB for zstd, 24MiB for xz)`).argParser(parseChunkSize))
    .action((files: string[], options: FileCommandOptions) => runFileCommand('compress', files, options));
  fileOptions(program.command('decompress').description('decompress FILE.dcz (or stdin to stdout), checking every checksum, locally on all cores'))
    .action((files: string[], options: FileCommandOptions) => runFileCommand('decompress', files, options));
}
