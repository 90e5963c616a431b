"""torch.hub entry points: `torch.hub.load(repo_or_path, 'unet', ...)` (`unet_carvana`, its first name, is the same).

    model = torch.hub.load("path/to/this/repo", "unet", source="local", pretrained=True,
                           weights="models/fold0/best.pt")

No weights are published with this repository (the demo trains in minutes); `weights` is a checkpoint
written by the train stage, as a path or a URL (http(s):// or file://), whatever its architecture and
encoder; a URL's download is cached under the URL's hash, or under the content's with `weights_sha256`. Without
weights the model is the seed's U-Net (64 base channels, bilinear up-sampling), untrained,
or with `encoder="resnet34"` (and `arch`, `encoder_weights`) a segmentation_models_pytorch network.
"""

dependencies = ["torch", "numpy", "PIL"]


def _fetch(url: str, sha256: str | None):
    """A local copy of the weights at `url`, cached under a name made of the URL's hash (two URLs that end in the
    same file name are two files) or, with `sha256`, of the content's hash, checked after the download."""
    import hashlib
    from pathlib import Path
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    import torch

    from pipeline.errors import UserError
    from pipeline.provenance import file_hash

    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(url2pathname(parsed.path))  # already on this machine: no copy
    key = sha256.lower() if sha256 else hashlib.sha256(url.encode()).hexdigest()
    local = Path(torch.hub.get_dir()) / "checkpoints" / f"{key[:16]}-{Path(parsed.path).name}"
    if not local.is_file() or (sha256 and not file_hash(local).startswith(key)):
        local.parent.mkdir(parents=True, exist_ok=True)
        part = local.with_name(local.name + ".part")
        torch.hub.download_url_to_file(url, str(part), progress=False)
        if sha256 and not file_hash(part).startswith(key):
            part.unlink()
            raise UserError(f"{url} does not have the SHA-256 {sha256} that was asked for; check the URL or the hash")
        part.replace(local)
    return local


def unet(
    pretrained: bool = False,
    scale: float = 0.5,
    weights: str | None = None,
    encoder: str = "none",
    arch: str = "unet",
    encoder_weights: str = "none",
    weights_sha256: str | None = None,
    **kwargs,
):
    """A U-Net of any competition (the seed's, or smp's around `encoder`). `scale` is the input scale the weights
    expect (checked against the checkpoint); `weights_sha256` (a prefix of the file's SHA-256) pins the content of
    weights given as a URL."""
    from pathlib import Path
    from urllib.parse import urlparse

    from pipeline.errors import UserError
    from pipeline.models import encoders
    from pipeline.models.factory import create_model
    from pipeline.prediction.predictor import load_predictor

    if not pretrained and encoder != "none":
        model = create_model(arch, encoder=encoder, in_channels=3, classes=1, **kwargs)
        encoders.load_weights(model, encoder, encoder_weights, in_channels=3)
        model.preprocess = encoders.preprocessing(encoder, encoder_weights)
        return model
    if not pretrained:
        config = {"in_channels": 3, "classes": 1, "base_channels": 64, "bilinear": True, **kwargs}
        return create_model(arch, **config)
    if not weights:
        raise UserError(
            "no weights are published for this repository; pass weights=<checkpoint path or URL> "
            "(models/fold0/best.pt after `dvc repro train`)"
        )
    if urlparse(str(weights)).scheme in ("http", "https", "file"):
        weights = _fetch(str(weights), weights_sha256)
    predictor = load_predictor([Path(weights)])
    pre = predictor.pre
    trained_scale = pre.size[0] / pre.original[0]
    if abs(trained_scale - scale) > 0.01:
        raise UserError(
            f"{weights} was trained at scale {trained_scale:.3g}, not {scale}; pass scale={trained_scale:.3g}"
        )
    (model,) = predictor.models
    model.preprocess = pre.to_dict()  # mean, std and input size, for callers that prepare their own tensors
    return model


unet_carvana = unet  # the first name of the entry point, kept for code that loads it
