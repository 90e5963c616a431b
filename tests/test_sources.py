"""Filling data/raw never deletes what the user brought: refusals before anything is touched, imports aside,
Kaggle downloads kept in the store."""

from __future__ import annotations

import json

import pytest

from pipeline import params
from pipeline.download import sources
from pipeline.errors import UserError
from tests.conftest import ROOT


def _download(**changes) -> params.DownloadParams:
    p = params.load("download", path=ROOT / "params.yaml")["download"]
    demo = params.replace(p.demo, train=3, test=1, width=160, height=96)
    return params.replace(p, demo=demo, **changes)


def _local(path, **changes) -> params.DownloadParams:
    local = params.load("download", path=ROOT / "params.yaml")["download"].local
    return _download(source="local", competition="subset", local=params.replace(local, path=str(path), **changes))


def _snapshot(folder):
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir()) if f.is_file()}


def test_a_local_path_that_is_the_output_folder_is_refused_before_anything_changes(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.zip").write_bytes(b"the user's own zip")
    for path in (raw, raw / "sub"):
        with pytest.raises(sources.SourceError, match="is .*raw itself or inside it"):
            sources.fetch(_local(path), raw, tmp_path / "truth")
    assert _snapshot(raw) == {"train.zip": b"the user's own zip"}


def test_files_the_pipeline_did_not_put_there_are_never_deleted(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "test.zip").write_bytes(b"mine")
    with pytest.raises(sources.SourceError, match="holds files this pipeline did not put there"):
        sources.fetch(_download(), raw, tmp_path / "truth")
    assert _snapshot(raw) == {"test.zip": b"mine"}


def test_an_unfinished_kaggle_download_survives_switching_to_the_demo(tmp_path):
    from pipeline.download import store

    raw = tmp_path / "raw"
    raw.mkdir()
    stamp = {"source": "kaggle", "competition": "carvana-image-masking-challenge", "hq": False, "complete": False}
    (raw / sources.STAMP).write_text(json.dumps(stamp))
    (raw / "train.zip").write_bytes(b"finished part of the download")
    (raw / "test.zip.kaggle-partial").write_bytes(b"resume marker")
    before = {k: v for k, v in _snapshot(raw).items() if k != sources.STAMP}
    sources.fetch(_download(), raw, tmp_path / "truth")  # the demo replaces it in data/raw ...
    assert json.loads((raw / sources.STAMP).read_text())["source"] == "demo"
    assert _snapshot(store.store_dir("carvana-image-masking-challenge")) == before  # ... the download is kept


def test_a_failed_import_leaves_the_previous_data_as_it_was(tmp_path):
    raw = tmp_path / "raw"
    sources.fetch(_download(), raw, tmp_path / "truth")
    before = _snapshot(raw)
    bad = tmp_path / "pairs"
    (bad / "imgs").mkdir(parents=True)
    (bad / "masks").mkdir()
    (bad / "imgs" / "a.png").write_bytes(b"not a picture")
    with pytest.raises(UserError):
        sources.fetch(_local(bad, layout="folder-pairs"), raw, tmp_path / "truth")
    assert _snapshot(raw) == before and json.loads(before[sources.STAMP])["complete"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pairs", "raw", "truth"]  # no half-made folder left


def test_a_member_with_a_bad_crc_fails_the_download_naming_it(tiny_demo, tmp_path):
    import shutil
    import warnings
    import zipfile

    from pipeline.competitions import archive

    src = tmp_path / "kaggle"
    shutil.copytree(tiny_demo, src)
    with zipfile.ZipFile(src / "test.zip") as z:
        info = z.infolist()[3]
        offset = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + info.compress_size // 2
    data = bytearray((src / "test.zip").read_bytes())
    data[offset] ^= 0xFF  # one flipped byte inside a stored JPEG: the directory still lists it
    (src / "test.zip").write_bytes(bytes(data))
    with pytest.raises(archive.ArchiveError, match=f"test.zip: {info.filename} is damaged"):
        archive.check_crcs(src / "test.zip", jobs=2)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(archive.ArchiveError, match=f"test.zip: {info.filename} is damaged"):
            archive.check_crcs(src / "test.zip", jobs=2, chunk=3)  # in parallel tasks too
    assert [str(w.message) for w in seen] == []  # the one line only: no joblib warning about the cancelled tasks
    with pytest.raises(archive.ArchiveError, match=f"{info.filename} is damaged"):
        sources.fetch(_local(src, layout="kaggle"), tmp_path / "raw", tmp_path / "truth")
    assert archive.check_crcs(tiny_demo / "test.zip") == 16


def test_a_kaggle_sized_zip_is_checked_in_a_few_tasks_per_worker():
    from pipeline.competitions import archive

    assert -(-100_064 // archive.crc_chunk(100_064, 2)) == 2 * archive.TASKS_PER_WORKER  # not 501 opens of 100k entries
    assert archive.crc_chunk(64, 2) >= 64  # a small archive: one task, no process pool


def _same_size_other_bytes(zip_path) -> None:
    """Rewrite a stored zip with one image's middle bytes changed: another file of the same size and valid CRCs."""
    import io
    import zipfile

    with zipfile.ZipFile(zip_path) as z:
        members = [(i, z.read(i)) for i in z.infolist()]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for k, (info, data) in enumerate(members):
            if k == 1:
                middle = len(data) // 2
                data = data[:middle] + bytes(b ^ 0x55 for b in data[middle : middle + 64]) + data[middle + 64 :]
            z.writestr(info, data)
    assert len(buf.getvalue()) == zip_path.stat().st_size
    zip_path.unlink()  # a new file (a new inode), as a download or a copy makes
    zip_path.write_bytes(buf.getvalue())


@pytest.mark.parametrize("disk", ["same", "other"])
def test_a_local_import_follows_its_source_s_bytes_never_its_names_or_sizes(tiny_demo, tmp_path, monkeypatch, disk):
    import shutil
    import zipfile

    if disk == "other":  # hard links refused, as across disks: the files are copied
        monkeypatch.setattr(sources.os, "link", lambda *a: (_ for _ in ()).throw(OSError("cross-device link")))
    src, raw = tmp_path / "kaggle", tmp_path / "raw"
    shutil.copytree(tiny_demo, src)
    with zipfile.ZipFile(src / "test.zip") as z:  # the test images as a folder, as a user unzips them
        z.extractall(src)
    (src / "test.zip").unlink()
    p = _local(src, layout="kaggle")
    sources.fetch(p, raw, tmp_path / "truth")

    names = sorted((src / "test").iterdir())
    names[0].write_bytes(names[1].read_bytes())  # another picture under the first one's name
    _same_size_other_bytes(src / "train_masks.zip")
    sources.fetch(p, raw, tmp_path / "truth")
    with zipfile.ZipFile(raw / "test.zip") as z:
        assert z.read(f"test/{names[0].name}") == names[1].read_bytes()
    assert (raw / "train_masks.zip").read_bytes() == (src / "train_masks.zip").read_bytes()
    packed = (raw / "test.zip").stat().st_mtime_ns
    sources.fetch(p, raw, tmp_path / "truth")  # nothing changed: compared, not packed again
    assert (raw / "test.zip").stat().st_mtime_ns == packed

    (src / "metadata.csv").unlink()  # a file the source no longer has is not kept from the import before
    sources.fetch(p, raw, tmp_path / "truth")
    assert not (raw / "metadata.csv").exists()
    (src / "train_masks.csv").unlink()
    with pytest.raises(UserError, match="has neither train_masks.csv nor train_masks.csv.zip"):
        sources.fetch(p, raw, tmp_path / "truth")


def test_a_relative_local_path_is_the_main_project_s_from_a_queued_run_s_copy(tiny_demo, tmp_path, monkeypatch):
    """`dvc exp run --temp` and queued runs work in a copy under .dvc/tmp/exps/: a path relative to the project
    (DVC_ROOT) still names the folder the user meant."""
    import shutil

    from pipeline import inputs

    main, mine = tmp_path / "main", tmp_path / "mine"
    shutil.copytree(tiny_demo, mine)
    copy = main / ".dvc/tmp/exps/tmp1234"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.setenv("DVC_ROOT", str(main))
    p = _local("../mine", layout="kaggle")
    assert sources.fetch(p, copy / "data/raw", copy / "truth") == {"train": 48, "test": 16}
    assert len(inputs._folder("../mine")["files"]) == len(list(mine.iterdir()))
