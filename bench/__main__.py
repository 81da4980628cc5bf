"""``python -m bench``: run every case on SQLite and PostgreSQL and print the figures."""

from __future__ import annotations

from bench.run import main

raise SystemExit(main())
