"""What a source argument names (a variant, a checkpoint file, an artifact), told apart and checked without torch.

Importing torch takes a second or more; a mistyped path, a folder, a FIFO or a file that is no checkpoint at
all is answered before that second, by every command that takes one. The readers (`checkpoint.read_file`,
each format's `read_io`) still judge what they read: this is the first look, not the only one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from partialnet.errors import BadInput
from partialnet.inputs import describe_errno, open_regular
from partialnet.limits import check_name
from partialnet.models.registry import VARIANTS, get_variant

ZIP_MAGIC = b"PK"
PICKLE_PROTO = 0x80
MIN_CHECKPOINT_BYTES = 32  # the smallest torch.save file is hundreds of bytes; a safetensors one with a tensor, ~60
SNIFF_BYTES = 256  # a checkpoint's kind is in its first 9 bytes; an artifact's (an IR's <net> after its XML declaration) within these


def looks_like_path(source: str) -> bool:
    return "/" in source or "\\" in source or Path(source).suffix != "" or Path(source).exists()


def is_variant_name(source: str) -> bool:
    return source.strip().lower().replace("-", "_") in VARIANTS and not Path(source).exists()


def source_path(source: str | Path | None) -> Path | None:
    """The file a source argument names, or None for a bare variant name (random weights)."""
    if source is None or is_variant_name(str(source)):
        return None
    return Path(source)


def artifact_format(source: str) -> str | None:
    """The export format a source argument is an artifact of (by suffix), or None for checkpoints/variants."""
    from partialnet.exporters.formats import FORMATS

    if not looks_like_path(source):
        return None
    return next((f.name for f in FORMATS.values() if source.lower().endswith(f.suffix)), None)


def sniff_checkpoint(path: Path, head: bytes) -> str:
    """'safetensors', 'zip' (torch.save), 'pickle' (legacy torch.save) or 'unknown', from the first bytes.

    Safetensors is recognised first, by its JSON header at byte 8: its first bytes are the header's length,
    which may be anything (a length of 128 + 256k begins like a pickle, one ending in b"PK" like a zip),
    while byte 8 of a torch zip (the compression method) or a legacy pickle (its magic number) is never "{".
    """
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:2] == ZIP_MAGIC:
        return "zip"
    if head[:1] == bytes([PICKLE_PROTO]):
        return "pickle"
    if path.suffix == ".safetensors":
        return "safetensors"
    return "unknown"


# the first bytes of the artifacts partialnet writes: an artifact given where a checkpoint goes is named, not "unknown".
# LiteRT and ExecuTorch files are FlatBuffers with a file identifier at byte 4 (TFL3, ET12); an OpenVINO IR is XML
# whose root is <net>; an ONNX ModelProto begins with its ir_version (field 1, 3 to 12 so far) and its producer's
# name (field 2). An SVG or a stray protobuf had been named an artifact on its first bytes alone.
ARTIFACT_HEADS = (("litert", re.compile(rb"^.{4}TFL3", re.S)), ("executorch", re.compile(rb"^.{4}ET\d\d", re.S)),
                  ("openvino", re.compile(rb"^(<\?xml[^>]*\?>\s*)?<net\b")), ("onnx", re.compile(rb"^\x08[\x03-\x0c]\x12[\x01-\x7f][\x20-\x7e]")))


def artifact_by_content(head: bytes) -> str | None:
    return next((name for name, pattern in ARTIFACT_HEADS if pattern.match(head)), None)


def not_a_checkpoint(path: Path, head: bytes = b"") -> BadInput:
    """The refusal of a file that begins like no checkpoint; where it is an exported artifact, it says so (an ONNX
    file was "neither a PyTorch zip/pickle nor a safetensors file", as if it were any file)."""
    fmt = artifact_format(str(path)) or artifact_by_content(head)
    if fmt is not None:
        return BadInput(f"{path}: is an exported {fmt} artifact, not a checkpoint: give the checkpoint it was exported from "
                        "(bench and verify take artifacts)")
    return BadInput(f"{path}: not a checkpoint (neither a PyTorch zip/pickle nor a safetensors file)")


def check_source(source: str, variant: str | None = None) -> None:
    """A checkpoint argument (a variant name, or a readable regular file that begins like a checkpoint) and the
    variant it is expected to be."""
    if variant is not None:
        get_variant(variant)
    if not source.strip():  # Path("") is "." and read as "is a directory"
        raise BadInput("the checkpoint is an empty string: give a checkpoint file or a variant name (partialnet models)")
    if is_variant_name(source):
        return
    if not looks_like_path(source):
        raise unknown_source(source)
    path = Path(source)
    with open_regular(path, "checkpoint", min_bytes=MIN_CHECKPOINT_BYTES) as f:
        head = f.read(SNIFF_BYTES)
        if sniff_checkpoint(path, head) == "unknown":
            raise not_a_checkpoint(path, head)


def unknown_source(source: str) -> BadInput:
    return BadInput(f"{source!r} is neither a file nor a known variant; known: {', '.join(VARIANTS)}")


def check_artifact(artifact: str | Path) -> None:
    """An artifact argument: a known suffix, and there (a regular file; a Core ML package is a folder, read by its reader)."""
    from partialnet.exporters.formats import format_for_path

    fmt = format_for_path(artifact)
    if fmt.suffix.endswith(".mlpackage"):
        try:
            os.stat(artifact)
        except OSError as exc:
            raise BadInput(f"{artifact}: {describe_errno(exc)}") from None
        return
    with open_regular(artifact, "artifact"):
        pass


def check_sources(sources: list[str], pair: bool = False) -> None:
    """bench's sources: every one checked before the first is prepared (a typo in the fifth is not found after four
    were folded and exported), and no two of them one row name: compare and report match rows by it."""
    seen: dict[tuple[str, str], str] = {}
    for i, source in enumerate(sources):
        if not source.strip():
            side = f"--ab side {'AB'[i]}: " if pair else ""
            raise BadInput(f"{side}an empty string names no model; give a checkpoint, an artifact or a variant name (partialnet models)")
        if not is_variant_name(source) and not looks_like_path(source):
            raise unknown_source(source)
        same = ("source", os.path.realpath(source) if looks_like_path(source) else source.strip().lower().replace("-", "_"))
        if same in seen:
            raise BadInput(f"--ab {seen[same]} {source}: the same model on both sides; --aa times a model against itself" if pair
                           else f"{seen[same]} and {source} are the same model, given twice; give each source once")
        seen[same] = source
        row = ("row", Path(source).name) if artifact_format(source) else None
        if row in seen:
            raise BadInput(f"{seen[row]} and {source} would both be rows named {row[1]} (compare and report match rows by name); "
                           "copy one under another name")
        if row:
            seen[row] = source
    for source in sources:  # the files last: two rows of one name are refused whatever the files hold
        if artifact_format(source):
            check_artifact(source)
        else:
            check_source(source)


# ---------------------------------------------------------------- outputs named from a source


FORMAT_ALL_HINT = " (or --format all to write every format into a folder)"


def output_file(output: str | Path | None, source: str, suffix: str, option: str = "-o", hint: str = "") -> Path:
    """The file `-o` names, or the default beside the source. A name that is a folder (`.`, `/`, `out/`)
    is refused here: pathlib reads `x.pt/` as the file `x.pt`, and `.` has no name to put a suffix on."""
    if output is None:
        return default_output(source, suffix)
    check_name(output, option)
    text = os.fspath(output)
    if names_a_folder(text):
        raise BadInput(f"{option} {text!r} names a folder, not a file; give a file name such as {default_output(source, suffix).name}{hint}")
    return Path(text)


def fold_outputs(source: str, output: str | Path | None, report_path: str | Path | None) -> list:
    """`fold`'s two files (the deploy checkpoint and its report), from the arguments alone: the command line
    checks them before torch is imported, `api.fold_checkpoint` before the load."""
    from partialnet.outputs import Output

    out = output_file(output, source, ".deploy.pt")
    report = output_file(report_path, source, ".fold.json", "--report") if report_path is not None else out.with_name(out.name + ".fold.json")
    return [Output(out, "-o", written_as="a PyTorch checkpoint"), Output(report, "--report", written_as="JSON")]


def names_a_folder(text: str) -> bool:
    """`x.pt/`, `out/.`, `..`, nothing: pathlib would drop or keep the wrong part (`Path("x.json/")` is the file x.json)."""
    return not text.strip() or text.rsplit(os.sep, 1)[-1] in ("", ".", "..")


def default_output(source: str, suffix: str) -> Path:
    """Beside the checkpoint (`model.pth` → `model.onnx`), or `./<variant><suffix>` for a bare variant.

    Computed from the argument alone, so outputs are checked before the checkpoint is loaded.
    """
    path = source_path(source)
    if path is None:
        return Path.cwd() / f"{source.strip().lower().replace('-', '_')}{suffix}"
    name = path.name
    while Path(name).suffix.lower() in CHECKPOINT_SUFFIXES and Path(name).stem:  # `model.pth.tar`, `model.deploy.pt` -> `model`
        name = Path(name).stem
    return path.with_name(name + suffix)  # `epoch.10.pt` -> `epoch.10.onnx` (cutting at the first dot made epoch.10 and epoch.20 one file)


CHECKPOINT_SUFFIXES = {".pt", ".pth", ".tar", ".ckpt", ".bin", ".safetensors", ".pkl", ".deploy"}
