/**
 * `dcas upload`, `dcas status`, `dcas jobs`, `dcas download`: jobs on a cluster, through the client
 * library. Server from --server or DCAS_SERVER (default: the first node of a local cluster), token
 * from --token or DCAS_TOKEN. A job that ends failed is exit 1 for `upload --wait` and
 * `status --watch`; a plain `status` of a failed job is a successful report (exit 0).
 */
import { existsSync } from 'node:fs';
import cliProgress, { SingleBar, type Options, type Params } from 'cli-progress';
import type { Command } from 'commander';
import { Option } from 'commander';
import { choiceName, codecByName, format, huffmanChoice, ImageError, imageModes, parseImageQuality, type CodecChoice, type ImageMode, type OutputFormat } from '../codec/index.ts';
import { connect, DcasClientError, downloadImage, followJob, terminalStates, uploadImages, type ConnectOptions, type DcasClient, type JobView, type RetryNotice } from '../client/index.ts';
import { defaultServer, serverUrl } from './cluster-commands.ts';
import { tokenFor, trustCertificateAuthority } from './local-tokens.ts';
import { codecOption, formatOption, levelOption, parseSize } from './codec-commands.ts';
import { resolveCodecFormat } from './file-verbs.ts';
import { networkInWords } from './errors.ts';
import { CliError, escapeForTerminal, exitUsage, formatBytes, printJson, progressBar, type ProgressBar } from './output.ts';

interface ConnectionOptions {
  server?: string;
  token?: string;
  ca?: string;
  json?: boolean;
  /** Seconds the whole command may take. */
  timeout?: number;
}

/**
 * With --timeout, the user said how long they will wait: a node too loaded to answer the handshake and
 * hello within the library's 10 s gets up to this long (or the timeout, if shorter) before it counts as
 * unreachable; the cost is a slower move past a black-holed server to the next one.
 */
const connectTimeoutMsWithDeadline = 60_000;
/** The longest --timeout: a week, which is "no deadline" for any job this cluster runs. */
const timeoutSecondsMax = 7 * 24 * 3600;

function parseTimeout(text: string): number {
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0 || value > timeoutSecondsMax) throw new CliError(`--timeout ${text}: expected seconds, more than 0 and at most ${timeoutSecondsMax}`, exitUsage);
  return value;
}

function withConnectionOptions(command: Command): Command {
  return command
    .option('-s, --server <url>', `a node's gateway, http:// or ws://; several separated by commas are tried in order (default: $DCAS_SERVER or ${defaultServer})`)
    .option('--token <token>', 'client token, if the cluster has one (default: $DCAS_TOKEN, or the token of a cluster up on this machine)')
    .option('--ca <file>', 'also trust the certificate authorities in this PEM file for https:// and wss:// gateways (default: $DCAS_CA)')
    .addOption(new Option('--timeout <seconds>', 'give up (exit 1) when the command has not finished after this long (default: no limit)').argParser(parseTimeout))
    .option('--json', 'print one JSON document');
}

/**
 * Without --server or DCAS_SERVER the CLI means "the local cluster": the first node, then the other
 * voters of a default `dcas cluster up` (gateways 7702-7705), so a stopped node1 is not a dead end.
 */
const localClusterServers = [defaultServer, ...[2, 3, 4, 5].map((index) => `http://127.0.0.1:${7700 + index}`)].join(',');

/**
 * Waiting and retrying, said on stderr ("busy, retrying in 2.1 s (attempt 3)", "queued: place 4"): on a
 * terminal one line rewritten in place, cleared when the transfer's own bar starts; otherwise one line
 * per retry and per first place in a queue. Nothing with --json.
 */
export interface WaitingLine {
  retrying(notice: RetryNotice): void;
  queued(place: number): void;
  clear(): void;
}

export function retryText(notice: RetryNotice): string {
  return `${notice.code === 'BUSY' ? 'busy' : 'unavailable'}, retrying in ${(notice.delayMs / 1000).toFixed(1)} s (attempt ${notice.attempt})`;
}

function waitingLine(options: { json?: boolean }): WaitingLine {
  const tty = process.stderr.isTTY === true;
  let shown = false;
  let queuedBefore = false;
  const show = (text: string) => {
    if (options.json) return;
    if (!tty) {
      process.stderr.write(`dcas: ${text}\n`);
      return;
    }
    process.stderr.write(`\r\x1b[K${text}`);
    shown = true;
  };
  return {
    retrying: (notice) => {
      queuedBefore = false;
      show(retryText(notice));
    },
    queued(place) {
      if (!tty && queuedBefore) return;
      queuedBefore = true;
      show(`queued at the node: place ${place}`);
    },
    clear() {
      if (shown) process.stderr.write('\r\x1b[K');
      shown = false;
    },
  };
}

/** The client options the command line gives: servers in order, the token, the deadline. */
function connectOptions(options: ConnectionOptions, waiting: WaitingLine = waitingLine(options)): ConnectOptions {
  const servers = (options.server ?? process.env.DCAS_SERVER ?? localClusterServers).split(',').map((text) => text.trim()).filter((text) => text !== '');
  if (servers.length === 0) throw new CliError('--server: no gateway given', exitUsage);
  const [server, ...fallbackServers] = servers.map((text) => serverUrl(text));
  trustCertificateAuthority(options.ca);
  return {
    server,
    fallbackServers,
    token: tokenFor(server, options.token),
    deadlineAtMs: options.timeout === undefined ? undefined : Date.now() + options.timeout * 1000,
    connectTimeoutMs: options.timeout === undefined ? undefined : Math.min(options.timeout * 1000, connectTimeoutMsWithDeadline),
    retry: { onRetry: (notice) => waiting.retrying(notice) },
  };
}

/** Runs `work` with a connected client; client errors become one-line CLI errors. */
async function withClient<T>(options: ConnectionOptions, work: (client: DcasClient, connection: ConnectOptions) => Promise<T>, waiting?: WaitingLine): Promise<T> {
  const connection = connectOptions(options, waiting);
  const server = connection.server;
  let client: DcasClient | undefined;
  try {
    client = await connect(connection);
    return await work(client, connection);
  } catch (error) {
    if (!(error instanceof DcasClientError)) throw error;
    if (error.code === 'AUTH') throw new CliError(`${server}: ${error.message} (give it with --token or DCAS_TOKEN)`);
    throw new CliError(networkInWords(error.message));
  } finally {
    await client?.close().catch(() => {});
  }
}

function parseChunkSize(text: string): number {
  const value = parseSize(text);
  if (value < format.chunkBytesMin || value > format.chunkBytesMax) {
    throw new CliError(`--chunk-size ${text}: must be between ${formatBytes(format.chunkBytesMin)} and ${formatBytes(format.chunkBytesMax)}`, exitUsage);
  }
  return value;
}

function checkJobId(jobId: string): string {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(jobId)) throw new CliError(`"${jobId.slice(0, 80)}" is not a job id (letters, digits, "-" and "_")`, exitUsage);
  return jobId;
}

const chunkFormat = 'job {state} {bar} {value}/{total} chunks';

/**
 * While a job uploads, its chunk count still grows, so a bar of chunks would read full; the line counts
 * the bytes received instead, and becomes a bar of chunks done once the upload finished.
 */
export function jobLine(options: Options, params: Params, payload: { state: string; uploading: boolean; received: string }): string {
  if (payload.uploading) return `job ${payload.state} ${payload.received} received`;
  // Format is not among the names Node finds in this CommonJS module, so it is read from the default export.
  return cliProgress.Format.Formatter({ ...options, format: chunkFormat }, params, payload);
}

/** A line of the job's progress on a terminal; nothing with --json or when stderr is not a TTY. */
function chunkBar(options: { json?: boolean }): { update(job: JobView): void; stop(): void } {
  if (options.json || !process.stderr.isTTY) return { update() {}, stop() {} };
  const bar = new SingleBar({ stream: process.stderr, format: jobLine, hideCursor: true, clearOnComplete: true });
  let started = false;
  return {
    update(job) {
      const total = Math.max(job.chunks, 1);
      const payload = { state: job.state.padEnd(10), uploading: job.state === 'uploading', received: formatBytes(job.uploadedBytes) };
      if (!started) bar.start(total, job.chunksDone, payload);
      started = true;
      bar.setTotal(total);
      bar.update(job.chunksDone, payload);
    },
    stop: () => started && bar.stop(),
  };
}

function ratioText(job: JobView): string {
  return job.ratio === null ? '-' : job.ratio.toFixed(3);
}

/** "zstd:9", or the name alone for a codec without levels (or one this CLI does not know). */
function codecText(job: JobView): string {
  const codec = codecByName(job.codec);
  return codec === undefined ? escapeForTerminal(job.codec) : choiceName({ codec, level: job.level });
}

function sizeText(bytes: number | null): string {
  return bytes === null ? '-' : formatBytes(bytes);
}

function failureOf(job: JobView): CliError {
  return new CliError(`job ${job.id} failed: ${job.error ?? 'no reason recorded'}`);
}

/** An images job's line: its options and what became of its images so far. */
function imageLine(image: NonNullable<JobView['image']>): string {
  const options = `${escapeForTerminal(image.mode)}${image.quality === null ? '' : ` ${escapeForTerminal(image.quality)}`}${image.strip ? '' : ', metadata kept'}`;
  const output = image.outputBytes === null ? '' : `, ${sizeText(image.outputBytes)} of images`;
  return `images    ${options}: ${image.imagesDone} coded, ${image.imagesKept} kept as they were, ${image.imagesFailed} not images${output}`;
}

function printJob(job: JobView): void {
  const lines = [
    `job       ${job.id}  ${job.state}  (${job.mode})`,
    `file      ${escapeForTerminal(job.fileName)}${job.mime ? `  (${escapeForTerminal(job.mime)})` : ''}`,
    `sizes     original ${sizeText(job.originalSize)}, compressed ${sizeText(job.compressedSize)}, ratio ${ratioText(job)}`,
    `codec     ${codecText(job)}, format ${job.format}`,
    `chunks    ${job.chunksDone}/${job.chunks} ${job.mode === 'images' ? 'images' : `of ${formatBytes(job.chunkSize)}`}${Object.keys(job.chunkNodes).length > 0 ? `  (${Object.entries(job.chunkNodes).map(([node, count]) => `${escapeForTerminal(node)}: ${count}`).join(', ')})` : ''}`,
    `sha256    ${job.sha256 ?? '-'}`,
    `gateway   ${escapeForTerminal(job.gateway)}`,
  ];
  if (job.lines !== null && job.words !== null) lines.push(`text      ${job.lines} lines, ${job.words} words`);
  if (job.image !== undefined) lines.push(imageLine(job.image));
  const phases = Object.entries(job.phases).filter(([, seconds]) => seconds !== null);
  if (phases.length > 0) lines.push(`seconds   ${phases.map(([phase, seconds]) => `${phase.replace('Seconds', '')} ${(seconds as number).toFixed(2)}`).join(', ')}`);
  if (job.error !== null) lines.push(`error     ${escapeForTerminal(job.error)}`);
  process.stdout.write(`${lines.join('\n')}\n`);
}

function printJobsTable(jobs: JobView[]): void {
  const header = `${'ID'.padEnd(18)}${'STATE'.padEnd(12)}${'MODE'.padEnd(12)}${'ORIGINAL'.padStart(11)}${'COMPRESSED'.padStart(12)}${'RATIO'.padStart(7)}${'CHUNKS'.padStart(10)}  ${'CODEC'.padEnd(11)}${'FORMAT'.padEnd(7)}FILE`;
  process.stdout.write(`${header}\n`);
  for (const job of jobs) {
    process.stdout.write(
      `${job.id.padEnd(18)}${job.state.padEnd(12)}${job.mode.padEnd(12)}${sizeText(job.originalSize).padStart(11)}${sizeText(job.compressedSize).padStart(12)}${ratioText(job).padStart(7)}${`${job.chunksDone}/${job.chunks}`.padStart(10)}  ${codecText(job).padEnd(11)}${job.format.padEnd(7)}${escapeForTerminal(job.fileName)}\n`,
    );
  }
  if (jobs.length === 0) process.stdout.write('(no jobs)\n');
}

/** Follows a job to its end with a chunk bar, on another gateway if this one goes; returns the final view. */
async function follow(client: DcasClient, connection: ConnectOptions, jobId: string, options: { json?: boolean }): Promise<JobView> {
  const bar = chunkBar(options);
  try {
    return await followJob(client, connection, jobId, (job) => bar.update(job));
  } finally {
    bar.stop();
  }
}

interface UploadCommandOptions extends ConnectionOptions {
  wait?: boolean;
  decompress?: boolean;
  chunkSize?: number;
  codec?: CodecChoice;
  format?: OutputFormat;
  level?: number;
  image?: ImageMode;
  quality?: string;
  keepMetadata?: boolean;
}

/** `--image MODE`: the upload is a batch of images (files and folders), one images job. */
function checkImageUpload(files: string[], options: UploadCommandOptions): void {
  if (options.image === undefined) {
    if (options.quality !== undefined || options.keepMetadata) throw new CliError('--quality and --keep-metadata go with --image MODE', exitUsage);
    if (files.length !== 1) throw new CliError(`upload takes one file (got ${files.length}); many files or a folder are a batch of images: add --image MODE`, exitUsage);
    return;
  }
  if (options.decompress || options.chunkSize !== undefined || options.codec !== undefined || options.format !== undefined || options.level !== undefined) {
    throw new CliError('--image does not go with --decompress, --chunk-size, --codec, --format or levels: each image is coded by its image mode', exitUsage);
  }
}

async function uploadImageBatch(files: string[], options: UploadCommandOptions & { image: ImageMode }): Promise<void> {
  await withClient(options, async (client, connection) => {
    let bar: ProgressBar | undefined;
    let job: JobView;
    try {
      job = await uploadImages(client, files, {
        mode: options.image,
        quality: options.quality,
        strip: !options.keepMetadata,
        onProgress: ({ bytes }) => {
          bar ??= progressBar('upload', 0, options);
          bar.update(bytes);
        },
      });
    } catch (error) {
      if (error instanceof DcasClientError && error.code === 'BAD_ARGUMENT') throw new CliError(error.message, exitUsage);
      throw error;
    } finally {
      bar?.stop();
    }
    await reportUpload(client, connection, job, options);
  });
}

async function upload(files: string[], options: UploadCommandOptions): Promise<void> {
  checkImageUpload(files, options);
  if (options.image !== undefined) return uploadImageBatch(files, { ...options, image: options.image });
  const file = files[0];
  if (options.decompress && options.chunkSize !== undefined) throw new CliError('--chunk-size does not apply with --decompress (the .dcz says its chunk size)', exitUsage);
  if (options.decompress && (options.codec !== undefined || options.format !== undefined || options.level !== undefined)) throw new CliError('--codec, --format and levels do not apply with --decompress (the .dcz says its codec)', exitUsage);
  const coding = resolveCodecFormat(options.format, options.codec, options.level);
  const waiting = waitingLine(options);
  await withClient(options, async (client, connection) => {
    let bar: ProgressBar | undefined;
    let job: JobView;
    try {
      job = await client.upload(file, {
        mode: options.decompress ? 'decompress' : 'compress',
        chunkSize: options.chunkSize,
        ...(options.decompress ? {} : { codec: choiceName(coding.codec ?? huffmanChoice), format: coding.format }),
        onQueued: (place) => waiting.queued(place),
        onProgress: ({ bytes, totalBytes }) => {
          if (bar === undefined) waiting.clear();
          bar ??= progressBar('upload', totalBytes ?? 0, options);
          bar.update(bytes);
        },
      });
    } finally {
      waiting.clear();
      bar?.stop();
    }
    await reportUpload(client, connection, job, options);
  }, waiting);
}

/** Prints an uploaded job's id, or with --wait follows it to its end (exit 1 unless it completed). */
async function reportUpload(client: DcasClient, connection: ConnectOptions, job: JobView, options: UploadCommandOptions): Promise<void> {
  if (!options.wait) {
    if (options.json) printJson(job);
    else process.stdout.write(`${job.id}\n`);
    return;
  }
  if (!options.json) process.stdout.write(`${job.id}\n`);
  const final = await follow(client, connection, job.id, options);
  if (options.json) printJson(final);
  if (final.state !== 'completed') throw failureOf(final);
  if (!options.json && process.stderr.isTTY) {
    const what = final.image === undefined ? `${final.chunks} chunks` : `${final.chunks} images, ${final.image.imagesKept} kept as they were, ${final.image.imagesFailed} not images`;
    process.stderr.write(`job ${final.id} completed: ${sizeText(final.originalSize)} -> ${sizeText(final.compressedSize)} (ratio ${ratioText(final)}), ${what}\n`);
  }
}

async function status(jobId: string, options: ConnectionOptions & { watch?: boolean }): Promise<void> {
  await withClient(options, async (client, connection) => {
    if (!options.watch) {
      const job = await client.status(checkJobId(jobId));
      if (options.json) printJson(job);
      else printJob(job);
      // A script asks `dcas status JOB && ...`: a failed job must not read as success.
      if (job.state === 'failed') throw failureOf(job);
      return;
    }
    checkJobId(jobId);
    // Off a terminal, each state change is a line; on one, the bar shows the chunks.
    let lastState = '';
    const tty = process.stderr.isTTY && !options.json;
    const bar = chunkBar(options);
    let final: JobView;
    try {
      final = await followJob(client, connection, jobId, (job) => {
        bar.update(job);
        if (!tty && !options.json && job.state !== lastState && !terminalStates.has(job.state)) {
          process.stdout.write(`${job.id} ${job.state} ${job.chunksDone}/${job.chunks} chunks\n`);
        }
        lastState = job.state;
      });
    } finally {
      bar.stop();
    }
    if (options.json) printJson(final);
    else printJob(final);
    if (final.state !== 'completed') throw failureOf(final);
  });
}

async function listJobs(options: ConnectionOptions & { limit?: number }): Promise<void> {
  await withClient(options, async (client) => {
    const jobs = await client.jobs({ limit: options.limit });
    if (options.json) printJson(jobs);
    else printJobsTable(jobs);
  });
}

type DownloadCommandOptions = ConnectionOptions & { output: string; compressed?: boolean; force?: boolean; image?: string };

/** `download JOB --image NAME -o FILE`: one image of an images job, read out of its archive. */
async function downloadOneImage(jobId: string, name: string, options: DownloadCommandOptions): Promise<void> {
  if (!options.force && existsSync(options.output)) throw new CliError(`${options.output} exists; use --force to replace it`, exitUsage);
  await withClient(options, async (client) => {
    const result = await downloadImage(client, jobId, name, options.output);
    if (options.json) printJson({ jobId, image: name, output: result.path, bytes: result.bytes });
    else process.stdout.write(`${result.path}: ${formatBytes(result.bytes)} (image ${escapeForTerminal(name)})\n`);
  });
}

async function download(jobId: string, options: DownloadCommandOptions): Promise<void> {
  checkJobId(jobId);
  if (options.image !== undefined) return downloadOneImage(jobId, options.image, options);
  await withClient(options, async (client) => {
    let bar: ProgressBar | undefined;
    let result;
    try {
      result = await client.downloadToFile(jobId, options.output, {
        compressed: options.compressed ?? false,
        force: options.force ?? false,
        onProgress: (bytes, totalBytes) => {
          bar ??= progressBar('download', totalBytes, options);
          bar.update(bytes);
        },
      });
    } finally {
      bar?.stop();
    }
    const form = options.compressed ? 'compressed' : 'original';
    if (options.json) printJson({ jobId, output: result.path, compressed: options.compressed ?? false, bytes: result.bytes, sha256: result.sha256, verified: result.verified });
    else process.stdout.write(`${result.path}: ${formatBytes(result.bytes)} (${form}${result.verified ? ', SHA-256 verified' : ''})\n`);
  });
}

async function remove(jobId: string, options: ConnectionOptions): Promise<void> {
  checkJobId(jobId);
  await withClient(options, async (client) => {
    const deleted = await client.delete(jobId);
    if (options.json) printJson(deleted);
    else process.stdout.write(`job ${deleted.jobId} deleted (it was ${deleted.state}${deleted.cancelled ? '; its coding was cancelled' : ''})\n`);
  });
}

function parseQualityOption(text: string): string {
  try {
    parseImageQuality(text);
    return text;
  } catch (error) {
    if (error instanceof ImageError) throw new CliError(`--quality: ${error.message}`, exitUsage);
    throw error;
  }
}

export function addJobCommands(program: Command): void {
  withConnectionOptions(program.command('upload').argument('<files...>', 'file to upload (with --image: image files and folders)').description('upload a file (or, with --image, a batch of images) to the cluster as a job and print its id'))
    .option('-w, --wait', 'follow the job live; exit 0 only if it completed')
    .option('-d, --decompress', 'the file is a .dcz: decode it back into the original')
    .addOption(new Option('--chunk-size <size>', `original bytes per chunk (${formatBytes(format.chunkBytesMin)}..${formatBytes(format.chunkBytesMax)}; default: the cluster's)`).argParser(parseChunkSize))
    .addOption(codecOption())
    .addOption(levelOption())
    .addOption(formatOption())
    .addOption(new Option('--image <mode>', 'a batch of images, one job whose tasks are the images; the result is a tar').choices([...imageModes]))
    .addOption(new Option('--quality <range>', 'with --image: quality MIN-MAX or MAX, 0 to 100 (png-lossy default 60-80, jpeg default 80)').argParser(parseQualityOption))
    .option('--keep-metadata', 'with --image: keep metadata (EXIF, ICC profile, text chunks); default: stripped')
    .action(async (files: string[], options: UploadCommandOptions) => upload(files, options));

  withConnectionOptions(program.command('status').argument('<job>', 'job id').description('show a job: state, sizes, chunks, SHA-256, timings'))
    .option('-w, --watch', 'follow the job live until it completed or failed (exit 1 if it failed)')
    .action(async (jobId: string, options: ConnectionOptions & { watch?: boolean }) => status(jobId, options));

  withConnectionOptions(program.command('jobs').description('list the jobs of the cluster, newest first'))
    .addOption(new Option('-n, --limit <n>', 'at most this many jobs').argParser((text) => {
      const value = Number(text);
      if (!Number.isInteger(value) || value < 1) throw new CliError(`--limit: expected a positive integer, got "${text}"`, exitUsage);
      return value;
    }))
    .action(async (options: ConnectionOptions & { limit?: number }) => listJobs(options));

  withConnectionOptions(program.command('download').argument('<job>', 'job id').description('download a completed job: the original (decoded, SHA-256 verified) or the compressed object (.dcz or the job\'s --format)'))
    .requiredOption('-o, --output <file>', 'where to write it')
    .option('-c, --compressed', 'the compressed object as stored (.dcz, .zst, .gz, .xz or .bz2) instead of the original')
    .option('-f, --force', 'replace the output file if it exists')
    .option('--image <name>', 'an images job: only this image of its archive (its name in the batch)')
    .action(async (jobId: string, options: DownloadCommandOptions) => download(jobId, options));

  withConnectionOptions(program.command('rm').alias('delete').argument('<job>', 'job id').description('delete a job and its files from the cluster; a job still being coded is cancelled'))
    .action(async (jobId: string, options: ConnectionOptions) => remove(jobId, options));

  for (const command of program.commands) command.exitOverride();
}
