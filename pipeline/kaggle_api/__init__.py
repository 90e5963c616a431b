"""The Kaggle API in one place: the client and its errors here; competition files (`downloads`), datasets
(`datasets`), kernels (`kernels`) and submissions of files and of kernels (`submissions`) in the modules beside it.
Every call goes through `call`, which retries what Kaggle says is temporary and explains the rest in one line.

The `kaggle` package authenticates (and, without credentials, prints help and exits) as soon as it
is imported, so it is imported here lazily and only after the credentials have been found. Nothing
in this package prints, logs or stores a credential.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import time
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


def username(api) -> str:
    """The account the credentials belong to: the owner of the datasets and kernels this project pushes."""
    return str(api.config_values.get(api.CONFIG_NAME_USER) or "")


def _explain(err: Exception, subject: str, action: str) -> KaggleError:
    """One line for a failed call about `subject`: a competition's slug, or `dataset owner/slug`, `kernel ...`."""
    response = getattr(err, "response", None)
    status = getattr(response, "status_code", None)
    text = str(err)
    kind, _, ref = subject.partition(" ") if subject.startswith(("dataset ", "kernel ")) else ("", "", subject)
    if status == 401:
        return KaggleError(
            f"Kaggle rejected the credentials (HTTP 401) while trying to {action}: the username or key in "
            f"kaggle.json / KAGGLE_USERNAME+KAGGLE_KEY is wrong or expired; create a new token at "
            f"https://www.kaggle.com/settings"
        )
    if status == 403 and kind:
        return KaggleError(
            f"Kaggle refused to {action} (HTTP 403): the {kind} {ref} is not yours to change (another account "
            f"owns it, or it is private to one); set package.owner to your username, or package.{kind} to a slug "
            f"of your own"
        )
    if status == 403:
        return KaggleError(
            f"Kaggle refused to {action} (HTTP 403): accept the rules of {subject} at "
            f"https://www.kaggle.com/competitions/{subject}/rules (signed in as the account of your "
            f"credentials), then run again"
        )
    if status == 404 and kind:
        return KaggleError(f"Kaggle has no {kind} {ref} (HTTP 404) to {action}; check package.owner and package.{kind}")
    if status == 404:
        return KaggleError(
            f"Kaggle has no competition {subject!r} (HTTP 404) to {action}: check download.competition in "
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


def call(fn: Callable[[], T], subject: str, action: str, delays: tuple[float, ...] = RETRY_DELAYS) -> T:
    """Run one API call about `subject` (a competition's slug, `dataset owner/slug` or `kernel owner/slug`),
    retrying network failures, rate limits and server errors with back-off, and explaining the final error."""
    import requests

    for attempt in range(len(delays) + 1):
        try:
            return fn()
        except requests.HTTPError as err:
            status = getattr(getattr(err, "response", None), "status_code", None)
            if status not in RETRY_STATUS or attempt == len(delays):
                raise _explain(err, subject, action) from None
            time.sleep(delays[attempt])
        except _network_errors() as err:
            if attempt == len(delays):
                raise _explain(err, subject, action) from None
            time.sleep(delays[attempt])
    raise AssertionError("unreachable")
