/**
 * The frames the replicated state takes from the network: every field is checked before a frame
 * reaches the Raft core, and which admitted sender may send which message is decided by the
 * sender's name as the transport authenticated it.
 */
import { encode } from 'cborg';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { parseProposalFrame, parseRaftMessage, senderProblem } from '../node/cluster/frames.ts';
import type { Message } from '../node/cluster/raft/index.ts';
import { parseDecodeRequest } from '../node/jobs/service.ts';

const senders = { voters: new Set(['n1', 'n2', 'n3']), learners: new Set(['w1']) };
const append = { type: 'append', from: 'n1', to: 'n2', term: 3, prevLogIndex: 4, prevLogTerm: 2, entries: [{ index: 5, term: 3, type: 'normal', data: new Uint8Array([1]) }], commit: 4 };

test('a well-formed Raft message parses to itself', () => {
  const message = parseRaftMessage(encode(append));
  assert.type(message, 'object');
  assert.equal(message, append);
});

test('malformed Raft frames are refused with a one-line reason, never thrown', () => {
  const cases: Array<[unknown, RegExp]> = [
    [{ ...append, term: -1 }, /term/],
    [{ ...append, term: 'high' }, /term/],
    [{ ...append, entries: 'all' }, /entries/],
    [{ ...append, entries: [{ index: 5, term: 3, type: 'normal', data: 'text' }] }, /entries\.0\.data/],
    [{ ...append, extra: true }, /extra|Unrecognized/i],
    [{ ...append, type: 'no-such-type' }, /type/],
    [{ ...append, from: 'Not A Name' }, /from/],
    [{ type: 'install-snapshot', from: 'n1', to: 'n2', term: 9, snapshot: { index: 1, term: 9 } }, /snapshot\.data/],
    [null, /frame|expected/],
  ];
  for (const [document, reason] of cases) {
    const result = parseRaftMessage(encode(document));
    assert.type(result, 'string', `accepted ${JSON.stringify(document)}`);
    assert.match(result as string, reason);
    assert.not.match(result as string, /\n/);
  }
  assert.match(parseRaftMessage(new Uint8Array([0xff, 0x00, 0x13])) as string, /not CBOR/);
});

test('leader and candidate messages count only from voters; learners may only answer', () => {
  const from = (type: Message['type'], sender: string) => ({ ...(append as unknown as Message), type, from: sender }) as Message;
  assert.is(senderProblem(from('append', 'n1'), 'n1', 'n2', senders), undefined);
  assert.match(senderProblem(from('append', 'w1'), 'w1', 'n2', senders)!, /from learner w1/);
  assert.match(senderProblem(from('install-snapshot', 'w1'), 'w1', 'n2', senders)!, /learner/);
  assert.match(senderProblem(from('vote-request', 'w1'), 'w1', 'n2', senders)!, /learner/);
  assert.is(senderProblem(from('append-response', 'w1'), 'w1', 'n2', senders), undefined);
  assert.is(senderProblem(from('heartbeat-response', 'w1'), 'w1', 'n2', senders), undefined);
  assert.match(senderProblem(from('heartbeat-response', 'x9'), 'x9', 'n2', senders)!, /neither a voter nor a learner/);
});

test('a message counts only from the member the transport authenticated, addressed to this node', () => {
  const message = append as unknown as Message;
  assert.match(senderProblem(message, 'n3', 'n2', senders)!, /claims to be from n1/);
  assert.match(senderProblem(message, 'n1', 'n3', senders)!, /addressed to n2/);
});

test('a proposal frame is checked: ops, keys, guards and its timeout', () => {
  const good = { command: { id: 'c1', guards: [{ key: 'jobs/a', equals: null }], ops: [{ op: 'put', key: 'jobs/a', value: { n: [1, 'x', true, null] } }] }, timeoutMs: 5000 };
  assert.equal(parseProposalFrame(encode(good)), good);
  const bad: Array<[unknown, RegExp]> = [
    [{ ...good, timeoutMs: -5 }, /timeoutMs/],
    [{ ...good, command: { ...good.command, ops: [{ op: 'drop', key: 'jobs/a' }] } }, /ops/],
    [{ ...good, command: { ...good.command, ops: [{ op: 'del', key: '' }] } }, /ops/],
    [{ ...good, command: { ...good.command, id: 7 } }, /command\.id/],
    [{ command: good.command }, /timeoutMs/],
  ];
  for (const [document, reason] of bad) {
    const result = parseProposalFrame(encode(document));
    assert.type(result, 'string', `accepted ${JSON.stringify(document)}`);
    assert.match(result as string, reason);
  }
});

test('a remote decode request (/dcas/decode/1.0.0) is checked field by field', () => {
  const request = { key: 'jobs/abc.dcz', start: 64, end: 4096, chunk: 0, originalBytes: 65_536, checksum: 0xdeadbeef, label: 'job abc: chunk 0' };
  // A request from a node older than codecs names none: it reads as Huffman, level 0, framed.
  assert.equal(parseDecodeRequest(encode(request)), { ...request, codec: 1, level: 0, framed: true });
  const zstd = { ...request, codec: 3, level: 19, framed: false };
  assert.equal(parseDecodeRequest(encode(zstd)), zstd);
  assert.throws(() => parseDecodeRequest(encode({ ...request, key: 'state/secret' })), /decode request: key/);
  assert.throws(() => parseDecodeRequest(encode({ ...request, originalBytes: 2 ** 40 })), /originalBytes/);
  assert.throws(() => parseDecodeRequest(encode({ ...request, end: 10 })), /end is before start/);
  assert.throws(() => parseDecodeRequest(encode({ ...request, extra: 1 })), /decode request/);
});

test.run();
