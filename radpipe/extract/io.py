"""Read one case's image and mask with SimpleITK, turning every odd input into either a plain scalar image
plus a note of what was converted, or a :class:`~radpipe.errors.CaseError` a radiologist can act on.

What is returned
----------------
- ``read_image`` returns a *scalar* image of 2 or 3 dimensions. A 2D file (PNG, JPG, BMP, single-page TIFF,
  2D NIfTI/NRRD) stays 2D; pyradiomics extracts it with ``force2D`` (the lead's runner decides). Trailing
  singleton dimensions of a 4D/5D file (``x, y, z, 1``) are dropped with a note; a true 4D series is rejected.
  The pixel type is the file's own (int16 CT stays int16, uint8 PNG stays uint8) except for colour images
  that are not grey, which become float32 luminance.
- ``read_mask`` returns an unsigned integer label image (UInt8, UInt16 or UInt32) with the file's own values
  (a 0/255 mask stays 0/255: binarising and choosing a label is :mod:`radpipe.extract.qc`'s job, so the
  ledger records it once).

Both return ``(image, notes)``; ``notes`` are sentences for the QC ledger and the manifest.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from radpipe.errors import CaseError

__all__ = ["read_image", "read_mask", "input_name", "image_modality", "RASTER_SUFFIXES", "RASTER_WITHOUT_SPACING"]

#: File types that carry no voxel spacing SimpleITK can trust (it reports 1.0 x 1.0).
RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_COLOUR_COMPONENT_TYPES = (sitk.sitkUInt8, sitk.sitkUInt16)
_LUMINANCE = (0.299, 0.587, 0.114)
#: Metadata key set on raster images whose spacing is SimpleITK's 1 x 1 default, not a measurement.
RASTER_WITHOUT_SPACING = "radpipe_raster_without_spacing"


def read_image(
    path: str | Path | tuple[str | Path, ...], *, spacing_2d: tuple[float, float] | None = None
) -> tuple[sitk.Image, list[str]]:
    """Read a medical or 2D raster image as a scalar SimpleITK image.

    Parameters
    ----------
    path
        A NIfTI (``.nii``, ``.nii.gz``), NRRD, MHA/MHD, PNG, JPG, BMP or TIFF file, a folder holding a
        DICOM series, or a tuple of the files of one DICOM series, which may lie in several folders (both
        read by :func:`radpipe.extract.dicom.read_dicom_series`).
    spacing_2d
        In-plane pixel spacing in mm, ``(x, y)``, for raster files (PNG/JPG/BMP/TIFF). Raster files carry no
        reliable spacing (SimpleITK reports 1.0 x 1.0; TIFF resolution tags are usually a screen DPI), so the
        recipe's value replaces the file's whenever it is given, and a note says so. Ignored for other formats.

    Returns
    -------
    image, notes
        A scalar 2D or 3D image in the file's pixel type (float32 luminance for colour images that are not
        grey), and human-readable notes of each conversion.

    Raises
    ------
    CaseError
        Missing, zero-byte, truncated or non-image files; true 4D images; NaN or infinite voxels; images with
        several components that are not RGB/RGBA colour.
    """
    if isinstance(path, tuple | list):
        image, notes = _read_dicom(tuple(Path(p) for p in path))
        path = Path(input_name(path))
    else:
        path = Path(path)
        image, notes = _read_dicom(path) if path.is_dir() else _read_file(path)
    image, more = _to_scalar_image(image, path)
    notes += more
    _reject_non_finite(image, path, what="image")
    if path.suffix.lower() in RASTER_SUFFIXES:
        notes += _apply_raster_spacing(image, spacing_2d)
    return image, notes


def read_mask(
    path: str | Path, *, spacing_2d: tuple[float, float] | None = None
) -> tuple[sitk.Image, list[str]]:
    """Read a segmentation as an unsigned integer label image, keeping its values.

    The same reading rules and rejections as :func:`read_image` apply. ``spacing_2d`` is applied to raster masks
    as to raster images; pass the same value to both. A raster mask read without it is tagged (metadata
    ``radpipe_raster_without_spacing``) so that :func:`radpipe.extract.qc.check_mask` lays it pixel for pixel
    on a same-size image instead of rejecting a spacing mismatch that only reflects the file format.

    Colour masks (RGB/RGBA PNG from drawing tools): when the colour channels are equal the first channel is
    used; otherwise a pixel is in the mask when any colour channel is non-zero (value 1). An alpha channel is
    ignored, unless the colour channels are all zero and the alpha channel varies (a mask drawn as
    transparency), in which case the alpha channel is the mask.

    Float masks whose values are all whole numbers (``{0.0, 1.0}``, ``{0.0, 1.0, 2.0}``) are cast to an unsigned
    integer type with a note. Float masks with fractional values (a probability map, ``{0, 0.7, 1}``) are
    **rejected**, listing the distinct values: a threshold is a modelling decision the recipe must make
    explicitly, not one to guess at here. Negative labels are rejected too.

    Returns
    -------
    mask, notes
        A UInt8/UInt16/UInt32 image (smallest that holds the labels) and notes of each conversion.
    """
    path = Path(path)
    if path.is_dir():
        mask, notes = _read_dicom(path)
    else:
        mask, notes = _read_file(path)
    notes = list(notes)
    if mask.GetDimension() > 3:
        mask, more = _squeeze_extra_dimensions(mask, path)
        notes += more
    if mask.GetNumberOfComponentsPerPixel() > 1:
        mask, more = _colour_mask_to_label(mask, path)
        notes += more
    _reject_non_finite(mask, path, what="mask")
    mask, more = _to_label_type(mask, path)
    notes += more
    if path.suffix.lower() in RASTER_SUFFIXES:
        notes += _apply_raster_spacing(mask, spacing_2d)
    return mask, notes


def input_name(path: str | Path | tuple[str | Path, ...]) -> str:
    """A short name of a case's input for tables and messages: the file or folder name, or for the files of
    a DICOM series ``<folder>/ (<n> DICOM files)`` (``<first folder>/ +<k> folders`` when it is split)."""
    if isinstance(path, tuple | list):
        parents = sorted({Path(p).parent for p in path})
        where = f"{parents[0].name}/" + (f" +{len(parents) - 1} folder(s)" if len(parents) > 1 else "") if parents else ""
        return f"{where} ({len(path)} DICOM files)".strip()
    return Path(path).name


def image_modality(image: sitk.Image) -> str:
    """The DICOM modality (CT, MR, PT, ...) an image read from DICOM carries; empty for other files."""
    key = "0008|0060"  # the key radpipe.extract.dicom keeps on the images it reads
    return image.GetMetaData(key) if image.HasMetaDataKey(key) else ""


# --- reading -----------------------------------------------------------------------------------------------


def _read_dicom(folder: Path | tuple[Path, ...]) -> tuple[sitk.Image, list[str]]:
    try:
        from radpipe.extract.dicom import read_dicom_series
    except ImportError as exc:
        raise CaseError(
            f"{input_name(folder)} is a DICOM series, but DICOM support is not available in this "
            f"installation ({exc}); convert the series to NIfTI or install radpipe with DICOM support"
        ) from exc
    result = read_dicom_series(folder)
    if isinstance(result, tuple):
        image, notes = result
        return image, list(notes)
    return result, []


def _read_file(path: Path) -> tuple[sitk.Image, list[str]]:
    name = path.name
    if not path.exists():
        raise CaseError(f"{name}: file not found at {path}")
    size = path.stat().st_size
    if size == 0:
        raise CaseError(f"{name} is empty (0 bytes) and could not be read as an image")
    _check_complete(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise CaseError(
            f"{name} could not be read as an image: the file is corrupt, truncated or not an image format "
            f"radpipe reads (NIfTI, NRRD, MHA/MHD, PNG, JPG, BMP, TIFF, DICOM folder). "
            f"Reader said: {_itk_message(exc)}"
        ) from exc
    return image, []


def _itk_message(exc: Exception) -> str:
    """The informative line of an ITK exception (they start with a source-file location)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Exception thrown") and ".cxx:" not in line]
    text = (useful or lines or ["unknown error"])[0]
    for prefix in ("sitk::ERROR: ", "ITK ERROR: "):
        text = text.replace(prefix, "")
    return text[:200]


def _check_complete(path: Path) -> None:
    """Catch what ITK reads without complaint: truncated NIfTI (padded with zeros), truncated JPEG (padded with
    grey), and NaN/inf voxels in float NIfTI (silently replaced by 0 by ITK's NIfTI reader)."""
    lower = path.name.lower()
    if lower.endswith((".jpg", ".jpeg")):
        _check_jpeg_end(path)
        return
    if not lower.endswith((".nii", ".nii.gz", ".gz")):
        return
    try:
        scan = _scan_nifti(path)
    except (EOFError, OSError, gzip.BadGzipFile, zlib.error) as exc:
        raise CaseError(
            f"{path.name} could not be read as an image: the compressed data is truncated or corrupt ({exc})"
        ) from exc
    if scan is None:
        return
    expected, total, n_nan, n_inf, n_voxels = scan
    if total < expected:
        raise CaseError(
            f"{path.name} could not be read as an image: it is truncated (the NIfTI header announces "
            f"{expected} bytes, the file holds {total})"
        )
    if n_nan or n_inf:
        raise CaseError(_non_finite_reason(path, "file", n_nan, n_inf, n_voxels))


def _scan_nifti(path: Path) -> tuple[int, int, int, int, int] | None:
    """Stream a NIfTI file once: (expected bytes, actual bytes, NaN count, inf count, voxels); None if the file
    is not NIfTI. Streaming keeps memory flat on large CT volumes."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as handle:
        header = handle.read(540)
        info = _nifti_header(header)
        if info is None:
            while handle.read(1 << 22):  # still validate the gzip stream to its end
                pass
            return None
        expected, offset, dtype, n_voxels = info
        total = len(header)
        n_nan = n_inf = 0
        pending = header[offset:] if len(header) > offset else b""
        skip = max(offset - len(header), 0)
        while True:
            block = handle.read(1 << 22)
            if skip and block:
                cut = min(skip, len(block))
                block, skip = block[cut:], skip - cut
                total += cut
            total += len(block)
            pending += block
            if dtype is not None and pending:
                usable = len(pending) - len(pending) % dtype.itemsize
                values = np.frombuffer(pending[:usable], dtype=dtype)
                pending = pending[usable:]
                if not np.isfinite(values).all():
                    n_nan += int(np.isnan(values).sum())
                    n_inf += int(np.isinf(values).sum())
            elif dtype is None:
                pending = b""
            if not block:
                break
    return expected, total, n_nan, n_inf, n_voxels


def _nifti_header(header: bytes) -> tuple[int, int, np.dtype | None, int] | None:
    """(expected file bytes, vox_offset, float dtype or None, voxel count) of a NIfTI-1/-2 header."""
    if len(header) < 348:
        return None
    for endian in ("<", ">"):
        (sizeof_hdr,) = struct.unpack(endian + "i", header[:4])
        if sizeof_hdr == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            (datatype, bitpix) = struct.unpack(endian + "2h", header[70:74])
            (vox_offset,) = struct.unpack(endian + "f", header[108:112])
            break
        if sizeof_hdr == 540 and len(header) >= 540:
            (datatype, bitpix) = struct.unpack(endian + "2h", header[12:16])
            dims = struct.unpack(endian + "8q", header[16:80])
            (vox_offset,) = struct.unpack(endian + "q", header[168:176])
            break
    else:
        return None
    ndim = dims[0]
    if not 0 < ndim <= 7 or bitpix <= 0:
        return None
    voxels = int(np.prod([max(int(d), 1) for d in dims[1 : ndim + 1]], dtype=np.int64))
    dtype = {16: np.dtype(endian + "f4"), 64: np.dtype(endian + "f8")}.get(datatype)
    return int(vox_offset) + voxels * bitpix // 8, int(vox_offset), dtype, voxels


def _check_jpeg_end(path: Path) -> None:
    with open(path, "rb") as handle:
        handle.seek(max(path.stat().st_size - 4096, 0))
        tail = handle.read().rstrip(b"\x00\r\n\t ")
    if not tail.endswith(b"\xff\xd9"):
        raise CaseError(
            f"{path.name} could not be read as an image: the JPEG file is truncated (no end-of-image marker)"
        )


# --- shape and components ----------------------------------------------------------------------------------


def _squeeze_extra_dimensions(image: sitk.Image, path: Path) -> tuple[sitk.Image, list[str]]:
    size = image.GetSize()
    if any(s != 1 for s in size[3:]):
        raise CaseError(
            f"{path.name} is a {image.GetDimension()}D image of size {' x '.join(map(str, size))} "
            f"(a time series or several volumes); radpipe needs one 2D or 3D image per case: "
            f"select the volume to analyse and save it on its own"
        )
    extract = [*size[:3]] + [0] * (len(size) - 3)
    squeezed = sitk.Extract(image, extract, [0] * len(size), sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX)
    return squeezed, [
        f"{image.GetDimension()}D file with trailing dimensions of size 1 read as a 3D image "
        f"of size {' x '.join(map(str, squeezed.GetSize()))}"
    ]


def _to_scalar_image(image: sitk.Image, path: Path) -> tuple[sitk.Image, list[str]]:
    notes: list[str] = []
    if image.GetDimension() > 3:
        image, more = _squeeze_extra_dimensions(image, path)
        notes += more
    components = image.GetNumberOfComponentsPerPixel()
    if components == 1:
        if image.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
            raise CaseError(f"{path.name} has complex-valued voxels; radpipe needs real intensities")
        return image, notes
    channels = _colour_channels(image, path)
    if len(channels) == 4:
        notes.append("alpha channel dropped")
    colour = channels[:3]
    arrays = [sitk.GetArrayViewFromImage(c) for c in colour]
    if all(np.array_equal(arrays[0], a) for a in arrays[1:]):
        grey = colour[0]
        notes.append("RGB image with equal R, G and B channels: the first channel used as greyscale")
    else:
        luminance = sum(w * a.astype(np.float32) for w, a in zip(_LUMINANCE, arrays, strict=True))
        grey = sitk.GetImageFromArray(luminance.astype(np.float32))
        grey.CopyInformation(colour[0])
        notes.append("RGB image converted to greyscale by luminance (0.299R+0.587G+0.114B), float32")
    return grey, notes


def _colour_channels(image: sitk.Image, path: Path) -> list[sitk.Image]:
    """Split an RGB/RGBA image into channels; reject other multi-component images (vector fields, DTI)."""
    components = image.GetNumberOfComponentsPerPixel()
    channels = [sitk.VectorIndexSelectionCast(image, i) for i in range(components)]
    if components not in (3, 4) or channels[0].GetPixelID() not in _COLOUR_COMPONENT_TYPES:
        raise CaseError(
            f"{path.name} has {components} values per voxel ({image.GetPixelIDTypeAsString()}); radpipe reads "
            f"scalar images and RGB/RGBA colour images only: save one channel or volume as a scalar image"
        )
    return channels


def _colour_mask_to_label(mask: sitk.Image, path: Path) -> tuple[sitk.Image, list[str]]:
    channels = _colour_channels(mask, path)
    arrays = [sitk.GetArrayViewFromImage(c) for c in channels]
    colour = arrays[:3]
    kind = "RGBA" if len(arrays) == 4 else "RGB"
    if len(arrays) == 4 and not any(a.any() for a in colour) and arrays[3].min() != arrays[3].max():
        label, note = channels[3], f"{kind} mask with empty colour channels: the alpha channel used as the mask"
    elif all(np.array_equal(colour[0], a) for a in colour[1:]):
        label, note = channels[0], f"{kind} mask with equal colour channels: the first channel used"
    else:
        any_nonzero = np.logical_or.reduce([a != 0 for a in colour]).astype(np.uint8)
        label = sitk.GetImageFromArray(any_nonzero)
        label.CopyInformation(channels[0])
        note = f"{kind} mask with differing colour channels: a pixel is in the mask when any channel is non-zero"
    return label, [note]


def _reject_non_finite(image: sitk.Image, path: Path, *, what: str) -> None:
    if image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return
    array = sitk.GetArrayViewFromImage(image)
    finite = np.isfinite(array)
    if finite.all():
        return
    n_nan = int(np.isnan(array).sum())
    n_inf = int(array.size - finite.sum() - n_nan)
    raise CaseError(_non_finite_reason(path, what, n_nan, n_inf, array.size))


def _non_finite_reason(path: Path, what: str, n_nan: int, n_inf: int, n_voxels: int) -> str:
    return (
        f"{path.name}: the {what} has {n_nan} NaN and {n_inf} infinite voxels out of {n_voxels}; "
        f"fix the export (NaN usually marks voxels outside the scanned field)"
    )


def _apply_raster_spacing(image: sitk.Image, spacing_2d: tuple[float, float] | None) -> list[str]:
    spacing = image.GetSpacing()
    has_spacing = not np.allclose(spacing[:2], 1.0, rtol=0, atol=1e-6)
    if spacing_2d is None:
        if not has_spacing:
            image.SetMetaData(RASTER_WITHOUT_SPACING, "1")
        if has_spacing:
            return [f"2D file spacing {_fmt(spacing[:2])} mm taken from the file"]
        return ["2D file has no spacing; using 1 x 1 (shape features are in pixels); set the spacing in the recipe"]
    if len(spacing_2d) != 2 or min(spacing_2d) <= 0:
        raise CaseError(f"the recipe's 2D spacing {spacing_2d} must be two positive numbers (x, y) in mm")
    image.SetSpacing((float(spacing_2d[0]), float(spacing_2d[1]), *spacing[2:]))
    note = f"2D file has no spacing; using {_fmt(spacing_2d, ' x ')} mm from the recipe"
    if has_spacing:
        note = f"2D file spacing {_fmt(spacing[:2])} replaced by {_fmt(spacing_2d, ' x ')} mm from the recipe"
    return [note]


def _to_label_type(mask: sitk.Image, path: Path) -> tuple[sitk.Image, list[str]]:
    if mask.GetPixelID() in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
        raise CaseError(f"{path.name}: the mask has complex-valued voxels")
    array = sitk.GetArrayViewFromImage(mask)
    is_float = np.issubdtype(array.dtype, np.floating)
    notes: list[str] = []
    if is_float:
        values = np.unique(array)
        if not np.array_equal(values, np.round(values)):
            shown = ", ".join(f"{v:g}" for v in values[:10]) + (", ..." if len(values) > 10 else "")
            raise CaseError(
                f"{path.name}: the mask is not integer-valued (distinct values {shown}); a mask must hold "
                f"whole-number labels. If this is a probability map, threshold it before use"
            )
    low = array.min() if array.size else 0
    high = array.max() if array.size else 0
    if low < 0:
        raise CaseError(f"{path.name}: the mask has negative labels (minimum {low:g}); labels must be >= 0")
    for dtype in (np.uint8, np.uint16, np.uint32):
        if high <= np.iinfo(dtype).max:
            break
    else:
        raise CaseError(f"{path.name}: the mask's largest label {high:g} does not fit a 32-bit label image")
    unsigned = (sitk.sitkUInt8, sitk.sitkUInt16, sitk.sitkUInt32, sitk.sitkUInt64)
    if mask.GetPixelID() in unsigned and not is_float:
        return mask, notes
    target = sitk.GetImageFromArray(np.asarray(array).astype(dtype))
    target.CopyInformation(mask)
    if is_float:
        shown = ", ".join(f"{v:g}" for v in np.unique(array)[:10])
        notes.append(
            f"float mask with whole-number values {{{shown}}} cast to {target.GetPixelIDTypeAsString()}"
        )
    return target, notes


def _fmt(values, sep: str = " x ") -> str:
    return sep.join(f"{v:g}" for v in values)
