"""SetBatchNorm: one set is torch's BatchNorm; several sets keep separate running statistics chosen per pass."""

import pytest
import torch
from torch import nn

from funcgen.nets.norm import SetBatchNorm, norm_stats, stat_sets


@pytest.mark.parametrize("shape", [(6, 3, 5), (4, 3, 5, 7)])
def test_one_set_matches_torch_batchnorm_in_train_and_eval(shape, gen):
    ours, ref = SetBatchNorm(3, ["only"], momentum=0.3), (nn.BatchNorm1d if len(shape) == 3 else nn.BatchNorm2d)(
        3, momentum=0.3)
    with torch.no_grad():
        w, b = torch.randn(3, generator=gen), torch.randn(3, generator=gen)
        ours.weight.copy_(w), ours.bias.copy_(b), ref.weight.copy_(w), ref.bias.copy_(b)
    for _ in range(3):
        x = 2.0 + 3.0 * torch.randn(shape, generator=gen)
        torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(ours.running_mean_only, ref.running_mean)
    torch.testing.assert_close(ours.running_var_only, ref.running_var)
    ours.eval(), ref.eval()
    x = torch.randn(shape, generator=gen)
    torch.testing.assert_close(ours(x), ref(x))


def test_each_set_tracks_only_its_own_law_and_update_false_leaves_statistics(gen):
    bn = SetBatchNorm(2, ["a", "b"], momentum=0.5)
    xa = torch.tensor([[1.0, 10.0], [3.0, 14.0]])  # law a: means (2, 12), unbiased vars (2, 8)
    xb = torch.tensor([[-5.0, 0.0], [-1.0, 2.0]])  # law b: means (-3, 1), vars (8, 2)
    with norm_stats(bn, "a"):
        bn(xa)
    with norm_stats(bn, "b"):
        bn(xb)
    with norm_stats(bn, "a", update=False):
        bn(xb)  # normalised by its batch, statistics of a untouched
    # momentum 0.5 from (0, 1): running = 0.5 * initial + 0.5 * batch
    torch.testing.assert_close(bn.running_mean_a, torch.tensor([1.0, 6.0]))
    torch.testing.assert_close(bn.running_var_a, torch.tensor([1.5, 4.5]))
    torch.testing.assert_close(bn.running_mean_b, torch.tensor([-1.5, 0.5]))
    torch.testing.assert_close(bn.running_var_b, torch.tensor([4.5, 1.5]))
    before = {k: v.clone() for k, v in bn.named_buffers()}
    with norm_stats(bn, "b", running=True):  # training, but normalised by b's running statistics
        torch.testing.assert_close(bn(xa), (xa - bn.running_mean_b) / (bn.running_var_b + bn.eps).sqrt())
    assert all(torch.equal(v, before[k]) for k, v in bn.named_buffers())
    bn.eval()
    y = torch.tensor([[1.0, 6.0]])
    with norm_stats(bn, "a"):
        torch.testing.assert_close(bn(y), torch.zeros(1, 2), atol=1e-6, rtol=0)
    with norm_stats(bn, "b"):
        torch.testing.assert_close(bn(y), (y - bn.running_mean_b) / (bn.running_var_b + bn.eps).sqrt())
    assert bn.active == "a"  # outside any block: the first set


def test_norm_stats_restores_state_ignores_foreign_sets_and_errors_are_clear():
    net = nn.Sequential(SetBatchNorm(2, ["x", "y"]), SetBatchNorm(2, ["y", "z"]))
    assert stat_sets(net) == ("y",)
    with norm_stats(net, "x", update=False):
        assert (net[0].active, net[0].update, net[1].active, net[1].update) == ("x", False, "y", True)
    assert (net[0].active, net[0].update) == ("x", True)
    assert stat_sets(nn.Linear(2, 2)) == ()
    with pytest.raises(ValueError, match="distinct identifiers"):
        SetBatchNorm(2, ["a", "a"])
    with pytest.raises(ValueError, match=r"expected \[B, 2"):
        SetBatchNorm(2, ["a"])(torch.zeros(3, 4))
