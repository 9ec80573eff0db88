/**
 * The tar reading of images jobs (`node/jobs/tar.ts`) on real tar-stream archives: entries in order,
 * directories skipped, links refused, and a malformed upload refused in words without taking the
 * process down when its source is torn down afterwards (as the gateway does when an upload fails).
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { PassThrough } from 'node:stream';
import * as tar from 'tar-stream';
import { tarEnd, tarEntry, tarImages } from '../node/jobs/tar.ts';

async function collect(input: AsyncIterable<Uint8Array>): Promise<Array<{ name: string; bytes: string }>> {
  const seen: Array<{ name: string; bytes: string }> = [];
  for await (const image of tarImages(input, 1024 * 1024)) seen.push({ name: image.name, bytes: Buffer.from(image.bytes).toString() });
  return seen;
}

/** One buffer as the async stream an upload is. */
async function* streamOf(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  yield bytes;
}

async function packed(build: (pack: tar.Pack) => void): Promise<Buffer> {
  const pack = tar.pack();
  build(pack);
  pack.finalize();
  const pieces: Buffer[] = [];
  for await (const piece of pack) pieces.push(piece as Buffer);
  return Buffer.concat(pieces);
}

test('entries composed by tarEntry and tarEnd read back in order; directories are skipped', async () => {
  const archive = Buffer.concat([await tarEntry('a.png', Buffer.from('first')), await tarEntry('dir/b.png', Buffer.from('second')), tarEnd()]);
  assert.equal(await collect(streamOf(archive)), [
    { name: 'a.png', bytes: 'first' },
    { name: 'dir/b.png', bytes: 'second' },
  ]);
  const withDirectory = await packed((pack) => {
    pack.entry({ name: 'dir', type: 'directory' });
    pack.entry({ name: 'dir/c.png' }, 'third');
  });
  assert.equal(await collect(streamOf(withDirectory)), [{ name: 'dir/c.png', bytes: 'third' }]);
});

test('a symlink entry and a name with ".." are refused with the entry named', async () => {
  const link = await packed((pack) => pack.entry({ name: 'l.png', type: 'symlink', linkname: '/etc/passwd' }));
  const linkError = await collect(streamOf(link)).catch((error: unknown) => error as Error);
  assert.match(String(linkError), /tar entry "l.png": a symlink, not a file/);
  const climb = await packed((pack) => pack.entry({ name: '../x.png' }, 'x'));
  const climbError = await collect(streamOf(climb)).catch((error: unknown) => error as Error);
  assert.match(String(climbError), /tar entry "\.\.\/x\.png": entry names are relative paths/);
});

test('bytes that are not a tar: the read throws tar-stream\'s reason; destroying the source afterwards raises nothing', async () => {
  const uncaught: unknown[] = [];
  const record = (error: unknown) => uncaught.push(error);
  process.on('uncaughtException', record);
  try {
    const source = new PassThrough();
    source.write(Buffer.alloc(4096, 7));
    const refused = await collect(source).catch((error: unknown) => error as Error);
    assert.match(String(refused), /Invalid tar header/);
    source.destroy();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(uncaught, [], `uncaught: ${uncaught.map(String).join('; ')}`);
  } finally {
    process.off('uncaughtException', record);
  }
});

test.run();
