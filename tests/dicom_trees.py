"""DICOM inputs written at test time with pydicom and highdicom: image series, RTSTRUCTs, DICOM-SEGs, and whole
trees laid out as PACS and TCIA exports are (patient/study/series folders, a series split across folders).

``write_dicom_tree(root)`` is the fixture other tests (and the installed-package test) use; it returns what it
wrote, so a test can assert case ids, pairings, modalities and voxel counts against it.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)

# Identifiers planted in every synthetic header; none may come back out.
IDENTIFIERS = {
    "PatientName": "Doe^Jane",
    "PatientID": "MRN-4711",
    "PatientBirthDate": "19610203",
    "AccessionNumber": "ACC-99812",
}
_SOP_CLASSES = {"CT": CTImageStorage, "PT": PositronEmissionTomographyImageStorage, "MR": MRImageStorage}
_RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"


def write_series(
    folder: Path,
    stored: np.ndarray,
    *,
    modality: str = "CT",
    z_positions=None,
    spacing=(0.8, 0.8),
    origin_xy=(-10.0, -20.0),
    slope=1.0,
    intercept=-1024.0,
    series_uid: str | None = None,
    frame_uid: str | None = None,
    study_uid: str | None = None,
    prefix: str = "slice",
    **tags,
) -> str:
    """Write ``stored`` (z, y, x uint16) as one DICOM file per slice; returns the SeriesInstanceUID.

    ``slope`` may be a list (one per slice); extra ``tags`` go into every header (after the planted
    identifiers, so ``PatientID=...`` replaces them).
    """
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    z_positions = list(z_positions if z_positions is not None else np.arange(len(stored)) * 2.5)
    slopes = list(slope) if np.ndim(slope) else [slope] * len(stored)
    sop_class = _SOP_CLASSES[modality]
    for number, (plane, z, s) in enumerate(zip(stored, z_positions, slopes, strict=True), start=1):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.Modality = modality
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = number
        for key, value in IDENTIFIERS.items():
            setattr(ds, key, value)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [origin_xy[0], origin_xy[1], float(z)]
        ds.PixelSpacing = list(spacing)
        ds.SliceThickness = 2.5
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = f"{s:.8g}"
        ds.RescaleIntercept = f"{intercept:g}"
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.PixelData = np.ascontiguousarray(plane, dtype="<u2").tobytes()
        ds.save_as(folder / f"{prefix}{number:03d}.dcm", enforce_file_format=True)
    return series_uid


def write_rtstruct(path: Path, frame_uid: str, rois: dict[str, list[np.ndarray]], *,
                   referenced_series: str | None = None, **tags) -> str:
    """An RTSTRUCT with one ROI per name, each a list of closed planar contours (N x 3 points, mm).

    ``referenced_series`` adds the RTReferencedSeriesSequence (as planning systems write it); without it the
    RTSTRUCT names only its frame of reference. Extra ``tags`` (PatientID, StudyInstanceUID, ...) override the
    planted identifiers. Returns the RTSTRUCT's SeriesInstanceUID.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = _RTSTRUCT_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.SeriesInstanceUID = generate_uid()
    for key, value in IDENTIFIERS.items():
        setattr(ds, key, value)
    frame = Dataset()
    frame.FrameOfReferenceUID = frame_uid
    if referenced_series:
        series = Dataset()
        series.SeriesInstanceUID = referenced_series
        study = Dataset()
        study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        study.ReferencedSOPInstanceUID = tags.get("StudyInstanceUID", generate_uid())
        study.RTReferencedSeriesSequence = Sequence([series])
        frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    ds.StructureSetROISequence = Sequence()
    ds.ROIContourSequence = Sequence()
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ROIName = name
        roi.ReferencedFrameOfReferenceUID = frame_uid
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ContourSequence = Sequence()
        for points in contours:
            contour = Dataset()
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points)
            contour.ContourData = [f"{v:.6g}" for v in np.asarray(points, float).ravel()]
            item.ContourSequence.append(contour)
        ds.ROIContourSequence.append(item)
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)
    return str(ds.SeriesInstanceUID)


def square(x0, y0, x1, y1, z) -> np.ndarray:
    """A closed square contour at height ``z`` (mm)."""
    return np.array([[x0, y0, z], [x1, y0, z], [x1, y1, z], [x0, y1, z]])


def write_seg(series_folder: Path, masks: dict[str, np.ndarray], path: Path) -> str:
    """A binary DICOM-SEG (highdicom) with one segment per mask (z, y, x along +z) on the series in
    ``series_folder``; returns its SeriesInstanceUID."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(f) for f in sorted(series_folder.glob("*.dcm"))]
    sources.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))  # the mask arrays run along +z
    for source in sources:  # study-level attributes highdicom copies; synthetic series may lack them
        for key, value in (("PatientSex", "O"), ("StudyID", "1"), ("StudyDate", "20200101"), ("StudyTime", "120000"),
                           ("ReferringPhysicianName", ""), ("AccessionNumber", "")):
            if key not in source:
                setattr(source, key, value)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type="MANUAL",
        )
        for number, label in enumerate(masks, start=1)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # highdicom's remarks on one-part names and missing tags
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=np.stack(list(masks.values()), axis=-1).astype(np.uint8),
            segmentation_type="BINARY",
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=100,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="radpipe tests",
            manufacturer_model_name="round trip",
            software_versions="0",
            device_serial_number="0",
        )
    seg.save_as(path)
    return str(seg.SeriesInstanceUID)


# ------------------------------------------------------------------------------------------- a whole tree

#: Every patient identifier write_dicom_tree plants (names, ids, birth dates); none may reach a pseudonymised
#: output, and names and birth dates may reach no output at all.
TREE_NAMES = ("Kowalski^Anna", "Okafor^Chidi", "Lindqvist^Maja", "Haddad^Omar", "Moreau^Lucie", "Tanaka^Ken")
TREE_BIRTH_DATE = "19500417"

_SHAPE = (5, 16, 16)  # z, y, x; 1 mm pixels from (0, 0), slices 2.5 mm apart from z = 0


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(900, 1300, size=_SHAPE).astype(np.uint16)


def _box(x0: int, x1: int, slices: range) -> tuple[list[np.ndarray], np.ndarray]:
    """Square contours enclosing pixel centres x0..x1 (and y0..y1 = x0..x1) on ``slices``, and that mask."""
    contours = [square(x0 - 0.5, x0 - 0.5, x1 + 0.5, x1 + 0.5, 2.5 * z) for z in slices]
    mask = np.zeros(_SHAPE, dtype=np.uint8)
    for z in slices:
        mask[z, x0:x1 + 1, x0:x1 + 1] = 1
    return contours, mask


def write_dicom_tree(root: Path, *, problems: bool = True) -> dict:
    """Write a small multi-patient DICOM tree below ``root`` as PACS exports lay it out; return what it holds.

    With ``problems=False`` only the cases that extract with no configuration are written (for end-to-end
    runs that should exit 0). Otherwise it adds what must become ``qc.csv`` rows: an RTSTRUCT with two ROIs,
    one whose referenced series was not exported, one in a frame of reference two series share, and a file
    that starts like DICOM but is damaged; plus an image series without any segmentation (not a case).

    Returns
    -------
    dict
        ``cases``: {case_id: {"modality", "segmentation" ("RTSTRUCT"/"SEG"), "roi", "voxels", "mask"
        (z, y, x array)}}; ``needs_roi_name``: {case_id: [ROI names]}; ``problems``: {case_id: words the
        qc.csv reason contains}; ``unsegmented``: number of image series without a segmentation;
        ``patient_ids`` and ``patient_names``: every identifier planted.
    """
    root = Path(root)
    cases: dict[str, dict] = {}
    needs_roi: dict[str, list[str]] = {}
    expected_problems: dict[str, list[str]] = {}
    names = iter(TREE_NAMES)

    def patient(pid: str) -> dict:
        return {"PatientID": pid, "PatientName": next(names), "PatientBirthDate": TREE_BIRTH_DATE,
                "AccessionNumber": f"ACC-{pid}"}

    # PAT-B: two studies, each a CT with a one-ROI RTSTRUCT; the second RTSTRUCT names only its frame of reference
    ids = patient("PAT-B")
    for study_date, (x0, x1), by_series, seed in (("20240110", (3, 8), True, 1), ("20240301", (5, 11), False, 2)):
        study = generate_uid()
        frame = generate_uid()
        folder = root / "PAT-B" / f"{study_date}_CT_CHEST"
        uid = write_series(folder / "2_CT", _image(seed), spacing=(1.0, 1.0), origin_xy=(0.0, 0.0), frame_uid=frame,
                           study_uid=study, StudyDate=study_date, SeriesNumber=2, SeriesDescription="CHEST", **ids)
        contours, mask = _box(x0, x1, range(1, 4))
        write_rtstruct(folder / "3_RTSTRUCT" / "rs.dcm", frame, {"GTV": contours},
                       referenced_series=uid if by_series else None, StudyInstanceUID=study, StudyDate=study_date,
                       SeriesNumber=3, **ids)
        cases[f"PAT-B_{study_date}"] = {"modality": "CT", "segmentation": "RTSTRUCT", "roi": "GTV",
                                        "voxels": int(mask.sum()), "mask": mask}

    # PAT-C: an MR series with a DICOM-SEG (one segment)
    ids = patient("PAT-C")
    study = generate_uid()
    folder = root / "PAT-C" / "study1"
    write_series(folder / "MR_T1", _image(3), modality="MR", spacing=(1.0, 1.0), origin_xy=(0.0, 0.0), intercept=0,
                 study_uid=study, StudyDate="20230505", SeriesNumber=1, **ids)
    _, mask = _box(4, 10, range(0, 3))
    write_seg(folder / "MR_T1", {"Tumour": mask}, folder / "SEG" / "seg.dcm")
    cases["PAT-C"] = {"modality": "MR", "segmentation": "SEG", "roi": "Tumour", "voxels": int(mask.sum()), "mask": mask}

    # PAT-D: a PET series split across two folders (as some exports cut long series), one-ROI RTSTRUCT
    ids = patient("PAT-D")
    study = generate_uid()
    frame = generate_uid()
    folder = root / "PAT-D" / "PETCT"
    uid = write_series(folder / "PET_part1", _image(4), modality="PT", spacing=(1.0, 1.0), origin_xy=(0.0, 0.0),
                       intercept=0, frame_uid=frame, study_uid=study, StudyDate="20220202", SeriesNumber=5,
                       Units="BQML", **ids)
    (folder / "PET_part2").mkdir()
    for path in sorted((folder / "PET_part1").glob("*.dcm"))[3:]:
        shutil.move(path, folder / "PET_part2" / path.name)
    contours, mask = _box(6, 9, range(2, 5))
    write_rtstruct(folder / "RS" / "rtstruct.dcm", frame, {"Lesion": contours}, referenced_series=uid,
                   StudyInstanceUID=study, **ids)
    cases["PAT-D"] = {"modality": "PT", "segmentation": "RTSTRUCT", "roi": "Lesion", "voxels": int(mask.sum()),
                      "mask": mask}
    (root / "README.txt").write_text("export notes: not a DICOM file\n")

    patient_ids = ["PAT-B", "PAT-C", "PAT-D"]
    unsegmented = 0
    if problems:
        # PAT-A: an RTSTRUCT with two ROIs (no roi_name: the case must list them), and a localiser with no
        # segmentation (not a case)
        ids = patient("PAT-A")
        study = generate_uid()
        frame = generate_uid()
        folder = root / "PAT-A" / "study"
        uid = write_series(folder / "CT", _image(5), spacing=(1.0, 1.0), origin_xy=(0.0, 0.0), frame_uid=frame,
                           study_uid=study, StudyDate="20210101", SeriesNumber=2, **ids)
        write_series(folder / "SCOUT", _image(6)[:1], study_uid=study, StudyDate="20210101", SeriesNumber=1, **ids)
        gtv, gtv_mask = _box(2, 6, range(1, 4))
        node, _ = _box(9, 12, range(2, 4))
        write_rtstruct(folder / "RTSTRUCT" / "rs.dcm", frame, {"GTV-1": gtv, "Node": node}, referenced_series=uid,
                       StudyInstanceUID=study, **ids)
        cases["PAT-A"] = {"modality": "CT", "segmentation": "RTSTRUCT", "roi": "GTV-1",
                          "voxels": int(gtv_mask.sum()), "mask": gtv_mask}
        needs_roi["PAT-A"] = ["GTV-1", "Node"]
        unsegmented += 1

        # PAT-E: the RTSTRUCT references a series that was not exported
        ids = patient("PAT-E")
        contours, _ = _box(3, 8, range(1, 3))
        missing = generate_uid()
        write_rtstruct(root / "PAT-E" / "RS" / "rs.dcm", generate_uid(), {"GTV": contours}, referenced_series=missing,
                       **ids)
        expected_problems["PAT-E"] = ["references image series", missing, "not in the folder"]

        # PAT-F: two CT series in one frame of reference, an RTSTRUCT naming only that frame
        ids = patient("PAT-F")
        study = generate_uid()
        frame = generate_uid()
        first = write_series(root / "PAT-F" / "CT_A", _image(7), spacing=(1.0, 1.0), origin_xy=(0.0, 0.0),
                             frame_uid=frame, study_uid=study, SeriesNumber=2, **ids)
        second = write_series(root / "PAT-F" / "CT_B", _image(8), spacing=(1.0, 1.0), origin_xy=(0.0, 0.0),
                              frame_uid=frame, study_uid=study, SeriesNumber=3, **ids)
        write_rtstruct(root / "PAT-F" / "RS" / "rs.dcm", frame, {"GTV": contours}, StudyInstanceUID=study, **ids)
        expected_problems["PAT-F"] = ["2 image series", first, second, "does not guess"]

        # a damaged file: the DICOM preamble, then garbage
        (root / "PAT-F" / "CT_A" / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")
        expected_problems["PAT-F/CT_A/broken.dcm"] = ["PAT-F/CT_A/broken.dcm", "left out"]
        patient_ids += ["PAT-A", "PAT-E", "PAT-F"]

    return {
        "cases": cases,
        "needs_roi_name": needs_roi,
        "problems": expected_problems,
        "unsegmented": unsegmented,
        "patient_ids": patient_ids,
        "patient_names": [name for name, _ in zip(TREE_NAMES, patient_ids, strict=False)],
        "birth_date": TREE_BIRTH_DATE,
    }


# ---------------------------------------------------------------------------------- the IBSI CT phantom

def write_ibsi_phantom_tree(root: Path, phantom: Path) -> dict:
    """The IBSI CT phantom (NIfTI pair in ``phantom``) rewritten as a PACS export:
    ``PAT1/<study date>_CT/<series>/*.dcm``, with an RTSTRUCT in its own series folder whose contours are
    traced on the NIfTI reference mask (scikit-image's marching squares at level 0.5, one polygon per
    boundary, holes as inner polygons). Returns {"mask": the reference array (z, y, x), "rtstruct": path}.
    """
    import SimpleITK as sitk
    from skimage.measure import find_contours

    image = sitk.ReadImage(str(phantom / "image.nii.gz"))
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(phantom / "mask.nii.gz"))).astype(bool)
    hounsfield = np.round(sitk.GetArrayFromImage(image)).astype(np.int32)
    origin, spacing = np.array(image.GetOrigin()), np.array(image.GetSpacing())
    ids = {"PatientID": "PAT1", "PatientName": "PAT1", "StudyDate": "20160801"}
    study, frame = generate_uid(), generate_uid()
    folder = root / "PAT1" / "20160801_CT"
    z_positions = origin[2] + spacing[2] * np.arange(hounsfield.shape[0])
    series = write_series(folder / "2_CT_THORAX", (hounsfield + 1000).astype(np.uint16), z_positions=z_positions,
                          spacing=(spacing[1], spacing[0]), origin_xy=(origin[0], origin[1]), intercept=-1000,
                          frame_uid=frame, study_uid=study, SeriesNumber=2, SliceThickness=spacing[2], **ids)
    contours = []
    for z, plane in enumerate(reference):
        if not plane.any():
            continue
        padded = np.pad(plane.astype(float), 1)  # closed polygons also where the ROI touches the image edge
        for points in find_contours(padded, 0.5):
            rows, columns = points[:, 0] - 1, points[:, 1] - 1
            contours.append(np.column_stack([origin[0] + columns * spacing[0], origin[1] + rows * spacing[1],
                                             np.full(len(rows), z_positions[z])])[:-1])  # last point repeats the first
    rtstruct = folder / "3_RTSTRUCT" / "RS.dcm"
    write_rtstruct(rtstruct, frame, {"GTV-1": contours}, referenced_series=series, StudyInstanceUID=study,
                   SeriesNumber=3, **ids)
    return {"mask": reference, "rtstruct": rtstruct, "n_contours": len(contours)}
