"""Rate adaptation (issue 19): the nested channel codec, the rate policies and their accounting."""

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from channels.conventions import snr_db_to_no
from channels.flat import AWGNChannel
from channels.randomness import user_generators
from simulator.adaptation import (RateTable, decide_rates, full_rate_tokens, rate_bits, recovery_probability, reduce_to_budget,
                                  signalling_bits, smallest_rate)
from simulator.links import BROADCAST_STREAM, UNICAST_STREAM
from simulator.workload import TaskPool
from simulator.models.channel_codec import ChannelDecoder, ChannelEncoder
from simulator.scenario import AdaptationSetting, SharingVariant
from simulator.interface import Link

OFF = SharingVariant(threshold=None)
RATES = [8, 16, 32, 64]


def _link(num_users: int, snr_db: float) -> Link:
    snr = torch.full((num_users,), snr_db)
    return Link(AWGNChannel(equalizer="mmse"), snr_db_to_no(snr), snr,
                user_generators(3, num_users, BROADCAST_STREAM), user_generators(3, num_users, UNICAST_STREAM))


def _nested_copy(tiny_checkpoint, folder):
    """A copy of the tiny checkpoint declared nested at ``RATES``."""
    import json
    import shutil

    shutil.copytree(tiny_checkpoint, folder)
    config = json.loads((folder / "config.json").read_text())
    config["codec"]["channel_rates"] = list(RATES)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def nested(tiny_checkpoint, clevr_dir):
    """The tiny identity codec declared nested at ``RATES`` (c = 64), as an M4SC system."""
    from simulator.models.checkpoint import load_codec
    from simulator.systems import M4SCSystem

    codec = load_codec(tiny_checkpoint)
    codec.config.channel_rates = list(RATES)
    pool = TaskPool.from_sources(["vqa"], clevr_dir, "test", None, "sentences", "test", 64)
    return M4SCSystem(codec, pool.load_image, codec.config.max_new_tokens), pool


# ---- the nested codec ----------------------------------------------------------------------------
def test_full_rate_is_bit_identical_to_the_single_rate_codec():
    torch.manual_seed(0)
    encoder, decoder = ChannelEncoder(24, 8), ChannelDecoder(24, 8)
    hidden = torch.randn(5, 3, 24)
    full = torch.full((5, 3), 8)
    assert torch.equal(encoder(hidden, full), encoder(hidden))
    symbols = encoder(hidden) + 0.1 * torch.randn(5, 3, 8, dtype=torch.complex64)
    assert torch.equal(decoder(symbols, full), decoder(symbols))


def test_a_prefix_has_unit_power_and_the_decoder_reads_only_the_prefix():
    torch.manual_seed(1)
    encoder, decoder = ChannelEncoder(24, 8), ChannelDecoder(24, 8)
    hidden = torch.randn(6, 24)
    rates = torch.tensor([1, 2, 3, 5, 8, 4])
    x = encoder(hidden, rates)
    for row, k in enumerate(rates.tolist()):
        assert torch.count_nonzero(x[row, k:]) == 0
        assert (x[row, :k].abs() ** 2).mean().item() == pytest.approx(1.0, abs=1e-5)
    garbage = x + torch.where(torch.arange(8) >= rates.unsqueeze(-1), 5.0 + 0j, 0j)
    assert torch.equal(decoder(garbage, rates), decoder(x, rates))



def test_a_rate_decoder_starts_as_the_zero_filled_shared_decoder_and_changes_only_its_rate():
    torch.manual_seed(2)
    encoder, decoder = ChannelEncoder(24, 8), ChannelDecoder(24, 8)
    hidden = torch.randn(7, 3, 24)
    rates = torch.randint(1, 9, (7, 3))
    rates[0] = torch.tensor([2, 8, 3])
    symbols = encoder(hidden, rates) + 0.1 * torch.randn(7, 3, 8, dtype=torch.complex64)
    shared = decoder(symbols, rates)
    decoder.add_rate_decoders([1, 2, 3])
    assert torch.allclose(decoder(symbols, rates), shared, atol=1e-6)
    with torch.no_grad():
        decoder.rate_decoders["2"].weight.add_(1.0)
    moved = decoder(symbols, rates)
    assert torch.equal(moved[rates != 2], decoder(symbols, rates)[rates != 2])
    assert torch.allclose(moved[rates != 2], shared[rates != 2], atol=1e-6)
    assert not torch.allclose(moved[rates == 2], shared[rates == 2], atol=1e-3)
    full = torch.full((7, 3), 8)
    assert torch.equal(decoder(symbols, full), decoder(symbols))  # the full rate never reads them
    with pytest.raises(ValueError, match=r"rate decoders are for 1 <= k < c = 8, got 8"):
        decoder.add_rate_decoders([8])


def test_split_output_reproduces_the_decoder_at_every_kind_of_rate():
    """features then the affine map equal ``forward`` at the full rate, a zero-filled prefix, a rate
    decoder and a short code."""
    from simulator.models.channel_codec import add_short_codes

    torch.manual_seed(3)
    encoder, decoder = ChannelEncoder(24, 8), ChannelDecoder(24, 8)
    decoder.add_rate_decoders([4])
    add_short_codes(encoder, decoder, [2], width=16, seed=0)
    symbols = torch.randn(5, 3, 8, dtype=torch.complex64)
    for k, width in ((8, 16), (5, 10), (4, 8), (2, 16)):
        features, weight, bias, linear = decoder.split_output(k)
        assert weight.shape == (24, width) and bias.shape == (24,) and linear == (k != 2)
        expected = decoder(symbols, torch.full((5, 3), k))
        assert torch.allclose(features(symbols) @ weight.T + bias, expected, atol=1e-5), k


def test_decoding_through_the_folded_head_gives_the_unfolded_tokens(monkeypatch):
    """The LM head with the decoder's map folded in (a 2k-wide head) picks the tokens
    ``argmax(lm_head(decoder(y)))`` picks, over a vocabulary large enough to be chunked."""
    import simulator.token_recovery as token_recovery
    from types import SimpleNamespace

    torch.manual_seed(4)
    decoder = ChannelDecoder(48, 8)
    lm_head = torch.nn.Linear(48, 3000)
    codec = SimpleNamespace(channel_decoder=decoder, lm_head=lm_head, logits=lm_head)
    received = torch.randn(40, 16, 8, dtype=torch.complex64)
    monkeypatch.setattr(token_recovery, "_LOGITS_PER_CHUNK", 3000 * 16 * 7)  # chunks of 7 tokens
    monkeypatch.setattr(token_recovery, "_SHORTCUT_MIN_VOCAB", 3000)
    for k in (2, 5, 8):
        expected = lm_head(decoder(received, torch.full((40, 16), k))).argmax(-1)
        assert torch.equal(token_recovery._decode_tokens(codec, received, k), expected), k
    with torch.no_grad():  # a trained decoder: the folded head kept from above is stale
        decoder.linear.weight.mul_(-1)
    expected = lm_head(decoder(received, torch.full((40, 16), 5))).argmax(-1)
    assert torch.equal(token_recovery._decode_tokens(codec, received, 5), expected)


@pytest.mark.parametrize("noise", [0.0, 0.02, 0.3, 3.0])
def test_pruned_decoding_gives_the_full_heads_tokens_at_any_noise_level(monkeypatch, noise):
    """Given the noise-free part, only words that could beat the reference word in some draw get
    logits; the tokens are still the full head's, from no noise (every draw decodes to the
    reference word) to noise far above the signal (almost every word a candidate)."""
    import simulator.token_recovery as token_recovery
    from types import SimpleNamespace

    torch.manual_seed(5)
    decoder = ChannelDecoder(48, 8)
    lm_head = torch.nn.Linear(48, 3000, bias=False)
    codec = SimpleNamespace(channel_decoder=decoder, lm_head=lm_head, logits=lm_head)
    clean = torch.randn(30, 1, 8, dtype=torch.complex64)
    received = clean + noise * torch.randn(30, 16, 8, dtype=torch.complex64)
    monkeypatch.setattr(token_recovery, "_LOGITS_PER_CHUNK", 3000 * 4 * 9)  # 9 tokens per chunk
    monkeypatch.setattr(token_recovery, "_SHORTCUT_MIN_VOCAB", 3000)
    for k in (3, 8):
        expected = lm_head(decoder(received, torch.full((30, 16), k))).argmax(-1)
        assert torch.equal(token_recovery._decode_tokens(codec, received, k, clean), expected), (k, noise)
    if noise == 0.0:
        assert bool((expected == expected[:, :1]).all())

def test_a_codec_config_names_rate_decoders_and_short_codes_only_among_its_rates_below_c():
    from simulator.models.config import profile_config

    config = profile_config("tiny", channel_symbols_per_token=8, channel_rates=[1, 2, 4, 8], channel_rate_decoders=[2, 4],
                            channel_short_codes=[1])
    assert config.channel_rate_decoders == [2, 4] and config.nested_rates == [2, 4, 8]
    for key in ("channel_rate_decoders", "channel_short_codes"):
        for bad in ([3], [8], [4, 2]):
            with pytest.raises(ValueError, match=f"{key} must be distinct, ascending rates below c"):
                profile_config("tiny", channel_symbols_per_token=8, channel_rates=[2, 4, 8], **{key: bad})
    with pytest.raises(ValueError, match=re.escape("a rate has either a rate decoder or a short code: both have [2]")):
        profile_config("tiny", channel_symbols_per_token=8, channel_rates=[2, 4, 8], channel_rate_decoders=[2],
                       channel_short_codes=[2])

def test_eval_at_the_full_rate_equals_eval_without_a_rate(nested, clevr_dir):
    from simulator.evaluation import evaluate, load_eval_samples

    system, _ = nested
    samples = load_eval_samples("vqa", 6, clevr_dir)
    plain = evaluate(system.codec, samples, "awgn", [5.0], seed=2)
    full = evaluate(system.codec, samples, "awgn", [5.0], seed=2, rate=64)
    assert plain == full
    quarter = evaluate(system.codec, samples, "awgn", [5.0], seed=2, rate=16)
    assert quarter[0]["symbols_per_sample"] == pytest.approx(full[0]["symbols_per_sample"] / 4)


# ---- policies ------------------------------------------------------------------------------------
def test_smallest_rate_keeps_the_target_share_of_full_rate_recovery():
    recovery = torch.tensor([[0.5, 0.95, 0.99, 1.0], [0.2, 0.3, 0.4, 0.5], [0.0, 0.0, 0.0, 0.0]])
    assert smallest_rate(recovery, 0.99).tolist() == [2, 3, 0]
    assert smallest_rate(recovery, 0.9).tolist() == [1, 3, 0]
    assert smallest_rate(recovery, 0.6).tolist() == [1, 1, 0]


def test_rate_table_reads_the_grid_point_at_or_below_the_snr():
    table = RateTable([0.0, 10.0], [4, 8, 16], [[0.1, 0.5, 0.9], [0.95, 0.99, 1.0]], {})
    assert table.rate_for(-3.0, 0.99) == 16      # below the grid: full rate
    assert table.rate_for(9.9, 0.99) == 16       # reads 0 dB, where only 16 keeps 0.99 of 0.9
    assert table.rate_for(10.0, 0.99) == 8
    assert table.rate_for(25.0, 0.95) == 4



def test_rate_table_reads_the_row_of_the_users_task_and_round_trips(tmp_path):
    table = RateTable([0.0, 10.0], [4, 8, 16], [[0.1, 0.5, 0.9], [0.5, 0.9, 1.0]], {"tokens": 3},
                      {"vqa": [[0.6, 0.9, 0.9], [1.0, 1.0, 1.0]], "caption": [[0.0, 0.3, 0.9], [0.3, 0.8, 1.0]]})
    assert table.rate_for(10.0, 0.99) == 16              # all tokens
    assert table.rate_for(10.0, 0.99, "vqa") == 4        # the one-word answers survive at 4
    assert table.rate_for(0.0, 0.99, "vqa") == 8
    assert table.rate_for(10.0, 0.99, "caption") == 16
    assert table.rate_for(10.0, 0.99, "classify") == 16  # no row of its own: all tokens'
    table.save(tmp_path / "table.json")
    assert RateTable.load(tmp_path / "table.json") == table
    import json

    legacy = json.loads((tmp_path / "table.json").read_text())
    del legacy["by_task"]
    (tmp_path / "legacy.json").write_text(json.dumps(legacy))
    assert RateTable.load(tmp_path / "legacy.json").by_task == {}

@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.floats(0, 1), min_size=4, max_size=4), min_size=1, max_size=12),
       st.floats(0.125, 1.0), st.data())
def test_budget_reduction_never_exceeds_its_cap_and_only_lowers_rates(rows, budget, data):
    rates = [8, 16, 32, 64]
    recovery = torch.tensor(rows).sort(dim=-1).values
    choice = torch.tensor(data.draw(st.lists(st.integers(0, 3), min_size=len(rows), max_size=len(rows))))
    cap = math.floor(budget * 64 * len(rows))
    reduced = reduce_to_budget(choice, recovery, rates, cap)
    assert int(torch.tensor(rates)[reduced].sum()) <= cap
    assert bool((reduced <= choice).all())
    if int(torch.tensor(rates)[choice].sum()) <= cap:
        assert torch.equal(reduced, choice)


def test_recovery_is_certain_at_high_snr_and_grows_with_the_rate(nested):
    system, pool = nested
    encoded = system.encode(pool.tasks["vqa"][:4])
    sent = encoded.transmission
    hidden, tokens = sent.hidden[sent.token_mask], sent.tokens[sent.token_mask]
    high = recovery_probability(system.codec, hidden, tokens, torch.full((len(tokens),), 300.0), [64])
    assert bool((high == 1.0).all())
    low = recovery_probability(system.codec, hidden, tokens, torch.full((len(tokens),), 0.0), RATES).mean(0)
    assert low[-1] >= low[0]


def test_signalling_is_one_flag_bit_when_every_token_is_at_the_full_rate():
    full = 5
    assert signalling_bits(torch.tensor([], dtype=torch.long), full, 3) == 0
    assert signalling_bits(torch.tensor([5, 5, 5]), full, 3) == 1
    assert signalling_bits(torch.tensor([5, 2, 5, 5]), full, 3) == 1 + 3 * 4


def test_paired_recovery_counts_only_the_full_rates_recoveries(nested):
    """Paired recovery at k is P(k and c decode) over the same draws: at most either marginal, at
    least their Frechet lower bound, and the marginal itself at the full rate."""
    system, pool = nested
    sent = system.encode(pool.tasks["vqa"][:4]).transmission
    hidden, tokens = sent.hidden[sent.token_mask], sent.tokens[sent.token_mask]
    snr = torch.full((len(tokens),), 0.0)
    marginal = recovery_probability(system.codec, hidden, tokens, snr, RATES, draws=64)
    paired = recovery_probability(system.codec, hidden, tokens, snr, RATES, draws=64, paired=True)
    full = marginal[:, -1:]
    assert torch.equal(paired[:, -1], marginal[:, -1])
    assert bool((paired <= torch.minimum(marginal, full) + 1e-6).all())
    assert bool((paired >= marginal + full - 1 - 1e-6).all())
    assert bool((paired[:, :-1] < marginal[:, :-1]).any()), "no draw where a prefix wins and the full rate loses"


@pytest.mark.parametrize("budget", [0.125, 0.3, 0.5])
def test_importance_policy_never_exceeds_its_budget(nested, budget):
    system, pool = nested
    encoded = system.encode(pool.tasks["vqa"][:6])
    setting = AdaptationSetting(mode="importance", target=1.0, budget=budget)
    for variant in (OFF, SharingVariant(threshold=0.5)):
        plan = system.plan(encoded, variant)
        adapted = system.adapt(encoded, plan, torch.full((6,), 0.0), setting)
        sharing = plan.detail.sharing
        for row, private in enumerate(sharing.private_mask.sum(-1).tolist()):
            assert adapted.unicast_symbols[row] <= math.floor(budget * 64 * private + 1e-9)
        assert adapted.broadcast_symbols <= math.floor(budget * 64 * sharing.num_public + 1e-9)


def test_mixed_rate_accounting_is_exact(nested, monkeypatch):
    """Users share public vectors; rates are forced, and every count is checked by hand."""
    import simulator.adaptation as adaptation
    from simulator.adaptation import RateDecision

    system, pool = nested
    task = pool.tasks["vqa"][0]
    encoded = system.encode([task, task, pool.tasks["vqa"][3]])
    plan = system.plan(encoded, SharingVariant(threshold=0.99))
    sharing = plan.detail.sharing
    mask = encoded.transmission.token_mask
    assert sharing.num_public >= 1 and plan.broadcast_rows[:2] == [0, 1]
    cycle = torch.tensor([8, 32, 16, 64])
    private_rates = torch.zeros(mask.shape, dtype=torch.long)
    for row in range(3):
        count = int(sharing.private_mask[row].sum())
        private_rates[row][sharing.private_mask[row]] = cycle.roll(row)[torch.arange(count) % 4]
    public_rates = cycle.roll(1)[torch.arange(sharing.num_public) % 4]
    signalling = [3, 0, 5]
    forced = RateDecision(private_rates, public_rates, signalling)
    monkeypatch.setattr(adaptation, "decide_rates", lambda *args, **kwargs: forced)
    adapted = system.adapt(encoded, plan, torch.zeros(3), AdaptationSetting(mode="importance"))

    assert adapted.unicast_symbols == [int(private_rates[r].sum()) for r in range(3)]
    assert adapted.broadcast_symbols == int(public_rates.sum())
    for row in range(3):
        public = sharing.public_index[row][sharing.public_mask[row]].tolist()
        share = sum(int(public_rates[p]) / int(sharing.public_users[p]) for p in set(public))
        assert adapted.public_symbol_share[row] == pytest.approx(share)
        assert adapted.token_symbols[row] == sum(int(public_rates[p]) for p in public) + int(private_rates[row].sum())
    assert sum(adapted.public_symbol_share) == pytest.approx(adapted.broadcast_symbols)
    assert adapted.overhead_bits == [b + s for b, s in zip(plan.overhead_bits, signalling)]
    # what crosses the air: zero after each private token's k-th symbol
    for row in range(3):
        private = adapted.detail.private_symbols[row][sharing.private_mask[row]]
        for symbols, k in zip(private, private_rates[row][sharing.private_mask[row]].tolist()):
            assert torch.count_nonzero(symbols[k:]) == 0 and torch.count_nonzero(symbols[:k]) == k
    for symbols, k in zip(adapted.detail.public_symbols, public_rates.tolist()):
        assert torch.count_nonzero(symbols[k:]) == 0
    assert len(system.deliver(encoded, adapted, [0, 1, 2], _link(3, 300.0))) == 3


def test_fixed_adaptation_is_the_plan_itself_and_full_rate_importance_decodes_alike(nested):
    system, pool = nested
    encoded = system.encode(pool.tasks["vqa"][:3])
    plan = system.plan(encoded, OFF)
    assert system.adapt(encoded, plan, torch.zeros(3), AdaptationSetting()) is plan
    # at an SNR where every rate is certain, importance sends the smallest rate that keeps recovery
    adapted = system.adapt(encoded, plan, torch.full((3,), 300.0), AdaptationSetting(mode="importance", target=1.0))
    tokens = encoded.transmission.token_mask.sum(-1).tolist()
    assert all(u <= n * 64 for u, n in zip(adapted.unicast_symbols, tokens))
    assert any(u < n * 64 for u, n in zip(adapted.unicast_symbols, tokens))
    assert adapted.overhead_bits == [1 + rate_bits(len(RATES)) * n if u < n * 64 else 1
                                     for u, n in zip(adapted.unicast_symbols, tokens)]
    clean = system.deliver(encoded, plan, [0, 1, 2], _link(3, 300.0))
    assert [d.prediction for d in system.deliver(encoded, adapted, [0, 1, 2], _link(3, 300.0))] == \
        [d.prediction for d in clean]


def test_snr_policy_uses_one_rate_per_user_and_the_public_vector_serves_the_worst_user(nested):
    system, pool = nested
    table = RateTable([0.0, 20.0], RATES, [[0.2, 0.4, 0.6, 0.8], [0.99, 1.0, 1.0, 1.0]], {})
    task = pool.tasks["vqa"][0]
    encoded = system.encode([task, task, pool.tasks["vqa"][4]])
    plan = system.plan(encoded, SharingVariant(threshold=0.99))
    sharing = plan.detail.sharing
    sent = encoded.transmission
    decision = decide_rates(AdaptationSetting(mode="snr"), system.codec, table, sent.hidden,
                            sharing.private_mask, sharing.public_vectors, sharing.public_index,
                            torch.tensor([25.0, 5.0, 25.0]))
    assert set(decision.private_rates[2][sharing.private_mask[2]].tolist()) == {8}
    assert decision.public_rates.tolist() == [64] * sharing.num_public  # user 1 at 5 dB reads the 0 dB row
    assert decision.signalling_bits == [0, 0, 0]  # own k: implicit from the SNR; public ones decode at it
    assert sharing.num_public > 0 and decision.row_rates.tolist() == [8, 64, 8]
    by_task = RateTable(table.snr_db, RATES, table.recovery, {}, {"vqa": [[0.2, 0.4, 0.6, 0.8], [0.5, 1.0, 1.0, 1.0]]})
    per_task = decide_rates(AdaptationSetting(mode="snr"), system.codec, by_task, sent.hidden, sharing.private_mask,
                            sharing.public_vectors, sharing.public_index, torch.tensor([25.0, 5.0, 25.0]),
                            row_tasks=["vqa", "vqa", "caption"])
    assert per_task.row_rates.tolist() == [16, 64, 8]  # the vqa rows read vqa's row; caption has none: all tokens'
    system.codec.config.channel_short_codes = [8]  # k = 8 as a short code: its symbols are no prefix
    try:
        short = decide_rates(AdaptationSetting(mode="snr"), system.codec, table, sent.hidden, sharing.private_mask,
                             sharing.public_vectors, sharing.public_index, torch.full((3,), 25.0))
    finally:
        system.codec.config.channel_short_codes = []
    assert set(short.private_rates[sent.token_mask & sharing.private_mask].tolist()) == {8}
    assert short.public_rates.tolist() == [16] * sharing.num_public  # the smallest nested rate above 8
    assert short.row_rates.tolist() == [16, 16, 16]  # and every row reads them from their first 16
    system.rate_table = table
    try:
        adapted = system.adapt(encoded, plan, torch.tensor([25.0, 5.0, 25.0]), AdaptationSetting(mode="snr"))
    finally:
        system.rate_table = None
    assert adapted.overhead_bits == plan.overhead_bits  # nothing signalled beyond the sharing map
    decode = adapted.detail.decode_rates
    for row, k in enumerate([8, 64, 8]):  # every token of a row, public ones included, decodes at its own k
        assert set(decode[row][sent.token_mask[row]].tolist()) == {k}
        assert adapted.token_symbols[row] == k * int(sent.token_mask[row].sum())
    assert adapted.broadcast_symbols == 64 * sharing.num_public  # sent at the largest k of the group


def test_adaptation_settings_are_variants_with_their_own_rows(base_scenario, write_scenario, run_cli, tmp_path,
                                                               tiny_checkpoint):
    import pandas as pd

    nested_dir = _nested_copy(tiny_checkpoint, tmp_path / "nested")
    RateTable([-10.0, 10.0], RATES, [[0.1, 0.2, 0.3, 0.4], [1.0, 1.0, 1.0, 1.0]], {}).save(nested_dir / "rate_table.json")
    scenario = write_scenario({"model": {"checkpoint": str(nested_dir)}, "adaptation": [
        {"mode": "fixed"}, {"mode": "snr"}, {"mode": "importance", "target": 0.9, "budget": 0.5}]})
    result = run_cli("run", str(scenario), "--out", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    frame = pd.read_parquet(tmp_path / "out" / "metrics.parquet")
    m4sc = frame[frame["system"] == "m4sc"]
    assert sorted(set(m4sc["adaptation"])) == ["fixed", "importance@0.9/b0.5", "snr@0.99"]
    fixed = m4sc[m4sc["adaptation"] == "fixed"]
    assert (fixed["symbols_per_token_mean"] == 64).all()
    snr = m4sc[m4sc["adaptation"] == "snr@0.99"]
    assert set(snr.loc[snr["snr_db"] == 30.0, "symbols_per_token_mean"]) == {8.0}
    assert set(snr.loc[snr["snr_db"] == 0.0, "symbols_per_token_mean"]) == {64.0}
    assert (m4sc.loc[m4sc["adaptation"] == "importance@0.9/b0.5", "symbols_per_token_mean"] <= 32).all()


def test_adaptive_modes_on_a_single_rate_codec_are_refused_in_one_line(base_scenario, write_scenario, run_cli,
                                                                       tmp_path):
    scenario = write_scenario({"adaptation": {"mode": "snr"}})
    result = run_cli("run", str(scenario), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: adaptation: mode snr needs a codec trained at several rates (stages.joint.rates); "
        "this one serves only c = 64"]
    assert not (tmp_path / "out").exists()


def test_snr_mode_without_a_rate_table_names_the_command_that_makes_it(base_scenario, write_scenario, run_cli,
                                                                       tmp_path, tiny_checkpoint):
    nested_dir = _nested_copy(tiny_checkpoint, tmp_path / "nested")
    scenario = write_scenario({"model": {"checkpoint": str(nested_dir)}, "adaptation": {"mode": "snr"}})
    result = run_cli("run", str(scenario), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "python -m simulator calibrate --checkpoint" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_calibrate_writes_a_table_whose_full_rate_recovery_rises_with_snr(run_cli, tmp_path, tiny_checkpoint,
                                                                          clevr_dir):
    result = run_cli("calibrate", "--checkpoint", str(tiny_checkpoint), "--data", str(clevr_dir))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {tiny_checkpoint}: the codec serves one rate (c = 64); train it with stages.joint.rates"]
    nested_dir = _nested_copy(tiny_checkpoint, tmp_path / "nested")
    result = run_cli("calibrate", "--checkpoint", str(nested_dir), "--data", str(clevr_dir), "--num-samples", "6",
                     "--snr-db", "-20", "20", "20", "--draws", "8")
    assert result.returncode == 0, result.stderr
    table = RateTable.load(nested_dir / "rate_table.json")
    assert table.snr_db == [-20.0, 0.0, 20.0] and table.rates == RATES + [80, 96, 128]  # + the repetition rates
    full = [row[-1] for row in table.recovery]
    assert full[0] < full[1] <= full[2] and full[2] > 0.9
    assert table.source["data"] == str(clevr_dir) and table.source["tasks"][:2] == ["vqa", "caption"]
    counts = table.source["tokens_per_task"]
    assert set(table.by_task) == set(counts) >= {"vqa", "caption"} and sum(counts.values()) == table.source["tokens"]
    for s, row in enumerate(table.recovery):  # all tokens' row is the token-weighted mean of the tasks' rows
        pooled = [sum(counts[t] * table.by_task[t][s][r] for t in counts) / table.source["tokens"]
                  for r in range(len(table.rates))]
        assert row == pytest.approx(pooled, abs=2e-5)
    assert table.source["reference"] == "bs"

    # Against the full rate's own noise-free decode, the full rate recovers every token at a high SNR.
    result = run_cli("calibrate", "--checkpoint", str(nested_dir), "--data", str(clevr_dir), "--num-samples", "6",
                     "--snr-db", "100", "100", "1", "--draws", "8", "--reference", "full-rate",
                     "--out", str(tmp_path / "full_rate.json"))
    assert result.returncode == 0, result.stderr
    table = RateTable.load(tmp_path / "full_rate.json")
    full = table.rates.index(64)
    assert table.source["reference"] == "full-rate"
    assert table.recovery[0][full] == 1.0 and all(rows[0][full] == 1.0 for rows in table.by_task.values())


def test_importance_at_target_one_keeps_what_the_full_rate_decodes(nested):
    """Noise-free, every private token decodes at its chosen k exactly as at all c, including tokens
    the channel decoder maps to another token than the BS's argmax (their reference is the full
    rate's decode, not the BS's token, so they do not fall to the smallest k)."""
    system, pool = nested
    encoded = system.encode(pool.tasks["vqa"][:8])
    sent = encoded.transmission
    hidden = sent.hidden[sent.token_mask]
    full = full_rate_tokens(system.codec, hidden)
    plan = system.plan(encoded, OFF)
    decision = decide_rates(AdaptationSetting(mode="importance", target=1.0), system.codec, None,
                            sent.hidden, plan.detail.sharing.private_mask, torch.zeros(0, hidden.shape[-1]),
                            torch.full(sent.tokens.shape, -1), torch.full((sent.tokens.shape[0],), 300.0))
    rates = decision.private_rates[sent.token_mask]
    with torch.no_grad():
        symbols = system.codec.channel_encoder(hidden, rates)
        at_k = system.codec.logits(system.codec.channel_decoder(symbols, rates)).argmax(-1)
    assert torch.equal(at_k, full)
    assert bool((rates < RATES[-1]).any()), "no token went below c: the check above would be vacuous"


# ---- repetition above c ------------------------------------------------------------------------------
def test_combining_two_receptions_halves_the_noise_of_zf_and_matches_mmse_theory():
    from channels.flat import combine_receptions

    torch.manual_seed(5)
    channel = AWGNChannel(equalizer="zf")
    x = torch.polar(torch.ones(1, 2, 100_000), torch.rand(1, 2, 100_000) * 6.283)
    no = torch.tensor([0.5, 2.0])
    first, second = channel(x, no), channel(x, no)
    error = (combine_receptions(first, second, no, "zf") - x).abs().pow(2).mean(-1)[0]
    assert error.tolist() == pytest.approx((no / 2).tolist(), rel=0.03)
    mmse = combine_receptions(first, second, no, "mmse")
    # MMSE of x ~ CN(0, 1) from two looks: error variance no / (2 + no)
    assert (mmse - x).abs().pow(2).mean(-1)[0].tolist() == pytest.approx((no / (2 + no)).tolist(), rel=0.05)


def test_repeat_offers_rates_above_c_and_their_recovery_is_never_worse_on_average(nested):
    from simulator.adaptation import candidate_rates, repetition_rates

    system, pool = nested
    assert repetition_rates(64) == [80, 96, 128] and repetition_rates(32) == [40, 48, 64]
    assert candidate_rates(system.codec.config, AdaptationSetting(mode="snr", repeat=True)) == RATES + [80, 96, 128]
    assert candidate_rates(system.codec.config, AdaptationSetting(mode="snr")) == RATES
    assert AdaptationSetting(mode="snr", repeat=True).label == "snr@0.99+rep"
    with pytest.raises(ValueError, match="mode fixed takes no target, budget or repeat"):
        AdaptationSetting(mode="fixed", repeat=True)
    encoded = system.encode(pool.tasks["vqa"][:8])
    sent = encoded.transmission
    hidden, tokens = sent.hidden[sent.token_mask], sent.tokens[sent.token_mask]
    recovery = recovery_probability(system.codec, hidden, tokens, torch.full((len(tokens),), -3.0), [64, 96, 128])
    mean = recovery.mean(0)
    assert mean[2] >= mean[0] and mean[1] >= mean[0] - 0.02
    assert bool((recovery_probability(system.codec, hidden, tokens, torch.full((len(tokens),), 300.0), [128]) == 1).all())


def test_repeated_tokens_are_counted_at_k_sent_twice_and_decode_alike_without_noise(nested, monkeypatch):
    import simulator.adaptation as adaptation
    from simulator.adaptation import RateDecision

    system, pool = nested
    encoded = system.encode(pool.tasks["vqa"][:3])
    plan = system.plan(encoded, OFF)
    mask = plan.detail.sharing.private_mask
    private_rates = torch.where(mask, torch.tensor([128, 80, 64]).view(3, 1), torch.zeros_like(mask, dtype=torch.long))
    forced = RateDecision(private_rates, torch.zeros(0, dtype=torch.long), [4, 4, 4])
    monkeypatch.setattr(adaptation, "decide_rates", lambda *args, **kwargs: forced)
    adapted = system.adapt(encoded, plan, torch.zeros(3), AdaptationSetting(mode="importance", repeat=True))
    counts = mask.sum(-1)
    assert adapted.unicast_symbols == [128 * int(counts[0]), 80 * int(counts[1]), 64 * int(counts[2])]
    assert adapted.token_symbols == adapted.unicast_symbols
    assert adapted.detail.repeats[mask].tolist() == [64] * int(counts[0]) + [16] * int(counts[1]) + [0] * int(counts[2])
    assert set(adapted.detail.decode_rates[mask].tolist()) == {64}
    repeated = system.deliver(encoded, adapted, [0, 1, 2], _link(3, 300.0))
    fixed = system.deliver(encoded, plan, [0, 1, 2], _link(3, 300.0))
    assert [d.prediction for d in repeated] == [d.prediction for d in fixed]
    assert all(d.token_accuracy == 1.0 for d in repeated)
