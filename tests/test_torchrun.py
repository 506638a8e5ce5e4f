"""The same project trains under torchrun with two processes (CPU, gloo): the server path."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tests.test_cli_train import write_project

pytestmark = pytest.mark.slow  # every test here trains, exports or starts a process


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_processes_train_and_only_rank0_writes(tmp_path):
    project = write_project(tmp_path, epochs=2)
    run = tmp_path / "run"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
         "-m", "workbench.cli", "train", str(project), "--out", str(run)],
        capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "× 2 processes" in result.stdout
    # augment = false: the frozen trunk is cached; each rank caches its own share (the same images every epoch)
    assert "caching the frozen trunk" in result.stdout
    assert "cached the trunk's output for 9 training images (this process's share of 18)" in result.stdout
    assert result.stdout.count("epoch 2/2: train loss") == 1  # rank 1 is quiet
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # 18 training images split over 2 ranks = 9 each, batch 6 → 2 steps per epoch per rank.
    assert [line["global_step"] for line in lines if line["type"] == "step"] == [1, 2, 3, 4]
    assert [line["epoch"] for line in lines if line["type"] == "epoch"] == [0, 1]
    # Frozen layers are bit-identical to a fresh model made with the same seed; trained ones moved.
    import timm

    torch.manual_seed(0)
    fresh = timm.create_model("resnet18", pretrained=False, num_classes=3).state_dict()
    trained = load_file(str(run / "model.safetensors"))
    for key, value in fresh.items():
        if key.split(".")[0] in ("conv1", "bn1", "layer1", "layer2"):
            assert torch.equal(value, trained[key]), key
    assert not torch.equal(fresh["fc.weight"], trained["fc.weight"])
