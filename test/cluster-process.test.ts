/**
 * Real processes: a 3-voter cluster of `dcas node` processes on loopback, each with its own LevelDB
 * and libp2p host, talking through the real gateway.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createTestCluster, waitFor, type TestCluster } from '../tools/cluster.ts';

const dcas = new URL('../node/cli/dcas.ts', import.meta.url).pathname;
let cluster: TestCluster;
const names = ['node1', 'node2', 'node3'];

test.before(async () => {
  cluster = await createTestCluster({ nodes: 3 });
});

test.after(async () => {
  await cluster.destroy();
});

test('three node processes elect exactly one coordinator and see three alive members', async () => {
  for (const name of names) cluster.start(name);
  const { value } = await waitFor('one agreed coordinator and 3 alive members', 20_000, () => cluster.agreed(3), () => cluster.logs());
  assert.ok(names.includes(value.coordinator!));
  const leaders = value.members.filter((member) => member.raftRole === 'leader');
  assert.is(leaders.length, 1);
  assert.is(leaders[0].name, value.coordinator);
  // The member registry is replicated state: committed through the log and applied on every node.
  await waitFor('the member registry on every node', 10_000, async () => {
    const states = await Promise.all(names.map((name) => cluster.state(name, 'members/')));
    return states.every((state) => Object.keys(state).length === 3) ? true : undefined;
  });
});

// Reference: Raft paper §5.2 (leader election) and §5.4 (safety: committed entries survive).
test('kill -9 of the coordinator: the survivors name a new coordinator at a higher term, committed state intact', async () => {
  const before = (await cluster.agreed(3))!;
  const registryBefore = await cluster.state('node1', 'members/');
  const oldLeader = before.coordinator!;
  await cluster.stop(oldLeader, 'SIGKILL');
  const survivors = names.filter((name) => name !== oldLeader);
  // How fast is the bench's business (failover figures); the wait is only bounded for a loaded machine.
  const { value: after, elapsedMs } = await waitFor('a new coordinator among survivors', 30_000, async () => {
    const views = await Promise.all(survivors.map((name) => cluster.status(name)));
    const view = views.find((candidate) => candidate?.coordinator && candidate.coordinator !== oldLeader);
    return view && views.every((other) => other?.coordinator === view.coordinator) ? view : undefined;
  });
  console.log(`cluster-process: new coordinator ${after.coordinator} ${elapsedMs} ms after the kill`);
  assert.ok(after.term > before.term, `term ${after.term} should exceed ${before.term}`);
  for (const survivor of survivors) assert.equal(await cluster.state(survivor, 'members/'), registryBefore);

  // The killed node restarts on its data directory and rejoins as a follower with the same state.
  cluster.start(oldLeader);
  const { value: rejoined } = await waitFor('the restarted node to rejoin', 15_000, async () => {
    const view = await cluster.agreed(3);
    return view && view.coordinator === after.coordinator ? view : undefined;
  });
  const self = (await cluster.status(oldLeader))!;
  assert.is(self.coordinator, after.coordinator);
  assert.is(self.members.find((member) => member.self)!.raftRole, 'follower');
  assert.ok(self.commit >= before.commit);
  assert.equal(await cluster.state(oldLeader, 'members/'), registryBefore);
  assert.ok(rejoined.members.every((member) => member.alive));
});

test('stopping every node and starting them again keeps all committed state', async () => {
  const before = (await cluster.agreed(3))!;
  const registry = await cluster.state('node1', 'members/');
  await Promise.all(names.map((name) => cluster.stop(name, 'SIGTERM')));
  for (const name of names) cluster.start(name);
  const { value: after } = await waitFor('the restarted cluster to agree on a coordinator', 20_000, () => cluster.agreed(3), () => cluster.logs());
  assert.ok(after.commit >= before.commit, `commit ${after.commit} < ${before.commit}`);
  assert.ok(after.term >= before.term);
  for (const name of names) assert.equal(await cluster.state(name, 'members/'), registry);
});

test('a config with a wrong field fails at start with one line naming the field, exit 1', async () => {
  const bad = join(cluster.dataDir, 'bad.yaml');
  await writeFile(bad, 'name: nodex\ngateway:\n  port: lots\n');
  const result = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
    const child = spawn(process.execPath, [dcas, 'node', '--config', bad], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (data) => (stderr += data));
    child.on('close', (code) => resolve({ code, stderr }));
  });
  assert.is(result.code, 1);
  const lines = result.stderr.trimEnd().split('\n');
  assert.is(lines.length, 1, result.stderr);
  assert.match(lines[0], /bad\.yaml: gateway\.port: /);
});

test.run();
