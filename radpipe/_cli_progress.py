"""What the command line shows while a stage works: progress bars with ETAs and the closing summary tables.

:class:`ConsoleHooks` implements :class:`radpipe.pipeline.RunHooks`; ``radpipe extract``, ``train``,
``explain`` and ``run`` share it, so every command reports progress the same way. Rates count computed
cases over wall time, the same in the bar and in the summary; cases from the cache are not "speed".
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.markup import escape

from radpipe.console import console, progress_bar, summary_table, warn
from radpipe.pipeline import RunHooks


def extraction_speed(computed: int, cached: int, seconds: float) -> str:
    """The speed line of an extraction: computed cases per second, or that everything came from the cache.

    Examples
    --------
    >>> extraction_speed(9, 3, 2.0)
    '4.50 cases/s (9 computed in 2.0 s; 3 from the cache)'
    >>> extraction_speed(0, 12, 0.3)
    'all 12 cases from the cache'
    """
    if computed == 0:
        return f"all {cached} cases from the cache" if cached else "no case to extract"
    rate = computed / seconds if seconds > 0 else float("inf")
    cache = f"; {cached} from the cache" if cached else ""
    return f"{rate:.2f} cases/s ({computed} computed in {seconds:.1f} s{cache})"


class ConsoleHooks(RunHooks):
    """Progress bars on stderr and a summary table after each stage.

    An extraction's speed is its computed cases over the wall time of the whole stage (survey, cases,
    tables), measured once here for the bar and the summary, so the two show the same number.
    """

    def __init__(self, *, show_case_ids: bool = True) -> None:
        # with --pseudonymise the terminal (often logged) must not show real case ids either
        self._show_case_ids = show_case_ids
        self._extract_seconds: dict[str, float] = {}

    def note(self, message: str) -> None:
        console.print(f"[cyan]note:[/] {escape(message)}", highlight=False)

    @contextmanager
    def extracting(self, cohort, out_dir: Path) -> Iterator:
        counts = {"computed": 0, "cached": 0}
        started = time.perf_counter()
        # a multimodal cohort extracts each case once per modality
        extractions = len(cohort.cases) * max(1, len(cohort.parts))
        with progress_bar(f"extract {cohort.name}", extractions) as advance:
            def on_result(result, cached: bool) -> None:
                counts["cached" if cached else "computed"] += 1
                elapsed = time.perf_counter() - started
                rate = f"{counts['computed'] / elapsed:.2f} cases/s" if counts["computed"] and elapsed > 0 else ""
                shown = result.case_id if self._show_case_ids else ""
                advance(note=f"{shown}{' (cached)' if cached else ''}"
                        + (" [red]failed[/]" if result.status == "failed" else ""), rate=rate)

            yield on_result
            seconds = time.perf_counter() - started
            self._extract_seconds[str(out_dir)] = seconds
            advance(0, rate=f"{counts['computed'] / seconds:.2f} cases/s" if counts["computed"] else "from the cache")

    def extracted(self, cohort, result) -> None:
        s = result.summary
        seconds = self._extract_seconds.pop(str(result.out_dir), s.wall_seconds)
        line = getattr(result, "discretisation_line", None)
        if line:
            console.print(line, highlight=False)
        for sentence in getattr(result, "warnings", []):
            warn(sentence)
        summary_table(f"extract {cohort.name} → {result.out_dir}", [
            ("cases", str(len(cohort.cases) + len(cohort.problems))),
            ("computed", str(s.computed)), ("from cache", str(s.cached)),
            ("fixed (see qc.csv)", str(s.fixed)), ("failed (see qc.csv)", str(result.n_failed)),
            ("wall time", f"{seconds:.1f} s"), ("speed", extraction_speed(s.computed, s.cached, seconds)),
        ])

    @contextmanager
    def training(self, n_fits: int) -> Iterator:
        with progress_bar("train models", n_fits) as advance:
            def progress(message: str) -> None:  # what runs now, without advancing the bar
                advance(0, note=message)

            def step(note: str) -> None:
                advance(note=f"done: {note}")

            yield progress, step

    def trained(self, result) -> None:
        """One table per cohort (cross-validated first): AUC for classifiers, concordance for survival models."""
        metrics = result.metrics
        survival = "c_harrell" in metrics.columns
        for cohort in ["cv", *(c for c in metrics["cohort"].unique() if c != "cv")]:
            rows = metrics[metrics["cohort"] == cohort]
            title = f"models → {result.out_dir}" if cohort == "cv" else f"external cohort {cohort}"
            summary_table(title, [
                (row.model, (_concordance(row) if survival else
                             f"AUC {row.auc:.3f} (95% CI {row.auc_ci_low:.3f}–{row.auc_ci_high:.3f})")
                 + (" [bold]best[/]" if cohort == "cv" and row.model == result.best_model else ""))
                for row in rows.itertuples()])

    @contextmanager
    def explaining(self, n_patients: int) -> Iterator:
        with progress_bar("explain patients", n_patients) as advance:
            last = {"done": 0}

            def progress(done: int, _total: int) -> None:
                advance(done - last["done"])
                last["done"] = done

            yield progress


def _concordance(row) -> str:
    return (f"Harrell's C {row.c_harrell:.3f} ({row.c_harrell_ci_low:.3f}–{row.c_harrell_ci_high:.3f}), "
            f"Uno's C {row.c_uno:.3f}, log-rank p {row.logrank_p:.2g}")
