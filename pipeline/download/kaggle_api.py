"""The few Kaggle API calls the pipeline makes, with errors that say what to do.

The `kaggle` package authenticates (and, without credentials, prints help and exits) as soon as it
is imported, so it is imported here lazily and only after the credentials have been found. Nothing
in this module prints, logs or stores a credential.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import time
import zipfile
from functools import partial
from pathlib import Path
from typing import Callable, TypeVar

from pipeline.errors import UserError

T = TypeVar("T")

CREDENTIALS_HELP = (
    "no Kaggle credentials found. Either put your API token file kaggle.json (Kaggle > Settings > API > "
    "Create New Token) in ~/.kaggle/ (or the folder named by KAGGLE_CONFIG_DIR) with `chmod 600`, or set "
    "KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN) in the environment. Never put them in params.yaml."
)
RETRY_DELAYS = (2.0, 8.0, 30.0)  # seconds between attempts at an API call that failed on the network
RETRY_STATUS = {429, 500, 502, 503, 504}  # answers that say "not now": retried like a dropped line
PARTIAL_SUFFIX = ".kaggle-partial"  # the client's marker beside a download it can resume


class KaggleError(UserError):
    """A Kaggle API failure, explained with its fix."""


def config_dir() -> Path:
    """Where the kaggle client looks for kaggle.json (the same rule as the client's)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path.home() / ".kaggle"
    if home.exists():
        return home
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def has_credentials() -> bool:
    """True when the environment or a file gives the client something to authenticate with."""
    env = os.environ
    if env.get("KAGGLE_API_TOKEN") or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY")):
        return True
    kaggle_json = config_dir() / "kaggle.json"
    if kaggle_json.is_file():
        try:
            data = json.loads(kaggle_json.read_text() or "{}")
        except ValueError:
            raise KaggleError(f"{kaggle_json} is not valid JSON; download a new token from Kaggle > Settings") from None
        if data.get("username") and data.get("key"):
            return True
    return any(
        (Path.home() / ".kaggle" / n).is_file() for n in ("access_token", "access_token.txt", "credentials.json")
    )


def connect():
    """An authenticated `KaggleApi`, or KaggleError explaining where credentials go."""
    if not has_credentials():
        raise KaggleError(CREDENTIALS_HELP)
    with contextlib.redirect_stdout(io.StringIO()):
        from kaggle.api.kaggle_api_extended import KaggleApi

        api = KaggleApi()
        try:
            api.authenticate()
        except SystemExit:
            raise KaggleError(CREDENTIALS_HELP) from None
    return api


def _explain(err: Exception, competition: str, action: str) -> KaggleError:
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    text = str(err)
    if status == 401:
        return KaggleError(
            f"Kaggle rejected the credentials (HTTP 401) while trying to {action}: the username or key in "
            f"kaggle.json / KAGGLE_USERNAME+KAGGLE_KEY is wrong or expired; create a new token at "
            f"https://www.kaggle.com/settings"
        )
    if status == 403:
        return KaggleError(
            f"Kaggle refused to {action} (HTTP 403): accept the rules of {competition} at "
            f"https://www.kaggle.com/competitions/{competition}/rules (signed in as the account of your "
            f"credentials), then run again"
        )
    if status == 404:
        return KaggleError(
            f"Kaggle has no competition {competition!r} (HTTP 404) to {action}: check download.competition in "
            f"params.yaml (the slug in the competition's URL)"
        )
    uploading = action.startswith("submit")
    if uploading and (status == 429 or "daily" in text.lower() and "submission" in text.lower()):
        return KaggleError(
            f"Kaggle's limit was reached while trying to {action} ({text}); the daily submission allowance "
            f"resets at 00:00 UTC: try again then"
        )
    if status == 429:
        return KaggleError(
            f"Kaggle is limiting the rate of requests (HTTP 429, after every retry) while trying to {action}; wait a "
            f"few minutes, then {_after(action)}"
        )
    if status in RETRY_STATUS:
        return KaggleError(
            f"Kaggle's servers answered HTTP {status} to every try while trying to {action}; {_after(action)}"
        )
    if status is None and isinstance(err, _network_errors()):
        return KaggleError(
            f"network failure while trying to {action} ({type(err).__name__}); check the connection, then "
            f"{_after(action)}"
        )
    return KaggleError(f"Kaggle API error while trying to {action}: {text}")


def _after(action: str) -> str:
    """What a failed call leaves behind, and what to do next."""
    if action.startswith("submit"):
        return (
            "the upload may not have completed: look at `kseg submissions` before submitting again (Kaggle "
            "counts every upload against the daily limit)"
        )
    return "finished files are kept and partial downloads resume: run the same command again later"


def _network_errors() -> tuple[type[Exception], ...]:
    """Exception types that mean the line dropped (imported late: requests is only needed here)."""
    import requests
    import urllib3

    return (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.HTTPError,
    )


def call(fn: Callable[[], T], competition: str, action: str, delays: tuple[float, ...] = RETRY_DELAYS) -> T:
    """Run one API call, retrying network failures, rate limits and server errors with back-off, and explaining
    the final error."""
    import requests

    for attempt in range(len(delays) + 1):
        try:
            return fn()
        except requests.HTTPError as err:
            status = getattr(getattr(err, "response", None), "status_code", None)
            if status not in RETRY_STATUS or attempt == len(delays):
                raise _explain(err, competition, action) from None
            time.sleep(delays[attempt])
        except _network_errors() as err:
            if attempt == len(delays):
                raise _explain(err, competition, action) from None
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")


def list_files(api, competition: str) -> dict[str, int]:
    """{file name: size in bytes} of a competition's data files, every page."""
    files: dict[str, int] = {}
    token = None
    while True:
        page = call(
            partial(api.competition_list_files, competition, page_token=token, page_size=200),
            competition,
            "list the competition's files",
        )
        for f in page.files:
            files[f.name] = int(f.total_bytes or 0)
        token = page.next_page_token
        if not token:
            return files


def is_complete(path: Path, size: int) -> bool:
    """A downloaded file is complete when its size matches and the client left no resume marker."""
    return path.is_file() and path.stat().st_size == size and not Path(str(path) + PARTIAL_SUFFIX).exists()


def bundle_name(competition: str) -> str:
    """The file Kaggle's "download all" makes: every file of the competition in one zip."""
    return f"{competition}.zip"


def _complete(path: Path, size: int | None) -> bool:
    """A listed file of that size, or a bundle (size unknown before it comes) that opens as a zip."""
    if size is not None:
        return is_complete(path, size)
    return path.is_file() and not Path(str(path) + PARTIAL_SUFFIX).exists() and zipfile.is_zipfile(path)


def download(competition: str, names: list[str], dest: Path, delays: tuple[float, ...] = RETRY_DELAYS) -> list[Path]:
    """Download `names` from a competition into `dest`, skipping complete files and resuming partial ones.

    `<competition>.zip`, unless the competition lists a file of that name, is Kaggle's "download all": the one zip
    of every file (Severstal's 18,000 images are fetched that way, not one by one).
    """
    api = connect()
    listing = list_files(api, competition)
    bundle = bundle_name(competition)
    sizes: dict[str, int | None] = dict(listing)
    if bundle in names and bundle not in listing:
        sizes[bundle] = None
    absent = [n for n in names if n not in sizes]
    if absent:
        raise KaggleError(
            f"competition {competition!r} has no file {absent[0]}; it serves: "
            f"{', '.join(sorted(listing)) or 'nothing'}. Is download.competition right?"
        )
    dest.mkdir(parents=True, exist_ok=True)
    todo = [n for n in names if not _complete(dest / n, sizes[n])]
    for name in names:
        if name not in todo:
            print(f"{name}: complete ({(dest / name).stat().st_size:,} bytes), skipped")
    expected = {n: sizes[n] if sizes[n] is not None else sum(listing.values()) for n in todo}  # a bundle: its files
    remaining = sum(expected[n] - ((dest / n).stat().st_size if (dest / n).is_file() else 0) for n in todo)
    free = shutil.disk_usage(dest).free
    if remaining > free:
        raise KaggleError(
            f"not enough disk space in {dest}: {remaining / 1e9:.1f} GB still to download, {free / 1e9:.1f} GB free; "
            f"free some space (or point data/ at a larger disk) and run again"
        )
    for name in todo:
        _fetch(api, competition, name, dest, sizes[name], delays)
    return [dest / n for n in names]


def _fetch(api, competition: str, name: str, dest: Path, size: int | None, delays: tuple[float, ...]) -> None:
    """One file (or the bundle), checked for completeness after the client is done."""
    path = dest / name
    fetch = (
        partial(api.competition_download_file, competition, name, path=str(dest), quiet=False)
        if size is not None
        else partial(api.competition_download_files, competition, path=str(dest), quiet=False)
    )
    try:
        call(fetch, competition, f"download {name}", delays)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise KaggleError(f"disk full while writing {path}; free some space and run again to resume") from None
        raise
    except ValueError as err:  # the client's size check after a short read
        raise KaggleError(f"{name} arrived incomplete ({err}); run again to resume the download") from None
    if not _complete(path, size):
        have = path.stat().st_size if path.is_file() else 0
        wanted = f" of {size:,}" if size is not None else ""
        raise KaggleError(f"{name} is incomplete ({have:,}{wanted} bytes) after the download; run again to resume")


def submit(competition: str, path: Path, message: str) -> dict:
    """Upload a submission file; returns {'ref', 'message'} from Kaggle."""
    api = connect()
    response = call(
        lambda: api.competition_submit(str(path), message, competition, quiet=True),
        competition,
        f"submit {path.name}",
        delays=(),
    )
    if not getattr(response, "ref", None):
        raise KaggleError(f"Kaggle did not accept {path}: {getattr(response, 'message', '') or 'upload failed'}")
    return {"ref": response.ref, "message": response.message}


def submissions(competition: str) -> list[dict]:
    """The account's submissions to a competition, newest first, as plain dicts."""
    api = connect()
    rows = call(lambda: api.competition_submissions(competition, page_size=100), competition, "list submissions")
    out = []
    for s in rows or []:
        status = getattr(s.status, "name", str(s.status)).replace("SUBMISSION_STATUS_", "")
        out.append(
            {
                "ref": s.ref,
                "file": s.file_name,
                "date": s.date.isoformat() if hasattr(s.date, "isoformat") else str(s.date or ""),
                "description": s.description or "",
                "status": status,
                "public_score": s.public_score or "",
                "private_score": s.private_score or "",
            }
        )
    return out
