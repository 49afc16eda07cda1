"""ESPnet's DDP path: 2 CPU processes (gloo) train as 1 process on the same
global batch, on tiny random models."""

import numpy as np
import torch
from train_fixture import fork_train, train_args, write_set
from transformers import AutoTokenizer

from espnet_blsp.bin.blsp_inference import Speech2Response, load_split

# ESPnet gives rank r utterances r, r+2, ... of each global batch (of 4 here).
# Train: both ranks' responses have 9 tokens, so the loss (the mean over a
# rank's target tokens, weighted by its utterance count) is the same quantity
# in both runs. Valid: 13 and 8 tokens, where the two runs' losses differ.
TRAIN = ["the quick brown fox jumps", "the lazy dog sleeps", "she bought fresh bread", "the quick brown fox jumps"]
VALID = ["fresh bread in the morning", "the lazy dog sleeps", "she walked to the market", "the cat sleeps while"]
EPOCHS = 3  # of one step each: an epoch's train loss is that step's loss


def test_two_gloo_processes_train_as_one(tmp_path, tiny_whisper_dir, tiny_llm_dir):
    tok = AutoTokenizer.from_pretrained(tiny_llm_dir)
    n_tokens = [len(tok(t, add_special_tokens=False).input_ids) for t in TRAIN + VALID]
    assert n_tokens == [5, 4, 4, 5, 7, 4, 6, 4]  # the premise of the comment above
    data = tmp_path / "data"
    write_set(data / "train", TRAIN, 0)
    write_set(data / "valid", VALID, 1)
    run = {"one": tmp_path / "one", "ddp": tmp_path / "ddp"}
    ddp = [
        "--dist_backend", "gloo", "--dist_world_size", "2", "--dist_init_method", f"file://{tmp_path}/rendezvous",
        "--multiprocessing_distributed", "false",
    ]
    runs = [train_args(run["one"], data, tiny_whisper_dir, tiny_llm_dir, epochs=EPOCHS)] + [
        train_args(run["ddp"], data, tiny_whisper_dir, tiny_llm_dir, *ddp, "--dist_rank", str(r), epochs=EPOCHS)
        for r in (0, 1)
    ]
    logs = [tmp_path / f"log{i}" for i in range(3)]
    codes = fork_train(runs, logs)
    for code, log in zip(codes, logs):
        assert code == 0, log.read_text()[-3000:]
    assert ":0/2]" in logs[1].read_text()  # ESPnet's log prefix: rank 0 of 2

    stats = {k: torch.load(d / "checkpoint.pth", weights_only=False)["reporter"]["stats"] for k, d in run.items()}
    for epoch in range(1, EPOCHS + 1):
        one = torch.load(run["one"] / f"{epoch}epoch.pth")
        two = torch.load(run["ddp"] / f"{epoch}epoch.pth")
        assert sorted(one) == sorted(two) and any(k.startswith("adapter.") for k in one)
        for k in one:
            torch.testing.assert_close(two[k], one[k], rtol=1e-5, atol=1e-6, msg=f"epoch {epoch}: {k}")
        train = [stats[k][epoch]["train"] for k in run]
        assert abs(train[0]["loss"] - train[1]["loss"]) < 1e-5 * train[0]["loss"], (epoch, train)
        assert abs(train[0]["grad_norm"] - train[1]["grad_norm"]) < 1e-5 * train[0]["grad_norm"]
    first, last = (stats["one"][e]["train"]["loss"] for e in (1, EPOCHS))
    assert last < first  # the adapter trained
    # The CTC head (ctc_weight 0) had no gradient, so no weight decay either.
    start, end = (torch.load(run["ddp"] / f"{e}epoch.pth") for e in (1, EPOCHS))
    head = [k for k in start if k.startswith("ctc.")]
    assert head and all(torch.equal(start[k], end[k]) for k in head)

    # The valid loss is what ESPnet's weights make of each run's batches:
    # 1 process, the mean over all 4 targets' tokens; 2 processes, the mean of
    # the ranks' token means (each rank holds 2 utterances).
    s2r = Speech2Response(run["one"] / "config.yaml", run["one"] / f"{EPOCHS}epoch.pth")
    _, wavs = load_split(str(data / "valid/wav.scp"), "sound")
    nll, n = np.array(s2r.response_nll(wavs, VALID, "continuation")).T
    whole = nll.sum() / n.sum()
    per_rank = np.mean([nll[r::2].sum() / n[r::2].sum() for r in (0, 1)])
    assert abs(whole - per_rank) > 1e-3  # this set tells the two apart
    np.testing.assert_allclose(stats["one"][EPOCHS]["valid"]["loss"], whole, rtol=1e-5)
    np.testing.assert_allclose(stats["ddp"][EPOCHS]["valid"]["loss"], per_rank, rtol=1e-5)
