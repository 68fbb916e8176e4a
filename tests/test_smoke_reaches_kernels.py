"""Smoke mode must reach the notebook kernels that nbval starts.

The test run sets ``ITERCOURSE_SMOKE=1`` (root ``conftest.py``); notebooks only
ever call ``itercourse.smoke.pick(...)``. If the variable did not reach the
kernels, every notebook would silently run at full scale inside the tests.
Two checks:

1. start a kernel with nbval's own class, exactly as nbval does, and ask it;
2. end to end: run pytest, with the repository's own settings and *without*
   ITERCOURSE_SMOKE in its environment, on two probe notebooks, one asserting
   that smoke mode is on (must pass) and one asserting that it is off (must
   fail: the control that shows the probes' cells really ran).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from queue import Empty

import nbformat
from nbval.kernel import CURRENT_ENV_KERNEL_NAME, RunningKernel

REPO = Path(__file__).resolve().parents[1]

PROBE = """\
import json, os, sys
import matplotlib
import itercourse.smoke
print(json.dumps({
    "is_smoke": itercourse.smoke.is_smoke(),
    "env": os.environ.get("ITERCOURSE_SMOKE"),
    "backend": matplotlib.get_backend(),
    "executable": sys.executable,
}))
"""


def _kernel_name(config) -> str:
    """The kernel name nbval would pick for a notebook with a python3 kernelspec."""
    if config.getoption("nbval_current_env", default=False):
        return CURRENT_ENV_KERNEL_NAME
    return config.getoption("nbval_kernel_name", default=None) or "python3"


def _run(kernel: RunningKernel, code: str, timeout: float = 120) -> str:
    """Execute ``code`` in ``kernel``; return its stdout, raise on an error."""
    msg_id = kernel.execute_cell_input(code, allow_stdin=False)
    out = []
    while True:
        try:
            msg = kernel.get_message("iopub", timeout=timeout)
        except Empty:
            raise AssertionError(f"kernel gave no output within {timeout} s") from None
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content["name"] == "stdout":
            out.append(content["text"])
        elif kind == "error":
            raise AssertionError("probe failed in the kernel:\n" + "\n".join(content["traceback"]))
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(out)


def test_pytest_process_is_in_smoke_mode():
    from itercourse.smoke import is_smoke

    assert is_smoke(), "the root conftest.py should set ITERCOURSE_SMOKE=1 for the test run"


def test_nbval_kernel_sees_smoke_mode(pytestconfig):
    kernel = RunningKernel(_kernel_name(pytestconfig), cwd=str(REPO / "book"), startup_timeout=120)
    try:
        report = json.loads(_run(kernel, PROBE).strip().splitlines()[-1])
    finally:
        kernel.stop()
    assert report["is_smoke"] is True, f"smoke mode did not reach the kernel: {report}"
    assert report["env"] == "1", report
    # Figures must not need a display: the inline backend (or Agg).
    assert "inline" in report["backend"] or report["backend"].lower() == "agg", report
    if pytestconfig.getoption("nbval_current_env", default=False):
        # --nbval-current-env: the kernel runs in the interpreter that runs pytest.
        assert Path(report["executable"]).resolve() == Path(sys.executable).resolve(), report


def _probe_notebook(path: Path, expect_smoke: bool) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("from itercourse.smoke import is_smoke"),
        nbformat.v4.new_code_cell(f"assert is_smoke() is {expect_smoke}, is_smoke()"),
    ]
    nbformat.write(nb, str(path))


def test_plain_pytest_runs_notebooks_in_smoke_mode(tmp_path):
    # The probes must live under the repository so that pytest applies the
    # repository's settings (pyproject.toml, root conftest.py) to them, as it
    # does to book/*.ipynb. A dot-directory is never collected by a recursive
    # run (norecursedirs ".*"), so a concurrent `pytest` will not pick them up.
    with tempfile.TemporaryDirectory(prefix=".smoke_probe_", dir=REPO / "tests") as probe_dir:
        on = Path(probe_dir) / "probe_smoke_on.ipynb"
        off = Path(probe_dir) / "probe_smoke_off.ipynb"
        _probe_notebook(on, expect_smoke=True)
        _probe_notebook(off, expect_smoke=False)
        junit = tmp_path / "junit.xml"
        env = {k: v for k, v in os.environ.items() if k != "ITERCOURSE_SMOKE"}
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
             f"--junitxml={junit}", str(on), str(off)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
        )
    log = proc.stdout[-3000:] + proc.stderr[-2000:]
    assert junit.exists(), f"pytest did not run:\n{log}"
    outcomes: dict[str, list[str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        name = case.get("classname", "") + "::" + case.get("name", "")
        key = "on" if "probe_smoke_on" in name else "off" if "probe_smoke_off" in name else "other"
        outcomes.setdefault(key, []).append("failed" if failed else "skipped" if skipped else "passed")
    assert set(outcomes) == {"on", "off"}, f"unexpected test items {outcomes}:\n{log}"
    assert outcomes["on"] == ["passed", "passed"], f"a notebook under pytest was not in smoke mode:\n{log}"
    assert "failed" in outcomes["off"], f"the control probe did not fail, so its cells did not run:\n{log}"
    assert proc.returncode == 1, log
