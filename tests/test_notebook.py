"""notebooks/quickstart.ipynb runs top to bottom (on a tiny configuration) so it never rots."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_notebook_executes(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("EMBODIED_QUICKSTART_TINY", "1")
    monkeypatch.setenv("EMBODIED_QUICKSTART_OUT", str(tmp_path / "quickstart"))
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "egl"))
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "episodes," in text and "tabletop/reach-v0" in text  # dataset summary and the eval table printed
    assert any(o.output_type == "display_data" and "image/png" in o.get("data", {}) for o in outputs)
    assert list((tmp_path / "quickstart" / "eval").rglob("*.mp4"))
