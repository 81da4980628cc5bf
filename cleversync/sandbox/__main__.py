"""``python -m cleversync.sandbox [options]``: run the sandbox without the product's CLI."""

from __future__ import annotations

import argparse

from cleversync.sandbox.cli import add_serve_arguments, run_serve


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cleversync.sandbox", description="Serve a fake Clever API."
    )
    add_serve_arguments(parser)
    return run_serve(parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
