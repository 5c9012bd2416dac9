"""The project's promises about itself: CI runs the README's command; installing adds only `partialnet`."""

import importlib.metadata
import re

from helpers import ROOT

README_TEST_COMMAND = "pip install -c constraints.txt '.[test]' && ruff check && pytest"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert README_TEST_COMMAND in readme
    assert README_TEST_COMMAND in ci.splitlines()


def test_constraints_pin_the_cpu_torch():
    pins = (ROOT / "constraints.txt").read_text()
    assert re.search(r"^torch==2\.13\.0$", pins, re.MULTILINE)


def test_install_adds_only_the_partialnet_name():
    """Read from the environment's site-packages, not whatever `partialnet.egg-info` a build left in the
    checkout (which `python -m pytest`, with the checkout on sys.path, would find first)."""
    import json
    import sysconfig

    import pytest

    site = sysconfig.get_paths()["purelib"]
    found = [d for d in importlib.metadata.distributions(path=[site]) if d.metadata["Name"] == "partialnet"]
    assert len(found) == 1, f"partialnet is not installed in {site}"
    if json.loads(found[0].read_text("direct_url.json") or "{}").get("dir_info", {}).get("editable"):
        pytest.skip("an editable (development) install puts its finder in site-packages: the promise is about "
                    "`pip install .`, which CI makes")
    top = {str(f).split("/")[0] for f in found[0].files or [] if not str(f).startswith("..")}
    top = {name for name in top if not name.endswith(".dist-info")}
    assert top == {"partialnet"}, top


def test_api_is_the_top_facade_nothing_inside_imports():
    """partialnet.api sits above every subsystem: an import of it from inside the package is a cycle."""
    import ast

    package = ROOT / "partialnet"
    offenders = []
    for path in package.rglob("*.py"):
        if path.name == "cli.py" and path.parent == package:
            continue  # the command line is the one client above the facade
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (
                node.module == "partialnet.api" or (node.module == "partialnet" and any(a.name == "api" for a in node.names))
            ):
                offenders.append(str(path.relative_to(ROOT)))
            if isinstance(node, ast.Import) and any(a.name == "partialnet.api" for a in node.names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_every_readme_figure_block_is_generated_by_the_script():
    """Measured outputs in the README and docs/ come from scripts/readme_figures.py, each naming its machine."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_figures", ROOT / "scripts" / "readme_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        opened = re.findall(r"<!-- figures:([a-z0-9_-]+) -->", text)
        assert opened == re.findall(r"<!-- /figures:([a-z0-9_-]+) -->", text), page
        for name in opened:
            body = text.split(f"<!-- figures:{name} -->")[1].split(f"<!-- /figures:{name} -->")[0]
            assert body.strip().startswith("Measured on "), name  # the CPU, ISA and date come first
        found += opened
    assert sorted(found) == sorted(module.BLOCKS)  # each block once, in one page


def test_the_readme_is_a_short_door_into_docs():
    """The README stays readable: the two commands first, then links; every docs page opens with its question."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert readme.index(README_TEST_COMMAND) < readme.index("## Commands")
    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link
    for page in sorted((ROOT / "docs").glob("*.md")):
        lines = page.read_text().splitlines()
        assert lines[0].startswith("# "), page
        assert page.name == "gpu.md" or lines[2].startswith("This page answers:"), page  # gpu.md is generated


def test_the_python_api_pages_calls_match_the_real_signatures():
    """docs/python-api.md is read by people writing code against it: every call it shows to partialnet's
    functions and options classes binds to the signature as it is now (a renamed keyword fails here)."""
    import ast
    import inspect

    import partialnet
    from partialnet import api
    from partialnet.remote.options import TargetOptions

    modules = {"api": api, "partialnet": partialnet}
    classes = {"ExportOptions": partialnet.ExportOptions, "VerifyOptions": partialnet.VerifyOptions, "TargetOptions": TargetOptions}
    page = (ROOT / "docs" / "python-api.md").read_text()
    checked = []
    for block in re.findall(r"```python\n(.*?)```", page, re.S):
        for node in ast.walk(ast.parse(block)):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in modules:
                name = f"{func.value.id}.{func.attr}"
                target = getattr(modules[func.value.id], func.attr, None)
                assert target is not None, f"{name} does not exist"
            elif isinstance(func, ast.Name) and func.id in classes:
                name, target = func.id, classes[func.id]
            else:
                continue
            if any(k.arg is None for k in node.keywords):  # a **mapping: its keys are not on the page
                continue
            try:
                inspect.signature(target).bind(*node.args, **{k.arg: k.value for k in node.keywords})
            except TypeError as exc:
                raise AssertionError(f"docs/python-api.md: {ast.unparse(node)}: {exc}") from None
            checked.append(name)
    assert {"api.export", "api.verify", "api.export_all", "api.matrix", "api.export_on_target", "partialnet.fold", "ExportOptions"} <= set(checked)


def test_every_command_line_in_the_docs_uses_real_commands_and_flags():
    """Options are refused, never rewritten: a flag the docs still show after a rename would fail for the
    reader who copies it. Lines in code blocks must name a real command; inline `partialnet CMD …` spans are
    checked where CMD is one (prose mentions the tool by name too)."""
    import shlex

    import typer

    from partialnet.cli import app

    commands = typer.main.get_command(app).commands
    checked = 0
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        fenced = [line for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
                  for line in re.findall(r"(?m)^(?:\$ )?(partialnet [^\n#]*)", block)]
        inline = re.findall(r"`(partialnet [^`]+)`", text)
        chained = [(part.strip(), strict) for line, strict in [(line, True) for line in fenced] + [(line, False) for line in inline]
                   for part in re.split(r"&&|\|\||\||;", line)]  # `a && partialnet verify …`: each command its own
        for line, strict in chained:
            if not line.startswith("partialnet "):
                continue
            try:
                words = shlex.split(line, comments=True)
            except ValueError:  # an unbalanced quote in a prose span
                words = line.split()
            if len(words) < 2 or words[1].startswith("-"):
                continue
            command = commands.get(words[1])
            is_word = re.fullmatch(r"[a-z][a-z-]*", words[1]) is not None  # not a figure column ("partialnet   24.1 ms")
            assert command is not None or not strict or not is_word, f"{page.name}: no command {words[1]!r} in: {line}"
            if command is None:
                continue
            flags = {"--help"}.union(*(set(p.opts) | set(p.secondary_opts) for p in command.params))
            for word in words[2:]:
                if re.fullmatch(r"--[a-z][a-z0-9-]*(=.*)?|-[a-zA-Z]", word):
                    checked += 1
                    assert word.split("=")[0] in flags, f"{page.name}: {words[1]} has no {word.split('=')[0]} (in: {line})"
    assert checked > 50


def test_the_gpu_block_comes_from_a_gpu_check_run_naming_its_gpu():
    """The README's GPU figures are written by `scripts/gpu_check.py --publish` from a lent GPU's results."""
    readme = (ROOT / "README.md").read_text()
    body = readme.split("<!-- gpu-check -->")[1].split("<!-- /gpu-check -->")[0]
    assert body.strip().startswith("partialnet on NVIDIA ") and "[docs/gpu.md](docs/gpu.md)" in body
    assert (ROOT / "docs" / "gpu.md").read_text().startswith("# partialnet on NVIDIA ")


def test_no_function_in_the_package_runs_over_fifty_lines():
    """Small functions that each do one thing: a longer one needs its reason written on its def line (`# long: why`)."""
    import ast

    long = []
    for path in sorted((ROOT / "partialnet").rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 50:
                if "# long:" not in lines[node.lineno - 1]:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == [], long
