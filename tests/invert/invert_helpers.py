"""Shared by tests/invert: tiny generators and images of genuine W+ codes."""
import pytest
import torch

from micromotion.models.stylegan2 import Generator, GeneratorConfig


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny networks: on a shared 2-core machine, thread hand-offs cost more than the arithmetic.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny(resolution=32, seed=0):
    torch.manual_seed(seed)
    G = Generator(GeneratorConfig.tiny(resolution)).eval().requires_grad_(False)
    G.compute_w_avg()
    return G


def _w_plus_targets(G, n, psi=0.5, seed=1):
    """Images rendered from genuine W+ codes: a different w for every layer, truncated towards the mean."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = G.mapping_net(torch.randn(n * G.num_ws, G.z_dim, generator=g)).view(n, G.num_ws, G.w_dim)
        ws = G.w_avg.lerp(w, psi)
        return ws, G.synthesis(ws)
