/**
 * A seeded corpus of real-looking PNGs for the image benchmark: photograph-like images (fractal noise
 * landscapes with sky, terrain, soft shapes, sensor noise and a lens blur) and screenshot-like images
 * (windows, menus, text in DejaVu/Liberation fonts, code editors, terminals, flat colours), plus a few
 * 16-bit, grey, alpha and palette PNGs. The machine has no photographs and no internet, so photographs
 * are synthesised; the same seed always gives the same pixels. Files are cached in a folder and never
 * committed.
 *
 *   node bench/images-corpus.ts [--dir DIR] [--seed N] [--count N]
 */

import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp, { type Sharp } from 'sharp';

export type CorpusKind = 'photo' | 'screenshot' | 'photo-16bit' | 'photo-grey' | 'screenshot-alpha' | 'screenshot-palette';

export interface CorpusImage {
  name: string;
  path: string;
  kind: CorpusKind;
}

export interface CorpusOptions {
  dir?: string;
  seed?: number;
  /** Images in total; at least 8 (the special kinds take 8), default 64. */
  count?: number;
}

export const corpusCountDefault = 64;
const corpusCountMax = 2000;
const specialKinds: CorpusKind[] = ['photo-16bit', 'photo-16bit', 'photo-grey', 'photo-grey', 'screenshot-alpha', 'screenshot-alpha', 'screenshot-palette', 'screenshot-palette'];

export function corpusDirDefault(seed: number): string {
  return join(tmpdir(), `dcas-images-seed${seed}`);
}

/** Makes the images missing from `dir` and lists the whole corpus, in a fixed order. */
export async function generateImageCorpus(options: CorpusOptions = {}): Promise<CorpusImage[]> {
  const seed = options.seed ?? 1;
  const count = options.count ?? corpusCountDefault;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative integer, got ${seed}`);
  if (!Number.isInteger(count) || count < specialKinds.length || count > corpusCountMax) {
    throw new RangeError(`count must be an integer from ${specialKinds.length} to ${corpusCountMax}, got ${count}`);
  }
  const dir = options.dir ?? corpusDirDefault(seed);
  mkdirSync(dir, { recursive: true });
  const plain = count - specialKinds.length;
  const kinds: CorpusKind[] = [];
  for (let index = 0; index < plain; index++) kinds.push(index % 2 === 0 ? 'photo' : 'screenshot');
  kinds.push(...specialKinds);
  const images: CorpusImage[] = [];
  for (const [index, kind] of kinds.entries()) {
    const name = `${String(index).padStart(4, '0')}-${kind}.png`;
    const path = join(dir, name);
    if (!existsSync(path)) writeAtomically(path, await renderImage(kind, random(seed * 100_003 + index)));
    images.push({ name, path, kind });
  }
  return images;
}

function writeAtomically(path: string, bytes: Uint8Array): void {
  const partial = `${path}.partial`;
  writeFileSync(partial, bytes);
  renameSync(partial, path);
}

async function renderImage(kind: CorpusKind, next: Random): Promise<Uint8Array> {
  switch (kind) {
    case 'photo':
      return photoPipeline(next).png().toBuffer();
    case 'photo-16bit':
      return photoPipeline(next).toColourspace('rgb16').png().toBuffer();
    case 'photo-grey':
      return photoPipeline(next).toColourspace('b-w').png().toBuffer();
    case 'screenshot':
      return sharp(Buffer.from(screenshotSvg(next))).flatten({ background: '#ffffff' }).png().toBuffer();
    case 'screenshot-alpha':
      return sharp(Buffer.from(screenshotSvg(next, { roundedCorners: true }))).png().toBuffer();
    case 'screenshot-palette':
      return sharp(Buffer.from(screenshotSvg(next))).flatten({ background: '#ffffff' }).png({ palette: true, colours: 64, dither: 0 }).toBuffer();
  }
}

// ---- Randomness ----------------------------------------------------------------------------------

type Random = () => number;

/** mulberry32: small, fast and good enough for pictures; the same seed gives the same sequence. */
function random(seed: number): Random {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let mixed = Math.imul(state ^ (state >>> 15), 1 | state);
    mixed = (mixed + Math.imul(mixed ^ (mixed >>> 7), 61 | mixed)) ^ mixed;
    return ((mixed ^ (mixed >>> 14)) >>> 0) / 4294967296;
  };
}

function pick<T>(next: Random, values: readonly T[]): T {
  return values[Math.floor(next() * values.length)]!;
}

function between(next: Random, low: number, high: number): number {
  return low + next() * (high - low);
}

// ---- Photographs ---------------------------------------------------------------------------------

const photoSizes = [
  [320, 240],
  [640, 480],
  [800, 600],
  [1024, 768],
  [600, 800],
] as const;

/** Fractal value noise in [0, 1]: octaves of smoothly interpolated lattice noise, like terrain and foliage. */
function fractalNoise(next: Random, width: number, height: number, cellPixels: number, octaves: number): Float32Array {
  const field = new Float32Array(width * height);
  let amplitude = 1;
  let total = 0;
  for (let octave = 0; octave < octaves && cellPixels >= 1; octave++) {
    addOctave(field, next, width, height, cellPixels, amplitude);
    total += amplitude;
    amplitude *= 0.55;
    cellPixels /= 2;
  }
  for (let index = 0; index < field.length; index++) field[index]! /= total;
  return field;
}

function addOctave(field: Float32Array, next: Random, width: number, height: number, cellPixels: number, amplitude: number): void {
  const columns = Math.ceil(width / cellPixels) + 2;
  const rows = Math.ceil(height / cellPixels) + 2;
  const lattice = new Float32Array(columns * rows);
  for (let index = 0; index < lattice.length; index++) lattice[index] = next();
  for (let y = 0; y < height; y++) {
    const latticeY = y / cellPixels;
    const row = Math.floor(latticeY);
    const fractionY = smooth(latticeY - row);
    for (let x = 0; x < width; x++) {
      const latticeX = x / cellPixels;
      const column = Math.floor(latticeX);
      const fractionX = smooth(latticeX - column);
      const top = lattice[row * columns + column]! * (1 - fractionX) + lattice[row * columns + column + 1]! * fractionX;
      const bottom = lattice[(row + 1) * columns + column]! * (1 - fractionX) + lattice[(row + 1) * columns + column + 1]! * fractionX;
      field[y * width + x]! += amplitude * (top * (1 - fractionY) + bottom * fractionY);
    }
  }
}

function smooth(fraction: number): number {
  return fraction * fraction * (3 - 2 * fraction);
}

type Colour = [number, number, number];

const skies: Colour[][] = [
  [[70, 120, 200], [190, 215, 240]],
  [[240, 150, 90], [250, 220, 170]],
  [[110, 110, 130], [200, 200, 205]],
];
const grounds: Colour[][] = [
  [[40, 80, 30], [120, 150, 60]],
  [[120, 90, 60], [210, 180, 130]],
  [[60, 70, 80], [150, 150, 145]],
  [[30, 60, 90], [90, 140, 160]],
];

function mix(low: Colour, high: Colour, amount: number, channel: number): number {
  return low[channel]! + (high[channel]! - low[channel]!) * amount;
}

/** A landscape: sky gradient with clouds above a noisy horizon, textured ground, sensor noise, lens blur. */
function photoPipeline(next: Random): Sharp {
  const [width, height] = pick(next, photoSizes);
  const sky = pick(next, skies);
  const ground = pick(next, grounds);
  const terrain = fractalNoise(next, width, height, between(next, 48, 160), 7);
  const clouds = fractalNoise(next, width, height, between(next, 64, 200), 5);
  const horizon = fractalNoise(next, width, 1, between(next, 40, 120), 4);
  const horizonBase = between(next, 0.3, 0.6);
  const grain = between(next, 2, 7);
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const index = y * width + x;
      const line = height * (horizonBase + (horizon[x]! - 0.5) * 0.35);
      const isSky = y < line;
      for (let channel = 0; channel < 3; channel++) {
        let value: number;
        if (isSky) {
          const cloud = Math.max(0, clouds[index]! - 0.5) * 2.2;
          value = mix(sky[0]!, sky[1]!, y / line, channel) * (1 - cloud) + 245 * cloud;
        } else {
          const depth = (y - line) / (height - line);
          value = mix(ground[0]!, ground[1]!, terrain[index]!, channel) * (0.7 + 0.4 * depth);
        }
        value += (next() + next() + next() - 1.5) * grain;
        pixels[index * 3 + channel] = Math.max(0, Math.min(255, Math.round(value)));
      }
    }
  }
  return sharp(pixels, { raw: { width, height, channels: 3 } }).blur(between(next, 0.5, 1.2));
}

// ---- Screenshots ---------------------------------------------------------------------------------

const screenSizes = [
  [800, 600],
  [1024, 768],
  [1280, 800],
  [640, 400],
] as const;
const fonts = ['DejaVu Sans', 'Liberation Sans', 'DejaVu Serif', 'Liberation Serif'];
const monoFonts = ['DejaVu Sans Mono', 'Liberation Mono'];
const words = (
  'the cluster node job upload status chunk worker leader term compress image photo settings file edit view ' +
  'help window open save close account profile search results page next previous total bytes ratio time ' +
  'server client token error retry lease archive batch quality lossless lossy palette colour preview report'
).split(' ');
const codeWords = ['const', 'let', 'function', 'return', 'await', 'if', 'for', 'import', 'export', 'new', 'throw'];
const accents = ['#2563eb', '#16a34a', '#dc2626', '#9333ea', '#ea580c', '#0891b2'];

function sentence(next: Random, wordsMax: number): string {
  const length = 1 + Math.floor(next() * wordsMax);
  return Array.from({ length }, () => pick(next, words)).join(' ');
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A desktop application window, a code editor or a terminal, as SVG rendered by librsvg. */
function screenshotSvg(next: Random, options: { roundedCorners?: boolean } = {}): string {
  const [width, height] = pick(next, screenSizes);
  const style = pick(next, ['app', 'editor', 'terminal'] as const);
  const body = style === 'app' ? appWindow(next, width, height) : style === 'editor' ? editorWindow(next, width, height) : terminalWindow(next, width, height);
  const radius = options.roundedCorners === true ? 14 : 0;
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
    `<clipPath id="window"><rect width="${width}" height="${height}" rx="${radius}"/></clipPath>` +
    `<g clip-path="url(#window)">${body}</g></svg>`
  );
}

function titleBar(next: Random, width: number, dark: boolean): string {
  const title = escapeXml(sentence(next, 4));
  return (
    `<rect width="${width}" height="32" fill="${dark ? '#2d2d30' : '#e8e8e8'}"/>` +
    `<circle cx="18" cy="16" r="6" fill="#ff5f57"/><circle cx="38" cy="16" r="6" fill="#febc2e"/><circle cx="58" cy="16" r="6" fill="#28c840"/>` +
    `<text x="${width / 2}" y="21" font-family="DejaVu Sans" font-size="13" text-anchor="middle" fill="${dark ? '#ccc' : '#333'}">${title}</text>`
  );
}

function appWindow(next: Random, width: number, height: number): string {
  const accent = pick(next, accents);
  const font = pick(next, fonts);
  const sidebarWidth = Math.round(width * between(next, 0.18, 0.26));
  const parts = [`<rect width="${width}" height="${height}" fill="#ffffff"/>`, titleBar(next, width, false)];
  parts.push(`<rect y="32" width="${sidebarWidth}" height="${height - 32}" fill="#f3f4f6"/>`);
  for (let item = 0, y = 64; y < height - 20; item++, y += 30) {
    if (item === 2) parts.push(`<rect x="8" y="${y - 19}" width="${sidebarWidth - 16}" height="26" rx="4" fill="${accent}" opacity="0.15"/>`);
    parts.push(`<text x="20" y="${y}" font-family="${font}" font-size="14" fill="#374151">${escapeXml(sentence(next, 2))}</text>`);
  }
  let y = 70;
  parts.push(`<text x="${sidebarWidth + 24}" y="${y}" font-family="${font}" font-size="24" font-weight="bold" fill="#111827">${escapeXml(sentence(next, 3))}</text>`);
  y += 30;
  while (y < height - 60) {
    if (next() < 0.2) {
      parts.push(`<rect x="${sidebarWidth + 24}" y="${y}" width="${Math.round(between(next, 90, 160))}" height="32" rx="6" fill="${accent}"/>`);
      parts.push(`<text x="${sidebarWidth + 40}" y="${y + 21}" font-family="${font}" font-size="14" fill="#fff">${escapeXml(sentence(next, 2))}</text>`);
      y += 48;
    } else if (next() < 0.25) {
      const cardHeight = Math.round(between(next, 60, 120));
      parts.push(`<rect x="${sidebarWidth + 24}" y="${y}" width="${width - sidebarWidth - 48}" height="${cardHeight}" rx="8" fill="#f9fafb" stroke="#e5e7eb"/>`);
      parts.push(`<text x="${sidebarWidth + 40}" y="${y + 26}" font-family="${font}" font-size="15" font-weight="bold" fill="#1f2937">${escapeXml(sentence(next, 4))}</text>`);
      parts.push(`<text x="${sidebarWidth + 40}" y="${y + 48}" font-family="${font}" font-size="13" fill="#6b7280">${escapeXml(sentence(next, 10))}</text>`);
      y += cardHeight + 16;
    } else {
      parts.push(`<text x="${sidebarWidth + 24}" y="${y + 16}" font-family="${font}" font-size="14" fill="#374151">${escapeXml(sentence(next, 12))}</text>`);
      y += 24;
    }
  }
  return parts.join('');
}

function editorWindow(next: Random, width: number, height: number): string {
  const font = pick(next, monoFonts);
  const colours = ['#569cd6', '#ce9178', '#dcdcaa', '#9cdcfe', '#c586c0', '#6a9955', '#d4d4d4'];
  const parts = [`<rect width="${width}" height="${height}" fill="#1e1e1e"/>`, titleBar(next, width, true)];
  parts.push(`<rect y="32" width="48" height="${height - 32}" fill="#252526"/>`);
  let indent = 0;
  for (let line = 1, y = 54; y < height - 8; line++, y += 19) {
    parts.push(`<text x="40" y="${y}" font-family="${font}" font-size="13" text-anchor="end" fill="#858585">${line}</text>`);
    if (next() < 0.12) continue;
    indent = Math.max(0, Math.min(4, indent + (next() < 0.3 ? 1 : next() < 0.3 ? -1 : 0)));
    let x = 60 + indent * 24;
    const tokens = 1 + Math.floor(next() * 7);
    for (let token = 0; token < tokens && x < width - 80; token++) {
      const text = token === 0 ? pick(next, codeWords) : pick(next, words) + pick(next, ['', '(', ')', ';', ',', ' =', '.']);
      parts.push(`<text x="${x}" y="${y}" font-family="${font}" font-size="13" fill="${pick(next, colours)}">${escapeXml(text)}</text>`);
      x += (text.length + 1) * 8;
    }
  }
  return parts.join('');
}

function terminalWindow(next: Random, width: number, height: number): string {
  const font = pick(next, monoFonts);
  const parts = [`<rect width="${width}" height="${height}" fill="#0c0c0c"/>`, titleBar(next, width, true)];
  for (let y = 52; y < height - 8; y += 18) {
    const prompt = next() < 0.25;
    const text = prompt ? `$ dcas ${sentence(next, 4)}` : `${(next() * 1000).toFixed(1)} MB  ${sentence(next, 8)}`;
    parts.push(`<text x="10" y="${y}" font-family="${font}" font-size="13" fill="${prompt ? '#4ade80' : '#d4d4d4'}">${escapeXml(text)}</text>`);
  }
  return parts.join('');
}

// ---- Command line --------------------------------------------------------------------------------

const usageText = 'usage: node bench/images-corpus.ts [--dir DIR] [--seed N] [--count N]';

async function main(): Promise<void> {
  let values: { dir?: string; seed?: string; count?: string; help?: boolean };
  try {
    ({ values } = parseArgs({ options: { dir: { type: 'string' }, seed: { type: 'string' }, count: { type: 'string' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (error) {
    process.stderr.write(`images-corpus: ${(error as Error).message}\n${usageText}\n`);
    process.exit(2);
  }
  if (values.help === true) {
    process.stdout.write(`${usageText}\n`);
    return;
  }
  const seed = values.seed === undefined ? 1 : Number(values.seed);
  const count = values.count === undefined ? corpusCountDefault : Number(values.count);
  let images: CorpusImage[];
  try {
    images = await generateImageCorpus({ dir: values.dir, seed, count });
  } catch (error) {
    process.stderr.write(`images-corpus: ${(error as Error).message}\n${usageText}\n`);
    process.exit(2);
  }
  const dir = values.dir ?? corpusDirDefault(seed);
  process.stdout.write(`${images.length} images in ${dir} (${readdirSync(dir).filter((name) => name.endsWith('.png')).length} PNG files there)\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
