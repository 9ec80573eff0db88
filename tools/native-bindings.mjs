/**
 * Run by `prepare` after every install. npm leaves out an optional dependency whose `engines` exclude the
 * Node that runs npm: the native binding of @napi-rs/lzma 1.5 (the xz codec) requires Node >= 22, so an
 * `npm install` or `npm ci` under an older system Node skips it, although the project itself runs on the
 * Node 24 it installs as a devDependency. When that Node cannot load the codec, install again with it on
 * the PATH, which takes the skipped bindings from package-lock.json and changes nothing else.
 * Plain JavaScript, so any Node that runs npm can run it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const node = `${root}/node_modules/node/bin/node`;
const loads = () => spawnSync(node, ['-e', "require('@napi-rs/lzma')"], { cwd: root, stdio: 'ignore' }).status === 0;

if (existsSync(node) && !loads()) {
  process.stderr.write('native bindings: npm skipped some under this Node; installing them with Node 24\n');
  const env = { ...process.env, PATH: `${dirname(node)}:${process.env.PATH ?? ''}` };
  const install = spawnSync('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: root, env, stdio: 'inherit' });
  if (install.status !== 0 || !loads()) {
    process.stderr.write('native bindings: @napi-rs/lzma still does not load under node_modules/node (the xz codec will fail)\n');
    process.exit(1);
  }
}
