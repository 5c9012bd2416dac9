"""Folding is exact, pass by pass, on the golden fixtures and on every variant; deploy files round-trip."""

import subprocess
import sys

import pytest
import torch

from helpers import golden, randomize_, t0_quick, to_dpconv
from partialnet import BadInput, VARIANTS, create_model, load_checkpoint
from partialnet.folding import count_batchnorms, fold, load_deploy, save_deploy
from partialnet.folding.passes import FoldContext, pat_sp_into_mlp3

TOLERANCE = 1e-5
SMALL = (64, 64)


@pytest.mark.parametrize("variant", ["t0", "t1"])
def test_fold_matches_reference_logits_after_every_pass(variant):
    ckpt, x, expected = golden(variant)
    model, _ = load_checkpoint(ckpt)
    deploy, report = fold(model, (224, 224))
    assert all(p.max_abs_diff <= TOLERANCE for p in report.passes), [(p.name, p.max_abs_diff) for p in report.passes]
    with torch.no_grad():
        assert (deploy(x) - expected).abs().max().item() <= TOLERANCE
    assert count_batchnorms(deploy) == 0 and report.batchnorms_after == 0 and not report.not_folded


def test_fold_sites_per_pass_on_t1():
    model, _ = load_checkpoint(golden("t1")[0])
    _, report = fold(model, (224, 224))
    sites = {p.name: p.sites for p in report.passes}
    # 11 PAT_ch blocks (1+2+8), 2 PAT_sf blocks, 13 PAT_sp, 1 stem + 3 merges + 13 mlp.0/1 pairs.
    assert sites == {
        "dpconv-static": 0,
        "post-attention-bn": 11,
        "conv-bn": 17,
        "srm-gate": 11,
        "gate-stats": 11,
        "pat-sp": 13,
        "layernorm-qkv": 2,
        "rpe-constant": 2,
        "attention-tokens": 2,
        "training-only": 0,
    }
    assert report.params_after < report.params_before and report.gmacs_after < report.gmacs_before


@pytest.mark.parametrize("name", t0_quick(VARIANTS))
def test_every_variant_folds_to_zero_batchnorms_exactly(name):
    model = randomize_(create_model(name), seed=len(name))
    deploy, report = fold(model, SMALL)
    assert count_batchnorms(deploy) == 0
    x = torch.randn(2, 3, *SMALL, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
        assert (deploy(x) - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())
    exported = torch.export.export(deploy, (x,))  # what every exporter builds on
    with torch.no_grad():
        assert torch.allclose(exported.module()(x), deploy(x), atol=1e-6)


def test_dpconv_checkpoint_folds_to_static_partial_convs(tmp_path, t0_state_dict):
    path = tmp_path / "dp.pth"
    torch.save(to_dpconv(t0_state_dict, {(0, 0): 0, (1, 0): 64, (3, 1): 48}), path)
    model, _ = load_checkpoint(path)
    deploy, report = fold(model, SMALL)
    assert report.passes[0].sites == 13 and count_batchnorms(deploy) == 0
    x = torch.randn(1, 3, *SMALL)
    with torch.no_grad():
        assert (deploy(x) - model(x)).abs().max().item() <= TOLERANCE
    assert not any(type(m).__name__ == "DynamicPartialConv" for m in deploy.modules())


def test_deploy_file_round_trip(tmp_path):
    model, _ = load_checkpoint(golden("t1")[0])
    deploy, report = fold(model, SMALL)
    path = tmp_path / "t1.deploy.pt"
    save_deploy(path, deploy, report, {"variant": "partialnet_t1"})
    loaded, meta = load_deploy(path)
    x = torch.randn(2, 3, *SMALL)
    with torch.no_grad():
        assert torch.equal(loaded(x), deploy(x))
    assert meta["imgsz"] == [64, 64] and meta["report"]["batchnorms_after"] == 0
    torch.load(path, weights_only=True)  # the deploy file itself is weights-only loadable


def test_loading_a_deploy_file_does_not_import_torch_dynamo(tmp_path):
    """Each PyTorch bench row loads one in a fresh process: torch._dynamo's import (about 1 s on a 2-core
    Xeon, more on the H200 machine) would be paid by every row, and counted in its memory."""
    model, _ = load_checkpoint(golden("t1")[0])  # T1 has every kind of fold site
    path = tmp_path / "t1.deploy.pt"
    save_deploy(path, *fold(model, SMALL), {})
    code = ("import sys; from partialnet.folding import load_deploy; load_deploy(sys.argv[1]); "
            "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo imported'")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-500:]


def test_a_rebuild_takes_no_decision_from_the_weights():
    """A deploy file's structure is replayed on unread memory: which sites fold comes from the recorded skips alone."""
    model, _ = load_checkpoint(golden("t1")[0])
    with torch.no_grad():
        model.stages[2].blocks[1].mlp[4].norm.weight[3] = 0.0  # a real fold leaves this site unfolded
    outcome = pat_sp_into_mlp3(model, FoldContext(SMALL, rebuild=True))
    assert "stages.2.blocks.1.mlp.4" in outcome.folded and not outcome.skipped


def test_unfoldable_site_is_reported_and_survives_reload(tmp_path):
    model, _ = load_checkpoint(golden("t1")[0])
    with torch.no_grad():
        model.stages[2].blocks[1].mlp[4].norm.weight[3] = 0.0
    deploy, report = fold(model, SMALL)
    assert [s["site"] for s in report.not_folded] == ["stages.2.blocks.1.mlp.4"]
    assert "zero scale" in report.not_folded[0]["reason"]
    x = torch.randn(1, 3, *SMALL)
    with torch.no_grad():
        assert (deploy(x) - model(x)).abs().max().item() <= TOLERANCE
    path = tmp_path / "d.pt"
    save_deploy(path, deploy, report, {})
    with torch.no_grad():
        assert torch.equal(load_deploy(path)[0](x), deploy(x))


def test_deploy_model_refuses_another_input_size():
    deploy, _ = fold(create_model("partialnet_t0"), SMALL)
    with pytest.raises(BadInput, match="folded for 64x64 inputs, got 96x96 \\(its channel-gate map is 24x24, not 16x16\\)"):  # the size the user gave
        deploy(torch.randn(1, 3, 96, 96))


def test_fold_leaves_the_original_untouched():
    model = randomize_(create_model("partialnet_t1"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fold(model, SMALL)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert count_batchnorms(model) == 65


def test_report_tracks_params_per_pass_and_gmacs_before_and_after():
    model, _ = load_checkpoint(golden("t1")[0])
    _, report = fold(model, SMALL)
    by_name = {p.name: p for p in report.passes}
    # PAT_sp's norm2+conv disappear into mlp.3: fewer params after that pass than before it.
    assert by_name["pat-sp"].params_after < by_name["srm-gate"].params_after
    assert report.passes[-1].params_after == report.params_after
    assert 0 < report.gmacs_after < report.gmacs_before  # measured once before and once after, not per pass


def test_version_2_deploy_file_is_rebuilt_with_its_own_passes(tmp_path):
    from partialnet.folding import deploy_payload

    model, _ = load_checkpoint(golden("t1")[0])
    old, report = fold(model, SMALL, version=2)
    assert {"gate-stats", "attention-tokens"}.isdisjoint(p.name for p in report.passes)
    path = tmp_path / "v2.pt"
    torch.save({**deploy_payload(old, report, {}), "version": 2}, path)
    loaded, meta = load_deploy(path)
    x = torch.randn(2, 3, *SMALL)
    with torch.no_grad():
        assert torch.equal(loaded(x), old(x))
        assert (loaded(x) - fold(model, SMALL)[0](x)).abs().max().item() <= TOLERANCE
    assert meta["version"] == 2


def test_ablation_fold_round_trips_and_unknown_passes_are_refused(tmp_path):
    from partialnet.folding import deploy_payload

    model, _ = load_checkpoint(golden("t0")[0])
    deploy, report = fold(model, SMALL, without={"gate-stats"})
    assert "gate-stats" not in [p.name for p in report.passes]
    path = tmp_path / "ablation.pt"
    save_deploy(path, deploy, report, {})
    x = torch.randn(1, 3, *SMALL)
    with torch.no_grad():
        assert torch.equal(load_deploy(path)[0](x), deploy(x))
    with pytest.raises(BadInput, match="unknown fold pass"):
        fold(model, SMALL, without={"no-such-pass"})
    payload = deploy_payload(deploy, report, {})
    payload["report"]["passes"][0]["name"] = "rm -rf"
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(BadInput, match="does not know: rm -rf"):
        load_deploy(tmp_path / "bad.pt")


def test_fold_refuses_a_model_whose_own_logits_are_nan():
    model = randomize_(create_model("partialnet_t0"))
    with torch.no_grad():
        model.stages[0].blocks[0].mlp[1].running_var.fill_(-1.0)  # sqrt of a negative variance: NaN logits
    with pytest.raises(BadInput, match="own logits are NaN"):
        fold(model, SMALL)


def test_fold_check_fails_when_a_pass_turns_the_logits_nan(monkeypatch):
    import dataclasses

    import partialnet.folding as folding
    from partialnet import CheckFailed

    def poisoned(fold_pass):
        def apply(deploy, ctx):
            outcome = fold_pass.apply(deploy, ctx)
            deploy.head.bias.data[0] = float("nan")
            return outcome

        return dataclasses.replace(fold_pass, apply=apply)

    monkeypatch.setattr(folding, "PASSES", [poisoned(p) if p.name == "conv-bn" else p for p in folding.PASSES])
    with pytest.raises(CheckFailed, match="nan.*'conv-bn'"):
        fold(randomize_(create_model("partialnet_t0")), SMALL)


@pytest.mark.parametrize("imgsz", [(63, 64), (64, 32), (0, 64)])
def test_the_python_fold_refuses_the_sizes_the_cli_refuses(imgsz):
    with pytest.raises(BadInput, match="multiple of 32"):
        fold(create_model("partialnet_t0"), imgsz)


def test_fold_leaves_the_callers_model_as_it_was_and_scales_its_gate_with_the_logits():
    """docs/python-api.md: "folds a copy (the original is untouched)" held for the weights but not the dtype or
    mode; and a head scaled to logits of several hundred moves by ordinary fp32 round-off past an absolute 1e-4."""
    import partialnet

    model = partialnet.create_model("partialnet_t0", num_classes=10).to(torch.bfloat16).train()
    partialnet.fold(model, (64, 64), measure=False)
    assert next(model.parameters()).dtype == torch.bfloat16 and model.training
    loud = partialnet.create_model("partialnet_t0", num_classes=10).eval()
    with torch.no_grad():
        loud.head.weight.mul_(3000.0)
    deploy, report = partialnet.fold(loud, (64, 64), measure=False)
    scale = loud(torch.randn(1, 3, 64, 64)).abs().max().item()
    assert scale > 10 and all(p.max_abs_diff <= 1e-4 * scale for p in report.passes)
