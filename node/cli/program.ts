/**
 * The `dcas` command's program (entries: dcas.mjs for launchers, dcas.ts). Exit codes: 0 ok, 1 failure, 2 usage. Errors are
 * one line on stderr.
 *
 * Start-up is most of a small command's time, so this file loads only commander; each command group's
 * module (and what it imports: the codec, the client, the cluster) loads only when one of its commands
 * runs. `--help` and unknown commands load every group, so help always lists every command.
 */
import { Command, CommanderError } from 'commander';

interface CommandGroup {
  names: readonly string[];
  add(program: Command): Promise<void>;
}

const commandGroups: readonly CommandGroup[] = [
  { names: ['compress', 'decompress'], add: async (program) => (await import('./codec-commands.ts')).addCodecCommands(program) },
  { names: ['node', 'cluster'], add: async (program) => (await import('./cluster-commands.ts')).addClusterCommands(program) },
  { names: ['upload', 'status', 'jobs', 'download'], add: async (program) => (await import('./job-commands.ts')).addJobCommands(program) },
];

/** The groups this command line needs: its command's group, none for a bare --version, else all. */
function groupsFor(argv: readonly string[]): readonly CommandGroup[] {
  const first = argv.find((argument) => !argument.startsWith('-'));
  const named = commandGroups.find((group) => first !== undefined && group.names.includes(first));
  if (named !== undefined) return [named];
  if (first === undefined && argv.length > 0 && argv.every((argument) => argument === '-V' || argument === '--version')) return [];
  return commandGroups;
}

const program = new Command('dcas')
  .description('DCaS: distributed compression as a service, with a WebAssembly Huffman kernel')
  .version('0.1.0')
  .showHelpAfterError('(run with --help for usage)')
  .exitOverride()
  .configureOutput({ writeErr: (text) => process.stderr.write(text) });

const argv = process.argv.slice(2);
for (const group of groupsFor(argv)) await group.add(program);
for (const command of program.commands) command.exitOverride();

function exitOnSignal(signal: NodeJS.Signals, code: number, removePartialFilesSync: () => void): void {
  process.once(signal, () => {
    removePartialFilesSync();
    process.exit(code);
  });
}
// File commands exit at once on a signal, removing their temporary output. `node` and `cluster`
// install their own handlers, which stop nodes gracefully first.
program.hook('preAction', async (_program, action) => {
  if (action.name() === 'node' || action.parent?.name() === 'cluster') return;
  const { removePartialFilesSync } = await import('../codec/index.ts');
  exitOnSignal('SIGINT', 130, removePartialFilesSync);
  exitOnSignal('SIGTERM', 143, removePartialFilesSync);
});

async function describe(error: unknown, input: string | undefined): Promise<{ message: string; exitCode: number }> {
  const [{ CodecError, FileError }, { CliError, exitFailure }] = await Promise.all([import('../codec/index.ts'), import('./output.ts')]);
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
    const { exitUsage } = await import('./output.ts');
    process.exitCode = helpOrVersion ? 0 : exitUsage;
  } else {
    const input = program.args.find((argument, i) => i > 0 && !argument.startsWith('-'));
    const { message, exitCode } = await describe(error, input);
    const { printError } = await import('./output.ts');
    printError(message);
    process.exitCode = exitCode;
  }
}
