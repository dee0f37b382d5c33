"""MobileStyleGAN FFHQ-1024 from the OpenVINO IR that the `random-face` PyPI package ships.

`random-face==2021.7.21.1` (Apache-2.0) carries `random_face/data/{MappingNetwork,SynthesisNetwork}.{xml,bin}`,
exported by bes-dev/MobileStyleGAN.pytorch (`Distiller.to_onnx`, then OpenVINO's model optimizer). We read them
with `openvino_ir` (no openvino at run time) and map every constant onto `mobilestylegan.Generator` with one
explicit key map (`synthesis_key_map`, `mapping_key_map`). The export folded three things, recovered by
following the graph from a named constant:

- the demodulation into the conv weights (`Mul_39_copy`, `Mul_306_copy`, ...): the weight of the Convolution
  upstream of `<layer>.bias` (via the noise Add);
- the noise strength into the noise maps (constants `[1, 1, R, R]` added before the bias): we store the map
  divided by its RMS as `noise_const` and the RMS as `noise_strength`, so 'const' noise is the export's map and
  'random' noise has the right scale (the reference's maps were standard normal times the strength);
- the mapping's equalized-lr gains into its MatMul weights and bias (constants named by number only), found by
  walking the chain MatMul -> Add -> PReLU -> Multiply from the input.

The IR was exported with one W `[1, 512]` that every modulation reads; our synthesis takes W+, and 23 identical
rows reproduce it (tests/models/test_mobilestylegan.py against OpenVINO's runtime).
"""
from __future__ import annotations

import hashlib
import importlib.metadata  # noqa: F401  (tests patch the distribution lookup through this module)
import importlib.util  # noqa: F401
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError
from ..io.files import header, read_safetensors, save_safetensors
from .mobilestylegan import Generator, MobileStyleGANConfig
from ..weights.registry import get_spec as _registry_spec
from .openvino_ir import IRGraph, Layer, read_ir

log = logging.getLogger(__name__)

# What the package holds and how to get it: the registry entry's data (`weights.registry`), named here once.
REGISTRY_NAME = "mobilestylegan-ffhq-1024"
_SPEC = _registry_spec(REGISTRY_NAME)
RANDOM_FACE_DISTRIBUTION = _SPEC.package.distribution
RANDOM_FACE_VERSION = _SPEC.package.version
RANDOM_FACE_WHEEL = _SPEC.package.wheel
RANDOM_FACE_DATA_DIR = _SPEC.package.data_dir  # inside the wheel / the installed distribution
FILE_SHA256 = dict(_SPEC.package.files)
FILE_SIZES = dict(_SPEC.package.sizes)
LICENSE = _SPEC.license
HOW_TO_GET = _SPEC.package.how_to_get


def find_random_face_files() -> dict[str, Path]:
    """Paths of the four IR files of the installed `random-face` distribution, found without importing it
    (its `__init__` imports openvino; `weights.package.find_installed`). Raises FileNotFoundError (one line: how
    to get it) when absent."""
    from ..errors import WeightsError
    from ..weights import get_spec
    from ..weights.package import find_installed

    try:
        return find_installed(get_spec(REGISTRY_NAME).package)
    except WeightsError as e:
        raise FileNotFoundError(f"MobileStyleGAN weights not found: {e}") from None


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_files(files: dict[str, Path]) -> None:
    """Check the sha256 of each of the four files; a mismatch is one line naming the file."""
    for name, expected in FILE_SHA256.items():
        got = sha256_file(files[name])
        if got != expected:
            raise ValueError(f"{files[name]}: sha256 {got[:12]}… does not match {name} of random-face "
                             f"{RANDOM_FACE_VERSION} ({expected[:12]}…); the file is modified or from another "
                             f"release; run `micromotion weights download {REGISTRY_NAME}`")


# --------------------------------------------------------------------------------------------------------------
# The key map


class KeyMapError(ValueError):
    """The IR does not have the weights or shapes this architecture needs."""


@dataclass(frozen=True)
class Named:
    """An IR constant by name: `ir` -> our `key`, reshaped to our parameter's shape."""

    ir: str
    key: str


@dataclass(frozen=True)
class FoldedConv:
    """The conv weight (demodulation folded in) of the layer whose bias is `bias`: bias Add <- noise Add <-
    Convolution's weight."""

    bias: str
    key: str


@dataclass(frozen=True)
class FoldedNoise:
    """The noise map (strength folded in) added just before `bias`: -> `key`.noise_const, `key`.noise_strength."""

    bias: str
    key: str


@dataclass(frozen=True)
class StyleGain:
    """The constant that scales the modulation `ir` (a MatMul weight): checked against our `style_gain`."""

    ir: str
    module: str


def synthesis_key_map(cfg: MobileStyleGANConfig) -> list[Named | FoldedConv | FoldedNoise | StyleGain]:
    """IR constants of the synthesis network -> our state_dict keys (prefix `synthesis_net.`), in graph order.

    IR names are the reference's module names under the export wrapper's `m.`; ours: `layers.0` = `conv1`,
    `layers.{2b+1}` / `layers.{2b+2}` = `layers.{b}.conv1` / `.conv2`, `ups.{b}` = `layers.{b}.up`,
    `to_img` = the last block's `to_img` (the only wavelet image that reaches the output).
    """
    m, out = "m.", []

    def styled(src: str, dst: str, depthwise: bool):
        out.extend([Named(f"{src}.conv.modulation.weight", f"{dst}.affine.weight"),
                    Named(f"{src}.conv.modulation.bias", f"{dst}.affine.bias"),
                    StyleGain(f"{src}.conv.modulation.weight", dst)])
        if depthwise:
            out.append(Named(f"{src}.conv.weight_dw", f"{dst}.weight_dw"))
        out.append(FoldedConv(f"{src}.bias", f"{dst}.weight_pw" if depthwise else f"{dst}.weight"))
        if cfg.use_noise:
            out.append(FoldedNoise(f"{src}.bias", dst))
        out.append(Named(f"{src}.bias", f"{dst}.bias"))

    out.append(Named(f"{m}input.input", "const"))
    styled(f"{m}conv1", "layers.0", depthwise=False)
    for b in range(cfg.num_blocks):
        out.extend([Named(f"{m}layers.{b}.up.modulation.weight", f"ups.{b}.affine.weight"),
                    Named(f"{m}layers.{b}.up.modulation.bias", f"ups.{b}.affine.bias")])
        styled(f"{m}layers.{b}.conv1", f"layers.{2 * b + 1}", depthwise=True)
        styled(f"{m}layers.{b}.conv2", f"layers.{2 * b + 2}", depthwise=True)
    last = f"{m}layers.{cfg.num_blocks - 1}.to_img"
    out.extend([Named(f"{last}.conv.modulation.weight", "to_img.affine.weight"),
                Named(f"{last}.conv.modulation.bias", "to_img.affine.bias"),
                StyleGain(f"{last}.conv.modulation.weight", "to_img"),
                Named(f"{last}.conv.weight", "to_img.weight"),
                Named(f"{last}.bias", "to_img.bias")])
    return out


class _Consumer:
    """Hands out IR constants and remembers which it consumed, with errors naming what is missing."""

    def __init__(self, g: IRGraph, what: str):
        self.g, self.what, self.used = g, what, set()

    def fail(self, msg: str):
        raise KeyMapError(f"{self.g.source}: {msg}; this is not the {self.what} IR of MobileStyleGAN "
                          f"(random-face {RANDOM_FACE_VERSION})")

    def layer(self, name: str, for_key: str) -> Layer:
        try:
            layer = self.g.layer(name)
        except KeyError:
            self.fail(f"weight {name!r} (for {for_key}) is missing")
        if layer.type != "Const":
            self.fail(f"{name!r} (for {for_key}) is a {layer.type}, not a constant")
        return layer

    def take(self, layer: Layer) -> np.ndarray:
        self.used.add(layer.id)
        return self.g.const(layer)

    def only_consumer(self, layer: Layer, type_: str, why: str) -> Layer:
        cons = [x for x in self.g.consumers(layer) if x[0].type != "ShapeOf"]  # shape plumbing
        if len(cons) != 1 or cons[0][0].type != type_:
            self.fail(f"{why}: expected {layer.name!r} to feed one {type_}, found "
                      f"{[c.type for c, _ in cons] or 'nothing'}")
        return cons[0][0]

    def input(self, layer: Layer, port_index: int, type_: str, why: str) -> Layer:
        ins = self.g.inputs_of(layer)
        if port_index >= len(ins) or ins[port_index].type != type_:
            self.fail(f"{why}: expected input {port_index} of {layer.name!r} ({layer.type}) to be a {type_}, found "
                      f"{ins[port_index].type if port_index < len(ins) else 'nothing'}")
        return ins[port_index]


def _bias_add_inputs(c: _Consumer, bias_name: str, key: str) -> tuple[Layer, Layer]:
    """For `<layer>.bias`: (the Convolution, the noise constant or None) feeding its Add."""
    bias = c.layer(bias_name, key)
    add = c.only_consumer(bias, "Add", f"bias {bias_name}")
    pre = [x for x in c.g.inputs_of(add) if x.id != bias.id]
    if len(pre) != 1:
        c.fail(f"the Add of {bias_name!r} has no other input")
    pre = pre[0]
    if pre.type == "Add":  # noise, then conv
        ins = c.g.inputs_of(pre)
        conv = [x for x in ins if x.type == "Convolution"]
        noise = [x for x in ins if x.type == "Const"]
        if len(conv) != 1 or len(noise) != 1:
            c.fail(f"expected Convolution + noise constant before the bias {bias_name!r}, found "
                   f"{[x.type for x in ins]}")
        return conv[0], noise[0]
    if pre.type != "Convolution":
        c.fail(f"expected a Convolution before the bias {bias_name!r}, found a {pre.type}")
    return pre, None


def _check_style_gain(c: _Consumer, weight_name: str, key: str, gain: float) -> None:
    """MatMul(style, W) -> Add(bias) -> Reshape -> Multiply(gain): the gain must be ours."""
    w = c.layer(weight_name, key)
    mm = c.only_consumer(w, "MatMul", weight_name)
    add = c.only_consumer(mm, "Add", weight_name)
    reshape = c.only_consumer(add, "Reshape", weight_name)
    mul = c.only_consumer(reshape, "Multiply", weight_name)
    const = [x for x in c.g.inputs_of(mul) if x.type == "Const"]
    if len(const) != 1:
        c.fail(f"no style gain constant after {weight_name!r}")
    value = c.take(const[0])
    if value.size != 1 or not math.isclose(float(value.ravel()[0]), gain, rel_tol=1e-6):
        c.fail(f"style gain after {weight_name!r} is {value.ravel()[:4].tolist()}, this architecture uses {gain:.8g}")


def _fit(c: _Consumer, arr: np.ndarray, ir_name: str, key: str, target: torch.Tensor) -> torch.Tensor:
    if arr.size != target.numel() or [d for d in arr.shape if d != 1] != [d for d in target.shape if d != 1]:
        raise KeyMapError(f"{c.g.source}: {ir_name!r} has shape {list(arr.shape)}, {key} needs "
                          f"{list(target.shape)}")
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32)).reshape(target.shape)


def _haar_ok(c: _Consumer, layer: Layer) -> bool:
    v = c.g.const(layer)
    s = np.float32(1 / math.sqrt(2))
    return v.ndim == 5 and v.shape[3] * v.shape[4] == 2 and bool(np.all(np.abs(np.abs(v) - s) <= 1e-7))


def _assert_all_consumed(c: _Consumer) -> None:
    """Every f32 tensor constant must be consumed, or be an inverse-wavelet filter (checked by value); every
    leaky ReLU has slope 0.2."""
    for layer in c.g.of_type("PReLU"):
        slope = c.g.const(c.input(layer, 1, "Const", f"slope of {layer.name!r}"))
        if slope.size != 1 or not math.isclose(float(slope.ravel()[0]), 0.2, rel_tol=1e-6):
            c.fail(f"leaky ReLU {layer.name!r} has slope {slope.ravel()[:4].tolist()}, this architecture uses 0.2")
    for layer in c.g.of_type("Const"):
        if layer.id in c.used or layer.data.get("element_type") != "f32":
            continue
        shape = [int(s) for s in layer.data.get("shape", "").split(",") if s.strip()]
        if math.prod(shape) <= 1:
            continue  # scalars: slopes, eps, exponents
        if all(x.type == "GroupConvolutionBackpropData" for x, _ in c.g.consumers(layer)) and _haar_ok(c, layer):
            continue
        raise KeyMapError(f"{c.g.source}: constant {layer.name!r} {shape} is not used by the key map "
                          f"(the graph has weights this architecture does not)")


def synthesis_config_from_ir(g: IRGraph, z_dim: int = 512, mapping_layers: int = 8) -> MobileStyleGANConfig:
    """The architecture, read from constant shapes (the IR stores no config)."""
    c = _Consumer(g, "SynthesisNetwork")
    const = g.const(c.layer("m.input.input", "synthesis_net.const"))
    blocks = 0
    while f"m.layers.{blocks}.up.modulation.weight" in {x.name for x in g.of_type("Const")}:
        blocks += 1
    if blocks == 0:
        c.fail("weight 'm.layers.0.up.modulation.weight' (for synthesis_net.ups.0.affine.weight) is missing")
    channels = [const.shape[1]] + [g.const(c.layer(f"m.layers.{b}.conv2.bias", f"synthesis_net.layers.{2 * b + 2}"
                                                  ".bias")).size for b in range(blocks)]
    w_dim = g.const(c.layer("m.conv1.conv.modulation.weight", "synthesis_net.layers.0.affine.weight")).shape[1]
    _, noise = _bias_add_inputs(c, "m.conv1.bias", "synthesis_net.layers.0.bias")
    last = g.const(c.layer(f"m.layers.{blocks - 1}.to_img.bias", "synthesis_net.to_img.bias")).size
    return MobileStyleGANConfig(z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers, channels=tuple(channels),
                                img_channels=last // 4, use_noise=noise is not None)


def synthesis_state_dict(g: IRGraph, G: Generator) -> dict[str, torch.Tensor]:
    """Apply `synthesis_key_map` to the IR: our `synthesis_net.*` tensors, every key and every weight checked."""
    c = _Consumer(g, "SynthesisNetwork")
    net = G.synthesis_net
    target = net.state_dict()
    modules = dict(net.named_modules())
    out: dict[str, torch.Tensor] = {}
    for entry in synthesis_key_map(G.cfg):
        if isinstance(entry, Named):
            out[entry.key] = _fit(c, c.take(c.layer(entry.ir, entry.key)), entry.ir, entry.key, target[entry.key])
        elif isinstance(entry, StyleGain):
            _check_style_gain(c, entry.ir, entry.module, modules[entry.module].style_gain)
        elif isinstance(entry, FoldedConv):
            conv, _ = _bias_add_inputs(c, entry.bias, entry.key)
            wl = c.input(conv, 1, "Const", f"weight of the conv before {entry.bias!r}")
            out[entry.key] = _fit(c, c.take(wl), wl.name, entry.key, target[entry.key])
        elif isinstance(entry, FoldedNoise):
            _, nl = _bias_add_inputs(c, entry.bias, entry.key)
            if nl is None:
                c.fail(f"no noise map before {entry.bias!r}")
            noise = c.take(nl).astype(np.float64)
            rms = float(np.sqrt(np.mean(np.square(noise))))
            key = f"{entry.key}.noise_const"
            scaled = noise / rms if rms > 0 else noise
            out[key] = _fit(c, scaled.astype(np.float32), nl.name, key, target[key])
            out[f"{entry.key}.noise_strength"] = torch.tensor(rms, dtype=torch.float32)
    _assert_all_consumed(c)
    missing = [k for k in target if k not in out]
    if missing:
        raise KeyMapError(f"{g.source}: the key map leaves synthesis_net.{missing[0]} unset")
    return out


def mapping_key_map(g: IRGraph, cfg: MobileStyleGANConfig) -> list[tuple[Layer, Layer]]:
    """(weight, bias) constants of each mapping layer, walking MatMul -> Add -> PReLU -> Multiply from the input.

    The export folded the equalized-lr gains: the MatMul weight is W·lr/sqrt(in), the bias b·lr.
    """
    c = _Consumer(g, "MappingNetwork")
    params = g.of_type("Parameter")
    if len(params) != 1 or list(params[0].outputs[0].dims[1:]) != [cfg.z_dim]:
        c.fail(f"expected one input [N, {cfg.z_dim}], found {[list(p.outputs[0].dims) for p in params]}")
    matmuls = sorted(g.of_type("MatMul"), key=lambda x: x.id)
    if len(matmuls) != cfg.mapping_layers:
        c.fail(f"expected {cfg.mapping_layers} MatMul layers (fc0..fc{cfg.mapping_layers - 1}), found {len(matmuls)}")
    pairs = []
    for i, mm in enumerate(matmuls):
        wl = c.input(mm, 1, "Const", f"weight of mapping layer {i}")
        add = c.only_consumer(mm, "Add", f"mapping layer {i}")
        other = [x for x in g.inputs_of(add) if x.id != mm.id]
        bl = other[0] if other and other[0].type == "Const" else None
        if other and other[0].type == "Reshape":
            bl = c.input(other[0], 0, "Const", f"bias of mapping layer {i}")
        if bl is None:
            c.fail(f"no bias constant for mapping layer {i}")
        c.only_consumer(add, "PReLU", f"mapping layer {i}")
        pairs.append((wl, bl))
    return pairs


def mapping_state_dict(g: IRGraph, G: Generator) -> dict[str, torch.Tensor]:
    """Our `mapping_net.*` tensors: the IR's folded weights divided by our run-time gains."""
    c = _Consumer(g, "MappingNetwork")
    target = G.mapping_net.state_dict()
    out = {}
    for i, (wl, bl) in enumerate(mapping_key_map(g, G.cfg)):
        fc = getattr(G.mapping_net, f"fc{i}")
        w = _fit(c, c.take(wl), wl.name, f"mapping_net.fc{i}.weight", target[f"fc{i}.weight"])
        b = _fit(c, c.take(bl), bl.name, f"mapping_net.fc{i}.bias", target[f"fc{i}.bias"])
        out[f"fc{i}.weight"] = (w.double() / fc.weight_gain).float()
        out[f"fc{i}.bias"] = (b.double() / fc.bias_gain).float()
    _assert_all_consumed(c)
    return out


def load_from_ir(mapping_xml: str | Path, mapping_bin: str | Path, synthesis_xml: str | Path,
                 synthesis_bin: str | Path, w_avg_samples: int = 10000) -> Generator:
    """Our Generator from the four IR files (not checksummed here: see `load_random_face`).

    w_avg (absent from the IR) is `Generator.compute_w_avg(w_avg_samples, seed=0)`; 0 leaves it unset.
    """
    gm, gs = read_ir(mapping_xml, mapping_bin), read_ir(synthesis_xml, synthesis_bin)
    params = gm.of_type("Parameter")  # z_dim and depth of the mapping; mapping_key_map checks them again
    z_dim = params[0].outputs[0].dims[-1] if len(params) == 1 and params[0].outputs else 512
    cfg = synthesis_config_from_ir(gs, z_dim=z_dim, mapping_layers=len(gm.of_type("MatMul")) or 8)
    G = Generator(cfg)
    sd = {f"mapping_net.{k}": v for k, v in mapping_state_dict(gm, G).items()}
    sd.update({f"synthesis_net.{k}": v for k, v in synthesis_state_dict(gs, G).items()})
    sd["w_avg"] = G.w_avg.clone()
    G.load_state_dict(sd, strict=True)
    G.eval().requires_grad_(False)
    if w_avg_samples:
        G.compute_w_avg(w_avg_samples, seed=0)
    log.info("MobileStyleGAN %d² from %s: %.1fM parameters, %s", cfg.resolution, Path(synthesis_xml).parent,
             sum(p.numel() for p in G.parameters()) / 1e6, G.w_avg_source)
    return G


def load_random_face(files: dict[str, Path] | None = None, verify: bool = True,
                     w_avg_samples: int = 10000) -> Generator:
    """Our Generator from the installed `random-face` (or from `files`, the four paths by file name)."""
    files = files or find_random_face_files()
    if verify:
        verify_files(files)
    return load_from_ir(files["MappingNetwork.xml"], files["MappingNetwork.bin"], files["SynthesisNetwork.xml"],
                        files["SynthesisNetwork.bin"], w_avg_samples=w_avg_samples)



# --------------------------------------------------------------------------------------------------------------
# Our format: the generator file format of `stylegan2_convert` (safetensors, config in the metadata), marked
# `architecture=mobilestylegan`


FORMAT_NAME = "micromotion-generator"
FORMAT_VERSION = 1
ARCHITECTURE = "mobilestylegan"


def save_generator(G: Generator, path: str | os.PathLike, extra_metadata: dict | None = None) -> Path:
    """Write `G` (weights, w_avg, config) as our safetensors generator file, atomically."""
    meta = header(FORMAT_NAME, FORMAT_VERSION, architecture=ARCHITECTURE, config=json.dumps(G.cfg.to_dict()),
                  w_avg_source=G.w_avg_source, **(extra_metadata or {}))
    return save_safetensors({k: v.float() for k, v in G.state_dict().items()}, path, meta)


def is_generator_file(path: str | os.PathLike) -> bool:
    """True if `path` is one of our safetensors generator files holding a MobileStyleGAN (reads the header only)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            if not 0 < n <= 1 << 24:
                return False
            meta = json.loads(f.read(n)).get("__metadata__") or {}
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT_NAME and meta.get("architecture") == ARCHITECTURE


def read_generator_file(path: str | os.PathLike) -> Generator:
    """Our MobileStyleGAN file -> Generator (eval, no gradients, w_avg as saved); CheckpointError naming the file."""
    from ..io.files import check_state_dict

    sd, meta = read_safetensors(path, FORMAT_NAME, FORMAT_VERSION, "generator")
    try:
        cfg = MobileStyleGANConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad MobileStyleGAN config in metadata ({e})") from None
    G = Generator(cfg)
    check_state_dict(G.state_dict(), sd, path, "a MobileStyleGAN generator")
    G.load_state_dict(sd, strict=True)
    G.w_avg_source = meta.get("w_avg_source", "checkpoint")
    return G.eval().requires_grad_(False)


def _compute_w_avg_float64(G: Generator, n: int = 10000, seed: int = 0) -> None:
    """`compute_w_avg(n, seed)` in float64, rounded once: the same float32 bits on every CPU, so the converted
    file, and its fingerprint that shipped motion files are stamped with, is the same everywhere."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, G.z_dim, generator=g).double()
    net = G.mapping_net.double()
    try:
        with torch.no_grad():
            w = torch.cat([net(chunk) for chunk in z.split(2048)]).mean(0)
    finally:
        net.float()
    G.w_avg.copy_(w.float())
    G.w_avg_source = f"computed({n}, seed={seed}, float64)"


def convert_files(files: dict[str, Path], out: str | os.PathLike) -> Path:
    """The registry's converter (`weights.package`): the four verified IR files -> our file at `out`."""
    G = load_random_face(files, verify=False, w_avg_samples=0)
    _compute_w_avg_float64(G)
    return save_generator(G, out, {"converted_from": f"{RANDOM_FACE_DISTRIBUTION}=={RANDOM_FACE_VERSION}",
                                   "source_sha256": json.dumps({n: FILE_SHA256[n] for n in sorted(FILE_SHA256)})})
