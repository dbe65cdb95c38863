"""``cardguard check-config FILE``: validate a configuration file and print every error."""

from __future__ import annotations

import click

from cardguard.errors import ConfigError
from cardguard.quantities import format_duration
from cardguard.settings.config import load_config


@click.command("check-config")
@click.argument("file", type=click.Path(dir_okay=False))
def check_config(file: str) -> None:
    """Validate FILE; print each error as file:line: path: message and exit 1 if any."""
    try:
        cfg = load_config(file)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        n = len(exc.problems)
        click.echo(f"{file}: {n} error{'s' if n != 1 else ''}", err=True)
        raise SystemExit(1) from None
    click.echo(f"{file}: OK, {len(cfg.targets)} target(s)")
    for t in cfg.targets:
        profiles = (
            f"profiles every {format_duration(t.profiles.interval)}"
            if t.profiles.enabled
            else "profiles off"
        )
        click.echo(
            f"  {t.name}: {t.metrics_url} every {format_duration(t.interval)} "
            f"(timeout {format_duration(t.timeout)}), {profiles}"
        )
