"""The anchor set: W+ latents of one face at increasing degrees (text) or times (video) of one micromotion.

The paper (Wu et al., CPAL 2024, Sec. 3) decodes a micromotion from such a stack; `micromotion.decompose` reads
it. `Anchors` is what every anchor source returns: `anchors.text` (CLIP-guided optimization) and
`anchors.video` (inverted frames). Also here: the anchors cache folder and the content hashes that key it.

Several identities (issue 25): `Anchors.concat` stacks the anchor sets of several faces doing the same motion,
with an identity label per anchor (`identities`); `Motion.from_anchors` then decodes the direction they share.

File format: safetensors with one tensor `anchors` [K, num_ws, w_dim] float32 and JSON metadata (`format`,
`version`, `labels`, `source`, and from version 2 `identities` when there are several), written atomically.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import InputError
from ..io.files import atomic_output, check_header, header, home
from ..io.files import fingerprint as module_fingerprint
from ..io.files import tensor_fingerprint

__all__ = ["Anchors", "anchors_cache_dir", "module_fingerprint", "tensor_fingerprint"]

FORMAT_NAME = "micromotion-anchors"
FORMAT_VERSION = 2  # 2: `identities` (several faces); files of one face are unchanged


@dataclass
class Anchors:
    """A stack of anchor latents and what they are.

    latents: [K, num_ws, w_dim] float32 on the CPU, ordered by degree or time.
    labels: K labels, strings (degrees: "start", "no", "10%", ...) or numbers (frame times in seconds).
    source: JSON-able description of where they come from (kind, template/video, seed, generator, settings).
    """

    latents: torch.Tensor
    labels: list
    source: dict = field(default_factory=dict)
    identities: list[int] | None = None  # one label per anchor (0, 1, ...) when several faces; None: one face

    def __post_init__(self):
        x = self.latents
        if not isinstance(x, torch.Tensor):
            raise InputError(f"anchor latents must be a tensor [K, num_ws, w_dim], got {type(x).__name__}")
        if x.ndim != 3 or x.shape[0] < 1:
            raise InputError(f"anchor latents must have shape [K, num_ws, w_dim], got {list(x.shape)}")
        if not x.is_floating_point():
            raise InputError(f"anchor latents must be floating point, got {x.dtype}")
        x = x.detach().to("cpu", torch.float32).contiguous()
        if not torch.isfinite(x).all():
            raise InputError("anchor latents contain NaN or infinite values")
        self.latents = x
        labels = list(self.labels)
        if len(labels) != x.shape[0]:
            raise InputError(f"{len(labels)} labels for {x.shape[0]} anchors; give one label per anchor")
        for lab in labels:
            if isinstance(lab, bool) or not isinstance(lab, (str, int, float)):
                raise InputError(f"anchor labels must be strings or numbers, got {lab!r}")
            if isinstance(lab, float) and not math.isfinite(lab):
                raise InputError(f"anchor label {lab!r} is not a finite number")
        self.labels = labels
        try:
            self.source = json.loads(json.dumps(dict(self.source)))
        except (TypeError, ValueError) as e:
            raise InputError(f"anchor source metadata must be JSON-serializable ({e})") from None
        if self.identities is not None:
            ids = list(self.identities)
            if len(ids) != x.shape[0] or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in ids):
                raise InputError(f"identities must be one whole number >= 0 per anchor ({x.shape[0]}), got {ids}")
            counts = {i: ids.count(i) for i in ids}
            if len(counts) > 1 and min(counts.values()) < 2:
                raise InputError(f"every identity needs at least 2 anchors; counts {counts}")
            self.identities = ids if len(counts) > 1 else None

    @property
    def num_identities(self) -> int:
        return 1 if self.identities is None else len(set(self.identities))

    def groups(self) -> list["Anchors"]:
        """One `Anchors` per identity, in the order the identities first appear (a single face: [self])."""
        if self.identities is None:
            return [self]
        out = []
        order = list(dict.fromkeys(self.identities))
        parts = self.source.get("parts") if self.source.get("kind") == "identities" else None
        for n, i in enumerate(order):
            idx = [k for k, j in enumerate(self.identities) if j == i]
            src = parts[n] if isinstance(parts, list) and len(parts) == len(order) else self.source
            out.append(Anchors(self.latents[idx], [self.labels[k] for k in idx], src))
        return out

    @classmethod
    def concat(cls, sets: "list[Anchors]", source: dict | None = None) -> "Anchors":
        """The anchor sets of several faces doing one motion -> one stack with identity labels 0..N-1 (a set
        that already has several identities keeps them apart). `source` defaults to the sets' sources."""
        sets = list(sets)
        if not sets:
            raise InputError("no anchor sets to join")
        shapes = {tuple(a.latents.shape[1:]) for a in sets}
        if len(shapes) > 1:
            raise InputError(f"anchor sets of different latent shapes cannot be joined: {sorted(shapes)}")
        ids, nxt = [], 0
        for a in sets:
            own = a.identities or [0] * len(a)
            remap = {i: nxt + j for j, i in enumerate(dict.fromkeys(own))}
            ids += [remap[i] for i in own]
            nxt += len(remap)
        src = source if source is not None else {"kind": "identities", "parts": [a.source for a in sets]}
        return cls(torch.cat([a.latents for a in sets]), [lab for a in sets for lab in a.labels], src, ids)

    def __len__(self) -> int:
        return self.latents.shape[0]

    @property
    def num_ws(self) -> int:
        return self.latents.shape[1]

    @property
    def w_dim(self) -> int:
        return self.latents.shape[2]

    def __repr__(self) -> str:
        kind = self.source.get("kind", "?")
        return f"Anchors({len(self)} x [{self.num_ws}, {self.w_dim}], {kind}, labels={self.labels})"

    # ------------------------------------------------------------------------------------------------------
    # Files

    def save(self, path: str | os.PathLike) -> Path:
        """Write `path` (.safetensors) atomically: readers never see a half-written file."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            raise InputError(f"{path}: anchors are saved as .safetensors; change the file name")
        extra = {"identities": json.dumps(self.identities)} if self.identities is not None else {}
        meta = header(FORMAT_NAME, FORMAT_VERSION if extra else 1, labels=json.dumps(self.labels),
                      source=json.dumps(self.source, sort_keys=True), **extra)
        with atomic_output(path) as tmp:
            save_file({"anchors": self.latents}, str(tmp), metadata=meta)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Anchors":
        """Read an anchors file written by `save`."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such anchors file")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                if "anchors" not in f.keys():
                    raise InputError(f"{path}: no tensor 'anchors'; not a micromotion anchors file")
                latents = f.get_tensor("anchors")
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"{path}: not a readable anchors file ({str(e).splitlines()[0][:160]})") from None
        check_header(meta, path, FORMAT_NAME, FORMAT_VERSION, "anchors", error=InputError, minimum=1)
        try:
            labels, source = json.loads(meta["labels"]), json.loads(meta.get("source", "{}"))
            identities = json.loads(meta["identities"]) if "identities" in meta else None
        except (KeyError, ValueError) as e:
            raise InputError(f"{path}: corrupt anchors metadata ({e})") from None
        try:
            return cls(latents, labels, source, identities)
        except InputError as e:
            raise InputError(f"{path}: {e}") from None

    # ------------------------------------------------------------------------------------------------------
    # Pictures

    @torch.no_grad()
    def render(self, G, *, batch_size: int = 8, noise_mode: str = "const", size: int | None = None) -> torch.Tensor:
        """Images of the anchors [K, 3, S, S] in [-1, 1] (clamped), on the CPU; `size` downsamples (area)."""
        if (self.num_ws, self.w_dim) != (G.num_ws, G.w_dim):
            raise InputError(f"these anchors are [{self.num_ws}, {self.w_dim}] latents; the generator takes "
                             f"[{G.num_ws}, {G.w_dim}]")
        device = G.w_avg.device
        out = []
        for chunk in self.latents.split(batch_size):
            img = G.synthesis(chunk.to(device), noise_mode=noise_mode).float().clamp(-1, 1)
            if size is not None and size != img.shape[-1]:
                img = torch.nn.functional.interpolate(img, size=(size, size), mode="area" if size < img.shape[-1]
                                                      else "bilinear")
            out.append(img.cpu())
        return torch.cat(out)

    def preview(self, G, *, size: int = 128, columns: int | None = None, noise_mode: str = "const"):
        """A PIL image: the rendered anchors in a grid, each labelled underneath."""
        from PIL import Image, ImageDraw

        imgs = self.render(G, size=size, noise_mode=noise_mode)
        k = imgs.shape[0]
        cols = columns or min(k, 6)
        rows = -(-k // cols)
        pad, text_h = 4, 14
        sheet = Image.new("RGB", (cols * (size + pad) + pad, rows * (size + pad + text_h) + pad), (255, 255, 255))
        draw = ImageDraw.Draw(sheet)
        arr = ((imgs + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        for i in range(k):
            r, c = divmod(i, cols)
            x, y = pad + c * (size + pad), pad + r * (size + pad + text_h)
            sheet.paste(Image.fromarray(arr[i], "RGB"), (x, y))
            lab = self.labels[i]
            text = lab if isinstance(lab, str) else f"{lab:g}"
            draw.text((x + 2, y + size + 1), text[: max(4, size // 6)], fill=(0, 0, 0))
        return sheet

    def save_preview(self, G, path: str | os.PathLike, **kw) -> Path:
        """Write `preview(G, **kw)` to `path` (.png) atomically."""
        path = Path(path)
        if path.suffix.lower() != ".png":
            raise InputError(f"{path}: the preview is written as .png; change the file name")
        im = self.preview(G, **kw)
        with atomic_output(path) as tmp:
            im.save(tmp, format="PNG")
        return path


def anchors_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """`cache_dir` > `$MICROMOTION_HOME/anchors` > `~/.cache/micromotion/anchors` (not created)."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    return home() / "anchors"
