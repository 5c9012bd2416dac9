"""Rebuild tests/fixtures from the shared golden fixtures (../shared, beside the development checkout).

The golden files were made by the authors' reference code; nothing here computes a reference value. Two
cuts keep the folder small without losing anything the tests compare:
- each head is cut to its first 10 classes and the reference logits to the same 10 columns: the head is a
  plain Linear, so those columns are exactly what the reference model computed for them (a 1000-class head
  is 5 MB of random fp32 that tests nothing the 10 columns do not; 1000-class models come from variant names);
- the golden input is not stored: the reference run drew it as `torch.manual_seed(1); torch.randn(2, 3, 224,
  224)`, which tests/helpers.py draws again and checks against the SHA-256 of the shared array written
  into the fixture's meta, so a torch whose generator changed fails loudly instead of comparing other inputs.

    python scripts/fixtures_from_shared.py [--shared ../shared] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from partialnet.errors import BadInput  # noqa: E402
from partialnet.outputs import write_file  # noqa: E402

CLASSES = 10
INPUT_SEED, INPUT_SHAPE = 1, (2, 3, 224, 224)  # the reference run's input, as its meta records it


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
    for variant in ("t0", "t1"):
        state = torch.load(src / f"partialnet_{variant}_random.pth", weights_only=True)
        state["head.weight"], state["head.bias"] = state["head.weight"][:CLASSES].clone(), state["head.bias"][:CLASSES].clone()
        buffer = io.BytesIO()
        torch.save(state, buffer)
        write_file(out / f"partialnet_{variant}_random.pth", buffer.getvalue(), force=force)
        write_file(out / f"partialnet_{variant}_io.npz", _golden_without_input(src / f"partialnet_{variant}_io.npz"), force=force)
    for spec in sorted((shared / "spec").glob("keys_partialnet_*.json")):
        write_file(out / "spec" / spec.name, spec.read_bytes(), force=force)
    print(f"wrote {out}")


def _golden_without_input(path: Path) -> bytes:
    """The reference logits (cut) and meta; the input replaced by how to draw it again and its checksum."""
    golden = dict(np.load(path))
    meta = json.loads(str(golden["meta"]))
    x = golden.pop("input")
    if meta.get("input_seed") != INPUT_SEED or x.shape != INPUT_SHAPE or x.dtype != np.float32:
        raise BadInput(f"{path}: the input is not the one this script knows how to draw again ({meta.get('input')!r})")
    meta.update(input_shape=list(x.shape), input_sha256=hashlib.sha256(x.tobytes()).hexdigest(), logits_columns=f"first {CLASSES}")
    golden["meta"] = np.array(json.dumps(meta))
    golden["logits"] = golden["logits"][:, :CLASSES]
    buffer = io.BytesIO()
    np.savez(buffer, **golden)
    return buffer.getvalue()


if __name__ == "__main__":
    sys.exit(main())
