"""Data-parallel training on 2 CPU processes (gloo, loopback): ranks stay identical, and the result
equals one process that accumulates the same micro-batches."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from simulator.models.checkpoint import load_codec
from simulator.training.trainer import Trainer
from tests.training.conftest import make_config


def _worker(rank: int, world_size: int, init_file: str, data_dir: str, out_dir: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        from pathlib import Path

        trainer = Trainer(make_config(Path(data_dir), out_dir, steps=3))
        trainer.prepare()
        model, _ = trainer.run_stage("instruct", trainer.fresh_model(), resume=False)
        torch.save({k: v.clone() for k, v in model.state_dict().items()}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_equal_one_process_with_accumulation(tiny_data, tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tiny_data), str(tmp_path / "ddp")), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "ddp" / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "ddp" / "rank1.pt", weights_only=True)
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key

    single = Trainer(make_config(tiny_data, tmp_path / "single", steps=3, instruct={"grad_accum": 2}))
    single.prepare()
    reference, _ = single.run_stage("instruct", single.fresh_model(), resume=False)
    written = load_codec(tmp_path / "ddp" / "stage2_instruct" / "final").state_dict()
    for key, value in reference.state_dict().items():
        assert torch.allclose(value, rank0[key], atol=1e-5, rtol=1e-4), key
        assert torch.equal(written[key], rank0[key]), key
