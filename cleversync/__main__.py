"""``python -m cleversync``: the same as the ``cleversync`` command."""

from cleversync.cli import main

raise SystemExit(main())
