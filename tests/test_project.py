"""The project's promises about itself: CI runs the README's command; installing adds only `partialnet`."""

import importlib.metadata
import re

from helpers import ROOT

README_TEST_COMMAND = "pip install -c constraints.txt '.[test]' && pytest"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert README_TEST_COMMAND in readme
    assert README_TEST_COMMAND in ci.splitlines()


def test_constraints_pin_the_cpu_torch():
    pins = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", pins, re.MULTILINE)


def test_install_adds_only_the_partialnet_name():
    files = importlib.metadata.distribution("partialnet").files or []
    top = {str(f).split("/")[0] for f in files if not str(f).startswith("..")}
    top = {name for name in top if not name.endswith(".dist-info")}
    assert top == {"partialnet"}, top
