"""Bad project files opened in the window: one error dialog with the schema's message, nothing loaded."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(("body", "expected"), [
    ('[model]\nname = "resnet18"\n[train]\nlr = nan\n', "[train] lr must be a finite number, not nan"),
    ('[model]\nnum_classes = "ten"\n', "[model] num_classes must be an integer, not 'ten'"),
    ('[train]\ngrad_clip = -1.0\n', "[train] grad_clip must be > 0.0, not -1.0"),
    ('[train]\nbatchsize = 8\n', "unknown key(s) batchsize (did you mean 'batch_size'?)"),
    ('[model]\ninput_size = [4, 64, 64]\n', "has 4 channel(s) but resnet18 takes 3"),
])
def test_bad_project_file_opens_to_one_error_dialog(window, wait_idle, dialogs, tmp_path, body, expected):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    before = path.read_bytes()
    window.open_path(str(path))
    wait_idle(window)
    errors = dialogs.messages("critical")
    assert len(errors) == 1 and expected in errors[0], errors
    assert "Traceback" not in errors[0]
    assert window.session.workspace is None and not window.is_busy()
    assert path.read_bytes() == before
