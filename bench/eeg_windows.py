"""Benchmark: preprocess long EDF recordings and read random 4-s windows from the memory-mapped result.

For each length in ``--hours`` this writes an 18-channel 256-Hz EDF of **plain noise** (Gaussian noise plus a
10-Hz rhythm, a DC offset and 60-Hz mains pickup, streamed to disk record by record, so the writer itself stays
small; the simulator would hold the whole recording in memory), runs
:func:`tasks.ingest.preprocess.preprocess_recording` on it (the time per hour of EEG is reported), then draws
random 4-s windows in batches of 256 three ways:

* ``windows_per_s``: ``np.load(..., mmap_mode="r")``, a plain ndarray view of it (``np.asarray``), each window
  copied into a preallocated (B, C, W) batch: the recommended reader;
* ``windows_per_s_memmap_stack``: slicing the ``np.memmap`` itself and ``np.stack``-ing the batch, as a naive
  ``Dataset.__getitem__`` plus collate would (``np.memmap`` does bookkeeping on every slice);
* ``windows_per_s_pread``: no mapping at all, one ``os.preadv`` per channel and window (Linux).

Preprocessing and each reader run in a fresh process, so their peak resident memory (``ru_maxrss``) is their own;
the import baseline of such a process is reported too.

Reading right after writing finds the file in the page cache (warm), the usual case when training epochs repeat.
Pages of the mapping that were read count in the reader's RSS as file-backed memory (``RssFile``), which the
kernel can drop at any time; ``RssAnon`` is the memory the process really owns.

Usage::

    python bench/eeg_windows.py --hours 2 8
    python bench/eeg_windows.py --hours 2 --out json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

CHANNELS = (
    "FP1-F7", "F7-T7", "T7-P7", "P7-O1", "FP1-F3", "F3-C3", "C3-P3", "P3-O1", "FP2-F4",
    "F4-C4", "C4-P4", "P4-O2", "FP2-F8", "F8-T8", "T8-P8", "P8-O2", "FZ-CZ", "CZ-PZ",
)  # fmt: skip
SFREQ = 256
RANGE_UV = 2000.0


def _field(text: str, width: int) -> bytes:
    return text.ljust(width)[:width].encode("ascii")


def write_noise_edf(path: Path, hours: float, seed: int = 0, chunk_s: int = 60) -> None:
    """Stream an 18-channel 256-Hz EDF of noise (1-s data records) to ``path``, chunk by chunk."""
    n_records = int(round(hours * 3600))
    ns = len(CHANNELS)
    header = b"".join(
        [
            _field("0", 8), _field("X X X X", 80), _field("Startdate 01-JAN-2001 X X X", 80),
            _field("01.01.01", 8), _field("00.00.00", 8), _field(str(256 * (ns + 1)), 8), _field("", 44),
            _field(str(n_records), 8), _field("1", 8), _field(str(ns), 4),
        ]
        + [_field(c, 16) for c in CHANNELS]
        + [_field("", 80)] * ns + [_field("uV", 8)] * ns
        + [_field(f"{-RANGE_UV:g}", 8)] * ns + [_field(f"{RANGE_UV:g}", 8)] * ns
        + [_field("-32768", 8)] * ns + [_field("32767", 8)] * ns
        + [_field("", 80)] * ns + [_field(str(SFREQ), 8)] * ns + [_field("", 32)] * ns
    )  # fmt: skip
    rng = np.random.default_rng(seed)
    scale = 32767.0 / RANGE_UV  # digital units per uV (symmetric ranges: no offset)
    offsets = rng.uniform(-80, 80, size=(ns, 1))  # uV of DC per channel
    with path.open("wb") as fh:
        fh.write(header)
        for r0 in range(0, n_records, chunk_s):
            r = min(chunk_s, n_records - r0)
            t = (r0 * SFREQ + np.arange(r * SFREQ)) / SFREQ
            uv = rng.normal(0.0, 20.0, (ns, t.size)) + offsets
            uv += 15.0 * np.sin(2 * np.pi * 10.0 * t) + 5.0 * np.sin(2 * np.pi * 60.0 * t)
            digital = np.clip(np.round(uv * scale), -32768, 32767).astype("<i2")
            fh.write(digital.reshape(ns, r, SFREQ).transpose(1, 0, 2).tobytes())  # record by record


def _rss_mib() -> dict[str, float]:
    """Current RssAnon / RssFile and peak (VmHWM) in MiB, from /proc/self/status (Linux)."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile", "VmHWM", "VmRSS"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _preprocess_job(edf: str, npy: str, queue: mp.Queue) -> None:
    from tasks.ingest.preprocess import preprocess_recording

    baseline = _peak_mib()
    t0 = time.perf_counter()
    meta = preprocess_recording(Path(edf), list(CHANNELS), Path(npy))
    queue.put({"seconds": time.perf_counter() - t0, "baseline_mib": baseline, "peak_mib": _peak_mib(),
               "n_samples": meta.n_samples, "filter": meta.filter})  # fmt: skip


def _read_job(npy: str, method: str, window_s: float, batch: int, n_windows: int, seed: int, queue: mp.Queue) -> None:
    """Read random windows in batches. ``memmap``: slice the ``np.memmap`` per window and ``np.stack`` the batch;
    ``view``: slice a plain ndarray view of the same mapping (``np.asarray``, which skips ``np.memmap``'s
    per-slice bookkeeping) and copy into a preallocated (B, C, W) batch; ``pread``: no mapping, one positioned
    read per channel and window straight into the preallocated batch (resident memory stays at the batch)."""
    baseline = _peak_mib()
    arr = np.load(npy, mmap_mode="r")  # (C, T) float32
    width = int(window_s * SFREQ)
    rng = np.random.default_rng(seed)
    n_batches = max(1, n_windows // batch)
    checksum = 0.0
    view = np.asarray(arr)
    n_ch, n_times, offset = arr.shape[0], arr.shape[1], arr.offset
    out = np.empty((batch, n_ch, width), dtype=np.float32)
    fd = os.open(npy, os.O_RDONLY)
    t0 = time.perf_counter()
    for _ in range(n_batches):
        starts = rng.integers(0, arr.shape[1] - width, size=batch)
        if method == "memmap":
            x = np.stack([arr[:, s : s + width] for s in starts])  # (B, C, W), a copy in RAM
        elif method == "pread":
            for k, s in enumerate(starts):
                for c in range(n_ch):
                    os.preadv(fd, [out[k, c]], offset + 4 * (c * n_times + int(s)))
            x = out
        else:
            for k, s in enumerate(starts):
                out[k] = view[:, s : s + width]
            x = out
        checksum += float(x[:, 0, 0].sum())  # touch the batch so nothing is optimised away
    seconds = time.perf_counter() - t0
    end = _rss_mib()  # while the mapping is still in place: RssFile counts the pages it brought in
    os.close(fd)
    queue.put({"seconds": seconds, "windows": n_batches * batch, "baseline_mib": baseline, "peak_mib": _peak_mib(),
               "end": end, "checksum": checksum})  # fmt: skip


def _run(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode:
        raise RuntimeError(f"{target.__name__} exited with {proc.exitcode}")
    return result


def bench(hours: float, workdir: Path, window_s: float, batch: int, n_windows: int, seed: int) -> dict:
    edf = workdir / f"noise_{hours:g}h.edf"
    npy = workdir / f"noise_{hours:g}h.npy"
    t0 = time.perf_counter()
    write_noise_edf(edf, hours, seed=seed)
    write_s = time.perf_counter() - t0
    pre = _run(_preprocess_job, str(edf), str(npy))
    naive = _run(_read_job, str(npy), "memmap", window_s, batch, n_windows, seed)
    read = _run(_read_job, str(npy), "view", window_s, batch, n_windows, seed)
    pread = _run(_read_job, str(npy), "pread", window_s, batch, n_windows, seed) if hasattr(os, "preadv") else None
    return {
        "hours": hours,
        "edf_mib": edf.stat().st_size / 2**20,
        "npy_mib": npy.stat().st_size / 2**20,
        "write_edf_s": write_s,
        "preprocess_s": pre["seconds"],
        "preprocess_s_per_hour": pre["seconds"] / hours,
        "preprocess_peak_rss_mib": pre["peak_mib"],
        "preprocess_baseline_rss_mib": pre["baseline_mib"],
        "windows": read["windows"],
        "windows_per_s": read["windows"] / read["seconds"],
        "windows_per_s_memmap_stack": naive["windows"] / naive["seconds"],
        "windows_per_s_pread": pread["windows"] / pread["seconds"] if pread else None,
        "pread_peak_rss_mib": pread["peak_mib"] if pread else None,
        "read_peak_rss_mib": read["peak_mib"],
        "read_baseline_rss_mib": read["baseline_mib"],
        "read_rss_anon_mib": read["end"].get("RssAnon"),
        "read_rss_file_mib": read["end"].get("RssFile"),
        "filter": pre["filter"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, nargs="+", default=[2.0, 8.0], help="recording lengths (hours)")
    parser.add_argument("--out", choices=["table", "json"], default="table", help="output format")
    parser.add_argument("--window-s", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--n-windows", type=int, default=51200, help="windows read per length")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the EDF and .npy files")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        for h in args.hours:
            results.append(bench(h, workdir, args.window_s, args.batch, args.n_windows, args.seed))
            print(f"# {h:g} h done", file=sys.stderr, flush=True)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.out == "json":
        print(json.dumps(results, indent=2))
        return 0
    cols = [
        ("hours", "{:g}"),
        ("edf_mib", "{:.0f}"),
        ("npy_mib", "{:.0f}"),
        ("preprocess_s", "{:.1f}"),
        ("preprocess_s_per_hour", "{:.1f}"),
        ("preprocess_peak_rss_mib", "{:.0f}"),
        ("preprocess_baseline_rss_mib", "{:.0f}"),
        ("windows_per_s", "{:,.0f}"),
        ("windows_per_s_memmap_stack", "{:,.0f}"),
        ("windows_per_s_pread", "{:,.0f}"),
        ("pread_peak_rss_mib", "{:.0f}"),
        ("read_peak_rss_mib", "{:.0f}"),
        ("read_baseline_rss_mib", "{:.0f}"),
        ("read_rss_anon_mib", "{:.0f}"),
        ("read_rss_file_mib", "{:.0f}"),
    ]
    rows = [[fmt.format(r[name]) if r[name] is not None else "-" for name, fmt in cols] for r in results]
    widths = [max(len(name), *(len(row[i]) for row in rows)) for i, (name, _) in enumerate(cols)]
    print("  ".join(name.rjust(w) for (name, _), w in zip(cols, widths, strict=True)))
    for row in rows:
        print("  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)))
    print(f"# filter: {results[0]['filter']}")
    print(f"# {args.n_windows} random {args.window_s:g}-s windows per length in batches of {args.batch}, warm page "
          "cache; windows_per_s: ndarray view copied into a preallocated batch; windows_per_s_memmap_stack: np.memmap "
          "slices + np.stack; windows_per_s_pread: os.preadv per channel and window, no mapping; read_* RSS "
          "columns are for the view run")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
