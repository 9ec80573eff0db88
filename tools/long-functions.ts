/**
 * Functions longer than STYLE.md's limit (80 lines, a nested function counted inside the one that holds
 * it), found in TypeScript's syntax tree over `node/`, `tools/`, `bench/` and `test/support/`. The Raft core
 * (`node/cluster/raft/core.ts`) and the kernel (`assembly/`, not TypeScript for Node) are outside the rule,
 * as issue 14 allows: their long functions are the paper's steps and the unrolled loops.
 *
 *   node tools/long-functions.ts [--limit N] [--json]
 *
 * Prints one line per function, longest first, and exits 1 when there is any (0 when none, 2 on usage).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import ts from 'typescript';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
export const functionLinesMax = 80;
const folders = ['node', 'tools', 'bench', 'test/support'];
const exempt = ['node/cluster/raft/core.ts'];

export interface LongFunction {
  file: string;
  line: number;
  name: string;
  lines: number;
}

/** Every `.ts` file under `folder`, at any depth. */
export function typeScriptFiles(folder: string): string[] {
  return readdirSync(folder).flatMap((name) => {
    const path = join(folder, name);
    if (statSync(path).isDirectory()) return typeScriptFiles(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

function nameOf(node: ts.FunctionLikeDeclaration, sourceFile: ts.SourceFile): string {
  if (node.name !== undefined) return node.name.getText(sourceFile);
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const parent = node.parent;
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) return parent.name.getText(sourceFile);
  if (ts.isCallExpression(parent)) return `(callback of ${parent.expression.getText(sourceFile).slice(0, 40)})`;
  return '(anonymous)';
}

/** Every function of `path` longer than `limit` lines. */
function longFunctionsOf(path: string, limit: number): LongFunction[] {
  const sourceFile = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.Latest, true);
  const found: LongFunction[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body !== undefined) {
      const declaration = node as ts.FunctionLikeDeclaration;
      const first = sourceFile.getLineAndCharacterOfPosition(declaration.getStart(sourceFile)).line;
      const last = sourceFile.getLineAndCharacterOfPosition(declaration.getEnd()).line;
      const lines = last - first + 1;
      if (lines > limit) found.push({ file: relative(root, path), line: first + 1, name: nameOf(declaration, sourceFile), lines });
    }
    ts.forEachChild(node, visit);
  };
  visit(sourceFile);
  return found;
}

/** Every function over `limit` lines in the checked folders, longest first. */
export function longFunctions(limit = functionLinesMax): LongFunction[] {
  return folders
    .flatMap((folder) => typeScriptFiles(join(root, folder)))
    .filter((path) => !exempt.includes(relative(root, path)))
    .flatMap((path) => longFunctionsOf(path, limit))
    .sort((a, b) => b.lines - a.lines);
}

function main(): void {
  const usage = 'usage: node tools/long-functions.ts [--limit N] [--json]';
  let values: { limit?: string; json?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({ options: { limit: { type: 'string' }, json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } }));
  } catch (error) {
    process.stderr.write(`long-functions: ${(error as Error).message}\n${usage}\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${usage}\nLists functions over the line limit (default ${functionLinesMax}) in ${folders.join(', ')}; exits 1 if any.\n`);
    return;
  }
  const limit = values.limit === undefined ? functionLinesMax : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1) {
    process.stderr.write(`long-functions: --limit ${values.limit}: a whole number of lines, at least 1\n`);
    process.exit(2);
  }
  const found = longFunctions(limit);
  if (values.json) process.stdout.write(`${JSON.stringify(found, null, 2)}\n`);
  else for (const { file, line, name, lines } of found) process.stdout.write(`${lines} lines  ${file}:${line}  ${name}\n`);
  if (!values.json) process.stdout.write(`${found.length} functions over ${limit} lines\n`);
  process.exitCode = found.length > 0 ? 1 : 0;
}

if (process.argv[1] === new URL(import.meta.url).pathname) main();
