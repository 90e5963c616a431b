"""torch.hub.load on this repository, with local weights."""

from __future__ import annotations

import pytest
import torch

from pipeline.errors import UserError
from pipeline.models import checkpoint
from pipeline.models.factory import count_parameters
from tests.conftest import ROOT


def test_pretrained_from_a_path_and_a_file_url(tiny_model):
    for weights in (str(tiny_model), tiny_model.as_uri()):
        model = torch.hub.load(str(ROOT), "unet_carvana", source="local", pretrained=True, scale=0.5, weights=weights)
        reference = checkpoint.build_model(checkpoint.load(tiny_model))
        x = torch.randn(1, 3, 48, 80)
        with torch.no_grad():
            assert torch.equal(model.eval()(x), reference(x))
        assert model.preprocess["size"] == [48, 80]


def test_untrained_is_the_seed_network_and_mistakes_are_explained(tiny_model):
    model = torch.hub.load(str(ROOT), "unet_carvana", source="local", pretrained=False)
    assert round(count_parameters(model) / 1e6, 1) == 17.3
    with pytest.raises(UserError, match="no weights are published"):
        torch.hub.load(str(ROOT), "unet_carvana", source="local", pretrained=True)
    with pytest.raises(UserError, match="trained at scale 0.5, not 1.0"):
        torch.hub.load(str(ROOT), "unet_carvana", source="local", pretrained=True, scale=1.0, weights=str(tiny_model))
