"""The segment stage as one call: a cohort in, a cohort folder out (images/, masks/, labels.csv, qc.csv).

Images are read with the extract stage's readers (:mod:`radpipe.extract.io`): reading a medical image is
shared I/O, not extraction, so this is the one import from a later stage's package.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import SimpleITK as sitk
from joblib import Parallel, delayed

from radpipe._io import atomic_write_text, sha256_bytes_of, software_versions
from radpipe.cohort import Cohort, _index_files, case_id_from_path, load_cohort
from radpipe.errors import CaseError, ConfigError
from radpipe.extract.io import read_image, read_mask  # shared image I/O (see the module docstring)
from radpipe.segment.agreement import agreement_row, summarise
from radpipe.segment.methods import SegmentSettings, check_settings, segment_image
from radpipe.segment.seeds import Seeds, read_seeds, seeds_from_masks

QC_COLUMNS = ["case_id", "status", "voxels", "volume_mm3", "components", "threshold", "seeds", "warnings", "reason"]


@dataclass
class SegmentResult:
    """What :func:`segment_cohort` wrote: the cohort folder, its QC table and (with ``compare``) the agreement."""

    out_dir: Path
    qc: pd.DataFrame
    agreement: pd.DataFrame | None = None
    summary: pd.DataFrame | None = None

    @property
    def n_failed(self) -> int:
        return int((self.qc["status"] == "failed").sum())

    def __repr__(self) -> str:
        dice = ""
        if self.summary is not None:
            row = self.summary.set_index("measure").loc["dice"]
            dice = f", Dice median {row['median']:.3f} (IQR {row['q1']:.3f}–{row['q3']:.3f})"
        return f"SegmentResult({self.out_dir}, {len(self.qc)} cases, {self.n_failed} failed{dice})"


def segment_cohort(dataset: str | Path | Cohort, out: str | Path, settings: SegmentSettings, *,
                   seeds: str | Path | pd.DataFrame | None = None, seeds_from: str | None = None,
                   compare: str | Path | None = None, jobs: int = 1) -> SegmentResult:
    """Segment every image of a cohort and write a cohort folder that ``radpipe extract`` reads.

    Parameters
    ----------
    dataset
        A dataset name, a cohort folder or a loaded :class:`~radpipe.cohort.Cohort`. Images without masks
        are segmented too (images/ + masks/ layouts).
    out
        The new cohort folder: ``images/`` (links to the originals, copies where links are refused),
        ``masks/<case_id>.nii.gz``, ``labels.csv`` (copied), ``qc.csv``, ``manifest.json`` and, with
        ``compare``, ``agreement.csv`` and ``agreement_summary.csv``.
    settings
        The method and its options (:class:`SegmentSettings`).
    seeds
        A seed CSV (``case_id,x,y,z`` or ``case_id,x0,y0,z0,x1,y1,z1``, mm) or the same as a DataFrame.
    seeds_from
        ``"centroid"`` or ``"box"``: derive the seeds from the cohort's own masks (written to ``seeds.csv``).
    compare
        Expert masks to compare with: a folder of ``<case_id>.*`` masks, or a dataset/cohort folder.
    jobs
        Parallel worker processes.

    Examples
    --------
    >>> from radpipe.segment import SegmentSettings, segment_cohort
    >>> result = segment_cohort("sts_pet", "seg_out", SegmentSettings("relative", fraction=0.41),
    ...                         seeds_from="centroid", compare="sts_pet")  # doctest: +SKIP
    >>> result.summary  # doctest: +SKIP
    """
    started = time.time()
    settings = check_settings(settings)
    cohort = dataset if isinstance(dataset, Cohort) else load_cohort(dataset)
    out_dir = Path(out)
    if seeds is not None and seeds_from is not None:
        raise ConfigError("give either a seed file or seeds from masks, not both", key="--seeds-from-masks")
    images = _images(cohort)
    if not images:
        raise ConfigError(f"no image found in cohort {cohort.name}", key="DATASET")
    expert = _expert_masks(compare) if compare is not None else {}
    rough = {case.case_id: case.mask for case in cohort.cases}
    out_dir.mkdir(parents=True, exist_ok=True)
    if seeds_from is not None:
        table = seeds_from_masks(_readable_masks(rough, cohort.spec.spacing_2d), kind=seeds_from)
        table.to_csv(out_dir / "seeds.csv", index=False)
        seeds = out_dir / "seeds.csv"
    if isinstance(seeds, pd.DataFrame):
        seeds.to_csv(out_dir / "seeds.csv", index=False)
        seeds = out_dir / "seeds.csv"
    seed_table = read_seeds(seeds) if seeds is not None else {}
    unknown = sorted(set(seed_table) - set(images))
    if unknown and len(unknown) == len(seed_table):
        raise ConfigError(f"no case id of the seed file is an image of {cohort.name} (e.g. {unknown[:3]}; "
                          f"images, e.g. {sorted(images)[:3]})", key="--seeds")
    (out_dir / "masks").mkdir(exist_ok=True)
    tasks = [(cid, path, seed_table.get(cid), rough.get(cid) if settings.method == "refine" else None,
              expert.get(cid)) for cid, path in sorted(images.items())]
    rows = Parallel(n_jobs=jobs)(
        delayed(_segment_case)(cid, path, settings, case_seeds, rough_path, expert_path, out_dir,
                               cohort.spec.spacing_2d)
        for cid, path, case_seeds, rough_path, expert_path in tasks)
    qc = pd.DataFrame([row[0] for row in rows], columns=QC_COLUMNS)
    for case_id in unknown:
        qc.loc[len(qc)] = [case_id, "failed", 0, 0.0, 0, None, "", "", "the seed file names this case, but the "
                           "cohort has no image for it"]
    _link_images(images, qc, out_dir)
    _copy_labels(cohort, out_dir)
    qc.to_csv(out_dir / "qc.csv", index=False)
    agreement = summary = None
    if compare is not None:
        agreement = pd.DataFrame([row[1] for row in rows if row[1] is not None])
        if agreement.empty:
            raise CaseError(f"no case has both an automatic mask and an expert mask in {compare}")
        summary = summarise(agreement)
        agreement.to_csv(out_dir / "agreement.csv", index=False)
        summary.to_csv(out_dir / "agreement_summary.csv", index=False)
    manifest = {
        "stage": "segment",
        "dataset": cohort.name,
        "settings": {"method": settings.method, **settings.given()},
        "seeds": None if seeds is None else {"file": str(seeds), "sha256": sha256_bytes_of(seeds),
                                             "from_masks": seeds_from},
        "compare": None if compare is None else str(compare),
        "counts": qc["status"].value_counts().to_dict(),
        "software": software_versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()),
    }
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2, default=str))
    return SegmentResult(out_dir, qc, agreement, summary)


def _segment_case(case_id, image_path, settings, seeds, rough_path, expert_path, out_dir, spacing_2d):
    """One case → (QC row, agreement row or None). A problem with the case becomes a failed QC row."""
    row = dict.fromkeys(QC_COLUMNS, "")
    row.update(case_id=case_id, seeds=seeds.describe() if seeds else "")
    image = None
    try:
        image, _ = read_image(image_path, spacing_2d=spacing_2d)
        rough = None
        if rough_path is not None:
            rough = _on_grid(read_mask(rough_path, spacing_2d=spacing_2d)[0], image)
        result = segment_image(image, settings, seeds or Seeds(), rough=rough)
    except CaseError as exc:
        row.update(status="failed", voxels=0, volume_mm3=0.0, components=0, reason=exc.reason)
        if image is None or expert_path is None:
            return row, None
        # a failed case still counts in the agreement, as an empty mask (Dice 0), so medians are not flattered
        mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
        mask.CopyInformation(image)
        return row, _agreement(case_id, mask, expert_path, image, spacing_2d, row)
    sitk.WriteImage(result.mask, str(out_dir / "masks" / f"{case_id}.nii.gz"), useCompression=True)
    voxels = result.voxels
    row.update(status="ok", voxels=voxels, volume_mm3=voxels * _voxel_volume(image),
               components=result.candidates, threshold=result.threshold, warnings="; ".join(result.warnings))
    agreement = None
    if expert_path is not None:
        agreement = _agreement(case_id, result.mask, expert_path, image, spacing_2d, row)
    return row, agreement


def _agreement(case_id, mask, expert_path, image, spacing_2d, row):
    try:
        expert = _on_grid(read_mask(expert_path, spacing_2d=spacing_2d)[0], image)
    except CaseError as exc:
        row["warnings"] = "; ".join(filter(None, [row["warnings"], f"not compared: {exc.reason}"]))
        return None
    return {**agreement_row(case_id, mask, expert), "status": row["status"]}


def _readable_masks(paths: dict[str, Path], spacing_2d) -> dict[str, sitk.Image]:
    """The masks that can be read; a case whose mask cannot gets no seed, so the largest object is kept."""
    masks = {}
    for case_id, path in paths.items():
        try:
            masks[case_id] = read_mask(path, spacing_2d=spacing_2d)[0]
        except CaseError:
            continue
    return masks


def _voxel_volume(image: sitk.Image) -> float:
    volume = 1.0
    for spacing in image.GetSpacing():
        volume *= spacing
    return volume


def _on_grid(mask: sitk.Image, image: sitk.Image) -> sitk.Image:
    """The mask as 0/1 on the image's grid (nearest neighbour when the grids differ)."""
    binary = sitk.Cast(mask > 0, sitk.sitkUInt8)
    if binary.GetSize() == image.GetSize():
        binary.CopyInformation(image)  # raster masks carry no geometry of their own
        return binary
    return sitk.Resample(binary, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def _images(cohort: Cohort) -> dict[str, Path]:
    """Every image of the cohort, including images that have no mask yet (images/ + masks/ layouts)."""
    images = {case.case_id: case.image for case in cohort.cases}
    unpaired = {problem.case_id for problem in cohort.problems}  # discovery lists images without masks there
    if cohort.spec.layout == "folders" and unpaired:
        found = _index_files(cohort.spec.root, cohort.spec.images, cohort.spec.case_pattern, "image", [])
        images = {**{cid: path for cid, path in found.items() if cid in unpaired}, **images}
    return images


def _expert_masks(compare: str | Path) -> dict[str, Path]:
    """Expert masks by case id: a folder of ``<case_id>.*`` files, or the masks of a dataset or cohort folder."""
    path = Path(compare)
    if path.is_dir() and not (path / "masks").is_dir() and not (path / "images").is_dir():
        masks = {case_id_from_path(p): p for p in sorted(path.iterdir())
                 if p.is_file() and not p.name.startswith(".")}
        if not masks:
            raise ConfigError(f"the folder {path} holds no mask files", key="--compare")
        return masks
    return {case.case_id: case.mask for case in load_cohort(str(compare)).cases}


def _link_images(images: dict[str, Path], qc: pd.DataFrame, out_dir: Path) -> None:
    """images/<case_id>.<ext> as symbolic links to the originals (copies where links are not allowed)."""
    folder = out_dir / "images"
    folder.mkdir(exist_ok=True)
    for case_id, source in images.items():
        if isinstance(source, tuple) or Path(source).is_dir():  # a DICOM series: one NIfTI file
            target = folder / f"{case_id}.nii.gz"
            if not target.exists():
                sitk.WriteImage(read_image(source)[0], str(target), useCompression=True)
            continue
        source = Path(source).resolve()
        target = folder / f"{case_id}{source.name[len(case_id_from_path(source)):]}"
        if target.is_symlink() or target.exists():
            target.unlink()
        try:
            os.symlink(source, target)
        except OSError:
            shutil.copy2(source, target)


def _copy_labels(cohort: Cohort, out_dir: Path) -> None:
    if cohort.spec.labels and (cohort.spec.root / cohort.spec.labels).is_file():
        shutil.copy2(cohort.spec.root / cohort.spec.labels, out_dir / "labels.csv")
