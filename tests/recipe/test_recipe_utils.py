"""Tests for the recipe shell/Perl utilities and LibriSpeech data preparation.

Only the standard library and pytest are needed; the test writing real FLAC
files is skipped when soundfile is not importable.
"""

import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UTILS = REPO / "egs2" / "TEMPLATE" / "blsp1" / "utils"
RECIPE = REPO / "egs2" / "librispeech" / "blsp"
DATA_PREP = RECIPE / "local" / "data_prep.py"


def run(cmd, cwd=None, env=None, timeout=30):
    """Runs a command and returns the CompletedProcess with text output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_exe(path, text):
    """Writes an executable script."""
    path.write_text(textwrap.dedent(text))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# ------------------------------------------------------------ parse_options


@pytest.fixture
def opt_script(tmp_path):
    """A script with defaults that sources parse_options.sh and prints them."""
    return write_exe(
        tmp_path / "script.sh",
        f"""\
        #!/usr/bin/env bash
        set -euo pipefail
        nj=4
        use_gpu=false
        foo_bar=x
        help_message="Usage: script.sh [--nj N] <dir>"
        . {UTILS}/parse_options.sh
        echo "nj=$nj use_gpu=$use_gpu foo_bar=$foo_bar"
        echo "rest=$#:$*"
        """,
    )


def test_parse_options_sets_known_options(opt_script):
    r = run([opt_script, "--nj", "8", "--use-gpu", "true", "--foo_bar", "a b", "d1", "--nj", "9"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["nj=8 use_gpu=true foo_bar=a b", "rest=3:d1 --nj 9"]


def test_parse_options_equals_form_and_no_eval(opt_script):
    r = run([opt_script, "--foo-bar=$(echo pwned)", "--", "--nj"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["nj=4 use_gpu=false foo_bar=$(echo pwned)", "rest=1:--nj"]


def test_parse_options_unknown_option(opt_script):
    r = run([opt_script, "--bogus", "1", "dir"])
    assert r.returncode != 0
    assert "unknown option --bogus" in r.stderr
    assert r.stdout == ""


def test_parse_options_missing_value_and_bad_bool(opt_script):
    r = run([opt_script, "--nj"])
    assert r.returncode != 0 and "--nj needs a value" in r.stderr
    r = run([opt_script, "--use_gpu", "yes"])
    assert r.returncode != 0 and "true or false" in r.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_parse_options_help(opt_script, flag):
    r = run([opt_script, flag])
    assert r.returncode == 0
    assert r.stdout.strip() == "Usage: script.sh [--nj N] <dir>"


def test_parse_options_config(opt_script, tmp_path):
    conf = tmp_path / "x.conf"
    conf.write_text("nj=16\nuse_gpu=true\n")
    r = run([opt_script, "--config", conf, "--nj", "2"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "nj=2 use_gpu=true foo_bar=x"
    r = run([opt_script, "--config", tmp_path / "missing.conf"])
    assert r.returncode != 0 and "missing.conf" in r.stderr


# ------------------------------------------------------------------ run.pl


def test_run_pl_job_array(tmp_path):
    log = tmp_path / "exp" / "log" / "x.JOB.log"
    r = run([UTILS / "run.pl", "--mem", "4G", "--gpu", "1", "JOB=1:3", log, "echo", "job JOB", "|", "tr", "a-z", "A-Z"])
    assert r.returncode == 0, r.stderr
    for i in (1, 2, 3):
        lines = (tmp_path / "exp" / "log" / f"x.{i}.log").read_text().splitlines()
        assert lines[0] == f"# echo 'job {i}' | tr a-z A-Z"
        assert lines[1].startswith("# Started at")
        assert f"JOB {i}" in lines
        assert lines[-1].startswith("# Ended (code 0)")
        assert "elapsed time" in lines[-1]
    assert not (tmp_path / "exp" / "log" / "x.4.log").exists()


def test_run_pl_jobs_run_in_parallel(tmp_path):
    # Each job waits (up to 5 s) until all three have started: only passes
    # if they really run at the same time.
    cmd = (
        f"touch {tmp_path}/started.JOB; for i in $(seq 50); do "
        f"[ $(ls {tmp_path} | grep -c started) -eq 3 ] && exit 0; sleep 0.1; done; exit 1"
    )
    r = run([UTILS / "run.pl", "JOB=1:3", tmp_path / "log" / "p.JOB.log", cmd])
    assert r.returncode == 0, r.stderr


def test_run_pl_max_jobs_run_limits_concurrency(tmp_path):
    # mkdir fails if another job holds the lock, so overlapping jobs fail.
    lock = tmp_path / "lock"
    cmd = f"mkdir {lock} && sleep 0.2 && rmdir {lock}"
    r = run([UTILS / "run.pl", "--max-jobs-run", "1", "JOB=1:3", tmp_path / "s.JOB.log", cmd])
    assert r.returncode == 0, r.stderr
    r = run([UTILS / "run.pl", "JOB=1:3", tmp_path / "t.JOB.log", cmd])
    assert r.returncode != 0


def test_run_pl_failure_reported(tmp_path):
    log = tmp_path / "f.JOB.log"
    r = run([UTILS / "run.pl", "JOB=1:3", log, "if [ JOB -eq 2 ]; then echo oops >&2; exit 3; fi"])
    assert r.returncode != 0
    assert f"JOB=2 failed with exit code 3, log is in {tmp_path}/f.2.log" in r.stderr
    assert "1 / 3 failed" in r.stderr
    assert "JOB=1" not in r.stderr
    text = (tmp_path / "f.2.log").read_text()
    assert "oops" in text and "# Ended (code 3)" in text


def test_run_pl_single_job_and_errors(tmp_path):
    r = run([UTILS / "run.pl", tmp_path / "one.log", "echo", "it's", "$((1+1))"])
    assert r.returncode == 0, r.stderr
    assert "it's 2" in (tmp_path / "one.log").read_text()
    r = run([UTILS / "run.pl", "JOB=1:2", tmp_path / "same.log", "true"])
    assert r.returncode != 0 and "does not contain 'JOB'" in r.stderr
    r = run([UTILS / "run.pl", tmp_path / "only.log"])
    assert r.returncode != 0 and "Usage:" in r.stderr


# ---------------------------------------------------------------- slurm.pl

FAKE_SBATCH = """\
#!/usr/bin/env bash
# Fake sbatch: records its arguments, then runs the batch script (the last
# argument) once per array index, like 'sbatch --wait' would on a cluster.
printf '%s\\n' "$*" >> "$FAKE_SBATCH_LOG"
[ -n "${FAKE_SBATCH_FAIL:-}" ] && { echo "sbatch: error: bad partition" >&2; exit 1; }
array=
for a in "$@"; do case $a in --array=*) array=${a#--array=} ;; esac; script=$a; done
echo "Submitted batch job 42"
rc=0
if [ -n "$array" ]; then
  range=${array%%%*}
  for ((i = ${range%-*}; i <= ${range#*-}; i++)); do
    SLURM_JOB_ID=42 SLURM_ARRAY_TASK_ID=$i bash "$script" || rc=1
  done
else
  SLURM_JOB_ID=42 bash "$script" || rc=1
fi
exit $rc
"""


@pytest.fixture
def fake_slurm(tmp_path):
    """Puts a fake sbatch first on PATH; returns (env, args-log path)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    write_exe(bindir / "sbatch", FAKE_SBATCH)
    args_log = tmp_path / "sbatch_args"
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "FAKE_SBATCH_LOG": str(args_log)}
    return env, args_log


def test_slurm_pl_array_and_options(tmp_path, fake_slurm):
    env, args_log = fake_slurm
    env["SLURM_EXTRA_OPTS"] = "--partition=debug --qos=low"
    log = tmp_path / "exp" / "log" / "s.JOB.log"
    cmd = [UTILS / "slurm.pl", "--mem", "4G", "--gpu", "1", "--num-threads", "2", "--max-jobs-run", "2",
           "JOB=1:3", log, "echo", "task JOB's", "|", "tr", "a-z", "A-Z"]
    r = run(cmd, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    args = args_log.read_text().split()
    for expected in ("--mem=4G", "--gres=gpu:1", "--cpus-per-task=2", "--array=1-3%2",
                     "--wait", "--partition=debug", "--qos=low"):
        assert expected in args
    for i in (1, 2, 3):
        lines = (tmp_path / "exp" / "log" / f"s.{i}.log").read_text().splitlines()
        assert lines[0] == f"# echo 'task {i}'\\''s' | tr a-z A-Z"
        assert f"TASK {i}'S" in lines
        assert lines[-1].startswith("# Ended (code 0)")


def test_slurm_pl_reports_failures(tmp_path, fake_slurm):
    env, _ = fake_slurm
    r = run([UTILS / "slurm.pl", "JOB=1:3", "log/f.JOB.log", "[ JOB -ne 3 ] || exit 5"], cwd=tmp_path, env=env)
    assert r.returncode != 0
    assert "JOB=3 failed with exit code 5, log is in log/f.3.log" in r.stderr
    assert "1 / 3 failed" in r.stderr
    assert "# Ended (code 5)" in (tmp_path / "log" / "f.3.log").read_text()


def test_slurm_pl_config_and_single_job(tmp_path, fake_slurm):
    env, args_log = fake_slurm
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "slurm.conf").write_text(
        "command sbatch --export=ALL  # comment\n"
        "option mem=* --mem-per-cpu=$0\n"
        "option gpu=0 -p cpu\n"
        "option gpu=* -p gpu --gres=gpu:$0\n"
        "default gpu=0\n"
    )
    r = run([UTILS / "slurm.pl", "--mem", "2G", "log/one.log", "echo hi"], cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    args = args_log.read_text().split()
    assert args[:1] == ["--export=ALL"]
    assert "--mem-per-cpu=2G" in args and "cpu" in args
    assert not any(a.startswith("--array") for a in args)
    assert "hi" in (tmp_path / "log" / "one.log").read_text().splitlines()
    r = run([UTILS / "slurm.pl", "--foo", "1", "log/x.log", "true"], cwd=tmp_path, env=env)
    assert r.returncode != 0 and "unknown option --foo" in r.stderr


def test_slurm_pl_sbatch_failure(tmp_path, fake_slurm):
    env, _ = fake_slurm
    env["FAKE_SBATCH_FAIL"] = "1"
    r = run([UTILS / "slurm.pl", "JOB=1:2", "log/z.JOB.log", "true"], cwd=tmp_path, env=env)
    assert r.returncode != 0
    assert "sbatch failed" in r.stderr and "bad partition" in r.stderr
    assert "JOB=1 did not finish" in r.stderr


# ------------------------------------------------------------ split_scp.pl


def split(tmp_path, lines, n, utt2spk=None):
    """Runs split_scp.pl; returns (CompletedProcess, list of part line lists)."""
    src = tmp_path / "in.scp"
    src.write_text("".join(f"{x}\n" for x in lines))
    outs = [tmp_path / f"out.{i}" for i in range(1, n + 1)]
    cmd = [UTILS / "split_scp.pl"]
    if utt2spk is not None:
        u2s = tmp_path / "utt2spk"
        u2s.write_text("".join(f"{u} {s}\n" for u, s in utt2spk))
        cmd.append(f"--utt2spk={u2s}")
    r = run(cmd + [src] + outs)
    parts = [o.read_text().splitlines() if o.exists() else None for o in outs]
    return r, parts


@pytest.mark.parametrize("n_lines,n_parts", [(10, 3), (9, 3), (7, 7), (23, 5), (5, 1)])
def test_split_scp_even(tmp_path, n_lines, n_parts):
    lines = [f"utt{i:03d} /x/{i}.wav" for i in range(n_lines)]
    r, parts = split(tmp_path, lines, n_parts)
    assert r.returncode == 0, r.stderr
    assert sum(parts, []) == lines  # contiguous, order kept, nothing lost
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_split_scp_more_parts_than_lines(tmp_path):
    r, parts = split(tmp_path, ["a 1", "b 2"], 4)
    assert r.returncode == 0
    assert parts == [["a 1"], ["b 2"], [], []]
    assert "warning" in r.stderr


def test_split_scp_utt2spk_keeps_speakers_together(tmp_path):
    u2s = [("a-1", "a"), ("a-2", "a"), ("a-3", "a"), ("b-1", "b"),
           ("c-1", "c"), ("c-2", "c"), ("d-1", "d"), ("d-2", "d")]
    lines = [f"{u} x" for u, _ in u2s]
    r, parts = split(tmp_path, lines, 2, utt2spk=u2s)
    assert r.returncode == 0, r.stderr
    assert parts == [lines[:4], lines[4:]]  # a+b | c+d: 4 and 4 lines
    r, parts = split(tmp_path, lines, 3, utt2spk=u2s)
    assert sum(parts, []) == lines
    spk_of = dict(u2s)
    part_spks = [{spk_of[line.split()[0]] for line in p} for p in parts]
    assert all(part_spks) and sum(len(s) for s in part_spks) == 4  # no speaker split
    r, parts = split(tmp_path, lines, 6, utt2spk=u2s)
    assert r.returncode == 0 and "only 4 speakers" in r.stderr
    assert parts[4:] == [[], []]


def test_split_scp_utt2spk_errors(tmp_path):
    u2s = [("a-1", "a"), ("b-1", "b"), ("a-2", "a")]
    r, _ = split(tmp_path, [f"{u} x" for u, _ in u2s], 2, utt2spk=u2s)
    assert r.returncode != 0 and "not contiguous" in r.stderr
    r, _ = split(tmp_path, ["zz x"], 1, utt2spk=u2s)
    assert r.returncode != 0 and "'zz'" in r.stderr


def test_utt2spk_spk2utt_roundtrip(tmp_path):
    u2s = tmp_path / "utt2spk"
    u2s.write_text("a-1 a\na-2 a\nb-1 b\n")
    r = run([UTILS / "utt2spk_to_spk2utt.pl", u2s])
    assert r.returncode == 0 and r.stdout == "a a-1 a-2\nb b-1\n"
    s2u = tmp_path / "spk2utt"
    s2u.write_text(r.stdout)
    r = run([UTILS / "spk2utt_to_utt2spk.pl", s2u])
    assert r.returncode == 0 and r.stdout == u2s.read_text()


# ------------------------------------------------------- LibriSpeech prep

SPEAKERS_TXT = """\
; Some comment lines, as in the real file
;ID  |SEX| SUBSET           |MINUTES| NAME
19   | F | dev-clean        | 25.19 | Kara Shallenberg
60   | M | train-clean-100  | 20.18 | |CBW|Simon
103  | M | dev-clean        | 25.23 | Someone
"""

# speaker -> chapter -> {utt number: transcript}
CORPUS = {
    "19": {"198": {"0000": "NORTHANGER ABBEY", "0001": "CHAPTER ONE"}},
    "103": {"1240": {"0000": "CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED"}},
}


def fake_flac(path):
    """Writes a placeholder .flac (enough when audio is never opened)."""
    path.write_bytes(b"fLaC")


def make_corpus(root, write_audio=fake_flac, speakers_txt=True):
    """Creates a tiny LibriSpeech tree under root; returns the subset dir."""
    subset = root / "LibriSpeech" / "dev-clean"
    for spk, chapters in CORPUS.items():
        for chapter, utts in chapters.items():
            d = subset / spk / chapter
            d.mkdir(parents=True)
            lines = [f"{spk}-{chapter}-{n} {text}\n" for n, text in utts.items()]
            (d / f"{spk}-{chapter}.trans.txt").write_text("".join(lines))
            for n in utts:
                write_audio(d / f"{spk}-{chapter}-{n}.flac")
    if speakers_txt:
        (root / "LibriSpeech" / "SPEAKERS.TXT").write_text(SPEAKERS_TXT)
    return subset


def data_prep(subset, out, *extra):
    return run([sys.executable, DATA_PREP, *extra, subset, out])


def expected_files(subset):
    """The exact expected data dir contents (byte order: '103' < '19')."""
    a = subset / "103" / "1240" / "103-1240-0000.flac"
    b = subset / "19" / "198" / "19-198-0000.flac"
    c = subset / "19" / "198" / "19-198-0001.flac"
    return {
        "wav.scp": f"103-1240-0000 {a}\n19-198-0000 {b}\n19-198-0001 {c}\n",
        "text": "103-1240-0000 CHAPTER ONE MISSUS RACHEL LYNDE IS SURPRISED\n"
                "19-198-0000 NORTHANGER ABBEY\n19-198-0001 CHAPTER ONE\n",
        "utt2spk": "103-1240-0000 103\n19-198-0000 19\n19-198-0001 19\n",
        "spk2utt": "103 103-1240-0000\n19 19-198-0000 19-198-0001\n",
        "utt2gender": "103-1240-0000 m\n19-198-0000 f\n19-198-0001 f\n",
        "spk2gender": "103 m\n19 f\n",
    }


def read_dir(d):
    return {p.name: p.read_text() for p in sorted(Path(d).iterdir())}


def test_data_prep_real_flac(tmp_path):
    sf = pytest.importorskip("soundfile")
    np = pytest.importorskip("numpy")

    def write_flac(path):
        sf.write(str(path), np.zeros(16000, dtype="float32"), 16000, format="FLAC")

    subset = make_corpus(tmp_path, write_audio=write_flac)
    out = tmp_path / "data" / "dev_clean"
    r = data_prep(subset, out)
    assert r.returncode == 0, r.stderr
    assert read_dir(out) == expected_files(subset)
    assert "3 utterances, 2 speakers, 0.00 hours" in r.stdout


def test_data_prep_without_audio_reading(tmp_path):
    subset = make_corpus(tmp_path)
    out = tmp_path / "data" / "dev_clean"
    r = data_prep(subset, out, "--no-duration")
    assert r.returncode == 0, r.stderr
    assert read_dir(out) == expected_files(subset)  # also: no temp files left
    assert "3 utterances, 2 speakers" in r.stdout


def test_data_prep_without_speakers_txt(tmp_path):
    subset = make_corpus(tmp_path, speakers_txt=False)
    out = tmp_path / "data"
    out.mkdir()
    (out / "utt2gender").write_text("stale 1\n")
    r = data_prep(subset, out, "--no-duration")
    assert r.returncode == 0, r.stderr
    expected = expected_files(subset)
    del expected["utt2gender"], expected["spk2gender"]
    assert read_dir(out) == expected


def break_missing_flac(subset):
    (subset / "19" / "198" / "19-198-0001.flac").unlink()
    return ["19-198.trans.txt: utterance 19-198-0001 has no audio file"]


def break_empty_transcript(subset):
    (subset / "19" / "198" / "19-198.trans.txt").write_text("19-198-0000 NORTHANGER ABBEY\n19-198-0001\n")
    return ["19-198.trans.txt:2: utterance 19-198-0001 has an empty transcript"]


def break_extra_flac(subset):
    fake_flac(subset / "103" / "1240" / "103-1240-0007.flac")
    return ["103-1240-0007.flac: no transcript line for 103-1240-0007"]


def break_malformed_line(subset):
    (subset / "103" / "1240" / "103-1240.trans.txt").write_text("103_1240_0000 HELLO\n")
    return ["103-1240.trans.txt:1: malformed line",
            "103-1240-0000.flac: no transcript line"]


def break_speakers_txt(subset):
    (subset.parent / "SPEAKERS.TXT").write_text("19 | X | dev-clean | 1.0 | Name\n")
    return ["SPEAKERS.TXT:1: sex must be M or F"]


@pytest.mark.parametrize("breaker", [break_missing_flac, break_empty_transcript, break_extra_flac,
                                     break_malformed_line, break_speakers_txt])
def test_data_prep_errors(tmp_path, breaker):
    subset = make_corpus(tmp_path)
    messages = breaker(subset)
    out = tmp_path / "data" / "dev_clean"
    r = data_prep(subset, out, "--no-duration")
    assert r.returncode == 1
    for m in messages:
        assert m in r.stderr
    assert not out.exists()  # nothing written for a broken corpus


# ------------------------------------------------------------ data.sh


@pytest.fixture
def recipe(tmp_path):
    """A copy of the recipe dir with its own db.sh/path.sh; returns it."""
    d = tmp_path / "recipe"
    shutil.copytree(RECIPE / "local", d / "local")
    (d / "utils").symlink_to(UTILS)
    (d / "path.sh").write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    return d


def best_flac_writer():
    """Writes real FLAC when soundfile is importable (data_prep.py then reads
    the headers), else placeholders (data_prep.py then skips durations)."""
    try:
        import numpy as np
        import soundfile as sf
    except ImportError:
        return fake_flac
    return lambda path: sf.write(str(path), np.zeros(160, dtype="float32"), 16000, format="FLAC")


def test_data_sh_prepares_subsets(tmp_path, recipe):
    make_corpus(tmp_path, write_audio=best_flac_writer())
    (recipe / "db.sh").write_text(f"LIBRISPEECH={tmp_path}\n")
    r = run(["bash", "local/data.sh", "--datasets", "dev-clean"], cwd=recipe)
    assert r.returncode == 0, r.stderr + r.stdout
    assert (recipe / "data" / "dev_clean" / "spk2utt").read_text() == "103 103-1240-0000\n19 19-198-0000 19-198-0001\n"


def test_data_sh_errors(tmp_path, recipe):
    (recipe / "db.sh").write_text("LIBRISPEECH=\n")
    r = run(["bash", "local/data.sh"], cwd=recipe)
    assert r.returncode != 0 and "LIBRISPEECH is not set" in r.stderr and "openslr.org/12" in r.stderr
    (recipe / "db.sh").write_text(f"LIBRISPEECH={tmp_path}\n")
    r = run(["bash", "local/data.sh", "--datasets", "test-other"], cwd=recipe)
    assert r.returncode != 0 and "'test-other' not found" in r.stderr
    r = run(["bash", "local/data.sh", "--nope", "1"], cwd=recipe)
    assert r.returncode != 0 and "unknown option --nope" in r.stderr


def test_keep_log_moves_earlier_logs_aside(tmp_path):
    lib = REPO / "egs2" / "TEMPLATE" / "blsp1" / "scripts" / "lib.sh"
    log = tmp_path / "train.log"
    for text in ["crashed run", "second run"]:
        log.write_text(text)
        assert run(["bash", "-c", f'source "{lib}" && keep_log "{log}"']).returncode == 0
    assert not log.exists()
    assert (tmp_path / "train.log.1").read_text() == "crashed run"
    assert (tmp_path / "train.log.2").read_text() == "second run"
    assert run(["bash", "-c", f'source "{lib}" && keep_log "{log}"']).returncode == 0  # nothing to keep


# ------------------------------------------------------------ stale work (lib.sh)

LIB = REPO / "egs2" / "TEMPLATE" / "blsp1" / "scripts" / "lib.sh"


def lib_sh(cwd, script, **variables):
    """Runs ``script`` with lib.sh sourced in ``cwd`` (which gets the recipe utils)."""
    if not (cwd / "utils").exists():
        (cwd / "utils").symlink_to(UTILS)
    setup = "".join(f"{k}={v}\n" for k, v in {"python": sys.executable, "decode_cmd": UTILS / "run.pl", **variables}.items())
    return run(["bash", "-c", f"set -euo pipefail\n{setup}source {LIB}\n{script}"], cwd=cwd, timeout=300,
               env={"PYTHONPATH": str(REPO)})


def test_run_split_keeps_its_split_and_finished_work_when_nj_changes(tmp_path):
    keys = tmp_path / "keys"
    keys.write_text("".join(f"u{i} x\n" for i in range(6)))
    job = "bash -c 'mkdir -p @OUT@ && cp @IN@ @OUT@/res'"
    split = tmp_path / "split_job"
    r = lib_sh(tmp_path, f'run_split keys . job "{job}" res', nj=3)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in split.glob("keys.*")) == ["keys.1", "keys.2", "keys.3"]
    (split / "out.1" / "finished").write_text("work of a job that finished")
    (split / "out.2" / "res").unlink()  # a job killed before it finished

    r = lib_sh(tmp_path, f'run_split keys . job "{job}" res', nj=2)
    assert r.returncode == 0, r.stderr
    assert "keeping its 3 jobs, at most 2 at once" in r.stdout
    assert (split / "out.1" / "finished").exists()  # nothing finished was deleted
    assert (tmp_path / "res").read_text() == keys.read_text()

    keys.write_text(keys.read_text() + "u6 x\n")  # the data grew: other keys
    r = lib_sh(tmp_path, f'run_split keys . job "{job}" res', nj=2)
    assert r.returncode == 0, r.stderr
    assert "made for other keys; splitting again" in r.stdout
    assert sorted(p.name for p in split.glob("keys.*")) == ["keys.1", "keys.2"]
    assert (tmp_path / "res").read_text() == keys.read_text()


def test_llm_targets_redoes_work_whose_inputs_or_settings_changed(tmp_path, tiny_llm_dir):
    d = tmp_path / "train"
    d.mkdir()
    (d / "text").write_text("".join(f"u{i} the quick brown fox\n" for i in range(4)))
    conf = tmp_path / "gen.yaml"
    conf.write_text("dtype: float32\ngenerate: {max_new_tokens: 6}\n")
    targets = lambda: lib_sh(tmp_path, "llm_targets train text continuation gen.yaml",
                             nj=1, llm=tiny_llm_dir, num_threads=1)
    r = targets()
    assert r.returncode == 0, r.stderr + r.stdout
    first = (d / "continuation").read_text()
    assert first.count("\n") == 4

    r = targets()  # unchanged: skipped
    assert r.returncode == 0 and "train/continuation done, skipping" in r.stdout

    conf.write_text("dtype: float32\ngenerate: {max_new_tokens: 2}\n")
    r = targets()  # another setting: the jobs start over instead of resuming
    assert r.returncode == 0, r.stderr + r.stdout
    assert "made from other inputs or settings" in r.stderr and "gen.yaml" in r.stderr
    log = (d / "split_continuation/log/continuation.1.log").read_text()
    assert "starting over" in log and "max_new_tokens" in log
    second = (d / "continuation").read_text()
    assert second != first and second.count("\n") == 4

    (d / "text").write_text((d / "text").read_text() + "u4 jumps over\n")  # more data: redone over all
    r = targets()
    assert r.returncode == 0, r.stderr + r.stdout
    assert (d / "continuation").read_text().count("\n") == 5
