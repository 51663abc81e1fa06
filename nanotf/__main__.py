"""``python -m nanotf <command>``: see :mod:`nanotf.cli` (``python -m nanotf --help``)."""

from .cli import main

raise SystemExit(main())
