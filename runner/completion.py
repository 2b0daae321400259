"""`runner --completion bash|zsh|fish`: a shell completion script for the whole command.

It completes runner's subcommands (runner.cli.SUBCOMMANDS, read by runner.help.subcommands),
after a subcommand that command's options (from its argparse parser, when the script is made)
and file names, and otherwise asks Hydra (`runner -sc query=bash`), which completes config
groups, their options and keys.

The option lists are written into the script, so a TAB after a subcommand starts no Python;
making the script imports the subcommands' modules (none of them imports JAX at the top) to
build their parsers. Install (bash): eval "$(runner --completion bash)" in ~/.bashrc."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import shlex

SHELLS = ("bash", "zsh", "fish")


def _parser(module, name: str):
    """The argparse parser of subcommand `name`, from its module's builder: _parsers() (a dict
    by command, runner.compare.main) or _parser() / parser() / build_parser(); None if the
    module has none."""
    if hasattr(module, "_parsers"):
        return module._parsers().get(name)
    for attr in ("_parser", "parser", "build_parser"):
        if callable(getattr(module, attr, None)):
            return getattr(module, attr)()
    return None


def options(name: str, module_name: str) -> list[str]:
    """Every option string of a subcommand (--where, -k, --help, ...), sorted."""
    module = importlib.import_module(module_name)
    parser = _parser(module, name)
    if parser is not None:
        return sorted(parser._option_string_actions)
    # No builder to ask: read the options off its --help.
    out = io.StringIO()
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(io.StringIO()),
        contextlib.suppress(SystemExit),
    ):
        module.main([name, "--help"])
    return sorted(set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", out.getvalue())))


def command_options() -> dict[str, list[str]]:
    from runner.help import subcommands

    return {name: options(name, module) for name, module in subcommands()[0].items()}


def _bash(commands: dict[str, list[str]]) -> str:
    cases = "\n".join(
        f"        {name}) opts={shlex.quote(' '.join(opts))} ;;" for name, opts in commands.items()
    )
    return f"""# runner's completion (runner --completion bash): subcommands, their options, Hydra's
_runner_completion()
{{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" opts="" choices=""
    local commands={shlex.quote(" ".join(commands))}
    if (( COMP_CWORD > 1 )); then
        case "${{COMP_WORDS[1]}}" in
{cases}
        esac
    fi
    if [[ -n "$opts" ]]; then
        # after a subcommand: its options, else file names (runs, sweeps, .npz files)
        compopt +o nospace 2>/dev/null
        if [[ "$cur" == -* ]]; then
            COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        else
            COMPREPLY=($(compgen -f -- "$cur"))
        fi
        return 0
    fi
    COMPREPLY=()
    if (( COMP_CWORD == 1 )) && [[ "$cur" != *=* && "$cur" != -* ]]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        if (( ${{#COMPREPLY[@]}} )) && [[ -n "$cur" ]]; then
            compopt +o nospace 2>/dev/null
            return 0
        fi
    fi
    # config groups, options and keys: Hydra's own completion
    choices=$(COMP_POINT=$COMP_POINT COMP_LINE=$COMP_LINE "${{COMP_WORDS[0]}}" -sc query=bash \\
        2>/dev/null)
    COMPREPLY+=($(compgen -o nospace -W "$choices" -- "$cur"))
    return 0
}}
COMP_WORDBREAKS=${{COMP_WORDBREAKS//=}}
complete -o nospace -o default -F _runner_completion runner
"""


def _fish(commands: dict[str, list[str]], descriptions: dict[str, str]) -> str:
    names = " ".join(commands)
    lines = [
        "# runner's completion (runner --completion fish): commands, their options, then Hydra's",
        "function __runner_hydra",
        "    set -lx COMP_LINE (commandline -cp)",
        "    set -l parts (commandline -cpo)",
        '    eval "$parts[1] -sc query=fish" 2>/dev/null',
        "end",
        f"complete -c runner -n 'not __fish_seen_subcommand_from {names}' -f -a '(__runner_hydra)'",
    ]
    for name, opts in commands.items():
        lines.append(
            f"complete -c runner -n 'not __fish_seen_subcommand_from {names}' -f -a {name} "
            f"-d {shlex.quote(descriptions.get(name, ''))}"
        )
        for opt in opts:
            flag = f"-l {opt[2:]}" if opt.startswith("--") else f"-s {opt[1:]}"
            lines.append(f"complete -c runner -n '__fish_seen_subcommand_from {name}' {flag}")
        lines.append(f"complete -c runner -n '__fish_seen_subcommand_from {name}' -F")
    return "\n".join(lines) + "\n"


def script(shell: str) -> str:
    """The completion script for `shell` (one of SHELLS)."""
    commands = command_options()
    if shell == "bash":
        return _bash(commands)
    if shell == "zsh":  # zsh runs the bash function through its bash compatibility layer
        return "autoload -U +X bashcompinit && bashcompinit\n" + _bash(commands)
    from runner.help import command_descriptions

    return _fish(commands, command_descriptions())


def main(argv: list[str]) -> int:
    """`runner --completion SHELL`: print the script; a missing or unknown shell is one line
    on stderr, exit 2."""
    import sys

    from runner.shell import EXIT_ERROR

    if len(argv) != 1 or argv[0] not in SHELLS:
        got = " ".join(argv) or "nothing"
        print(
            f"runner: error: --completion: got {got}; choose one of {', '.join(SHELLS)} "
            f'(bash: eval "$(runner --completion bash)" in ~/.bashrc)',
            file=sys.stderr,
        )
        return EXIT_ERROR
    sys.stdout.write(script(argv[0]))
    return 0
