"""Freezing stays right under DDP (gloo, 2 CPU processes): what Lightning's BackboneFinetuning and others get wrong.

Each launch runs ``tests/ddp_probe.py`` under ``torchrun``: every rank records its own weights,
BatchNorm statistics and trainable set, so what each rank holds is checked, not only rank 0's file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.test_cli_train import write_project

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(project: Path, run: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
            "-m", "tests.ddp_probe", str(project), str(run), str(out), *extra]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}


def _probe(project: Path, run: Path, out: Path, *extra: str) -> tuple[dict, dict, str]:
    out.mkdir(exist_ok=True)
    result = subprocess.run(_command(project, run, out, *extra), capture_output=True, text=True, env=_env(),
                            cwd=ROOT, timeout=600)
    text = result.stdout + result.stderr
    assert result.returncode == 0, text[-4000:]
    return torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt"), text


def _messages(rank: dict) -> list[str]:
    return [message for _, _, message in rank["reports"]]


def _prefix(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def test_frozen_weights_and_batchnorm_statistics_stay_bit_identical_on_every_rank(tmp_path):
    # layer3 frozen between trainable layers: gradients pass through it, DDP must not expect grads for it
    project = write_project(tmp_path, extra="")
    text = project.read_text().replace('frozen = ["conv1", "bn1", "layer1", "layer2"]', 'frozen = ["bn1", "layer3"]')
    project.write_text(text.replace("augment = false", "augment = true"))
    r0, r1, log = _probe(project, tmp_path / "run", tmp_path / "out")
    assert "were not used" not in log and "unused" not in log
    frozen = ("bn1", "layer3")
    frozen_keys = [k for k in r0["start"] if _prefix(k, frozen)]
    assert any(k.endswith("running_mean") for k in frozen_keys) and any(k.endswith("num_batches_tracked")
                                                                        for k in frozen_keys)
    for key in r0["start"]:
        assert torch.equal(r0["start"][key], r1["start"][key]), key  # one starting model on every rank
        if _prefix(key, frozen):
            assert torch.equal(r0["end"][key], r0["start"][key]), key
            assert torch.equal(r1["end"][key], r1["start"][key]), key
        elif "running" not in key and "num_batches" not in key:
            assert torch.equal(r0["end"][key], r1["end"][key]), key  # DDP kept the trained weights in step
    assert not torch.equal(r0["end"]["layer1.0.conv1.weight"], r0["start"]["layer1.0.conv1.weight"])
    assert r0["frozen_grads"] == [] and r1["frozen_grads"] == []


def test_gradual_unfreezing_after_kill_9_and_resume_keeps_the_same_trainable_set_on_every_rank(tmp_path):
    project = write_project(tmp_path, epochs=4, extra='''
        [[groups]]
        name = "layer3"
        modules = ["layer3"]

        [[groups]]
        name = "layer4"
        modules = ["layer4"]

        [[groups]]
        name = "head"
        modules = ["fc"]

        [[unfreeze]]
        epoch = 1
        groups = ["layer4"]

        [[unfreeze]]
        epoch = 3
        groups = ["layer3"]
    '''.replace("\n        ", "\n"))
    project.write_text(project.read_text().replace('frozen = ["conv1", "bn1", "layer1", "layer2"]',
                                                   'frozen = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]'))
    run, out = tmp_path / "run", tmp_path / "killed"
    out.mkdir()
    # Every rank waits at epoch 2, batch 2 (after the epoch-1 checkpoint, which holds layer4 unfrozen); kill -9 then.
    job = subprocess.Popen(_command(project, run, out), env=_env(PROBE_HANG_AT="2:2", PROBE_CHECKPOINT_EVERY_EPOCH="1"),
                           cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not ((out / "hanging0").exists() and (out / "hanging1").exists()):
            assert job.poll() is None, job.stdout.read().decode()[-4000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:  # torchrun starts each rank in a session of its own: the job is torchrun and its ranks
        ranks = [int(f.read_text() or 0) for f in out.glob("hanging*")]
        for pid in ranks:
            if pid:
                os.kill(pid, signal.SIGKILL)
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert not (out / "rank0.pt").exists()

    r0, r1, log = _probe(project, run, tmp_path / "resumed", "--resume")
    assert r0["reports"][0][1] == "resumed" and "× 2 processes" in r0["reports"][0][2]
    for rank in (r0, r1):
        trainable = {epoch: {n.split(".")[0] for n in names} for epoch, names in rank["trainable"].items()}
        assert trainable == {2: {"fc", "layer4"}, 3: {"fc", "layer4", "layer3"}}  # not re-frozen, not unfrozen twice
        assert [m for m in _messages(rank) if "unfroze" in m] == [m for m in _messages(r0) if "unfroze" in m]
    assert r0["trainable"] == r1["trainable"]
    assert len([m for m in _messages(r0) if "unfroze" in m]) == 1  # only layer3's step is left
    import timm

    torch.manual_seed(0)
    fresh = timm.create_model("resnet18", pretrained=False, num_classes=3).state_dict()
    for key, value in fresh.items():
        assert torch.equal(r0["end"][key], r1["end"][key]) or "running" in key or "num_batches" in key, key
        if _prefix(key, ("conv1", "bn1", "layer1", "layer2")):
            assert torch.equal(r0["end"][key], value) and torch.equal(r1["end"][key], value), key
    assert not torch.equal(r0["end"]["layer3.0.conv1.weight"], fresh["layer3.0.conv1.weight"])


def test_lora_under_ddp_keeps_base_weights_bit_identical_and_adapters_in_step(tmp_path):
    pytest.importorskip("peft")
    project = write_project(tmp_path, extra='''
        [adapters]
        modules = ["layer4.1.conv2"]
        rank = 2
    '''.replace("\n        ", "\n"))
    project.write_text(project.read_text().replace('frozen = ["conv1", "bn1", "layer1", "layer2"]',
                                                   'frozen = ["conv1", "bn1", "layer1", "layer2", "layer3", "layer4"]'))
    r0, r1, log = _probe(project, tmp_path / "run", tmp_path / "out")
    adapters = [k for k in r0["end"] if "lora_" in k]
    bases = [k for k in r0["end"] if "base_layer" in k]
    assert adapters and bases
    for key in adapters:
        assert torch.equal(r0["end"][key], r1["end"][key]), key
    assert any(not torch.equal(r0["end"][k], r0["start"][k]) for k in adapters)  # the adapters trained
    for key in bases:
        assert torch.equal(r0["end"][key], r0["start"][key]) and torch.equal(r1["end"][key], r1["start"][key]), key
        assert torch.equal(r0["end"][key], r1["end"][key]), key
    # The frozen prefix before the adapter is cached: each rank runs the trunk over its own share only
    # (18 training images, 2 ranks), and later epochs train from the cache.
    for rank in (r0, r1):
        assert any("cached the trunk's output for 9 training images" in m for m in _messages(rank)), _messages(rank)
