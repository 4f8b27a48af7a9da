"""The cohort map: every case through ``extract_case`` in parallel, with a content-addressed cache.

Each finished case is written to the cache at once (atomically), so a run that is killed loses at
most the cases in flight, and the same command started again recomputes only those. A case's cache
key is the hash of its image bytes, mask bytes, the resolved settings and the software versions, so
changing any of them recomputes exactly the cases it affects.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from radpipe._io import atomic_write_text, sha256_bytes_of, software_versions
from radpipe.cohort import Cohort
from radpipe.extract.features import CaseInput, CaseResult, extract_case
from radpipe.extract.settings import ExtractSettings

CACHE_FORMAT = 1


@dataclass
class RunSummary:
    computed: int = 0
    cached: int = 0
    failed: int = 0
    fixed: int = 0
    wall_seconds: float = 0.0
    results: list[CaseResult] = field(default_factory=list)

    @property
    def n_cases(self) -> int:
        return len(self.results)


class DigestMemo:
    """Remembers file hashes by (path, size, mtime, inode), so an unchanged rerun reads no image bytes.

    Stored as ``digests.json`` in the cache folder; a changed file has a new size or mtime and is hashed
    again. Case results themselves are still keyed by content, so a stale memo cannot give wrong features.
    """

    def __init__(self, folder: Path | None = None):
        self.path = Path(folder) / "digests.json" if folder else None
        self.known: dict[str, str] = {}
        if self.path and self.path.exists():
            try:
                self.known = json.loads(self.path.read_text())
            except ValueError:
                self.known = {}

    def digest(self, path: Path) -> str:
        path = Path(path)
        if not path.is_file():
            return file_digest(path)
        stat = path.stat()
        key = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}"
        if key not in self.known:
            self.known[key] = sha256_bytes_of(path)
        return self.known[key]

    def save(self) -> None:
        if self.path:
            atomic_write_text(self.path, json.dumps(self.known))


def file_digest(path: Path) -> str:
    """sha256 of a file, or of every file in a folder (a DICOM series), in name order."""
    path = Path(path)
    if path.is_dir():
        digest = hashlib.sha256()
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(child.relative_to(path).as_posix().encode())
            digest.update(sha256_bytes_of(child).encode())
        return digest.hexdigest()
    if not path.exists():
        return "missing"
    return sha256_bytes_of(path)


def case_inputs(cohort: Cohort, settings: ExtractSettings, memo: DigestMemo | None = None) -> list[CaseInput]:
    """Plain, picklable work items; file hashes are computed here, once, for cache keys and provenance."""
    memo = memo or DigestMemo()
    items = []
    for case in cohort.cases:
        extra = tuple(_extra_masks(cohort, case.case_id, settings))
        items.append(CaseInput(
            case_id=case.case_id, image=str(case.image), mask=str(case.mask),
            extra_masks=tuple(str(p) for p in extra), extra_sha256=tuple(memo.digest(p) for p in extra),
            spacing_2d=cohort.spec.spacing_2d, label=cohort.spec.mask_label,
            image_sha256=memo.digest(case.image), mask_sha256=memo.digest(case.mask),
        ))
    return items


def _extra_masks(cohort: Cohort, case_id: str, settings: ExtractSettings) -> list[Path]:
    if not settings.extra_masks:
        return []
    return sorted(cohort.spec.root.glob(settings.extra_masks.format(case_id=case_id)))


def cache_key(item: CaseInput, settings: ExtractSettings) -> str:
    versions = software_versions()
    payload = json.dumps({
        "format": CACHE_FORMAT,
        "case_id": item.case_id,
        "image": item.image_sha256,
        "mask": item.mask_sha256,
        "extra": list(item.extra_sha256),
        "spacing_2d": item.spacing_2d,
        "label": item.label,
        "settings": settings.fingerprint(),
        "radpipe": versions.get("radpipe"),
        "pyradiomics": versions.get("pyradiomics-bhklab"),
        "SimpleITK": versions.get("SimpleITK"),
    }, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class ResultCache:
    """One JSON file per case result, named by its cache key. JSON, not pickle: a cache is data."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> CaseResult | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            return CaseResult.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError):
            return None  # a damaged entry is recomputed, not trusted

    def remove_leftovers(self) -> int:
        """Delete temporary files left by a run killed while writing an entry; they are never read as entries.
        Call only while holding the output folder's lock, for a cache no other run shares."""
        leftovers = list(self.folder.glob("*/.*.tmp"))
        for path in leftovers:
            path.unlink(missing_ok=True)
        return len(leftovers)

    def put(self, key: str, result: CaseResult) -> None:
        if result.cacheable:
            # key order is kept: it is the feature column order of the tables
            atomic_write_text(self._path(key), json.dumps(result.to_dict()))


def run_cases(items: list[CaseInput], settings: ExtractSettings, cache: ResultCache | None, *,
              jobs: int = 1, scheduler: str | None = None,
              on_result: Callable[[CaseResult, bool], None] | None = None) -> RunSummary:
    """Extract every item, taking what the cache has; results come back in the items' order."""
    started = time.perf_counter()
    summary = RunSummary()
    by_id: dict[str, CaseResult] = {}
    keys = {item.case_id: cache_key(item, settings) for item in items}
    todo = []
    for item in items:
        hit = cache.get(keys[item.case_id]) if cache else None
        if hit is not None and hit.case_id != item.case_id:
            hit = None  # an entry edited or copied by hand: recompute rather than mislabel a case
        if hit is not None:
            by_id[item.case_id] = hit
            summary.cached += 1
            if on_result:
                on_result(hit, True)
        else:
            todo.append(item)

    for result in _map(todo, settings, jobs=jobs, scheduler=scheduler):
        if cache:
            cache.put(keys[result.case_id], result)
        by_id[result.case_id] = result
        summary.computed += 1
        if on_result:
            on_result(result, False)

    summary.results = [by_id[item.case_id] for item in items]
    summary.failed = sum(r.status == "failed" for r in summary.results)
    summary.fixed = sum(r.status == "fixed" for r in summary.results)
    summary.wall_seconds = time.perf_counter() - started
    return summary


def _map(items: list[CaseInput], settings: ExtractSettings, *, jobs: int,
         scheduler: str | None) -> Iterator[CaseResult]:
    """Yield results as they finish. Workers get paths and settings, never image arrays."""
    if not items:
        return
    if scheduler:
        yield from _map_dask(items, settings, scheduler)
        return
    if jobs == 1:
        for item in items:
            yield extract_case(item, settings)
        return
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered")
    yield from parallel(delayed(extract_case)(item, settings) for item in items)


def _map_dask(items: list[CaseInput], settings: ExtractSettings, scheduler: str) -> Iterator[CaseResult]:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        from radpipe.errors import ConfigError

        raise ConfigError("--scheduler needs Dask: pip install 'radpipe[dask]'", key="--scheduler") from None
    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = client.map(extract_case, items, settings=settings, pure=False)
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
