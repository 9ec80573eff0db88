/**
 * STYLE.md's "functions stay short enough to see at once", held by a check (issue 14): no function over
 * 80 lines in `node/`, `tools/`, `bench/` or `test/support/`, a nested function counted inside the one
 * holding it, so a closure factory is as long as all its closures. The Raft core and the kernel are
 * outside the rule (`tools/long-functions.ts` says why). `node tools/long-functions.ts` lists offenders.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { functionLinesMax, longFunctions } from '../tools/long-functions.ts';

test(`no function is longer than ${functionLinesMax} lines`, () => {
  const found = longFunctions();
  assert.equal(
    found.map(({ file, line, name, lines }) => `${file}:${line} ${name} (${lines} lines)`),
    [],
  );
});

test('the check sees a long function: at a limit of 30 lines it finds some, each longer than 30', () => {
  const found = longFunctions(30);
  assert.ok(found.length > 0, 'functions over 30 lines exist in the repository');
  for (const { lines } of found) assert.ok(lines > 30);
});

test.run();
