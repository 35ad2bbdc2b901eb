"""``python -m msam_export``: the command line."""

from .cli import main

main()
