/**
 * The checks an upload passes before its job exists: its request (file name, mode, chunk size, codec,
 * format, image options), and the cluster and disk it would land on. Each refusal is a JobError with a
 * code the client maps (BAD_INPUT, TOO_LARGE, INSUFFICIENT_STORAGE, UNAVAILABLE).
 */
import { randomBytes } from 'node:crypto';
import { fileTypeFromBuffer } from 'file-type';
import type { Member } from '../cluster/index.ts';
import { isNoSpaceError, ProposalError, type ReplicatedState } from '../cluster/index.ts';
import { CodecError, format, huffmanChoice, ImageError, imageModes, outputFormats, parseCodecChoice, parseImageQuality, resolveOutput, type ImageMode, type OutputFormat } from '../codec/index.ts';
import type { JobsConfig } from '../config/index.ts';
import { BlobError, InsufficientStorageError } from '../storage/index.ts';
import type { ImageCoding, JobCoding } from './records.ts';
import { JobError, type UploadRequest } from './types.ts';

const fileNameBytesMax = 255;

export function newJobId(): string {
  return randomBytes(8).toString('hex');
}

/**
 * The codec and format an upload asked for, checked as `dcas compress` checks them (an unknown codec,
 * level or format, or a format with another codec, is BAD_INPUT naming the valid ones). A decompress
 * job takes both from the .dcz it receives.
 */
export function validateCoding(request: UploadRequest): JobCoding {
  const formatText = request.format === undefined ? undefined : String(request.format);
  if (formatText !== undefined && !outputFormats.includes(formatText as OutputFormat)) {
    throw new JobError('BAD_INPUT', `unknown format "${formatText.slice(0, 40)}": choose one of ${outputFormats.join(', ')}`);
  }
  try {
    const codec = request.codec === undefined ? undefined : parseCodecChoice(String(request.codec).slice(0, 40));
    const resolved = resolveOutput(formatText as OutputFormat | undefined, codec);
    return { choice: resolved.codec ?? huffmanChoice, format: resolved.format };
  } catch (error) {
    if (error instanceof CodecError) throw new JobError('BAD_INPUT', error.message);
    throw error;
  }
}

/** An images job's options, checked as POST /v1/images checks them; BAD_INPUT names what is wrong. */
export function validateImageCoding(request: UploadRequest): ImageCoding | undefined {
  if (request.mode !== 'images') {
    if (request.image !== undefined) throw new JobError('BAD_INPUT', 'image options are for mode "images"');
    return undefined;
  }
  if (request.codec !== undefined || request.format !== undefined) throw new JobError('BAD_INPUT', 'codec and format are not for mode "images": it codes each image with its image mode');
  const mode = String(request.image?.mode ?? '');
  if (!imageModes.includes(mode as ImageMode)) throw new JobError('BAD_INPUT', `image mode "${mode.slice(0, 40)}": choose one of ${imageModes.join(', ')}`);
  try {
    const quality = request.image?.quality === undefined ? null : parseImageQuality(String(request.image.quality).slice(0, 20));
    return { mode: mode as ImageMode, quality, strip: request.image?.strip !== false };
  } catch (error) {
    if (error instanceof ImageError) throw new JobError('BAD_INPUT', error.message);
    throw error;
  }
}

export function validateUploadRequest(request: UploadRequest, config: JobsConfig): { fileName: string; chunkSize: number } {
  const fileName = String(request.fileName ?? '');
  if (fileName.length === 0 || Buffer.byteLength(fileName) > fileNameBytesMax || /[\u0000-\u001f/\\]/.test(fileName) || fileName === '.' || fileName === '..') {
    throw new JobError('BAD_INPUT', `fileName must be a plain file name of 1..${fileNameBytesMax} bytes without "/", "\\" or control characters`);
  }
  if (request.mode !== 'compress' && request.mode !== 'decompress' && request.mode !== 'images') throw new JobError('BAD_INPUT', 'mode must be "compress", "decompress" or "images"');
  const chunkSize = request.chunkSize ?? config.chunkSize;
  if (!Number.isInteger(chunkSize) || chunkSize < format.chunkBytesMin || chunkSize > format.chunkBytesMax) {
    throw new JobError('BAD_INPUT', `chunkSize must be an integer from ${format.chunkBytesMin} to ${format.chunkBytesMax}`);
  }
  if (request.size !== undefined && (!Number.isSafeInteger(request.size) || request.size < 0)) throw new JobError('BAD_INPUT', 'size must be a non-negative integer');
  if ((request.size ?? 0) > config.uploadBytesMax) throw new JobError('TOO_LARGE', `upload of ${request.size} bytes exceeds this node's limit of ${config.uploadBytesMax}`);
  return { fileName, chunkSize };
}

function looksLikeText(probe: Uint8Array): boolean {
  if (probe.length === 0 || probe.includes(0)) return false;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(probe.subarray(0, Math.max(0, probe.length - 4)));
    return true;
  } catch {
    return false;
  }
}

export async function detectMime(probe: Uint8Array): Promise<string> {
  const type = await fileTypeFromBuffer(probe).catch(() => undefined);
  if (type !== undefined) return type.mime;
  return looksLikeText(probe) ? 'text/plain' : 'application/octet-stream';
}

/**
 * A failure that means "this node's disk is full", as the INSUFFICIENT_STORAGE the client gets, or
 * undefined for any other failure.
 */
export function storageJobError(error: unknown, state: ReplicatedState): JobError | undefined {
  if (error instanceof JobError) return error.code === 'INSUFFICIENT_STORAGE' ? error : undefined;
  const full =
    error instanceof InsufficientStorageError ||
    (error instanceof BlobError && error.code === 'INSUFFICIENT_STORAGE') ||
    (error instanceof ProposalError && error.code === 'STORAGE_FAILED' && state.storageFailure()?.code === 'INSUFFICIENT_STORAGE') ||
    isNoSpaceError(error);
  return full ? new JobError('INSUFFICIENT_STORAGE', (error as Error).message) : undefined;
}

/**
 * Why this node cannot reach any coordinator, or undefined when one may answer: no leader known and so
 * many voters dead in its membership view that the rest cannot form a majority. Such a node is cut off
 * (or the cluster lost its majority); its job-creating proposal could only wait out the proposal timeout,
 * so the upload is refused at once and the client retries elsewhere. A voter not heard of yet (a node
 * just started) is not counted dead, and with a majority possibly alive and no leader known an election
 * is under way: the upload waits for it as before.
 */
export function cutOffReason(leader: string | null, voters: readonly string[], members: readonly Pick<Member, 'name' | 'status'>[]): string | undefined {
  if (leader !== null || voters.length === 0) return undefined;
  const dead = new Set(members.filter((member) => member.status === 'dead').map((member) => member.name));
  const reachable = voters.filter((voter) => !dead.has(voter)).length;
  const majority = Math.floor(voters.length / 2) + 1;
  if (reachable >= majority) return undefined;
  return `no coordinator known and ${voters.length - reachable} of ${voters.length} voters dead as this node sees them (a majority is ${majority}): this node is cut off from the cluster; retry on another node`;
}

