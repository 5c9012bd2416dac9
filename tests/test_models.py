"""Every variant: the spec's exact param counts and key shapes, FLOPs within 1 %; each code path traceable; any size."""

import json
import warnings

import pytest
import torch

from helpers import SPEC, t0_quick
from partialnet import VARIANTS, BadInput, create_model, measure_cost
from partialnet.api import parse_imgsz
from partialnet.models.partialnet import rpe_buckets

SMALL = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", list(VARIANTS))
def test_params_exact_and_flops_within_one_percent(name):
    variant = VARIANTS[name]
    with torch.device("meta"):
        model = create_model(name)
    cost = measure_cost(model, (224, 224))
    assert cost.params == variant.published_params
    assert abs(cost.gmacs / variant.published_gmacs - 1) < 0.01


@pytest.mark.parametrize("name", [n for n in VARIANTS if n.startswith("partialnet")])
def test_state_dict_keys_and_shapes_equal_spec(name):
    path = SPEC / f"keys_partialnet_{name.removeprefix('partialnet_')}.json"
    spec = json.loads(path.read_text())["state_dict"]
    with torch.device("meta"):
        ours = create_model(name).state_dict()
    assert [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in ours.items()] == [
        (k, shape, dtype) for k, shape, dtype in spec
    ]


# One variant per code path of the training form: GELU (T0), PAT_sp (PartialNet-T1), ReLU (T2), either family.
# Every variant's deploy form, the one the exporters take, is exported in test_fold.py (a variant's size adds
# export time, 2-3 s each for M and L, and no path).
EAGER_PATHS = ("partialnet_t0", "partialnet_t1", "partialnet_t2", "fasternet_t0", "fasternet_t2")


@pytest.mark.parametrize("name", t0_quick(EAGER_PATHS))
def test_export_and_trace_reproduce_eager(name):
    model = create_model(name)
    with torch.no_grad():
        expected = model(SMALL)
    exported = torch.export.export(model, (SMALL,))
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)  # a warning here means a shape leaked into Python
        traced = torch.jit.trace(model, (SMALL,))  # default check_trace=True re-runs and compares
    with torch.no_grad():
        assert torch.equal(exported.module()(SMALL), expected)
        assert torch.equal(traced(SMALL), expected)


@pytest.mark.parametrize("size", [(64, 64), (96, 160), (256, 256)])
def test_any_multiple_of_32_works(size):
    model = create_model("partialnet_t1", num_classes=10)
    with torch.no_grad():
        out = model(torch.randn(2, 3, *size))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_relative_position_bias_follows_input_size():
    model = create_model("partialnet_t0")
    attn = model.stages[6].blocks[0].spatial_mixing.attn
    with torch.no_grad():
        attn.rpe_k.lookup_table_bias.copy_(torch.arange(81.0).expand(4, 81))
    assert attn.attention_bias(2, 2).shape == (1, 4, 4, 4)
    bias = attn.attention_bias(7, 7)
    assert bias.shape == (1, 4, 49, 49)
    # At 7×7 distances are at most round(sqrt(72)) = 8: buckets 40..48, diagonal at 40.
    assert bias.min() == 40 and bias.max() == 48 and torch.all(bias[0, :, range(49), range(49)] == 40)


def test_rpe_piecewise_index_beyond_alpha():
    buckets = rpe_buckets(1, 200)
    # d = 21 is past alpha=20: round(20 + ln(21/20)/ln(8)*20) = 20; d = 160 maps to beta = 40; larger clips.
    assert buckets[0, 21] == 40 + 20
    assert buckets[0, 160] == 40 + 40 and buckets[0, 199] == 80
    assert buckets[0, 20] == 60 and buckets[0, 0] == 40
    assert buckets.max() <= 80 and buckets.min() >= 40


@pytest.mark.parametrize("bad", [[100], [32], [224, 200], [224, 224, 3]])
def test_bad_image_sizes_are_rejected(bad):
    with pytest.raises(BadInput):
        parse_imgsz(bad)


def test_create_model_refuses_downloads_and_unknown_names():
    with pytest.raises(BadInput, match="unknown variant"):
        create_model("partialnet_xl")
    with pytest.raises(BadInput, match="no weights are downloaded"):
        create_model("partialnet_t0", pretrained=True)


def test_variant_names_are_case_and_dash_insensitive():
    assert create_model("PartialNet-T0").arch == create_model("partialnet_t0").arch


@pytest.mark.parametrize("size", [(224, 224), (256, 192)])
def test_the_table_count_equals_the_flop_counter_on_every_variant(size):
    """`partialnet models` reads costs from the layers' shapes (no forward pass); it must agree with torch's
    FLOP counter plus the fvcore terms, MAC for MAC, on all 12 variants and a non-square size."""
    from partialnet.models.flops import layer_macs
    from partialnet.models.partialnet import PartialNet

    for name, variant in VARIANTS.items():
        with torch.device("meta"):
            model = PartialNet(variant.arch())
        assert layer_macs(model, size) == measure_cost(model, size), name


@pytest.mark.parametrize("size", [(224, 224), (256, 192)])
def test_the_shape_count_equals_the_flop_counter_on_deploy_forms(size):
    """`fold` reports the deploy model's cost from its layers' shapes (`model_cost`): every deploy module
    must be charged as the FLOP counter charges it, for every pass left out too (ablations, old files)."""
    from partialnet.folding import DEPLOY_VERSION, rebuild_structure
    from partialnet.folding.passes import PASSES
    from partialnet.models.flops import layer_macs

    forms = [(name, frozenset()) for name in VARIANTS if name.endswith(("_t0", "_t1", "_t2", "_s"))]
    forms += [("partialnet_t1", frozenset({p.name})) for p in PASSES]
    for name, without in forms:
        deploy = rebuild_structure(VARIANTS[name].arch(), size, set(), DEPLOY_VERSION, without)
        assert layer_macs(deploy, size) == measure_cost(deploy, size), (name, without)


def test_the_table_count_refuses_a_dpconv_model():
    from partialnet.models.flops import layer_macs
    from partialnet.models.partialnet import DPCONV, Arch, PartialNet

    arch = Arch("fasternet", 40, (1, 2, 8, 2), "gelu", mixers=tuple(((8, 4),) * d for d in (1, 2, 8, 2)))
    assert arch.is_dpconv and DPCONV
    with torch.device("meta"), pytest.raises(ValueError, match="measure_cost"):
        layer_macs(PartialNet(arch))
