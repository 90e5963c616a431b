"""A local stand-in for Kaggle's competition API, for tests and for trying the Kaggle path offline.

The unmodified `kaggle` client reaches it with KAGGLE_API_ENVIRONMENT=LOCALHOST and
HTTP_PROXY=http://127.0.0.1:PORT: every call then arrives here in proxy form
(`POST http://localhost/api/v1/competitions.CompetitionApiService/ListDataFiles`). It serves a
competition folder's files under Kaggle's names (train.zip, train_masks.csv.zip, ...; or, for a
competition served as one zip such as Severstal, its members one by one and the zip for "download all"),
supports byte ranges for resumed downloads, answers 401/403/404 like Kaggle, accepts submissions and
scores them with the competition's own metric against its truth file.

It also plays Kaggle's side of a code competition, with the requests of the real client (kaggle 2.2.5): datasets
created and versioned from uploaded blobs (processed for a few status reads, a new version refused while the last is
processing, a kernel mounting the last processed one), kernels pushed and run for real (the pushed script, in the
interpreter given as Kaggle's image, without the network where a namespace allows, under /kaggle's folders with the
datasets unzipped and the competition's hidden test set), their status, log and output files, and code submissions
scored from the output of the version named; a CSV uploaded to a code competition is refused as Kaggle refuses it.

    python -m tests.kaggle_standin --data data/raw --truth data/demo-truth/test_masks.csv --port 8765
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from PIL import Image

API = "/api/v1/"  # then <service>/<method>
LAST_MODIFIED = formatdate(1500000000, usegmt=True)  # July 2017, when Carvana's data went up


def kaggle_files(folder: Path, hq: bool = False) -> dict[str, bytes | Path]:
    """A competition folder's files under the names Kaggle gives them (the CSVs zipped)."""
    suffix = "_hq" if hq else ""
    files: dict[str, bytes | Path] = {}
    for name in (f"train{suffix}.zip", "train_masks.zip", f"test{suffix}.zip"):
        files[name] = folder / name
    for name in ("train_masks.csv", "sample_submission.csv", "metadata.csv"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(folder / name, name)
        files[f"{name}.zip"] = buf.getvalue()
    return files


def bundle_files(bundle: Path) -> dict[str, bytes]:
    """The files of a whole-competition zip as Kaggle lists them one by one (Severstal: train_images/..., CSVs)."""
    with zipfile.ZipFile(bundle) as z:
        return {info.filename: z.read(info) for info in z.infolist() if not info.is_dir()}


def score(slug: str, submission: bytes, truth: Path, shape: tuple[int, int]) -> float:
    """The competition's own score of an uploaded file (gzip or plain CSV) against its truth file."""
    import tempfile

    from pipeline.competitions import competition_class

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "submission.csv.gz"
        path.write_bytes(submission)
        return competition_class(slug).score(path, truth, shape)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that goes away mid-request (a killed upload, a test's interrupted run) is part of the tests: no
        traceback on the run's output for it; anything else is printed as socketserver does."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class StandIn:
    """The server's state: what it serves, who may call, and what it has seen."""

    competitions: dict[str, dict[str, bytes | Path]]
    users: dict[str, str] = field(default_factory=lambda: {"tester": "secret-key"})
    rules_not_accepted: set[str] = field(default_factory=set)
    truth: dict[str, tuple[Path, tuple[int, int]]] = field(default_factory=dict)  # slug -> (truth file, image size)
    bundles: dict[str, Path] = field(default_factory=dict)  # slug -> the zip of all its files ("download all")
    cut_after: dict[str, int] = field(default_factory=dict)  # file -> bytes sent before dropping the line
    cuts_left: dict[str, int] = field(default_factory=dict)  # file -> how many more downloads to cut
    server_errors: list[int] = field(default_factory=list)  # statuses (500, 503) to answer the next API calls with
    lost_replies: int = 0  # submissions to accept, then drop the line before the reply reaches the client
    daily_limit: int = 5
    code_competitions: set[str] = field(default_factory=set)  # slugs that take kernels only, never an uploaded CSV
    kernel_inputs: dict[str, Path] = field(default_factory=dict)  # slug -> the competition as a kernel mounts it
    kernel_python: str | None = None  # the interpreter of "Kaggle's image" that runs pushed kernels; None: never run
    kernel_seconds: float = 600.0  # a kernel running longer fails with Kaggle's timeout
    processing_polls: int = 1  # status reads that a new dataset version stays in processing
    datasets: dict[str, dict] = field(default_factory=dict)  # owner/slug -> {"versions": [...]}
    kernels: dict[str, dict] = field(default_factory=dict)  # owner/slug -> {"versions": [...]}
    blobs: dict[str, dict] = field(default_factory=dict)  # token -> {"name", "data"}
    log: list[dict] = field(default_factory=list)
    submissions: list[dict] = field(default_factory=list)
    uploads: dict[str, bytes] = field(default_factory=dict)
    port: int = 0
    _server: ThreadingHTTPServer | None = None

    def start(self) -> "StandIn":
        standin = self

        class Handler(_Handler):
            state = standin

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        # polled every 20 ms, not socketserver's 0.5 s: stop() waits for the next poll, in every test that starts one
        threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True).start()
        return self

    def run_kernel(self, version: dict) -> None:
        """Run a pushed kernel as Kaggle does: its script under /kaggle's folders (each dataset's last processed
        version, its zips unpacked into folders, and the competitions' hidden test sets), in `kernel_python` without
        the network where a namespace allows; its log as Kaggle writes one (a JSON list of stream entries) and the
        files it wrote in /kaggle/working."""
        version["status"] = "RUNNING"
        with tempfile.TemporaryDirectory(prefix="standin-kernel-") as tmp:
            kaggle = Path(tmp) / "kaggle"
            for ref, count in version["datasets"].items():
                ready = [v for v in self.datasets[ref]["versions"][:count] if v["status"] == "READY"]
                folder = kaggle / "input" / ref.split("/", 1)[1]
                folder.mkdir(parents=True)
                for name, data in (ready[-1]["files"] if ready else {}).items():
                    if name.endswith(".zip"):
                        with zipfile.ZipFile(io.BytesIO(data)) as z:
                            z.extractall(folder / name[: -len(".zip")])
                    else:
                        (folder / name).write_bytes(data)
            for slug in version["metadata"].get("competitionDataSources", []):
                shutil.copytree(self.kernel_inputs[slug], kaggle / "input" / slug)
            (kaggle / "working").mkdir(parents=True)
            script = Path(tmp) / "script.py"
            script.write_text(version["text"])
            network = (
                ["unshare", "-n"]
                if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
                else []
            )
            env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "KAGGLE_ROOT": str(kaggle)}
            started = time.monotonic()
            try:
                proc = subprocess.run([*network, self.kernel_python, str(script)], cwd=kaggle / "working", env=env,
                                      capture_output=True, text=True, timeout=self.kernel_seconds)  # fmt: skip
                out, err, code = proc.stdout, proc.stderr, proc.returncode
            except subprocess.TimeoutExpired as expired:
                out, err, code = str(expired.stdout or ""), str(expired.stderr or ""), None
            seconds = time.monotonic() - started
            entries = [
                {"stream_name": "stdout", "time": seconds, "data": out},
                {"stream_name": "stderr", "time": seconds, "data": err},
            ]
            version["log"] = json.dumps([e for e in entries if e["data"]])
            version["outputs"] = {f.name: f.read_bytes() for f in (kaggle / "working").iterdir() if f.is_file()}
            if code is None:
                version["status"], version["failure"] = "ERROR", "Notebook Timeout: the kernel ran past its time limit"
            elif code != 0:
                version["status"], version["failure"] = "ERROR", f"Notebook Threw Exception (exit status {code})"
            else:
                version["status"] = "COMPLETE"

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class _Handler(BaseHTTPRequestHandler):
    state: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: the tests read `state.log` instead
        pass

    # -- helpers
    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"code": status, "message": message})

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return None
        user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
        return user if self.state.users.get(user) == key else None

    def _record(self, method: str, path: str, body: dict | None = None) -> None:
        self.state.log.append(
            {
                "method": method,
                "host": urlsplit(self.path).netloc,
                "path": path,
                "range": self.headers.get("Range"),
                "body": body,
                "authorized": self.headers.get("Authorization") is not None,
            }
        )

    # -- HTTP verbs
    def do_POST(self) -> None:
        url = urlsplit(self.path)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self._record("POST", url.path, body)
        if self.state.server_errors:
            status = self.state.server_errors.pop(0)
            return self._error(status, "Internal server error" if status == 500 else "Service unavailable")
        if not url.path.startswith(API):
            return self._error(404, "Not found")
        if self._user() is None:
            return self._error(401, "Unauthenticated: invalid username or key")
        service, _, method = url.path[len(API) :].partition("/")
        if service != "competitions.CompetitionApiService":
            handler = getattr(self, f"_api_{method}", None)
            return handler(body) if handler is not None else self._error(404, f"Unknown method {service}/{method}")
        comp = body.get("competitionName")
        if method in ("GetSubmission",):
            return self._get_submission(body)
        if comp not in self.state.competitions:
            return self._error(404, f"Competition '{comp}' not found")
        if comp in self.state.rules_not_accepted and method != "ListSubmissions":
            return self._error(403, "You must accept this competition's rules before you'll be able to join it")
        handler = getattr(self, f"_api_{method}", None)
        if handler is None:
            return self._error(404, f"Unknown method {method}")
        handler(comp, body)

    def _api_ListDataFiles(self, comp: str, body: dict) -> None:
        files = []
        for name, src in sorted(self.state.competitions[comp].items()):
            size = len(src) if isinstance(src, bytes) else src.stat().st_size
            files.append({"name": name, "totalBytes": size, "creationDate": "2017-07-14T00:00:00Z"})
        self._json(200, {"files": files, "nextPageToken": ""})

    def _api_DownloadDataFile(self, comp: str, body: dict) -> None:
        name = body.get("fileName")
        if name not in self.state.competitions[comp]:
            return self._error(404, f"File {name} not found")
        self.send_response(302)
        self.send_header("Location", f"http://localhost/files/{comp}/{name}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _api_DownloadDataFiles(self, comp: str, body: dict) -> None:
        if comp not in self.state.bundles:
            return self._error(404, f"Competition {comp} has no bundle")
        self.send_response(302)
        self.send_header("Location", f"http://localhost/files/{comp}/{comp}.zip")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _api_StartSubmissionUpload(self, comp: str, body: dict) -> None:
        token = f"blob-{len(self.state.uploads) + 1}"
        self.state.uploads[token] = b""
        self._json(200, {"token": token, "createUrl": f"http://localhost/upload/{token}"})

    def _api_CreateSubmission(self, comp: str, body: dict) -> None:
        if comp in self.state.code_competitions:
            return self._error(
                400,
                "Submission not allowed: this is a Code Competition. Submissions must be made from a Kaggle Notebook; "
                "it is not possible to upload a submission file directly",
            )
        self._submission(comp, self.state.uploads.get(body.get("blobFileTokens", ""), b""), body)

    def _submission(self, comp: str, data: bytes, body: dict, status: str = "PENDING", error: str = "") -> None:
        """Record a submission (a file, or a kernel's output) and score it, as Kaggle does."""
        today = [s for s in self.state.submissions if s["competition"] == comp]
        if len(today) >= self.state.daily_limit:
            return self._error(
                400,
                "Submission not allowed: Your team has used its daily Submission allowance "
                f"({self.state.daily_limit}) today, please try again tomorrow UTC",
            )
        ref = 1000 + len(self.state.submissions)
        sub = {
            "competition": comp,
            "ref": ref,
            "fileName": "submission.csv.gz",
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "description": body.get("submissionDescription", ""),
            "status": status,
            "publicScore": "",
            "privateScore": "",
            "polls": 0,
            "size": len(data),
        }
        if error:
            sub["errorDescription"] = error
        try:
            if comp in self.state.truth and not error:
                path, shape = self.state.truth[comp]
                sub["publicScore"] = sub["privateScore"] = f"{score(comp, data, path, shape):.5f}"
        except Exception as err:  # Kaggle reports a bad file as an errored submission
            sub["status"], sub["errorDescription"] = "ERROR", str(err)
        self.state.submissions.append(sub)
        if self.state.lost_replies > 0:  # accepted and counted, but the client never hears of it
            self.state.lost_replies -= 1
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self._json(200, {"message": "Successfully submitted to the competition", "ref": ref})

    def _api_CreateCodeSubmission(self, comp: str, body: dict) -> None:
        ref = f"{body.get('kernelOwner', '')}/{body.get('kernelSlug', '')}"
        versions = self.state.kernels.get(ref, {}).get("versions", [])
        number = int(body.get("kernelVersion") or len(versions))
        if not 1 <= number <= len(versions):
            return self._error(404, f"Kernel {ref} version {number} not found")
        version = versions[number - 1]
        if version["metadata"].get("enableInternet", True):
            return self._error(
                400, "Submission not allowed: notebooks submitted to this competition must have internet disabled"
            )
        if version["status"] != "COMPLETE":
            return self._error(400, f"Submission not allowed: kernel version {number} has not completed successfully")
        output = version["outputs"].get(body.get("fileName") or "submission.csv")
        if output is None:
            return self._submission(comp, b"", body, status="ERROR", error="Submission CSV Not Found")
        self._submission(comp, output, body)

    # -- datasets and blobs
    def _api_StartBlobUpload(self, body: dict) -> None:
        token = f"blob-{len(self.state.blobs) + 1}"
        self.state.blobs[token] = {"name": body.get("name", ""), "data": b""}
        self._json(200, {"token": token, "createUrl": f"http://localhost/upload/{token}"})

    def _dataset(self, owner: str, slug: str) -> tuple[str, dict | None]:
        ref = f"{owner}/{slug}"
        return ref, self.state.datasets.get(ref)

    def _api_GetDatasetStatus(self, body: dict) -> None:
        ref, dataset = self._dataset(body.get("ownerSlug", ""), body.get("datasetSlug", ""))
        if dataset is None or (ref.split("/")[0] != self._user() and dataset.get("private", True)):
            return self._error(404, f"Dataset {ref} not found")
        last = dataset["versions"][-1]
        last["polls"] += 1
        if last["status"] == "BLOBS_RECEIVED" and last["polls"] > self.state.processing_polls:
            last["status"] = "READY"
        self._json(200, {"status": last["status"]})

    def _new_version(self, dataset: dict, files: list[dict], notes: str) -> None:
        blobs = {self.state.blobs[f["token"]]["name"]: self.state.blobs[f["token"]]["data"] for f in files}
        dataset["versions"].append({"files": blobs, "status": "BLOBS_RECEIVED", "polls": 0, "notes": notes})

    def _api_CreateDataset(self, body: dict) -> None:
        owner, slug = body.get("ownerSlug", ""), body.get("slug", "")
        ref = f"{owner}/{slug}"
        if owner != self._user():
            return self._error(403, f"You cannot create a dataset for {owner}")
        if ref in self.state.datasets:
            return self._json(200, {"ref": "", "url": "", "status": "error", "error": f"The slug {slug} is in use"})
        self.state.datasets[ref] = {"versions": [], "private": body.get("isPrivate", True)}
        self._new_version(self.state.datasets[ref], body.get("files", []), "")
        self._json(200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok", "error": ""})

    def _api_CreateDatasetVersion(self, body: dict) -> None:
        ref, dataset = self._dataset(body.get("ownerSlug", ""), body.get("datasetSlug", ""))
        if dataset is None:
            return self._error(404, f"Dataset {ref} not found")
        if ref.split("/")[0] != self._user():
            return self._error(403, f"Permission denied: you cannot edit the dataset {ref}")
        if dataset["versions"][-1]["status"] != "READY":
            return self._error(403, f"The previous version of {ref} is still being processed; try again later")
        inner = body.get("body", {})
        self._new_version(dataset, inner.get("files", []), inner.get("versionNotes", ""))
        self._json(200, {"ref": ref, "url": f"https://www.kaggle.com/datasets/{ref}", "status": "ok", "error": ""})

    # -- kernels
    def _api_SaveKernel(self, body: dict) -> None:
        ref = body.get("slug", "")
        if ref.split("/")[0] != self._user():
            return self._error(403, f"You cannot push the kernel {ref}")
        missing = [d for d in body.get("datasetDataSources", []) if d not in self.state.datasets]
        unknown = [c for c in body.get("competitionDataSources", []) if c not in self.state.competitions]
        kernel = self.state.kernels.setdefault(ref, {"versions": []})
        mounted = {
            d: len(self.state.datasets[d]["versions"]) for d in body.get("datasetDataSources", []) if d not in missing
        }
        version = {"text": body.get("text", ""), "metadata": body, "status": "QUEUED", "log": "", "outputs": {},
                   "failure": "", "datasets": mounted}  # fmt: skip
        kernel["versions"].append(version)
        number = len(kernel["versions"])
        if self.state.kernel_python and not missing and not unknown:
            threading.Thread(target=self.state.run_kernel, args=(version,), daemon=True).start()
        self._json(200, {"ref": ref, "url": f"https://www.kaggle.com/code/{ref}", "versionNumber": number, "error": "",
                         "invalidDatasetSources": missing, "invalidCompetitionSources": unknown})  # fmt: skip

    def _kernel_version(self, body: dict) -> dict | None:
        versions = self.state.kernels.get(f"{body.get('userName', '')}/{body.get('kernelSlug', '')}", {})
        return (versions.get("versions") or [None])[-1]

    def _api_GetKernelSessionStatus(self, body: dict) -> None:
        version = self._kernel_version(body)
        if version is None:
            return self._error(404, "Kernel not found")
        self._json(200, {"status": version["status"], "failureMessage": version["failure"]})

    def _api_ListKernelSessionOutput(self, body: dict) -> None:
        version = self._kernel_version(body)
        if version is None:
            return self._error(404, "Kernel not found")
        ref = f"{body.get('userName')}/{body.get('kernelSlug')}"
        files = [{"fileName": n, "url": f"http://localhost/outputs/{ref}/{n}"} for n in sorted(version["outputs"])]
        self._json(200, {"files": files, "log": version["log"], "nextPageToken": ""})

    def _api_GetSubmissionLimits(self, comp: str, body: dict) -> None:
        self._json(200, {})

    def _public(self, sub: dict) -> dict:
        sub["polls"] += 1
        if sub["status"] == "PENDING" and sub["polls"] > 1:
            sub["status"] = "COMPLETE"
        keys = ("ref", "fileName", "date", "description", "status", "publicScore", "privateScore")
        return {k: sub[k] for k in keys}

    def _api_ListSubmissions(self, comp: str, body: dict) -> None:
        subs = [self._public(s) for s in reversed(self.state.submissions) if s["competition"] == comp]
        self._json(200, {"submissions": subs, "nextPageToken": ""})

    def _get_submission(self, body: dict) -> None:
        for s in self.state.submissions:
            if s["ref"] == int(body.get("ref", -1)):
                return self._json(200, self._public(s))
        self._error(404, "Submission not found")

    def do_PUT(self) -> None:
        url = urlsplit(self.path)
        self._record("PUT", url.path)
        token = url.path.rsplit("/", 1)[-1]
        if not url.path.startswith("/upload/") or token not in {**self.state.uploads, **self.state.blobs}:
            return self._error(404, "Unknown upload")
        data = self._body()
        if token in self.state.blobs:
            self.state.blobs[token]["data"] = data
        else:
            self.state.uploads[token] = data
        self._json(200, {})

    def _body(self) -> bytes:
        """A request's body, sent with a length or chunked (the client streams large uploads)."""
        if "chunked" not in self.headers.get("Transfer-Encoding", ""):
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))
        chunks = []
        while True:
            size = int(self.rfile.readline().strip().split(b";")[0], 16)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
            if size == 0:
                return b"".join(chunks)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        self._record("GET", url.path)
        if url.path.startswith("/outputs/"):  # a kernel's output file: /outputs/<owner>/<slug>/<name>
            _, _, owner, slug, name = url.path.split("/", 4)
            version = self._kernel_version({"userName": owner, "kernelSlug": slug}) or {"outputs": {}}
            data = version["outputs"].get(name)
            if data is None:
                return self._error(404, "Not found")
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        parts = url.path.split("/", 3)
        files = dict(self.state.competitions.get(parts[2], {})) if len(parts) == 4 else {}
        if len(parts) == 4 and parts[2] in self.state.bundles:
            files[f"{parts[2]}.zip"] = self.state.bundles[parts[2]]
        if len(parts) != 4 or parts[1] != "files" or parts[3] not in files:
            return self._error(404, "Not found")
        name = parts[3]
        src = files[name]
        data = src if isinstance(src, bytes) else src.read_bytes()
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Last-Modified", LAST_MODIFIED)
        self.send_header("ETag", f'"{name}-{len(data)}"')
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = self.state.cut_after.get(name)
        if cut is not None and self.state.cuts_left.get(name, 0) > 0:
            self.state.cuts_left[name] -= 1
            self.wfile.write(body[: min(cut, len(body) - 1)])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="a competition folder (e.g. data/raw)")
    parser.add_argument("--truth", type=Path, help="the test labels (data/demo-truth/...), to score submissions")
    parser.add_argument("--competition", default="carvana-image-masking-challenge")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--user", default="tester")
    parser.add_argument("--key", default="secret-key")
    args = parser.parse_args()
    truth = {}
    if args.truth:
        from pipeline.competitions import open_competition

        comp = open_competition(args.data, args.competition)
        names = comp.test_names
        with Image.open(io.BytesIO(comp.read_test(names[0]))) as img:
            truth[args.competition] = (args.truth, (img.height, img.width))
    bundle = args.data / f"{args.competition}.zip"  # a competition served as one zip (Severstal)
    files = bundle_files(bundle) if bundle.is_file() else kaggle_files(args.data)
    server = StandIn(
        {args.competition: files},
        users={args.user: args.key},
        truth=truth,
        bundles={args.competition: bundle} if bundle.is_file() else {},
        port=args.port,
    ).start()
    print(
        f"Kaggle stand-in for {args.competition} on {server.proxy}. Point the client at it with:\n"
        f"  export KAGGLE_API_ENVIRONMENT=LOCALHOST HTTP_PROXY={server.proxy} NO_PROXY= "
        f"KAGGLE_USERNAME={args.user} KAGGLE_KEY=..."
    )
    threading.Event().wait()


if __name__ == "__main__":
    main()
