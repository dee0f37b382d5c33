"""StyleGAN2 generator files: foreign checkpoints in, our safetensors format in and out.

Foreign files are read without running their code (`micromotion.io.pickle`).
- StyleGAN2 key maps (rosinality `g_ema`, NVIDIA `G_ema`) onto `micromotion.models.stylegan2.Generator`, with
  the architecture inferred from tensor shapes; our own format is safetensors with the config in its metadata.
"""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

import torch

from .. import ops
from ..errors import CheckpointError
from ..io.files import header, read_safetensors, save_safetensors
from ..io.pickle import PersistentObject, persistent_state_dict, read_torch_file, safe_unpickle
from .stylegan2 import Generator, GeneratorConfig

log = logging.getLogger(__name__)

FORMAT_NAME = "micromotion-generator"
FORMAT_VERSION = 1


# ----------------------------------------------------------------------------------------------------------
# Key maps


class _Consumer:
    """Takes tensors out of a foreign state dict by name, checking shapes; reports leftovers and misses."""

    def __init__(self, src: dict[str, torch.Tensor], path):
        self.src, self.path, self.used = src, path, set()

    def take(self, key: str, shape=None) -> torch.Tensor:
        if key not in self.src:
            raise CheckpointError(f"{self.path}: missing key '{key}' (expected a StyleGAN2 generator)")
        t = self.src[key]
        if not isinstance(t, torch.Tensor):
            raise CheckpointError(f"{self.path}: '{key}' is not a tensor")
        if shape is not None and t.numel() != math.prod(shape):
            raise CheckpointError(f"{self.path}: '{key}' has shape {list(t.shape)}, expected {list(shape)}")
        self.used.add(key)
        t = t.detach().to(torch.float32)
        return t.reshape(shape) if shape is not None else t

    def check_filter(self, key: str, taps):
        if key in self.src:
            f = self.take(key)
            ref = ops.setup_filter(taps)
            for cand in (ref, ref * 4):
                if f.shape == cand.shape and torch.allclose(f, cand, atol=1e-6):
                    return
            raise CheckpointError(f"{self.path}: '{key}' is not the [1,3,3,1] resampling filter this loader supports")

    def finish(self, ignore_prefixes=()):
        left = [k for k in self.src if k not in self.used and not k.startswith(tuple(ignore_prefixes))]
        if left:
            raise CheckpointError(f"{self.path}: {len(left)} unexpected keys, first '{left[0]}'; "
                                  f"not a StyleGAN2 generator layout this loader knows")


def _infer_res_count(src, fmt_key, path) -> int:
    n = 0
    while fmt_key(n) in src:
        n += 1
    if n == 0:
        raise CheckpointError(f"{path}: no synthesis layers found; not a StyleGAN2 generator")
    return n


def from_rosinality(sd: dict[str, torch.Tensor], path="checkpoint", latent_avg=None) -> tuple[GeneratorConfig, dict]:
    """rosinality `Generator.state_dict()` (the `g_ema` entry) -> (config, our state dict)."""
    c = _Consumer(sd, path)
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in sd:
        n_mlp += 1
    if n_mlp == 0:
        raise CheckpointError(f"{path}: missing key 'style.1.weight'; not a rosinality StyleGAN2 generator")
    w_dim, z_dim = sd["style.1.weight"].shape
    n_convs = _infer_res_count(sd, lambda i: f"convs.{i}.conv.weight", path)
    if n_convs % 2:
        raise CheckpointError(f"{path}: odd number of convs ({n_convs}); not a StyleGAN2 generator")
    resolution = 4 * 2 ** (n_convs // 2)
    channels = {4: int(sd["input.input"].shape[1])}
    for j in range(n_convs // 2):
        channels[8 * 2 ** j] = int(sd[f"convs.{2 * j}.conv.weight"].shape[1])
    # lr multiplier of the mapping is a code constant (lr_mlp=0.01 in every rosinality config)
    cfg = GeneratorConfig(resolution=resolution, z_dim=int(z_dim), w_dim=int(w_dim), mapping_layers=n_mlp,
                          channels=channels)
    out = {}
    for i in range(n_mlp):
        d_in = z_dim if i == 0 else w_dim
        out[f"mapping_net.fc{i}.weight"] = c.take(f"style.{i + 1}.weight", (w_dim, d_in))
        out[f"mapping_net.fc{i}.bias"] = c.take(f"style.{i + 1}.bias", (w_dim,))
    out["synthesis_net.const"] = c.take("input.input", (channels[4], 4, 4))

    def styled(src: str, dst: str, in_ch: int, out_ch: int, noise_idx: int, res: int):
        out[f"{dst}.weight"] = c.take(f"{src}.conv.weight", (out_ch, in_ch, 3, 3))
        out[f"{dst}.affine.weight"] = c.take(f"{src}.conv.modulation.weight", (in_ch, w_dim))
        out[f"{dst}.affine.bias"] = c.take(f"{src}.conv.modulation.bias", (in_ch,))
        out[f"{dst}.noise_strength"] = c.take(f"{src}.noise.weight", ())
        out[f"{dst}.bias"] = c.take(f"{src}.activate.bias", (out_ch,))
        out[f"{dst}.noise_const"] = c.take(f"noises.noise_{noise_idx}", (res, res))
        c.check_filter(f"{src}.conv.blur.kernel", cfg.resample_filter)

    def torgb(src: str, dst: str, in_ch: int):
        out[f"{dst}.weight"] = c.take(f"{src}.conv.weight", (3, in_ch, 1, 1))
        out[f"{dst}.affine.weight"] = c.take(f"{src}.conv.modulation.weight", (in_ch, w_dim))
        out[f"{dst}.affine.bias"] = c.take(f"{src}.conv.modulation.bias", (in_ch,))
        out[f"{dst}.bias"] = c.take(f"{src}.bias", (3,))
        c.check_filter(f"{src}.upsample.kernel", cfg.resample_filter)

    styled("conv1", "synthesis_net.layers.0", channels[4], channels[4], 0, 4)
    torgb("to_rgb1", "synthesis_net.torgbs.0", channels[4])
    for j in range(1, n_convs // 2 + 1):
        r = 4 * 2 ** j
        styled(f"convs.{2 * j - 2}", f"synthesis_net.layers.{2 * j - 1}", channels[r // 2], channels[r], 2 * j - 1, r)
        styled(f"convs.{2 * j - 1}", f"synthesis_net.layers.{2 * j}", channels[r], channels[r], 2 * j, r)
        torgb(f"to_rgbs.{j - 1}", f"synthesis_net.torgbs.{j}", channels[r])
    c.finish()
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() not in (w_dim, w_dim * cfg.num_ws):
            raise CheckpointError(f"{path}: 'latent_avg' is not a tensor of {w_dim} values")
        out["w_avg"] = latent_avg.detach().float().reshape(-1, w_dim)[0]
    return cfg, out


def from_nvidia(sd: dict[str, torch.Tensor], init_kwargs: dict | None = None, path="checkpoint") -> tuple[GeneratorConfig, dict]:
    """NVIDIA `G_ema` state dict (stylegan2-ada-pytorch / stylegan3 `networks_stylegan2`) -> (config, ours)."""
    kw = dict(init_kwargs or {})
    syn_kw = dict(kw.get("synthesis_kwargs") or {})
    map_kw = dict(kw.get("mapping_kwargs") or {})
    if int(kw.get("c_dim", 0) or 0) != 0 or "mapping.embed.weight" in sd:
        raise CheckpointError(f"{path}: conditional generators (c_dim > 0) are not supported")
    if syn_kw.get("architecture", "skip") != "skip":
        raise CheckpointError(f"{path}: synthesis architecture '{syn_kw['architecture']}' is not supported (only 'skip')")
    if "synthesis.b4.const" not in sd:
        raise CheckpointError(f"{path}: missing key 'synthesis.b4.const'; not an NVIDIA StyleGAN2 generator "
                              f"(StyleGAN3 'synthesis.input' generators are not supported)")
    c = _Consumer(sd, path)
    n_map = _infer_res_count(sd, lambda i: f"mapping.fc{i}.weight", path)
    w_dim, z_dim = sd["mapping.fc0.weight"].shape
    resolution = 4
    while f"synthesis.b{resolution * 2}.conv0.weight" in sd:
        resolution *= 2
    channels = {r: int(sd[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in (2 ** i for i in range(2, int(math.log2(resolution)) + 1))}
    taps = tuple(syn_kw.get("resample_filter", (1, 3, 3, 1)))
    cfg = GeneratorConfig(resolution=resolution, z_dim=int(z_dim), w_dim=int(w_dim), mapping_layers=n_map,
                          mapping_lr_multiplier=float(map_kw.get("lr_multiplier", 0.01)), channels=channels,
                          img_channels=int(sd["synthesis.b4.torgb.weight"].shape[0]),
                          conv_clamp=syn_kw.get("conv_clamp"), resample_filter=taps,
                          use_noise=bool(syn_kw.get("use_noise", True)))
    out = {}
    for i in range(n_map):
        d_in = z_dim if i == 0 else w_dim
        out[f"mapping_net.fc{i}.weight"] = c.take(f"mapping.fc{i}.weight", (w_dim, d_in))
        out[f"mapping_net.fc{i}.bias"] = c.take(f"mapping.fc{i}.bias", (w_dim,))
    if "mapping.w_avg" in sd:
        out["w_avg"] = c.take("mapping.w_avg", (w_dim,))
    out["synthesis_net.const"] = c.take("synthesis.b4.const", (channels[4], 4, 4))

    def layer(src, dst, in_ch, out_ch, res):
        out[f"{dst}.weight"] = c.take(f"{src}.weight", (out_ch, in_ch, 3, 3))
        out[f"{dst}.affine.weight"] = c.take(f"{src}.affine.weight", (in_ch, w_dim))
        out[f"{dst}.affine.bias"] = c.take(f"{src}.affine.bias", (in_ch,))
        out[f"{dst}.bias"] = c.take(f"{src}.bias", (out_ch,))
        if cfg.use_noise:
            out[f"{dst}.noise_strength"] = c.take(f"{src}.noise_strength", ())
            out[f"{dst}.noise_const"] = c.take(f"{src}.noise_const", (res, res))
        c.check_filter(f"{src}.resample_filter", taps)

    def torgb(src, dst, in_ch):
        out[f"{dst}.weight"] = c.take(f"{src}.weight", (cfg.img_channels, in_ch, 1, 1))
        out[f"{dst}.affine.weight"] = c.take(f"{src}.affine.weight", (in_ch, w_dim))
        out[f"{dst}.affine.bias"] = c.take(f"{src}.affine.bias", (in_ch,))
        out[f"{dst}.bias"] = c.take(f"{src}.bias", (cfg.img_channels,))

    layer("synthesis.b4.conv1", "synthesis_net.layers.0", channels[4], channels[4], 4)
    torgb("synthesis.b4.torgb", "synthesis_net.torgbs.0", channels[4])
    c.check_filter("synthesis.b4.resample_filter", taps)
    j, r = 1, 8
    while r <= resolution:
        layer(f"synthesis.b{r}.conv0", f"synthesis_net.layers.{2 * j - 1}", channels[r // 2], channels[r], r)
        layer(f"synthesis.b{r}.conv1", f"synthesis_net.layers.{2 * j}", channels[r], channels[r], r)
        torgb(f"synthesis.b{r}.torgb", f"synthesis_net.torgbs.{j}", channels[r])
        c.check_filter(f"synthesis.b{r}.resample_filter", taps)
        j, r = j + 1, r * 2
    c.finish()
    return cfg, out


# ----------------------------------------------------------------------------------------------------------
# Loading and saving generators


def _build(cfg: GeneratorConfig, sd: dict, path, w_avg_source: str) -> Generator:
    with torch.device("meta"):
        G = Generator(cfg)
    G = G.to_empty(device="cpu")
    has_avg = sd.get("w_avg") is not None
    if not has_avg:
        sd = {k: v for k, v in sd.items() if k != "w_avg"}
        sd["w_avg"] = torch.zeros(cfg.w_dim)
    for k in [k for k in G.state_dict() if k.endswith("noise_const") and k not in sd]:
        sd[k] = torch.zeros_like(G.state_dict()[k])  # generators without noise inputs
    missing, unexpected = G.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{path}: internal key map mismatch (missing {missing[:1]}, unexpected {unexpected[:1]})")
    for name, buf in G.named_buffers():
        if name.endswith("resample_filter"):
            buf.copy_(ops.setup_filter(cfg.resample_filter))
    if not torch.isfinite(torch.cat([p.reshape(-1) for p in G.parameters()])).all():
        raise CheckpointError(f"{path}: the weights contain NaN or inf")
    if has_avg:
        G.w_avg_source = w_avg_source
    else:
        G.compute_w_avg()
    return G.eval().requires_grad_(False)


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    if head[:2] == b"PK":
        return "torch-zip"
    if len(head) >= 8 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":
        return "pickle"
    return "unknown"


def read_generator_file(path: str | os.PathLike) -> Generator:
    """Load a generator file of any supported layout onto the CPU (see `load_generator`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    kind = _sniff(path)
    if kind == "safetensors":
        return _read_own(path)
    if kind == "torch-zip" or (kind == "pickle" and path.suffix in (".pt", ".pth")):
        obj = read_torch_file(path)
        if isinstance(obj, dict) and "g_ema" in obj and isinstance(obj["g_ema"], dict):
            cfg, sd = from_rosinality(obj["g_ema"], path, obj.get("latent_avg"))
            return _build(cfg, sd, path, "checkpoint latent_avg")
        if isinstance(obj, dict) and "style.1.weight" in obj:
            cfg, sd = from_rosinality(obj, path)
            return _build(cfg, sd, path, "checkpoint")
        raise CheckpointError(f"{path}: a torch file without a 'g_ema' generator state dict; expected a rosinality "
                              f"StyleGAN2 checkpoint such as stylegan2-ffhq-config-f.pt")
    if kind == "pickle":
        obj = safe_unpickle(path)
        g = obj.get("G_ema") if isinstance(obj, dict) else None
        if not isinstance(g, PersistentObject):
            raise CheckpointError(f"{path}: a pickle without a 'G_ema' network; expected an NVIDIA StyleGAN2 pkl "
                                  f"such as stylegan2-ffhq-1024x1024.pkl")
        cfg, sd = from_nvidia(persistent_state_dict(g), g.init_kwargs(), path)
        return _build(cfg, sd, path, "checkpoint mapping.w_avg")
    raise CheckpointError(f"{path}: unknown file format; expected a rosinality .pt, an NVIDIA .pkl or a micromotion "
                          f".safetensors generator")


def _read_own(path: Path) -> Generator:
    sd, meta = read_safetensors(path, FORMAT_NAME, FORMAT_VERSION, "generator")
    try:
        cfg = GeneratorConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad generator config in metadata ({e})") from None
    return _build(cfg, dict(sd), path, meta.get("w_avg_source", "checkpoint"))


def save_generator(G: Generator, path: str | os.PathLike, extra_metadata: dict | None = None) -> Path:
    """Write `G` in our format: safetensors with the config (JSON) in its metadata, atomically."""
    meta = header(FORMAT_NAME, FORMAT_VERSION, config=json.dumps(G.cfg.to_dict()), w_avg_source=G.w_avg_source,
                  **(extra_metadata or {}))
    return save_safetensors({k: v.float() for k, v in G.state_dict().items()}, path, meta)
