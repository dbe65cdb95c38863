"""The ``cardguard`` command line: one click group, commands listed in one map.

Each command lives in its own module under ``cardguard.commands`` and is
imported only when invoked, so ``cardguard --help`` stays fast and a broken
optional dependency of one command cannot break the others.

``--version`` works on the group and on every command (``cardguard --version``,
``cardguard serve --version``) and prints the same text, as Prometheus'
``version.Print`` does for its binaries.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

# name -> (module, attribute, one-line help). The only place commands are registered.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "cardinality": (
        "cardguard.commands.cardinality",
        "cardinality",
        "Measure series and label cardinality of one /metrics page.",
    ),
    "heap": ("cardguard.commands.heap", "heap", "Rank heap owners in a pprof heap profile."),
    "goroutines": (
        "cardguard.commands.goroutines",
        "goroutines",
        "Group goroutines by stack and creator.",
    ),
    "report": (
        "cardguard.commands.report",
        "report",
        "Watch a Go service (or read saved files) and name its offenders.",
    ),
    "serve": ("cardguard.commands.serve", "serve", "Run the exporter."),
    "check-config": (
        "cardguard.commands.check_config",
        "check_config",
        "Validate a configuration file and report every error.",
    ),
    "demo": ("cardguard.commands.demo", "demo", "Run cardguard against its bundled leaky demo."),
}


class LazyGroup(click.Group):
    """A click group that imports each command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr, _ = entry
        command: Any = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}.{attr} is not a click command")
        if not any(p.name == "version" for p in command.params):
            command.params.append(_version_option())
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from cardguard.version import text

    click.echo(text())
    ctx.exit()


def _version_option() -> click.Option:
    return click.Option(
        ["--version"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_print_version,
        help="Show the version, build and runtime information and exit.",
    )


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Find label explosions, goroutine leaks and growing heap owners in Go services."""


main.params.append(_version_option())
