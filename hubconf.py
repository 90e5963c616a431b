"""torch.hub entry points: `torch.hub.load(repo_or_path, 'unet_carvana', ...)`.

    model = torch.hub.load("path/to/this/repo", "unet_carvana", source="local", pretrained=True,
                           weights="models/fold0/best.pt")

No weights are published with this repository (the demo trains in minutes); `weights` is a checkpoint
written by the train stage, as a path or a URL (http(s):// or file://), whatever its architecture and
encoder. Without weights the model is the seed's U-Net (64 base channels, bilinear up-sampling), untrained,
or with `encoder="resnet34"` (and `arch`, `encoder_weights`) a segmentation_models_pytorch network.
"""

dependencies = ["torch", "numpy", "PIL"]


def unet_carvana(
    pretrained: bool = False,
    scale: float = 0.5,
    weights: str | None = None,
    encoder: str = "none",
    arch: str = "unet",
    encoder_weights: str = "none",
    **kwargs,
):
    """U-Net for Carvana. `scale` is the input scale the weights expect (checked against the checkpoint)."""
    from pathlib import Path
    from urllib.parse import urlparse

    import torch

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
        hub_dir = Path(torch.hub.get_dir()) / "checkpoints"
        hub_dir.mkdir(parents=True, exist_ok=True)
        local = hub_dir / Path(urlparse(str(weights)).path).name
        if not local.is_file():
            torch.hub.download_url_to_file(str(weights), str(local), progress=False)
        weights = local
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
