"""The cohort map: every case through ``extract_case`` in parallel, with a content-addressed cache.

Each finished case is written to the cache at once (atomically), so a run that is killed loses at
most the cases in flight, and the same command started again recomputes only those. A case's cache
key is the hash of its image bytes, mask bytes, the resolved settings and the software versions, so
changing any of them recomputes exactly the cases it affects.

Scheduling: in parallel, largest case first (by file size), so no worker is left with a big case at the end,
and SimpleITK's threads are shared out so that N worker processes do not oversubscribe the cores.
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

CACHE_FORMAT = 2  # 2: Square/SquareRoot/Logarithm/Exponential no longer cropped


@dataclass
class RunSummary:
    computed: int = 0
    cached: int = 0
    failed: int = 0
    fixed: int = 0
    wall_seconds: float = 0.0
    results: list[CaseResult] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)  # case_id -> cache key

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
        self.changed = False
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
            self.changed = True
        return self.known[key]

    def save(self) -> None:
        """Write the memo if a file was hashed since it was read (an unchanged rerun writes nothing)."""
        if self.path and (self.changed or not self.path.exists()):
            atomic_write_text(self.path, json.dumps(self.known))
            self.changed = False


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
            case_id=case.case_id, image=_input_path(case.image), mask=str(case.mask),
            extra_masks=tuple(str(p) for p in extra), extra_sha256=tuple(memo.digest(p) for p in extra),
            spacing_2d=cohort.spec.spacing_2d, label=cohort.spec.mask_label,
            image_sha256=_input_digest(case.image, memo), mask_sha256=memo.digest(case.mask),
        ))
    return items


def _input_path(image) -> str | tuple[str, ...]:
    """A case's image as a worker gets it: a path, or the files of a DICOM series (which may span folders)."""
    return tuple(str(p) for p in image) if isinstance(image, tuple | list) else str(image)


def _input_digest(image, memo: DigestMemo) -> str:
    """sha256 of a file or folder, or for the files of a DICOM series the hash of their names and hashes in
    path order (as ``file_digest`` hashes a folder), so a changed, added or removed slice changes the key."""
    if not isinstance(image, tuple | list):
        return memo.digest(image)
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in image):
        digest.update(path.name.encode())
        digest.update(memo.digest(path).encode())
    return digest.hexdigest()


def _extra_masks(cohort: Cohort, case_id: str, settings: ExtractSettings) -> list[Path]:
    if not settings.extra_masks:
        return []
    return sorted(cohort.spec.root.glob(settings.extra_masks.format(case_id=case_id)))


def cache_keys(items: list[CaseInput], settings: ExtractSettings) -> dict[str, str]:
    """{case_id: cache key}; the settings' fingerprint and the versions are computed once for all cases."""
    versions = software_versions()
    shared = {
        "format": CACHE_FORMAT,
        "settings": settings.fingerprint(),
        "radpipe": versions.get("radpipe"),
        "pyradiomics": versions.get("pyradiomics-bhklab"),
        "SimpleITK": versions.get("SimpleITK"),
    }
    keys = {}
    for item in items:
        payload = json.dumps({
            **shared,
            "case_id": item.case_id,
            "image": item.image_sha256,
            "mask": item.mask_sha256,
            "extra": list(item.extra_sha256),
            "spacing_2d": item.spacing_2d,
            "label": item.label,
        }, sort_keys=True)
        keys[item.case_id] = hashlib.sha256(payload.encode()).hexdigest()
    return keys


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
    keys = cache_keys(items, settings)
    summary.keys = keys
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
        if cache:  # at once, before the next result: a run killed later keeps this case
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
    if scheduler or (jobs > 1 and len(items) > 1):
        # largest first (by file size): a big case started last would leave the other workers idle at the end
        items = sorted(items, key=_input_bytes, reverse=True)
    if scheduler:
        yield from _map_dask(items, settings, scheduler)
    elif jobs == 1 or len(items) == 1:
        # in table order; SimpleITK keeps its default (every core) and its filters use the cores left idle
        yield from (extract_case(item, settings) for item in items)
    else:
        yield from _map_processes(items, settings, jobs)


def _input_bytes(item: CaseInput) -> int:
    total = 0
    images = item.image if isinstance(item.image, tuple) else (item.image,)
    for path in (*images, item.mask, *item.extra_masks):
        try:
            total += Path(path).stat().st_size
        except OSError:  # a folder (DICOM series) or a file gone: counted as small, the case still runs
            pass
    return total


def extract_case_with_threads(item: CaseInput, settings: ExtractSettings, itk_threads: int) -> CaseResult:
    """``extract_case`` with SimpleITK limited to ``itk_threads``: with one process per core, multi-threaded
    filters only compete with the other processes. (The feature values do not depend on the thread count.)"""
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(itk_threads)
    return extract_case(item, settings)


def _map_processes(items: list[CaseInput], settings: ExtractSettings, jobs: int) -> Iterator[CaseResult]:
    """joblib (loky) workers, one case per task, each result yielded as it arrives."""
    from joblib import Parallel, cpu_count, delayed

    threads = max(1, cpu_count() // jobs)  # SimpleITK threads per worker: the cores shared out
    parallel = Parallel(n_jobs=jobs, backend="loky", return_as="generator_unordered", batch_size=1)
    yield from parallel(delayed(extract_case_with_threads)(item, settings, threads) for item in items)


# Dask's defaults suit many small tasks watched on a dashboard; for second-long extractions that hold the GIL
# they cost CPU. Measured on the 20-extraction benchmark (a LocalCluster of 2 workers): 10.9 s -> 8.5 s.
LOCAL_CLUSTER_CONFIG = {
    # glibc returning every freed block over 64 kB to the system: each filtered volume is then page-faulted in
    # again, ~25% more CPU per case. Unset, glibc keeps its own adaptive threshold.
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    # a sampling profiler interrupting the extraction every 10 ms, for a dashboard nobody opens
    "distributed.worker.profile.enabled": False,
    # event-loop health checks, memory and system monitors waking every 20-500 ms, each taking the GIL
    "distributed.admin.tick.interval": "1s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}


def _map_dask(items: list[CaseInput], settings: ExtractSettings, scheduler: str) -> Iterator[CaseResult]:
    """The same per-case function on a Dask cluster: ``local`` starts a 2-worker LocalCluster for this run."""
    try:
        import dask
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        from radpipe.errors import ConfigError

        raise ConfigError("--scheduler needs Dask: pip install 'radpipe[dask]'", key="--scheduler") from None
    import logging

    cluster = None
    if scheduler == "local":
        from joblib import cpu_count

        n_workers = 2
        with dask.config.set(LOCAL_CLUSTER_CONFIG):  # nannies hand their config to the worker processes
            cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=logging.ERROR)
            client = Client(cluster)
        threads = max(1, cpu_count() // n_workers)
    else:
        client = Client(scheduler)
        threads = None  # a cluster of its own: its workers' thread settings are its owner's
    try:
        futures = [  # largest case first: the scheduler runs higher priorities first
            client.submit(extract_case_with_threads, item, settings, threads, pure=False, priority=len(items) - index)
            if threads else client.submit(extract_case, item, settings, pure=False, priority=len(items) - index)
            for index, item in enumerate(items)
        ]
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
