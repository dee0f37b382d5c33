"""ArcFace IR-SE50 face-identity network (Deng et al. 2019), as used for the identity loss of StyleCLIP.

The layout is TreB1eN's InsightFace_Pytorch `Backbone(112, 50, mode='ir_se')` that pSp, e4e, ReStyle and
StyleCLIP (`models/facial_recognition/model_irse.py`, `helpers.py`) ship with the official
`model_ir_se50.pth`, so that state dict loads key for key: `input_layer.*`, `body.{i}.shortcut_layer.*`,
`body.{i}.res_layer.*` (with the squeeze-excitation unit at `res_layer.5`), `output_layer.*`.

`identity_crop` is StyleCLIP's `IDLoss.extract_feats` preprocessing: images at 256² (average-pooled there when
they are not), the face region `[35:223, 32:220]`, average-pooled to 112².
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError
from ..io.files import check_state_dict

log = logging.getLogger(__name__)

__all__ = ["ArcFaceConfig", "ArcFace", "identity_crop", "load_arcface"]

_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}


@dataclass
class ArcFaceConfig:
    """Architecture of an IR / IR-SE backbone. Defaults: IR-SE50 at 112² (`model_ir_se50.pth`)."""

    units: tuple[int, ...] = _UNITS[50]  # bottleneck units per stage; each stage halves the resolution
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    se: bool = True  # IR-SE (squeeze-excitation) vs plain IR
    se_reduction: int = 16
    input_size: int = 112
    embed_dim: int = 512
    affine_output: bool = True  # `Backbone(..., affine=True)`, as StyleCLIP/pSp build it

    def __post_init__(self):
        self.units, self.widths = tuple(int(u) for u in self.units), tuple(int(w) for w in self.widths)
        if len(self.units) != len(self.widths) or not self.units or min(self.units) < 1:
            raise ValueError(f"units {self.units} and widths {self.widths} must be equally long and positive")
        if self.input_size % 2 ** len(self.units):
            raise ValueError(f"input_size {self.input_size} must be divisible by {2 ** len(self.units)}")

    @classmethod
    def ir_se50(cls) -> "ArcFaceConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "ArcFaceConfig":
        """A few-thousand-parameter network of the same layout, for tests."""
        return cls(units=(1, 2, 1, 1), widths=(8, 12, 16, 24), stem_width=8, se_reduction=4, embed_dim=32)

    @property
    def output_size(self) -> int:
        return self.input_size // 2 ** len(self.units)


class SEModule(nn.Module):
    """Squeeze-excitation: x * sigmoid(fc2(relu(fc1(mean(x))))), 1x1 convs without bias."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)
        return x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))


class BottleneckIR(nn.Module):
    """BN-conv3x3-PReLU-conv3x3(stride)-BN[-SE] + shortcut (1x1 conv + BN, or identity subsampling)."""

    def __init__(self, in_ch: int, depth: int, stride: int, se: bool, se_reduction: int):
        super().__init__()
        self.stride = stride
        if in_ch == depth:
            self.shortcut_layer = None  # the reference's MaxPool2d(1, stride): plain subsampling, no weights
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_ch, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        layers = [nn.BatchNorm2d(in_ch), nn.Conv2d(in_ch, depth, 3, 1, 1, bias=False), nn.PReLU(depth),
                  nn.Conv2d(depth, depth, 3, stride, 1, bias=False), nn.BatchNorm2d(depth)]
        if se:
            layers.append(SEModule(depth, se_reduction))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shortcut_layer is None:
            shortcut = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
        else:
            shortcut = self.shortcut_layer(x)
        return self.res_layer(x) + shortcut


def ir_units(cfg) -> nn.Sequential:
    """The IR / IR-SE body of `cfg` (`stem_width`, `units` and `widths` per stage, `se`, `se_reduction`): each
    stage's first unit has stride 2. ArcFace's and the ReStyle encoders' backbone."""
    units, in_ch = [], cfg.stem_width
    for n, depth in zip(cfg.units, cfg.widths):
        for k in range(n):
            units.append(BottleneckIR(in_ch, depth, 2 if k == 0 else 1, cfg.se, cfg.se_reduction))
            in_ch = depth
    return nn.Sequential(*units)


class ArcFace(nn.Module):
    """Face crops [N, 3, 112, 112] (RGB, in [-1, 1]) -> unit-length identity embeddings [N, embed_dim].

    Always used in eval mode: its BatchNorms use their running statistics, so every sample of a batch is
    processed independently (batched == one at a time), and Dropout is off.
    """

    def __init__(self, cfg: ArcFaceConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or ArcFaceConfig()
        self.input_layer = nn.Sequential(nn.Conv2d(3, cfg.stem_width, 3, 1, 1, bias=False),
                                         nn.BatchNorm2d(cfg.stem_width), nn.PReLU(cfg.stem_width))
        self.body = ir_units(cfg)
        in_ch = cfg.widths[-1]
        s = cfg.output_size
        self.output_layer = nn.Sequential(nn.BatchNorm2d(in_ch), nn.Dropout(0.6), nn.Flatten(),
                                          nn.Linear(in_ch * s * s, cfg.embed_dim),
                                          nn.BatchNorm1d(cfg.embed_dim, affine=cfg.affine_output))
        self.eval()

    def train(self, mode: bool = True) -> "ArcFace":
        # Frozen: train mode would make BatchNorm use (and couple) the statistics of the batch.
        return super().train(False)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """faces: [N, 3, input_size, input_size] -> embeddings [N, embed_dim] of unit L2 norm (float32 or 64)."""
        s = self.cfg.input_size
        if faces.ndim != 4 or faces.shape[1:] != (3, s, s):
            raise ValueError(f"ArcFace input must have shape [N, 3, {s}, {s}], got {list(faces.shape)}; "
                             f"use identity_crop() or ArcFace.embed() for whole face images")
        x = self.output_layer(self.body(self.input_layer(faces)))
        return F.normalize(x if x.dtype == torch.float64 else x.float(), dim=1, eps=0.0)  # the reference divides by the norm without epsilon

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Whole aligned face images [N, 3, H, W] in [-1, 1] -> embeddings, with StyleCLIP's crop."""
        return self(identity_crop(images, self.cfg.input_size))

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], path: str | os.PathLike = "state dict") -> "ArcFace":
        """Build the network a TreB1eN-layout state dict describes (IR / IR-SE, 50/100/152 layers)."""
        cfg = infer_config(sd, path)
        net = cls(cfg)
        own = net.state_dict()
        check_state_dict(own, sd, path, f"an {_describe(cfg)} state dict")
        net.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})
        return net.eval().requires_grad_(False)


def _describe(cfg: ArcFaceConfig) -> str:
    return f"IR{'-SE' if cfg.se else ''} ({sum(cfg.units)} units, TreB1eN InsightFace_Pytorch layout)"


def infer_config(sd: dict, path: str | os.PathLike = "state dict") -> ArcFaceConfig:
    """The `ArcFaceConfig` of a TreB1eN-layout state dict, from its tensor shapes."""
    shape = tensor_shapes(sd, lambda key: f"{path}: no tensor '{key}'; not an IR-SE50 (TreB1eN InsightFace_Pytorch) "
                                          f"state dict such as model_ir_se50.pth")

    stem = shape("input_layer.0.weight")
    if len(stem) != 4 or stem[1:] != (3, 3, 3):
        raise CheckpointError(f"{path}: 'input_layer.0.weight' has shape {list(stem)}, expected [C, 3, 3, 3]")
    idx = numbered(sd, "body")
    if not idx:
        raise CheckpointError(f"{path}: the 'body.*' units are missing or not numbered 0..n-1")
    body = ir_body(sd, shape, idx)
    units, widths = body["units"], body["widths"]
    lin_out, lin_in = shape("output_layer.3.weight")
    spatial = round((lin_in / widths[-1]) ** 0.5)
    if spatial * spatial * widths[-1] != lin_in:
        raise CheckpointError(f"{path}: 'output_layer.3.weight' has {lin_in} inputs, not {widths[-1]} x s x s")
    return ArcFaceConfig(**body, stem_width=stem[0], input_size=spatial * 2 ** len(units), embed_dim=lin_out,
                         affine_output="output_layer.4.weight" in sd)


def tensor_shapes(sd: dict, missing):
    """`shape(key)` -> the shape of tensor `sd[key]`, raising `CheckpointError(missing(key))` where there is none."""
    def shape(key: str) -> tuple[int, ...]:
        t = sd.get(key)
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(missing(key))
        return tuple(t.shape)

    return shape


def numbered(sd: dict, prefix: str) -> list[int]:
    """The indices i of the `prefix.{i}.*` keys of a state dict, [] unless they are 0..n-1."""
    try:
        idx = sorted({int(k.split(".")[1]) for k in sd if isinstance(k, str) and k.startswith(prefix + ".")})
    except ValueError:
        return []
    return idx if idx == list(range(len(idx))) else []


def ir_body(sd: dict, shape, idx: list[int]) -> dict:
    """The IR / IR-SE body `body.{i}` (units `idx`) of a state dict as `units`, `widths`, `se`, `se_reduction`,
    from tensor shapes (`shape(key)`, raising the caller's error for a missing key). Shared by ArcFace and the
    ReStyle encoders, whose backbones are these units."""
    units, widths = [], []
    for i in idx:  # a stage starts where the width changes (true of every TreB1eN and ReStyle configuration)
        depth = shape(f"body.{i}.res_layer.1.weight")[0]
        if not widths or depth != widths[-1]:
            units.append(0)
            widths.append(depth)
        units[-1] += 1
    se = "body.0.res_layer.5.fc1.weight" in sd
    reduction = 16
    if se:
        fc1 = shape("body.0.res_layer.5.fc1.weight")
        reduction = fc1[1] // fc1[0]
    return {"units": tuple(units), "widths": tuple(widths), "se": se, "se_reduction": reduction}


def identity_crop(images: torch.Tensor, size: int = 112) -> torch.Tensor:
    """StyleCLIP `IDLoss.extract_feats` preprocessing: [N, 3, H, W] -> [N, 3, size, size].

    Adaptive average pooling to 256² (skipped when the height is already 256, as in the reference), the
    face region rows 35:223, columns 32:220 of an FFHQ-aligned face, adaptive average pooling to `size`.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape [N, 3, H, W], got {list(images.shape)}")
    x = images
    if x.shape[2] != 256:
        x = F.adaptive_avg_pool2d(x, (256, 256))
    x = x[:, :, 35:223, 32:220]
    return F.adaptive_avg_pool2d(x, (size, size))


def load_arcface(path_or_name: str | os.PathLike = "arcface-ir-se50", device: str | torch.device = "cpu",
                 download: bool = True) -> ArcFace:
    """Load `model_ir_se50.pth` (or another TreB1eN-layout IR/IR-SE state dict) from a file or registry name.

    Read with `torch.load(weights_only=True)`; no pickled code runs. Returns an eval-mode network with
    gradients off on `device`.
    """
    from ..io.pickle import read_torch_file

    p = Path(path_or_name).expanduser()
    if not p.is_file():
        from ..weights import resolve_model

        p = resolve_model(str(path_or_name), kind="arcface", download=download)
    sd = read_torch_file(p)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{p}: holds a {type(sd).__name__}, expected an IR-SE50 state dict")
    sd = {k.removeprefix("module."): v for k, v in sd.items()}  # saved from nn.DataParallel
    net = ArcFace.from_state_dict(sd, p)
    log.info("loaded ArcFace %s from %s", _describe(net.cfg), p)
    return net.to(device)
