"""Anchors: W+ latents of one face at increasing degrees (text) or times (video) of one micromotion.

The paper (Wu et al., CPAL 2024, Sec. 3) decodes a micromotion from such a stack; `micromotion.decompose` reads
it. `base.Anchors` is what every anchor source returns, with its file format: `anchors.text` (CLIP-guided
optimization) and `anchors.video` (inverted frames of a clip; `anchors.tracking` follows the face in it).
"""
from .base import FORMAT_NAME, FORMAT_VERSION, Anchors, anchors_cache_dir, module_fingerprint, tensor_fingerprint

__all__ = ["Anchors", "anchors_cache_dir", "module_fingerprint", "tensor_fingerprint", "FORMAT_NAME",
           "FORMAT_VERSION"]
