/**
 * The upload credit window (`node/protocol/credit.ts`) with both sides together, as the gateway and the
 * client use it: whatever the frame sizes and however late the jobs room takes the bytes, the client never
 * overruns the credit, the gateway never buffers more than one window, and every byte taken comes back
 * as credit.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import fc from 'fast-check';
import { CreditReceiver, CreditSender } from '../node/protocol/index.ts';

test('a frame past the credit is refused with the credit left; nothing is counted', () => {
  const receiver = new CreditReceiver(1000, 4);
  assert.equal(receiver.receive(600, true), { accepted: true });
  assert.equal(receiver.receive(500, true), { accepted: false, creditLeft: 400 });
  assert.is(receiver.receivedBytes, 600);
  assert.is(receiver.bufferedBytes, 600);
});

test('grants are batched: a quarter window owed, or the buffer empty, sends credit', () => {
  const receiver = new CreditReceiver(1000, 4);
  receiver.receive(100, true);
  receiver.receive(100, true);
  receiver.receive(100, true);
  assert.is(receiver.taken(100, true), 0, 'owed 100 of 250, 200 still buffered');
  assert.is(receiver.taken(100, true), 0);
  assert.is(receiver.taken(100, true), 300, 'the buffer is empty');
  assert.is(receiver.grantedBytes, 1300);
  receiver.receive(300, true);
  assert.is(receiver.taken(250, true), 250, 'a quarter window owed');
});

test('frames of a failed upload count against the credit but are not buffered nor granted back', () => {
  const receiver = new CreditReceiver(1000, 4);
  receiver.receive(400, true);
  receiver.receive(300, false);
  assert.is(receiver.bufferedBytes, 400);
  assert.is(receiver.taken(400, false), 0);
  assert.is(receiver.creditLeft, 300);
  assert.throws(() => receiver.taken(1, false), /never buffered/);
});

test('an empty frame is accepted and earns no credit (the gateway sends no credit message of 0 bytes)', () => {
  const receiver = new CreditReceiver(1000, 4);
  assert.equal(receiver.receive(0, true), { accepted: true });
  assert.is(receiver.taken(0, true), 0);
  assert.is(receiver.grantedBytes, 1000);
  assert.is(receiver.creditLeft, 1000);
});

test('sender and receiver together (property): no overrun, at most one window buffered, all credit comes back', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 5000 }),
      fc.integer({ min: 1, max: 16 }),
      fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 60 }),
      fc.array(fc.boolean(), { minLength: 1, maxLength: 200 }),
      (window, grants, frames, schedule) => {
        const receiver = new CreditReceiver(window, grants);
        const sender = new CreditSender(receiver.grantedBytes);
        const buffered: number[] = [];
        let step = 0;
        const takeOne = () => {
          const bytes = buffered.shift()!;
          const credit = receiver.taken(bytes, true);
          if (credit > 0) sender.grant(credit);
        };
        let sent = 0;
        for (const frame of frames) {
          let left = frame;
          while (left > 0) {
            const length = sender.take(left);
            if (length > 0) {
              assert.equal(receiver.receive(length, true), { accepted: true });
              assert.ok(receiver.bufferedBytes <= window);
              buffered.push(length);
              left -= length;
              sent += length;
            }
            // The jobs room takes a piece now or later, as the schedule says; with no credit it must.
            if (buffered.length > 0 && (length === 0 || schedule[step++ % schedule.length])) takeOne();
          }
        }
        while (buffered.length > 0) takeOne();
        assert.is(receiver.receivedBytes, sent);
        assert.is(receiver.bufferedBytes, 0);
        assert.is(receiver.owedBytes, 0);
        assert.is(sender.creditBytes, window, 'the whole window is the client\'s again');
      },
    ),
    { numRuns: 300 },
  );
});

test.run();
