"""The ``lstmconvert`` command line: one module per subcommand, ``main(argv)`` for in-process tests.

User errors (``LstmConvertError``) print one line, ``lstmconvert: error: <file>: <problem>``, and exit 2;
click's own usage errors exit 2 as well. Results go to stdout, only once a command has succeeded;
lstmconvert's own warnings go to stderr as ``lstmconvert: warning: ...``, and the frameworks' internal
warnings are dropped (``own_warnings``). SIGTERM/SIGHUP during a write remove the staged output and
print ``lstmconvert: aborted by SIGTERM``, exiting 128 + the signal number (143, 129), as a shell reports a
process a signal ended.
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Sequence

import click

from ..errors import LstmConvertError, Terminated
from ..own_warnings import own_warnings
from .commands import cli


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; return the exit code (0 ok, 1 mismatch found by verify/roundtrip, 2 bad input)."""
    try:
        with own_warnings(emit=_show_warning):
            result = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except LstmConvertError as exc:
        if os.environ.get("LSTMCONVERT_DEBUG"):
            raise
        click.echo(f"lstmconvert: error: {_one_line(str(exc))}", err=True)
        return 2
    except Terminated as exc:
        click.echo(f"lstmconvert: {exc}", err=True)
        return 128 + exc.signum
    except click.exceptions.Abort:
        click.echo("lstmconvert: aborted", err=True)
        return 2
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return result if isinstance(result, int) else 0


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _show_warning(text: str) -> None:
    from .. import progress

    progress.clear()  # a bar on the same terminal would garble the line
    click.echo(f"lstmconvert: warning: {text}", err=True)


def entry_point() -> None:  # pragma: no cover - thin wrapper for the console script
    sys.exit(main())
