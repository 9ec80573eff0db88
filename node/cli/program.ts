/**
 * The `dcas` command's program (entries: dcas.mjs for launchers, dcas.ts). Exit codes: 0 ok, 1 failure, 2 usage. Errors are
 * one line on stderr.
 *
 * Start-up is most of a small command's time, so this file loads only commander; each command group's
 * module (and what it imports: the codec, the client, the cluster) loads only when one of its commands
 * runs. `--help` and unknown commands load every group, so help always lists every command.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';

interface CommandGroup {
  names: readonly string[];
  add(program: Command): Promise<void>;
}

/** `completion` and `man` describe every command, so they load every group (they come last). */
const documentsGroup: CommandGroup = {
  names: ['completion', 'man'],
  add: async (program) => {
    const { completionScript, completionShells, manualPage } = await import('./help-documents.ts');
    program
      .command('completion')
      .argument('<shell>', completionShells.join(', '))
      .description('print a shell completion script (bash: source <(dcas completion bash))')
      .action((shell: string) => {
        process.stdout.write(completionScript(program, shell));
      });
    program
      .command('man')
      .description('print the man page (roff); the package installs it as dcas(1)')
      .action(() => {
        process.stdout.write(manualPage(program, program.version() ?? ''));
      });
  },
};

const commandGroups: readonly CommandGroup[] = [
  { names: ['compress', 'decompress'], add: async (program) => (await import('./codec-commands.ts')).addCodecCommands(program) },
  { names: ['node', 'cluster'], add: async (program) => (await import('./cluster-commands.ts')).addClusterCommands(program) },
  { names: ['upload', 'status', 'jobs', 'download', 'rm', 'delete'], add: async (program) => (await import('./job-commands.ts')).addJobCommands(program) },
  documentsGroup,
];

/** The groups this command line needs: its command's group, none for a bare --version, else all. */
function groupsFor(argv: readonly string[]): readonly CommandGroup[] {
  const first = argv.find((argument) => !argument.startsWith('-'));
  const named = commandGroups.find((group) => first !== undefined && group.names.includes(first));
  if (named !== undefined && named !== documentsGroup) return [named];
  if (first === undefined && argv.length > 0 && argv.every((argument) => argument === '-V' || argument === '--version')) return [];
  return commandGroups;
}

/**
 * Commander's errors ("error: unknown option '--x'", then a hint on a line of its own) as one line of
 * ours, with the hint at its end. Subcommands inherit this from the program.
 */
function writeUsageError(text: string): void {
  const message = text.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ').trim();
  process.stderr.write(`dcas: ${message} (see --help)\n`);
}

/** Flags that make a bare `dcas -FLAGS ...` a file command, as in zstd: -d, -t and -l read a .dcz. */
const readingVerb = /^(-[a-zA-Z]*[dtl][a-zA-Z]*|--decompress|--test|--list)$/;

/**
 * `dcas -d f.dcz`, `dcas -t f.dcz`, `dcas -l f.dcz`, `dcas -c f > f.dcz`: zstd's habits with no command
 * word. A command line that starts with an option other than help or version is a file command:
 * `decompress` if any argument is -d, -t or -l (or a short cluster holding one), else `compress`.
 */
function withImpliedCommand(argv: readonly string[]): string[] {
  const first = argv[0];
  if (first === undefined || !first.startsWith('-') || ['-h', '--help', '-V', '--version'].includes(first)) return [...argv];
  const options = argv.slice(0, argv.includes('--') ? argv.indexOf('--') : argv.length);
  return [options.some((argument) => readingVerb.test(argument)) ? 'decompress' : 'compress', ...argv];
}

/** `-1` .. `-19` are levels, as in zstd and gzip: they become `--level N` (before `--`, which ends options). */
function withLevelFlags(argv: readonly string[]): string[] {
  const end = argv.includes('--') ? argv.indexOf('--') : argv.length;
  return argv.flatMap((argument, index) => (index < end && /^-(1[0-9]|[1-9])$/.test(argument) ? ['--level', argument.slice(1)] : [argument]));
}

/** The version in package.json: the one `dcas --version` prints (dcas.mjs answers a bare --version itself from the same file). */
function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

const program = new Command('dcas')
  .description('DCaS: distributed compression as a service, with a WebAssembly Huffman kernel')
  .version(packageVersion())
  .exitOverride()
  .configureOutput({ writeErr: (text) => process.stderr.write(text), outputError: (text) => writeUsageError(text) });

const argv = withLevelFlags(withImpliedCommand(process.argv.slice(2)));
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

try {
  await program.parseAsync(argv, { from: 'user' });
} catch (error) {
  if (error instanceof CommanderError) {
    const helpOrVersion = error.code === 'commander.helpDisplayed' || error.code === 'commander.version' || error.code === 'commander.help';
    const { exitUsage } = await import('./output.ts');
    process.exitCode = helpOrVersion ? 0 : exitUsage;
  } else {
    const input = program.args.find((argument, i) => i > 0 && !argument.startsWith('-'));
    const { message, exitCode } = await (await import('./errors.ts')).describeError(error, input);
    const { printError } = await import('./output.ts');
    printError(message);
    process.exitCode = exitCode;
  }
}
