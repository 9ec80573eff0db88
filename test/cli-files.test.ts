/**
 * The file commands as gzip's and zstd's users expect them: outputs kept safe, modes and times kept,
 * pipes, test, list, many files, and one-line messages. Every test runs the real `dcas` process.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { format } from '../node/codec/index.ts';
import { textLike, withTempDir } from './helpers.ts';
import { assertOneLineError, dcasEntry, runDcas as run } from './support/dcas-process.ts';

const modified = new Date('2020-01-02T03:04:05Z');

async function inputFile(dir: string, name: string, bytes: Uint8Array, mode = 0o640): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, bytes);
  await chmod(path, mode);
  await utimes(path, modified, modified);
  return path;
}

test('an existing device or FIFO as the output is refused with one line, even with --force, and stays what it was', async () => {
  await withTempDir(async (dir) => {
    await inputFile(dir, 'small.txt', textLike(1000));
    execFileSync('mknod', [join(dir, 'null'), 'c', '1', '3']);
    execFileSync('mkfifo', [join(dir, 'fifo')]);
    for (const target of ['null', 'fifo']) {
      const result = await run(['compress', 'small.txt', '-o', target, '--force'], dir);
      assert.is(result.code, 1);
      assertOneLineError(result, new RegExp(`^dcas: ${target}: exists and is a (device|FIFO); dcas replaces only regular files$`));
    }
    assert.ok((await lstat(join(dir, 'null'))).isCharacterDevice());
    assert.ok((await lstat(join(dir, 'fifo'))).isFIFO());
    assert.is((await readdir(dir)).filter((name) => name.endsWith('.partial')).length, 0);
  });
});

test('compress and decompress keep the input mode (permission bits, umask or not) and modification time', async () => {
  await withTempDir(async (dir) => {
    const data = textLike(3 * format.chunkBytesMin);
    await inputFile(dir, 'secret.txt', data, 0o600);
    assert.is((await run(['compress', 'secret.txt', '-q'], dir)).code, 0);
    const compressed = await stat(join(dir, 'secret.txt.dcz'));
    assert.is(compressed.mode & 0o7777, 0o600);
    assert.is(compressed.mtime.getTime(), modified.getTime());
    await chmod(join(dir, 'secret.txt.dcz'), 0o664);
    assert.is((await run(['decompress', 'secret.txt.dcz', '-o', 'back.txt', '-q'], dir)).code, 0);
    const restored = await stat(join(dir, 'back.txt'));
    assert.is(restored.mode & 0o7777, 0o664);
    assert.is(restored.mtime.getTime(), modified.getTime());
    assert.ok((await readFile(join(dir, 'back.txt'))).equals(data));
  });
});

test('an output in a missing folder is named as the user gave it, never by its temporary name', async () => {
  await withTempDir(async (dir) => {
    await inputFile(dir, 'small.txt', textLike(1000));
    const result = await run(['compress', 'small.txt', '-o', 'nodir/x.dcz'], dir);
    assert.is(result.code, 1);
    assertOneLineError(result, /^dcas: nodir\/x\.dcz: cannot write: no such file or folder$/);
    assert.not.match(result.stderr, /partial/);
  });
});


test('stdin to stdout: no file or - reads stdin, and a pipe of compress and decompress restores the bytes', async () => {
  await withTempDir(async (dir) => {
    const data = textLike(5 * format.chunkBytesMin + 123);
    const compressed = await run(['compress', '--chunk-size', '64k'], dir, { input: data });
    assert.is(compressed.code, 0, compressed.stderr);
    assert.is(compressed.stderr, '');
    const restored = await run(['decompress', '-'], dir, { input: compressed.stdoutBytes });
    assert.is(restored.code, 0, restored.stderr);
    assert.ok(restored.stdoutBytes.equals(data));
    const bare = await run(['-d'], dir, { input: compressed.stdoutBytes });
    assert.ok(bare.stdoutBytes.equals(data));
    assert.equal(await readdir(dir), []);
  });
});

test('-c and -o - write stdout; -dc decodes a file to stdout; stdin with -o writes a file', async () => {
  await withTempDir(async (dir) => {
    const data = textLike(2 * format.chunkBytesMin + 7);
    await inputFile(dir, 'in.txt', data);
    const viaC = await run(['compress', '-c', 'in.txt'], dir);
    const viaDash = await run(['compress', 'in.txt', '-o', '-'], dir);
    assert.is(viaC.code, 0, viaC.stderr);
    assert.ok(viaC.stdoutBytes.equals(viaDash.stdoutBytes));
    assert.equal((await readdir(dir)).sort(), ['in.txt']);
    await writeFile(join(dir, 'piped.dcz'), viaC.stdoutBytes);
    const decoded = await run(['-dc', 'piped.dcz'], dir);
    assert.ok(decoded.stdoutBytes.equals(data));
    const toFile = await run(['compress', '-o', 'from-stdin.dcz', '-q'], dir, { input: data });
    assert.is(toFile.code, 0, toFile.stderr);
    assert.ok((await readFile(join(dir, 'from-stdin.dcz'))).equals(viaC.stdoutBytes));
    // --synchronous flushes before the move; what lands is the same container.
    const flushed = await run(['compress', '--synchronous', '-q', 'in.txt'], dir);
    assert.is(flushed.code, 0, flushed.stderr);
    assert.ok((await readFile(join(dir, 'in.txt.dcz'))).equals(viaC.stdoutBytes));
  });
});

/** Runs dcas with a terminal `columns` wide as its stdout and stderr: script(1) gives it one, as a user's shell would. */
function inTerminal(args: string, cwd: string, columns = 80): { code: number; text: string } {
  try {
    return { code: 0, text: execFileSync('script', ['-qec', `stty cols ${columns}; ${process.execPath} ${dcasEntry} ${args}`, '/dev/null'], { cwd, encoding: 'utf8' }) };
  } catch (error) {
    return { code: (error as { status: number }).status, text: String((error as { stdout: string }).stdout) };
  }
}

test('stdout on a terminal is refused with one line unless --force', async () => {
  await withTempDir(async (dir) => {
    await inputFile(dir, 'in.txt', textLike(1000));
    const shell = (args: string) => inTerminal(args, dir);
    const refused = shell('compress -c in.txt');
    assert.is(refused.code, 2);
    assert.match(refused.text, /dcas: stdout is a terminal: refusing to write compressed data to it/);
    const fromTerminal = shell('compress');
    assert.is(fromTerminal.code, 2);
    assert.match(fromTerminal.text, /dcas: stdin is a terminal: pipe data in or name a file/);
    const forced = shell('compress -c --force in.txt');
    assert.is(forced.code, 0, forced.text);
    assert.match(forced.text, /DCZ/);
  });
});

test('-t verifies every checksum and writes nothing; a corrupted chunk fails with one line naming it', async () => {
  await withTempDir(async (dir) => {
    await inputFile(dir, 'in.txt', textLike(3 * format.chunkBytesMin));
    assert.is((await run(['compress', 'in.txt', '--chunk-size', '64k', '-q'], dir)).code, 0);
    const good = await run(['-t', 'in.txt.dcz'], dir);
    assert.is(good.code, 0, good.stderr);
    assert.match(good.stdout, /^in\.txt\.dcz: OK \(3 chunks/);
    const bad = await readFile(join(dir, 'in.txt.dcz'));
    const secondChunk = format.headerBytes + format.chunkHeaderBytes + bad.readUInt32LE(format.headerBytes + 8);
    bad[secondChunk + format.chunkHeaderBytes + 200] ^= 0x10;
    await writeFile(join(dir, 'bad.dcz'), bad);
    const corrupted = await run(['decompress', '--test', 'bad.dcz'], dir);
    assert.is(corrupted.code, 1);
    assertOneLineError(corrupted, /^dcas: bad\.dcz: chunk 1: /);
    assert.equal((await readdir(dir)).sort(), ['bad.dcz', 'in.txt', 'in.txt.dcz']);
  });
});

test('-l lists chunks, sizes, ratio, codec and SHA-256 from the index; --json gives the same fields', async () => {
  await withTempDir(async (dir) => {
    const data = textLike(3 * format.chunkBytesMin);
    await inputFile(dir, 'in.txt', data);
    assert.is((await run(['compress', 'in.txt', '--chunk-size', '64k', '-q'], dir)).code, 0);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const listed = await run(['-l', 'in.txt.dcz'], dir);
    assert.is(listed.code, 0, listed.stderr);
    const [titles, values] = listed.stdout.trimEnd().split('\n');
    assert.match(titles, /^Chunks\s+Compressed\s+Original\s+Ratio\s+Codec\s+Chunk size\s+SHA-256\s+File$/);
    assert.match(values, new RegExp(`^3\\s.*huffman\\s+64\\.0 KiB\\s+${sha256}\\s+in\\.txt\\.dcz$`));
    const json = JSON.parse((await run(['decompress', '--list', '--json', 'in.txt.dcz'], dir)).stdout);
    assert.is(json.chunks, 3);
    assert.is(json.originalBytes, data.length);
    assert.is(json.compressedBytes, (await stat(join(dir, 'in.txt.dcz'))).size);
    assert.is(json.codec, 'huffman');
    assert.is(json.sha256, sha256);
  });
});

test('-k keeps the input (the default), --rm removes it once the output is complete, and both together is a usage error', async () => {
  await withTempDir(async (dir) => {
    await inputFile(dir, 'a.txt', textLike(1000));
    assert.is((await run(['compress', '-k', '-q', 'a.txt'], dir)).code, 0);
    assert.equal((await readdir(dir)).sort(), ['a.txt', 'a.txt.dcz']);
    const removed = await run(['decompress', '--rm', '-f', '-v', 'a.txt.dcz'], dir);
    assert.is(removed.code, 0, removed.stderr);
    assert.match(removed.stderr, /a\.txt\.dcz: removed/);
    assert.equal((await readdir(dir)).sort(), ['a.txt']);
    const both = await run(['compress', '-k', '--rm', 'a.txt'], dir);
    assert.is(both.code, 2);
    assertOneLineError(both, /-k\/--keep and --rm: choose one/);
  });
});

test('several files in one command: a missing one is reported on one line, the others are done, exit 1; a .dcz is skipped with a warning', async () => {
  await withTempDir(async (dir) => {
    await inputFile(dir, 'a.txt', textLike(1000, 1));
    await inputFile(dir, 'b.txt', textLike(1000, 2));
    await writeFile(join(dir, 'old.dcz'), 'already');
    const result = await run(['compress', '-q', 'a.txt', 'missing.txt', 'old.dcz', 'b.txt'], dir);
    assert.is(result.code, 1);
    // -q keeps the skip warning back; the error is still said.
    assert.equal(result.stderr.trimEnd().split('\n'), ['dcas: missing.txt: no such file']);
    assert.equal((await readdir(dir)).sort(), ['a.txt', 'a.txt.dcz', 'b.txt', 'b.txt.dcz', 'old.dcz']);
    const warned = await run(['compress', 'old.dcz'], dir);
    assert.is(warned.code, 0);
    assertOneLineError(warned, /^dcas: old\.dcz: already has the \.dcz suffix, skipped/);
    assert.is((await run(['compress', '-f', '-q', 'old.dcz'], dir)).code, 0);
    assert.ok((await readdir(dir)).includes('old.dcz.dcz'));
  });
});

test('-T 0 means all cores; --threads past the bound is a usage error naming the option', async () => {
  await withTempDir(async (dir) => {
    await inputFile(dir, 'a.txt', textLike(3 * format.chunkBytesMin));
    const all = await run(['compress', '-T', '0', '--chunk-size', '64k', '--json', 'a.txt'], dir);
    assert.is(all.code, 0, all.stderr);
    assert.ok(JSON.parse(all.stdout).threads >= 1);
    const tooMany = await run(['compress', '--threads', '100000', 'a.txt'], dir);
    assert.is(tooMany.code, 2);
    assertOneLineError(tooMany, /--threads <n>' argument '100000' is invalid\. expected a whole number from 0 \(all cores\) to 256/);
  });
});

test('-- ends the options, so a file named -x is a file; -v says more and -q says nothing', async () => {
  await withTempDir(async (dir) => {
    await inputFile(dir, '-x', textLike(1000));
    const verbose = await run(['compress', '-v', '--', '-x'], dir);
    assert.is(verbose.code, 0, verbose.stderr);
    assert.match(verbose.stdout, /^-x\.dcz: .* on \d+ threads?, 1 chunk\n$/);
    const quiet = await run(['decompress', '-q', '-f', '--', '-x.dcz'], dir);
    assert.is(quiet.code, 0, quiet.stderr);
    assert.is(quiet.stdout + quiet.stderr, '');
  });
});

test("commander's usage errors are one line beginning dcas: with the hint, exit 2", async () => {
  await withTempDir(async (dir) => {
    for (const [args, pattern] of [
      [['compress', '--bogus'], /^dcas: unknown option '--bogus' \(see --help\)$/],
      [['frobnicate'], /^dcas: unknown command 'frobnicate' \(see --help\)$/],
      [['status'], /^dcas: missing required argument 'job' \(see --help\)$/],
    ] as const) {
      const result = await run([...args], dir);
      assert.is(result.code, 2, result.stderr);
      assertOneLineError(result, pattern);
    }
  });
});


test('dcas completion bash completes commands, subcommands and each command\'s options in a real bash', async () => {
  await withTempDir(async (dir) => {
    const script = await run(['completion', 'bash'], dir);
    assert.is(script.code, 0, script.stderr);
    await writeFile(join(dir, 'dcas.bash'), script.stdout);
    const complete = (words: string[]) => {
      const line = `source dcas.bash; COMP_WORDS=(${words.map((word) => `'${word}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _dcas; echo "\${COMPREPLY[*]}"`;
      return execFileSync('bash', ['-c', line], { cwd: dir, encoding: 'utf8' }).trim();
    };
    assert.is(complete(['dcas', 'decom']), 'decompress');
    assert.is(complete(['dcas', 'compress', '-o', 'out.dcz', '--thr']), '--threads');
    assert.is(complete(['dcas', 'cluster', '']), 'up status');
    assert.is(complete(['dcas', 'cluster', 'up', '--no']), '--nodes --no-token');
    for (const shell of ['zsh', 'fish']) {
      const other = await run(['completion', shell], dir);
      assert.is(other.code, 0, other.stderr);
      assert.match(other.stdout, /--threads|-l threads/);
    }
    const unknown = await run(['completion', 'tcsh'], dir);
    assert.is(unknown.code, 2);
    assertOneLineError(unknown, /completion tcsh: unknown shell \(choose one of bash, zsh, fish\)/);
  });
});

test('the installed man page (package.json "man") is what dcas man generates from the commands, with every file flag', async () => {
  await withTempDir(async (dir) => {
    const generated = await run(['man'], dir);
    assert.is(generated.code, 0, generated.stderr);
    const packageJson = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'));
    const installed = await readFile(new URL(`../${packageJson.man[0]}`, import.meta.url), 'utf8');
    assert.is(installed, generated.stdout, 'man/dcas.1 is stale: run npm run man');
    for (const flag of ['\\-T, \\-\\-threads', '\\-t, \\-\\-test', '\\-l, \\-\\-list', '\\-c, \\-\\-stdout', '\\-\\-rm']) assert.ok(installed.includes(flag), flag);
  });
});


test('the progress line fits the terminal: at 80 columns it keeps speed and ETA (the bar goes first), at 120 it has the bar too', async () => {
  await withTempDir(async (dir) => {
    await inputFile(dir, 'in.txt', textLike(8 * format.chunkBytesMin));
    for (const columns of [80, 120]) {
      const { code, text } = inTerminal(`compress -f --chunk-size 64k in.txt`, dir, columns);
      assert.is(code, 0, text);
      // Each redraw starts at column 1 (ESC [1G) and ends by clearing the rest of the line (ESC [0K).
      const drawn = [...text.matchAll(/\x1b\[1G(compress[^\x1b]*)\x1b\[0K/g)].map((match) => match[1]);
      assert.ok(drawn.length > 0, JSON.stringify(text));
      for (const line of drawn) {
        assert.ok(line.length <= columns, `${line.length} columns: ${line}`);
        assert.match(line, /\d+ MB\/s \| ETA /);
      }
      assert.is(drawn.some((line) => /^compress +[=-]{10,} /.test(line)), columns === 120, `bar at ${columns} columns`);
    }
  });
});


test('-r takes the regular files in folders and subfolders (links not followed); a folder without -r is refused in words', async () => {
  await withTempDir(async (dir) => {
    await mkdir(join(dir, 'tree', 'a', 'b'), { recursive: true });
    await inputFile(dir, 'tree/x.txt', textLike(1000, 1));
    await inputFile(dir, 'tree/a/b/z.txt', textLike(1000, 2));
    await symlink(join(dir, 'tree', 'x.txt'), join(dir, 'tree', 'link'));
    const refused = await run(['compress', 'tree'], dir);
    assert.is(refused.code, 1);
    assertOneLineError(refused, /^dcas: tree: is a folder \(-r takes the files in it\)$/);
    assert.is((await run(['compress', '-r', '-q', 'tree'], dir)).code, 0);
    const listing = async () => (await readdir(join(dir, 'tree'), { recursive: true })).sort();
    assert.equal(await listing(), ['a', 'a/b', 'a/b/z.txt', 'a/b/z.txt.dcz', 'link', 'x.txt', 'x.txt.dcz']);
    const tested = await run(['-t', '-r', 'tree'], dir);
    assert.is(tested.code, 0, tested.stderr);
    assert.equal(tested.stdout.split('\n').filter(Boolean).map((line) => line.split(':')[0]), ['tree/a/b/z.txt.dcz', 'tree/x.txt.dcz']);
    assert.is((await run(['decompress', '-r', '--rm', '-f', '-q', 'tree'], dir)).code, 0);
    assert.equal(await listing(), ['a', 'a/b', 'a/b/z.txt', 'link', 'x.txt']);
  });
});

test.run();
