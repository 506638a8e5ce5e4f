"""The Results tab's accuracy (float32, as saved and exported) and the run's log (its autocast) are told apart."""

from __future__ import annotations

from workbench.evaluate import Evaluation, run_accuracy_note


def evaluation() -> Evaluation:
    return Evaluation(classes=["a", "b"], matrix=[[5, 1], [0, 4]], mistakes=[])  # 9 of 10 correct


def test_no_note_when_the_run_logged_the_same_count():
    assert evaluation().accuracy == 0.9
    assert run_accuracy_note(evaluation(), 0.9, "bf16", "cpu") is None
    assert run_accuracy_note(evaluation(), None, "bf16", "cpu") is None


def test_a_bf16_run_is_said_to_differ_because_of_its_precision():
    note = run_accuracy_note(evaluation(), 0.8, "bf16", "cpu")
    assert note is not None and note.startswith("The run's log says 80.0% (8 of 10)")
    assert "bfloat16 mixed precision" in note and 'amp = "off" makes them equal' in note


def test_a_float32_run_that_differs_is_not_blamed_on_precision():
    note = run_accuracy_note(evaluation(), 0.8, "off", "cpu")
    assert note is not None and "mixed precision" not in note and "last validation" in note
