"""Find inspection images and their raw labels: ELPV, a class-per-folder tree, or a CSV manifest.

Ingest only lists files and raw labels; it does not decode pixels (that is the quality stage's job), so a bad
file never stops discovery. Manifest rows that cannot be used become quarantine records instead of errors.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from tasks.cache import FILE_STAGE_TIMEOUT_S, StageCache, StageResult, run_stage, stage_key
from tasks.config import IngestConfig
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


def read_folder(root: Path) -> IngestResult:
    """``ROOT/<class_name>/**/*.{png,jpg,...}``: the class is the top-level folder name.

    Files with other extensions are ignored and counted (a README or a thumbs.db is no error).
    """
    rows = []
    ignored = 0
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise ValueError(f"{root}: no class folders found; expected ROOT/<class_name>/<image files>")
    for class_dir in class_dirs:
        for path in sorted(class_dir.rglob("*")):
            if not path.is_file() or path.name.startswith("."):
                continue
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                ignored += 1
                continue
            rel = path.relative_to(root)
            rows.append(
                {
                    "sample_id": rel.with_suffix("").as_posix(),
                    "path": str(path.resolve()),
                    "label_raw": class_dir.name,
                    "stratum": "",
                    "group": "",
                }
            )
    notes = [f"ignored {ignored} files without an image extension ({', '.join(IMAGE_EXTENSIONS)})"] if ignored else []
    return IngestResult("folder", str(root.resolve()), pd.DataFrame(rows, columns=INGEST_COLUMNS), notes=notes)


def read_manifest(csv_path: Path) -> IngestResult:
    """A CSV ``path,label[,group]`` (header optional); paths are relative to the CSV file.

    A row with a missing field, an unknown file or a repeated path is quarantined with its line number, so one
    typo does not lose the whole data set.
    """
    base = csv_path.parent
    rows: list[dict[str, str]] = []
    quarantine: list[dict[str, str]] = []
    seen: set[str] = set()
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            lines = list(csv.reader(fh))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{csv_path}: not a UTF-8 text CSV manifest ({exc})") from exc
    start = 1 if lines and [c.strip().lower() for c in lines[0][:2]] == ["path", "label"] else 0
    for lineno, cells in enumerate(lines[start:], start=start + 1):
        where = f"{csv_path}:{lineno}"
        cells = [c.strip() for c in cells]
        if not any(cells):
            continue
        if len(cells) < 2 or not cells[0] or not cells[1]:
            quarantine.append({"path": where, "stage": "ingest", "reason": "manifest row needs path and label"})
            continue
        path = (base / cells[0]).resolve()
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            reason = f"extension {path.suffix or '(none)'} is not one of {', '.join(IMAGE_EXTENSIONS)}"
            quarantine.append({"path": where, "stage": "ingest", "reason": reason})
            continue
        if not path.is_file():
            quarantine.append({"path": where, "stage": "ingest", "reason": f"file not found: {path}"})
            continue
        if str(path) in seen:
            quarantine.append({"path": where, "stage": "ingest", "reason": f"path listed twice: {path}"})
            continue
        seen.add(str(path))
        rows.append(
            {
                "sample_id": Path(cells[0]).with_suffix("").as_posix(),
                "path": str(path),
                "label_raw": cells[1],
                "stratum": "",
                "group": cells[2] if len(cells) > 2 else "",
            }
        )
    return IngestResult("manifest", str(csv_path.resolve()), pd.DataFrame(rows, columns=INGEST_COLUMNS), quarantine)


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
    return h.hexdigest()[:16]


def _write_quarantine(rows: list[dict[str, str]], path: Path) -> None:
    pd.DataFrame(rows, columns=["path", "stage", "reason"]).to_csv(path, index=False)


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
