"""Command-line commands; each module defines one click command (see cardguard.cli.COMMANDS)."""
