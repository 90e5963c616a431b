"""The one base class for mistakes a user can fix, and the entry-point wrapper that reports them.

Stages and the CLI wrap their `main` in `run_stage`: a UserError prints one line that names the file
or param and the fix, instead of a traceback; an interrupt says that finished work is kept. A stage script also
checks that the `pipeline` it imported is its own checkout's: `python stages/<name>.py` puts stages/ first on
sys.path, so the import falls through to whatever checkout the environment's editable install points at, and
DVC would lock code that did not run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable


class UserError(Exception):
    """Bad input, a bad param or a missing prerequisite: reported as a message, never a traceback."""


def message(err: BaseException) -> str:
    """The user-facing text of an error, also when a DataLoader worker raised it.

    A worker's exception reaches the main process as 'Caught X in DataLoader worker ... Original
    Traceback ...'; only its last line, the original message, is for the user.
    """
    text = str(err)
    if "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        return last.split(": ", 1)[1] if ": " in last else last
    return text


def check_checkout(entry: str | Path) -> None:
    """Stop in one line when `entry`, a stage script (stages/<name>.py), belongs to another checkout than the
    imported library (this file's)."""
    entry = Path(entry).resolve()
    if entry.parent.name != "stages":
        return
    checkout, library = entry.parents[1], Path(__file__).resolve().parents[1]
    if checkout != library:
        print(
            f"error: {entry} belongs to {checkout} but imported pipeline from {library}: run stages from their "
            f"checkout's root as `python -m stages.{entry.stem}` (what dvc.yaml runs), so that its own code runs",
            file=sys.stderr,
        )
        sys.exit(1)


def run_stage(main: Callable[[], object]) -> None:
    """Run an entry point, turning UserError and Ctrl-C into a message and an exit status; a stage script's
    `main` must import its own checkout's library (`check_checkout`)."""
    check_checkout(getattr(main, "__globals__", {}).get("__file__") or "")
    try:
        main()
    except UserError as err:
        print(f"error: {message(err)}", file=sys.stderr)
        sys.exit(1)
    except RuntimeError as err:
        text = str(err)
        if "DataLoader worker" not in text or not ("killed" in text or "exited unexpectedly" in text):
            raise
        print(
            f"error: a data-loading worker was killed ({text.splitlines()[0]}), most likely because the machine "
            f"ran out of memory: lower train.workers / predict.workers or the batch size, then run the same command "
            f"again; finished epochs and shards are kept",
            file=sys.stderr,
        )
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
