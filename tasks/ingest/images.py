"""Find inspection images and their raw labels: ELPV, a class-per-folder tree, or a CSV manifest.

Ingest only lists files and raw labels; it does not decode pixels (that is the quality stage's job), so a bad
file never stops discovery. Manifest rows that cannot be used, unreadable folders and broken links become
quarantine records instead of errors; hidden files and folders are skipped and counted. Only a manifest whose
header or delimiter cannot be read, or a source with nothing usable at all, stops ingest, with a sentence saying
what was found.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import importlib.util
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import FILE_STAGE_TIMEOUT_S, StageCache, StageResult, run_stage, stage_key
from tasks.config import IngestConfig
from tasks.quarantine import rejection_summary
from tasks.rundir import RunContext

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
INGEST_COLUMNS = ["sample_id", "path", "label_raw", "stratum", "group"]


@dataclass
class IngestResult:
    """Discovered images (one row each, columns ``INGEST_COLUMNS``) plus what had to be left out."""

    source: str  # "elpv" | "folder" | "manifest"
    root: str
    records: pd.DataFrame
    quarantine: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def elpv_root() -> Path:
    """The folder of the ELPV data that the ``elpv-dataset`` package ships (labels.csv + images/)."""
    spec = importlib.util.find_spec("elpv_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the elpv-dataset package is not installed; run `make install` or pass --data")
    root = Path(next(iter(spec.submodule_search_locations))) / "data"
    if not (root / "labels.csv").is_file():
        raise FileNotFoundError(f"{root}/labels.csv is missing: the elpv-dataset install looks broken")
    return root


def read_elpv(root: Path | None = None) -> IngestResult:
    """ELPV labels.csv: whitespace-separated ``images/cellNNNN.png probability type`` (Deitsch et al. 2019).

    The defect probability stays raw here; the label stage decides binary vs the four probability classes.
    The module type (mono/poly) is the stratum both splits must contain.
    """
    root = root or elpv_root()
    rows = []
    quarantine = []
    for lineno, line in enumerate((root / "labels.csv").read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3:
            quarantine.append(
                {"path": f"{root / 'labels.csv'}:{lineno}", "stage": "ingest", "reason": "expected 3 fields"}
            )
            continue
        rel, prob, kind = parts
        rows.append(
            {
                "sample_id": Path(rel).stem,
                "path": str((root / rel).resolve()),
                "label_raw": prob,
                "stratum": kind,
                "group": "",
            }
        )
    return IngestResult("elpv", str(root), pd.DataFrame(rows, columns=INGEST_COLUMNS), quarantine)


def _skip(path: Path, reason: str) -> dict[str, str]:
    return {"path": str(path), "stage": "ingest", "reason": reason}


@dataclass
class _Walk:
    """What a walk of the data folder found: files in name order, and what it left out (never silently)."""

    files: list[Path] = field(default_factory=list)
    quarantine: list[dict[str, str]] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    seen_dirs: set[str] = field(default_factory=set)


def _walk(folder: Path, root: Path, found: _Walk) -> None:
    """Every file under ``folder`` (links to folders followed once); unreadable folders and broken links are
    recorded in ``found.quarantine``, hidden entries (``.ipynb_checkpoints/``, ``.DS_Store``) in ``found.hidden``."""
    found.seen_dirs.add(os.path.realpath(folder))
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        reason = f"cannot read folder ({exc.strerror or exc}); its files were skipped: make it readable or move it out"
        found.quarantine.append(_skip(folder, reason))
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            found.hidden.append(path.relative_to(root).as_posix() + ("/" if entry.is_dir() else ""))
            continue
        if entry.is_symlink():
            try:
                path.stat()
            except OSError as exc:
                reason = f"broken symbolic link to {os.readlink(path)} ({exc.strerror or exc}); fix or remove the link"
                found.quarantine.append(_skip(path, reason))
                continue
        if entry.is_dir():
            if os.path.realpath(path) in found.seen_dirs:
                reason = f"link to folder {os.path.realpath(path)}, which is already read; its files are used once"
                found.quarantine.append(_skip(path, reason))
                continue
            _walk(path, root, found)
        elif entry.is_file():
            found.files.append(path)
        else:
            found.quarantine.append(_skip(path, "not a regular file (a pipe, socket or device); move it out"))


def _hidden_note(hidden: list[str]) -> list[str]:
    """One note counting the hidden folders and files that were skipped, with a few examples."""
    if not hidden:
        return []
    n_dirs = sum(h.endswith("/") for h in hidden)
    n_files = len(hidden) - n_dirs
    parts = [f"{n} hidden {kind}{'s' if n != 1 else ''}" for n, kind in ((n_dirs, "folder"), (n_files, "file")) if n]
    examples = ", ".join(hidden[:3]) + (", ..." if len(hidden) > 3 else "")
    return [f"skipped {' and '.join(parts)} ({examples}): names starting with '.' are never data"]


def read_folder(root: Path) -> IngestResult:
    """``ROOT/<class_name>/**/*.{png,jpg,...}``: the class is the top-level folder name.

    Files with other extensions are ignored and counted (a README or a thumbs.db is no error); hidden folders and
    files (``.ipynb_checkpoints/``, ``.DS_Store``) are skipped and counted; an unreadable folder, a broken link, an
    image outside any class folder or a second link to one file goes to the quarantine list with its reason, so no
    input is left out without a word.
    """
    try:
        top = list(root.iterdir())
    except OSError as exc:
        raise ValueError(f"{root}: cannot read the data folder ({exc.strerror or exc}); make it readable") from exc
    if not any(p.is_dir() and not p.name.startswith(".") for p in top):
        raise ValueError(f"{root}: no class folders found; expected ROOT/<class_name>/<image files>")
    found = _Walk()
    _walk(root, root, found)
    rows = []
    ignored = 0
    images = [p for p in found.files if p.suffix.lower() in IMAGE_EXTENSIONS]
    kept = _one_name_per_file([p for p in images if len(p.relative_to(root).parts) > 1])
    for path in found.files:
        rel = path.relative_to(root)
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            ignored += 1
            continue
        if len(rel.parts) == 1:
            reason = "image directly in the data folder, not in a class folder; move it into ROOT/<class_name>/"
            found.quarantine.append(_skip(path, reason))
            continue
        real = str(path.resolve())
        if kept[real] != path:
            reason = f"a link to {kept[real]}, which is read already; it is used once, under that name"
            found.quarantine.append(_skip(path, reason))
            continue
        # the whole relative path, extension included, so x.png and x.jpg in one class are two samples
        rows.append({"sample_id": rel.as_posix(), "path": real, "label_raw": rel.parts[0], "stratum": "", "group": ""})
    notes = [f"ignored {ignored} files without an image extension ({', '.join(IMAGE_EXTENSIONS)})"] if ignored else []
    notes += _hidden_note(found.hidden)
    if not rows:
        raise NothingUsable(
            f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in its class folders", found.quarantine
        )
    records = pd.DataFrame(rows, columns=INGEST_COLUMNS)
    return IngestResult("folder", str(root.resolve()), records, found.quarantine, notes)


def _one_name_per_file(paths: list[Path]) -> dict[str, Path]:
    """For each real file, the name it is used under: the first that is not a link, else the first link."""
    kept: dict[str, Path] = {}
    for path in paths:
        real = str(path.resolve())
        if real not in kept or (kept[real].is_symlink() and not path.is_symlink()):
            kept[real] = path
    return kept


class NothingUsable(ValueError):
    """Discovery found nothing usable; ``quarantine`` holds every input it left out, with its reason, so the
    stage can still write them to ``quarantine.csv``."""

    def __init__(self, what: str, quarantine: list[dict[str, str]]) -> None:
        super().__init__(rejection_summary(what, quarantine) if quarantine else what)
        self.quarantine = quarantine


MANIFEST_HEADER = "path,label[,group]"
_DELIMITERS = (";", "\t", "|")


def _manifest_rows(csv_path: Path) -> tuple[list[list[str]], int, list[str]]:
    """The CSV's rows, the index of the first data row and notes; a header or delimiter that cannot be read as
    ``path,label[,group]`` raises a ValueError naming what was found.

    A first row ``path,label[,group]`` (any case) is the header. A first row whose first cell names an image file
    and whose second cell is a label is data (header-less manifests keep working, with a note). Anything else is
    a header vigil cannot read: a ``;``- or tab-separated file, ``file,class``, a one-column list of paths.
    """
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"manifest {csv_path}: not a UTF-8 text CSV manifest ({exc})") from exc
    lines = list(csv.reader(io.StringIO(text, newline="")))
    first_at = next((i for i, r in enumerate(lines) if any(c.strip() for c in r)), None)
    if first_at is None:
        raise ValueError(
            f"manifest {csv_path}: the file is empty; expected a header `{MANIFEST_HEADER}` and one row per image"
        )
    first = [c.strip() for c in lines[first_at]]
    if {"path", "label"} <= {c.lower() for c in first}:  # a header; columns are read by name (any order)
        return lines, first_at + 1, []
    if len(first) >= 2 and Path(first[0]).suffix.lower() in IMAGE_EXTENSIONS and first[1]:
        return lines, first_at, [f"manifest {csv_path.name} has no header row; read its columns as {MANIFEST_HEADER}"]
    raw = next(line for line in text.splitlines() if line.strip())
    shown = raw if len(raw) <= 80 else raw[:77] + "..."
    delimiter = next((d for d in _DELIMITERS if d in raw and "," not in raw), None)
    why = (
        f"; delimiter {delimiter!r} instead of ',': save it as a comma-separated CSV"
        if delimiter
        else f"; write `{MANIFEST_HEADER}` as its first line, with paths relative to the manifest"
    )
    raise ValueError(f"manifest {csv_path}: expected a header `{MANIFEST_HEADER}`, found `{shown}`{why}")


@dataclass(frozen=True)
class _ManifestRow:
    lineno: int
    where: str
    cell: str  # the path as written
    path: str  # resolved
    label: str
    group: str


def _one_row_per_file(rows: list[_ManifestRow]) -> tuple[list[_ManifestRow], list[dict[str, str]]]:
    """Keep the first row of each file; a file listed with conflicting labels keeps none of its rows.

    Labels that differ only in case or surrounding spaces agree (the label stage merges such spellings); any
    other difference is a conflict the manifest's author must settle, so every such row is quarantined with all
    the labels named rather than trusting whichever came first.
    """
    by_path: dict[str, list[_ManifestRow]] = {}
    for r in rows:
        by_path.setdefault(r.path, []).append(r)
    keep: list[_ManifestRow] = []
    quarantine: list[dict[str, str]] = []
    for r in rows:
        same = by_path[r.path]
        if len({x.label.casefold() for x in same}) > 1:
            said = ", ".join(f"line {x.lineno} says {x.label!r}" for x in same)
            reason = f"{r.path} is listed with conflicting labels ({said}); keep one row per file, with the right label"
            quarantine.append({"path": r.where, "stage": "ingest", "reason": reason})
        elif r is not same[0]:
            reason = f"path listed twice: {r.path} (line {same[0].lineno} is kept)"
            quarantine.append({"path": r.where, "stage": "ingest", "reason": reason})
        else:
            keep.append(r)
    return keep, quarantine


def _outside_note(csv_path: Path, rows: list[_ManifestRow]) -> list[str]:
    """Manifest paths outside the manifest's folder are allowed (review loops write such manifests): list them."""
    base = Path(os.path.abspath(csv_path.parent))
    outside = [r.cell for r in rows if not Path(os.path.normpath(base / r.cell)).is_relative_to(base)]
    if not outside:
        return []
    examples = ", ".join(outside[:3]) + (", ..." if len(outside) > 3 else "")
    return [
        f"{len(outside)} manifest path{'s' if len(outside) != 1 else ''} point outside the manifest's folder "
        f"{base} (allowed): {examples}"
    ]


#: Manifest columns read by header name; without a header they are path, label, group by position.
MANIFEST_COLUMNS = ("path", "label", "group", "needs_review")


def _manifest_columns(lines: list[list[str]], start: int) -> list[int | None]:
    """Positions of ``MANIFEST_COLUMNS`` from the header row (``vigil predict --review`` writes
    ``path,label,probability,needs_review``; ``group`` stays optional), or path, label, group by position."""
    header = [c.strip().lower() for c in lines[start - 1]] if start > 0 else []
    if "path" in header and "label" in header:
        return [header.index(n) if n in header else None for n in MANIFEST_COLUMNS]
    return [0, 1, 2, None]


def read_manifest(csv_path: Path) -> IngestResult:
    """A CSV ``path,label[,group]`` (header optional when the first row is data); paths are relative to the CSV.

    A row with a missing field, an unknown file or a repeated path is quarantined with its line number, so one
    typo does not lose the whole data set; a file listed twice with different labels loses every such row.
    """
    lines, start, notes = _manifest_rows(csv_path)
    positions = _manifest_columns(lines, start)
    base = csv_path.parent
    rows: list[_ManifestRow] = []
    quarantine: list[dict[str, str]] = []
    for lineno, cells in enumerate(lines[start:], start=start + 1):
        where = f"{csv_path}:{lineno}"
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        cells = [cells[i] if i is not None and i < len(cells) else "" for i in positions]  # path, label, group, review
        if len(cells) < 2 or not cells[0] or not cells[1]:
            quarantine.append({"path": where, "stage": "ingest", "reason": "manifest row needs path and label"})
            continue
        if cells[3].lower() in ("true", "1", "yes"):
            reason = "needs_review=true: not reviewed yet; check its label and set needs_review to false to train on it"
            quarantine.append({"path": where, "stage": "ingest", "reason": reason})
            continue
        path = (base / cells[0]).resolve()
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            reason = f"extension {path.suffix or '(none)'} is not one of {', '.join(IMAGE_EXTENSIONS)}"
            quarantine.append({"path": where, "stage": "ingest", "reason": reason})
            continue
        if not path.is_file():
            quarantine.append({"path": where, "stage": "ingest", "reason": f"file not found: {path}"})
            continue
        group = cells[2]
        rows.append(_ManifestRow(lineno, where, cells[0], str(path), cells[1], group))
    rows, repeated = _one_row_per_file(rows)
    quarantine += repeated
    quarantine.sort(key=lambda q: int(q["path"].rsplit(":", 1)[1]))
    if not rows:
        raise NothingUsable(f"manifest {csv_path}: none of its rows lists a usable image", quarantine)
    records = pd.DataFrame(
        # the path as written, extension included, so x.png and x.jpg are two samples
        [
            {
                "sample_id": Path(r.cell).as_posix(),
                "path": r.path,
                "label_raw": r.label,
                "stratum": "",
                "group": r.group,
            }
            for r in rows
        ],
        columns=INGEST_COLUMNS,
    )
    notes += _outside_note(csv_path, rows)
    return IngestResult("manifest", str(csv_path.resolve()), records, quarantine, notes)


def discover_images(path: str | Path | None) -> IngestResult:
    """Dispatch on what ``--data`` points at: nothing (ELPV), a folder, or a ``.csv`` manifest."""
    if path is None:
        return read_elpv()
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"--data {p}: no such file or folder")
    if p.is_dir():
        if (p / "labels.csv").is_file() and (p / "images").is_dir() and not _has_class_dirs_with_images(p):
            return read_elpv(p)
        return read_folder(p)
    if p.suffix.lower() == ".csv":
        return read_manifest(p)
    raise ValueError(f"--data {p}: expected an image folder ROOT/<class>/* or a CSV manifest path,label[,group]")


def _has_class_dirs_with_images(root: Path) -> bool:
    return any(d.is_dir() and d.name != "images" for d in root.iterdir())


def subsample(records: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    """A seeded subset stratified on raw label and stratum, keeping the input order (for fast profiles)."""
    if limit is None or len(records) <= limit:
        return records
    rng = np.random.default_rng(seed)
    key = records["label_raw"].astype(str) + "|" + records["stratum"].astype(str)
    keep: list[int] = []
    for _, idx in records.groupby(key, sort=True).indices.items():
        n = max(1, round(limit * len(idx) / len(records)))
        keep.extend(rng.choice(idx, size=min(n, len(idx)), replace=False).tolist())
    return records.iloc[sorted(keep)].reset_index(drop=True)


def source_fingerprint(result: IngestResult) -> str:
    """A cheap content fingerprint of the input: file listing with sizes and mtimes, plus manifest bytes.

    Pixel content is hashed later by the quality stage; this fingerprint decides whether ingest reruns.
    """
    h = hashlib.sha256()
    h.update(result.source.encode())
    if result.source == "elpv":
        try:
            h.update(importlib.metadata.version("elpv-dataset").encode())
        except importlib.metadata.PackageNotFoundError:
            pass
        h.update((Path(result.root) / "labels.csv").read_bytes())
    elif result.source == "manifest":
        h.update(Path(result.root).read_bytes())
    for path in result.records["path"]:
        st = Path(path).stat()
        h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    # what was left out is part of the listing too: a folder made readable or a link fixed reruns ingest
    for q in result.quarantine:
        h.update(f"{q['path']}\0{q['reason']}\n".encode())
    for note in result.notes:
        h.update(f"{note}\n".encode())
    return h.hexdigest()[:16]


def _write_quarantine(rows: list[dict[str, str]], path: Path) -> None:
    pd.DataFrame(rows, columns=["path", "stage", "reason"]).to_csv(path, index=False)


def _nothing_usable(exc: NothingUsable, cfg: IngestConfig, ctx: RunContext) -> StageResult:
    """The failed record of a source with nothing usable: a cache entry holding only ``quarantine.csv``, so the
    run's quarantine.csv and report still list every input left out, with its reason."""
    rows = exc.quarantine
    key = stage_key("ingest", str(exc), [sorted(r.items()) for r in rows], cfg, ctx.seed)

    def build(out: Path) -> dict:
        _write_quarantine(rows, out / "quarantine.csv")
        return {"root": cfg.path, "n_quarantined": len(rows)}

    result = run_stage(StageCache(ctx.cache_root), "ingest", key, build, ctx.refreshes("ingest"))
    return result.model_copy(update={"error": result.error or str(exc), "summary": {"root": cfg.path}})


@task(
    name="ingest", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=[2, 10], timeout_seconds=FILE_STAGE_TIMEOUT_S
)
def ingest_images_task(*, cfg: IngestConfig, ctx: RunContext) -> StageResult:
    """List the images and their raw labels (cached on the file listing, sizes and mtimes).

    Args:
        cfg: The ingest section (data folder or manifest, subset size).
        ctx: The run's context (seed, cache root, refreshes).

    Returns:
        The stage record; its ``summary`` carries the data ``root`` (the folder or manifest read), the ``source``
        (``"elpv"``, ``"folder"`` or ``"manifest"``) and the counts.
    """
    logger = get_run_logger()
    try:
        found = discover_images(cfg.path)
    except NothingUsable as exc:
        return _nothing_usable(exc, cfg, ctx)
    except (FileNotFoundError, ValueError) as exc:
        # the root travels even in a failed record, so the report files the failed run under its data set
        return StageResult(
            stage="ingest", key="", path="", cached=False, seconds=0.0, summary={"root": cfg.path}, error=str(exc)
        )
    key = stage_key("ingest", source_fingerprint(found), cfg, ctx.seed)

    def build(out: Path) -> dict:
        records = subsample(found.records, cfg.limit, ctx.seed)
        records.to_csv(out / "records.csv", index=False)
        _write_quarantine(found.quarantine, out / "quarantine.csv")
        return {
            "source": found.source,
            "root": found.root,
            "n_found": len(found.records),
            "n": len(records),
            "n_quarantined": len(found.quarantine),
            "notes": found.notes,
        }

    result = run_stage(StageCache(ctx.cache_root), "ingest", key, build, ctx.refreshes("ingest"))
    s = result.summary
    logger.info("ingest: %s images from %s %s%s", s["n"], s["source"], s["root"], " (cached)" if result.cached else "")
    for note in s["notes"]:
        logger.info("ingest: %s", note)
    return result
