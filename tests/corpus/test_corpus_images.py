"""Bad-input corpus, images and manifests: hostile or odd inputs, each with the exact sentence a user gets.

Every case names the file, the problem and what to do, and checks that the good files next to it were still used.
The cases call the pure stage functions (discovery, the per-file checks, labelling), never a whole flow, so the
corpus stays fast. Unreadable files and folders are read by a child process that drops to uid/gid 65534 first:
CI runs as root, and root reads everything whatever the permission bits say.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import part_image
from PIL import Image

from tasks.config import LabelConfig
from tasks.ingest.images import IngestResult, discover_images
from tasks.label.images import LabelError, make_splits
from tasks.quality.checks import apply_checks, check_image

REPO = Path(__file__).resolve().parents[2]
NOBODY = 65534
AGAIN = "copy or export it again"


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def _jpg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img)[1].tobytes()


def _cmyk_jpeg(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.frombytes("CMYK", (40, 40), rng.integers(0, 255, (40, 40, 4), dtype=np.uint8).tobytes()).save(buf, "JPEG")
    return buf.getvalue()


class Hostile:
    """One class-per-folder data set: good images, odd-but-usable ones and hostile ones, read once."""

    def __init__(self, root: Path) -> None:
        rng = np.random.default_rng(7)
        self.root = root
        self.good: set[Path] = set()  # every file that must end up usable
        for cls, defect in (("good", False), ("crack", True)):
            (root / cls).mkdir(parents=True)
            for i in range(6):
                self.add(f"{cls}/{cls}_{i:03d}.png", _png(part_image(rng, 40, defect)))
        odd = {
            "good/cmyk.jpg": _cmyk_jpeg(rng),
            "good/rgba.png": _png(
                np.dstack([part_image(rng, 40, False, colour=True), np.full((40, 40), 200, np.uint8)])
            ),
            "crack/deep16.png": _png(part_image(rng, 40, True, bits=16)),
            "good/Prüfteil_ü_検査.png": _png(part_image(rng, 40, False)),
            "good/x.png": _png(part_image(rng, 40, False)),
            "good/x.jpg": _jpg(part_image(rng, 40, False)),
            "good/scan.TIF": cv2.imencode(".tif", part_image(rng, 40, False))[1].tobytes(),
        }
        for rel, data in odd.items():
            self.add(rel, data)
        whole_png = _png(part_image(rng, 40, True))
        whole_jpg = _jpg(part_image(rng, 40, True))
        self.bad = {
            "empty": self.write("good/empty.png", b""),
            "tiny": self.write("good/tiny.png", _png(part_image(rng, 4, False))),
            "truncated_png": self.write("crack/cut.png", whole_png[: len(whole_png) // 2]),
            "truncated_jpeg": self.write("crack/cut.jpg", whole_jpg[:-300]),
            "text": self.write("good/notes.png", b"camera 2 was re-focused on monday\n"),
            "blank": self.write("good/blank.png", _png(np.full((40, 40), 90, np.uint8))),
            "copy": self.write("crack/zz_copy.png", (root / "crack" / "crack_000.png").read_bytes()),
            "stray": self.write("stray.png", _png(part_image(rng, 40, False))),
        }
        (root / "good" / ".ipynb_checkpoints").mkdir()
        self.write("good/.ipynb_checkpoints/good_000-checkpoint.png", (root / "good" / "good_000.png").read_bytes())
        self.write("crack/.DS_Store", b"\0\0\0\1Bud1")
        self.write("good/readme.txt", "shot on line 3")
        self.bad["broken_link"] = root / "crack" / "gone.png"
        self.bad["broken_link"].symlink_to(root / "crack" / "deleted_long_ago.png")
        self.found = discover_images(root)
        checks = [check_image(p) for p in self.found.records["path"]]
        self.usable, quality_q = apply_checks(self.found.records, checks)
        self.reasons = {q["path"]: q["reason"] for q in self.found.quarantine + quality_q}

    def write(self, rel: str, data: bytes | str) -> Path:
        path = self.root / rel
        if isinstance(data, str):
            path.write_text(data)
        else:
            path.write_bytes(data)
        return path

    def add(self, rel: str, data: bytes) -> None:
        self.good.add(self.write(rel, data))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Hostile:
    return Hostile(tmp_path_factory.mktemp("corpus") / "parts")


def _every_good_file_used(h: Hostile) -> None:
    assert set(h.usable["path"]) == {str(p) for p in h.good}


FOLDER_CASES = {
    "zero-byte file": ("empty", f"empty file (0 bytes); {AGAIN}, or remove it"),
    "tiny image": ("tiny", "too small (4x4 px; need 8 px per side); remove it, or lower quality.min_side_px"),
    "truncated PNG": ("truncated_png", f"truncated PNG (no IEND chunk at the end of the file); {AGAIN}"),
    "truncated JPEG": ("truncated_jpeg", f"truncated JPEG (no end-of-image marker); {AGAIN}"),
    "text file named .png": (
        "text",
        "not an image: content is not PNG, JPEG, BMP or TIFF (looks like a text file); move it out of the data",
    ),
    "blank frame": ("blank", "blank image: every pixel has the same value; remove the failed capture"),
    "image outside any class folder": (
        "stray",
        "image directly in the data folder, not in a class folder; move it into ROOT/<class_name>/",
    ),
}


@pytest.mark.parametrize("case", list(FOLDER_CASES))
def test_bad_file_is_quarantined_with_its_sentence(hostile: Hostile, case: str) -> None:
    key, reason = FOLDER_CASES[case]
    assert hostile.reasons[str(hostile.bad[key])] == reason
    _every_good_file_used(hostile)


def test_duplicate_file_keeps_the_first_copy(hostile: Hostile) -> None:
    first = hostile.root / "crack" / "crack_000.png"
    assert hostile.reasons[str(hostile.bad["copy"])] == (
        f"exact duplicate of {first} (first copy kept); delete one, or set quality.drop_duplicates=false"
    )
    _every_good_file_used(hostile)


def test_broken_symlink_is_quarantined(hostile: Hostile) -> None:
    target = hostile.root / "crack" / "deleted_long_ago.png"
    assert hostile.reasons[str(hostile.bad["broken_link"])] == (
        f"broken symbolic link to {target} (No such file or directory); fix or remove the link"
    )
    _every_good_file_used(hostile)


def test_hidden_folders_and_files_are_skipped_and_counted(hostile: Hostile) -> None:
    assert (
        "skipped 1 hidden folder and 1 hidden file (crack/.DS_Store, good/.ipynb_checkpoints/): names starting "
        "with '.' are never data"
    ) in hostile.found.notes
    assert not hostile.found.records["path"].str.contains("checkpoint").any()
    assert "ignored 1 files without an image extension (.png, .jpg, .jpeg, .bmp, .tif, .tiff)" in hostile.found.notes
    _every_good_file_used(hostile)


@pytest.mark.parametrize(
    ("rel", "channels", "dtype"),
    [
        ("good/cmyk.jpg", 3, "uint8"),  # CMYK JPEG: OpenCV converts it
        ("good/rgba.png", 3, "uint8"),  # alpha dropped
        ("crack/deep16.png", 1, "uint16"),  # 16-bit kept
        ("good/Prüfteil_ü_検査.png", 1, "uint8"),  # non-ASCII file name
        ("good/scan.TIF", 1, "uint8"),  # upper-case extension, TIFF
    ],
)
def test_odd_but_valid_images_are_used(hostile: Hostile, rel: str, channels: int, dtype: str) -> None:
    row = hostile.usable.set_index("path").loc[str(hostile.root / rel)]
    assert (row["channels"], row["dtype"]) == (channels, dtype)
    _every_good_file_used(hostile)


def test_same_stem_two_extensions_are_two_samples(hostile: Hostile) -> None:
    ids = hostile.usable["sample_id"]
    assert ids.is_unique and {"good/x.png", "good/x.jpg"} <= set(ids)
    lab = make_splits(hostile.usable, "folder", LabelConfig(), seed=0)
    merged = lab.table.merge(hostile.usable[["sample_id", "grey"]], on="sample_id", how="left")
    assert len(merged) == len(hostile.usable)  # the label stage's join keeps one row per image
    _every_good_file_used(hostile)


# ----------------------------------------------------------------------------------- unreadable, under uid 65534

_AS_NOBODY = """
import json, os, sys
from tasks.ingest.images import discover_images
from tasks.quality.checks import check_image
root, locked_file, uid = sys.argv[1], sys.argv[2], int(sys.argv[3])
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
found = discover_images(root)
print(json.dumps({
    "denied": not os.access(locked_file, os.R_OK),
    "paths": found.records["path"].tolist(),
    "quarantine": {q["path"]: q["reason"] for q in found.quarantine},
    "checks": {p: check_image(p).reason for p in found.records["path"]},
}))
"""


@pytest.fixture()
def locked_tree() -> Iterator[Path]:
    """A tree that uid 65534 can walk (pytest's own tmp folders are private to root), with one unreadable folder
    and one unreadable file; permissions restored before it is removed."""
    root = Path(tempfile.mkdtemp(prefix="vigil-corpus-"))
    rng = np.random.default_rng(3)
    for cls in ("good", "crack"):
        (root / cls).mkdir()
        for i in range(3):
            (root / cls / f"{cls}_{i}.png").write_bytes(_png(part_image(rng, 40, cls == "crack")))
    (root / "good" / "locked").mkdir()
    (root / "good" / "locked" / "hidden_away.png").write_bytes(_png(part_image(rng, 40, False)))
    (root / "crack" / "locked.png").write_bytes(_png(part_image(rng, 40, True)))
    for p in [root, *root.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    (root / "crack" / "locked.png").chmod(0)
    (root / "good" / "locked").chmod(0)
    try:
        yield root
    finally:
        (root / "good" / "locked").chmod(stat.S_IRWXU)
        shutil.rmtree(root)


def test_unreadable_folder_and_file_are_quarantined_under_a_dropped_uid(locked_tree: Path) -> None:
    locked_file = locked_tree / "crack" / "locked.png"
    out = subprocess.run(
        [sys.executable, "-c", _AS_NOBODY, str(locked_tree), str(locked_file), str(NOBODY)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    if not seen["denied"]:  # only possible when not root (root drops to uid 65534, which chmod 0 always denies)
        assert os.geteuid() != 0
        pytest.skip("this non-root user can read a chmod-0 file (CAP_DAC_OVERRIDE?), so permissions cannot be tested")
    resolved = locked_tree.resolve()
    assert seen["quarantine"] == {
        str(locked_tree / "good" / "locked"): "cannot read folder (Permission denied); its files were skipped: make "
        "it readable or move it out"
    }
    assert seen["checks"][str(resolved / "crack" / "locked.png")] == (
        "cannot read file (Permission denied); make it readable for the user running vigil, or remove it"
    )
    readable = {str(resolved / c / f"{c}_{i}.png") for c in ("good", "crack") for i in range(3)}
    assert {p for p, reason in seen["checks"].items() if reason is None} == readable


# -------------------------------------------------------------------------------------------------------- manifests


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT/good/g0..g5.png and ROOT/crack/c0..c5.png for the manifests to point at."""
    root = tmp_path_factory.mktemp("manifests")
    rng = np.random.default_rng(11)
    for cls, prefix in (("good", "g"), ("crack", "c")):
        (root / cls).mkdir()
        for i in range(6):
            (root / cls / f"{prefix}{i}.png").write_bytes(_png(part_image(rng, 40, cls == "crack")))
    return root


ROWS = [f"good/g{i}.png,good" for i in range(6)] + [f"crack/c{i}.png,crack" for i in range(6)]


def _manifest(root: Path, name: str, text: str | bytes) -> Path:
    path = root / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _all_rows_used(found: IngestResult, root: Path) -> None:
    assert set(found.records["path"]) == {str(root / r.split(",")[0]) for r in ROWS}


def test_bom_and_crlf_manifest_is_read(images: Path) -> None:
    found = discover_images(_manifest(images, "bom.csv", "\ufeffpath,label\r\n" + "\r\n".join(ROWS) + "\r\n"))
    assert found.quarantine == [] and found.notes == []
    _all_rows_used(found, images)


def test_semicolon_manifest_names_the_delimiter(images: Path) -> None:
    path = _manifest(images, "semi.csv", "path;label\n" + "\n".join(r.replace(",", ";") for r in ROWS))
    with pytest.raises(ValueError) as err:
        discover_images(path)
    assert str(err.value) == (
        f"manifest {path}: expected a header `path,label[,group]`, found `path;label`; delimiter ';' instead of ',': "
        "save it as a comma-separated CSV"
    )


def test_one_column_list_of_paths_names_the_header_found(images: Path) -> None:
    path = _manifest(images, "paths.csv", "\n".join(r.split(",")[0] for r in ROWS))
    with pytest.raises(ValueError) as err:
        discover_images(path)
    assert str(err.value) == (
        f"manifest {path}: expected a header `path,label[,group]`, found `good/g0.png`; write `path,label[,group]` "
        "as its first line, with paths relative to the manifest"
    )


def test_other_header_names_the_header_found(images: Path) -> None:
    path = _manifest(images, "other.csv", "file,class\n" + "\n".join(ROWS))
    with pytest.raises(ValueError, match=r"expected a header `path,label\[,group\]`, found `file,class`; write"):
        discover_images(path)


def test_headerless_rows_are_read_with_a_note(images: Path) -> None:
    found = discover_images(_manifest(images, "bare.csv", "\n".join(ROWS)))
    assert found.notes == ["manifest bare.csv has no header row; read its columns as path,label[,group]"]
    _all_rows_used(found, images)


def test_latin1_manifest_says_it_is_not_utf8(images: Path) -> None:
    path = _manifest(images, "latin1.csv", "path,label\ngood/g0.png,gut\ngood/g1.png,schön\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"^manifest {path}: not a UTF-8 text CSV manifest \('utf-8' codec"):
        discover_images(path)


def test_empty_manifest_says_so(images: Path) -> None:
    path = _manifest(images, "empty.csv", "\n\n")
    with pytest.raises(ValueError) as err:
        discover_images(path)
    assert str(err.value) == (
        f"manifest {path}: the file is empty; expected a header `path,label[,group]` and one row per image"
    )


def test_conflicting_and_repeated_rows(images: Path) -> None:
    extra = ["good/g0.png,crack", "crack/c0.png,crack", "nope/missing.png,good", "good/g1.gif,good"]
    found = discover_images(_manifest(images, "dupes.csv", "path,label\n" + "\n".join(ROWS + extra)))
    csv_path = images / "dupes.csv"
    g0 = images / "good" / "g0.png"
    conflict = (
        f"{g0} is listed with conflicting labels (line 2 says 'good', line 14 says 'crack'); keep one row per file, "
        "with the right label"
    )
    assert found.quarantine == [
        {"path": f"{csv_path}:2", "stage": "ingest", "reason": conflict},
        {"path": f"{csv_path}:14", "stage": "ingest", "reason": conflict},
        {
            "path": f"{csv_path}:15",
            "stage": "ingest",
            "reason": f"path listed twice: {images / 'crack' / 'c0.png'} (line 8 is kept)",
        },
        {"path": f"{csv_path}:16", "stage": "ingest", "reason": f"file not found: {images / 'nope' / 'missing.png'}"},
        {
            "path": f"{csv_path}:17",
            "stage": "ingest",
            "reason": "extension .gif is not one of .png, .jpg, .jpeg, .bmp, .tif, .tiff",
        },
    ]
    assert set(found.records["path"]) == {str(images / r.split(",")[0]) for r in ROWS} - {str(g0)}


def test_paths_outside_the_manifest_folder_are_listed(images: Path) -> None:
    (images / "review").mkdir(exist_ok=True)
    found = discover_images(_manifest(images / "review", "m.csv", "path,label\n" + "\n".join(f"../{r}" for r in ROWS)))
    assert found.notes == [
        f"12 manifest paths point outside the manifest's folder {images / 'review'} (allowed): ../good/g0.png, "
        "../good/g1.png, ../good/g2.png, ..."
    ]
    _all_rows_used(found, images)


# ----------------------------------------------------------------------------------------------- class names, groups


def _records(labels: list[str], groups: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sample_id": [f"s{i}.png" for i in range(len(labels))],
            "path": [f"/x/s{i}.png" for i in range(len(labels))],
            "label_raw": labels,
            "stratum": "",
            "group": groups or [""] * len(labels),
        }
    )


def test_case_variants_of_good_are_merged_and_trained_as_the_negative_class() -> None:
    lab = make_splits(_records(["Good"] * 8 + ["good"] * 32 + ["defective"] * 40), "manifest", LabelConfig(), 0)
    assert lab.class_names == ["good", "defective"]
    assert (lab.table["label"] == 0).sum() == 40 and len(lab.table) == 80
    assert "class names 'good' (32 rows), 'Good' (8 rows) differ only in case or surrounding spaces" in lab.notes[0]


def test_typo_of_the_negative_class_stops_naming_both_spellings() -> None:
    with pytest.raises(LabelError) as err:
        make_splits(_records(["good"] * 30 + ["goood"] * 5 + ["crack"] * 30), "folder", LabelConfig(), 0)
    assert str(err.value) == (
        "class 'goood' (5 images) is 1 edit from the negative class 'good' (30 images) and would be trained as "
        "defective; correct the misspelt labels or folder name, or rename one class so the names differ more if "
        "both are real"
    )


def test_rare_near_twin_of_a_larger_class_stops() -> None:
    with pytest.raises(LabelError) as err:
        make_splits(_records(["good"] * 40 + ["defective"] * 37 + ["defectve"] * 3), "manifest", LabelConfig(), 0)
    assert str(err.value) == (
        "class 'defectve' (3 of 80 images) is 1 edit from the larger class 'defective' (37 images) and looks like a "
        "typo; give those images one spelling, or rename one class so the names differ more if both are real"
    )


def test_names_that_differ_only_in_digits_are_distinct_classes() -> None:
    lab = make_splits(_records(["Class1"] * 10 + ["Class2"] * 3), "folder", LabelConfig(mode="multiclass"), 0)
    assert lab.class_names == ["Class1", "Class2"] and len(lab.table) == 13


def test_three_groups_split_with_a_note() -> None:
    labels = ["good", "crack"] * 30
    lab = make_splits(_records(labels, [f"wafer{i % 3}" for i in range(60)]), "manifest", LabelConfig(), 0)
    t = lab.table
    test_groups = set(t.loc[t["split"] == "test", "group"])
    assert len(test_groups) == 1 and not test_groups & set(t.loc[t["split"] != "test", "group"])
    assert lab.notes[0] == (
        "only 3 groups for the test split, so it holds one whole group (33% of 60 images instead of 25%): no group "
        "is in two splits"
    )
    assert len(t) == 60
