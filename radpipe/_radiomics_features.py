"""``RadiomicsFeatures``: pyradiomics extraction as a scikit-learn transformer, for Pipelines in notebooks.

Each case goes through the same ``extract_case`` as ``radpipe extract``, so the values are identical;
only the packaging differs (a DataFrame in, a DataFrame out, no files written).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, check_memory

from radpipe.errors import ConfigError
from radpipe.extract.features import CaseInput, CaseResult, extract_case
from radpipe.extract.settings import ExtractSettings

PATH_COLUMNS = ("image", "mask")
LABEL_COLUMN = "label_value"


def _extract_one(item: CaseInput, settings_json: str, versions: str) -> CaseResult:
    """One case; a plain module-level function so joblib can pickle it and ``Memory`` can key on its arguments.

    ``versions`` is unused in the body: it is part of the cache key, so upgrading pyradiomics or
    SimpleITK recomputes instead of reusing stale values.
    """
    del versions
    return extract_case(item, ExtractSettings.model_validate_json(settings_json))


def _software_versions() -> str:
    import radiomics
    import SimpleITK as sitk

    return f"pyradiomics {radiomics.__version__}; SimpleITK {sitk.Version_VersionString()}"


def cohort_paths(cohort) -> pd.DataFrame:
    """The input table of :class:`RadiomicsFeatures` for a :class:`~radpipe.cohort.Cohort`.

    Columns ``image`` and ``mask`` (absolute paths as strings) and, when the dataset names a mask
    label, ``label_value``; indexed by ``case_id``, in the cohort's order. A case of a DICOM tree keeps its
    image as the tuple of the files of its series (a series may span folders, and a folder may hold other
    series), and its mask is the RTSTRUCT or SEG file; :class:`RadiomicsFeatures` reads both as
    ``radpipe extract`` does.

    Examples
    --------
    >>> from radpipe import load_cohort, cohort_paths
    >>> cohort_paths(load_cohort("pyradiomics_samples")).columns.tolist()  # doctest: +SKIP
    ['image', 'mask', 'label_value']
    """
    frame = pd.DataFrame(
        {"image": [_image_input(case.image) for case in cohort.cases],
         "mask": [str(case.mask) for case in cohort.cases]},
        index=pd.Index([case.case_id for case in cohort.cases], name="case_id"),
    )
    if cohort.spec.mask_label is not None:
        frame[LABEL_COLUMN] = int(cohort.spec.mask_label)
    return frame


def _image_input(image) -> str | tuple[str, ...]:
    """A case's image as extraction takes it: a path as a string, or the files of a DICOM series as a tuple."""
    return tuple(str(p) for p in image) if isinstance(image, tuple | list) else str(image)


class RadiomicsFeatures(TransformerMixin, BaseEstimator):
    """Extract pyradiomics features from image/mask paths, as a scikit-learn transformer.

    The input is a table of file paths, one row per case; the output is the feature table, one row
    per case, indexed like the input and named as pyradiomics names the features
    (``original_glcm_Contrast``). The values are exactly those ``radpipe extract`` writes to
    ``features.csv`` with the same settings, because both call the same per-case extraction.

    Put it first in a Pipeline to cross-validate from images:
    ``cross_validate(make_pipeline(RadiomicsFeatures(...), StandardScaler(), SVC()), paths, y)``.
    Extraction has no parameters learnt from data, so doing it inside the folds leaks nothing; it
    is just slow, hence ``memory``.

    Parameters
    ----------
    params : dict, str, Path, ExtractSettings or None, default=None
        The extraction settings, as the CLI takes them. A dict in pyradiomics' params-file format
        (``{"setting": {"binWidth": 25}, "imageType": {"Original": {}}, "featureClass": {...}}``),
        which may also hold the keys of a recipe's ``extract:`` section (``min_voxels``,
        ``preprocessing``, ``roi_mode``, ...); or the path of a pyradiomics params file (YAML or
        JSON); or an ``ExtractSettings``. ``None`` means pyradiomics' defaults (original image,
        every feature class). Validated in ``fit``: an unknown key or feature is a ``ValueError``.
    n_jobs : int, default=1
        Cases extracted in parallel (joblib processes); ``-1`` means every core.
    memory : str, Path, joblib.Memory or None, default=None
        Cache of per-case results, keyed by the image and mask *file contents*, the settings and the
        pyradiomics and SimpleITK versions. With a cache, refitting inside a grid search or a
        second ``cross_validate`` does not extract a case twice. ``None`` caches nothing.

    Attributes
    ----------
    feature_names_out_ : ndarray of str
        The output column names. ``fit`` learns them by extracting the *first* row of ``X`` (the
        only work ``fit`` does besides validation), so :meth:`get_feature_names_out` works after
        ``fit``.
    settings_ : ExtractSettings
        The validated settings.
    n_features_in_ : int
        Number of input columns (paths and optional ``label_value``).
    feature_names_in_ : ndarray of str
        The input column names.

    Notes
    -----
    Input columns: ``image`` and ``mask`` (paths; ``Image``/``Mask`` as in a pyradiomics batch CSV
    are accepted too; an ``image`` may be a tuple of the files of one DICOM series, a ``mask`` an RTSTRUCT
    or SEG file, as :func:`cohort_paths` gives for a DICOM tree) and optionally ``label_value``, the mask label of the ROI for that case
    (default: the mask's only non-zero label). Other columns are ignored. The index holds the case
    ids used in messages.

    A case that cannot be extracted (unreadable file, empty mask, geometry mismatch, ...) raises a
    ``ValueError`` naming every such case and the reason: a transformer must return one row per
    input row, so it cannot drop cases. Remove them from ``X`` (and ``y``), or run
    ``radpipe extract``, which records them in its QC ledger and carries on.

    With ``roi_mode`` ``per_label`` or ``per_component`` a case can have several lesions; they are
    combined into one row as ``aggregate`` says (``largest`` by default), as ``radpipe train`` does.

    The output is always a pandas DataFrame, so ``set_output(transform="pandas")`` changes nothing.

    Examples
    --------
    >>> import pandas as pd
    >>> from radpipe import RadiomicsFeatures
    >>> paths = pd.DataFrame({"image": ["brain1_image.nrrd"], "mask": ["brain1_label.nrrd"]},
    ...                      index=["brain1"])
    >>> rf = RadiomicsFeatures({"setting": {"binWidth": 25}, "featureClass": {"firstorder": ["Mean"]}})
    >>> rf
    RadiomicsFeatures(params={'featureClass': {'firstorder': ['Mean']},
                              'setting': {'binWidth': 25}})
    >>> rf.fit_transform(paths)  # doctest: +SKIP
            original_firstorder_Mean
    brain1                825.235436
    >>> rf.get_feature_names_out()  # doctest: +SKIP
    array(['original_firstorder_Mean'], dtype=object)
    """

    def __init__(self, params: Mapping[str, Any] | str | Path | ExtractSettings | None = None,
                 n_jobs: int | None = 1, memory=None):
        self.params = params
        self.n_jobs = n_jobs
        self.memory = memory

    # -- scikit-learn API -------------------------------------------------------------------

    def fit(self, X: pd.DataFrame, y=None) -> RadiomicsFeatures:
        """Validate the settings and ``X``; learn the output names from the first case.

        Parameters
        ----------
        X : DataFrame
            ``image`` and ``mask`` path columns (optionally ``label_value``), one row per case.
        y : ignored

        Returns
        -------
        self : RadiomicsFeatures
        """
        items = self._start(X)
        self._learn_names(self._extract(items[:1])[0:1])
        return self

    def fit_transform(self, X: pd.DataFrame, y=None, **fit_params) -> pd.DataFrame:
        """``fit`` then ``transform``, extracting each case once (the first case is not done twice)."""
        items = self._start(X)
        results = self._extract(items)
        self._learn_names(results[:1])
        return self._table(results, X.index)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Extract every case of ``X``.

        Parameters
        ----------
        X : DataFrame
            ``image`` and ``mask`` path columns (optionally ``label_value``), one row per case.

        Returns
        -------
        features : DataFrame of shape (n_cases, n_features)
            Indexed like ``X``, columns ``feature_names_out_``, float64.

        Raises
        ------
        ValueError
            If any case cannot be extracted; the message names each case and why.
        """
        check_is_fitted(self, "feature_names_out_")
        items = self._items(X)
        return self._table(self._extract(items), X.index)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        """The pyradiomics names of the output columns (known after ``fit``)."""
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True  # X holds file paths, not numbers
        tags.requires_fit = True
        tags.transformer_tags.preserves_dtype = []
        return tags

    # -- internals ---------------------------------------------------------------------------

    def _start(self, X: pd.DataFrame) -> list[CaseInput]:
        self.settings_ = self._settings()
        items = self._items(X)
        self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        self.n_features_in_ = X.shape[1]
        return items

    def _settings(self) -> ExtractSettings:
        params = self.params
        try:
            if params is None:
                settings = ExtractSettings()
            elif isinstance(params, ExtractSettings):
                settings = params.model_copy(deep=True)
            elif isinstance(params, (str, Path)):
                settings = ExtractSettings(params_file=Path(params).expanduser().resolve())
            elif isinstance(params, Mapping):
                settings = ExtractSettings.model_validate(dict(params))
            else:
                raise ValueError(
                    f"params must be a dict of pyradiomics/extract settings, a params file path, an ExtractSettings "
                    f"or None; got {type(params).__name__}")
            if settings.params_file is not None and not settings.params_file.is_absolute():
                settings.params_file = settings.params_file.resolve()
            settings.pyradiomics_params()  # pyradiomics' own schema check, now rather than mid-transform
        except ValidationError as exc:
            problems = "; ".join(
                (f"unknown key '{'.'.join(map(str, e['loc']))}' (is it misspelt?)" if e["type"] == "extra_forbidden"
                 else f"key '{'.'.join(map(str, e['loc']))}': {e['msg']}")
                for e in exc.errors())
            raise ValueError(f"RadiomicsFeatures: invalid params: {problems}") from None
        except ConfigError as exc:
            raise ValueError(f"RadiomicsFeatures: invalid params: {exc}") from None
        return settings

    def _items(self, X) -> list[CaseInput]:
        if not isinstance(X, pd.DataFrame):
            raise ValueError(
                "RadiomicsFeatures expects a DataFrame with 'image' and 'mask' path columns, one row per case "
                f"(got {type(X).__name__}); radpipe.cohort_paths(cohort) builds one from a cohort")
        columns = {str(c).lower(): c for c in X.columns}
        missing = [name for name in PATH_COLUMNS if name not in columns]
        if missing:
            raise ValueError(
                f"RadiomicsFeatures: X has no {' or '.join(repr(m) for m in missing)} column "
                f"(columns: {list(X.columns)}); it needs the image and mask path of each case")
        if len(X) == 0:
            raise ValueError("RadiomicsFeatures: X has no rows (0 cases)")
        digest = self.memory is not None  # content hashes only matter as cache keys
        if digest:
            from radpipe.extract.runner import DigestMemo, _input_digest

            memo = DigestMemo()
        label_column = columns.get(LABEL_COLUMN)
        items = []
        for case_id, row in X.iterrows():
            image, mask = _image_input(row[columns["image"]]), str(row[columns["mask"]])
            label = row[label_column] if label_column is not None else None
            items.append(CaseInput(
                case_id=str(case_id), image=image, mask=mask,
                label=None if label is None or pd.isna(label) else int(label),
                image_sha256=_input_digest(image, memo) if digest else "",
                mask_sha256=memo.digest(Path(mask)) if digest else "",
            ))
        return items

    def _extract(self, items: list[CaseInput]) -> list[CaseResult]:
        memory = str(self.memory) if isinstance(self.memory, Path) else self.memory
        function = check_memory(memory).cache(_extract_one)
        settings_json = self.settings_.model_dump_json()
        versions = _software_versions()
        if self.n_jobs in (None, 1) or len(items) < 2:
            return [function(item, settings_json, versions) for item in items]
        from joblib import Parallel, delayed

        return Parallel(n_jobs=self.n_jobs)(delayed(function)(item, settings_json, versions) for item in items)

    def _learn_names(self, results: list[CaseResult]) -> None:
        _raise_on_failures(results)
        row = results[0].features[0]
        self.feature_names_out_ = np.asarray([c for c in row if c not in ("case_id", "roi")], dtype=object)

    def _table(self, results: list[CaseResult], index: pd.Index) -> pd.DataFrame:
        _raise_on_failures(results)
        rows = []
        for result in results:
            if len(result.features) == 1:
                rows.append(result.features[0])
            else:
                rows.append(self._one_row(result))
        table = pd.DataFrame(rows, columns=list(self.feature_names_out_), dtype="float64")
        table.index = index
        return table

    def _one_row(self, result: CaseResult) -> dict:
        """Several lesions in one case → one row, the way ``radpipe train`` aggregates them."""
        from radpipe.extract.tables import aggregate_rois

        method = self.settings_.aggregate
        if method == "none":
            raise ValueError(
                f"RadiomicsFeatures: case {result.case_id} has {len(result.features)} ROIs but a transformer returns "
                "one row per case; set params 'aggregate' to largest, volume_weighted_mean or max")
        frame = pd.DataFrame(result.features).set_index("case_id")
        return aggregate_rois(frame, method).iloc[0].to_dict()


def _raise_on_failures(results: list[CaseResult]) -> None:
    failed = [result for result in results if result.status == "failed" or not result.features]
    if not failed:
        return
    reasons = []
    for result in failed:
        why = "; ".join(row.reason for row in result.qc if row.status == "failed") or "no ROI was extracted"
        reasons.append(f"{result.case_id}: {why}")
    shown = reasons[:10] + ([f"... and {len(reasons) - 10} more"] if len(reasons) > 10 else [])
    raise ValueError(
        f"RadiomicsFeatures could not extract {len(failed)} of {len(results)} case(s): "
        + " | ".join(shown)
        + ". A transformer cannot drop rows: remove these cases from X (and y), or run `radpipe extract`, "
        "which lists them in qc.csv and goes on.")
