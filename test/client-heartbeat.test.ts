/**
 * The client's heartbeat watchdog and download backpressure (node/client/heartbeat.ts) on a real
 * WebSocket over loopback: silence for three heartbeats ends the connection, except while backpressure
 * holds the socket paused, which suspends the watchdog until reading resumes.
 */
import type { AddressInfo } from 'node:net';
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { WebSocket, WebSocketServer } from 'ws';
import { Backpressure, HeartbeatWatchdog } from '../node/client/heartbeat.ts';
import { eventually, sleep } from './support/gateway.ts';

/** Short, so three of them pass quickly; the waits below are many times longer. */
const heartbeatMs = 20;
let server: WebSocketServer;
let url: string;

test.before(async () => {
  // A node that never pings and never sends: the silence the watchdog is for.
  server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

test.after(async () => {
  for (const peer of server.clients) peer.terminate();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

async function silentConnection(): Promise<{ socket: WebSocket; watchdog: HeartbeatWatchdog; closed: () => boolean }> {
  const socket = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  let closed = false;
  socket.once('close', () => (closed = true));
  return { socket, watchdog: new HeartbeatWatchdog(() => socket.terminate()), closed: () => closed };
}

test('three heartbeats without a word end the connection', async () => {
  const { watchdog, closed } = await silentConnection();
  watchdog.start(heartbeatMs);
  await eventually(closed, 'the silent connection terminated', 10_000);
});

test('before the welcome says the heartbeat, and after stop, the watchdog ends nothing', async () => {
  const { socket, watchdog, closed } = await silentConnection();
  watchdog.feed();
  await sleep(heartbeatMs * 10);
  assert.is(closed(), false);
  watchdog.start(heartbeatMs);
  watchdog.stop();
  await sleep(heartbeatMs * 10);
  assert.is(closed(), false);
  socket.terminate();
});

test('while backpressure pauses the socket the watchdog waits; resuming starts the three-heartbeat wait again', async () => {
  const { socket, watchdog, closed } = await silentConnection();
  const backpressure = new Backpressure(socket, watchdog);
  watchdog.start(heartbeatMs);
  backpressure.pause(true);
  assert.is(socket.isPaused, true);
  // Timers fire late under load, never early: ten heartbeats of pause would have ended it unsuspended.
  await sleep(heartbeatMs * 10);
  assert.is(closed(), false, 'a paused socket hears no pings; the watchdog must not take that for a dead node');
  // Feeding while paused (a message already buffered) does not re-arm it either.
  watchdog.feed();
  await sleep(heartbeatMs * 10);
  assert.is(closed(), false);
  backpressure.pause(false);
  assert.is(socket.isPaused, false);
  await eventually(closed, 'the silent connection terminated after reading resumed', 10_000);
});

test('backpressure leaves the socket as last asked, however often it is asked', async () => {
  const { socket, watchdog } = await silentConnection();
  const backpressure = new Backpressure(socket, watchdog);
  backpressure.pause(true);
  backpressure.pause(true);
  assert.is(socket.isPaused, true);
  backpressure.pause(false);
  assert.is(socket.isPaused, false);
  backpressure.pause(false);
  assert.is(socket.isPaused, false);
  socket.terminate();
});

test.run();
