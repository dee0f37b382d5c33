"""Our generator matches the reference implementations (rosinality, NVIDIA) on deterministic weights.

Weights are rebuilt here (reference_layouts), written in each reference's file layout, read back through
`micromotion.load_generator`, and the images compared with golden outputs of the reference code.
"""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import micromotion as mm
from reference_layouts import (deterministic_weights, golden_inputs, nvidia_init_kwargs, nvidia_spec,
                               rosinality_spec, summarize, write_nvidia_style_pickle)

GOLDEN = load_file(str(Path(__file__).parent / "golden" / "stylegan2_equivalence.safetensors"))
TOL = 1e-3  # relative, as the issue asks; we measure ~2e-6


def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _write(fmt: str, size: int, tmp_path: Path) -> Path:
    if fmt == "ros":
        w = deterministic_weights(rosinality_spec(size), seed=size)
        avg = deterministic_weights({"latent_avg": (512,)}, seed=size + 1)["latent_avg"] * 0.5
        path = tmp_path / f"ros{size}.pt"
        torch.save({"g_ema": w, "latent_avg": avg}, path)
    else:
        w = deterministic_weights(nvidia_spec(size), seed=size + 7)
        path = tmp_path / f"nv{size}.pkl"
        write_nvidia_style_pickle(path, w, nvidia_init_kwargs(size))
    return path


@pytest.mark.parametrize("size", [64, 1024])
@pytest.mark.parametrize("fmt", ["ros", "nv"])
def test_matches_reference(fmt, size, tmp_path):
    G = mm.load_generator(_write(fmt, size, tmp_path))
    assert (G.resolution, G.num_ws, G.z_dim, G.w_dim) == (size, 2 * size.bit_length() - 4, 512, 512)
    z, ws = golden_inputs(512, G.num_ws, 512)
    with torch.no_grad():
        w = G.mapping(z)
        w_ref = GOLDEN[f"{fmt}{size}.w_slice"]
        assert _rel(w[:, 0, :16], w_ref) < TOL
        for name, img in (("z", G.synthesis(G.mapping(z, truncation_psi=0.7))), ("ws", G.synthesis(ws))):
            assert img.shape == (2, 3, size, size)
            s = summarize(img)
            for part in ("pool", "patch", "stats"):
                err = _rel(s[part], GOLDEN[f"{fmt}{size}.{name}.{part}"])
                assert err < TOL, f"{fmt}{size} {name} {part}: relative error {err:.2e}"


def test_saved_format_roundtrip_is_exact(tmp_path):
    G = mm.load_generator(_write("nv", 64, tmp_path))
    out = mm.save_generator(G, tmp_path / "g.safetensors")
    G2 = mm.load_generator(out)
    assert G2.cfg == G.cfg and G2.w_avg_source == G.w_avg_source
    for (k, a), (k2, b) in zip(G.state_dict().items(), G2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    z, _ = golden_inputs(512, G.num_ws, 512)
    with torch.no_grad():
        assert torch.equal(G.synthesis(G.mapping(z)), G2.synthesis(G2.mapping(z)))
