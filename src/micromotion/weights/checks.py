"""Structural checks: is this file the kind of model its registry entry says? Used where no checksum is
published, before a first file is trusted. Reads files with the readers below the registry (`micromotion.io.pickle`,
`micromotion.models.stylegan2_convert`), never running pickled code."""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path

from ..errors import CheckpointError, WeightsError
from .registry import WeightSpec

# ----------------------------------------------------------------------------------------------------------
# Structural checks: is this file the kind of model the entry says? (used where no checksum is known)


def _looks_like_html(head: bytes) -> bool:
    s = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return s.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        s.startswith(b"<") and (b"<html" in s[:4096] or b"<!doctype html" in s[:4096]))


def _sniff(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    return "unknown"


_FORMAT_OK = {
    "nvidia-pkl": ("pickle",),
    "torchscript": ("zip",),
    "torch": ("zip", "pickle"),
    "safetensors": ("safetensors",),
    "any": ("zip", "pickle", "safetensors", "unknown"),
}
_FORMAT_DESC = {
    "nvidia-pkl": "an NVIDIA network pickle",
    "torchscript": "a TorchScript archive",
    "torch": "a torch checkpoint (zip or legacy pickle)",
    "safetensors": "a safetensors file",
    "any": "a model file",
}


def _check_basic(path: Path, spec: WeightSpec) -> None:
    size = path.stat().st_size
    if size == 0:
        raise WeightsError("the file is empty")
    with open(path, "rb") as f:
        head = f.read(4096)
    if _looks_like_html(head):
        raise WeightsError("the file is a web page (HTML), not a model: typically a sign-in, quota or "
                           "'virus scan' page saved instead of the file")
    found = _sniff(head)
    if found not in _FORMAT_OK[spec.format]:
        raise WeightsError(f"the file is not {_FORMAT_DESC[spec.format]} (it starts with {head[:8]!r})")
    if spec.size_exact and spec.size is not None and size != spec.size:
        raise WeightsError(f"the file has {size} bytes, the published file has {spec.size}")


def _tensor_shape(sd: Mapping, key: str, what: str) -> tuple[int, ...]:
    import torch

    t = sd.get(key)
    if not isinstance(t, torch.Tensor):
        raise WeightsError(f"no tensor '{key}'; not {what}")
    return tuple(t.shape)


def _torch_object(path: Path):
    try:
        from ..io.pickle import read_torch_file

        return read_torch_file(path)
    except CheckpointError as e:
        raise WeightsError(str(e).removeprefix(f"{path}: ")) from None


def _state_dict(path: Path, what: str) -> Mapping:
    sd = _torch_object(path)
    if not isinstance(sd, Mapping):
        raise WeightsError(f"the file holds a {type(sd).__name__}; expected {what}")
    return sd


def _check_generator(path: Path, spec: WeightSpec) -> None:
    from ..models.stylegan2_convert import read_generator_file

    try:
        G = read_generator_file(path)
    except CheckpointError as e:
        raise WeightsError(str(e).removeprefix(f"{path}: ")) from None
    want = spec.expect.get("resolution")
    if want is not None and G.cfg.resolution != want:
        raise WeightsError(f"the generator is {G.cfg.resolution}x{G.cfg.resolution}, expected {want}x{want}")


def _check_clip(path: Path, spec: WeightSpec) -> None:
    # Inspect the archive without running its TorchScript code.
    try:
        with zipfile.ZipFile(path) as z:
            entries = z.namelist()
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError) as e:
        raise WeightsError(f"not a readable TorchScript archive ({e})") from None
    if bad is not None:
        raise WeightsError(f"the archive is corrupted (bad CRC in '{bad}')")
    if not any(n.endswith("/data.pkl") for n in entries) or not any("/code/" in n for n in entries):
        raise WeightsError("a zip file without TorchScript 'data.pkl' and 'code/'; not a CLIP TorchScript model "
                           "such as OpenAI's ViT-B-32.pt")


def _check_encoder(path: Path, spec: WeightSpec) -> None:
    import torch

    what = "a pSp/e4e/ReStyle encoder checkpoint (dict with 'state_dict', 'opts', 'latent_avg')"
    obj = _torch_object(path)
    if not isinstance(obj, Mapping):
        raise WeightsError(f"the checkpoint holds a {type(obj).__name__}; expected {what}")
    missing = [k for k in ("state_dict", "opts", "latent_avg") if k not in obj]
    if missing:
        raise WeightsError(f"no '{missing[0]}' entry; expected {what}")
    sd, opts = obj["state_dict"], obj["opts"]
    if not isinstance(sd, Mapping) or not isinstance(opts, Mapping) or not isinstance(obj["latent_avg"], torch.Tensor):
        raise WeightsError(f"'state_dict', 'opts' or 'latent_avg' has the wrong type; expected {what}")
    for prefix in ("encoder.", "decoder."):
        if not any(isinstance(k, str) and k.startswith(prefix) for k in sd):
            raise WeightsError(f"the state dict has no '{prefix}*' weights; expected {what}")
    allowed = spec.expect.get("encoder_type")
    found = opts.get("encoder_type")
    if allowed and found is not None and found not in allowed:
        raise WeightsError(f"this checkpoint's encoder_type is '{found}', '{spec.name}' is a "
                           f"'{' or '.join(allowed)}' checkpoint; is it another model's file?")


def _check_arcface(path: Path, spec: WeightSpec) -> None:
    what = "an IR-SE50 (TreB1eN InsightFace_Pytorch) state dict"
    sd = _state_dict(path, what)
    if _tensor_shape(sd, "input_layer.0.weight", what) != (64, 3, 3, 3):
        raise WeightsError(f"'input_layer.0.weight' has the wrong shape; expected {what}")
    if _tensor_shape(sd, "output_layer.3.weight", what) != (512, 512 * 7 * 7):
        raise WeightsError(f"'output_layer.3.weight' is not [512, 25088] (112x112 input); expected {what}")
    n_blocks = len({k.split(".")[1] for k in sd if isinstance(k, str) and k.startswith("body.")})
    if n_blocks != 24:  # IR-50: 3 + 4 + 14 + 3 bottleneck units
        raise WeightsError(f"the body has {n_blocks} units, IR-SE50 has 24; expected {what}")


def _check_lpips(path: Path, spec: WeightSpec) -> None:
    what = "LPIPS VGG linear layers (lin0..lin4)"
    sd = _state_dict(path, what)
    for i, ch in enumerate((64, 128, 256, 512, 512)):
        if _tensor_shape(sd, f"lin{i}.model.1.weight", what) != (1, ch, 1, 1):
            raise WeightsError(f"'lin{i}.model.1.weight' is not [1, {ch}, 1, 1]; expected {what}")


def _check_backbone(path: Path, spec: WeightSpec) -> None:
    what = "a torchvision VGG16 state dict"
    sd = _state_dict(path, what)
    if _tensor_shape(sd, "features.0.weight", what) != (64, 3, 3, 3):
        raise WeightsError(f"'features.0.weight' is not [64, 3, 3, 3]; expected {what}")
    if _tensor_shape(sd, "classifier.6.weight", what) != (1000, 4096):
        raise WeightsError(f"'classifier.6.weight' is not [1000, 4096]; expected {what}")


_CHECKS = {
    "generator": _check_generator,
    "clip": _check_clip,
    "encoder": _check_encoder,
    "arcface": _check_arcface,
    "lpips": _check_lpips,
    "backbone": _check_backbone,
    "file": lambda path, spec: None,
}


def _check_structure(path: Path, spec: WeightSpec) -> None:
    """Raise WeightsError(reason) unless `path` is plausibly the model `spec` describes."""
    _check_basic(path, spec)
    _CHECKS[spec.kind](path, spec)
