/**
 * Seeded data for tests, the bench and the chaos runner: the same bytes for a seed on every platform, so a
 * failing case replays exactly.
 */

/** mulberry32: small, fast, and the same sequence for a seed on every platform. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Text-like bytes with a skewed distribution: words from a small vocabulary, seeded. */
export function textLike(length: number, seed = 1): Uint8Array {
  const random = seededRandom(seed);
  const words = ['the', 'quick', 'brown', 'fox', 'jumps', 'over', 'lazy', 'dog', 'Subject:', 'From:', 'mail', 'compress', '\n', 'DCaS', '2026'];
  const out = new Uint8Array(length);
  let at = 0;
  while (at < length) {
    const word = words[Math.floor(random() * random() * words.length)];
    for (let i = 0; i < word.length && at < length; i++) out[at++] = word.charCodeAt(i);
    if (at < length) out[at++] = 32;
  }
  return out;
}

export function randomBytesSeeded(length: number, seed = 1): Uint8Array {
  const random = seededRandom(seed);
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(random() * 256);
  return out;
}
