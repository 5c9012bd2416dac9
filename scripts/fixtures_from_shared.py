"""Rebuild tests/fixtures from the shared golden fixtures (../shared, beside the development checkout).

The golden files were made by the authors' reference code; nothing here computes a reference value. T0
is copied as released (1000 classes: the format checkpoints in the wild have). T1 is kept for PAT_sp,
which no other released configuration has; its 1000-class head is 5 MB of the file and adds nothing PAT_sp
needs, so it is cut to the first 10 classes, with the reference logits cut to the same 10 columns: the
head is a plain Linear, so those columns are exactly what the reference model computed for them.

    python scripts/fixtures_from_shared.py [--shared ../shared] [--force]
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from partialnet.errors import BadInput  # noqa: E402
from partialnet.outputs import write_file  # noqa: E402

T1_CLASSES = 10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--force", action="store_true", help="replace the files already in tests/fixtures")
    args = parser.parse_args()
    try:
        rebuild(args.shared, args.force)
    except (BadInput, OSError) as exc:  # no ../shared here, or the fixtures exist without --force
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def rebuild(shared: Path, force: bool) -> None:
    src, out = shared / "fixtures", ROOT / "tests" / "fixtures"
    for name in ("partialnet_t0_random.pth", "partialnet_t0_io.npz"):
        write_file(out / name, (src / name).read_bytes(), force=force)
    state = torch.load(src / "partialnet_t1_random.pth", weights_only=True)
    state["head.weight"], state["head.bias"] = state["head.weight"][:T1_CLASSES].clone(), state["head.bias"][:T1_CLASSES].clone()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_file(out / "partialnet_t1_random.pth", buffer.getvalue(), force=force)
    golden = dict(np.load(src / "partialnet_t1_io.npz"))
    golden["logits"] = golden["logits"][:, :T1_CLASSES]
    buffer = io.BytesIO()
    np.savez(buffer, **golden)
    write_file(out / "partialnet_t1_io.npz", buffer.getvalue(), force=force)
    for spec in sorted((shared / "spec").glob("keys_partialnet_*.json")):
        write_file(out / "spec" / spec.name, spec.read_bytes(), force=force)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
