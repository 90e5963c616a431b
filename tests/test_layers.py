"""The library's layers follow its imports: every import goes down a layer or stays inside its package, and no
module imports itself back through others. dvc.yaml's deps are the import closures, so an import that runs
upward or a cycle makes a stage depend on code it does not need, and an edit there reruns it (GPU-hours)."""

from __future__ import annotations

from pipeline import provenance
from tests.conftest import ROOT

LAYERS = [  # bottom first; a package may import only from the layers below it, and from itself
    ["pipeline.errors", "pipeline.paths"],  # the bottom: what everything may import
    [
        "pipeline.params",
        "pipeline.provenance",
        "pipeline.runtime",
        "pipeline.images",
        "pipeline.members",
        "pipeline.kaggle_api",
    ],  # fmt: skip
    ["pipeline.masks", "pipeline.inputs"],  # masks: probabilities -> masks -> run-length text, for 3 stages
    ["pipeline.competitions"],  # each competition's files, labels, submission and metric: every stage reads them
    ["pipeline.download", "pipeline.data", "pipeline.models"],
    ["pipeline.prediction"],
    ["pipeline.evaluation", "pipeline.training", "pipeline.submission", "pipeline.budget"],
    ["pipeline.kernels"],  # a kernel's bundle and what runs in it: predict and encode's code, the budget's estimates
    ["pipeline.planning"],  # the plan: a fingerprint of the data, the rules, the epoch timed by the budget
    ["pipeline.cli"],
]


def _unit(module: str) -> tuple[int, str]:
    for level, units in enumerate(LAYERS):
        for unit in units:
            if module == unit or module.startswith(unit + "."):
                return level, unit
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py: place it")


def _module(path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """{module: the project modules it imports} for every module of the library (pipeline/__init__ aside)."""
    graph = {}
    for path in sorted((ROOT / "pipeline").rglob("*.py")):
        module = _module(path)
        if module == "pipeline":
            continue
        found = set()
        for name in provenance._imported(path):
            target = provenance._file(name) or provenance._file(name + ".__init__")
            if target is not None and _module(target) not in ("pipeline", module):
                found.add(_module(target))
        graph[module] = found
    return graph


def upward(graph: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in graph.items():
        level, unit = _unit(module)
        for target in targets:
            t_level, t_unit = _unit(target)
            if t_unit != unit and t_level >= level:
                bad.append(f"{module} -> {target}")
    return sorted(bad)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, once, as the path of modules around it."""
    found, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycle = path[path.index(nxt) :] + [nxt]
                if sorted(cycle[:-1]) not in [sorted(c[:-1]) for c in found]:
                    found.append(cycle)
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_runs_up_a_layer_and_none_goes_round():
    graph = imports()
    assert upward(graph) == []
    assert cycles(graph) == []


def test_the_checker_finds_an_upward_import_and_a_cycle():
    graph = {"pipeline.masks.rle": {"pipeline.prediction.shards"}, "pipeline.prediction.shards": {"pipeline.masks.rle"}}
    assert upward(graph) == ["pipeline.masks.rle -> pipeline.prediction.shards"]
    assert cycles(graph) == [["pipeline.masks.rle", "pipeline.prediction.shards", "pipeline.masks.rle"]]


def test_training_and_evaluation_never_run_the_onnx_exporter():
    def closure(stage):
        return {str(p.relative_to(ROOT)) for p in provenance.closure(ROOT / "stages" / f"{stage}.py")}

    for stage in ("train", "evaluate"):
        assert "pipeline/prediction/onnx_export.py" not in closure(stage), stage
    assert "pipeline/prediction/onnx_export.py" in closure("predict")  # predict.backend onnxruntime exports


def test_an_augmentation_or_evaluate_edit_neither_repredicts_nor_retrains():
    def closure(entry):
        return {str(p.relative_to(ROOT)) for p in provenance.closure(ROOT / entry)}

    for entry in ("stages/predict.py", "pipeline/prediction/predict.py"):  # the stage, and its shards' fingerprint
        assert not {"pipeline/data/augment.py", "pipeline/data/datasets.py"} & closure(entry), entry
    assert "pipeline/params.py" not in closure("pipeline/prediction/predict.py")
    assert "pipeline/evaluation/evaluate.py" not in closure("stages/train.py")
    assert "pipeline/data/augment.py" in closure("stages/train.py")  # the check can fail
