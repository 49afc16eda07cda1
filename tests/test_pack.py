"""A trained experiment packs into one archive that loads anywhere."""

import shutil
import zipfile

import pytest
import torch
import yaml
from test_load_checks import save, speech, write_config

from espnet_blsp.bin import pack
from espnet_blsp.bin.blsp_inference import Speech2Response


@pytest.fixture
def experiment(tmp_path, tiny_whisper_dir, tiny_llm_dir):
    """An exp dir whose config names model dirs that are deleted after packing."""
    models = tmp_path / "local_models"
    whisper, llm = shutil.copytree(tiny_whisper_dir, models / "whisper"), shutil.copytree(tiny_llm_dir, models / "llm")
    exp = tmp_path / "exp/blsp_train"
    exp.mkdir(parents=True)
    config, model = write_config(exp, whisper, llm)
    config = config.rename(exp / "config.yaml")
    model_file = save(model, exp / "2epoch.pth")
    (exp / "valid.loss.ave.pth").symlink_to("2epoch.pth")
    torch.manual_seed(0)
    expected = Speech2Response(config, model_file).batch([speech()], "transcription")
    return exp, models, expected


@pytest.mark.parametrize("suffix", [".zip", ".tar.gz"])
def test_archive_loads_after_the_model_dirs_are_gone(experiment, tmp_path, suffix):
    exp, models, expected = experiment
    (exp / "RESULTS.md").write_text("# RESULTS\n")
    archive = pack.pack(exp / "config.yaml", exp / "valid.loss.ave.pth", tmp_path / f"out/blsp{suffix}",
                        option=[exp / "RESULTS.md"])
    shutil.rmtree(models)
    cache = tmp_path / "cache"
    s2r = Speech2Response.from_pretrained(archive, cache_dir=cache)
    assert s2r.batch([speech()], "transcription") == expected
    unpacked, = cache.iterdir()
    assert (unpacked / "blsp_train/RESULTS.md").exists()
    # The second load reads the unpacked copy.
    marker = unpacked / ".unpacked"
    before = marker.stat().st_mtime_ns
    Speech2Response.from_pretrained(archive, cache_dir=cache)
    assert marker.stat().st_mtime_ns == before


def test_hub_names_stay_names_and_the_weights_are_the_linked_file(experiment, tmp_path):
    exp, _, _ = experiment
    config = yaml.safe_load((exp / "config.yaml").read_text())
    config["llm_conf"]["model_name_or_path"] = "HuggingFaceTB/SmolLM2-135M-Instruct"
    (exp / "hub.yaml").write_text(yaml.safe_dump(config))
    archive = pack.pack(exp / "hub.yaml", exp / "valid.loss.ave.pth", tmp_path / "hub.zip")
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        packed = yaml.safe_load(z.read("blsp_train/config.yaml"))
        meta = yaml.safe_load(z.read("meta.yaml"))
        assert z.read("blsp_train/valid.loss.ave.pth") == (exp / "2epoch.pth").read_bytes()
    assert packed["llm_conf"]["model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert packed["encoder_conf"]["model_name_or_path"] == "models/whisper"
    assert "models/whisper/" in names and not any(n.startswith("models/llm") for n in names)
    assert meta["files"] == {"model_file": "blsp_train/valid.loss.ave.pth"}
    assert meta["yaml_files"] == {"train_config": "blsp_train/config.yaml"}


def test_experiment_dir_and_bad_sources(experiment, tmp_path):
    exp, _, expected = experiment
    assert Speech2Response.from_pretrained(exp).batch([speech()], "transcription") == expected
    with pytest.raises(FileNotFoundError, match=r"valid.loss.best.pth: not found \(model files there: 2epoch.pth, "):
        Speech2Response.from_pretrained(exp, "valid.loss.best.pth")
    with pytest.raises(FileNotFoundError, match="not an experiment dir"):
        pack.locate_pretrained(tmp_path)
    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip")
    with pytest.raises(ValueError, match="bad.zip: not an archive of espnet_blsp.bin.pack"):
        pack.locate_pretrained(bad, cache_dir=tmp_path / "cache")


def test_cli(experiment, tmp_path):
    exp, _, _ = experiment
    out = tmp_path / "packed.zip"
    pack.main(["--train_config", str(exp / "config.yaml"), "--model_file", str(exp / "valid.loss.ave.pth"),
               "--outpath", str(out), "--with_models", "false"])
    with zipfile.ZipFile(out) as z:
        assert not any(n.startswith("models/") for n in z.namelist())
        assert yaml.safe_load(z.read("blsp_train/config.yaml"))["llm_conf"]["model_name_or_path"].endswith("llm")
