"""The representation analysis in a results table (no torch: score.py reads it)."""

from pathlib import Path
from typing import Dict, List, Union

from typeguard import typechecked

# What a results table says of one system: per task, the content check's gap
# at the middle layer and its mean over layers (the last layer, built to
# predict tokens, keeps little of it: 0.03 against 0.16 in the middle on the demo).
GAP_HEADER = "gap at the middle layer (mean over layers)"


@typechecked
def gap_cells(content_tsv: Union[str, Path]) -> Dict[str, str]:
    """Per task, ``"+0.164 (+0.105)"``: the gap of a ``content.tsv`` (written by
    ``espnet_blsp.bin.analyze_representation``) at its middle layer (mean over layers)."""
    gaps: Dict[str, List[float]] = {}
    for line in Path(content_tsv).read_text().splitlines()[1:]:
        _, task, _, _, gap = line.split("\t")
        gaps.setdefault(task, []).append(float(gap))  # in layer order
    return {t: f"{g[(len(g) - 1) // 2]:+.3f} ({sum(g) / len(g):+.3f})" for t, g in gaps.items()}
