"""Labelled images in the ImageFolder layout: the user's own accuracy, and folders that do not fit refused."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
import torch

from partialnet.errors import BadInput
from partialnet.imagefolder import imagenet_wnids, read_folder

Image = pytest.importorskip("PIL.Image")


def _digit_folder(root, per_class: int = 6, classes=range(10), name=str):
    """Held-out digits saved as PNGs, one folder per class (named by `name(label)`)."""
    from partialnet import digits

    _, X_test, _, y_test = digits.split()
    for label in classes:
        folder = root / name(label)
        folder.mkdir(parents=True)
        for i, row in enumerate(X_test[y_test == label][:per_class]):
            Image.fromarray((row.reshape(8, 8) * 15.9).astype(np.uint8)).resize((64, 64), Image.BILINEAR).save(folder / f"{i}.png")
    return root


def test_the_class_order_is_the_standard_imagenet_one():
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids)) and list(wnids) == sorted(wnids)
    assert wnids[0] == "n01440764" and wnids[1] == "n01443537" and wnids[999] == "n15075141"


def test_integer_and_wnid_folders_are_read_round_robin(tmp_path):
    for name, count in (("0", 3), ("2", 1), ("11", 2)):
        (tmp_path / "ints" / name).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (8, 8)).save(tmp_path / "ints" / name / f"{i}.png")
    folder = read_folder(tmp_path / "ints", limit=4)
    assert folder.naming == "index" and [i for _, i in folder.folders] == [0, 11, 2]
    assert list(folder.labels) == [0, 11, 2, 0]  # one per class before a second from any: a cap drops no class
    for wnid in ("n01443537", "n15075141"):
        (tmp_path / "wnids" / wnid).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "wnids" / wnid / "a.jpg")
    assert sorted(read_folder(tmp_path / "wnids").labels) == [1, 999]
    Image.new("RGB", (8, 8)).save(tmp_path / "flat.png")
    assert read_folder(tmp_path / "wnids" / "n01443537") is None  # no class folders: unlabelled, agreement only


@pytest.mark.parametrize("names, fragment", [
    (["0", "n01440764"], "mix class indices and WNIDs"),
    (["n00000001"], "not one of the ImageNet-1K classes"),
    (["cats"], "neither a class index"),
    (["7", "007"], "class folder 007 is neither a class index (0, 1, ...; no leading zeros)"),  # one class, read twice
    (["\u0663"], "class folder \\u0663 is neither"),  # an Arabic-Indic three: a digit to Python's \d, not a class index
])
def test_badly_named_class_folders_are_refused(tmp_path, names, fragment):
    for name in names:
        (tmp_path / name).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / name / "a.png")
    with pytest.raises(BadInput, match=__import__("re").escape(fragment)):
        read_folder(tmp_path)


def test_a_cap_below_the_class_count_spreads_over_the_classes_and_says_so(tmp_path):
    """ImageNet's 1000 classes over the cap of 500: one image each from classes spread over the range (not the first
    by name), and the folder's name says how many were judged."""
    for label in range(8):
        (tmp_path / str(label)).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8)).save(tmp_path / str(label) / f"{i}.png")
    folder = read_folder(tmp_path, limit=4)
    assert sorted(folder.labels) == [0, 2, 4, 6] and folder.name.endswith("(4 labelled images, 4 of 8 classes)")
    assert read_folder(tmp_path, limit=16).name.endswith("(16 labelled images, 8 classes)")


def test_loose_images_beside_class_folders_and_a_file_of_another_kind_are_refused(tmp_path):
    """Loose images next to class folders were left out without a word; a file is decoded only as its suffix says
    (Pillow opens whatever the bytes are: an EPS named .png reached Ghostscript)."""
    from partialnet.preprocess import preprocess

    (tmp_path / "mixed" / "1").mkdir(parents=True)
    for path in (tmp_path / "mixed" / "1" / "x.png", tmp_path / "mixed" / "0.png"):
        Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(BadInput, match=r"holds class folders and loose images \(0.png, ...\)"):
        read_folder(tmp_path / "mixed")
    Image.new("RGB", (8, 8)).save(tmp_path / "gif.png", format="GIF")
    with pytest.raises(BadInput, match="gif.png: not a PNG image Pillow can decode"):
        preprocess(tmp_path / "gif.png", (8, 8))
    (tmp_path / "eps.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\nshowpage\n")
    with pytest.raises(BadInput, match="eps.png: not a PNG image"):
        preprocess(tmp_path / "eps.png", (8, 8))


def test_calibration_folders_may_name_their_classes_anything(tmp_path):
    """--data reads the images round-robin over class folders and never their labels: `cat/` and `dog/` are fine."""
    from partialnet.calibration import check_data, folder_images

    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / name / f"{i}.png")
    check_data(str(tmp_path), 4)
    assert folder_images(str(tmp_path), (32, 32), 3).shape == (3, 3, 32, 32)
    with pytest.raises(BadInput, match="class folder cat is neither a class index"):  # --images judges labels: named as classes
        read_folder(tmp_path)


def test_a_symlinked_class_folder_is_refused(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "set").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "set" / "3")
    with pytest.raises(BadInput, match="symbolic link"):
        read_folder(tmp_path / "set")


@pytest.mark.parametrize("nested, linked", [("sub", False), ("y.png", False), ("sub", True)])
def test_a_folder_inside_a_class_folder_is_refused_by_name(tmp_path, nested, linked):
    """Its images were left out without a word ("1 labelled images"), and so was a folder named like an image,
    or a link to a folder."""
    folder = _digit_folder(tmp_path / "d", per_class=1, classes=range(2))
    real = tmp_path / "elsewhere" if linked else folder / "0" / nested
    real.mkdir()
    Image.new("RGB", (8, 8)).save(real / "b.png")
    if linked:
        os.symlink(real, folder / "0" / nested)
    (folder / "1" / ".ipynb_checkpoints").mkdir()  # a hidden folder (a notebook's) is not the user's images
    with pytest.raises(BadInput, match=f"class folder 0 holds a folder \\({re.escape(nested)}\\): images are read from the class folders"):
        read_folder(folder)


def test_linked_images_are_read_in_either_layout_and_a_broken_one_is_named(tmp_path):
    """A labelled folder skipped images that are links without a word, while a flat one read them: a class folder of
    links (how ImageNet subsets are often made) read as empty. Both read a link to a regular file now."""
    store = tmp_path / "store"
    store.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(store / f"{i}.png")
    for cls in ("0", "1"):
        (tmp_path / "set" / cls).mkdir(parents=True)
    os.symlink(store / "0.png", tmp_path / "set" / "0" / "a.png")
    os.symlink(store / "1.png", tmp_path / "set" / "1" / "b.png")
    (tmp_path / "set" / "1" / "c.png").write_bytes((store / "2.png").read_bytes())
    folder = read_folder(tmp_path / "set")
    assert [p.name for p in folder.files] == ["a.png", "b.png", "c.png"] and folder.labels == (0, 1, 1)
    assert folder.load((64, 64))[0].shape == (3, 3, 64, 64)
    os.symlink(tmp_path / "gone.png", tmp_path / "set" / "1" / "d.png")
    with pytest.raises(BadInput, match="d.png: no such file"):
        read_folder(tmp_path / "set").load((64, 64))


@pytest.mark.parametrize("where", ["root", "flat"])
def test_a_symlink_loop_is_refused_in_one_line(tmp_path, cli, where):
    """A link that cannot be followed (x -> x) raised ELOOP out of the folder reader: exit 4."""
    folder = _digit_folder(tmp_path / "d", per_class=1, classes=range(2))
    if where == "flat":
        folder = tmp_path / "flat"
        folder.mkdir()
        Image.new("RGB", (8, 8)).save(folder / "a.png")
    os.symlink("x", folder / "x")
    result = cli("export", "partialnet_t0", "--imgsz", "64", "--images", folder, "-o", tmp_path / "m.onnx")
    assert result.code == 2 and "x is a symbolic link to a folder, or one that cannot be followed" in result.err, result.err


def test_a_bad_image_anywhere_in_images_stops_the_command_before_its_export(tmp_path, cli):
    """Only the first file was decoded up front: a bad later one stopped the command after its export."""
    folder = _digit_folder(tmp_path / "d", per_class=2, classes=range(2))
    (folder / "1" / "zzz.png").write_text("not an image")
    result = cli("export", "partialnet_t0", "--imgsz", "64", "--images", folder, "-o", tmp_path / "m.onnx")
    assert result.code == 2 and "zzz.png" in result.err and "export onnx" not in result.err, result.err
    from partialnet.verify_options import VerifyOptions

    checks = VerifyOptions(images=folder / "0")  # the images decoded up front are the ones judged: kept, not decoded again
    checks.decode_now((64, 64))
    assert checks.judged_on("digits")._read is checks._read
    # calibration images too: decoded before the load and fold (a bad one was found after a 50 s fold at 2048)
    calibrated = cli("export", "partialnet_t0", "--imgsz", "64", "--int8", "--data", folder, "--calib-size", "8", "-o", tmp_path / "q.onnx")
    assert calibrated.code == 2 and "zzz.png" in calibrated.err and "- fold" not in calibrated.err, calibrated.err


def test_image_sets_that_cannot_fit_in_memory_are_refused_before_they_are_decoded(tmp_path, monkeypatch):
    """300 calibration images at 2048x2048 are 15 GB: exit 3 naming the images, not an out-of-memory after the fold."""
    from partialnet import memory
    from partialnet.calibration import check_data
    from partialnet.errors import Unavailable
    from partialnet.verify_options import VerifyOptions

    folder = _digit_folder(tmp_path / "d", per_class=2, classes=range(2))
    monkeypatch.setattr(memory, "available_bytes", lambda: 4 << 30)
    with pytest.raises(Unavailable, match=r"--data .*: 300 images at 2048x2048 need about 42.2 GiB as float32 and this machine has 4.0 GiB"):
        check_data(str(folder), 300, (2048, 2048))
    with pytest.raises(Unavailable, match=r"--images .*: 4 images at 4096x4096 need about 1.5 GiB .* has 1.0 GiB free .*: a smaller --imgsz"):
        monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 30)
        VerifyOptions(images=folder).decode_now((4096, 4096))
    check_data(str(folder), 8, (64, 64))  # what fits is not refused


def test_verify_reports_top1_and_top5_on_labelled_images(cli, digits_ckpt, digits_onnx, tmp_path):
    folder = _digit_folder(tmp_path / "labelled")
    result = cli("verify", digits_onnx, "--ref", digits_ckpt, "--images", folder, "--json")
    assert result.code == 0, result.err
    accuracy = result.json()["accuracy"]
    assert accuracy["dataset"].startswith("labelled/") and accuracy["samples"] == 60
    assert accuracy["reference_top1"] > 0.5 and accuracy["artifact_top1"] == accuracy["reference_top1"]  # fp32: the same picks
    assert accuracy["artifact_top5"] >= accuracy["artifact_top1"] and accuracy["reference_top5"] is not None
    shown = cli("verify", digits_onnx, "--ref", digits_ckpt, "--images", folder)
    assert "10 classes) top-1 (60 images): artifact" in shown.out and "held-out" not in shown.out  # the user's images, not a held-out split
    assert "checks without its runtime" not in shown.err  # onnxruntime runs here: no offline stage (it folded a model it never used)
    assert f"top-5: artifact {accuracy['artifact_top5']:.2%}, PyTorch {accuracy['reference_top5']:.2%}" in " ".join(shown.out.split())


def test_a_folder_whose_classes_the_head_cannot_predict_exits_2(cli, digits_ckpt, digits_onnx, tmp_path):
    folder = _digit_folder(tmp_path / "wide", per_class=1, classes=(3, 12))
    result = cli("verify", digits_onnx, "--ref", digits_ckpt, "--images", folder)
    assert result.code == 2 and "class folder 12 is class 12, but the model has only 10 classes" in result.err, result.err
    wnid = _digit_folder(tmp_path / "wnid", per_class=1, classes=(0,), name=lambda i: imagenet_wnids()[i])
    result = cli("matrix", digits_ckpt, "--images", wnid, "--imgsz", "64", "-o", tmp_path / "m")
    assert result.code == 2 and "ImageNet WNIDs, but the model has 10 classes" in result.err, result.err
    assert not (tmp_path / "m").exists()


def test_wnid_folders_judge_a_1000_class_model(cli, tmp_path, t0_state_dict):
    """A WNID folder scores an ImageNet-head model (random weights here: the artifact must pick as PyTorch does)."""
    gen = torch.Generator().manual_seed(0)  # the fixture's head keeps 10 classes: given the released 1000-class one
    head = {"head.weight": torch.randn(1000, 1280, generator=gen) * 0.02, "head.bias": torch.randn(1000, generator=gen) * 0.02}
    ckpt = tmp_path / "imagenet_t0.pth"
    torch.save({**t0_state_dict, **head}, ckpt)
    out = tmp_path / "t0.onnx"
    assert cli("export", ckpt, "--imgsz", "64", "-o", out).code == 0
    folder = _digit_folder(tmp_path / "imagenet", per_class=2, classes=(0, 1, 2), name=lambda i: imagenet_wnids()[(0, 1, 999)[i]])
    result = cli("verify", out, "--ref", ckpt, "--images", folder, "--json")
    assert result.code == 0, result.err
    accuracy = result.json()["accuracy"]
    assert accuracy["samples"] == 6 and accuracy["artifact_top1"] == accuracy["reference_top1"]


def test_matrix_judges_the_users_labelled_images(cli, digits_ckpt, tmp_path):
    folder = _digit_folder(tmp_path / "labelled", per_class=3)
    result = cli("matrix", digits_ckpt, "--images", folder, "--imgsz", "64", "--formats", "onnx", "--precisions", "fp32",
                 "--protocol", "quick", "-o", tmp_path / "m", "--json", tmp_path / "m.json")
    assert result.code == 0, result.err
    import json

    data = json.loads((tmp_path / "m.json").read_text())
    assert data["accuracy"].startswith("your labelled images: labelled/ (30 labelled images")
    rows = {(r["format"], r["precision"]): r for r in data["rows"]}
    assert rows[("onnx", "fp32")]["top1"] == rows[("pytorch", "fp32")]["top1"] and rows[("onnx", "fp32")]["top5"] is not None


@pytest.mark.parametrize("labelled", [True, False], ids=["labelled", "flat"])
def test_a_command_decodes_its_images_once_per_size(tmp_path, monkeypatch, labelled):
    """An INT8 export judges --images before lowering, as the artifact, and in its per-layer report: one decode."""
    from partialnet import preprocess
    from partialnet.verify_options import VerifyOptions

    root = _digit_folder(tmp_path / "d", per_class=1, classes=range(3))
    if not labelled:
        for png in sorted(root.glob("*/*.png")):
            png.rename(root / f"{png.parent.name}.png")
            png.parent.rmdir()
    decoded = []
    real = preprocess.preprocess
    monkeypatch.setattr(preprocess, "preprocess", lambda path, imgsz: decoded.append(path) or real(path, imgsz))
    checks = VerifyOptions(images=root)
    first, labels = checks.images_at((32, 32))
    again, _ = checks.images_at([32, 32])
    assert again is first and first.shape == (3, 3, 32, 32) and len(decoded) == 3
    assert (labels is not None) == labelled
    assert checks.images_at((64, 64))[0].shape == (3, 3, 64, 64) and len(decoded) == 6
    assert VerifyOptions().images_at((32, 32)) == (None, None)
    from dataclasses import asdict

    assert VerifyOptions(**asdict(checks)) == checks  # the options travel to matrix's second process as asdict: no cache in them


def test_a_calibration_folder_is_decoded_once_to_calibrate_and_judge(tmp_path, monkeypatch):
    """An INT8 export without held-out images is judged on its calibration folder: the images it already decoded."""
    from partialnet import preprocess
    from partialnet.calibration import calibration_images, judging_images

    root = _digit_folder(tmp_path / "d", per_class=1, classes=range(3))
    decoded = []
    real = preprocess.preprocess
    monkeypatch.setattr(preprocess, "preprocess", lambda path, imgsz: decoded.append(path) or real(path, imgsz))
    calibration = calibration_images(str(root), (32, 32), 8)
    name, images = judging_images(str(root), (32, 32), 8, calibration)
    assert images is calibration and len(decoded) == 3 and name == "calibration images (3, seen by the quantizer)"


def test_a_16_bit_grey_image_keeps_its_range_and_a_float_one_is_refused(tmp_path):
    """Pillow's convert("RGB") clips 16-bit grey at 255: a 16-bit PNG of a gradient came out 99.6 % white."""
    from partialnet.preprocess import preprocess

    wide = (np.arange(96 * 96, dtype=np.uint32).reshape(96, 96) * 7).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert Image.open(tmp_path / "wide.png").mode == "I;16"
    Image.fromarray((wide >> 8).astype(np.uint8)).save(tmp_path / "narrow.png")
    np.testing.assert_array_equal(preprocess(tmp_path / "wide.png", (64, 64)), preprocess(tmp_path / "narrow.png", (64, 64)))
    Image.fromarray(np.random.default_rng(0).random((32, 32), dtype=np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(BadInput, match="floating-point image has no fixed range"):
        preprocess(tmp_path / "float.tiff", (64, 64))
