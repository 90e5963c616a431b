"""Other experiments that a run builds on, found by name in git and read out of DVC's cache: the members of a
blend (`blend.members`) and the source of pseudo-labels (`train.pseudo_labels.source`).

A member is an experiment name (`dvc exp show` lists them) or any git revision of this project. The inputs stage
resolves each to its commit and the hashes of its outs in that commit's dvc.lock (data/inputs/*.json), so that
rerunning an experiment under the same name reruns what uses it; the stages then fetch those outs and its
predictor.json from the cache into checkpoints/ (nothing is retrained). Queued and temporary experiments look in
the main project, which DVC names in `DVC_ROOT`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipeline import paths
from pipeline.errors import UserError

OUTS = (str(paths.MODELS), str(paths.OOF))  # what a blend's member needs from its experiment, cached by DVC
PREDICTIONS = (str(paths.PREDICTIONS),)  # what a source of pseudo-labels needs
RECIPE = str(paths.RECIPE)  # its rules, TTA and precision (in git: a `cache: false` out)


class MemberError(UserError):
    """A blend member that cannot be used."""


def project_root() -> Path:
    """The main project: where experiments' refs and the DVC cache live, even for a queued run."""
    return Path(os.environ.get("DVC_ROOT") or ".").resolve()


def _commit(scm, name: str) -> str:
    from dvc.repo.experiments.exceptions import InvalidExpRefError
    from dvc.repo.experiments.utils import resolve_name
    from scmrepo.exceptions import RevError

    try:
        found = resolve_name(scm, name).get(name)
    except InvalidExpRefError:  # a git ref such as refs/heads/main or refs/tags/v1: a revision, below
        found = None
    sha = scm.get_ref(str(found)) if found is not None else None
    if sha:
        return sha
    try:
        return scm.resolve_rev(name)
    except RevError:
        raise MemberError(
            f"blend.members: no experiment or git revision is named {name!r} (`dvc exp show` lists the experiments)"
        ) from None


def _locked_outs(scm, name: str, sha: str, needed: tuple[str, ...]) -> dict[str, str]:
    """{out path: md5} of the member's stages, from dvc.lock at its commit."""
    from ruamel.yaml import YAML

    try:
        with scm.get_fs(sha).open("dvc.lock") as f:
            lock = YAML(typ="safe", pure=True).load(f) or {}
    except FileNotFoundError:
        lock = {}
    outs = {o["path"]: o.get("md5", "") for stage in lock.get("stages", {}).values() for o in stage.get("outs", [])}
    lacking = [out for out in needed if not outs.get(out)]
    if lacking and needed == OUTS:
        raise MemberError(
            f"blend.members: {name} ({sha[:7]}) has no {' or '.join(lacking)} in its dvc.lock; a member needs the "
            f"out-of-fold maps that evaluate writes: run it again with this version of the pipeline and "
            f"-S split.fold=all"
        )
    if lacking:
        raise MemberError(
            f"train.pseudo_labels.source: {name} ({sha[:7]}) has no {' or '.join(lacking)} in its dvc.lock: run "
            f"its predict stage (`dvc exp run` the whole pipeline) first"
        )
    return {out: outs[out] for out in needed}


def resolve(names: list[str], root: Path | None = None, needed: tuple[str, ...] = OUTS) -> list[dict]:
    """[{name, rev, <out>: md5 ...}] of each member, in order, for the outs `needed`: what a run builds on."""
    if not names:
        return []
    from scmrepo.git import Git

    scm = Git(str(root or project_root()))
    try:
        found, named = [], {}
        for name in names:
            sha = _commit(scm, name)
            if sha in named:  # one model blended with itself, under two names: twice its weight, by accident
                raise MemberError(
                    f"blend.members: {named[sha]} and {name} are the same commit ({sha[:7]}); name each member once"
                )
            named[sha] = name
            found.append({"name": name, "rev": sha, **_locked_outs(scm, name, sha, needed)})
        return found
    finally:
        scm.close()


def fetch(member: dict, work: Path, root: Path | None = None) -> Path:
    """The member's outs (those `resolve` found) and predictor.json under work/<rev>, copied out of DVC's cache
    once."""
    dest = work / member["rev"]
    stamp = dest / "member.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == member:
        return dest
    from dvc.api import DVCFileSystem

    shutil.rmtree(dest, ignore_errors=True)
    part = work / f"{member['rev']}.part"
    shutil.rmtree(part, ignore_errors=True)
    fs = DVCFileSystem(str(root or project_root()), rev=member["rev"])
    try:
        outs = [key for key in member if "/" in key or key == "models"]
        for path in (*outs, RECIPE):
            (part / path).parent.mkdir(parents=True, exist_ok=True)
            fs.get(path, str(part / path), recursive=path in outs)
    except FileNotFoundError as err:
        raise MemberError(
            f"{member['name']} ({member['rev'][:7]}): {err.filename or err} is not in the DVC cache "
            f"(`dvc pull` it, or run the experiment again)"
        ) from None
    finally:
        fs.close()
    (part / "member.json").write_text(json.dumps(member))
    part.rename(dest)
    return dest
