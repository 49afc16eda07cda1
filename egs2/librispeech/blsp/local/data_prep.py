#!/usr/bin/env python3
"""Prepares a Kaldi-style data directory for one LibriSpeech subset.

Reads the standard layout::

    <root>/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
    <root>/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt
    <root>/SPEAKERS.TXT                      (optional, for gender)

and writes ``wav.scp``, ``text``, ``utt2spk``, ``spk2utt`` and, when
SPEAKERS.TXT exists, ``utt2gender`` and ``spk2gender``. Every file is sorted
by key in byte order (as ``LC_ALL=C sort``) and written atomically. Nothing is
written unless the whole subset is consistent.

Usage: data_prep.py [--no-duration] <librispeech_root>/<subset> <out_data_dir>
"""

import argparse
import os
import re
import sys
import tempfile

SPEAKERS_FILE = "SPEAKERS.TXT"
GENDER_FILES = ("utt2gender", "spk2gender")
MAX_ERRORS_SHOWN = 20


class DataPrepError(Exception):
    """Raised when the corpus is inconsistent; carries all problems found."""

    def __init__(self, problems):
        """Stores the list of problem descriptions.

        Args:
            problems: Human-readable messages, each naming a file (and line).
        """
        self.problems = list(problems)
        shown = self.problems[:MAX_ERRORS_SHOWN]
        more = len(self.problems) - len(shown)
        text = "\n  ".join(shown)
        if more > 0:
            text += f"\n  ... and {more} more"
        super().__init__(f"{len(self.problems)} problem(s):\n  {text}")


def byte_key(key):
    """Returns the sort key giving LC_ALL=C (byte) order for a string."""
    return key.encode("utf-8")


def numeric_subdirs(path, problems):
    """Lists the numeric subdirectories of ``path`` in byte order.

    Speaker and chapter directories in LibriSpeech are numeric; any other
    directory is reported as a problem, plain files are ignored.

    Args:
        path: Directory to list.
        problems: List that receives messages about unexpected directories.

    Returns:
        Sorted list of subdirectory names.
    """
    names = []
    for name in sorted(os.listdir(path), key=byte_key):
        full = os.path.join(path, name)
        if not os.path.isdir(full) or name.startswith("."):
            continue
        if name.isdigit():
            names.append(name)
        else:
            problems.append(f"{full}: unexpected directory (expected a numeric id)")
    return names


def read_transcripts(trans_path, spk, chapter, problems):
    """Parses one ``<spk>-<chapter>.trans.txt`` file.

    Args:
        trans_path: Path of the transcript file.
        spk: Speaker id of the enclosing directory.
        chapter: Chapter id of the enclosing directory.
        problems: List that receives messages about bad lines.

    Returns:
        Dict mapping utterance id to its transcript.
    """
    id_re = re.compile(rf"^{re.escape(spk)}-{re.escape(chapter)}-\d+$")
    texts = {}
    with open(trans_path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            where = f"{trans_path}:{lineno}"
            fields = line.split()
            if not fields:
                continue  # blank lines carry no information
            uttid, words = fields[0], fields[1:]
            if not id_re.match(uttid):
                problems.append(
                    f"{where}: malformed line, expected "
                    f"'{spk}-{chapter}-<n> <TRANSCRIPT>', got: {line.rstrip()!r}"
                )
            elif not words:
                problems.append(f"{where}: utterance {uttid} has an empty transcript")
            elif uttid in texts:
                problems.append(f"{where}: duplicate utterance id {uttid}")
            else:
                texts[uttid] = " ".join(words)
    return texts


def scan_chapter(chapter_dir, spk, chapter, problems):
    """Matches the flac files of one chapter against its transcript file.

    Args:
        chapter_dir: ``<subset>/<spk>/<chapter>`` directory.
        spk: Speaker id.
        chapter: Chapter id.
        problems: List that receives consistency problems.

    Returns:
        List of ``(uttid, flac_path, transcript)`` for the good utterances.
    """
    trans_path = os.path.join(chapter_dir, f"{spk}-{chapter}.trans.txt")
    flacs = {
        name[: -len(".flac")]
        for name in os.listdir(chapter_dir)
        if name.endswith(".flac")
    }
    if not os.path.isfile(trans_path):
        problems.append(f"{trans_path}: transcript file is missing")
        return []
    texts = read_transcripts(trans_path, spk, chapter, problems)
    utts = []
    for uttid in sorted(texts, key=byte_key):
        flac = os.path.join(chapter_dir, uttid + ".flac")
        if uttid not in flacs:
            problems.append(f"{trans_path}: utterance {uttid} has no audio file {flac}")
        else:
            utts.append((uttid, flac, texts[uttid]))
    for uttid in sorted(flacs - set(texts), key=byte_key):
        problems.append(
            f"{os.path.join(chapter_dir, uttid + '.flac')}: no transcript line "
            f"for {uttid} in {trans_path}"
        )
    return utts


def scan_subset(subset_dir):
    """Collects all utterances of a subset.

    Args:
        subset_dir: ``<librispeech_root>/<subset>`` directory.

    Returns:
        List of ``(uttid, spk, flac_path, transcript)`` sorted by uttid bytes.

    Raises:
        DataPrepError: If the subset is empty or inconsistent.
    """
    problems = []
    utts = []
    for spk in numeric_subdirs(subset_dir, problems):
        spk_dir = os.path.join(subset_dir, spk)
        for chapter in numeric_subdirs(spk_dir, problems):
            chapter_dir = os.path.join(spk_dir, chapter)
            for uttid, flac, text in scan_chapter(chapter_dir, spk, chapter, problems):
                flac = os.path.abspath(flac)
                if any(c.isspace() for c in flac):
                    # wav.scp is whitespace-separated, so such a path is unusable.
                    problems.append(f"{flac}: path contains whitespace; move the corpus")
                utts.append((uttid, spk, flac, text))
    if not utts and not problems:
        problems.append(f"{subset_dir}: no utterances found")
    if problems:
        raise DataPrepError(problems)
    utts.sort(key=lambda u: byte_key(u[0]))
    return utts


def read_speaker_genders(path):
    """Reads speaker genders from a LibriSpeech SPEAKERS.TXT file.

    Rows are ``ID | SEX | SUBSET | MINUTES | NAME``; lines starting with ``;``
    are comments. Names may themselves contain ``|``, hence the split limit.

    Args:
        path: Path of SPEAKERS.TXT.

    Returns:
        Dict mapping speaker id to ``"m"`` or ``"f"``.

    Raises:
        DataPrepError: On malformed rows.
    """
    genders = {}
    problems = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith(";"):
                continue
            fields = [x.strip() for x in line.split("|", 4)]
            if len(fields) < 5 or not fields[0].isdigit():
                problems.append(
                    f"{path}:{lineno}: malformed line, expected "
                    f"'ID | SEX | SUBSET | MINUTES | NAME', got: {line.rstrip()!r}"
                )
                continue
            sex = fields[1].lower()
            if sex not in ("m", "f"):
                problems.append(f"{path}:{lineno}: sex must be M or F, got {fields[1]!r}")
                continue
            genders[fields[0]] = sex
    if problems:
        raise DataPrepError(problems)
    return genders


def write_atomic(path, lines):
    """Writes lines to ``path`` via a temporary file and an atomic rename.

    Args:
        path: Destination file.
        lines: Iterable of lines without trailing newlines.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for line in lines:
                f.write(line + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def build_tables(utts, genders):
    """Builds the contents of every output file.

    Args:
        utts: Sorted ``(uttid, spk, flac_path, transcript)`` tuples.
        genders: Speaker-to-gender dict, or None when SPEAKERS.TXT is absent.

    Returns:
        Dict mapping output file name to its list of lines.

    Raises:
        DataPrepError: If a speaker is missing from SPEAKERS.TXT.
    """
    spk2utts = {}
    for uttid, spk, _, _ in utts:
        spk2utts.setdefault(spk, []).append(uttid)
    speakers = sorted(spk2utts, key=byte_key)
    tables = {
        "wav.scp": [f"{u} {path}" for u, _, path, _ in utts],
        "text": [f"{u} {text}" for u, _, _, text in utts],
        "utt2spk": [f"{u} {spk}" for u, spk, _, _ in utts],
        "spk2utt": [" ".join([s] + spk2utts[s]) for s in speakers],
    }
    if genders is not None:
        missing = [s for s in speakers if s not in genders]
        if missing:
            raise DataPrepError(
                [f"speaker {s} is not listed in {SPEAKERS_FILE}" for s in missing]
            )
        tables["utt2gender"] = [f"{u} {genders[spk]}" for u, spk, _, _ in utts]
        tables["spk2gender"] = [f"{s} {genders[s]}" for s in speakers]
    return tables


def total_hours(utts):
    """Sums the audio duration in hours from file headers (soundfile.info).

    Args:
        utts: ``(uttid, spk, flac_path, transcript)`` tuples.

    Returns:
        Duration in hours, or None if soundfile is not installed.
    """
    try:
        import soundfile
    except ImportError:
        return None
    seconds = 0.0
    for _, _, path, _ in utts:
        try:
            seconds += soundfile.info(path).duration
        except Exception as e:  # soundfile raises its own error types
            raise DataPrepError([f"{path}: cannot read audio header: {e}"]) from e
    return seconds / 3600.0


def prepare(subset_dir, out_dir, with_duration=True):
    """Prepares ``out_dir`` from ``subset_dir``; see the module docstring.

    Args:
        subset_dir: ``<librispeech_root>/<subset>`` directory.
        out_dir: Data directory to create or update.
        with_duration: Whether to sum the audio duration for the summary.

    Returns:
        Summary string.

    Raises:
        DataPrepError: If the corpus is inconsistent.
    """
    if not os.path.isdir(subset_dir):
        raise DataPrepError([f"{subset_dir}: no such directory"])
    utts = scan_subset(subset_dir)
    speakers_txt = os.path.join(os.path.dirname(os.path.abspath(subset_dir)), SPEAKERS_FILE)
    genders = read_speaker_genders(speakers_txt) if os.path.isfile(speakers_txt) else None
    tables = build_tables(utts, genders)
    hours = total_hours(utts) if with_duration else None

    os.makedirs(out_dir, exist_ok=True)
    for name, lines in tables.items():
        write_atomic(os.path.join(out_dir, name), lines)
    if genders is None:
        # Drop gender files left by an earlier run so the directory is consistent.
        for name in GENDER_FILES:
            stale = os.path.join(out_dir, name)
            if os.path.exists(stale):
                os.unlink(stale)

    n_spk = len(tables["spk2utt"])
    summary = f"{out_dir}: {len(utts)} utterances, {n_spk} speakers"
    if hours is not None:
        summary += f", {hours:.2f} hours"
    if genders is None:
        summary += f" (no {SPEAKERS_FILE}: gender files not written)"
    return summary


def get_parser():
    """Returns the command-line parser."""
    parser = argparse.ArgumentParser(
        description="Prepare a Kaldi-style data dir for one LibriSpeech subset."
    )
    parser.add_argument("subset_dir", help="<librispeech_root>/<subset>, e.g. LibriSpeech/dev-clean")
    parser.add_argument("out_dir", help="output data directory, e.g. data/dev_clean")
    parser.add_argument(
        "--no-duration",
        action="store_true",
        help="do not read audio headers to report the total duration",
    )
    return parser


def main(argv=None):
    """Command-line entry point; returns the process exit code."""
    args = get_parser().parse_args(argv)
    try:
        summary = prepare(args.subset_dir, args.out_dir, not args.no_duration)
    except DataPrepError as e:
        print(f"data_prep.py: error: {e}", file=sys.stderr)
        return 1
    print(f"data_prep.py: wrote {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
