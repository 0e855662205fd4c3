"""A new user's path: the two README commands in a fresh clone.

The clone gets its own virtual environment, as `make` would create it, but
seeded with this checkout's installed packages (a .pth file) so that the test
does not download 4 GB again; the Makefile's own install steps still run in it.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Two commands on a fresh machine\n+```bash\n(.*?)```", text, re.DOTALL).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_gives_exactly_two_commands():
    assert readme_commands() == ["make demo", "make test"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or shutil.which("make") is None, reason="needs git and make")
def test_fresh_clone_runs_both_commands(tmp_path):
    clone = tmp_path / "embodied"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    # Uncommitted work in this checkout is what is under test: copy it over the clone.
    changed = subprocess.run(["git", "ls-files", "-m", "-o", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    for rel in changed:
        if (ROOT / rel).is_file():
            (clone / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, clone / rel)
    subprocess.run([sys.executable, "-m", "venv", str(clone / ".venv")], check=True)
    site = Path(subprocess.run([str(clone / ".venv/bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "zz_parent_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    demo = subprocess.run(
        ["make", "demo", ("DEMO_ARGS=--collect.tasks tabletop/reach-v0 --collect.episodes-per-task 2 "
                          "--collect.workers 1 --collect.image-size 64 --train-steps 3 --batch-size 4 "
                          "--eval-episodes 1 --num-envs 1")],
        cwd=clone, env=env, capture_output=True, text=True, timeout=900, check=False,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    report = clone / "outputs/demo/report.md"
    text = report.read_text()
    assert "tabletop/reach-v0" in text and "## Evaluation" in text and "## Training" in text
    assert (clone / "outputs/demo/eval/success.png").stat().st_size > 1000
    assert (clone / "outputs/demo/loss.png").stat().st_size > 1000
    assert list((clone / "outputs/demo/eval/videos").glob("*.mp4"))
    assert list((clone / "outputs/demo/runs/mdt/checkpoints").glob("step_*/pretrained_model/model.safetensors"))
    test = subprocess.run(["make", "test", "PYTEST_ARGS=tests/test_types.py -p no:cacheprovider"],
                          cwd=clone, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert test.returncode == 0, test.stdout[-3000:] + test.stderr[-3000:]
    assert re.search(r"\d+ passed", test.stdout)
