"""Checkpoints in the wild: every container and key layout loads to identical logits; wrong ones fail loudly."""

import io
import json
import math
import pickle
import re
import warnings

import pytest
import torch
import torch.nn.functional as F

from helpers import golden, to_dpconv
from partialnet import BadInput, create_model, load_checkpoint
from partialnet.checkpoint import KeyMismatch, resolve

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def logits(model):
    with torch.no_grad():
        return model(X)


@pytest.fixture(scope="module")
def reference_logits():
    model, _ = load_checkpoint(golden("t0")[0])
    return logits(model)


def lightning(sd):
    return {
        "epoch": 12,
        "global_step": 3400,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{k}": v for k, v in sd.items()},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1]}]}],
        "lr_schedulers": [],
        "hyper_parameters": {"arch": "partialnet_t0", "lr": 0.001},
    }


def timm_saver(sd):
    """What timm's train.py writes (CheckpointSaver): its argparse `args` and a metric, perhaps a NumPy scalar, beside the weights."""
    import argparse

    import numpy as np

    args = argparse.Namespace(model="partialnet_t0", lr=1e-3, epochs=300, input_size=(3, 224, 224), aa=None, opt_betas=[0.9, 0.99])
    return {"epoch": 41, "arch": "partialnet_t0", "state_dict": sd, "optimizer": {"state": {}}, "version": 2, "args": args,
            "metric": np.float64(71.3)}


CONTAINERS = {
    "timm_train.pth.tar": (timm_saver, "dict['state_dict']"),
    "plain.pth": (lambda sd: sd, "state_dict"),
    "lightning.ckpt": (lightning, "dict['state_dict']"),
    "wrapped_model.pt": (lambda sd: {"model": sd, "epoch": 3}, "dict['model']"),
    "wrapped_state_dict.bin": (lambda sd: {"state_dict": sd}, "dict['state_dict']"),
    "wrapped_ema.pth": (lambda sd: {"model_ema": sd, "optimizer": {}}, "dict['model_ema']"),
    "ddp.pth": (lambda sd: {f"module.{k}": v for k, v in sd.items()}, "state_dict"),
    "ddp_in_wrapper.pth": (lambda sd: {"model": {f"module.{k}": v for k, v in sd.items()}}, "dict['model']"),
    "compiled.pth": (lambda sd: {f"_orig_mod.{k}": v for k, v in sd.items()}, "state_dict"),
}


@pytest.mark.parametrize("name", list(CONTAINERS))
def test_container_round_trips_to_identical_logits(name, tmp_path, t0_state_dict, reference_logits):
    wrap, container = CONTAINERS[name]
    path = tmp_path / name
    torch.save(wrap(t0_state_dict), path)
    model, info = load_checkpoint(path)
    assert info.variant == "partialnet_t0" and info.container == container
    assert torch.equal(logits(model), reference_logits)


def test_a_numpy_1_scalar_loads_as_numpy_2_writes_it(tmp_path):
    """NumPy 1 named the scalar's module without the underscore: a metric saved then loads all the same."""
    import numpy as np

    from partialnet.checkpoint import _torch_load

    buf = io.BytesIO()
    torch.save({"w": torch.ones(2), "metric": np.float64(70.5)}, buf, _use_new_zipfile_serialization=False)
    assert buf.getvalue().count(b"numpy._core.multiarray") == 1
    (tmp_path / "np1.pth").write_bytes(buf.getvalue().replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    with open(tmp_path / "np1.pth", "rb") as f:
        assert _torch_load(f, tmp_path / "np1.pth", mmap=False)["metric"] == 70.5


def test_lightning_prefix_is_reported(tmp_path, t0_state_dict):
    path = tmp_path / "l.ckpt"
    torch.save(lightning(t0_state_dict), path)
    _, info = load_checkpoint(path)
    assert info.prefix == "model."


def test_safetensors_written_by_the_real_library(tmp_path, t0_state_dict, reference_logits):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(t0_state_dict, str(path), metadata={"format": "pt"})
    model, info = load_checkpoint(path)
    assert "safetensors" in info.container
    assert torch.equal(logits(model), reference_logits)


@pytest.mark.parametrize("dtype", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_fp8_safetensors_load_as_fp8_pth_files_do(tmp_path, t0_state_dict, dtype):
    """An fp8 release (safetensors F8_E4M3/F8_E5M2) loads as the same weights saved by torch.save do; a dtype the
    reader does not know is named as such, not called corruption."""
    import json
    import struct

    safetensors_torch = pytest.importorskip("safetensors.torch")
    cast = {k: v.to(dtype) if v.is_floating_point() else v for k, v in t0_state_dict.items()}
    safetensors_torch.save_file(cast, str(tmp_path / "fp8.safetensors"))
    torch.save(cast, tmp_path / "fp8.pth")
    (model, info), (same, _) = load_checkpoint(tmp_path / "fp8.safetensors"), load_checkpoint(tmp_path / "fp8.pth")
    assert info.dtypes[0] == str(dtype).removeprefix("torch.") and torch.equal(logits(model), logits(same))
    header = json.dumps({"w": {"dtype": "F4", "shape": [2], "data_offsets": [0, 1]}}).encode()
    (tmp_path / "f4.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0")
    with pytest.raises(BadInput, match=r"f4.safetensors: tensor 'w' has dtype F4, which partialnet does not read \(it reads F64, F32"):
        load_checkpoint(tmp_path / "f4.safetensors")


def test_a_head_sliced_without_clone_is_named_with_the_fix(tmp_path, t0_state_dict):
    """A head cut from a larger one (a 21k-class pretrain) without .clone() saves the whole storage: refused, naming the view and the re-save."""
    sd = dict(t0_state_dict)
    sd["head.weight"] = torch.zeros(20_000, *sd["head.weight"].shape[1:])[: sd["head.weight"].shape[0]]
    torch.save(sd, tmp_path / "sliced.pth")
    with pytest.raises(BadInput, match=r"head.weight is a view of 102,400,000 bytes \(a slice saved without .clone\(\)"):
        load_checkpoint(tmp_path / "sliced.pth")
    torch.save({k: v.clone() for k, v in sd.items()}, tmp_path / "copied.pth")
    assert load_checkpoint(tmp_path / "copied.pth")[1].num_classes == sd["head.weight"].shape[0]  # the fix the message gives


def test_safetensors_without_suffix_is_sniffed(tmp_path, t0_state_dict, reference_logits):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    path = tmp_path / "weights.bin"
    safetensors_torch.save_file(t0_state_dict, str(path))
    model, info = load_checkpoint(path)
    assert torch.equal(logits(model), reference_logits)
    assert info.container.endswith("(safetensors)")  # named by what the file is, not by its suffix
    torch.save(t0_state_dict, tmp_path / "zip.safetensors")  # a torch zip under the other suffix is no safetensors file
    assert "safetensors" not in load_checkpoint(tmp_path / "zip.safetensors")[1].container


@pytest.mark.parametrize("low_bytes, modulus", [(0x80, 256), (0x4B50, 65536)], ids=["looks-like-a-pickle", "looks-like-a-zip"])
def test_safetensors_whose_header_length_begins_like_another_format(tmp_path, t0_state_dict, reference_logits, low_bytes, modulus):
    """The first 8 bytes are the header's length: padded (as the format allows) so they begin with 0x80, or "PK"."""
    safetensors_torch = pytest.importorskip("safetensors.torch")
    plain = tmp_path / "plain.safetensors"
    safetensors_torch.save_file(t0_state_dict, str(plain))
    raw = plain.read_bytes()
    length = int.from_bytes(raw[:8], "little")
    header, data = raw[8:8 + length].rstrip(b" "), raw[8 + length:]
    padded = len(header) + (low_bytes - len(header)) % modulus
    path = tmp_path / "model.safetensors"
    path.write_bytes(padded.to_bytes(8, "little") + header.ljust(padded, b" ") + data)
    assert path.read_bytes()[:2] in (b"\x80" + bytes([padded >> 8 & 0xFF]), b"PK")
    assert torch.equal(logits(load_checkpoint(path)[0]), reference_logits)


def to_timm(sd):
    """The renaming timm applies to FasterNet, written out independently of the loader."""
    out = {}
    for key, value in sd.items():
        key = re.sub(r"^avgpool_pre_head\.1\.", "conv_head.", key)
        key = re.sub(r"^head\.", "classifier.", key)
        m = re.match(r"^stages\.(\d+)\.(.*)$", key)
        if m:
            i, rest = int(m.group(1)), m.group(2)
            key = f"stages.{(i + 1) // 2}.downsample.{rest}" if i % 2 else f"stages.{i // 2}.{rest}"
        out[key] = value
    return out


def test_timm_fasternet_keys(tmp_path):
    reference = create_model("fasternet_t0")
    for p in reference.parameters():
        p.data.normal_(0, 0.05)
    path = tmp_path / "timm_fasternet.pth"
    torch.save(to_timm(reference.state_dict()), path)
    model, info = load_checkpoint(path)
    assert info.variant == "fasternet_t0" and info.key_layout == "timm"
    assert torch.equal(logits(model), logits(reference))
    mixed = to_timm(reference.state_dict())
    mixed["head.weight"] = torch.zeros_like(mixed["classifier.weight"])  # the reference layout's head beside timm's
    torch.save(mixed, path)
    with pytest.raises(BadInput, match="classifier.weight and head.weight both name head.weight"):
        load_checkpoint(path)  # once: the later of the two silently won


def test_half_precision_checkpoint_loads_and_reports_dtype(tmp_path, t0_state_dict):
    path = tmp_path / "half.pth"
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in t0_state_dict.items()}, path)
    model, info = load_checkpoint(path)
    assert info.dtypes == ["float16"]
    assert next(model.parameters()).dtype == torch.float32


def test_missing_num_batches_tracked_is_tolerated(tmp_path, t0_state_dict, reference_logits):
    path = tmp_path / "no_nbt.pth"
    torch.save({k: v for k, v in t0_state_dict.items() if not k.endswith("num_batches_tracked")}, path)
    assert torch.equal(logits(load_checkpoint(path)[0]), reference_logits)


def test_keys_outside_the_model_prefix_are_reported_not_loaded(tmp_path, t0_state_dict, reference_logits):
    ckpt = lightning(t0_state_dict)
    ckpt["state_dict"]["criterion.class_weights"] = torch.ones(1000)
    path = tmp_path / "extra.ckpt"
    torch.save(ckpt, path)
    model, info = load_checkpoint(path)
    assert info.ignored_keys == ["criterion.class_weights"]
    assert torch.equal(logits(model), reference_logits)


# ---------------------------------------------------------------- DPConv


WIDTHS = {(0, 0): 4, (1, 1): 16, (2, 3): 0, (3, 0): 256, (3, 1): 32}


@pytest.fixture(scope="module")
def dpconv_checkpoint(tmp_path_factory, t0_state_dict):
    path = tmp_path_factory.mktemp("dp") / "dpconv_t0.pth"
    torch.save(to_dpconv(t0_state_dict, WIDTHS), path)
    return path


def test_dpconv_widths_are_read_per_layer(dpconv_checkpoint):
    model, info = load_checkpoint(dpconv_checkpoint)
    assert info.variant == "partialnet_t0"
    dims = [32, 64, 128, 256]
    expected = [[WIDTHS.get((s, b), dims[s] // 4) for b in range(d)] for s, d in enumerate((1, 2, 8, 2))]
    assert info.dpconv_widths == expected


def test_dpconv_layer_is_a_static_partial_conv_of_its_width(dpconv_checkpoint):
    model, _ = load_checkpoint(dpconv_checkpoint)
    sd = torch.load(dpconv_checkpoint, weights_only=True)
    x = torch.randn(1, 128, 8, 8, generator=torch.Generator().manual_seed(0))
    for block, width in ((3, 0), (0, 32)):
        layer = model.stages[4].blocks[block].spatial_mixing
        w = sd[f"stages.4.blocks.{block}.spatial_mixing.conv.weight"]
        # Independent form: the full conv with the weight masked to its top-left width×width block.
        mask = torch.zeros_like(w)
        mask[:width, :width] = 1
        full = F.conv2d(x, w * mask, padding=1)
        expected = torch.cat([full[:, :width], x[:, width:]], dim=1)
        with torch.no_grad():  # two fp32 sums of 288 terms in different orders: round-off, not structure, differs
            assert torch.allclose(layer(x), expected, rtol=1e-5, atol=1e-5)


def test_dpconv_full_width_and_stage6_residuals_run(dpconv_checkpoint):
    model, _ = load_checkpoint(dpconv_checkpoint)
    assert model.stages[6].blocks[0].two_residuals
    out = logits(model)
    assert out.shape == (2, 10) and torch.isfinite(out).all()  # the fixture's head keeps 10 classes
    exported = torch.export.export(model, (X,))
    with torch.no_grad():
        assert torch.equal(exported.module()(X), out)


def test_dpconv_width_out_of_range_is_rejected(tmp_path, t0_state_dict):
    path = tmp_path / "bad_dp.pth"
    torch.save(to_dpconv(t0_state_dict, {(0, 0): 99}), path)
    with pytest.raises(BadInput, match=r"one_channel = 99, outside \[0, 32\]"):
        load_checkpoint(path)


# ---------------------------------------------------------------- strictness


def test_wrong_named_variant_is_a_shape_diff(tmp_path):
    with pytest.raises(KeyMismatch, match="does not match partialnet_t1") as info:
        load_checkpoint(golden("t0")[0], variant="partialnet_t1")
    assert info.value.diff.misshaped and "patch_embed.proj.weight [32, 3, 4, 4] vs model [48, 3, 4, 4]" in str(info.value)
    assert str(info.value).endswith("; its keys and shapes are partialnet_t0's: name that variant, or leave --variant out")


def test_a_diff_with_one_reading_says_it(tmp_path, t0_state_dict):
    """A features-only file, or a head stored transposed (its class count read from the wrong side), is named as such."""
    torch.save({k: v for k, v in t0_state_dict.items() if not k.startswith("head.")}, tmp_path / "features.pth")
    with pytest.raises(KeyMismatch, match="2 missing: head.weight, head.bias; the file holds no classifier head"):
        load_checkpoint(tmp_path / "features.pth")
    turned = {**t0_state_dict, "head.weight": t0_state_dict["head.weight"].t().contiguous()}
    torch.save(turned, tmp_path / "turned.pth")
    classes, features = t0_state_dict["head.weight"].shape
    with pytest.raises(KeyMismatch, match=re.escape(f"so head.weight is [classes, {features}], not [{features}, {classes}] (stored transposed? "
                                                    f"[{classes}, {features}] is {classes} classes)")):
        load_checkpoint(tmp_path / "turned.pth")


def test_fasternet_checkpoint_named_as_partialnet_lists_the_diff(tmp_path):
    path = tmp_path / "fn.pth"
    torch.save(create_model("fasternet_t0").state_dict(), path)
    with pytest.raises(KeyMismatch) as info:
        load_checkpoint(path, variant="partialnet_t0")
    diff = info.value.diff
    assert diff.missing and diff.misshaped


def test_missing_block_is_reported_by_name(tmp_path, t0_state_dict):
    path = tmp_path / "short.pth"
    torch.save({k: v for k, v in t0_state_dict.items() if not k.startswith("stages.4.blocks.7.")}, path)
    with pytest.raises(KeyMismatch, match=r"missing: stages\.4\.blocks\.7\.") as info:
        load_checkpoint(path)
    # 20 keys in the block; its 4 num_batches_tracked counters are tolerated when missing.
    assert len(info.value.diff.missing) == 16


def test_head_size_follows_the_checkpoint(tmp_path, t0_state_dict):
    sd = dict(t0_state_dict)  # a 10-class head (tests/fixtures/README.md): given the released 1000-class one
    sd["head.weight"], sd["head.bias"] = torch.randn(1000, 1280), torch.randn(1000)
    path = tmp_path / "imagenet.pth"
    torch.save(sd, path)
    model, info = load_checkpoint(path)
    assert info.num_classes == 1000 and logits(model).shape == (2, 1000)


def test_non_finite_weights_are_rejected(tmp_path, t0_state_dict):
    sd = dict(t0_state_dict)
    sd["head.bias"] = torch.full_like(sd["head.bias"], math.nan)
    path = tmp_path / "nan.pth"
    torch.save(sd, path)
    with pytest.raises(BadInput, match="NaN/Inf"):
        load_checkpoint(path)


def test_a_second_copy_of_the_weights_is_named_never_dropped_without_a_word(tmp_path, t0_state_dict, cli):
    """An EMA beside the weights (timm's train checkpoints, DeiT's): the first wrapper is loaded, the others named."""
    ema = {k: v * 0.5 if v.is_floating_point() else v for k, v in t0_state_dict.items()}
    files = {
        "model_and_ema.pth": ({"model": t0_state_dict, "model_ema": ema}, "dict['model']; also holds 'model_ema', not loaded"),
        "timm_train.pth": ({"state_dict": t0_state_dict, "state_dict_ema": ema, "epoch": 3}, "also holds 'state_dict_ema', not loaded"),
        "flat_two.pth": ({**{f"model.{k}": v for k, v in t0_state_dict.items()}, **{f"model_ema.{k}": v for k, v in ema.items()}},
                         "also holds 'model_ema.', not loaded"),
        "one.pth": ({"state_dict": t0_state_dict, "optimizer": {"state": {}}}, "dict['state_dict']"),
    }
    for name, (obj, container) in files.items():
        torch.save(obj, tmp_path / name)
        assert load_checkpoint(tmp_path / name)[1].container.endswith(container), name
    folded = cli("fold", tmp_path / "model_and_ema.pth", "--imgsz", "64", "-o", tmp_path / "d.pt")
    assert folded.code == 0 and "note: loaded dict['model'] (--weights model) of" in folded.out and "it also holds 'model_ema'" in folded.out
    assert "pick a copy with --weights NAME" in folded.out
    timed = cli("bench", tmp_path / "model_and_ema.pth", "--runtime", "onnxruntime", "--imgsz", "64", "--protocol", "quick", "--threads", "1",
                "--json", tmp_path / "b.json", "--csv", tmp_path / "b.csv", "--md", tmp_path / "b.md")  # bench says which copy it timed, in every file
    assert timed.code == 0 and "timed dict['model'] (--weights model); the file also holds 'model_ema'" in timed.out, timed.err
    row = json.loads((tmp_path / "b.json").read_text())["rows"][0]
    assert row["weights"] == "model" and row["container"].startswith("dict['model']; also holds 'model_ema'")
    import csv

    assert [r["weights"] for r in csv.DictReader((tmp_path / "b.csv").open())] == ["model"]
    assert "| partialnet_t0:model_and_ema.pth (--weights model)" in (tmp_path / "b.md").read_text()  # a mark may follow (a busy machine)


def test_a_stray_key_beside_a_prefixed_model_is_not_a_second_copy(tmp_path, t0_state_dict):
    """A `module.` model with one unprefixed `patch_embed.proj.weight` beside it loaded the one key as the
    model ("no known variant matches: depths (0, 0, 0, 0)"); the stray key is now left out and listed."""
    stray = {**{f"module.{k}": v for k, v in t0_state_dict.items()}, "patch_embed.proj.weight": t0_state_dict["patch_embed.proj.weight"]}
    torch.save(stray, tmp_path / "stray.pth")
    model, info = load_checkpoint(tmp_path / "stray.pth")
    assert info.variant == "partialnet_t0" and info.prefix == "module." and info.ignored_keys == ["patch_embed.proj.weight"]
    assert info.weights is None and "also holds" not in info.container  # one copy: nothing else to name


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.ones(1, 3, 64, 64))


def test_weights_picks_any_copy_by_the_name_the_note_gives(tmp_path, t0_state_dict):
    """--weights NAME loads the copy a file names beside the default (an EMA), by top-level key or key prefix;
    a flat dict of an unprefixed model with an `ema.` copy beside it loads either (it used to load neither)."""
    ema = {k: v * 0.5 if v.is_floating_point() else v for k, v in t0_state_dict.items()}
    torch.save(ema, tmp_path / "ema_alone.pth")
    torch.save(t0_state_dict, tmp_path / "main_alone.pth")
    want = {"ema": _logits(load_checkpoint(tmp_path / "ema_alone.pth")[0]), "main": _logits(load_checkpoint(tmp_path / "main_alone.pth")[0])}
    assert not torch.equal(want["ema"], want["main"])
    files = {
        "timm_train.pth": ({"state_dict": t0_state_dict, "state_dict_ema": ema, "epoch": 3}, "state_dict", "state_dict_ema"),
        "lightning.ckpt": ({"state_dict": {**{f"model.{k}": v for k, v in t0_state_dict.items()},
                                           **{f"model_ema.{k}": v for k, v in ema.items()}}}, "model.", "model_ema."),
        "flat.pth": ({**t0_state_dict, **{f"ema.{k}": v for k, v in ema.items()}}, "", "ema."),
        "teacher.pth": ({"model": t0_state_dict, "teacher": {"module": ema}, "optimizer": {"state": {}}}, "model", "teacher"),
        # Lightning's WeightAveraging/EMAWeightAveraging callbacks: the average in `state_dict` (loaded by default,
        # as Lightning itself does), the training weights moved to `current_model_state`
        "weight_averaging.ckpt": ({"state_dict": {f"model.{k}": v for k, v in t0_state_dict.items()},
                                   "current_model_state": {f"model.{k}": v for k, v in ema.items()},
                                   "averaging_state": {"n_averaged": torch.tensor(7)}, "callbacks": {"EMAWeightAveraging": {"latest_update_step": 7}},
                                   "pytorch-lightning_version": "2.6.0"}, "state_dict", "current_model_state"),
    }
    for name, (obj, main, other) in files.items():
        torch.save(obj, tmp_path / name)
        model, info = load_checkpoint(tmp_path / name)
        assert info.weights == main and torch.equal(_logits(model), want["main"]), name
        assert info.container.endswith(f"also holds {other!r}, not loaded"), (name, info.container)
        model, info = load_checkpoint(tmp_path / name, weights=other)
        assert info.weights == other and torch.equal(_logits(model), want["ema"]), name
        assert info.container.endswith(f"also holds {main!r}, not loaded"), (name, info.container)
        with pytest.raises(BadInput, match=f"--weights nope: no model copy by that name; the file holds {main!r}, {other!r}"):
            load_checkpoint(tmp_path / name, weights="nope")
    assert load_checkpoint(tmp_path / "main_alone.pth")[1].weights is None  # one copy: nothing to name
    with pytest.raises(BadInput, match="the file holds one copy, unnamed"):
        load_checkpoint(tmp_path / "main_alone.pth", weights="state_dict_ema")
    assert load_checkpoint(tmp_path / "lightning.ckpt", weights="state_dict")[1].weights == "model."  # one name per copy, recorded
    torch.save({"state_dict": t0_state_dict, "optimizer": {"state": {}}, "epoch": 3}, tmp_path / "opt.pth")
    with pytest.raises(BadInput, match="--weights optimizer: no model copy by that name; the file holds 'state_dict'$"):
        load_checkpoint(tmp_path / "opt.pth", weights="optimizer")
    with pytest.raises(BadInput, match="--weights '': name a model copy"):
        load_checkpoint(tmp_path / "timm_train.pth", weights="")
    with pytest.raises(BadInput, match="is a variant name"):
        resolve("partialnet_t0", weights="state_dict_ema")


def test_an_artifact_is_verified_against_the_copy_it_was_exported_from(tmp_path, t0_state_dict, cli):
    ema = {k: v * 0.5 if v.is_floating_point() else v for k, v in t0_state_dict.items()}
    ckpt = tmp_path / "train.pth"
    torch.save({"state_dict": t0_state_dict, "state_dict_ema": ema}, ckpt)
    exported = cli("export", ckpt, "--imgsz", "64", "--weights", "state_dict_ema", "-o", tmp_path / "m.onnx")
    assert exported.code == 0, exported.err
    assert "note: loaded dict['state_dict_ema'] (--weights state_dict_ema)" in exported.out
    manifest = json.loads((tmp_path / "m.onnx.json").read_text())
    assert manifest["metadata"]["source_weights"] == "state_dict_ema" and manifest["source"]["weights"] == "state_dict_ema"
    verified = cli("verify", tmp_path / "m.onnx", "--ref", ckpt)  # the artifact says which copy, and verify names it
    assert verified.code == 0 and "note: loaded dict['state_dict_ema'] (--weights state_dict_ema)" in verified.out
    timed = cli("bench", tmp_path / "m.onnx", "--runtime", "onnxruntime", "--protocol", "quick", "--threads", "1", "--json", tmp_path / "b.json")
    assert timed.code == 0 and "note: m.onnx: exported from its checkpoint's copy state_dict_ema" in timed.out, timed.err
    assert json.loads((tmp_path / "b.json").read_text())["rows"][0]["weights"] == "state_dict_ema"  # as a checkpoint's row records it
    torch.save(t0_state_dict, tmp_path / "plain.pth")
    stranger = cli("verify", tmp_path / "m.onnx", "--ref", tmp_path / "plain.pth")  # another checkpoint: said so, not a --weights never typed
    assert stranger.code == 2 and "was exported from partialnet_t0 weights with sha256" in stranger.err and "--weights" not in stranger.err
    import onnx

    bare = onnx.load(tmp_path / "m.onnx")  # an artifact without its record (a .pte or .tflite whose manifest was left behind)
    kept = [p for p in bare.metadata_props if p.key not in ("source_sha256", "source_weights")]
    del bare.metadata_props[:]
    bare.metadata_props.extend(kept)
    onnx.save(bare, tmp_path / "bare.onnx")
    unknown = cli("verify", tmp_path / "bare.onnx", "--ref", ckpt)
    assert unknown.code == 2 and "carries no record of the weights it came from" in unknown.err and "--weights" in unknown.err
    named = cli("verify", tmp_path / "bare.onnx", "--ref", ckpt, "--weights", "state_dict_ema")
    assert named.code == 0 and "carries no record of its source" in named.out and "was not checked" in named.out
    other = cli("verify", tmp_path / "m.onnx", "--ref", ckpt, "--weights", "state_dict")
    assert other.code == 2 and "exported from the 'state_dict_ema' copy" in other.err and "Traceback" not in other.err
    nope = cli("fold", ckpt, "--weights", "nope", "-o", tmp_path / "d.pt")
    assert nope.code == 2 and "holds 'state_dict', 'state_dict_ema'" in nope.err and not (tmp_path / "d.pt").exists()


def _refused(cli, path, fragment):
    done = cli("info", path)
    assert done.code == 2 and fragment in done.err and len(done.err.strip().splitlines()) == 1, done.err
    return done


def test_zip_records_are_held_to_what_the_pickle_declares(cli, tmp_path):
    """torch.load(mmap=True) slices a storage for the bytes the pickle declares, whatever the record holds: a record
    cut to 16 bytes loaded its tensor from the records after it (exit 0), and a second pickle named DATA.PKL (torch's
    zip reader ignores case) was the one loaded, never inspected."""
    from hostile import rewrite_zip, zip_records

    records = zip_records(golden("t0")[0])
    first_data = next(name for name, _ in records if "/data/" in name)
    short = [(n, d[:16] if n == first_data else d) for n, d in records]
    _refused(cli, rewrite_zip(tmp_path / "short.pth", short), "holds 16 bytes, its tensor declares")
    pickled = next(d for n, d in records if n.endswith("data.pkl"))
    top = records[0][0].split("/")[0]
    decoy = [(f"{top}/data.pkl", pickle.dumps({"x": 1}, 2)), (f"{top}/DATA.PKL", pickled), *[r for r in records if not r[0].endswith("data.pkl")]]
    _refused(cli, rewrite_zip(tmp_path / "case.pth", decoy), "two records named")
    unused = [*records, (f"{top}/data/999", b"\0" * 64)]
    _refused(cli, rewrite_zip(tmp_path / "unused.pth", unused), "is used by no tensor")
    assert cli("info", rewrite_zip(tmp_path / "same.pth", records)).code == 0  # rewritten as it was: loads


def test_a_file_of_many_model_prefixes_or_self_nested_copies_is_quick(cli, tmp_path, t0_state_dict):
    """20,000 keys ending in patch_embed.proj.weight took 28 s (200,000: hours, quadratic); a thousand top-level
    names of one wrapper that holds itself under every container key took 44 s before loading (exit 0)."""
    import time

    stray = torch.zeros(1)
    torch.save({f"{i}.patch_embed.proj.weight": stray for i in range(20_000)}, tmp_path / "prefixes.pth")
    started = time.monotonic()
    _refused(cli, tmp_path / "prefixes.pth", "20,000 keys end in 'patch_embed.proj.weight'")
    wrapper: dict = {}
    for key in ("state_dict", "model", "model_ema", "state_dict_ema", "ema", "module", "net"):
        wrapper[key] = wrapper
    wrapper.update({f"k{i}": 0 for i in range(1000)})
    torch.save({"model": t0_state_dict, **{f"a{j}": wrapper for j in range(1000)}}, tmp_path / "copies.pth")
    assert cli("info", tmp_path / "copies.pth").code == 0
    assert time.monotonic() - started < 30  # both were minutes; now each is about the load itself


def test_a_dpconv_gate_longer_than_its_block_and_a_nested_tensor_are_refused(cli, tmp_path, t0_state_dict):
    """A gate of 2**44 values was exit 4 (allocating 70 TB as the model was built; 2**28 took 3.2 GB); a legacy
    nested tensor was exit 4 (its shape raises)."""
    from partialnet.models.partialnet import PartialNet
    from partialnet.models.registry import VARIANTS

    variant = VARIANTS["partialnet_t0"]
    mixers = tuple(tuple((variant.embed_dim * 2**s // 4, 5) for _ in range(d)) for s, d in enumerate(variant.depths))
    sd = PartialNet(variant.arch(10, mixers=mixers)).state_dict()
    sd["stages.0.blocks.0.spatial_mixing.gate"] = torch.zeros(1).expand(2**44)
    torch.save(sd, tmp_path / "gate.pth")
    _refused(cli, tmp_path / "gate.pth", "spatial_mixing.gate holds 17,592,186,044,416 values")
    nested = dict(t0_state_dict)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "prototype stage": the legacy kind is the one that slipped through
        nested["stages.0.blocks.0.mlp.0.weight"] = torch.nested.nested_tensor([torch.zeros(2), torch.zeros(3)])
    torch.save(nested, tmp_path / "nested.pth")
    _refused(cli, tmp_path / "nested.pth", "is a nested tensor")


def test_an_error_naming_a_strangers_key_stays_one_bounded_line(cli, tmp_path, t0_state_dict):
    forged = {**t0_state_dict, "evil\nerror: FORGED LINE": torch.zeros(1), "k" * 100_000: torch.zeros(1)}
    torch.save(forged, tmp_path / "forged.pth")
    done = _refused(cli, tmp_path / "forged.pth", "evil\\nerror: FORGED LINE")
    assert len(done.err) < 2_200 and "more characters" in done.err


def test_the_storage_reader_refuses_what_it_cannot_size_and_stays_small(cli, tmp_path):
    """A reference torch loads but this reader could not size let a cut record through (a b"storage" tag built by
    _codecs.encode, a bool numel); a memo slot of 2**28 in a 10-byte pickle took 4 GB; a GLOBAL a class each."""
    from hostile import rewrite_zip, zip_records
    from partialnet.zip_records import _StorageReader, _sized

    reader = _StorageReader(io.BytesIO(b""))
    float_storage = reader.find_class("torch", "FloatStorage")
    assert reader.find_class("torch", "FloatStorage") is float_storage and len(reader.find_class("m" * 10**6, "n").named) == 62
    assert _sized(("storage", float_storage, "0", "cpu", 3)) == 12
    assert _sized(("storage", reader.find_class("torch.storage", "UntypedStorage"), "0", "cpu", 3)) == 3
    for odd in ((b"storage", float_storage, "0", "cpu", 3), ("storage", float_storage, "0", "cpu", True),
                ("storage", float_storage, b"0", "cpu", 3), ("storage", reader.find_class("os", "system"), "0", "cpu", 3)):
        assert _sized(odd) is None, odd
    records = zip_records(golden("t0")[0])
    memo = [(n, b"\x80\x02Nr\x00\x00\x00\x10." if n.endswith("data.pkl") else d) for n, d in records]  # NONE, LONG_BINPUT 2**28
    _refused(cli, rewrite_zip(tmp_path / "memo.pth", memo), "stores at memo slot 268,435,456")


@pytest.mark.parametrize("body, fragment", [
    (b"N" + b"2\x86" * 30, "a structure of over 50,000,000 elements"),  # each tuple holds the last one twice: 2**31 to hash
    (b"N" + b"\x85" * 300, "nest over 200 deep"),  # a million of these segfaulted the hash of a dict key
], ids=["shared-tuples", "deep-tuples"])
def test_a_pickle_whose_objects_would_hang_or_crash_their_use_is_refused(cli, tmp_path, body, fragment):
    """A 200-byte pickle of shared tuples hung in C (no Ctrl-C) once hashed; deep ones overflowed the C stack."""
    from hostile import rewrite_zip, zip_records

    records = [(n, b"\x80\x02" + body + b"." if n.endswith("data.pkl") else d) for n, d in zip_records(golden("t0")[0])]
    _refused(cli, rewrite_zip(tmp_path / "shape.pth", records), fragment)


def test_a_state_dict_pickled_with_protocol_4_is_refused_for_its_protocol_with_the_fix(tmp_path):
    """torch's weights-only unpickler reads no FRAME: the refusal said "opcode 149 … save model.state_dict() instead"
    of a file that is a state_dict."""
    path = tmp_path / "proto4.pth"
    torch.save({"w": torch.zeros(2)}, path, pickle_protocol=4)
    with pytest.raises(BadInput) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert "pickled with protocol 4 or later (opcode FRAME)" in message and "re-save its state_dict" in message, message
    assert "obj.state_dict() if hasattr(obj, 'state_dict') else obj" in message  # a whole model pickled so: its weights, not it
    assert "save model.state_dict() instead" not in message and "149" not in message


@pytest.mark.parametrize("name, head, fmt", [("m.pth", b"\x08\x0a\x12\x0apartialnet\x1a\x0a" * 3, "onnx"),  # an ONNX file renamed
                                             ("m.onnx", b"not protobuf at all, just text " * 2, "onnx"),
                                             ("m.bin", b"\x1c\x00\x00\x00TFL3\x14\x00\x20\x00" * 4, "litert"),
                                             ("m.bin", b"<\x00\x00\x00ET12eh00 \x00\x00\x00" * 4, "executorch"),
                                             ("m.bin", b'<?xml version="1.0"?>\n<net name="x">' * 2, "openvino")])
def test_an_artifact_given_as_a_checkpoint_is_named(tmp_path, name, head, fmt, cli):
    path = tmp_path / name
    path.write_bytes(head)
    for command in (["info", path], ["fold", path, "-o", tmp_path / "d.pt"]):  # the first look (sources) and the reader
        refused = cli(*command)
        assert refused.code == 2 and f"is an exported {fmt} artifact, not a checkpoint: give the checkpoint it was exported from" in refused.err
    with pytest.raises(BadInput, match=f"is an exported {fmt} artifact"):
        load_checkpoint(path)


@pytest.mark.parametrize("head", [b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>' * 2,  # not an IR: no <net>
                                  b"\x08\x01\x12\x05hello" + bytes(range(40)),  # ir_version 1: no ONNX file partialnet reads
                                  b"\x00\x00\x00\x00ETxx" + bytes(range(40))])
def test_a_file_that_only_begins_like_an_artifact_is_not_named_one(tmp_path, head, cli):
    path = tmp_path / "thing.pt"
    path.write_bytes(head)
    refused = cli("info", path)
    assert refused.code == 2 and "not a checkpoint (neither a PyTorch zip/pickle nor a safetensors file)" in refused.err, refused.err
