/**
 * Every room's typed error is a CodedError: a stable code, the subclass's own name, the standard cause,
 * and `instanceof` still tells the rooms' errors apart.
 */
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import { CodedError } from '../node/errors.ts';
import { CodecError, FileError } from '../node/codec/index.ts';
import { ConfigError } from '../node/config/index.ts';
import { BlobError } from '../node/storage/index.ts';
import { JobError } from '../node/jobs/index.ts';
import { DcasClientError } from '../node/client/index.ts';
import { ProposalError } from '../node/cluster/index.ts';
import { CliError, exitUsage } from '../node/cli/output.ts';

test('a room error carries its code, its own class name, and instanceof tells the rooms apart', () => {
  const errors = [
    [new CodecError('TRUNCATED', 'chunk 3: truncated'), 'CodecError', 'TRUNCATED'],
    [new FileError('OUTPUT_EXISTS', 'out.dcz exists'), 'FileError', 'OUTPUT_EXISTS'],
    [new BlobError('NOT_FOUND', 'jobs/a: not found'), 'BlobError', 'NOT_FOUND'],
    [new JobError('NOT_FOUND', 'job 3f2a: not found'), 'JobError', 'NOT_FOUND'],
    [new ProposalError('NO_LEADER', 'no leader'), 'ProposalError', 'NO_LEADER'],
    [new DcasClientError('AUTH', 'token refused', 'job-1'), 'DcasClientError', 'AUTH'],
  ] as const;
  for (const [error, name, code] of errors) {
    assert.ok(error instanceof CodedError, `${name} is a CodedError`);
    assert.ok(error instanceof Error, `${name} is an Error`);
    assert.is(error.name, name);
    assert.is(error.code, code);
    assert.ok(String(error.stack).startsWith(`${name}: `), `${name}'s stack names it`);
  }
  assert.not.ok(errors[0][0] instanceof BlobError, 'a CodecError is not a BlobError');
  assert.is(errors[5][0].jobId, 'job-1');
});

test('a coded error keeps its cause, and the config and CLI errors keep their extra fields', () => {
  const cause = new Error('EIO');
  assert.is(new BlobError('UNAVAILABLE', 'gcs: unavailable', { cause }).cause, cause);
  const config = new ConfigError('INVALID', 'node.yaml', 'gateway.port', 'expected\n a number');
  assert.is(config.message, 'node.yaml: gateway.port: expected a number');
  assert.is(config.field, 'gateway.port');
  assert.is(config.code, 'INVALID');
  const usage = new CliError('--timeout x: expected seconds', exitUsage);
  assert.is(usage.exitCode, exitUsage);
  assert.is(usage.code, 'USAGE');
  assert.is(new CliError('a node exited').code, 'FAILURE');
});

test.run();
