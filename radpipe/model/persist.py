"""Save and load fitted pipelines with an integrity check, so an untrusted pickle is never opened.

A model folder holds ``model.joblib`` (the fitted scikit-learn Pipeline), ``model.joblib.sha256``
(written at save time) and ``model_card.json`` (what the model is, what it expects, how it scored).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib

from radpipe._io import atomic_write_bytes, atomic_write_text, software_versions
from radpipe._io import sha256_bytes_of as sha256_file
from radpipe.errors import RadpipeError
from radpipe.model.folder import CARD_FILE, CARD_MD_FILE, MODEL_FILE, NEIGHBOURS_FILE


class ModelIntegrityError(RadpipeError, RuntimeError):
    """The model file is missing its sha256 sidecar or does not match it."""


@dataclass
class LoadedModel:
    """A fitted pipeline and its model card.

    The card always has ``model_name``, ``classes`` (negative class first for a binary
    outcome, sorted for a multi-class one), ``positive_class``, ``threshold`` (chosen on training
    data only), ``feature_names`` (the columns the pipeline expects, in order) and ``versions``.
    A multi-class model (more than two ``classes``) has no positive class and no threshold (None):
    its predicted class is the most probable one.
    """

    pipeline: Any
    card: dict
    path: Path
    neighbours: Any = None  # radpipe.model.neighbours.Neighbours when the folder has neighbours.joblib

    @property
    def feature_names(self) -> list[str]:
        return list(self.card["feature_names"])

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.card.get("classes", [])]

    @property
    def is_multiclass(self) -> bool:
        return len(self.card.get("classes", [])) > 2

    @property
    def is_survival(self) -> bool:
        """A time-to-event model: ``pipeline.predict`` is a risk score, the card has horizons and a risk cut-off."""
        return self.card.get("outcome_type") == "survival"

    @property
    def batch_column(self) -> str | None:
        """The column with each case's batch (scanner, centre) a ComBat-harmonised model reads; None otherwise.

        It is one of ``feature_names`` (labels, possibly text), read by the harmonisation step and dropped there.
        """
        cv = self.card.get("cv") or {}
        return str(cv["batch_column"]) if cv.get("harmonise") and cv.get("batch_column") else None

    @property
    def threshold(self) -> float:
        """The decision threshold of a binary model; NaN for a multi-class model."""
        value = self.card.get("threshold", 0.5)
        return float("nan") if value is None else float(value)


def save_model(pipeline: Any, card: dict, model_dir: str | Path) -> Path:
    """Write the pipeline, its sha256 sidecar and the model card into ``model_dir``."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    required = {"model_name", "classes", "positive_class", "feature_names"}
    missing = required - set(card)
    if missing:
        raise ValueError(f"model card lacks {sorted(missing)}")
    card = {"threshold": 0.5, **card, "versions": software_versions()}
    model_path = model_dir / MODEL_FILE
    tmp = model_path.with_suffix(".joblib.tmp")
    joblib.dump(pipeline, tmp)
    tmp.replace(model_path)
    atomic_write_text(model_path.with_name(MODEL_FILE + ".sha256"), f"{sha256_file(model_path)}  {MODEL_FILE}\n")
    atomic_write_bytes(model_dir / CARD_FILE, json.dumps(card, indent=2, default=str).encode())
    return model_path


def load_model(model_dir: str | Path, trust: bool = False) -> LoadedModel:
    """Load a model folder (or its ``model.joblib``), refusing files that fail the sha256 check.

    ``trust=True`` skips the check for a file whose origin the user vouches for.
    """
    path = Path(model_dir)
    model_path = path if path.is_file() else path / MODEL_FILE
    if not model_path.exists():
        raise FileNotFoundError(f"no model at {model_path}: expected a folder written by `radpipe train`")
    card_path = model_path.with_name(CARD_FILE)
    if not trust:
        sidecar = model_path.with_name(model_path.name + ".sha256")
        if not sidecar.exists():
            raise ModelIntegrityError(
                f"{model_path} has no {sidecar.name}: radpipe only opens models it saved itself "
                "(unpickling runs code). Pass --trust if you know where this file comes from."
            )
        expected = sidecar.read_text().split()[0]
        actual = sha256_file(model_path)
        if actual != expected:
            raise ModelIntegrityError(
                f"{model_path} does not match its sha256 sidecar (expected {expected[:12]}…, "
                f"found {actual[:12]}…): the file was changed after it was saved. Refusing to unpickle it; "
                "pass --trust to override."
            )
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    _warn_on_version_mismatch(card.get("versions", {}))
    return LoadedModel(pipeline=joblib.load(model_path), card=card, path=model_path.parent,
                       neighbours=load_neighbours(model_path.parent, trust=trust))


def save_neighbours(neighbours: Any, model_dir: str | Path) -> Path:
    """Write ``neighbours.joblib`` (similar patients and the OOD scorer) and its sha256 sidecar."""
    path = Path(model_dir) / NEIGHBOURS_FILE
    tmp = path.with_suffix(".joblib.tmp")
    joblib.dump(neighbours, tmp)
    tmp.replace(path)
    atomic_write_text(path.with_name(NEIGHBOURS_FILE + ".sha256"), f"{sha256_file(path)}  {NEIGHBOURS_FILE}\n")
    return path


def load_neighbours(model_dir: str | Path, trust: bool = False) -> Any:
    """The folder's ``neighbours.joblib`` after the same sha256 check as the model; None when it has none."""
    path = Path(model_dir) / NEIGHBOURS_FILE
    if not path.exists():
        return None
    if not trust:
        sidecar = path.with_name(NEIGHBOURS_FILE + ".sha256")
        expected = sidecar.read_text().split()[0] if sidecar.exists() else None
        if expected != sha256_file(path):
            raise ModelIntegrityError(
                f"{path} is missing its sha256 sidecar or does not match it: refusing to unpickle it; "
                "pass --trust if you know where this file comes from.")
    return joblib.load(path)


def _warn_on_version_mismatch(saved: dict) -> None:
    current = software_versions()
    for package in ("scikit-learn", "xgboost"):
        if saved.get(package) and current.get(package) and saved[package] != current[package]:
            warnings.warn(
                f"model was saved with {package} {saved[package]}, this is {current[package]}: "
                "predictions may differ",
                stacklevel=3,
            )


MODEL_CARD_MD = CARD_MD_FILE

_CARD_SECTIONS = (
    ("Intended use", "intended_use"),
    ("Limitations", "limitations"),
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "NA" if value != value else f"{value:.3f}"
    return str(value)


def _survival_card_lines(card: dict) -> list[str]:
    outcome = card.get("outcome") or {}
    unit = outcome.get("time_unit", "")
    horizons = ", ".join(f"{h:g} {unit}" for h in card.get("horizons", []))
    metrics = card.get("metrics") or {}
    lines = [
        "## Outcome and data",
        f"- Outcome: time to event (survival); time column `{outcome.get('time')}` ({unit}), event column "
        f"`{outcome.get('event')}` (1 = event, 0 = censored)",
        f"- Training cases: {card.get('n_cases', 'NA')}; events: {card.get('n_events', 'NA')}; censored: "
        f"{100 * card.get('censoring_fraction', float('nan')):.1f}%",
        f"- Horizons: {horizons}",
        f"- Risk cut-off (frozen; high risk above it): {_fmt(card.get('risk_cutoff', float('nan')))} — "
        f"{card.get('risk_cutoff_rule', '')}",
        f"- Input features: {len(card.get('feature_names', []))}; features the estimator sees: "
        f"{len(card.get('selected_features', []))}",
        "", "## Pipeline", "```", str(card.get("pipeline_steps", "")), "```",
        f"Best hyper-parameters: `{json.dumps(card.get('best_params', {}), default=str)}`", "",
        "## Validation",
    ]
    lines += [f"- {key}: {value}" for key, value in card.get("cv", {}).items()
              if value is not None and key != "robust_features"]  # it has a section of its own
    if metrics:
        lines += ["", "## Performance (out-of-fold, nested CV; 95% bootstrap CI)", "",
                  "| metric | value | 95% CI |", "| --- | --- | --- |"]
        for name in ("c_harrell", "c_uno", "hazard_ratio"):
            if name in metrics:
                lines.append(f"| {name} | {_fmt(metrics[name])} | "
                             f"{_fmt(metrics.get(name + '_ci_low'))}–{_fmt(metrics.get(name + '_ci_high'))} |")
        for name in [k for k in metrics if k.startswith("td_auc_")] + ["ibs", "ibs_null", "logrank_p"]:
            if name in metrics:
                lines.append(f"| {name} | {_fmt(metrics[name])} | |")
    for cohort, row in (card.get("external_metrics") or {}).items():
        lines += ["", f"External cohort **{cohort}**: n={row.get('n')}, events {row.get('n_events')}, Harrell's C "
                  f"{_fmt(row.get('c_harrell'))} ({_fmt(row.get('c_harrell_ci_low'))}–"
                  f"{_fmt(row.get('c_harrell_ci_high'))}), log-rank p {_fmt(row.get('logrank_p'))} at the frozen "
                  "cut-off"]
    return lines


def render_model_card(card: dict) -> str:
    """The model card as Markdown: what the model is, the data it saw, how it was validated and how it scored."""
    lines = [f"# Model card: {card.get('model_name', 'model')}", ""]
    if card.get("is_best") is not None:
        lines += [f"Best model of the comparison: {'yes' if card['is_best'] else 'no'}", ""]
    survival = card.get("outcome_type") == "survival"
    lines += _survival_card_lines(card) if survival else _classifier_card_lines(card)
    robust = (card.get("cv") or {}).get("robust_features")
    if robust:  # model.robust_features: recorded by radpipe.model.inputs.robust_only
        threshold = "the table's threshold" if robust.get("threshold") is None else robust["threshold"]
        lines += ["", "## Feature robustness",
                  f"{robust['dropped']} of the {robust['assessed']} features assessed in `{robust['file']}` were "
                  f"dropped before modelling as not robust ({robust['icc']} lower 95% bound below {threshold}); "
                  f"{robust['kept']} features went on to the pipeline."]
    if card.get("search"):
        lines += ["", "## Joint search (chosen inside the inner CV of each outer fold)", *_search_lines(card["search"])]
    for title, key in _CARD_SECTIONS:
        if card.get(key):
            lines += ["", f"## {title}", str(card[key])]
    lines += ["", "## Selected features", ""] + [f"- `{name}`" for name in card.get("selected_features", [])]
    if card.get("sample_size"):
        lines += ["", "## Sample size (Riley et al., BMJ 2020;368:m441)", *_sample_size_lines(card["sample_size"])]
    versions = card.get("versions") or software_versions()
    lines += ["", "## Software", ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    return "\n".join(lines)


def _search_lines(record: dict) -> list[str]:
    """The joint search's choices per outer fold and its win counts (see radpipe.model.search.search_summary)."""
    lines = ["- Family wins: " + ", ".join(f"{k} {v}" for k, v in record.get("family_wins", {}).items()),
             "- Selection wins: " + ", ".join(f"{k} {v}" for k, v in record.get("selection_wins", {}).items())]
    if record.get("family_outer_auc"):
        lines.append("- Outer AUC of each family's best inner configuration (" + record["family_outer_auc_note"]
                     + "): " + ", ".join(f"{k} {_fmt(v)}" for k, v in record["family_outer_auc"].items()))
    lines.append("")
    for chosen in record.get("chosen_per_outer_fold", []):
        rest = {k: v for k, v in chosen.items() if k not in ("repeat", "fold")}
        lines.append(f"- repeat {chosen['repeat']} fold {chosen['fold']}: `{json.dumps(rest, default=str)}`")
    return lines


def _sample_size_lines(record: dict) -> list[str]:
    """The card's sample-size section: each criterion's minimum, the cohort's numbers and the warning."""
    lines = [f"- Candidate predictor parameters (before selection): {record['candidate_predictors']}; prevalence "
             f"{_fmt(record['prevalence'])}; anticipated Cox-Snell R2 {_fmt(record['r2_cs'])} "
             f"({record.get('r2_cs_source', '')})"]
    lines += [f"- {c['name']}: n >= {c['n']}" for c in record.get("criteria", [])]
    lines.append(f"- Required: {record['n_required']} cases ({record['events_required']} events); available: "
                 f"{record['n_available']} cases ({record['events_available']} events), "
                 f"{_fmt(record['events_per_predictor'])} events per candidate predictor")
    if record.get("warning"):
        lines += ["", f"**Warning:** {record['warning']}"]
    return lines


def _classifier_card_lines(card: dict) -> list[str]:
    """The outcome, validation and performance sections of a binary or multi-class model's card."""
    lines: list[str] = []
    classes = card.get("classes", [])
    multiclass = len(classes) > 2
    counts = card.get("class_counts", {})
    if multiclass:
        total = sum(counts.values()) or 1
        lines += [
            "## Outcome and data",
            f"- Classes: {', '.join(map(str, classes))} (**multi-class**: one-vs-rest ROC AUC per class, the "
            "headline AUC is their macro average; predicted class = the most probable one, no threshold)",
            f"- Training cases: {card.get('n_cases', 'NA')}; class counts: "
            + ", ".join(f"{k}: {v} ({100 * v / total:.0f}%)" for k, v in counts.items()),
        ]
    else:
        lines += [
            "## Outcome and data",
            f"- Classes: {', '.join(map(str, classes))} (positive: **{card.get('positive_class')}**)",
            *([f"- Model kind: {card['kind']} (covariates: "
               + ", ".join(f"{k} ({v})" for k, v in (card.get("clinical_types") or {}).items()) + ")"]
              if card.get("kind") else []),
            f"- Training cases: {card.get('n_cases', 'NA')}; class counts: "
            + ", ".join(f"{k}: {v}" for k, v in counts.items()),
        ]
    lines += [
        f"- Input features: {len(card.get('feature_names', []))}; features the estimator sees: "
        f"{len(card.get('selected_features', []))}",
        "",
        "## Pipeline",
        "```",
        str(card.get("pipeline_steps", "")),
        "```",
        f"Best hyper-parameters: `{json.dumps(card.get('best_params', {}), default=str)}`",
        "",
        f"Decision rule: {card.get('threshold_rule', '')}" if multiclass else
        f"Decision threshold: {_fmt(card.get('threshold', 0.5))} — {card.get('threshold_rule', '')}",
        "",
        "## Validation",
    ]
    lines += [f"- {key}: {value}" for key, value in card.get("cv", {}).items()
              if value is not None and key != "robust_features"]  # it has a section of its own
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["", "## Performance (out-of-fold, nested CV; 95% stratified bootstrap CI)", "",
                  "| metric | value | 95% CI |", "| --- | --- | --- |"]
        names = ["auc", "balanced_accuracy", "sensitivity", "specificity", "ppv", "npv", "f1", "brier"]
        if multiclass:
            names += ["accuracy", *(f"auc_ovr_{c}" for c in classes)]
        for name in names:
            if name in metrics:
                lines.append(f"| {name} | {_fmt(metrics[name])} | "
                             f"{_fmt(metrics.get(name + '_ci_low'))}–{_fmt(metrics.get(name + '_ci_high'))} |")
        for name in () if multiclass else ("calibration_slope", "calibration_intercept", "delong_p_vs_best"):
            if name in metrics:
                lines.append(f"| {name} | {_fmt(metrics[name])} | |")
        if multiclass:
            lines += ["", str(card.get("multiclass", ""))]
    macro = "macro " if multiclass else ""
    for cohort, row in (card.get("external_metrics") or {}).items():
        lines += ["", f"External cohort **{cohort}**: n={row.get('n')}, {macro}AUC {_fmt(row.get('auc'))} "
                  f"({_fmt(row.get('auc_ci_low'))}–{_fmt(row.get('auc_ci_high'))}), {macro}sensitivity "
                  f"{_fmt(row.get('sensitivity'))}, {macro}specificity {_fmt(row.get('specificity'))}"]
    return lines


def write_model_card_md(card: dict, model_dir: str | Path) -> Path:
    """Write ``model_card.md`` beside ``model_card.json``."""
    path = Path(model_dir) / MODEL_CARD_MD
    atomic_write_text(path, render_model_card(card))
    return path
