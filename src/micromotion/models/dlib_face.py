"""dlib's face-recognition network (`dlib_face_recognition_resnet_model_v1.dat`) in PyTorch, read from dlib's file.

The architecture is `anet_type` of dlib's `examples/dnn_face_recognition_ex.cpp` (the same type as the Python
binding's `face_recognition_model_v1`, `tools/python/src/face_recognition.cpp`), a 29-conv ResNet:

    input_rgb_image_sized<150>: (pixel - mean) / 256 per channel, the means stored in the file
    con<32,7,7,2,2>, affine, relu, max_pool<3,3,2,2>     no padding: dlib pads only stride-1 layers (k // 2)
    14 residual blocks ("levels" 32x3, 64x4, 128x3, 256x3, 256x1): conv3x3(stride), affine, relu, conv3x3,
      affine, + skip, relu. A level's first block but the first level's (`ares_down`) has stride 2 and
      avg_pool<2,2,2,2> on its skip path; dlib's `add_prev` adds tensors of different sizes by zero-filling
      the missing channels, rows and columns (`tt::add`). At 150 px that fills the skip's channels at the
      64-, 128- and 256-wide levels, and twice the conv output's last row and column: 8x8 -> 3x3 (conv) +
      4x4 (pool) = 4x4, then 4x4 -> 1x1 + 2x2 = 2x2
    avg_pool_everything, fc_no_bias<128>                 the descriptor, not normalized (`loss_metric`)

`affine` layers are dlib's test-time batch norm, a per-channel scale and shift. Distances between descriptors
below 0.6 mean "same person" (dlib's threshold).

Equal to dlib: on the chips `dlib.get_face_chip` cuts from real photos, every descriptor component is within
1e-5 of `face_recognition_model_v1.compute_face_descriptor` (tests/models/test_dlib_face.py; measured numbers
in docs/results.md, "Generator, models, alignment").

The file is read by `micromotion.io.dlib` (no dlib needed, no code runs) through one explicit layout derived
from the module (`dlib_layout`): every layer's type, kernel, stride, padding and tensor shape is checked, and
every weight of the module must be filled. Reading takes well under a second, so there is no converted copy.
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
from ..io.dlib import DlibFormatError, DlibLayer, DlibStream
from ..io.files import check_state_dict

log = logging.getLogger(__name__)

__all__ = ["DlibFaceConfig", "DlibFace", "dlib_layout", "read_dlib_face", "load_dlib_face", "MODEL_FILE",
           "SAME_PERSON_DISTANCE", "CHIP_BOX", "chip_crops"]

#: The model file as the `face-recognition-models` package ships it (dlib-models' file, decompressed).
MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
#: dlib's threshold: descriptors closer than this are the same person.
SAME_PERSON_DISTANCE = 0.6
#: Where dlib's 150 px face chip (padding 0.25) lies in an FFHQ-aligned image, as fractions of its side:
#: centre x, centre y, side. Measured with dlib's detector, 68-point predictor and `get_face_chip_details` on 24
#: samples of mobilestylegan-ffhq-1024 (psi 0.8, seed 424242): 0.504 ± 0.009, 0.605 ± 0.008, 0.693 ± 0.027,
#: rotation 0.003 ± 0.026 rad.
CHIP_BOX = (0.504, 0.605, 0.693)
_WHAT = "dlib's face recognition network"
_TODO = f"give dlib's {MODEL_FILE} (installed by `pip install face-recognition-models`)"


@dataclass
class DlibFaceConfig:
    """Architecture of dlib's metric-learning ResNet. Defaults: `dlib_face_recognition_resnet_model_v1`."""

    input_size: int = 150  # input_rgb_image_sized<150>
    stem_width: int = 32  # con<32,7,7,2,2>
    stem_kernel: int = 7
    # (width, blocks) per level, input side first: dlib's alevel4 ... alevel0
    levels: tuple[tuple[int, int], ...] = ((32, 3), (64, 4), (128, 3), (256, 3), (256, 1))
    embed_dim: int = 128  # fc_no_bias<128>

    def __post_init__(self):
        self.levels = tuple((int(w), int(n)) for w, n in self.levels)
        if not self.levels or min(min(lv) for lv in self.levels) < 1:
            raise ValueError(f"levels {self.levels} must be non-empty (width, blocks) pairs of positive numbers")

    @classmethod
    def tiny(cls) -> "DlibFaceConfig":
        """A few-thousand-parameter network of the same layout, for tests; 40 px inputs hit the same
        zero-filled additions (channels, and a 3x3 conv output added to a 4x4 pooled skip) as 150 px ones."""
        return cls(input_size=40, stem_width=4, levels=((4, 1), (8, 2), (8, 1)), embed_dim=16)

    def blocks(self) -> list[tuple[int, int, int]]:
        """(in_channels, width, stride) of every residual block, input side first."""
        out, in_ch = [], self.stem_width
        for i, (width, n) in enumerate(self.levels):
            for k in range(n):
                out.append((in_ch, width, 2 if i > 0 and k == 0 else 1))
                in_ch = width
        return out


def _conv(in_ch: int, out_ch: int, k: int, stride: int) -> nn.Conv2d:
    # dlib's con_ default padding: k // 2 at stride 1, none otherwise
    return nn.Conv2d(in_ch, out_ch, k, stride, padding=k // 2 if stride == 1 else 0)


class Affine(nn.Module):
    """dlib's `affine` in CONV_MODE: x * weight[c] + bias[c] (a batch norm folded at test time)."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def _add_zero_filled(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's `tt::add` of two [N, C, H, W] tensors: the sum over the larger size, missing entries read 0."""
    if a.shape == b.shape:
        return a + b
    size = [max(p, q) for p, q in zip(a.shape[1:], b.shape[1:])]

    def fill(t):
        return F.pad(t, (0, size[2] - t.shape[3], 0, size[1] - t.shape[2], 0, size[0] - t.shape[1]))

    return fill(a) + fill(b)


class ResBlock(nn.Module):
    """`ares` (stride 1) / `ares_down` (stride 2, 2x2 average pool on the skip):
    relu(affine2(conv2(relu(affine1(conv1(x))))) + skip(x)), added zero-filled."""

    def __init__(self, in_ch: int, width: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv1 = _conv(in_ch, width, 3, stride)
        self.affine1 = Affine(width)
        self.conv2 = _conv(width, width, 3, 1)
        self.affine2 = Affine(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.stride > 1 else x
        return F.relu(_add_zero_filled(skip, y))


class DlibFace(nn.Module):
    """150x150 face chips -> 128-d descriptors, equal to dlib's `face_recognition_model_v1`.

    `forward` takes chips as `dlib.get_face_chip(image, shape, size=150, padding=0.25)` cuts them, as float RGB
    in dlib's pixel scale [0, 255] (uint8 values; fractions are fine and not rounded); `embed` takes crops of
    any size in [-1, 1]. Differentiable with respect to the input; no batch norm or dropout, so train and eval
    mode compute the same.
    """

    def __init__(self, cfg: DlibFaceConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DlibFaceConfig()
        self.register_buffer("input_mean", torch.tensor([122.782, 117.001, 104.298]))  # read from the file
        self.stem = _conv(3, cfg.stem_width, cfg.stem_kernel, 2)
        self.stem_affine = Affine(cfg.stem_width)
        self.blocks = nn.ModuleList(ResBlock(*b) for b in cfg.blocks())
        self.fc = nn.Linear(cfg.levels[-1][0], cfg.embed_dim, bias=False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        """chips: [N, 3, input_size, input_size] RGB in [0, 255] -> descriptors [N, embed_dim]."""
        s = self.cfg.input_size
        if chips.ndim != 4 or chips.shape[1:] != (3, s, s):
            raise ValueError(f"DlibFace input must have shape [N, 3, {s}, {s}], got {list(chips.shape)}; "
                             f"use DlibFace.embed() for crops of another size")
        x = (chips - self.input_mean.to(chips.dtype)[:, None, None]) / 256
        x = F.max_pool2d(F.relu(self.stem_affine(self.stem(x))), 3, 2)
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean(dim=(2, 3)))

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """crops: [N, 3, H, W] RGB in [-1, 1], aligned as `dlib.get_face_chip` aligns (eyes, nose and mouth
        where its 150 px chips with padding 0.25 have them) -> descriptors [N, embed_dim].

        Crops of another size are resized to `input_size` (bilinear, antialiased when shrinking): that is close
        to, not equal to, dlib's own chip sampling, which resamples the photo directly at 150 px."""
        if crops.ndim != 4 or crops.shape[1] != 3:
            raise ValueError(f"crops must have shape [N, 3, H, W], got {list(crops.shape)}")
        s = self.cfg.input_size
        if crops.shape[2:] != (s, s):
            crops = F.interpolate(crops, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
        return self((crops + 1) * 127.5)


# ----------------------------------------------------------------------------------------------------------
# Reading dlib's file


def dlib_layout(net: DlibFace) -> list[tuple]:
    """dlib's nesting of `net`, innermost (input side) first, as the C++ type spells it: ("layer", kind,
    attrs, {tensor: (state-dict key, shape)}) for each `add_layer`, ("tag", id) / ("skip", id) for
    tag1/tag2/skip1. The file stores the layers' versions outermost first, then the input layer, then every
    layer's details innermost first."""

    def con(c: nn.Conv2d, key: str) -> tuple:
        k, st, p = c.kernel_size[0], c.stride[0], c.padding[0]
        attrs = {"num_filters": c.out_channels, "nr": k, "nc": k, "stride_y": st, "stride_x": st,
                 "padding_y": p, "padding_x": p, "use_relu": False}
        return ("layer", "con", attrs, {"weight": (f"{key}.weight", tuple(c.weight.shape)),
                                        "bias": (f"{key}.bias", tuple(c.bias.shape))})

    def affine(a: Affine, key: str) -> tuple:
        n = a.weight.shape[0]
        return ("layer", "affine", {"mode": 0, "disabled": False},
                {"gamma": (f"{key}.weight", (n,)), "beta": (f"{key}.bias", (n,))})

    def pool(kind: str, k: int, stride: int) -> tuple:
        return ("layer", kind, {"nr": k, "nc": k, "stride_y": stride, "stride_x": stride, "padding_y": 0,
                                "padding_x": 0}, {})

    relu = ("layer", "relu", {"disabled": False}, {})
    add_prev = ("layer", "add_prev", {}, {})
    out = [con(net.stem, "stem"), affine(net.stem_affine, "stem_affine"), relu, pool("max_pool", 3, 2)]
    for i, b in enumerate(net.blocks):
        key = f"blocks.{i}"
        out += [("tag", 1), con(b.conv1, f"{key}.conv1"), affine(b.affine1, f"{key}.affine1"), relu,
                con(b.conv2, f"{key}.conv2"), affine(b.affine2, f"{key}.affine2")]
        if b.stride > 1:  # residual_down = add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<tag1<SUBNET>>>>>>
            out += [("tag", 2), ("skip", 1), pool("avg_pool", 2, 2)]
        out += [add_prev, relu]
    n_in, n_out = net.fc.in_features, net.fc.out_features
    out += [pool("avg_pool", 0, 1),  # avg_pool_everything
            ("layer", "fc", {"num_outputs": n_out, "num_inputs": n_in, "bias_mode": 1, "use_bias": False},
             {"weight": ("fc.weight", (n_in, n_out))})]
    return out


def _take(layer: DlibLayer, expected: tuple, index: int, sd: dict) -> None:
    _, kind, attrs, tensors = expected
    where = f"layer {index} from the input"
    if layer.kind != kind:
        raise DlibFormatError(f"{where} is '{layer.version}', expected a {kind} layer")
    for k, v in attrs.items():
        if layer.attrs.get(k) != v:
            raise DlibFormatError(f"{where} ({layer.version}) has {k}={layer.attrs.get(k)}, expected {v}")
    if set(layer.tensors) != set(tensors):
        raise DlibFormatError(f"{where} ({layer.version}) holds {sorted(layer.tensors)}, expected {sorted(tensors)}")
    for name, (key, shape) in tensors.items():
        t = layer.tensors[name]
        if tuple(t.shape) != shape:
            raise DlibFormatError(f"{where} ({layer.version}): {name} has shape {list(t.shape)}, expected "
                                  f"{list(shape)}")
        t = torch.from_numpy(t.copy())
        sd[key] = t.T.contiguous() if kind == "fc" else t  # dlib's fc weights are [inputs, outputs]


def _read(s: DlibStream, net: DlibFace) -> dict[str, torch.Tensor]:
    s.version((1,), "loss layer")
    at = s.pos
    loss = s.string()
    if loss == "loss_metric_2":
        s.float(), s.float()  # margin, distance threshold: training only
    elif loss != "loss_metric_":
        raise DlibFormatError(f"byte {at}: the loss layer is '{loss}', expected loss_metric_ (metric learning)")
    layout = dlib_layout(net)
    versions = []  # of the add_layers, outermost first
    for i, item in enumerate(reversed(layout)):
        if item[0] == "layer":  # the innermost add_layer holds the input layer
            versions.append(s.version((2, 3) if i == len(layout) - 1 else (1, 2), f"{item[1]} add_layer"))
        else:
            s.version((1,), f"{item[0]} layer")
    at = s.pos
    name = s.string()
    if name != "input_rgb_image_sized":
        raise DlibFormatError(f"byte {at}: the input layer is '{name}', expected input_rgb_image_sized")
    sd = {"input_mean": torch.tensor([s.float() for _ in range(3)], dtype=torch.float32)}
    nr, nc = s.int(), s.int()
    size = net.cfg.input_size
    if (nr, nc) != (size, size):
        raise DlibFormatError(f"the input size is {nr}x{nc}, expected {size}x{size}")
    layers = [item for item in layout if item[0] == "layer"]
    for i, (item, version) in enumerate(zip(layers, reversed(versions))):
        _take(s.layer(), item, i, sd)
        if i == 0:
            s.input_add_layer_state(version)
        else:
            s.add_layer_state(version)
    if s.pos != len(s.data):
        raise DlibFormatError(f"{len(s.data) - s.pos} bytes follow the network at byte {s.pos}")
    return sd


def read_dlib_face(path: str | os.PathLike, cfg: DlibFaceConfig | None = None) -> dict[str, torch.Tensor]:
    """The state dict of `DlibFace(cfg)` from a dlib-serialized network file (default config: dlib's v1 model).
    CheckpointError naming the file when it is not that network."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path}: no such file; {_TODO}")
    s = DlibStream(Path(path).read_bytes(), path)
    try:
        return _read(s, DlibFace(cfg).requires_grad_(False))
    except DlibFormatError as e:
        raise s.fail(_WHAT, e, _TODO) from None


def load_dlib_face(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
                   cfg: DlibFaceConfig | None = None) -> DlibFace:
    """`DlibFace` with dlib's weights, from `path` or (None) the file the `face-recognition-models` package
    installs. Gradients off (it is a loss network; gradients still flow to its input), on `device`."""
    if path is None:
        from ..align import _model_file  # where align finds dlib's other model files

        path = _model_file(MODEL_FILE)
    sd = read_dlib_face(path, cfg)
    net = DlibFace(cfg)
    check_state_dict(net.state_dict(), sd, path, _WHAT)  # the layout fills every key; this guards that
    net.load_state_dict(sd)
    log.info("loaded dlib's face recognition network from %s", path)
    return net.requires_grad_(False).to(device)


def chip_crops(images: torch.Tensor) -> torch.Tensor:
    """The dlib chip's region (`CHIP_BOX`) of FFHQ-aligned images [N, 3, S, S] (differentiable)."""
    s = images.shape[-1]
    cx, cy, side = (round(v * s) for v in CHIP_BOX)
    h = side // 2
    x0, y0 = max(0, cx - h), max(0, cy - h)
    return images[..., y0:min(s, cy + h), x0:min(s, cx + h)]
