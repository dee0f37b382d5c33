"""CLIP (Radford et al. 2021) in plain PyTorch: OpenAI's ViT image tower and causal text transformer, with
QuickGELU, reading OpenAI-layout state dicts (openai/CLIP `model.py`; the keys of OpenAI's files and of
open_clip's `CLIP`). It needs neither open_clip nor torchvision and gives the same features as open_clip's
`ViT-B-32-quickgelu` on the same weights (tests/models/test_clip_native.py, against goldens from open_clip).

`NativeClip` has what `micromotion.models.clip.Clip.from_open_clip` wraps: `encode_image(x)` on
preprocessed `[N, 3, S, S]`, `encode_text(tokens)`, `logit_scale`, `visual.image_size`, `context_length`.
This module is the architecture only; `models.clip` builds on it (`load_native_clip`), never the reverse.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import CheckpointError
from ..io.files import check_state_dict

__all__ = ["NativeClipConfig", "NativeClip"]

HEAD_WIDTH = 64  # OpenAI's CLIPs: attention heads are 64 wide (openai/CLIP build_model)
# Tensors in OpenAI's files that are not weights: hyper-parameters stored as tensors; open_clip's causal mask.
_IGNORED_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


@dataclass
class NativeClipConfig:
    """Defaults: OpenAI ViT-B/32."""

    embed_dim: int = 512
    image_size: int = 224
    patch_size: int = 32
    vision_width: int = 768
    vision_layers: int = 12
    context_length: int = 77
    vocab_size: int = 49408
    text_width: int = 512
    text_layers: int = 12

    def __post_init__(self):
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        for name in ("vision_width", "text_width"):
            if getattr(self, name) % HEAD_WIDTH:
                raise ValueError(f"{name} must be a multiple of {HEAD_WIDTH} (the attention head width), "
                                 f"got {getattr(self, name)}")

    @classmethod
    def vit_b_32(cls) -> "NativeClipConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "NativeClipConfig":
        """Same layout, small: 32² input, 8² patches, two layers and two heads per tower, 16 tokens."""
        return cls(embed_dim=32, image_size=32, patch_size=8, vision_width=128, vision_layers=2,
                   context_length=16, text_width=128, text_layers=2)

    @property
    def vision_heads(self) -> int:
        return self.vision_width // HEAD_WIDTH

    @property
    def text_heads(self) -> int:
        return self.text_width // HEAD_WIDTH

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], path: str | os.PathLike = "state dict") -> "NativeClipConfig":
        """Infer the architecture from tensor shapes, as openai/CLIP `build_model` does."""
        def shape(key: str) -> tuple[int, ...]:
            t = sd.get(key)
            if not isinstance(t, torch.Tensor):
                if key.startswith("visual.") and "visual.layer1.0.conv1.weight" in sd:
                    raise CheckpointError(f"{path}: a ResNet CLIP; only ViT CLIPs are supported")
                raise CheckpointError(f"{path}: no tensor '{key}'; not an OpenAI-layout ViT CLIP such as ViT-B-32.pt")
            return tuple(t.shape)

        conv = shape("visual.conv1.weight")
        if len(conv) != 4:
            raise CheckpointError(f"{path}: 'visual.conv1.weight' has shape {list(conv)}, expected [width, 3, p, p]")
        grid = round((shape("visual.positional_embedding")[0] - 1) ** 0.5)
        v_layers = len({k.split(".")[3] for k in sd if k.startswith("visual.transformer.resblocks.")})
        t_layers = len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks.")})
        if v_layers == 0 or t_layers == 0:
            raise CheckpointError(f"{path}: no transformer blocks found; not an OpenAI-layout ViT CLIP")
        try:
            return cls(embed_dim=shape("text_projection")[-1], image_size=conv[-1] * grid, patch_size=conv[-1],
                       vision_width=conv[0], vision_layers=v_layers, context_length=shape("positional_embedding")[0],
                       vocab_size=shape("token_embedding.weight")[0], text_width=shape("ln_final.weight")[0],
                       text_layers=t_layers)
        except ValueError as e:
            raise CheckpointError(f"{path}: not an OpenAI-layout ViT CLIP ({e})") from None


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class Attention(nn.Module):
    """nn.MultiheadAttention's parameters (`in_proj_weight`, `in_proj_bias`, `out_proj`), batch first."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        """x: [N, L, C] -> [N, L, C]."""
        n, length, c = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).reshape(n, length, 3, self.heads, -1).unbind(2)
        y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal)
        return self.out_proj(y.transpose(1, 2).reshape(n, length, c))


class Mlp(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = Mlp(width)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, self.causal)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, cfg: NativeClipConfig):
        super().__init__()
        w, self.image_size, self.patch_size = cfg.vision_width, cfg.image_size, cfg.patch_size
        grid = cfg.image_size // cfg.patch_size
        self.conv1 = nn.Conv2d(3, w, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(w) * w ** -0.5)
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, w) * w ** -0.5)
        self.ln_pre = nn.LayerNorm(w)
        self.transformer = Transformer(w, cfg.vision_layers, cfg.vision_heads, causal=False)
        self.ln_post = nn.LayerNorm(w)
        self.proj = nn.Parameter(torch.randn(w, cfg.embed_dim) * w ** -0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 3, S, S] (preprocessed) -> [N, embed_dim]."""
        x = self.conv1(x).flatten(2).transpose(1, 2)  # [N, grid², width]
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class NativeClip(nn.Module):
    """OpenAI's ViT CLIP. Parameter names are those of OpenAI's files (`visual.conv1.weight`, ...)."""

    def __init__(self, cfg: NativeClipConfig | None = None):
        super().__init__()
        cfg = cfg or NativeClipConfig()
        self.config = cfg
        self.context_length = cfg.context_length
        self.visual = VisionTransformer(cfg)
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.text_width)
        self.positional_embedding = nn.Parameter(torch.randn(cfg.context_length, cfg.text_width) * 0.01)
        self.transformer = Transformer(cfg.text_width, cfg.text_layers, cfg.text_heads, causal=True)
        self.ln_final = nn.LayerNorm(cfg.text_width)
        self.text_projection = nn.Parameter(torch.randn(cfg.text_width, cfg.embed_dim) * cfg.text_width ** -0.5)
        self.logit_scale = nn.Parameter(torch.tensor(4.6052))  # log(100)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 3, S, S], already resized and normalized -> image features [N, embed_dim] (not unit length)."""
        s = self.visual.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (3, s, s):
            raise ValueError(f"images must have shape [N, 3, {s}, {s}] (preprocessed), got {list(x.shape)}")
        return self.visual(x.to(self.visual.conv1.weight.dtype))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [N, context_length] ids -> text features [N, embed_dim] (not unit length), read at the
        end token (the largest id in each row, as in CLIP)."""
        if tokens.ndim != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(f"tokens must have shape [N, {self.context_length}], got {list(tokens.shape)}")
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.ln_final(self.transformer(x))
        x = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return x @ self.text_projection

    @classmethod
    def from_state_dict(cls, sd: dict[str, torch.Tensor], config: NativeClipConfig | None = None, *,
                        path: str | os.PathLike = "state dict") -> "NativeClip":
        """Build from an OpenAI-layout state dict (OpenAI's files, open_clip's `CLIP.state_dict()`); the
        architecture is inferred from tensor shapes unless `config` is given. Every tensor must be used and
        fit; fp16 tensors (OpenAI's files) are read as float32."""
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        cfg = config or NativeClipConfig.from_state_dict(sd, path)
        with torch.device("meta"):
            model = cls(cfg)
        own = model.state_dict()
        check_state_dict(own, sd, path, "a complete OpenAI-layout ViT CLIP",
                         ignored=lambda k: k.rsplit(".", 1)[-1] in _IGNORED_KEYS)
        model.load_state_dict({k: sd[k].to(torch.float32) for k in own}, assign=True)
        return model.eval()
