"""The generated eval set: made once, complete, and safe when several processes ask at the same time."""

import json
import multiprocessing

from simulator.assets import ensure_eval_set


def _make(root):
    ensure_eval_set(root, seed=5, num_images=6)


def test_concurrent_generation_leaves_one_complete_set(tmp_path):
    root = tmp_path / "clevr-eval"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_make, args=(root,)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0, 0, 0]
    questions = json.loads((root / "questions" / "CLEVR_test_questions.json").read_text())["questions"]
    assert len({q["image_index"] for q in questions}) == 6
    assert len(list((root / "images" / "test").iterdir())) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["clevr-eval"]  # no temporary folder left behind


def test_partial_set_in_our_cache_is_replaced(tmp_path):
    root = tmp_path / "clevr-eval"
    (root / "images" / "test").mkdir(parents=True)
    (root / "images" / "test" / "half-written.png").write_bytes(b"")
    ensure_eval_set(root, seed=5, num_images=4)
    assert not (root / "images" / "test" / "half-written.png").exists()
    assert len(list((root / "images" / "test").iterdir())) == 4
