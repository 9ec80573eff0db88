/**
 * Image codecs: png-lossless keeps every pixel, png-lossy makes a palette PNG, jpeg makes a JPEG, an
 * output that is not smaller leaves the input as it was, and bad input (a bomb, a non-image, a truncated
 * or animated PNG, a corrupt one) is refused with its code before or instead of a crash. The images are
 * generated here with sharp; the pool test runs them on real worker threads.
 */

import { threadId } from 'node:worker_threads';
import sharp from 'sharp';
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createImagePool, ImageError, optimizeImage, parseImageQuality, type ImageErrorCode, type ImageOptions } from '../node/codec/index.ts';
import { bomb, chunk, insertAfterHeader } from './support/png.ts';

// ---------------------------------------------------------------------------------------------------
// Images made here

async function photo(width = 160, height = 120): Promise<Uint8Array> {
  const noise = await sharp({ create: { width, height, channels: 3, background: '#6080a0', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
    .png()
    .toBuffer();
  return sharp(noise).blur(2).png({ compressionLevel: 2 }).toBuffer();
}

async function screenshot(): Promise<Uint8Array> {
  const svg =
    '<svg xmlns="http://www.w3.org/2000/svg" width="240" height="120"><rect width="240" height="120" fill="#fff"/>' +
    '<rect width="240" height="24" fill="#e5e7eb"/><text x="8" y="60" font-family="DejaVu Sans" font-size="14">lossless images</text>' +
    '<rect x="8" y="80" width="80" height="24" rx="4" fill="#2563eb"/></svg>';
  return sharp(Buffer.from(svg)).png({ compressionLevel: 1 }).toBuffer();
}

async function withAlpha(): Promise<Uint8Array> {
  const raw = Buffer.alloc(64 * 48 * 4);
  for (let index = 0; index < 64 * 48; index++) raw.set([index % 64 * 4, (index >> 6) * 5, 90, index % 251], index * 4);
  return sharp(raw, { raw: { width: 64, height: 48, channels: 4 } }).png({ compressionLevel: 0 }).toBuffer();
}

async function sixteenBit(): Promise<Uint8Array> {
  const raw = new Uint16Array(48 * 32 * 3);
  for (let index = 0; index < raw.length; index++) raw[index] = (index * 2654435761) % 65536;
  return sharp(Buffer.from(raw.buffer), { raw: { width: 48, height: 32, channels: 3, premultiplied: false } })
    .toColourspace('rgb16')
    .png({ compressionLevel: 0 })
    .toBuffer();
}

async function grey(): Promise<Uint8Array> {
  return sharp(await photo(80, 60)).toColourspace('b-w').png({ compressionLevel: 1 }).toBuffer();
}

async function palette(): Promise<Uint8Array> {
  return sharp(await screenshot()).png({ palette: true, colours: 16, compressionLevel: 0 }).toBuffer();
}

/** Every pixel as 16-bit RGBA, so 8-bit, 16-bit, grey and palette images compare alike. */
async function pixels(bytes: Uint8Array): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(bytes).ensureAlpha().toColourspace('rgb16').raw({ depth: 'ushort' }).toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

// ---------------------------------------------------------------------------------------------------
// PNG surgery

function chunkTypes(png: Uint8Array): string[] {
  const types: string[] = [];
  for (let offset = 8; offset + 8 <= png.length; ) {
    const length = Buffer.from(png.buffer, png.byteOffset, png.byteLength).readUInt32BE(offset);
    types.push(Buffer.from(png.subarray(offset + 4, offset + 8)).toString('latin1'));
    offset += 12 + length;
  }
  return types;
}

async function refusal(bytes: Uint8Array, options: ImageOptions): Promise<ImageError> {
  try {
    await optimizeImage(bytes, options);
  } catch (error) {
    assert.instance(error, ImageError);
    return error as ImageError;
  }
  assert.unreachable(`expected ${options.mode} to refuse the input`);
  throw new Error('unreachable');
}

function assertCode(error: ImageError, code: ImageErrorCode, mentions: string): void {
  assert.is(error.code, code, error.message);
  assert.ok(error.message.includes(mentions), `"${error.message}" should mention "${mentions}"`);
}

// ---------------------------------------------------------------------------------------------------
// png-lossless

const lossless = suite('png-lossless');

for (const [name, make] of [
  ['an RGB photograph', () => photo()],
  ['a screenshot', screenshot],
  ['an RGBA image', withAlpha],
  ['a 16-bit image', sixteenBit],
  ['a grey image', grey],
  ['a palette image', palette],
] as const) {
  lossless(`${name}: the output decodes to exactly the input's pixels and is smaller`, async () => {
    const input = await make();
    const result = await optimizeImage(input, { mode: 'png-lossless' });
    assert.is(result.kept, false, 'the generated input is stored with weak compression, so oxipng must shrink it');
    assert.ok(result.outputBytes < result.inputBytes);
    assert.is(result.bytes.length, result.outputBytes);
    assert.is(result.format, 'png');
    const before = await pixels(input);
    const after = await pixels(result.bytes);
    assert.is(after.width, before.width);
    assert.is(after.height, before.height);
    assert.ok(before.data.equals(after.data), 'pixels differ after png-lossless');
  });
}

lossless('metadata is stripped by default and kept with keepMetadata', async () => {
  const text = chunk('tEXt', Buffer.from('Comment\0made by the images test', 'latin1'));
  const input = insertAfterHeader(await photo(), text);
  assert.ok(chunkTypes(input).includes('tEXt'));
  const stripped = await optimizeImage(input, { mode: 'png-lossless' });
  const kept = await optimizeImage(input, { mode: 'png-lossless', keepMetadata: true });
  assert.not.ok(chunkTypes(stripped.bytes).includes('tEXt'), chunkTypes(stripped.bytes).join(' '));
  assert.ok(chunkTypes(kept.bytes).includes('tEXt'), chunkTypes(kept.bytes).join(' '));
});

lossless('an output that is not smaller leaves the input as it was', async () => {
  const once = (await optimizeImage(await screenshot(), { mode: 'png-lossless' })).bytes;
  const twice = await optimizeImage(once, { mode: 'png-lossless' });
  assert.is(twice.kept, true);
  assert.is(twice.bytes, once);
  assert.is(twice.outputBytes, twice.inputBytes);
});

lossless.run();

// ---------------------------------------------------------------------------------------------------
// png-lossy and jpeg

const lossy = suite('png-lossy and jpeg');

lossy('png-lossy makes a smaller, valid palette PNG of the same size in pixels', async () => {
  for (const input of [await photo(), await withAlpha(), await sixteenBit()]) {
    const result = await optimizeImage(input, { mode: 'png-lossy', quality: parseImageQuality('60-80') });
    assert.is(result.kept, false);
    assert.ok(result.outputBytes < result.inputBytes);
    const metadata = await sharp(result.bytes).metadata();
    const original = await sharp(input).metadata();
    assert.is(metadata.format, 'png');
    assert.is(metadata.isPalette, true);
    assert.is(metadata.width, original.width);
    assert.is(metadata.height, original.height);
    await sharp(result.bytes).raw().toBuffer(); // decodes completely
  }
});

lossy('png-lossy dithers by default; dither: false gives another image', async () => {
  const input = await photo();
  const dithered = await optimizeImage(input, { mode: 'png-lossy' });
  const flat = await optimizeImage(input, { mode: 'png-lossy', dither: false });
  assert.not.ok(Buffer.from(dithered.bytes).equals(flat.bytes));
});

lossy('jpeg re-encodes a JPEG smaller at a lower quality, and takes a PNG', async () => {
  const input = await sharp(await photo(320, 240)).jpeg({ quality: 98 }).toBuffer();
  const result = await optimizeImage(input, { mode: 'jpeg', quality: { min: 0, max: 70 } });
  assert.is(result.kept, false);
  assert.is(result.format, 'jpeg');
  assert.is((await sharp(result.bytes).metadata()).format, 'jpeg');
  const fromPng = await optimizeImage(await photo(320, 240), { mode: 'jpeg' });
  assert.is((await sharp(fromPng.bytes).metadata()).format, 'jpeg');
});

lossy('quality ranges parse like pngquant and bad ones are refused', () => {
  assert.equal(parseImageQuality('60-80'), { min: 60, max: 80 });
  assert.equal(parseImageQuality('75'), { min: 0, max: 75 });
  for (const text of ['80-60', '0-101', 'high', '60-', '']) {
    assert.throws(() => parseImageQuality(text), (error: ImageError) => error.code === 'BAD_IMAGE_OPTIONS' && error.message.startsWith('quality'));
  }
});

lossy.run();

// ---------------------------------------------------------------------------------------------------
// Bad input

const bad = suite('bad input');

bad('a PNG bomb is refused from its header, naming the dimensions, before decoding', async () => {
  const input = bomb(100_000, 100_000);
  assert.ok(input.length < 2000, `the bomb is ${input.length} bytes`);
  for (const mode of ['png-lossless', 'png-lossy', 'jpeg'] as const) {
    assertCode(await refusal(input, { mode }), 'TOO_MANY_PIXELS', '100000x100000');
  }
  assertCode(await refusal(bomb(2000, 2000), { mode: 'png-lossless', pixelsMax: 1_000_000 }), 'TOO_MANY_PIXELS', '2000x2000');
});

bad('a JPEG whose frame header claims too many pixels is refused before decoding', async () => {
  const input = Buffer.from(await sharp(await photo()).jpeg().toBuffer());
  const frame = input.indexOf(Buffer.from([0xff, 0xc0]));
  assert.ok(frame > 0, 'a baseline JPEG has an SOF0 marker');
  input.writeUInt16BE(60_000, frame + 5); // height
  input.writeUInt16BE(60_000, frame + 7); // width
  assertCode(await refusal(input, { mode: 'jpeg' }), 'TOO_MANY_PIXELS', '60000x60000');
});

bad('a file that is not an image is refused as NOT_IMAGE', async () => {
  assertCode(await refusal(Buffer.from('%PDF-1.7 not a picture at all'), { mode: 'png-lossless' }), 'NOT_IMAGE', 'not an image');
  assertCode(await refusal(new Uint8Array(0), { mode: 'png-lossy' }), 'NOT_IMAGE', '0 bytes');
});

bad('a truncated PNG is refused as TRUNCATED_IMAGE, naming where it ends', async () => {
  const input = await photo();
  const half = input.subarray(0, Math.floor(input.length / 2));
  assertCode(await refusal(half, { mode: 'png-lossless' }), 'TRUNCATED_IMAGE', `byte ${half.length}`);
  assertCode(await refusal(input.subarray(0, 20), { mode: 'png-lossy' }), 'TRUNCATED_IMAGE', '20 bytes');
  assertCode(await refusal(input.subarray(0, input.length - 12), { mode: 'png-lossless' }), 'TRUNCATED_IMAGE', 'no IEND');
});

bad('an animated PNG is refused as ANIMATED_IMAGE', async () => {
  const animation = Buffer.alloc(8);
  animation.writeUInt32BE(2, 0); // frames
  const input = insertAfterHeader(await screenshot(), chunk('acTL', animation));
  assertCode(await refusal(input, { mode: 'png-lossless' }), 'ANIMATED_IMAGE', 'acTL');
});

bad('corrupt pixel data is refused as CORRUPT_IMAGE, not a crash', async () => {
  const input = Buffer.from(await photo());
  const data = input.indexOf('IDAT', 0, 'latin1') + 4;
  for (let offset = data + 2; offset < data + 200; offset++) input[offset] = 0xff;
  for (const mode of ['png-lossless', 'png-lossy'] as const) assertCode(await refusal(input, { mode }), 'CORRUPT_IMAGE', 'could not be coded');
});

bad('limits and formats: too many bytes, a JPEG for a PNG mode, an unknown mode', async () => {
  assertCode(await refusal(await photo(), { mode: 'png-lossless', inputBytesMax: 100 }), 'IMAGE_TOO_LARGE', 'limit of 100 bytes');
  const jpeg = await sharp(await photo()).jpeg().toBuffer();
  assertCode(await refusal(jpeg, { mode: 'png-lossless' }), 'WRONG_IMAGE_FORMAT', 'got a JPEG');
  assertCode(await refusal(await photo(), { mode: 'webp' as 'jpeg' }), 'BAD_IMAGE_OPTIONS', 'webp');
});

bad.run();

// ---------------------------------------------------------------------------------------------------
// Worker threads

const pool = suite('image pool');

pool('images are coded on worker threads; errors cross as ImageError and the threads keep serving', async () => {
  const images = createImagePool({ threads: 2 });
  try {
    const inputs = [await photo(), await screenshot(), await withAlpha(), await palette()];
    const results = await Promise.all(inputs.map((bytes) => images.optimize(bytes, { mode: 'png-lossless' })));
    for (const [index, result] of results.entries()) {
      assert.is.not(result.threadId, threadId, 'coded on the main thread');
      assert.ok(result.outputBytes < inputs[index]!.length);
      assert.ok((await pixels(result.bytes)).data.equals((await pixels(inputs[index]!)).data));
    }
    try {
      await images.optimize(bomb(100_000, 100_000), { mode: 'png-lossy' });
      assert.unreachable('the bomb was accepted');
    } catch (error) {
      assert.instance(error, ImageError);
      assert.is((error as ImageError).code, 'TOO_MANY_PIXELS');
    }
    const after = await images.optimize(await photo(), { mode: 'png-lossy' });
    assert.is(after.kept, false);
    assert.is(images.completed, inputs.length + 2, 'the pool counts every image its threads finished');
  } finally {
    await images.close();
  }
});

pool.run();
