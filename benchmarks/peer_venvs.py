"""Virtual environments for the peer frameworks (Lightning, fastai), under ``benchmarks/.venvs``.

Each venv sees the project's own packages (torch, timm, numpy, …) through a ``.pth`` line, so
the peers run on exactly the torch the workbench pins and nothing large is installed twice;
pip installs only what the peer adds (and whatever it needs in a version the project lacks,
which then shadows the project's copy inside that venv only).
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

VENVS = Path(__file__).resolve().parent / ".venvs"
PEERS: dict[str, list[str]] = {
    "lightning": ["lightning==2.6.6"],
    "fastai": ["fastai==2.8.12"],
}


def peer_python(name: str, log=print) -> Path:
    """The venv's python for peer ``name``, created and installed on first use."""
    requirements = PEERS[name]
    venv = VENVS / name
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    wanted = " ".join(requirements) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    log(f"# creating {venv} ({' '.join(requirements)}); this downloads the peer's packages once")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--clear", str(venv)], check=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "_project_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
                   check=True)
    marker.write_text(wanted)
    return python


def versions(python: Path, modules: list[str]) -> str:
    code = ("import importlib.metadata as m, sys\n"
            "print(', '.join(f'{d} {m.version(d)}' for d in sys.argv[1:]))")
    done = subprocess.run([str(python), "-c", code, *modules], capture_output=True, text=True)
    return done.stdout.strip() or done.stderr.strip().splitlines()[-1]


if __name__ == "__main__":
    for peer in sys.argv[1:] or list(PEERS):
        py = peer_python(peer)
        print(peer, versions(py, ["torch", peer]))
