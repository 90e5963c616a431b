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
        model = torch.hub.load(str(ROOT), "unet", source="local", pretrained=True, scale=0.5, weights=weights)
        reference = checkpoint.build_model(checkpoint.load(tiny_model))
        x = torch.randn(1, 3, 48, 80)
        with torch.no_grad():
            assert torch.equal(model.eval()(x), reference(x))
        assert model.preprocess["size"] == [48, 80]


def test_untrained_is_the_seed_network_and_mistakes_are_explained(tiny_model):
    model = torch.hub.load(str(ROOT), "unet", source="local", pretrained=False)
    assert round(count_parameters(model) / 1e6, 1) == 17.3
    first_name = torch.hub.load(str(ROOT), "unet_carvana", source="local")  # the entry's first name still loads
    assert count_parameters(first_name) == count_parameters(model)
    with pytest.raises(UserError, match="no weights are published"):
        torch.hub.load(str(ROOT), "unet", source="local", pretrained=True)
    with pytest.raises(UserError, match="trained at scale 0.5, not 1.0"):
        torch.hub.load(str(ROOT), "unet", source="local", pretrained=True, scale=1.0, weights=str(tiny_model))


def test_two_urls_that_end_in_the_same_file_name_are_two_models(tiny_model, tmp_path, monkeypatch):
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    for folder in ("a", "b"):
        (tmp_path / "site" / folder).mkdir(parents=True)
    (tmp_path / "site/a/best.pt").write_bytes(tiny_model.read_bytes())
    other = checkpoint.load(tiny_model)  # other weights under the same file name
    other["state_dict"] = {k: v + 0.5 if v.is_floating_point() else v for k, v in other["state_dict"].items()}
    checkpoint.save(tmp_path / "site/b/best.pt", other)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "site"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    for proxy in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    x = torch.randn(1, 3, 48, 80)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        outputs = []
        for path in ("a/best.pt", "b/best.pt", "a/best.pt"):
            model = torch.hub.load(str(ROOT), "unet", source="local", pretrained=True, scale=0.5,
                                   weights=f"{url}/{path}")  # fmt: skip
            with torch.no_grad():
                outputs.append(model.eval()(x))
        assert not torch.equal(outputs[0], outputs[1]) and torch.equal(outputs[0], outputs[2])
        with pytest.raises(UserError, match="does not have the SHA-256 0000"):
            torch.hub.load(str(ROOT), "unet", source="local", pretrained=True, scale=0.5,
                           weights=f"{url}/b/best.pt", weights_sha256="0000")  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
