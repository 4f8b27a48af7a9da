"""Index a DICOM tree as PACS and TCIA export it: any nesting, headers only, one case per segmented series.

Files are grouped by SeriesInstanceUID wherever they lie (a series split across folders is one series).
Each RTSTRUCT is paired with the image series it references (series UID, else its frame of reference) and each
DICOM-SEG with the series in its ReferencedSeriesSequence. Anything that would need a guess (a missing
reference, two series in the referenced frame of reference, two segmentations of one series) is a problem
naming the series, never a case. Patient identifiers are used for case ids only: problems name series by
modality, number, description and UID, never by patient name or path.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from radpipe.errors import CaseError

__all__ = ["DicomIndex", "IndexedCase", "index_dicom_tree", "has_dicom_preamble", "segmentation_file_in"]

_SEGMENTATION_MODALITIES = {"RTSTRUCT", "SEG"}
#: Modalities whose series hold no image to extract features from.
NON_IMAGE_MODALITIES = {"RTSTRUCT", "SEG", "RTPLAN", "RTRECORD", "RTDOSE", "SR", "PR", "KO", "REG", "DOC"}
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


def has_dicom_preamble(path: str | Path) -> bool:
    """True when ``path`` is a DICOM Part 10 file: ``DICM`` after the 128-byte preamble (4 bytes read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


@dataclass
class _Series:
    uid: str
    modality: str
    patient_id: str
    study_uid: str
    study_date: str
    number: str
    description: str
    frame_of_reference: str
    files: list[Path] = field(default_factory=list)

    def label(self) -> str:
        number = f" {self.number}" if self.number else ""
        description = f" '{self.description}'" if self.description else ""
        return f"{self.modality or 'unknown-modality'} series{number}{description} ({self.uid}, {len(self.files)} file(s))"


@dataclass(frozen=True)
class _Segmentation:
    path: Path
    modality: str  # RTSTRUCT or SEG
    series: _Series
    referenced_series: tuple[str, ...]
    frames: tuple[str, ...]

    def label(self) -> str:
        number = f" {self.series.number}" if self.series.number else ""
        description = f" '{self.series.description}'" if self.series.description else ""
        return f"{self.modality}{number}{description} ({self.series.uid})"


@dataclass(frozen=True)
class IndexedCase:
    """One image series and the RTSTRUCT or DICOM-SEG file drawn on it."""

    case_id: str
    image_files: tuple[Path, ...]
    segmentation: Path
    modality: str  # of the image series: CT, MR, PT, ...
    series_uid: str
    segmentation_modality: str  # RTSTRUCT or SEG
    folders: int  # how many folders the image series' files lie in


@dataclass
class DicomIndex:
    """What :func:`index_dicom_tree` found: cases, problems ``(case_id, reason)`` and counts for the summary."""

    root: Path
    cases: list[IndexedCase]
    problems: list[tuple[str, str]]
    n_files: int
    n_dicom: int
    unsegmented: list[str]  # labels of image series without a segmentation (not cases, not failures)

    def summary(self) -> str:
        """One line for people: cases by modality, series left out and why."""
        modalities = Counter(case.modality for case in self.cases)
        by_modality = ", ".join(f"{count} {name}" for name, count in sorted(modalities.items()))
        split = sum(case.folders > 1 for case in self.cases)
        parts = [f"DICOM tree: {len(self.cases)} case(s)" + (f" ({by_modality})" if by_modality else "")
                 + f" from {self.n_dicom} DICOM file(s)"]
        if self.unsegmented:
            parts.append(f"{len(self.unsegmented)} image series without an RTSTRUCT or SEG (not cases)")
        if split:
            parts.append(f"{split} series split across folders, read as one")
        if self.problems:
            parts.append(f"{len(self.problems)} problem(s) in qc.csv")
        if self.n_files > self.n_dicom:
            parts.append(f"{self.n_files - self.n_dicom} non-DICOM file(s) skipped")
        return "; ".join(parts)


def index_dicom_tree(root: str | Path) -> DicomIndex:
    """Index every DICOM file below ``root`` (headers only) and pair image series with their segmentations.

    One case per image series that has exactly one RTSTRUCT or DICOM-SEG. The case id is the PatientID;
    when a patient has several cases, the study date is added (``PAT1_20240131``), and the series number when
    that is not enough, so ids stay unique and do not depend on file or folder names.

    Examples
    --------
    A CT slice without a structure set is an image series, but not a case:

    >>> import shutil, tempfile
    >>> from pydicom.data import get_testdata_file
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "PAT1" / "CT").mkdir(parents=True)
    >>> _ = shutil.copy(get_testdata_file("CT_small.dcm"), root / "PAT1" / "CT" / "1.dcm")
    >>> index = index_dicom_tree(root)
    >>> len(index.cases), len(index.unsegmented)
    (0, 1)
    >>> index.summary()
    'DICOM tree: 0 case(s) from 1 DICOM file(s); 1 image series without an RTSTRUCT or SEG (not cases)'
    """
    import pydicom

    root = Path(root)
    series: dict[str, _Series] = {}
    segmentations: list[_Segmentation] = []
    problems: list[tuple[str, str]] = []
    n_files = n_dicom = 0
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            path = Path(folder) / name
            n_files += 1
            if not has_dicom_preamble(path):
                continue
            n_dicom += 1
            relative = path.relative_to(root).as_posix()
            try:
                header = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception as exc:  # noqa: BLE001 - a damaged file is one problem, never a crash
                problems.append((relative, f"{relative} starts like a DICOM file but its header cannot be read "
                                           f"({_short(exc)}); the file is left out"))
                continue
            uid = str(header.get("SeriesInstanceUID", "") or "")
            if not uid:
                if str(getattr(header, "file_meta", {}).get("MediaStorageSOPClassUID", "")) != _DICOMDIR_SOP_CLASS:
                    problems.append((relative, f"{relative} is not a readable DICOM object (it has no SeriesInstanceUID); "
                                               "the file is left out"))
                continue  # a DICOMDIR is a catalogue of the export, not a series
            item = series.get(uid)
            if item is None:
                item = series[uid] = _Series(
                    uid, str(header.get("Modality", "")).upper(), str(header.get("PatientID", "")).strip(),
                    str(header.get("StudyInstanceUID", "")), str(header.get("StudyDate", "")).strip(),
                    str(header.get("SeriesNumber", "") or "").strip(), str(header.get("SeriesDescription", "")).strip(),
                    str(header.get("FrameOfReferenceUID", "")))
            item.files.append(path)
            if item.modality in _SEGMENTATION_MODALITIES:
                segmentations.append(_segmentation(path, item, header))

    images = {uid: s for uid, s in series.items() if s.modality not in NON_IMAGE_MODALITIES}
    paired: dict[str, list[_Segmentation]] = defaultdict(list)
    unpairable: list[tuple[_Segmentation, str]] = []
    disputed: set[str] = set()  # series named in an ambiguity: reported there, not counted as unsegmented
    for seg in segmentations:
        target, why, candidates = _pair(seg, images)
        if target is None:
            unpairable.append((seg, why))
            disputed.update(candidates)
        else:
            paired[target].append(seg)

    # ids are given over cases and problem items together, so an id in qc.csv never names two things
    entries: list[tuple[_Series, str, object]] = []
    for uid, segs in paired.items():
        entries.append((images[uid], uid, segs))
    for seg, why in unpairable:
        entries.append((seg.series, seg.series.uid + seg.path.name, why))
    ids = _case_ids([(s, key) for s, key, _ in entries])

    cases = []
    for image_series, key, payload in entries:
        case_id = ids[key]
        if isinstance(payload, str):
            problems.append((case_id, payload))
            continue
        segs = payload
        if len(segs) > 1:
            problems.append((case_id, f"{image_series.label()} has {len(segs)} segmentations ("
                             + "; ".join(seg.label() for seg in segs)
                             + "); radpipe does not choose between them: keep one in the folder"))
            continue
        files = tuple(sorted(image_series.files))
        cases.append(IndexedCase(case_id, files, segs[0].path, image_series.modality, image_series.uid,
                                 segs[0].modality, len({f.parent for f in files})))
    cases.sort(key=lambda case: case.case_id)
    unsegmented = sorted(s.label() for uid, s in images.items() if uid not in paired and uid not in disputed)
    return DicomIndex(root, cases, problems, n_files, n_dicom, unsegmented)


def _segmentation(path: Path, series: _Series, header) -> _Segmentation:
    referenced: list[str] = []
    frames: list[str] = []
    if series.modality == "RTSTRUCT":
        for frame in header.get("ReferencedFrameOfReferenceSequence", []):
            frames.append(str(frame.get("FrameOfReferenceUID", "")))
            for study in frame.get("RTReferencedStudySequence", []):
                for item in study.get("RTReferencedSeriesSequence", []):
                    referenced.append(str(item.get("SeriesInstanceUID", "")))
        frames += [str(roi.get("ReferencedFrameOfReferenceUID", "")) for roi in header.get("StructureSetROISequence", [])]
    else:
        referenced += [str(item.get("SeriesInstanceUID", "")) for item in header.get("ReferencedSeriesSequence", [])]
        frames.append(str(header.get("FrameOfReferenceUID", "")))
    return _Segmentation(path, series.modality, series, tuple(dict.fromkeys(u for u in referenced if u)),
                         tuple(dict.fromkeys(f for f in frames if f)))


def _pair(seg: _Segmentation, images: dict[str, _Series]) -> tuple[str | None, str, list[str]]:
    """The image series ``seg`` was drawn on, or None, why not (in words naming the series) and the candidates."""
    if seg.referenced_series:
        present = [uid for uid in seg.referenced_series if uid in images]
        if len(present) == 1:
            return present[0], "", present
        if not present:
            return None, (f"{seg.label()} references image series {', '.join(seg.referenced_series)}, which is not "
                          "in the folder; export it with its image series"), []
        return None, (f"{seg.label()} references {len(present)} image series ("
                      + "; ".join(images[uid].label() for uid in present)
                      + "); radpipe does not choose between them"), present
    if not seg.frames:
        return None, (f"{seg.label()} names neither a referenced series nor a frame of reference; "
                      "it cannot be paired"), []
    candidates = sorted((s for s in images.values() if s.frame_of_reference in seg.frames), key=lambda s: s.uid)
    if len(candidates) == 1:
        return candidates[0].uid, "", [candidates[0].uid]
    if not candidates:
        return None, (f"{seg.label()} was drawn in frame of reference {seg.frames[0]}, and no image series in the "
                      "folder is in it; export it with its image series"), []
    return None, (f"{seg.label()} gives only its frame of reference, which {len(candidates)} image series share ("
                  + "; ".join(s.label() for s in candidates)
                  + "); radpipe does not guess which one it was drawn on: keep one of them in the folder"), \
        [s.uid for s in candidates]


def _case_ids(entries: list[tuple[_Series, str]]) -> dict[str, str]:
    """PatientID, plus the study date, then the series number, then a UID tail, until the ids are unique."""
    by_patient: dict[str, list[tuple[_Series, str]]] = defaultdict(list)
    for series, key in entries:
        by_patient[series.patient_id or "anonymous"].append((series, key))
    ids: dict[str, str] = {}
    for patient, group in by_patient.items():
        if len(group) == 1:
            ids[group[0][1]] = patient
            continue
        names = {key: f"{patient}_{series.study_date or series.study_uid[-8:]}" for series, key in group}
        for refine in (lambda s: f"s{s.number}" if s.number else s.uid[-8:], lambda s: s.uid[-8:]):
            counts = Counter(names.values())
            for series, key in group:
                if counts[names[key]] > 1:
                    names[key] = f"{names[key]}_{refine(series)}"
        counts = Counter(names.values())
        for series, key in group:  # two segmentations of one series that could not be paired
            if counts[names[key]] > 1:
                names[key] = f"{names[key]}_{Path(key[len(series.uid):]).stem}"
        ids.update(names)
    return ids


def segmentation_file_in(folder: str | Path) -> Path | None:
    """The one RTSTRUCT or DICOM-SEG file in ``folder`` (a per-case ``mask/`` folder), or None when the folder
    holds no DICOM segmentation (e.g. an image series).

    Raises
    ------
    CaseError
        When the folder holds several segmentation files: radpipe does not choose between them.
    """
    import pydicom

    found = []
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file() and not path.name.startswith(".") and has_dicom_preamble(path):
            try:
                modality = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality"])
                               .get("Modality", "")).upper()
            except Exception:  # noqa: BLE001 - an unreadable file is no segmentation; the reader says more
                continue
            if modality not in _SEGMENTATION_MODALITIES:
                return None
            found.append(path)
    if len(found) > 1:
        raise CaseError(f"mask folder {Path(folder).name}/ holds {len(found)} RTSTRUCT/SEG files "
                        f"({', '.join(p.name for p in found)}); keep the one to use")
    return found[0] if found else None


def _short(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[-1] if lines else type(exc).__name__)[:200]
