"""Multi-user semantic sharing (the paper's Section III-C): the semantic comparator, the
public/private split, the side information, and the receiver's recombination.

Comparison is token-level. Two users' semantic vectors ``u, v`` (final hidden states, width ``d``)
match when
- they decode to the same output token (a public vector must mean the same token to everyone);
- their cosine similarity is ``>= threshold``;
- their statistics agree: ``|mean(u) - mean(v)| <= stat_tolerance * std(u)`` and
  ``|log var(u) - log var(v)| <= stat_tolerance`` (the paper's mean/variance test).
Matching vectors of >= 2 users form one public vector (their mean), broadcast once; every other
vector stays private (unicast to its user). ``threshold >= 1`` turns sharing off: nothing merges,
no side information is sent, and the result equals the no-sharing system exactly.

Cost: vectors are grouped by token (a sort, linear), and inside a group each cluster leader is
compared with the group's unassigned vectors in one matrix-vector product, so the work grows with
``users x tokens x leaders-per-token`` rather than with all pairs, and the Python loop runs once
per cluster, not once per token.

Side information (counted as transmitted bits): when the broadcast stream is non-empty, each user
gets a 1-bit public/private flag per token and, for each public token, the index of its public
vector (``ceil(log2(num_public))`` bits, at least 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["SharingPlan", "SemanticComparator", "recombine"]


@dataclass
class SharingPlan:
    """The comparator's decision for one batch of users.

    Attributes:
        public_vectors: ``[P, d]`` float, one per public cluster (broadcast once).
        public_index: ``[U, T]`` int64, the public vector that replaces token ``t`` of user ``u``,
            or -1 where the token is private or absent.
        private_mask: ``[U, T]`` bool, tokens sent by unicast to their own user.
        overhead_bits: ``[U]`` int64, side-information bits for each user's public-token map.
        public_users: ``[P]`` int64, how many users share each public vector.
    """

    public_vectors: torch.Tensor
    public_index: torch.Tensor
    private_mask: torch.Tensor
    overhead_bits: torch.Tensor
    public_users: torch.Tensor

    @property
    def num_public(self) -> int:
        return int(self.public_vectors.shape[0])

    @property
    def public_mask(self) -> torch.Tensor:
        """``[U, T]`` bool, tokens that arrive through the broadcast stream."""
        return self.public_index >= 0


class SemanticComparator:
    """Token-level comparator.

    Args:
        threshold: cosine similarity needed to merge, in [0, 1]; ``>= 1`` disables sharing.
        stat_tolerance: tolerance of the mean/variance agreement test (see module docstring).
    """

    def __init__(self, threshold: float = 0.95, stat_tolerance: float = 0.1):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"sharing threshold must be in [0, 1], got {threshold}")
        if stat_tolerance < 0:
            raise ValueError(f"stat_tolerance must be >= 0, got {stat_tolerance}")
        self.threshold = float(threshold)
        self.stat_tolerance = float(stat_tolerance)

    def __call__(self, hidden: torch.Tensor, token_mask: torch.Tensor, tokens: torch.Tensor) -> SharingPlan:
        """Split ``hidden [U, T, d]`` (valid where ``token_mask [U, T]``) by ``tokens [U, T]``."""
        num_users, num_tokens, d = hidden.shape
        public_index = torch.full((num_users, num_tokens), -1, dtype=torch.long, device=hidden.device)
        empty = SharingPlan(hidden.new_zeros(0, d), public_index, token_mask.clone(),
                            torch.zeros(num_users, dtype=torch.long), torch.zeros(0, dtype=torch.long))
        if self.threshold >= 1.0 or num_users < 2:
            return empty

        flat_hidden = hidden.reshape(-1, d).float()
        flat_user = torch.arange(num_users, device=hidden.device).repeat_interleave(num_tokens)
        valid = token_mask.reshape(-1)
        positions = valid.nonzero().squeeze(-1)
        flat_tokens = tokens.reshape(-1)[positions]
        vectors = flat_hidden[positions]
        unit = torch.nn.functional.normalize(vectors, dim=-1)
        means, log_vars = vectors.mean(-1), vectors.var(-1).clamp_min(1e-12).log()
        stds = vectors.std(-1).clamp_min(1e-12)

        cluster_of = torch.full((positions.numel(),), -1, dtype=torch.long)
        num_clusters = 0
        order = torch.argsort(flat_tokens, stable=True)
        sorted_tokens = flat_tokens[order]
        boundaries = torch.nonzero(sorted_tokens[1:] != sorted_tokens[:-1]).squeeze(-1) + 1
        for group in torch.tensor_split(order, boundaries.tolist()):
            if group.numel() < 2:
                continue
            num_clusters = self._cluster_group(group, unit, means, stds, log_vars, cluster_of, num_clusters)

        # A cluster is public only if it spans >= 2 distinct users.
        assigned = cluster_of >= 0
        cluster_ids = cluster_of[assigned]
        users = flat_user[positions][assigned]
        user_sets = torch.zeros(num_clusters, num_users, dtype=torch.bool)
        user_sets[cluster_ids, users] = True
        users_per_cluster = user_sets.sum(-1)
        is_public = users_per_cluster >= 2
        if not bool(is_public.any()):
            return empty
        public_id = torch.full((num_clusters,), -1, dtype=torch.long)
        public_id[is_public] = torch.arange(int(is_public.sum()))
        member_public = torch.full((positions.numel(),), -1, dtype=torch.long)
        member_public[assigned] = public_id[cluster_ids]

        num_public = int(is_public.sum())
        sums = torch.zeros(num_public, d)
        counts = torch.zeros(num_public)
        shared = member_public >= 0
        sums.index_add_(0, member_public[shared], vectors[shared])
        counts.index_add_(0, member_public[shared], torch.ones(int(shared.sum())))
        public_vectors = (sums / counts.unsqueeze(-1)).to(hidden.dtype)

        public_index.reshape(-1)[positions] = member_public.to(public_index.device)
        private_mask = token_mask & (public_index < 0)
        index_bits = max(1, math.ceil(math.log2(num_public)))
        overhead = token_mask.sum(-1).cpu() + (public_index >= 0).sum(-1).cpu() * index_bits
        return SharingPlan(public_vectors, public_index, private_mask, overhead.long(),
                           users_per_cluster[is_public])

    def _cluster_group(self, group, unit, means, stds, log_vars, cluster_of, num_clusters: int) -> int:
        """Leader clustering of one token's vectors (``group``: their indices, in user order).

        Greedy in order: a vector joins the first earlier leader it matches, else leads a new
        cluster. Equivalently, and vectorised over the members: the first unassigned vector leads,
        every later unassigned vector that matches it joins; repeat. Each pass takes one leader and
        all its members at once, so the loop runs once per cluster, not once per token.
        Writes ``cluster_of`` in place; returns the new cluster count.
        """
        unassigned = torch.ones(group.numel(), dtype=torch.bool)
        while bool(unassigned.any()):
            first = int(unassigned.nonzero()[0, 0])
            lead = group[first]
            candidates = group[first:]
            match = unit[candidates] @ unit[lead] >= self.threshold
            match &= (means[lead] - means[candidates]).abs() <= self.stat_tolerance * stds[lead]
            match &= (log_vars[lead] - log_vars[candidates]).abs() <= self.stat_tolerance
            match &= unassigned[first:]
            match[0] = True  # the leader itself, whatever rounding says about its self-similarity
            cluster_of[candidates[match]] = num_clusters
            unassigned[first:] &= ~match
            num_clusters += 1
        return num_clusters


def recombine(public_received: torch.Tensor, private_received: torch.Tensor, plan: SharingPlan) -> torch.Tensor:
    """Each user's token sequence from its copy of the broadcast and its own unicast.

    Args:
        public_received: ``[U, P, ...]`` user ``u``'s reception of the ``P`` public items.
        private_received: ``[U, T, ...]`` user ``u``'s reception of its private tokens (other entries ignored).
        plan: the comparator's plan.

    Returns:
        ``[U, T, ...]``: public items at their positions, private ones elsewhere.
    """
    if plan.num_public == 0:
        return private_received
    index = plan.public_index.clamp(min=0)
    trailing = public_received.shape[2:]
    gather_index = index.reshape(*index.shape, *([1] * len(trailing))).expand(*index.shape, *trailing)
    from_public = torch.gather(public_received, 1, gather_index)
    mask = plan.public_mask.reshape(*plan.public_mask.shape, *([1] * len(trailing)))
    return torch.where(mask, from_public, private_received)
