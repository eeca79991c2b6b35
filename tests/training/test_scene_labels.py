"""Stage 0's per-patch scene-graph labels: one labelled patch per object centre, with that object's
attributes, the nearer object winning a shared patch; the loss term trains the head and the encoder."""

import json

import torch

from simulator.data.attributes import COLORS, MATERIALS, SHAPES, SIZES
from simulator.training.config import DataConfig
from simulator.training.data import TaskData, load_task_data


def test_each_object_centre_labels_its_patch_with_its_attributes(tiny_data):
    data = load_task_data(DataConfig(clevr_dir=str(tiny_data / "clevr"), text_dir=None), "train")
    grid = data.images.shape[-1] // 8
    targets = data.patch_targets(patch_size=8)
    assert targets.shape == (len(data.images), grid * grid, 4)
    scenes = json.loads((tiny_data / "clevr" / "scenes" / "CLEVR_train_scenes.json").read_text())["scenes"]
    row_of = {name: row for row, name in enumerate(sorted(s["image_filename"] for s in scenes))}

    def patch(obj) -> int:
        x, y = obj["pixel_coords"][0], obj["pixel_coords"][1]
        return min(int(y) // 8, grid - 1) * grid + min(int(x) // 8, grid - 1)

    checked = 0
    for scene in scenes:
        patches = [patch(o) for o in scene["objects"]]
        row = row_of[scene["image_filename"]]
        assert (targets[row, :, 0] > 0).sum().item() == len(set(patches))
        for obj, index in zip(scene["objects"], patches):
            if patches.count(index) > 1:
                continue  # two centres in one patch: the nearer wins (next test)
            expected = torch.tensor([COLORS.index(obj["color"]), SHAPES.index(obj["shape"]),
                                     SIZES.index(obj["size"]), MATERIALS.index(obj["material"])]) + 1
            assert torch.equal(targets[row, index], expected)
            checked += 1
    assert checked > 10


def test_the_nearer_object_wins_a_shared_patch():
    data = TaskData(images=torch.zeros(1, 3, 16, 16, dtype=torch.uint8), vqa=[], captions=[], classify=[],
                    objects=[[(3.0, 3.0, 20.0, 1, 1, 1, 1), (4.0, 5.0, 10.0, 2, 2, 0, 0), (12.0, 12.0, 15.0, 0, 0, 0, 0)]])
    targets = data.patch_targets(patch_size=8)
    assert targets[0, 0].tolist() == [3, 3, 1, 1]   # depth 10 is nearer than depth 20
    assert targets[0, 3].tolist() == [1, 1, 1, 1]
    assert targets[0, 1].tolist() == targets[0, 2].tolist() == [0, 0, 0, 0]


def test_object_loss_adds_to_the_siglip_loss_and_reaches_the_encoder(tiny_data, tmp_path):
    from simulator.training.stages import SiglipTextTower, siglip_loss
    from simulator.training.trainer import Trainer
    from tests.training.conftest import make_config

    trainer = Trainer(make_config(tiny_data, tmp_path / "run"))
    trainer.prepare()
    model = trainer.fresh_model()
    tower = SiglipTextTower(len(model.tokenizer), int(model.vision.config.hidden_size))
    data = trainer.train_data
    images = data.images[:4]
    captions = torch.randint(3, len(model.tokenizer), (4, tower.max_length))
    targets = data.patch_targets(int(model.vision.config.patch_size))[:4]
    plain = siglip_loss(model, tower, images, captions)
    with_objects = siglip_loss(model, tower, images, captions, targets, object_weight=1.0)
    assert with_objects.item() > plain.item()
    with_objects.backward()
    assert tower.object_head.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.vision.parameters())
