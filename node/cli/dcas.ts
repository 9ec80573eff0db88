#!/usr/bin/env node
/**
 * The `dcas` command. Exit codes: 0 ok, 1 failure, 2 usage. Errors are one line on stderr.
 */
import { Command, CommanderError } from 'commander';
import { CodecError, FileError, removePartialFilesSync } from '../codec/index.ts';
import { addClusterCommands } from './cluster-commands.ts';
import { addCodecCommands } from './codec-commands.ts';
import { addJobCommands } from './job-commands.ts';
import { CliError, exitFailure, exitUsage, printError } from './output.ts';

const program = new Command('dcas')
  .description('DCaS: distributed compression as a service, with a WebAssembly Huffman kernel')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride()
  .configureOutput({ writeErr: (text) => process.stderr.write(text) });

addCodecCommands(program);
addClusterCommands(program);
addJobCommands(program);
for (const command of program.commands) command.exitOverride();

function exitOnSignal(signal: NodeJS.Signals, code: number): void {
  process.once(signal, () => {
    removePartialFilesSync();
    process.exit(code);
  });
}
// File commands exit at once on a signal, removing their temporary output. `node` and `cluster`
// install their own handlers, which stop nodes gracefully first.
program.hook('preAction', (_program, action) => {
  if (action.name() === 'node' || action.parent?.name() === 'cluster') return;
  exitOnSignal('SIGINT', 130);
  exitOnSignal('SIGTERM', 143);
});

function describe(error: unknown, input: string | undefined): { message: string; exitCode: number } {
  if (error instanceof CliError) return { message: error.message, exitCode: error.exitCode };
  if (error instanceof CodecError) return { message: input ? `${input}: ${error.message}` : error.message, exitCode: exitFailure };
  if (error instanceof FileError) return { message: error.message, exitCode: exitFailure };
  const errno = error as NodeJS.ErrnoException;
  if (typeof errno?.code === 'string' && typeof errno.message === 'string') return { message: errno.message, exitCode: exitFailure };
  if (process.env.DCAS_DEBUG) console.error(error);
  return { message: `internal error: ${(error as Error)?.message ?? String(error)} (set DCAS_DEBUG=1 for details)`, exitCode: exitFailure };
}

try {
  await program.parseAsync(process.argv);
} catch (error) {
  if (error instanceof CommanderError) {
    const helpOrVersion = error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help';
    process.exitCode = helpOrVersion ? 0 : exitUsage;
  } else {
    const input = program.args.find((argument, i) => i > 0 && !argument.startsWith('-'));
    const { message, exitCode } = describe(error, input);
    printError(message);
    process.exitCode = exitCode;
  }
}
