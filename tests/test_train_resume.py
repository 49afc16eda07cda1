"""Training killed (SIGKILL) mid-epoch and rerun with ``--resume true`` ends
where an uninterrupted run does: the same weights, optimizer and scheduler
state and per-epoch losses, bit for bit (tiny random models, CPU).

What makes this hold: ESPnet's checkpoint.pth (written after each epoch)
holds the model, the optimizers, the schedulers and the reporter; each epoch
reseeds Python, NumPy and torch (``set_all_random_seed(seed + epoch)``, so the
LoRA dropout masks repeat) and shuffles its batches with
``RandomState(seed + epoch)``. A killed epoch is redone from its start."""

import os
import signal
from pathlib import Path

import torch
from train_fixture import fork_train, train_args, write_set

TRAIN = [
    "the quick brown fox jumps", "the lazy dog sleeps", "she bought fresh bread",
    "the cat sleeps while", "she walked to the market", "fresh bread in the morning",
]
VALID = ["the quick brown fox jumps over", "she walked to the market"]
EPOCHS = 3
STEPS = 3  # batches of 2 per epoch, in a shuffled order
KILL_AT = (2, 2)  # (epoch, step): killed as step 2 of epoch 2 starts, step 1's update only in memory
# Every source of state or randomness a resume must restore: Adam's moments, a
# per-step LR schedule, LoRA dropout (torch's RNG), the batch order.
EXTRA = [
    "--batch_size", "2", "--optim", "adam", "--optim_conf", "lr=0.01",
    "--scheduler", "warmuplr", "--scheduler_conf", "warmup_steps=4",
    "--llm_conf", "lora={r: 2, dropout: 0.5}",
]


def watch(batch_log: Path, kill_at=None):
    """Patches (in the forked child) ESPnet's ``Trainer.train_one_epoch`` to
    append each batch's epoch and utterance ids to ``batch_log`` as the trainer
    takes it, and to SIGKILL the process instead of handing out batch ``kill_at``."""

    def before():
        from espnet2.train.trainer import Trainer

        original = Trainer.train_one_epoch.__func__

        def train_one_epoch(cls, *, iterator, reporter, **kwargs):
            epoch = reporter.get_epoch()

            def batches():
                for step, (keys, batch) in enumerate(iterator, 1):
                    if (epoch, step) == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                    with open(batch_log, "a") as f:
                        f.write(f"{epoch} {' '.join(keys)}\n")
                    yield keys, batch

            return original(cls, iterator=batches(), reporter=reporter, **kwargs)

        Trainer.train_one_epoch = classmethod(train_one_epoch)

    return before


def batches(batch_log: Path):
    return [line.split() for line in batch_log.read_text().splitlines()]


def same(a, b, where="") -> None:
    """Equal nested states: tensors bit for bit, the rest by ==."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), (where, sorted(a), sorted(b))
        for k in a:
            same(a[k], b[k], f"{where}/{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}/{i}")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        assert torch.equal(a, b), f"{where}: max |diff| {(a.double() - b.double()).abs().max().item()}"
    else:
        assert a == b, (where, a, b)


def test_killed_training_resumes_to_the_same_model(tmp_path, tiny_whisper_dir, tiny_llm_dir):
    data = tmp_path / "data"
    write_set(data / "train", TRAIN, 0)
    write_set(data / "valid", VALID, 1)
    full, cut = tmp_path / "full", tmp_path / "cut"

    def train(out: Path, name: str, *extra: str, kill_at=None):
        log = tmp_path / f"{name}.log"
        args = train_args(out, data, tiny_whisper_dir, tiny_llm_dir, *EXTRA, *extra, epochs=EPOCHS)
        (code,) = fork_train([args], [log], before=watch(tmp_path / f"{out.name}.batches", kill_at))
        return code, log

    code, log = train(full, "full")
    assert code == 0, log.read_text()[-3000:]
    code, log = train(cut, "killed", kill_at=KILL_AT)
    assert code == -signal.SIGKILL, (code, log.read_text()[-3000:])
    # It died in epoch 2 after epoch 1's checkpoint, before epoch 2's.
    state = torch.load(cut / "checkpoint.pth", weights_only=False)
    assert state["reporter"]["epoch"] == 1 and (cut / "1epoch.pth").exists() and not (cut / "2epoch.pth").exists()
    assert [b[0] for b in batches(tmp_path / "cut.batches")] == ["1"] * STEPS + ["2"]
    code, log = train(cut, "resumed", "--resume", "true")
    assert code == 0, log.read_text()[-3000:]
    assert "The training was resumed using" in log.read_text()

    # The same batches: epoch 2 redone from its start, each epoch's own order.
    done = batches(tmp_path / "full.batches")
    assert [b[0] for b in done] == [str(e) for e in range(1, EPOCHS + 1) for _ in range(STEPS)]
    assert len({tuple(tuple(b[1:]) for b in done[i:i + STEPS]) for i in range(0, len(done), STEPS)}) > 1  # reshuffled
    cut_batches = batches(tmp_path / "cut.batches")
    assert cut_batches[STEPS] == done[STEPS]  # epoch 2's first batch, the last before the kill
    assert cut_batches[:STEPS] + cut_batches[STEPS + 1:] == done

    # The same models, optimizer and scheduler states, per-epoch losses.
    for name in [f"{e}epoch.pth" for e in range(1, EPOCHS + 1)] + ["latest.pth", "valid.loss.ave.pth"]:
        assert (full / name).exists(), name
        one, two = torch.load(full / name), torch.load(cut / name)
        assert any(".lora_" in k for k in one) and any(k.startswith("adapter.") for k in one)
        same(one, two, name)
    one, two = (torch.load(d / "checkpoint.pth", weights_only=False) for d in (full, cut))
    for key in ("model", "optimizers", "schedulers"):
        same(one[key], two[key], key)
    assert two["optimizers"][0]["state"]  # Adam's moments were there to restore
    assert one["reporter"]["epoch"] == two["reporter"]["epoch"] == EPOCHS
    timing = ("time", "_mem_")  # train_time, iter_time, ...; gpu_max_cached_mem_GB
    for e in range(1, EPOCHS + 1):
        for mode in ("train", "valid"):
            a, b = (s["reporter"]["stats"][e][mode] for s in (one, two))
            assert sorted(a) == sorted(b) and "loss" in a
            same(*({k: v for k, v in s.items() if not any(t in k for t in timing)} for s in (a, b)), f"{e}/{mode}")
    losses = [one["reporter"]["stats"][e]["train"]["loss"] for e in range(1, EPOCHS + 1)]
    assert losses[-1] < losses[0]  # it trained
