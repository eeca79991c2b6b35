"""The packaged LLM's folder is the package's own file, unpacked once; the Gemma-derived checkpoint
carries the Gemma notice and terms, and the code its licence."""

import json
from pathlib import Path

import pytest

from simulator.models import pretrained
from simulator.models.pretrained import PACKAGED_MODELS, PretrainedModelError, convert_gguf, resolve_llm_path
from tests.conftest import REPO_ROOT

GEMMA = PACKAGED_MODELS["gemma3-270m"]


def _fake_unpacking(folder: Path, **source) -> Path:
    folder.mkdir(parents=True)
    (folder / "SOURCE.json").write_text(json.dumps({"model": "gemma3-270m", "gguf_sha256": GEMMA.gguf_sha256, **source}))
    return folder


@pytest.mark.parametrize("source, fragment", [
    ({"gguf_sha256": "0" * 64}, "unpacked from another file"),
    ({"model": "someone-else"}, "unpacked from another file"),
])
def test_a_swapped_cache_folder_is_refused_in_one_line(tmp_path, monkeypatch, source, fragment):
    monkeypatch.setenv("M4SC_MODEL_CACHE", str(tmp_path))
    _fake_unpacking(tmp_path / "gemma3-270m", **source)
    with pytest.raises(PretrainedModelError, match=fragment) as caught:
        resolve_llm_path("package:gemma3-270m")
    assert "\n" not in str(caught.value) and GEMMA.gguf_sha256 in str(caught.value)


def test_a_codec_on_a_swapped_base_exits_2_in_one_line(tmp_path, run_cli):
    import os
    import subprocess
    import sys

    _fake_unpacking(tmp_path / "gemma3-270m", gguf_sha256="f" * 64)
    env = {**os.environ, "M4SC_MODEL_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "simulator", "eval", "--checkpoint",
                             "simulator/checkpoints/m4sc_gemma3_270m", "--task", "classify", "--num-samples", "1"],
                            capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=300)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "another file" in lines[0]


def test_unpacking_never_replaces_a_folder_of_something_else(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + b"\x00" * 64)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "weights.bin").write_bytes(b"my own model")
    with pytest.raises(PretrainedModelError, match="holds something else") as caught:
        convert_gguf(gguf, foreign)
    assert "\n" not in str(caught.value) and (foreign / "weights.bin").read_bytes() == b"my own model"
    other = _fake_unpacking(tmp_path / "other", gguf_sha256="e" * 64)
    with pytest.raises(PretrainedModelError, match="another file"):
        convert_gguf(gguf, other)


def test_a_folder_of_the_same_file_is_kept_and_not_converted_again(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"not even a GGUF")  # converting it would fail: it is not read at all
    folder = _fake_unpacking(tmp_path / "done", gguf_sha256=pretrained._sha256(gguf))
    assert convert_gguf(gguf, folder) == folder
    assert json.loads((folder / "SOURCE.json").read_text())["model"] == "gemma3-270m"


def test_concurrent_unpackings_leave_one_complete_folder(tmp_path):
    """The second of two processes to finish finds the first's complete folder and discards its own."""
    target = tmp_path / "gemma3-270m"
    sha = "a" * 64

    def write(tmp: Path) -> None:
        tmp.mkdir()
        (tmp / "SOURCE.json").write_text(json.dumps({"gguf_sha256": sha, "by": "late"}))
        _fake_unpacking(target, gguf_sha256=sha, by="first")  # another process renames first, meanwhile

    pretrained._write_folder_once(write, target, sha)
    assert json.loads((target / "SOURCE.json").read_text())["by"] == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gemma3-270m"]  # no temporary folder left


def test_the_licence_files_exist():
    assert "Apache License" in (REPO_ROOT / "LICENSE").read_text().splitlines()[0]
    folder = REPO_ROOT / "simulator" / "checkpoints" / "m4sc_gemma3_270m"
    notice = (folder / "NOTICE").read_text()
    assert notice.splitlines()[0] == GEMMA.notice
    assert "Section 3.2" in notice and GEMMA.gguf_sha256 in notice
    assert "Gemma Terms of Use" in (folder / GEMMA.licence_file).read_text()
