"""IBSI-style feature names (``extract.names: ibsi``, ``radpipe extract --names ibsi``).

A pyradiomics column such as ``original_glcm_Contrast`` becomes ``cm_contrast_d1_3d_avg_fbn_n32``: the IBSI
family prefix and feature tag (``morph_``, ``stat_``, ``ih_``, ``cm_``, ``rlm_``, ``szm_``, ``ngl_``, ``ngt_``),
then what IBSI asks a name to carry: the neighbourhood distance (GLCM, NGLDM, NGTDM) and NGLDM coarseness α, the
dimension and aggregation of texture matrices (pyradiomics averages GLCM and GLRLM features over directions: IBSI
"3D, averaged" or with ``force2D`` "2D, averaged"; GLSZM, NGLDM and NGTDM are single 3D/2D matrices), and the
discretisation (``fbs_w25`` fixed bin size 25, ``fbn_n32`` fixed bin number 32). Filtered images keep
pyradiomics' image type as a suffix (``stat_mean_log-sigma-2-0-mm-3D``).

The feature tags follow the IBSI reference manual's abbreviations as MIRP writes them (Zwanenburg et al.,
arXiv:1612.07003; MIRP, github.com/oncoray/mirp), keyed by the IBSI code of
:mod:`radpipe.extract.ibsi`. A feature gets an IBSI-style name only when its value is IBSI's: features IBSI does
not define, and those whose definition differs (pyradiomics' kurtosis is IBSI's excess kurtosis + 3; its PCA axis
lengths use the population covariance), keep their pyradiomics name behind a ``pyradiomics_`` prefix, and the
codebook's ``ibsi_note`` says why. The codebook keeps both names (``pyradiomics_column``, ``ibsi_column``), so a
table can be translated either way.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from radpipe.extract.ibsi import ibsi_table

#: Prefix of a column that keeps its pyradiomics name because IBSI has no equivalent of its value.
PYRADIOMICS_PREFIX = "pyradiomics_"

#: IBSI code → IBSI-style feature tag (family prefix included).
IBSI_TAGS = {
    # morphology
    "Q3CK": "morph_pca_elongation", "N17B": "morph_pca_flatness", "7J51": "morph_pca_least_axis",
    "TDIC": "morph_pca_maj_axis", "L0JK": "morph_diam", "RNU0": "morph_volume", "P9VJ": "morph_pca_min_axis",
    "QCFX": "morph_sphericity", "C0JK": "morph_area_mesh", "2PR5": "morph_av", "YEKZ": "morph_vol_approx",
    # intensity-based statistics and intensity histogram
    "QG58": "stat_p10", "8DWT": "stat_p90", "N8CA": "stat_energy", "SALO": "stat_iqr", "IPH6": "stat_kurt",
    "84IY": "stat_max", "Q4LE": "stat_mean", "4FUA": "stat_mad", "Y12H": "stat_median", "1GSF": "stat_min",
    "2OJQ": "stat_range", "1128": "stat_rmad", "5ZWQ": "stat_rms", "KE2A": "stat_skew", "ECT3": "stat_var",
    "TLU2": "ih_entropy", "BJ5W": "ih_uniformity",
    # grey level co-occurrence matrix
    "QWB0": "cm_auto_corr", "AE86": "cm_clust_prom", "7NFM": "cm_clust_shade", "DG8W": "cm_clust_tend",
    "ACUI": "cm_contrast", "NI2N": "cm_corr", "TF7R": "cm_diff_avg", "NTRS": "cm_diff_entr", "D3YU": "cm_diff_var",
    "IB1Z": "cm_inv_diff", "WF0Z": "cm_inv_diff_mom", "1QCO": "cm_inv_diff_mom_norm", "NDRX": "cm_inv_diff_norm",
    "R8DG": "cm_info_corr1", "JN9H": "cm_info_corr2", "E8JP": "cm_inv_var", "60VM": "cm_joint_avg",
    "8ZQL": "cm_energy", "TU9B": "cm_joint_entr", "GYBY": "cm_joint_max", "ZGXS": "cm_sum_avg",
    "P6QZ": "cm_sum_entr", "UR99": "cm_joint_var",
    # grey level run length matrix
    "R5YN": "rlm_glnu", "OVBL": "rlm_glnu_norm", "8CE5": "rlm_gl_var", "G3QZ": "rlm_hgre", "W4KF": "rlm_lre",
    "3KUM": "rlm_lrhge", "IVPO": "rlm_lrlge", "V3SW": "rlm_lgre", "HJ9O": "rlm_rl_entr", "W92Y": "rlm_rlnu",
    "IC23": "rlm_rlnu_norm", "9ZK5": "rlm_r_perc", "SXLW": "rlm_rl_var", "22OV": "rlm_sre", "GD3A": "rlm_srhge",
    "HTZT": "rlm_srlge",
    # grey level size zone matrix
    "JNSA": "szm_glnu", "Y1RO": "szm_glnu_norm", "BYLV": "szm_gl_var", "5GN9": "szm_hgze", "48P8": "szm_lze",
    "J17V": "szm_lzhge", "YH51": "szm_lzlge", "XMSY": "szm_lgze", "4JP3": "szm_zsnu", "VB3A": "szm_zsnu_norm",
    "5QRC": "szm_sze", "HW1V": "szm_szhge", "5RAI": "szm_szlge", "GU8N": "szm_zs_entr", "P30P": "szm_z_perc",
    "3NSA": "szm_zs_var",
    # neighbouring grey level dependence matrix (pyradiomics GLDM)
    "FCBV": "ngl_dc_entr", "Z87G": "ngl_dcnu", "OKJI": "ngl_dcnu_norm", "DNX2": "ngl_dc_var", "FP8K": "ngl_glnu",
    "1PFV": "ngl_gl_var", "OAE7": "ngl_hgce", "IMOQ": "ngl_hde", "9QMG": "ngl_hdhge", "NBZI": "ngl_hdlge",
    "TL9H": "ngl_lgce", "SODN": "ngl_lde", "JA6D": "ngl_ldhge", "EQ3F": "ngl_ldlge",
    # neighbourhood grey tone difference matrix
    "NQ30": "ngt_busyness", "QCDE": "ngt_coarseness", "HDEZ": "ngt_complexity", "65HE": "ngt_contrast",
    "1X9X": "ngt_strength",
}

#: pyradiomics feature class of each IBSI-style prefix (for reading a name back without a codebook).
PREFIX_CLASSES = {"morph": "shape", "stat": "firstorder", "ih": "firstorder", "cm": "glcm", "rlm": "glrlm",
                  "szm": "glszm", "ngl": "gldm", "ngt": "ngtdm"}
_PYRADIOMICS_CLASSES = ("shape", "shape2D", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
_DIRECTIONAL = ("glcm", "glrlm")  # pyradiomics averages these over directions
_IMAGE_TYPE = re.compile(r"_((?:wavelet|log|lbp|square|squareroot|logarithm|exponential|gradient)[A-Za-z0-9-]*)$")


def _number(value) -> str:
    """25 → '25', 0.25 → '0.25', 25.0 → '25' (names must not depend on how a YAML file wrote a number)."""
    return f"{float(value):g}"


def discretisation_tag(setting: dict) -> str:
    """``fbn_n32`` for a fixed bin number, ``fbs_w25`` for a fixed bin size (pyradiomics' default width 25)."""
    if setting.get("binCount"):
        return f"fbn_n{int(setting['binCount'])}"
    return f"fbs_w{_number(setting.get('binWidth', 25))}"


def _value_is_ibsi(feature_class: str, feature: str, note: str, setting: dict) -> bool:
    if note.startswith("differs"):
        return False
    if "voxelArrayShift = 0" in note:  # Energy, RootMeanSquared
        return not setting.get("voxelArrayShift", 0)
    return True


def ibsi_name(column: str, setting: dict, *, two_d: bool = False) -> str:
    """The IBSI-style name of one pyradiomics column, given the pyradiomics ``setting`` it was extracted with.

    ``two_d``: the texture matrices were 2D (``force2D``, or 2D images).

    Examples
    --------
    >>> ibsi_name("original_shape_MeshVolume", {})
    'morph_volume'
    >>> ibsi_name("original_shape_VoxelVolume", {})
    'morph_vol_approx'
    >>> ibsi_name("original_glcm_Contrast", {"binWidth": 25})
    'cm_contrast_d1_3d_avg_fbs_w25'
    >>> ibsi_name("log-sigma-2-0-mm-3D_gldm_SmallDependenceEmphasis", {"binCount": 32, "gldm_a": 0})
    'ngl_lde_d1_a0_3d_fbn_n32_log-sigma-2-0-mm-3D'
    >>> ibsi_name("original_firstorder_Kurtosis", {})  # excess kurtosis + 3: not IBSI's value
    'pyradiomics_original_firstorder_Kurtosis'
    """
    parts = str(column).split("_", 2)
    if len(parts) != 3:
        return column  # not a feature (an id or clinical column): left as it is
    image_type, feature_class, feature = parts
    if feature_class not in _PYRADIOMICS_CLASSES:
        return column  # not a pyradiomics feature (another engine's name, a clinical column): left as it is
    table = ibsi_table()
    if (feature_class, feature) not in table.index:
        return PYRADIOMICS_PREFIX + column
    row = table.loc[(feature_class, feature)]
    code = row["ibsi_code"]
    if not code or code not in IBSI_TAGS or not _value_is_ibsi(feature_class, feature, row["ibsi_note"], setting):
        return PYRADIOMICS_PREFIX + column
    pieces = [IBSI_TAGS[code]]
    texture = feature_class in (*_DIRECTIONAL, "glszm", "gldm", "ngtdm")
    if feature_class in ("glcm", "gldm", "ngtdm"):
        pieces.append("d" + "-".join(str(int(d)) for d in (setting.get("distances") or [1])))
    if feature_class == "gldm":
        pieces.append(f"a{_number(setting.get('gldm_a', 0))}")
    if texture:
        pieces.append("2d" if two_d else "3d")
        if feature_class in _DIRECTIONAL:
            pieces.append("avg")
    if texture or pieces[0].startswith("ih_"):
        pieces.append(discretisation_tag(setting))
    if image_type != "original":
        pieces.append(image_type)
    return "_".join(pieces)


def ibsi_names(columns: Iterable[str], params: dict) -> dict[str, str]:
    """{pyradiomics column: IBSI-style name} for a table's columns, extracted with pyradiomics ``params``.

    Texture matrices count as 2D when ``force2D`` is set or the table has 2D shape features (2D images).

    >>> names = ibsi_names(["case_id", "original_shape2D_PixelSurface", "original_glszm_ZoneEntropy"],
    ...                    {"setting": {"binCount": 16}})
    >>> names["original_shape2D_PixelSurface"], names["original_glszm_ZoneEntropy"]
    ('pyradiomics_original_shape2D_PixelSurface', 'szm_zs_entr_2d_fbn_n16')
    """
    columns = list(columns)
    setting = params.get("setting", {}) or {}
    two_d = bool(setting.get("force2D")) or any("_shape2D_" in str(c) for c in columns)
    names = {column: ibsi_name(column, setting, two_d=two_d) for column in columns}
    clashes = len(set(names.values())) != len(names)
    if clashes:  # never two columns under one name: a bug in the tag table, not a user error
        raise RuntimeError("IBSI-style names are not unique for these columns")
    return names


def pyradiomics_parts(name: str) -> tuple[str, str, str] | None:
    """(image type, pyradiomics class, pyradiomics feature) of an IBSI-style name, or None when it is not one.

    Lets code that groups features by family and filter read IBSI-style names without the codebook.

    >>> pyradiomics_parts("cm_contrast_d1_3d_avg_fbs_w25")
    ('original', 'glcm', 'Contrast')
    >>> pyradiomics_parts("stat_mean_wavelet-LLH")
    ('wavelet-LLH', 'firstorder', 'Mean')
    >>> pyradiomics_parts("pyradiomics_original_firstorder_TotalEnergy")
    ('original', 'firstorder', 'TotalEnergy')
    >>> pyradiomics_parts("age") is None
    True
    """
    name = str(name)
    if name.startswith(PYRADIOMICS_PREFIX):
        parts = name[len(PYRADIOMICS_PREFIX):].split("_", 2)
        return tuple(parts) if len(parts) == 3 else None
    prefix = name.split("_", 1)[0]
    if prefix not in PREFIX_CLASSES:
        return None
    match = _IMAGE_TYPE.search(name)
    image_type = match.group(1) if match else "original"
    stem = name[: match.start()] if match else name
    features = _features_by_tag()
    for tag in features:  # longest first: cm_inv_diff_mom_norm before cm_inv_diff
        if stem == tag or stem.startswith(tag + "_"):
            feature_class, feature = features[tag]
            return image_type, feature_class, feature
    return None


@cache
def _features_by_tag() -> dict[str, tuple[str, str]]:
    by_code = {code: key for key, code in ibsi_table()["ibsi_code"].items() if code}
    tags = sorted(((tag, code) for code, tag in IBSI_TAGS.items() if code in by_code), key=lambda t: -len(t[0]))
    return {tag: by_code[code] for tag, code in tags}
