"""LPIPS v0.1 with a VGG16 trunk (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric"; richzhang/PerceptualSimilarity `lpips.py`): the projector's perceptual distance.

State-dict keys are torchvision's VGG16 (`features.N.*`) and LPIPS's (`lin{i}.model.1.weight`), so both
official files (registry entries `vgg16-imagenet` and `lpips-vgg`) load as they are.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import MicromotionError

__all__ = ["LPIPSVGG", "at_most_256"]


def at_most_256(x: torch.Tensor) -> torch.Tensor:
    """`x` [N, C, H, W] area-downsampled to 256x256 when larger (square images)."""
    # NVIDIA's projector compares at most 256x256 (VGG was trained on 224x224 images).
    return F.interpolate(x, size=(256, 256), mode="area") if x.shape[-1] > 256 else x


# torchvision's VGG16 `features` layout: conv widths, "M" = 2x2 max-pool. LPIPS taps relu1_2 .. relu5_3.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_LPIPS_TAPS = (3, 8, 15, 22, 29)  # indices of relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in `features`
_LPIPS_CHANNELS = (64, 128, 256, 512, 512)


class LPIPSVGG(nn.Module):
    """LPIPS v0.1 with a VGG16 trunk (Zhang et al. 2018; richzhang/PerceptualSimilarity `lpips.py`).

    Inputs in [-1, 1]; per-image distance = sum over the 5 taps of the spatial mean of the learned
    non-negative channel weighting of squared differences of unit-normalized features. State-dict keys are
    torchvision's (`features.N.*`) and LPIPS's (`lin{i}.model.1.weight`), so both official files load as is.
    """

    name = "lpips"

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        ch = 3
        for v in _VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(ch, int(v), 3, padding=1), nn.ReLU()]
                ch = int(v)
        self.features = nn.Sequential(*layers)
        self.lins = nn.ParameterList([nn.Parameter(torch.zeros(1, c, 1, 1)) for c in _LPIPS_CHANNELS])
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.requires_grad_(False)

    @classmethod
    def from_state_dicts(cls, vgg: dict, lin: dict) -> "LPIPSVGG":
        m = cls()
        feats = {k[len("features."):]: v for k, v in vgg.items() if k.startswith("features.")}
        own = m.features.state_dict()
        missing = sorted(set(own) - set(feats))
        if missing:
            raise MicromotionError(f"VGG16 weights lack features.{missing[0]}; expected a torchvision VGG16 "
                                   f"state dict (registry entry vgg16-imagenet)")
        m.features.load_state_dict({k: feats[k].float() for k in own})
        for i, c in enumerate(_LPIPS_CHANNELS):
            w = lin.get(f"lin{i}.model.1.weight")
            if w is None or tuple(w.shape) != (1, c, 1, 1):
                raise MicromotionError(f"LPIPS weights lack lin{i}.model.1.weight [1, {c}, 1, 1]; expected the "
                                       f"LPIPS v0.1 VGG file (registry entry lpips-vgg)")
            m.lins[i].data.copy_(w.float())
        return m

    def features_of(self, x: torch.Tensor) -> list[torch.Tensor]:
        h = (x - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _LPIPS_TAPS:
                out.append(h / (h.square().sum(1, keepdim=True).sqrt() + 1e-10))
                if len(out) == len(_LPIPS_TAPS):
                    break
        return out

    def distance(self, fx: list[torch.Tensor], ft: list[torch.Tensor]) -> torch.Tensor:
        total = 0
        for a, b, w in zip(fx, ft, self.lins):
            total = total + ((a - b).square() * w).sum(1).mean((1, 2))
        return total

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.distance(self.features_of(at_most_256(x)), self.features_of(at_most_256(target)))
