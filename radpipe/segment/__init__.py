"""Segment stage: classical masks (thresholds, region growing, watershed) for cases that have none, and their
agreement with expert masks. Writes a cohort folder the extract stage reads; imports no later stage except the
shared image readers of :mod:`radpipe.extract.io`."""

from radpipe.segment.agreement import agreement_row, dice, hausdorff, hausdorff_95, summarise
from radpipe.segment.methods import (
    METHOD_OPTIONS,
    Segmentation,
    SegmentSettings,
    check_settings,
    segment_image,
)
from radpipe.segment.seeds import Seeds, read_seeds, seeds_from_masks
from radpipe.segment.stage import SegmentResult, segment_cohort

__all__ = [
    "METHOD_OPTIONS", "SegmentResult", "SegmentSettings", "Segmentation", "Seeds", "agreement_row",
    "check_settings", "dice", "hausdorff", "hausdorff_95", "read_seeds", "seeds_from_masks", "segment_cohort",
    "segment_image", "summarise",
]
