"""A comparison's strategy runs (runs/compare-…/NAME) are runs of the project: listed, named with their comparison."""

from __future__ import annotations

from workbench.run_catalog import list_runs, runs_folder


def _run(folder) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text('{"type": "epoch", "epoch": 0, "val_accuracy": 0.5}\n')


def test_runs_of_a_comparison_are_listed_with_the_project(tmp_path):
    project = tmp_path / "project.toml"
    project.write_text("")
    _run(tmp_path / "runs" / "20260101-000000")
    _run(tmp_path / "runs" / "compare-20260102-000000" / "probe")
    _run(tmp_path / "runs" / "compare-20260102-000000" / "freeze_2")
    (tmp_path / "runs" / "compare-20260102-000000" / "compare.csv").write_text("")  # not a run
    (tmp_path / "runs" / "notes").mkdir()  # neither a run nor a comparison
    names = [r.name for r in list_runs(project)]
    assert names == ["20260101-000000", "compare-20260102-000000/freeze_2", "compare-20260102-000000/probe"]
    assert runs_folder(tmp_path / "runs" / "compare-20260102-000000" / "probe") == [
        tmp_path / "runs" / "compare-20260102-000000" / "probe"]
