"""The baselines as simulator systems: what each puts on the air (symbols per unit, unit power, a
fixed per-user grid), noiseless delivery equals the receiver's own output, the digital chains are
error-free at high SNR and lose every task at very low SNR, with ARQ costing symbols and time."""

import pytest
import torch

from channels.allocation import ResourceAllocator, SlotGrid
from channels.conventions import snr_db_to_no
from channels.flat import AWGNChannel
from channels.randomness import user_generators
from simulator.baselines.deepsc import DeepSC, DeepSCConfig
from simulator.baselines.deepsc_vqa import DeepSCVQA, DeepSCVQAConfig
from simulator.systems import DeepSCSystem, DeepSCVQASystem, DigitalAnswerSystem, DigitalSourceSystem
from simulator.workload import Task
from simulator.models.tokenizer import train_word_tokenizer
from simulator.interface import Link

QUESTIONS = ["what color is the large cube ?", "how many spheres are there ?", "is there a red thing ?"]
TEXTS = ["a gripping and moving film", "dull , flat and far too long", "fine"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_word_tokenizer(QUESTIONS + TEXTS, vocab_size=64)


def _link(num_users: int, snr_db: float, seed: int = 0, equalizer: str = "mmse") -> Link:
    snr = torch.full((num_users,), float(snr_db))
    return Link(AWGNChannel(equalizer=equalizer), snr_db_to_no(snr), snr,
                user_generators(seed, num_users, 102), user_generators(seed, num_users, 101))


def _vqa_tasks(count: int) -> list[Task]:
    return [Task(f"vqa/{i}", "vqa", QUESTIONS[i % 3], f"img{i}.png", ("yes",), f"img{i}.png") for i in range(count)]


def _classify_tasks(count: int) -> list[Task]:
    return [Task(f"classify/{i}", "classify", TEXTS[i % 3], None, ("positive",), f"classify/{i}") for i in range(count)]


def _images(size: int):
    cache = {}

    def load(name: str) -> torch.Tensor:
        if name not in cache:
            cache[name] = torch.rand(3, size, size, generator=torch.Generator().manual_seed(len(cache)))
        return cache[name]
    return load


@pytest.fixture(scope="module")
def vqa_system(tokenizer):
    torch.manual_seed(0)
    config = DeepSCVQAConfig(vocab_size=len(tokenizer), answers=("yes", "no", "2", "red"), image_size=16, d_model=16,
                             num_heads=2, ffn_dim=32, dropout=0.0, num_image_layers=1, num_text_layers=1,
                             num_reasoning_layers=1, symbols_per_image_token=3, symbols_per_word=2, channel_hidden=16,
                             max_words=12)
    return DeepSCVQASystem(DeepSCVQA(config, tokenizer).eval(), _images(16))


@pytest.fixture(scope="module")
def text_system(tokenizer):
    torch.manual_seed(0)
    config = DeepSCConfig(vocab_size=len(tokenizer), d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                          ffn_dim=32, channel_hidden=16, symbols_per_word=5, max_words=12, dropout=0.0)
    return DeepSCSystem(DeepSC(config, tokenizer).eval())


def _words(tokenizer, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def test_deepsc_vqa_sends_the_configured_symbols_per_image_token_and_word(vqa_system, tokenizer):
    tasks = _vqa_tasks(3)
    encoded = vqa_system.encode(tasks)
    plan = vqa_system.plan(encoded, None)
    image_tokens = vqa_system.model.config.image_tokens
    assert image_tokens == 4
    assert plan.unicast_symbols == [image_tokens * 3 + 2 * _words(tokenizer, t.input_text) for t in tasks]
    assert plan.broadcast_symbols == 0 and plan.payload_bits is None
    for stream in encoded.streams:
        sent = stream.symbols[stream.symbol_mask]
        assert (sent.abs() ** 2).mean().item() == pytest.approx(1.0, rel=0.01)


def test_deepsc_sends_the_configured_symbols_per_word(text_system, tokenizer):
    tasks = _classify_tasks(3)
    plan = text_system.plan(text_system.encode(tasks), None)
    assert plan.unicast_symbols == [5 * _words(tokenizer, t.input_text) for t in tasks]


@pytest.mark.parametrize("which", ["vqa", "text"])
def test_analog_baselines_deliver_their_noiseless_output_at_high_snr(which, vqa_system, text_system):
    system, tasks = (vqa_system, _vqa_tasks(3)) if which == "vqa" else (text_system, _classify_tasks(3))
    encoded = system.encode(tasks)
    deliveries = system.deliver(encoded, system.plan(encoded, None), [2, 0, 1], _link(3, 120.0))
    assert [d.prediction for d in deliveries] == [d.reference_prediction for d in deliveries] == encoded.reference_texts


def test_a_users_reception_does_not_depend_on_the_other_users(vqa_system):
    """Fixed per-user grids: user 0's received symbols are the same with 1 or 3 users served."""
    tasks = _vqa_tasks(3)
    encoded = vqa_system.encode(tasks)
    plan = vqa_system.plan(encoded, None)
    alone = vqa_system.encode(tasks[:1])
    first = vqa_system.deliver(encoded, plan, [0, 1, 2], _link(3, -5.0, seed=4))[0]
    single = vqa_system.deliver(alone, vqa_system.plan(alone, None), [0], _link(3, -5.0, seed=4))[0]
    assert first.prediction == single.prediction


class _FixedAnswers:
    """Stands in for the M4SC system: the BS's output text per task (~300 bytes, or one word)."""

    def __init__(self, one_word: bool = False):
        self.one_word = one_word

    def prepare(self, tasks, on_progress=None):
        pass

    def output_text(self, task):
        return "yes" if self.one_word else f"answer {task.task_id} " + "x" * 290


def _allocation(num_users: int, snr_db: float, payload_bits: list[int]):
    allocator = ResourceAllocator(SlotGrid(num_prbs=51, numerology=1), num_users, mode="digital")
    return allocator.allocate(torch.full((num_users,), float(snr_db)), unicast_payloads=payload_bits)


@pytest.mark.parametrize("link_model", ["bits", "abstraction"])
def test_digital_answer_is_error_free_at_high_snr_and_fails_at_very_low_snr(link_model):
    system = DigitalAnswerSystem(_FixedAnswers(), AWGNChannel(equalizer="zf"), link_model=link_model)
    tasks = _vqa_tasks(3)
    encoded = system.encode(tasks)
    plan = system.plan(encoded, None)
    assert plan.payload_bits == [8 * len(_FixedAnswers().output_text(t)) for t in tasks]
    high = system.deliver(encoded, plan, [0, 1, 2], _link(3, 30.0, equalizer="zf"), _allocation(3, 30.0, plan.payload_bits))
    assert [d.prediction for d in high] == encoded.reference_texts
    assert all(d.retransmitted_symbols == 0 for d in high)
    low = system.deliver(encoded, plan, [0, 1, 2], _link(3, -15.0, equalizer="zf"), _allocation(3, -15.0, plan.payload_bits))
    assert [d.prediction for d in low] == ["", "", ""]
    # Every block was sent max_transmissions times: three extra rounds of the whole payload.
    per_payload = _allocation(3, -15.0, plan.payload_bits).unicast[0].num_symbols_needed
    assert low[0].retransmitted_symbols == 3 * per_payload and low[0].retransmission_time_s > 0


@pytest.mark.parametrize("link_model", ["bits", "abstraction"])
@pytest.mark.parametrize("snr_db", [-30.0, -10.0])
def test_one_word_answers_do_not_arrive_far_below_the_lowest_mcs(link_model, snr_db):
    """One-word answers fit one short code block; the BLER tables end at -5 dB with BLER 0.94
    for such blocks, which four ARQ rounds once turned into ~20% delivered at -30 dB."""
    system = DigitalAnswerSystem(_FixedAnswers(one_word=True), AWGNChannel(equalizer="zf"), link_model=link_model)
    tasks = _vqa_tasks(8)
    encoded = system.encode(tasks)
    plan = system.plan(encoded, None)
    users = list(range(8))
    delivered = system.deliver(encoded, plan, users, _link(8, snr_db, equalizer="zf"),
                               _allocation(8, snr_db, plan.payload_bits))
    assert [d.prediction for d in delivered] == [""] * 8


def test_digital_source_sends_the_image_file_and_the_question(tmp_path):
    (tmp_path / "img0.png").write_bytes(b"\x89PNG fake image bytes")
    system = DigitalSourceSystem(_FixedAnswers(), AWGNChannel(equalizer="zf"), image_dir=tmp_path)
    task = _vqa_tasks(1)[0]
    assert system.payload(task) == b"\x89PNG fake image bytes" + QUESTIONS[0].encode()
    text_task = _classify_tasks(1)[0]
    assert system.payload(text_task) == TEXTS[0].encode()


def test_digital_chains_refuse_an_unknown_link_model():
    with pytest.raises(ValueError, match="link model"):
        DigitalAnswerSystem(_FixedAnswers(), AWGNChannel(equalizer="zf"), link_model="magic")
