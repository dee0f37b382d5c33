"""Key/shape layouts of the two reference StyleGAN2 implementations and deterministic weights for them.

The golden files in tests/golden/ were produced by running the reference code (rosinality `model.py`,
NVIDIA stylegan2-ada-pytorch `training/networks.py`) on exactly these weights, in a scratch folder outside
this repository (see tests/golden/README.md). The tests rebuild the same weights here, load them through
our checkpoint readers and compare images. No reference code is needed or committed.
"""
from __future__ import annotations

import math
import zlib

import torch


def rosinality_spec(size: int, channel_multiplier: int = 2, n_mlp: int = 8, style_dim: int = 512) -> dict[str, tuple]:
    """`Generator(size, style_dim, n_mlp, channel_multiplier).state_dict()` keys -> shapes."""
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * channel_multiplier, 128: 128 * channel_multiplier,
          256: 64 * channel_multiplier, 512: 32 * channel_multiplier, 1024: 16 * channel_multiplier}
    s: dict[str, tuple] = {}
    for i in range(1, n_mlp + 1):
        s[f"style.{i}.weight"] = (style_dim, style_dim)
        s[f"style.{i}.bias"] = (style_dim,)
    s["input.input"] = (1, ch[4], 4, 4)

    def styled(p, i, o, up):
        s[f"{p}.conv.weight"] = (1, o, i, 3, 3)
        s[f"{p}.conv.modulation.weight"] = (i, style_dim)
        s[f"{p}.conv.modulation.bias"] = (i,)
        if up:
            s[f"{p}.conv.blur.kernel"] = (4, 4)
        s[f"{p}.noise.weight"] = (1,)
        s[f"{p}.activate.bias"] = (o,)

    def rgb(p, i, up):
        if up:
            s[f"{p}.upsample.kernel"] = (4, 4)
        s[f"{p}.conv.weight"] = (1, 3, i, 1, 1)
        s[f"{p}.conv.modulation.weight"] = (i, style_dim)
        s[f"{p}.conv.modulation.bias"] = (i,)
        s[f"{p}.bias"] = (1, 3, 1, 1)

    styled("conv1", ch[4], ch[4], False)
    rgb("to_rgb1", ch[4], False)
    log = int(math.log2(size))
    k = 0
    for i in range(3, log + 1):
        styled(f"convs.{k}", ch[2 ** (i - 1)], ch[2 ** i], True)
        styled(f"convs.{k + 1}", ch[2 ** i], ch[2 ** i], False)
        k += 2
    for j, i in enumerate(range(3, log + 1)):
        rgb(f"to_rgbs.{j}", ch[2 ** i], True)
    for li in range((log - 2) * 2 + 1):
        r = 2 ** ((li + 5) // 2)
        s[f"noises.noise_{li}"] = (1, 1, r, r)
    return s


def nvidia_spec(resolution: int, channel_base: int = 32768, channel_max: int = 512, z_dim: int = 512,
                w_dim: int = 512, mapping_layers: int = 8) -> dict[str, tuple]:
    """NVIDIA `Generator(z_dim, 0, w_dim, resolution, 3, mapping_kwargs, synthesis_kwargs).state_dict()`."""
    res = [2 ** i for i in range(2, int(math.log2(resolution)) + 1)]
    ch = {r: min(channel_base // r, channel_max) for r in res}
    s: dict[str, tuple] = {}
    for r in res:
        p = f"synthesis.b{r}"
        if r == 4:
            s[f"{p}.const"] = (ch[4], 4, 4)
        s[f"{p}.resample_filter"] = (4, 4)
        convs = [("conv1", ch[4], ch[4])] if r == 4 else [("conv0", ch[r // 2], ch[r]), ("conv1", ch[r], ch[r])]
        for name, i, o in convs:
            q = f"{p}.{name}"
            s[f"{q}.weight"] = (o, i, 3, 3)
            s[f"{q}.noise_strength"] = ()
            s[f"{q}.bias"] = (o,)
            s[f"{q}.resample_filter"] = (4, 4)
            s[f"{q}.noise_const"] = (r, r)
            s[f"{q}.affine.weight"] = (i, w_dim)
            s[f"{q}.affine.bias"] = (i,)
        s[f"{p}.torgb.weight"] = (3, ch[r], 1, 1)
        s[f"{p}.torgb.bias"] = (3,)
        s[f"{p}.torgb.affine.weight"] = (ch[r], w_dim)
        s[f"{p}.torgb.affine.bias"] = (ch[r],)
    for i in range(mapping_layers):
        s[f"mapping.fc{i}.weight"] = (w_dim, z_dim if i == 0 else w_dim)
        s[f"mapping.fc{i}.bias"] = (w_dim,)
    s["mapping.w_avg"] = (w_dim,)
    return s


def _randn(key: str, shape: tuple, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(key.encode())) % (2 ** 63))
    return torch.randn(shape, generator=g, dtype=torch.float32)


def _filter() -> torch.Tensor:
    f = torch.tensor([1.0, 3.0, 3.0, 1.0])
    f = f[:, None] * f[None, :]
    return f / f.sum()


def deterministic_weights(spec: dict[str, tuple], seed: int = 0) -> dict[str, torch.Tensor]:
    """Non-trivial values for every key: no zero biases, noise strengths or modulation offsets.

    Scales follow each tensor's role so activations stay in a sane range (mapping weights are stored
    divided by lr_mul=0.01, modulation biases around 1, small biases and noise strengths).
    """
    out = {}
    for key, shape in spec.items():
        r = _randn(key, shape, seed)
        if key.endswith("kernel") and "blur" in key:
            v = _filter() * 4
        elif key.endswith("kernel"):
            v = _filter() * 4
        elif key.endswith("resample_filter"):
            v = _filter()
        elif key.startswith(("style.", "mapping.fc")) and key.endswith("weight"):
            v = r * 100.0
        elif key.startswith(("style.", "mapping.fc")) and key.endswith("bias"):
            v = r * 10.0
        elif key.endswith(("modulation.bias", "affine.bias")):
            v = 1.0 + 0.2 * r
        elif key.endswith(("noise.weight", "noise_strength")):
            v = 0.05 + 0.1 * r.abs()
        elif key.endswith("w_avg"):
            v = 0.5 * r
        elif key.endswith("bias"):
            v = 0.1 * r
        else:  # conv weights, modulation weights, const input, noise buffers
            v = r
        out[key] = v.reshape(shape).contiguous()
    return out


def golden_inputs(z_dim: int, num_ws: int, w_dim: int, n: int = 2, seed: int = 123):
    """z codes and a W+ code with a different vector on every layer."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, z_dim, generator=g)
    ws = torch.randn(n, num_ws, w_dim, generator=g) * 0.7
    return z, ws


def summarize(img: torch.Tensor) -> dict[str, torch.Tensor]:
    """Small fingerprint of an image batch [N,3,R,R]: 8x8 average pool, a full-res 8x8 patch, mean/std."""
    img = img.detach().double()
    r = img.shape[-1]
    c = r // 2
    return {
        "pool": torch.nn.functional.adaptive_avg_pool2d(img, 8).float(),
        "patch": img[:, :, c - 4:c + 4, c + 3:c + 11].float(),
        "stats": torch.stack([img.mean(dim=[1, 2, 3]), img.std(dim=[1, 2, 3])], 1).float(),
    }


NVIDIA_BUFFERS = ("resample_filter", "noise_const", "w_avg")


def write_nvidia_style_pickle(path, state: dict[str, torch.Tensor], init_kwargs: dict, extra: dict | None = None):
    """Write a pickle with the structure of NVIDIA's network pickles, without their source code.

    NVIDIA's `persistent_class` objects pickle as `torch_utils.persistence._reconstruct_persistent_obj(meta)`
    where `meta.state` is the module's `__dict__` (`_parameters`, `_buffers`, `_modules`, `_init_kwargs`, ...)
    and `meta.module_src` holds the module's source (left empty here). Tensors pickle as
    `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter` over `torch.storage._load_from_bytes`.
    """
    import pickle
    import sys
    import types
    from collections import OrderedDict

    def reconstruct(meta):  # never called here: only its module/name go into the pickle
        raise AssertionError

    class EasyDict(dict):
        pass

    fake = {"torch_utils": types.ModuleType("torch_utils"),
            "torch_utils.persistence": types.ModuleType("torch_utils.persistence"),
            "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": types.ModuleType("dnnlib.util")}
    reconstruct.__module__, reconstruct.__qualname__ = "torch_utils.persistence", "_reconstruct_persistent_obj"
    fake["torch_utils.persistence"]._reconstruct_persistent_obj = reconstruct
    EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
    fake["dnnlib.util"].EasyDict = EasyDict

    class Persistent:
        def __init__(self, class_name, st):
            self.meta = dict(type="class", version=4, module_src="", class_name=class_name, state=st)

        def __reduce__(self):
            return reconstruct, (self.meta,)

    def node(prefix, class_name, kwargs):
        params, bufs, children = OrderedDict(), OrderedDict(), OrderedDict()
        names = {k[len(prefix):] for k in state if k.startswith(prefix)}
        for n in sorted(names):
            if "." in n:
                children.setdefault(n.split(".")[0], None)
            elif n in NVIDIA_BUFFERS:
                bufs[n] = state[prefix + n]
            else:
                params[n] = torch.nn.Parameter(state[prefix + n], requires_grad=False)
        for c in children:
            children[c] = node(prefix + c + ".", c, {})
        st = {"training": False, "_parameters": params, "_buffers": bufs, "_modules": children,
              "_non_persistent_buffers_set": set(), "_forward_hooks": OrderedDict(),
              "_init_args": (), "_init_kwargs": EasyDict(kwargs)}
        return Persistent(class_name, st)

    saved = {k: sys.modules.get(k) for k in fake}
    sys.modules.update(fake)
    try:
        obj = {"G_ema": node("", "Generator", init_kwargs), "training_set_kwargs": EasyDict(resolution=4),
               **(extra or {})}
        with open(path, "wb") as f:
            pickle.dump(obj, f)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def nvidia_init_kwargs(resolution: int, channel_base=32768, channel_max=512) -> dict:
    return dict(z_dim=512, c_dim=0, w_dim=512, img_resolution=resolution, img_channels=3,
                mapping_kwargs=dict(num_layers=8),
                synthesis_kwargs=dict(channel_base=channel_base, channel_max=channel_max, num_fp16_res=0,
                                      conv_clamp=None))
