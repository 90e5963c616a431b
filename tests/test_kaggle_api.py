"""The download and submit paths, with the real `kaggle` client against the local stand-in."""

from __future__ import annotations

import socket
import time

import pytest
import requests

from pipeline import kaggle_api
from pipeline.competitions import open_competition
from pipeline.competitions.carvana import Carvana
from pipeline.download import sources
from pipeline.kaggle_api import downloads
from tests.kaggle_standin import StandIn, kaggle_files

SLUG = "carvana-image-masking-challenge"
FILES = Carvana.kaggle_files(hq=False)


BIG = bytes(range(256)) * 12_000  # 3 MB: the client writes 1 MiB chunks, so a cut leaves a partial file


@pytest.fixture
def standin(tiny_demo, monkeypatch):
    files = {**kaggle_files(tiny_demo), "big.zip": BIG}
    server = StandIn({SLUG: files, "closed-comp": kaggle_files(tiny_demo)}, rules_not_accepted={"closed-comp"}).start()
    monkeypatch.setenv("HTTP_PROXY", server.proxy)
    monkeypatch.setenv("KAGGLE_USERNAME", "tester")
    monkeypatch.setenv("KAGGLE_KEY", "secret-key")
    monkeypatch.setattr(time, "sleep", lambda seconds: None)  # the client's back-off, not the test's time
    yield server
    server.stop()


def _file_gets(server: StandIn) -> list[dict]:
    return [r for r in server.log if r["method"] == "GET" and r["path"].startswith("/files/")]


def test_download_fetches_every_file_byte_for_byte(standin, tiny_demo, tmp_path):
    dest = tmp_path / "raw"
    downloads.download(SLUG, FILES, dest)
    Carvana.unpack(dest)
    for name in FILES:
        src = standin.competitions[SLUG][name]
        want = src if isinstance(src, bytes) else src.read_bytes()
        assert (dest / name).read_bytes() == want, name
    assert open_competition(dest, SLUG).verify() == {"train": 48, "test": 16}
    assert all(r["host"] == "localhost" for r in standin.log)  # proxy form: the client aimed at localhost
    calls = [r["path"].rsplit("/", 1)[-1] for r in standin.log if r["method"] == "POST"]
    assert calls.count("DownloadDataFile") == len(FILES)


def test_complete_files_are_skipped(standin, tmp_path):
    dest = tmp_path / "raw"
    downloads.download(SLUG, FILES, dest)
    before = len(_file_gets(standin))
    downloads.download(SLUG, FILES, dest)
    assert len(_file_gets(standin)) == before


def _range_start(header: str | None) -> int:
    return int(header.split("=")[1].split("-")[0]) if header else 0


def test_dropped_connection_is_resumed_with_a_range_request(standin, tmp_path):
    standin.cut_after["big.zip"] = 1_500_000
    standin.cuts_left["big.zip"] = 1
    downloads.download(SLUG, ["big.zip"], tmp_path)
    assert (tmp_path / "big.zip").read_bytes() == BIG
    starts = [_range_start(r["range"]) for r in _file_gets(standin)]
    assert starts[0] == 0 and starts[1] >= 1 << 20  # the second request continues where the first broke


def test_failed_download_resumes_on_the_next_run(standin, tmp_path):
    standin.cut_after["big.zip"] = 1_500_000
    standin.cuts_left["big.zip"] = 1000  # every attempt of this run breaks
    with pytest.raises(kaggle_api.KaggleError, match="run the same command again"):
        downloads.download(SLUG, ["big.zip"], tmp_path, delays=())
    partial = tmp_path / "big.zip"
    assert 0 < partial.stat().st_size < len(BIG)
    standin.cuts_left["big.zip"] = 0
    standin.log.clear()
    downloads.download(SLUG, ["big.zip"], tmp_path)
    assert partial.read_bytes() == BIG
    assert _range_start(_file_gets(standin)[-1]["range"]) >= 1 << 20


def test_wrong_key_is_401_and_the_key_is_never_shown(standin, monkeypatch, tmp_path):
    monkeypatch.setenv("KAGGLE_KEY", "not-the-key-123")
    with pytest.raises(kaggle_api.KaggleError) as err:
        downloads.download(SLUG, FILES, tmp_path)
    assert "401" in str(err.value) and "kaggle.json" in str(err.value)
    assert "not-the-key-123" not in str(err.value)


def test_rules_not_accepted_is_403_with_the_rules_page(standin, tmp_path):
    with pytest.raises(kaggle_api.KaggleError, match=r"403.*competitions/closed-comp/rules"):
        downloads.download("closed-comp", FILES, tmp_path)


def test_unknown_competition_is_404_naming_the_param(standin, tmp_path):
    with pytest.raises(kaggle_api.KaggleError, match=r"404.*download\.competition"):
        downloads.download("no-such-comp", FILES, tmp_path)


def test_missing_credentials_say_where_they_go_before_any_request(standin, monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    with pytest.raises(kaggle_api.KaggleError, match=r"kaggle\.json.*KAGGLE_USERNAME and KAGGLE_KEY"):
        downloads.download(SLUG, FILES, tmp_path)
    assert standin.log == []


def test_kaggle_json_credentials_are_used(standin, monkeypatch, tmp_path):
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    token = kaggle_api.config_dir() / "kaggle.json"  # the client reads this folder once, at import
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text('{"username": "tester", "key": "secret-key"}')
    token.chmod(0o600)
    try:
        downloads.download(SLUG, ["metadata.csv.zip"], tmp_path / "raw")
    finally:
        token.unlink()
    assert (tmp_path / "raw" / "metadata.csv.zip").is_file()


def test_not_enough_disk_space_is_reported_before_downloading(standin, monkeypatch, tmp_path):
    monkeypatch.setattr(downloads.shutil, "disk_usage", lambda path: type("U", (), {"free": 10})())
    with pytest.raises(kaggle_api.KaggleError, match="not enough disk space"):
        downloads.download(SLUG, FILES, tmp_path)
    assert _file_gets(standin) == []


def test_no_request_can_leave_the_machine():
    with pytest.raises(requests.exceptions.RequestException):
        requests.get("https://www.kaggle.com/api/v1/competitions/list", timeout=5)
    with pytest.raises(ConnectionRefusedError, match="may not leave"):
        socket.create_connection(("93.184.216.34", 80), timeout=5)


def test_server_errors_are_retried_then_explained_in_one_line(standin, tmp_path):
    standin.server_errors[:] = [500, 503]  # the listing fails twice, then works
    downloads.download(SLUG, ["train_masks.csv.zip"], tmp_path / "raw")
    assert (tmp_path / "raw" / "train_masks.csv.zip").is_file()
    standin.server_errors[:] = [500] * 50
    with pytest.raises(kaggle_api.KaggleError) as err:
        downloads.download(SLUG, ["metadata.csv.zip"], tmp_path / "raw2")
    message = str(err.value)
    assert "answered HTTP 500 to every try" in message and "finished files are kept" in message
    assert "\n" not in message
    assert len(standin.server_errors) == 50 - (len(kaggle_api.RETRY_DELAYS) + 1)  # bounded: 1 try + the retries


def test_a_rate_limited_download_is_not_mistaken_for_the_submission_allowance(standin, tmp_path):
    standin.server_errors[:] = [429] * 50
    with pytest.raises(kaggle_api.KaggleError) as err:
        downloads.download(SLUG, ["metadata.csv.zip"], tmp_path / "raw")
    message = str(err.value)
    assert "limiting the rate of requests (HTTP 429" in message and "partial downloads resume" in message
    assert "submission" not in message and "\n" not in message


def test_a_served_zip_with_a_bad_crc_fails_the_download_naming_the_member(standin, tiny_demo, tmp_path):
    import zipfile

    from pipeline import params
    from pipeline.competitions import archive
    from tests.conftest import ROOT

    with zipfile.ZipFile(tiny_demo / "test.zip") as z:
        info = z.infolist()[5]
        offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
    damaged = bytearray((tiny_demo / "test.zip").read_bytes())
    damaged[offset] ^= 0xFF
    standin.competitions[SLUG]["test.zip"] = bytes(damaged)
    p = params.load("download", path=ROOT / "params.yaml")["download"]
    p = params.replace(p, source="kaggle", competition=SLUG)
    with pytest.raises(archive.ArchiveError, match=f"{info.filename} is damaged"):
        sources.fetch(p, tmp_path / "raw", tmp_path / "truth")


def test_two_runs_on_an_empty_store_download_once(standin, tmp_path, monkeypatch):
    """Two queued experiments started together: one downloads, the other waits for it and links the same files."""
    import threading

    from pipeline import params
    from tests.conftest import ROOT

    monkeypatch.setenv("COMPETITIONS_STORE", str(tmp_path / "store"))
    p = params.replace(
        params.load("download", path=ROOT / "params.yaml")["download"], source="kaggle", competition=SLUG
    )
    errors = []

    def one(name):
        try:
            sources.fetch(p, tmp_path / name / "raw", tmp_path / name / "truth")
        except BaseException as err:  # shown by the assertion below
            errors.append(err)

    runs = [threading.Thread(target=one, args=(name,)) for name in ("a", "b")]
    for run in runs:
        run.start()
    for run in runs:
        run.join()
    assert not errors, errors
    fetched = sorted(r["path"].rsplit("/", 1)[-1] for r in _file_gets(standin))
    assert fetched == sorted(set(fetched)) and len(fetched) == len(FILES), fetched  # each file once
    for name in FILES:
        assert (tmp_path / "a/raw" / name).stat().st_ino == (tmp_path / "b/raw" / name).stat().st_ino
