"""Regenerate the README's and docs' measured outputs and tables, so they never drift from what the tool prints.

Every generated block sits between `<!-- figures:NAME -->` and `<!-- /figures:NAME -->`, in README.md or
a page under docs/ (each block in exactly one file).
The script runs the block's command on this machine, and writes the output with a first line naming
the CPU (model and ISA), the date and the exact command: a figure without its machine means nothing
here, since the machines this project runs on change from run to run.

    python scripts/readme_figures.py                 # every block
    python scripts/readme_figures.py bench startup   # some blocks
    python scripts/readme_figures.py --list

Not a test and never run in CI: benchmarks on a shared 2-core VM take minutes and move by ±30 %.
A block that times something (`partialnet bench`) is also written as JSON behind the scenes; a row the
tool marks unstable or disturbed is never published: the block is rerun (up to 3 attempts), then the
script fails naming the rows and why.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import shutil
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]  # where blocks may live
CLI = [sys.executable, "-c", "import sys; from partialnet.console_script import main; sys.argv = ['partialnet', *sys.argv[1:]]; main()"]

# name -> the commands it shows, run in one shared scratch folder (so `digits_t0.pt` is trained once)
PN = "partialnet"
BLOCKS: dict[str, list[str]] = {
    "bench": [f"{PN} bench"],
    "models": [f"{PN} models"],
    "formats": [f"{PN} formats"],
    "fold": [f"{PN} fold partialnet_t0 -o t0.deploy.pt"],
    "export": [f"{PN} export partialnet_t0 -o t0.onnx"],
    "digits": [f"{PN} digits -o digits_t0.pt", f"{PN} export digits_t0.pt --imgsz 64 --half -o digits_t0_fp16.onnx"],
    "int8": [f"{PN} export digits_t0.pt --imgsz 64 --int8 --data digits -o digits_t0_int8.onnx"],
    "trt": [f"{PN} export digits_t0.pt -f trt --imgsz 64 -o digits_t0.engine", "grep ^trtexec digits_t0.build_engine.sh"],
    "all": [f"{PN} export digits_t0.pt --format all --imgsz 64 -o all"],
    "ab": [f"{PN} bench --ab fasternet_t0 partialnet_t0 --runtime onnxruntime,openvino --threads 1"],
    "streams": [f"{PN} bench --protocol throughput --runtime onnxruntime,openvino --streams auto"],
    "fold-vs-naive": ["python scripts/deploy_speed.py partialnet_t0 partialnet_t1 partialnet_t2 --seconds 30 --ablation"],
    "startup": ["python scripts/startup_time.py --repeat 5"],
    "harness": ["python scripts/harness_overhead.py --seconds 10 --floor-seconds 2"],
    "remote-transport": ["python scripts/remote_transport.py --rows 6"],
    "matrix": [f"{PN} matrix digits_t0.pt --imgsz 64 -o matrix"],
}
NEEDS_DIGITS = {"int8", "trt", "all", "matrix"}
SHOWN_STDERR = ("error:", "note:", "warning:")  # stage progress lines stay out; what a user must read stays in


def machine_line() -> str:
    from partialnet.machine import cpu_info, package_versions

    cpu = cpu_info()
    versions = package_versions()
    runtimes = ", ".join(f"{k} {versions[k]}" for k in ("torch", "onnxruntime", "openvino") if k in versions)
    return f"{cpu['model']}, {cpu['logical_cores']} cores ({' '.join(cpu['flags'])}); {runtimes}; {date.today().isoformat()}"


def argv_for(command: str) -> list[str]:
    words = command.split()
    if words[0] == PN:
        return [*CLI, *words[1:]]
    if words[0] == "python":
        return [sys.executable, str(ROOT / words[1]), *words[2:]]
    return words


ATTEMPTS = 3
TIMED = (f"{PN} bench", f"{PN} matrix", "python scripts/remote_transport.py")  # commands whose rows carry the unstable/disturbed marks


def marked_rows(json_path: Path) -> list[str]:
    """The rows of a bench result that must not be published, each with why."""
    import json

    data = json.loads(json_path.read_text())
    marked = [r for r in data["rows"] if r.get("status") == "ok" and (r.get("unstable") or r.get("disturbed"))]
    if data.get("schema", "").startswith("partialnet.matrix/"):  # a matrix row: format x precision, its marks' reasons apart
        return [f"{r['format']} {r['precision']}: {r.get('marks_why')}" for r in marked]
    return [f"{r['model']} on {r['runtime']}: {r['why']}" for r in marked]


def run_block(name: str, work: Path) -> str:
    """The block's text, from a run with no marked row: reruns a disturbed one, fails after ATTEMPTS. A rerun
    starts from what the folder held before the block (the commands refuse to overwrite their own outputs)."""
    before = set(work.iterdir())
    for attempt in range(1, ATTEMPTS + 1):
        for made in set(work.iterdir()) - before - {work / "digits_t0.pt"}:
            shutil.rmtree(made) if made.is_dir() and not made.is_symlink() else made.unlink()
        text, marked = run_block_once(name, work)
        if not marked:
            return text
        print(f"{name}: attempt {attempt} has rows not fit to publish: {'; '.join(marked)}", file=sys.stderr)
    raise SystemExit(f"{name}: every one of {ATTEMPTS} attempts had unstable or disturbed rows; not written (last: {'; '.join(marked)})")


def run_block_once(name: str, work: Path) -> tuple[str, list[str]]:
    shown, marked = [], []
    if name in NEEDS_DIGITS and not (work / "digits_t0.pt").exists():
        subprocess.run(argv_for(f"{PN} digits -o digits_t0.pt"), cwd=work, check=True, capture_output=True, timeout=1800)
    for command in BLOCKS[name]:
        # The tool runs in the scratch folder (what it writes lands there); scripts run from the checkout,
        # where their relative paths (../shared/fixtures) mean what the README shows.
        cwd = ROOT if command.startswith("python ") else work
        timed = command.startswith(TIMED)
        json_path = work / "block-rows.json"
        json_path.unlink(missing_ok=True)
        extra = ["--json", str(json_path)] if timed else []
        proc = subprocess.run(argv_for(command) + extra, capture_output=True, text=True, cwd=cwd, timeout=3600)
        if proc.returncode not in (0, 3):  # 3: not possible here (TensorRT without a GPU), which the block shows
            raise SystemExit(f"{name}: `{command}` exited {proc.returncode}:\n{proc.stderr[-2000:]}")
        if timed and json_path.exists():
            marked += marked_rows(json_path)
        notes = [line for line in proc.stderr.splitlines() if line.startswith(SHOWN_STDERR)]
        shown_out = "\n".join(line for line in proc.stdout.rstrip().splitlines() if json_path.name not in line)  # our own --json
        text = "\n".join([shown_out, *notes]).strip().replace(str(work) + "/", "").replace(str(work), ".")
        shown.append(f"$ {command}\n{text}")
    return f"Measured on {machine_line()}:\n\n```text\n" + "\n".join(shown) + "\n```", marked


def block_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- figures:{name} -->\n).*?(\n<!-- /figures:{name} -->)", re.S)


def page_of(name: str) -> Path:
    """The one page (README.md or docs/*.md) that holds block `name`."""
    holders = [page for page in PAGES if block_pattern(name).search(page.read_text())]
    if len(holders) != 1:
        raise SystemExit(f"block {name}: expected in exactly one of README.md, docs/*.md; found in {len(holders)}")
    return holders[0]


def replace_block(text: str, name: str, body: str) -> str:
    return block_pattern(name).sub(lambda m: m.group(1) + body + m.group(2), text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("blocks", nargs="*", help=f"blocks to regenerate (default: all): {', '.join(BLOCKS)}")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        print("\n".join(f"{name}: {' && '.join(commands)}" for name, commands in BLOCKS.items()))
        return
    unknown = [b for b in args.blocks if b not in BLOCKS]
    if unknown:
        raise SystemExit(f"unknown blocks {unknown}; known: {', '.join(BLOCKS)}")
    names = args.blocks or list(BLOCKS)
    texts = {page: page.read_text() for page in {page_of(name) for name in names}}
    with tempfile.TemporaryDirectory(prefix="readme-figures-") as tmp:
        for name in names:
            print(f"running {name}: {' && '.join(BLOCKS[name])}", file=sys.stderr)
            page = page_of(name)
            texts[page] = replace_block(texts[page], name, run_block(name, Path(tmp)))
    from partialnet.outputs import atomic_outputs

    for page, text in texts.items():
        with atomic_outputs([page], force=True) as (staged,):
            staged.write_text(text)
        print(f"updated {page}", file=sys.stderr)


if __name__ == "__main__":
    main()
