/**
 * Rooms are imported only through their doors (STYLE.md, "Our own habits"): a folder directly under `node/`
 * is a room, and a file outside it may import only its `index.ts`. Sub-rooms such as `node/cluster/raft` are
 * inside their room; the outer door re-exports what other rooms need. Files directly under `node/` are
 * leaves every room may import. Every import form counts: `import`, `import type`, `export ... from`, and
 * dynamic `import('...')`, found in TypeScript's own syntax tree so comments and strings do not confuse it.
 * And `test/` and `bench/` never import each other: what both need (launchers, the loopback GCS server,
 * seeded data) lives in `tools/`.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { typeScriptFiles } from '../tools/long-functions.ts';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');

interface ImportSite {
  /** The importing file, relative to the repository root. */
  file: string;
  line: number;
  specifier: string;
  /** What the specifier names, relative to the repository root (relative specifiers only). */
  target: string;
}

/** The module specifiers of one file with their positions: static, type-only, re-export and dynamic imports. */
function specifiersOf(sourceFile: ts.SourceFile): { specifier: string; position: number }[] {
  const found: { specifier: string; position: number }[] = [];
  const visit = (node: ts.Node): void => {
    let literal: ts.Node | undefined;
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) literal = node.moduleSpecifier;
    else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) literal = node.arguments[0];
    else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) literal = node.argument.literal;
    if (literal !== undefined && ts.isStringLiteralLike(literal)) found.push({ specifier: literal.text, position: literal.getStart(sourceFile) });
    ts.forEachChild(node, visit);
  };
  visit(sourceFile);
  return found;
}

/** Every relative import of every `.ts` file under `folder` (a folder of the repository). */
function relativeImports(folder: string): ImportSite[] {
  return typeScriptFiles(join(root, folder)).flatMap((path) => {
    const sourceFile = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
    return specifiersOf(sourceFile)
      .filter(({ specifier }) => specifier.startsWith('.'))
      .map(({ specifier, position }) => ({
        file: relative(root, path),
        line: sourceFile.getLineAndCharacterOfPosition(position).line + 1,
        specifier,
        target: relative(root, resolve(dirname(path), specifier)),
      }));
  });
}

function describe(sites: ImportSite[]): string {
  return sites.map((site) => `${site.file}:${site.line} imports '${site.specifier}'`).join('\n');
}

/** The room of a path under node/ (its first folder), or undefined for a leaf file directly under node/. */
function roomOf(path: string): string | undefined {
  const parts = path.split(sep);
  return parts[0] === 'node' && parts.length > 2 ? parts[1] : undefined;
}

/** Whether an import from `site.file` into another room goes past that room's door. */
function pastDoor(site: ImportSite): boolean {
  const targetRoom = roomOf(site.target);
  if (!site.target.startsWith(`node${sep}`) || targetRoom === undefined) return false;
  if (targetRoom === roomOf(site.file)) return false;
  return site.target !== join('node', targetRoom, 'index.ts');
}

const nodeImports = relativeImports('node');

test('a room under node/ is imported from another room only through its index.ts', () => {
  const sites = nodeImports.filter(pastDoor);
  assert.is(sites.length, 0, `imports past a room's door (import the room's index.ts instead):\n${describe(sites)}`);
});

test('the door scan sees every import form: import type, export from, and dynamic import', () => {
  const sites = nodeImports;
  const has = (file: string, specifier: string) =>
    sites.some((site) => site.file === join(...file.split('/')) && site.specifier === specifier);
  assert.ok(has('node/cli/governor.ts', '../runtime/index.ts'), 'a dynamic import is seen');
  assert.ok(has('node/protocol/index.ts', '../jobs/index.ts'), 'an import type is seen');
  assert.ok(has('node/gateway/index.ts', './http.ts'), 'an export ... from is seen');
});

test('code under node/ never imports the tests or the bench', () => {
  const sites = nodeImports.filter((site) => roomOf(site.target) === undefined && !site.target.startsWith(`node${sep}`));
  assert.is(sites.length, 0, `node/ imports outside itself:\n${describe(sites)}`);
});

test('only the CLI and the runtime end the process: no process.exit elsewhere under node/', () => {
  const exits = typeScriptFiles(join(root, 'node'))
    .map((path) => relative(root, path))
    .filter((file) => !['cli', 'runtime'].includes(roomOf(file) ?? ''))
    .flatMap((file) =>
      readFileSync(join(root, file), 'utf8')
        .split('\n')
        .flatMap((text, index) => (/\bprocess\.exit\s*\(/.test(text) ? [`${file}:${index + 1}: ${text.trim()}`] : [])),
    );
  assert.is(exits.length, 0, `process.exit below the CLI and the runtime (raise an error or an event instead):\n${exits.join('\n')}`);
});

test('every script a module names by path beside itself (new URL(path, import.meta.url)) exists', () => {
  const missing = ['node', 'test', 'bench', 'tools'].flatMap((folder) =>
    typeScriptFiles(join(root, folder)).flatMap((path) =>
      [...readFileSync(path, 'utf8').matchAll(/new URL\(\s*['"](\.{1,2}\/[^'"]+\.(?:ts|js|mjs|json|wasm))['"]\s*,\s*import\.meta\.url\s*\)/g)]
        .filter((match) => !existsSync(resolve(dirname(path), match[1])))
        .map((match) => `${relative(root, path)} names '${match[1]}'`),
    ),
  );
  assert.is(missing.length, 0, `paths to files that are not there (a module moved?):\n${missing.join('\n')}`);
});

/** Tests of the bench itself: they check its generator and its report, so they import `bench/`. */
// Tests of the bench itself; load.test.ts runs the load bench (bench/load.ts) at CI size.
const benchTests = ['bench-generate.test.ts', 'bench-report.test.ts', 'hosts-report.test.ts', 'load.test.ts'];

function importsInto(sites: ImportSite[], folder: string): ImportSite[] {
  return sites.filter((site) => site.target.startsWith(`${folder}${sep}`));
}

test('bench/ never imports test/: what both need lives in tools/', () => {
  const sites = importsInto(relativeImports('bench'), 'test');
  assert.is(sites.length, 0, `bench/ imports test/ (move the shared module to tools/):\n${describe(sites)}`);
});

test('test/ imports bench/ only in the tests of the bench itself', () => {
  const sites = importsInto(relativeImports('test'), 'bench').filter((site) => !benchTests.includes(relative('test', site.file)));
  assert.is(sites.length, 0, `test/ imports bench/ (move the shared module to tools/, or name a test of the bench in benchTests):\n${describe(sites)}`);
});

test('tools/ imports neither test/ nor bench/', () => {
  const tools = relativeImports('tools');
  const sites = [...importsInto(tools, 'test'), ...importsInto(tools, 'bench')];
  assert.is(sites.length, 0, `tools/ imports test/ or bench/:\n${describe(sites)}`);
});

test.run();
