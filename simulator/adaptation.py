"""Rate adaptation of the nested semantic channel codec (the LAM-MTSC extensions, issue 19).

A codec trained with ``stages.joint.rates`` sends a token as the first ``k`` of its ``c`` symbols
and decodes it from them alone (:mod:`simulator.models.channel_codec`). The BS picks ``k``:

- ``fixed``: ``k = c`` for every token (the single-rate system);
- ``snr``: one ``k`` per user from its reported SNR and the kind of task it asked for, by the
  checkpoint's calibrated table (:class:`RateTable`, ``rate_table.json``, made by
  ``python -m simulator calibrate``; one row of recoveries per task, since a one-word VQA answer
  survives at far fewer symbols than a caption's tokens, and both ends know the task);
- ``importance``: one ``k`` per token. A token's importance here is how much channel noise it
  survives: the BS holds the receiver's channel decoder and LM head, so it can decode its own
  symbols through noise at each candidate ``k`` (:func:`recovery_probability`). A token the LM head
  separates by a wide margin (the top-1 vs top-2 logit of its hidden state) survives at a few
  symbols; the one close call of an answer needs all ``c``. That is the decoding margin measured in
  the unit that matters (recovered or not), without a margin-to-k table to calibrate.

Both adaptive policies keep ``target`` x the full-rate recovery of what they decide on (a user's
tokens on average for ``snr``, each token for ``importance``). ``importance`` counts recoveries
paired over the same noise draws (``paired`` in :func:`recovery_probability`): a lower ``k`` must
decode on ``target`` of the draws the full rate decodes on, so ``target`` 1.0 means "lose none of
them". "Decodes" means: to the token the full rate decodes without noise (:func:`full_rate_tokens`),
which the stage-3 channel decoder makes differ from the BS's token now and then; measured against
the BS's token, such a token had no full-rate recovery to keep and fell to the smallest ``k``
(with the shipped tiny codec, importance@1 then lost up to 0.018 of VQA accuracy against ``fixed`` at 20 dB).
Comparing the two rates' shares instead lets draws a prefix happens to win offset draws it
loses; at 0 dB that cost 0.3-0.7 points of VQA accuracy against ``fixed`` at target 0.99 (8 users,
1000 tasks), while paired at 1.0 matches ``fixed`` exactly. Public (shared) vectors go at the
largest ``k`` any user of their group needs. Rate signalling (:func:`rate_bits` per decision) is
counted in ``overhead_bits``: ``importance`` a 1-bit "all at ``c``" flag per user and batch, then
one ``k`` per private token when some token is not at ``c``; the same for the batch's public vectors
(whose ``k`` depends on the other users; charged to the first row that receives one); ``snr`` none:
a user applies the same table to the SNR it reported itself (both ends hold the table), and decodes
a public vector from the first ``k`` of its own symbols, which the nested codec allows whatever
larger ``k`` the vector went at for the others. At an SNR where every user needs ``c``, ``snr`` is
the fixed system exactly, bytes included.

A codec's short codes (:mod:`simulator.models.channel_codec`) are rates whose symbols are no prefix
of the nested code: public vectors never go at one (``snr``: the smallest nested rate at or above the
group's largest ``k``, read by a short-coded user from that many of its first symbols; ``importance``
signals the vector's ``k`` to all its users anyway). With ``repeat`` the candidates go on above ``c``
(:func:`repetition_rates`): the token's ``c`` symbols, then its first ``k - c`` again, which the
user combines with the first reception; the reference recovery is then that of ``2c``, and the
broadcast is never repeated.

The recovery estimate assumes AWGN at the user's reported (average) SNR with the MMSE equaliser of
:class:`channels.flat.AWGNChannel`; under fading it is optimistic (raise ``target`` for margin).
Its noise is a fixed set of ``draws`` patterns shared by all tokens, so a token's ``k`` does not
depend on the batch it is served in, and runs are reproducible. 256 draws resolve recovery to
0.4%: with 64, tokens whose lower-k recovery was a few percent short still read 64/64 and went
at that k (unpaired, VQA at 0 dB, 8 users, sharing on: 0.702 against fixed 0.715; 256 draws: 0.708).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from simulator.token_recovery import full_rate_tokens, recovery_probability, token_recovery

__all__ = ["RATE_TABLE_FILE", "RateTable", "check_adaptation", "RateDecision", "rate_bits", "recovery_probability", "smallest_rate",
           "reduce_to_budget", "signalling_bits", "full_rate_tokens", "token_recovery", "decide_rates"]

RATE_TABLE_FILE = "rate_table.json"


def rate_bits(num_rates: int) -> int:
    """Bits that name one of ``num_rates`` rates (0 when there is only one)."""
    return math.ceil(math.log2(num_rates)) if num_rates > 1 else 0


def repetition_rates(symbols_per_token: int) -> list[int]:
    """The rates above ``c`` that ``repeat`` offers: ``5c/4``, ``3c/2`` and ``2c`` (a token's ``c``
    symbols, then its first ``k - c`` again)."""
    c = symbols_per_token
    return sorted({c + max(1, round(c * f)) for f in (0.25, 0.5, 1.0)})


def candidate_rates(codec_config, setting) -> list[int]:
    """The rates a setting chooses from: the codec's, plus :func:`repetition_rates` with ``repeat``."""
    rates = codec_config.rates
    return rates + repetition_rates(codec_config.channel_symbols_per_token) if setting.repeat else rates


def smallest_rate(recovery: torch.Tensor, target: float) -> torch.Tensor:
    """``recovery [..., R]`` (last rate = ``c``) -> ``[...]`` index of the smallest rate keeping at
    least ``target`` x the full-rate recovery (the full rate always qualifies)."""
    enough = recovery >= target * recovery[..., -1:] - 1e-9
    enough[..., -1] = True
    return enough.float().argmax(-1)


def reduce_to_budget(choice: torch.Tensor, recovery: torch.Tensor, rates: list[int], cap: int) -> torch.Tensor:
    """Lower rates until ``sum(rates[choice]) <= cap``: each step takes the step down that loses the
    least recovery per symbol saved. ``choice [n]`` indices, ``recovery [n, R]``; ``cap`` must be
    ``>= n x rates[0]`` (always reachable)."""
    choice = choice.clone()
    table = torch.tensor(rates)
    if cap < len(choice) * rates[0]:
        raise ValueError(f"budget of {cap} symbols is below {len(choice)} tokens x {rates[0]}")
    while int(table[choice].sum()) > cap:
        lower = (choice - 1).clamp(min=0)
        saved = (table[choice] - table[lower]).float()
        loss = recovery.gather(1, choice[:, None])[:, 0] - recovery.gather(1, lower[:, None])[:, 0]
        cost = torch.where(saved > 0, loss / saved.clamp(min=1), torch.full_like(loss, math.inf))
        choice[int(cost.argmin())] -= 1
    return choice


@dataclass
class RateTable:
    """Calibrated token recovery of a nested codec through AWGN: ``recovery[s][r]`` at ``snr_db[s]``
    and ``rates[r]`` (the ``snr`` policy's table; ``rates`` are the codec's, then
    :func:`repetition_rates`).

    Attributes:
        snr_db: ascending SNR grid (dB); rates: the codec's rates; recovery: ``[S][R]`` in [0, 1]
            over all calibration tokens; by_task: the same per task (``vqa``, ``caption``,
            ``classify``), for the tasks calibrated; source: what it was calibrated on (recorded for
            the model card).
    """

    snr_db: list[float]
    rates: list[int]
    recovery: list[list[float]]
    source: dict
    by_task: dict[str, list[list[float]]] = field(default_factory=dict)

    def rate_for(self, snr_db: float, target: float, task: str | None = None, max_rate: int | None = None) -> int:
        """The smallest rate up to ``max_rate`` (None: all the table's) keeping ``target`` x the
        recovery of ``task``'s tokens (all tokens where the table has no row for it) at that largest
        rate, read at the grid point at or below ``snr_db`` (conservative; below the grid: the
        largest rate)."""
        columns = [i for i, k in enumerate(self.rates) if max_rate is None or k <= max_rate]
        below = [i for i, s in enumerate(self.snr_db) if s <= snr_db + 1e-9]
        if not below:
            return self.rates[columns[-1]]
        recovery = self.by_task.get(task, self.recovery) if task is not None else self.recovery
        index = int(smallest_rate(torch.tensor(recovery[below[-1]])[columns], target))
        return self.rates[columns[index]]

    def save(self, path: str | Path) -> None:
        from simulator.files import atomic_write_bytes

        payload = {"snr_db": self.snr_db, "rates": self.rates, "recovery": self.recovery, "by_task": self.by_task,
                   "source": self.source}
        atomic_write_bytes(Path(path), (json.dumps(payload, indent=1) + "\n").encode())

    @classmethod
    def load(cls, path: str | Path) -> "RateTable":
        data = json.loads(Path(path).read_text())
        by_task = {task: [list(r) for r in rows] for task, rows in data.get("by_task", {}).items()}
        return cls(list(data["snr_db"]), list(data["rates"]), [list(r) for r in data["recovery"]], dict(data["source"]),
                   by_task)


def check_adaptation(settings, codec_config, checkpoint: str | Path | None) -> RateTable | None:
    """ValueError (one line) when a setting cannot run on this codec; the rate table when a setting
    needs it (``snr``), else None."""
    rates = codec_config.rates
    adaptive = [s for s in settings if s.mode != "fixed"]
    if adaptive and len(rates) == 1:
        raise ValueError(f"mode {adaptive[0].mode} needs a codec trained at several rates (stages.joint.rates); "
                         f"this one serves only c = {rates[0]}")
    for setting in adaptive:
        if setting.budget is not None and setting.budget * rates[-1] < rates[0] - 1e-9:
            raise ValueError(f"budget {setting.budget:g} x c = {setting.budget * rates[-1]:g} symbols per token is "
                             f"below the codec's smallest rate {rates[0]}")
    if not any(s.mode == "snr" for s in settings):
        return None
    path = Path(checkpoint or "") / RATE_TABLE_FILE
    if checkpoint is None or not path.is_file():
        raise ValueError(f"mode snr needs the codec's calibrated rate table {path}: make it with "
                         f"python -m simulator calibrate --checkpoint {checkpoint}")
    table = RateTable.load(path)
    wanted = max((candidate_rates(codec_config, s) for s in settings if s.mode == "snr"), key=len)
    if table.rates[:len(wanted)] != wanted:
        raise ValueError(f"{path} is for rates {table.rates}, the codec serves {wanted}: calibrate it again")
    return table


@dataclass
class RateDecision:
    """The BS's choice for one batch.

    Attributes:
        private_rates: ``[rows, T]`` int64, ``k`` of each private token (0 elsewhere).
        public_rates: ``[P]`` int64, ``k`` of each public vector.
        signalling_bits: per row, the rate-signalling bits charged to it.
        row_rates: ``snr``: ``[rows]`` int64, the ``k`` each row's user decodes the public vectors
            from (their first ``k`` symbols): its own ``k``, or for a short-coded one the smallest
            nested rate above it; None: public tokens decode at their vector's ``k``.
    """

    private_rates: torch.Tensor
    public_rates: torch.Tensor
    signalling_bits: list[int]
    row_rates: torch.Tensor | None = None


def decide_rates(setting, codec, table: RateTable | None, hidden: torch.Tensor,
                 private_mask: torch.Tensor, public_vectors: torch.Tensor, public_index: torch.Tensor,
                 snr_db: torch.Tensor, recovery: torch.Tensor | None = None,
                 row_tasks: list[str] | None = None) -> RateDecision:
    """Rates of one batch under ``setting`` (:class:`simulator.scenario.AdaptationSetting`).

    Args:
        hidden: ``[rows, T, d]`` the BS's semantic vectors.
        private_mask: ``[rows, T]`` bool, tokens unicast to their row's user.
        public_vectors: ``[P, d]``; ``public_index``: ``[rows, T]`` the public vector of each
            public token (-1 elsewhere), as in :class:`simulator.sharing.SharingPlan`.
        snr_db: ``[rows]`` each row's user's reported SNR (dB).
        recovery: ``importance``: :func:`token_recovery` of these vectors, when the caller already has
            it (it depends on the vectors and SNRs only, not on the setting or the sharing plan).
        row_tasks: ``snr``: each row's task kind, to read its row of the table (None: all tokens').
    """
    rates = candidate_rates(codec.config, setting)
    c = codec.config.channel_symbols_per_token
    rows = private_mask.shape[0]
    num_public = public_vectors.shape[0]
    listeners = [sorted({int(r) for r in (public_index == p).nonzero()[:, 0].tolist()}) for p in range(num_public)]
    private_rates = torch.zeros(private_mask.shape, dtype=torch.long)
    public_rates = torch.full((num_public,), c, dtype=torch.long)
    bits = [0] * rows
    per_decision = rate_bits(len(rates))
    if setting.mode == "fixed":
        private_rates[private_mask] = c
        return RateDecision(private_rates, public_rates, bits)
    target = setting.rate_target
    if setting.mode == "snr":
        if table is None:
            raise ValueError("mode snr needs the codec's rate table")
        row_rate = [table.rate_for(float(snr_db[r]), target, row_tasks[r] if row_tasks else None, rates[-1])
                    for r in range(rows)]
        for r in range(rows):
            private_rates[r][private_mask[r]] = row_rate[r]
        # A short-coded k is no prefix: public vectors go at the smallest nested rate at or above their
        # group's largest k, and a row at a short code reads them at the smallest nested rate above its k.
        # The broadcast is never repeated: at most c.
        nested = codec.config.nested_rates

        def nested_from(k: int) -> int:
            return min(n for n in nested if n >= min(k, c))
        for p, group in enumerate(listeners):
            public_rates[p] = nested_from(max(row_rate[r] for r in group))
        return RateDecision(private_rates, public_rates, bits,
                            torch.tensor([nested_from(k) for k in row_rate], dtype=torch.long))

    # importance: per token
    where = private_mask.nonzero()
    if recovery is None:
        recovery = token_recovery(codec, hidden, private_mask, snr_db, rates)
    recovery = recovery[private_mask]
    choice = smallest_rate(recovery, target)
    full = rates.index(c)
    for r in range(rows):
        mine = (where[:, 0] == r).nonzero()[:, 0]
        if setting.budget is not None and mine.numel():
            cap = math.floor(setting.budget * c * mine.numel() + 1e-9)
            choice[mine] = reduce_to_budget(choice[mine], recovery[mine], rates, cap)
        bits[r] += signalling_bits(choice[mine], full, per_decision)
    private_rates[private_mask] = torch.tensor(rates)[choice]
    if num_public:
        rates = rates[:full + 1]  # the broadcast is never repeated
        member_tokens = full_rate_tokens(codec, public_vectors)
        pairs = [(p, r) for p, group in enumerate(listeners) for r in group]
        public_recovery = recovery_probability(codec, public_vectors[[p for p, _ in pairs]], member_tokens[[p for p, _ in pairs]],
                                               snr_db[[r for _, r in pairs]], rates, paired=True)
        worst = torch.ones(num_public, len(rates))
        needed = torch.zeros(num_public, dtype=torch.long)
        for (p, _), rec in zip(pairs, public_recovery):
            needed[p] = max(int(needed[p]), int(smallest_rate(rec, target)))
            worst[p] = torch.minimum(worst[p], rec)
        if setting.budget is not None:
            needed = reduce_to_budget(needed, worst, rates, math.floor(setting.budget * c * num_public + 1e-9))
        public_rates = torch.tensor(rates)[needed]
        bits[min(group[0] for group in listeners)] += signalling_bits(needed, full, per_decision)  # beside the sharing map
    return RateDecision(private_rates, public_rates, bits)


def signalling_bits(choice: torch.Tensor, full: int, per_decision: int) -> int:
    """Bits that tell a receiver the rates ``choice [n]`` (indices; ``full`` = the full rate): a
    1-bit flag "all at the full rate", then ``per_decision`` bits per token only when one is not
    (0 for no tokens). Where every token needs ``c``, ``importance`` costs 1 bit over ``fixed``."""
    if choice.numel() == 0:
        return 0
    return 1 + (per_decision * choice.numel() if bool((choice != full).any()) else 0)
