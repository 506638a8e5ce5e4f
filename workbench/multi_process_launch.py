"""A run over several processes (``torchrun``), launched in the background and followed like a one-process run.

``MultiProcessRun`` looks like a ``Trainer`` to its caller (the window's worker thread): ``run()``
yields rank 0's reports as they come, ``request_pause/resume/stop`` reach every rank (they agree on
the batch), and a rank that dies ends ``run()`` with one ``TrainingError`` naming the rank and
what ended it, after the other ranks were stopped; the run folder keeps its last checkpoint.
The processes talk to it through a scratch folder (``workbench.training.process_rank``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workbench.errors import TrainingError, WorkbenchError
from workbench.training import process_rank

if TYPE_CHECKING:
    from workbench.workspace import TrainedModel, Workspace

MIN_PROCESSES = 2  # one process is the ordinary run


@dataclass(frozen=True)
class ProcessChoice:
    """Where the processes run: one per ticked CUDA device (NCCL), or ``nproc`` CPU processes (gloo)."""

    gpus: tuple[int, ...] = ()
    nproc: int = 0  # 0: one per ticked GPU

    @property
    def processes(self) -> int:
        return self.nproc or len(self.gpus)

    @property
    def device(self) -> str:
        """[train] device for every process: each takes ``cuda:<local rank>`` of the devices it sees."""
        return "cuda" if self.gpus else "cpu"

    def describe(self) -> str:
        if self.gpus:
            return f"{self.processes} processes on {', '.join(f'cuda:{i}' for i in self.gpus)} (NCCL)"
        return f"CPU × {self.processes} processes (gloo)"


def cpu_process_limit() -> int:
    """The most CPU processes worth starting: one per core (more only wait for each other)."""
    return max(MIN_PROCESSES, os.cpu_count() or 1)


def visible_gpus() -> list[tuple[int, str]]:
    """(index, description) of every CUDA device this process sees."""
    from workbench.training.devices import available_devices

    return [(int(d.split(":")[1]), text) for d, text in available_devices() if d.startswith("cuda:")]


def check_choice(choice: ProcessChoice, gpu_count: int | None = None, cpu_count: int | None = None) -> None:
    """One clear ``WorkbenchError`` for a choice that cannot run here (counts default to this machine's)."""
    if choice.gpus:
        count = len(visible_gpus()) if gpu_count is None else gpu_count
        seen = ", ".join(f"cuda:{i}" for i in range(count)) if count else "none"
        for index in choice.gpus:
            if not 0 <= index < count:
                raise WorkbenchError(f"device cuda:{index} does not exist on this machine (CUDA devices: {seen})")
        if len(set(choice.gpus)) != len(choice.gpus):
            raise WorkbenchError(f"a device is chosen twice ({', '.join(f'cuda:{i}' for i in choice.gpus)}): "
                                 "each process needs a GPU of its own")
        if choice.nproc and choice.nproc != len(choice.gpus):
            raise WorkbenchError(f"{choice.nproc} processes on {len(choice.gpus)} GPU(s): DDP runs one process per "
                                 f"GPU; tick {choice.nproc} GPUs or start {len(choice.gpus)} processes")
    else:
        cores = cpu_process_limit() if cpu_count is None else max(MIN_PROCESSES, cpu_count)
        if choice.nproc > cores:
            raise WorkbenchError(f"{choice.nproc} CPU processes on a machine with {cores} cores: each process needs "
                                 f"a core of its own; start at most {cores}")
    if choice.processes < MIN_PROCESSES:
        raise WorkbenchError(f"a multi-process run needs at least {MIN_PROCESSES} processes "
                             f"({choice.processes} chosen); one process is the ordinary Start")


class MultiProcessRun:
    """Train ``workspace``'s plan and weights over ``choice``'s processes into ``run_dir``."""

    POLL_S = 0.1

    def __init__(self, workspace: Workspace, run_dir: Path, choice: ProcessChoice, resume: bool = False) -> None:
        check_choice(choice)
        self.ws, self.run_dir, self.choice, self.resume = workspace, Path(run_dir), choice, resume
        self.scratch = Path(tempfile.mkdtemp(prefix="workbench-ddp-"))
        self._control("run")
        self._job: subprocess.Popen[bytes] | None = None
        self._stopping = False
        self._ended = ""  # the last state rank 0 reported: finished, stopped, …
        self._trained: TrainedModel | None = None
        self.pids: dict[int, int] = {}  # rank -> process id, once the job ended

    # --- requests (any thread) ---------------------------------------------------------
    def request_stop(self) -> None:
        self._stopping = True
        self._control("stop")

    def request_pause(self) -> None:
        if not self._stopping:
            self._control("pause")

    def request_resume(self) -> None:
        if not self._stopping:
            self._control("run")

    @property
    def stop_requested(self) -> bool:
        return self._stopping

    @property
    def trained(self) -> TrainedModel | None:
        """The run's weights as rank 0 wrote them (after a finish or a stop), for the window to adopt."""
        return self._trained

    # --- the run -----------------------------------------------------------------------
    def run(self) -> Iterator[Any]:
        """Start ``torchrun``; yield rank 0's reports until every process has ended."""
        project = self._write_inputs()
        log = open(self.scratch / "torchrun.log", "wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.choice.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, self.choice.gpus))
        else:
            env["CUDA_VISIBLE_DEVICES"] = ""  # gloo on CPU, even on a machine with GPUs
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.choice.processes)))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", str(self.choice.processes), "-m", process_rank.__name__,
                   str(project), str(self.run_dir), str(self.scratch), "--device", self.choice.device]
        if self.resume:
            command.append("--resume")
        # A session of its own: the whole job (torchrun and its ranks) can be ended as one.
        self._job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        try:
            yield from self._follow(self._job)
        finally:
            self._end_job()
            log.close()
        failure = self._failure(self._job.returncode)
        shutil.rmtree(self.scratch, ignore_errors=True)
        if failure:
            raise TrainingError(failure)
        from workbench.run_loading import load_run

        self._trained = load_run(self.run_dir)  # here, in the caller's worker thread: it builds a model

    def _follow(self, job: subprocess.Popen[bytes]) -> Iterator[Any]:
        reports = self.scratch / process_rank.REPORTS
        offset = 0
        while True:
            ended = job.poll() is not None
            if reports.exists():
                with open(reports, "rb") as f:
                    f.seek(offset)
                    data = f.read()
                complete = data[:data.rfind(b"\n") + 1]
                offset += len(complete)
                for line in complete.splitlines():
                    report = report_from_line(line.decode("utf-8"))
                    if report is not None:
                        self._ended = getattr(report, "kind", self._ended)
                        yield report
            if ended:
                return
            time.sleep(self.POLL_S)

    def _write_inputs(self) -> Path:
        """The recipe (absolute paths, this choice's device) and, for a new run, the workspace's weights."""
        import torch

        from workbench.project import save_project
        from workbench.training.startup import recorded_plan

        plan = recorded_plan(self.ws.plan, self.ws.plan, self.ws.backbone.spec)
        project = self.scratch / "project.toml"
        save_project(plan, project)
        if not self.resume:  # the window's model may hold weights the recipe alone does not give (an opened run)
            state = {k: v.detach().cpu().contiguous() for k, v in self.ws.backbone.module.state_dict().items()}
            torch.save(state, self.scratch / process_rank.START_WEIGHTS)
        return project

    def _control(self, wanted: str) -> None:
        path = self.scratch / process_rank.CONTROL
        tmp = path.with_suffix(".tmp")
        tmp.write_text(wanted)
        tmp.replace(path)  # the ranks never read half a word

    def _end_job(self) -> None:
        """Wait for torchrun; then end any process of the job still there (a rank it could not stop).

        torchrun starts each rank in a session of its own: the ranks are found by their pid files.
        """
        job = self._job
        if job is None:
            return
        if job.poll() is None:
            self.request_stop()
            try:
                job.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        for rank in range(self.choice.processes):
            try:
                pid = self.pids[rank] = int(process_rank.pid_file(self.scratch, rank).read_text())
                # Only a process whose command line names this run's scratch folder: a pid may be reused.
                if str(self.scratch) in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass  # ended already (or never started)
        try:
            os.killpg(job.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        job.wait()

    def _failure(self, code: int | None) -> str:
        """'' when every process ended well, else which rank failed first and with what, and what is kept."""
        if code == 0 and self._ended in ("finished", "stopped"):
            return ""
        what = self._root_cause()
        from workbench.run_folder import RunDir

        checkpoint = RunDir(self.run_dir).checkpoint
        kept = (f"the last checkpoint is kept ({checkpoint}): Continue resumes the run from it"
                if checkpoint.is_file() else "no checkpoint had been written yet: start the run again")
        return f"{what}; the other processes were stopped; {kept}"

    def _root_cause(self) -> str:
        """A rank killed by a signal (no message of its own), else the first rank that recorded an error."""
        log = (self.scratch / "torchrun.log").read_text(errors="replace") if \
            (self.scratch / "torchrun.log").exists() else ""
        exits = {int(rank): int(code) for rank, code in
                 re.findall(r"rank\s*:\s*(\d+)\s*\(local_rank[^)]*\)\s*\n\s*exitcode\s*:\s*(-?\d+)", log)}
        errors = []
        for rank in range(self.choice.processes):
            path = process_rank.error_file(self.scratch, rank)
            if path.is_file():
                try:
                    errors.append(json.loads(path.read_text()))
                except (OSError, ValueError):
                    pass
        recorded = {e["rank"] for e in errors}
        killed = sorted((rank, code) for rank, code in exits.items()
                        if code < 0 and rank not in recorded and -code != signal.SIGTERM)
        if killed:
            rank, code = killed[0]
            name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
            return (f"process {rank} of {self.choice.processes} died: killed by {name} "
                    "(the system's out-of-memory killer or a `kill -9` does this)")
        if errors:
            first = min(errors, key=lambda e: e["time"])
            return f"process {first['rank']} of {self.choice.processes} failed: {first['message']}"
        tail = " ".join(log.strip().splitlines()[-3:])[-500:]
        return f"the {self.choice.describe()} run ended unexpectedly (torchrun: {tail or 'no output'})"


def report_from_line(line: str) -> Any:
    """A report line of ``process_rank.report_to_line`` back into its report (a notice for other lines)."""
    from workbench.training.reports import EpochReport, StateReport, StepReport

    try:
        data = json.loads(line)
    except ValueError:
        return None
    kind = data.pop("report", "")
    if kind == "StepReport":
        return StepReport(**data)
    if kind == "EpochReport":
        return EpochReport(**data)
    if kind == "StateReport":
        return StateReport(**data)
    return StateReport("notice", str(data.get("message", "")))
