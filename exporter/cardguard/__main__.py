"""Run the cardguard command line as ``python -m cardguard``."""

from cardguard.cli import main

main()
