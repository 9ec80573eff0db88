/**
 * `dcas completion bash|zsh|fish` and `dcas man`: documents generated from the commands' own
 * definitions (names, options, descriptions), so they cannot drift from what the program accepts.
 * Completion is static: the shell completes command names, each command's options, and file names
 * for arguments; no dcas process runs at each Tab.
 */
import type { Command, Option } from 'commander';
import { CliError, exitUsage } from './output.ts';

interface CommandWords {
  path: string[];
  description: string;
  options: readonly Option[];
  usage: string;
}

/** Every runnable command (leaves of the tree), with its full path: `cluster up`, `compress`, ... */
function commandsOf(command: Command, path: string[] = []): CommandWords[] {
  const own = path.length === 0 ? [] : [{ path, description: command.description(), options: command.options, usage: command.usage() }];
  return [...own, ...command.commands.flatMap((sub) => commandsOf(sub, [...path, sub.name()]))];
}

function flagsOf(option: Option): string[] {
  return [option.short, option.long].filter((flag): flag is string => flag !== undefined);
}

const shellWord = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;

function bash(program: Command): string {
  const commands = commandsOf(program);
  const tops = program.commands.map((command) => command.name());
  const cases = commands.map(({ path, options }) => `    ${shellWord(path.join(' '))}) words=${shellWord(['--help', ...options.flatMap(flagsOf)].join(' '))} ;;`);
  const groups = program.commands.filter((command) => command.commands.length > 0);
  const groupNames = groups.map((group) => group.name()).join(' ');
  const subs = groups.map((group) => `    ${shellWord(group.name())}) words=${shellWord(group.commands.map((sub) => sub.name()).join(' '))} ;;`);
  return `# bash completion for dcas; load with: source <(dcas completion bash)
_dcas() {
  local current=\${COMP_WORDS[COMP_CWORD]} path="" words="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case \${COMP_WORDS[i]} in
      -*) ;;
      *) if [[ -z $path ]]; then path=\${COMP_WORDS[i]}
         elif [[ " ${groupNames} " == *" $path "* ]]; then path="$path \${COMP_WORDS[i]}"; fi ;;
    esac
  done
  if [[ -z $path ]]; then
    words=${shellWord([...tops, '--help', '--version'].join(' '))}
  elif [[ $current == -* ]]; then
    case $path in
${cases.join('\n')}
    esac
  else
    case $path in
${subs.join('\n')}
      *) COMPREPLY=($(compgen -f -- "$current")); return ;;
    esac
  fi
  COMPREPLY=($(compgen -W "$words" -- "$current"))
}
complete -o filenames -F _dcas dcas
`;
}

function fish(program: Command): string {
  const lines = ['# fish completion for dcas; load with: dcas completion fish | source', 'complete -c dcas -f'];
  const tops = program.commands.map((command) => command.name());
  for (const command of program.commands) {
    lines.push(`complete -c dcas -n ${shellWord(`not __fish_seen_subcommand_from ${tops.join(' ')}`)} -a ${command.name()} -d ${shellWord(command.description())}`);
  }
  for (const { path, options } of commandsOf(program)) {
    const condition = `__fish_seen_subcommand_from ${path[path.length - 1]}`;
    if (path.length === 2) lines.push(`complete -c dcas -n ${shellWord(`__fish_seen_subcommand_from ${path[0]}`)} -a ${path[1]}`);
    for (const option of options) {
      const short = option.short ? ` -s ${option.short.slice(1)}` : '';
      const long = option.long ? ` -l ${option.long.slice(2)}` : '';
      lines.push(`complete -c dcas -n ${shellWord(condition)}${short}${long}${option.required ? ' -r' : ''} -d ${shellWord(option.description)}`);
    }
    lines.push(`complete -c dcas -n ${shellWord(condition)} -F`);
  }
  return `${lines.join('\n')}\n`;
}

function zsh(program: Command): string {
  // zsh runs bash completion functions through bashcompinit, which keeps one generator for both shells.
  return `#compdef dcas\n# zsh completion for dcas; load with: source <(dcas completion zsh)\nautoload -U +X bashcompinit && bashcompinit\n${bash(program).split('\n').slice(1).join('\n')}`;
}

export const completionShells = ['bash', 'zsh', 'fish'] as const;

export function completionScript(program: Command, shell: string): string {
  if (shell === 'bash') return bash(program);
  if (shell === 'zsh') return zsh(program);
  if (shell === 'fish') return fish(program);
  throw new CliError(`completion ${shell}: unknown shell (choose one of ${completionShells.join(', ')})`, exitUsage);
}

/** roff escapes: a backslash, and a leading dot or quote that would read as a request. */
function roff(text: string): string {
  return text.replace(/\\/g, '\\e').replace(/-/g, '\\-').replace(/^([.'])/gm, '\\&$1');
}

/** The man page, section 1, from the program's and each command's description and options. */
export function manualPage(program: Command, version: string): string {
  const lines = [
    `.TH DCAS 1 "" "dcas ${version}" "User Commands"`,
    '.SH NAME',
    `dcas \\- ${roff(program.description())}`,
    '.SH SYNOPSIS',
    '.B dcas',
    '.I command',
    '[\\fIoptions\\fR] [\\fIarguments\\fR]',
    '.SH DESCRIPTION',
    'Exit status: 0 ok, 1 failure, 2 usage error. Every error is one line on stderr, beginning \\fBdcas:\\fR.',
    'A command line that starts with an option is a file command, as in zstd:',
    '\\fBdcas \\-d\\fR, \\fB\\-t\\fR or \\fB\\-l\\fR run \\fBdecompress\\fR; other options run \\fBcompress\\fR.',
    '.SH COMMANDS',
  ];
  for (const { path, description, options, usage } of commandsOf(program)) {
    if (options.length === 0 && description === '') continue;
    lines.push('.TP', `\\fBdcas ${roff(path.join(' '))}\\fR ${roff(usage)}`, roff(description), '.RS');
    for (const option of options) lines.push('.TP', `\\fB${roff(option.flags)}\\fR`, roff(option.description));
    lines.push('.RE');
  }
  lines.push('.SH SEE ALSO', 'zstd(1), gzip(1); the README of the dcas package.');
  return `${lines.join('\n')}\n`;
}
