"""The model contract: logits of the input size for any size, the seed's parameter counts."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import UserError
from pipeline.models.factory import ARCHS, count_parameters, create_model


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("classes", [1, 4])
def test_logits_have_the_input_size_for_odd_sizes(arch, classes):
    model = create_model(arch, in_channels=3, classes=classes, base_channels=4, depth=3).eval()
    x = torch.randn(2, 3, 61, 95)  # neither divisible by 8, like 1918
    with torch.no_grad():
        assert model(x).shape == (2, classes, 61, 95)


def test_seed_parameter_counts():
    assert (
        round(
            count_parameters(create_model("unet", in_channels=3, classes=1, base_channels=64, bilinear=True)) / 1e6, 1
        )
        == 17.3
    )
    assert (
        round(
            count_parameters(create_model("unet", in_channels=3, classes=1, base_channels=64, bilinear=False)) / 1e6, 1
        )
        == 31.0
    )


def test_transposed_unet_and_grayscale_input():
    model = create_model("unet", in_channels=1, classes=1, base_channels=4, depth=2, bilinear=False).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 30, 45)).shape == (1, 1, 30, 45)


def test_deep_supervision_returns_every_head_in_training_and_their_mean_in_eval():
    model = create_model("unetplusplus", in_channels=3, classes=2, base_channels=4, depth=3, deep_supervision=True)
    x = torch.randn(1, 3, 32, 40)
    heads = model.train()(x)
    assert isinstance(heads, list) and len(heads) == 3 and heads[0].shape == (1, 2, 32, 40)
    with torch.no_grad():
        model.eval()
        assert model(x).shape == (1, 2, 32, 40)


def test_factory_errors_name_the_choices():
    with pytest.raises(UserError, match="unet, unetplusplus"):
        create_model("segformer")
    with pytest.raises(UserError, match="unet:"):
        create_model("unet", in_channels=3, classes=1, widths=3)
