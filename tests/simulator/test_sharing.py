"""The semantic comparator: what merges, what does not, side information, exact no-sharing at 1.0."""

import math

import pytest
import torch

from simulator.sharing import SemanticComparator, recombine


def _batch(num_users=4, tokens=5, d=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(num_users, tokens, d, generator=generator)
    token_ids = torch.arange(num_users * tokens).reshape(num_users, tokens)  # all distinct
    mask = torch.ones(num_users, tokens, dtype=torch.bool)
    return hidden, mask, token_ids


def test_threshold_one_is_no_sharing_even_for_identical_users():
    hidden, mask, tokens = _batch()
    hidden[1] = hidden[0]
    tokens[1] = tokens[0]
    plan = SemanticComparator(threshold=1.0)(hidden, mask, tokens)
    assert plan.num_public == 0
    assert torch.equal(plan.private_mask, mask)
    assert int(plan.overhead_bits.sum()) == 0
    assert torch.equal(recombine(torch.zeros(4, 0, 16), hidden, plan), hidden)


def test_identical_users_share_everything_once():
    hidden, mask, tokens = _batch()
    for user in (1, 2):
        hidden[user], tokens[user] = hidden[0], tokens[0]
    plan = SemanticComparator(threshold=0.99)(hidden, mask, tokens)
    assert plan.num_public == 5
    assert plan.public_mask[:3].all() and not plan.public_mask[3].any()
    assert torch.equal(plan.public_users, torch.full((5,), 3))
    assert torch.allclose(plan.public_vectors, hidden[0], atol=1e-6)
    # one flag bit per token plus ceil(log2 5) = 3 index bits per public token
    assert plan.overhead_bits.tolist() == [5 + 5 * 3] * 3 + [5]


def test_vectors_of_different_tokens_never_merge():
    hidden, mask, tokens = _batch()
    hidden[1] = hidden[0]  # same vectors, but tokens differ
    plan = SemanticComparator(threshold=0.5)(hidden, mask, tokens)
    assert plan.num_public == 0


def test_statistics_test_separates_scaled_copies():
    hidden, mask, tokens = _batch()
    hidden[1], tokens[1] = 3.0 * hidden[0], tokens[0]  # cosine 1, variance x9
    assert SemanticComparator(threshold=0.9, stat_tolerance=0.1)(hidden, mask, tokens).num_public == 0
    assert SemanticComparator(threshold=0.9, stat_tolerance=10.0)(hidden, mask, tokens).num_public == 5


def test_near_duplicates_merge_by_threshold():
    hidden, mask, tokens = _batch(d=256)
    noise = torch.randn(5, 256, generator=torch.Generator().manual_seed(3))
    hidden[1], tokens[1] = hidden[0] + 0.05 * noise, tokens[0]  # cosine ~0.999
    assert SemanticComparator(threshold=0.99, stat_tolerance=0.5)(hidden, mask, tokens).num_public == 5
    hidden[1] = hidden[0] + 1.0 * noise  # cosine ~0.7
    assert SemanticComparator(threshold=0.99, stat_tolerance=0.5)(hidden, mask, tokens).num_public == 0


def test_padding_tokens_are_ignored():
    hidden, mask, tokens = _batch()
    hidden[1], tokens[1] = hidden[0], tokens[0]
    mask[1, 2:] = False
    plan = SemanticComparator(threshold=0.99)(hidden, mask, tokens)
    assert plan.num_public == 2
    assert not plan.public_mask[1, 2:].any() and not plan.private_mask[1, 2:].any()


def test_recombine_restores_token_order():
    hidden, mask, tokens = _batch()
    hidden[2], tokens[2] = hidden[0], tokens[0]
    plan = SemanticComparator(threshold=0.99)(hidden, mask, tokens)
    public_rx = plan.public_vectors.unsqueeze(0).expand(4, -1, -1)
    private_rx = torch.where(plan.private_mask.unsqueeze(-1), hidden, torch.zeros_like(hidden))
    assert torch.allclose(recombine(public_rx, private_rx, plan), hidden, atol=1e-6)


def test_side_information_bits_grow_with_public_count():
    hidden, mask, tokens = _batch(num_users=6, tokens=3)
    for user in range(1, 6):
        hidden[user], tokens[user] = hidden[0], tokens[0]
    plan = SemanticComparator(threshold=0.99)(hidden, mask, tokens)
    assert plan.num_public == 3
    assert plan.overhead_bits.tolist() == [3 + 3 * math.ceil(math.log2(3))] * 6


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_threshold_outside_unit_interval(bad):
    with pytest.raises(ValueError, match="threshold"):
        SemanticComparator(threshold=bad)


def _greedy_reference(hidden, token_mask, tokens, threshold, tol):
    """Public/private split of the plain per-vector greedy loop (the definition), for comparison."""
    flat = hidden.reshape(-1, hidden.shape[-1]).float()
    valid = token_mask.reshape(-1).nonzero().squeeze(-1).tolist()
    leaders, cluster_of = [], {}
    for i in valid:  # in user order, as the comparator
        v = flat[i]
        for c, lead in enumerate(leaders):
            u = flat[lead]
            if (int(tokens.reshape(-1)[lead]) == int(tokens.reshape(-1)[i])
                    and float(torch.nn.functional.cosine_similarity(u, v, dim=0)) >= threshold
                    and abs(float(u.mean() - v.mean())) <= tol * float(u.std())
                    and abs(float(u.var().log() - v.var().log())) <= tol):
                cluster_of[i] = c
                break
        else:
            cluster_of[i] = len(leaders)
            leaders.append(i)
    num_tokens = hidden.shape[1]
    users_of = {}
    for i, c in cluster_of.items():
        users_of.setdefault(c, set()).add(i // num_tokens)
    return {i for i, c in cluster_of.items() if len(users_of[c]) >= 2}


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_clustering_equals_the_greedy_definition(seed):
    generator = torch.Generator().manual_seed(seed)
    num_users, num_tokens, d = 24, 6, 16
    centres = torch.randn(5, d, generator=generator)
    pick = torch.randint(5, (num_users, num_tokens), generator=generator)
    noise = torch.randn(num_users, num_tokens, d, generator=generator)
    spread = torch.rand(num_users, num_tokens, 1, generator=generator) * 0.6  # some merge, some do not
    hidden = centres[pick] + spread * noise
    tokens = pick % 3  # several clusters share a token, so groups hold several leaders
    mask = torch.rand(num_users, num_tokens, generator=generator) > 0.1
    plan = SemanticComparator(threshold=0.9, stat_tolerance=0.3)(hidden, mask, tokens)
    expected = _greedy_reference(hidden, mask, tokens, 0.9, 0.3)
    got = set(plan.public_mask.reshape(-1).nonzero().squeeze(-1).tolist())
    assert got == expected and len(expected) > 0
    assert plan.num_public >= 2
