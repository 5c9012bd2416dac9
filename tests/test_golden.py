"""The judge: our modules reproduce the authors' reference logits from their own checkpoints."""

import pytest
import torch

from partialnet import load_checkpoint
from helpers import golden

TOLERANCE = 1e-5


@pytest.mark.parametrize("variant", ["t0", "t1"])
def test_fixture_reproduces_reference_logits(variant):
    ckpt, x, expected = golden(variant)
    model, info = load_checkpoint(ckpt)
    assert info.variant == f"partialnet_{variant}"
    assert info.variant_inferred
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == expected.shape
    assert (logits - expected).abs().max().item() <= TOLERANCE


def test_t1_fixture_is_detected_with_pat_sp_and_t0_without():
    _, info_t1 = load_checkpoint(golden("t1")[0])
    _, info_t0 = load_checkpoint(golden("t0")[0])
    assert info_t1.pat_sp and not info_t0.pat_sp


def test_named_variant_matches_inferred(t0_state_dict):
    model, info = load_checkpoint(golden("t0")[0], variant="partialnet_t0")
    assert not info.variant_inferred
    assert all(torch.equal(model.state_dict()[k], v) for k, v in t0_state_dict.items())
