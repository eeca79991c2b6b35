"""The efficient KAN layer against pykan's KANLayer, and the projector's behaviour on large inputs."""

import pytest
import torch

from simulator.models.kan import KANLayer, KANProjector, bspline_basis, uniform_bspline_basis, uniform_knots


@pytest.mark.parametrize("in_dim, out_dim, grid, order", [(3, 4, 5, 3), (6, 2, 7, 2)])
def test_matches_pykan_for_same_coefficients(in_dim, out_dim, grid, order):
    kan_layer_module = pytest.importorskip("kan.KANLayer")  # pykan: the reference only this test needs
    torch.manual_seed(0)
    reference = kan_layer_module.KANLayer(in_dim=in_dim, out_dim=out_dim, num=grid, k=order, grid_range=[-1, 1],
                                          save_plot_data=False)
    ours = KANLayer(in_dim, out_dim, grid_size=grid, order=order, grid_range=(-1.0, 1.0))
    with torch.no_grad():
        ours.coef.copy_(torch.randn_like(ours.coef))
        reference.coef.copy_(ours.coef)
        ours.scale_base.copy_(reference.scale_base)
        ours.scale_sp.copy_(torch.rand_like(ours.scale_sp) + 0.5)
        reference.scale_sp.copy_(ours.scale_sp)
    assert torch.allclose(ours.knots, reference.grid[0], atol=1e-6)
    x = torch.rand(256, in_dim) * 4.0 - 2.0  # covers the extended span [-1 - k h, 1 + k h]
    expected = reference(x)[0]
    assert torch.allclose(ours(x), expected, atol=1e-4), (ours(x) - expected).abs().max()


def test_basis_is_partition_of_unity_inside_the_grid():
    knots = uniform_knots(5, 3, (-1.0, 1.0))
    x = torch.linspace(-0.999, 0.999, 101).unsqueeze(-1)
    assert torch.allclose(bspline_basis(x, knots, 3).sum(-1), torch.ones(101, 1), atol=1e-5)


def test_spline_branch_is_zero_outside_span_without_normalisation():
    layer = KANLayer(2, 3, grid_range=(-1.0, 1.0))
    far = torch.full((4, 2), 50.0)
    assert torch.count_nonzero(layer.basis(far)) == 0


def test_projector_keeps_spline_branch_alive_for_large_inputs():
    torch.manual_seed(0)
    projector = KANProjector(vision_dim=16, llm_dim=8, hidden_dim=12)
    features = torch.randn(2, 5, 16) * 1000.0 + 300.0
    normalised = projector.input_norm(features)
    active = projector.layer1.basis(normalised).sum(-1)  # [2, 5, 16] basis mass per input
    assert (active > 0.99).float().mean() > 0.95
    assert torch.isfinite(projector(features)).all()


def test_paper_width_parameter_count():
    with torch.device("meta"):
        layer1 = KANLayer(1152, 2304)
        layer2 = KANLayer(2304, 2304)
    count = sum(p.numel() for layer in (layer1, layer2) for p in layer.parameters())
    assert 79.0e6 < count < 80.0e6


@pytest.mark.parametrize("grid, order, grid_range", [(5, 3, (-2.0, 2.0)), (7, 2, (-1.0, 1.0)), (4, 1, (0.0, 3.0))])
def test_local_uniform_basis_equals_cox_de_boor(grid, order, grid_range):
    """The inference basis (only the k+1 non-zero functions, scattered) against the full recursion:
    random inputs, inputs on and next to every knot, and inputs far outside the span."""
    knots = uniform_knots(grid, order, grid_range)
    step = (grid_range[1] - grid_range[0]) / grid
    x = torch.cat([torch.randn(3000, generator=torch.Generator().manual_seed(0)) * 3.0,
                   knots, knots + 1e-4, knots - 1e-4, torch.tensor([-50.0, 50.0])]).unsqueeze(-1)
    reference = bspline_basis(x, knots, order)
    local = uniform_bspline_basis(x, grid_range[0] - order * step, step, grid + 2 * order, order)
    assert local.shape == reference.shape == (x.shape[0], 1, grid + order)
    assert torch.allclose(local, reference, atol=2e-6), (local - reference).abs().max()
    assert torch.count_nonzero(local[-2:]) == 0
    assert torch.count_nonzero(local, dim=-1).max() <= order + 1


def test_layer_without_autograd_matches_its_training_path():
    torch.manual_seed(0)
    layer = KANLayer(96, 128, grid_size=5, order=3, grid_range=(-2.0, 2.0))
    with torch.no_grad():
        layer.coef.normal_()
    x = torch.randn(64, 96) * 1.5
    training = layer(x)  # parameters require grad: Cox-de Boor
    with torch.inference_mode():
        inference = layer(x)
    assert training.requires_grad and not inference.requires_grad
    assert torch.allclose(inference, training.detach(), atol=1e-5)
