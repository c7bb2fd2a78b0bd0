"""Real-data conversion: throughput and peak memory for 20,000 CelebA-sized JPEGs.

    python benchmarks/bench_convert.py [--n 20000] [--root /tmp/fb-bench-faces]

Builds (once) a folder dataset of ``--n`` 178x218 JPEG faces plus ``labels.csv``, then
converts 2,000, ``--n`` and 3 x ``--n`` images (the last through symlinked copies of the
folder) to 32-px shards, each in a fresh subprocess so its peak memory is its own.
Baseline: the straightforward loop a script would run (PIL open, convert, crop, resize,
one image at a time, all rows collected, then written), timed the same way. Prints
images/s, the ratio to the baseline, the peak RSS of the main process (and its growth
during the conversion) and of the decode processes; the streamed conversion's memory
should not grow with the image count.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image


def build(root: Path, n: int) -> None:
    """Write ``n`` JPEG faces (rendered at 64 px, enlarged to 178x218) and labels.csv."""
    from facebalance.data import synthfaces

    if (root / "labels.csv").is_file() and len(pd.read_csv(root / "labels.csv")) >= n:
        return
    spec = synthfaces.SplitSpec(n=n)
    table = synthfaces.sample_attributes(spec, 0, "train")
    files = [f"img/{i // 1000:03d}/{i:06d}.jpg" for i in range(n)]

    def save(args: tuple[str, np.ndarray]) -> None:
        path = root / args[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(args[1]).resize((178, 218), Image.Resampling.BICUBIC).save(path,
                                                                                   quality=90)

    with ThreadPoolExecutor(4) as pool:
        for start in range(0, n, 1000):
            images = synthfaces.render(table.iloc[start:start + 1000], 64, start)
            list(pool.map(save, zip(files[start:start + 1000], images, strict=True)))
    pd.DataFrame({"file": files, "blond": table["blond"], "male": table["male"]}).to_csv(
        root / "labels.csv", index=False)


def _status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def _reset_peak() -> float:
    """Reset this process's peak RSS (Linux clear_refs) and return the current RSS in MB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mb("VmRSS")


def child(root: Path, n: int, mode: str, workers: int) -> None:
    """One measured conversion; prints a JSON line."""
    from facebalance.config import DatasetParams
    from facebalance.data.prepare import prepare_dataset
    from facebalance.data.shards import encode_png_batch, write_table_atomic

    labels = pd.read_csv(root / "labels.csv")
    copies = -(-n // len(labels))  # beyond the files on disk: the same files via symlinks
    for k in range(1, copies):
        link = root / f"copy{k}"
        if not link.is_symlink():
            link.symlink_to(".")
    labels = pd.concat([labels.assign(file=f"copy{k}/" + labels["file"]) if k else labels
                        for k in range(copies)]).head(n)
    sub = root / f"labels-{n}.csv"
    labels.to_csv(sub, index=False)
    out = root.parent / f"{root.name}-out-{mode}-{n}"
    before = _reset_peak()  # imports and label reading are not the conversion's memory
    t = time.perf_counter()
    if mode == "naive":
        rows = []
        for f in labels["file"]:
            with Image.open(root / f) as im:
                w, h = im.size
                side = min(w, h, 128)
                left, top = (w - side) // 2, (h - side) // 2
                im = im.convert("RGB").crop((left, top, left + side, top + side))
                rows.append(np.asarray(im.resize((32, 32), Image.Resampling.BILINEAR)))
        frame = labels.assign(image=encode_png_batch(np.stack(rows)))
        write_table_atomic(frame, out / "all.parquet", row_group_size=1000)
    else:
        p = DatasetParams(name="folder", root=str(root), labels=sub.name, crop=128,
                          workers=workers, target="blond", protected="male")
        prepare_dataset(p, out, seed=0, image_size=32, progress=False)
    seconds = time.perf_counter() - t
    workers_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"n": n, "mode": mode, "workers": workers, "seconds": seconds,
                      "peak_mb": _status_mb("VmHWM"), "before_mb": before,
                      "worker_peak_mb": workers_mb}))


def run(root: Path, n: int, mode: str, workers: int = 1) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", "--root", str(root),
                           "--n", str(n), "--mode", mode, "--workers", str(workers)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--root", type=Path, default=Path("/tmp/fb-bench-faces"))
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--mode", default="stream")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    if args.child:
        child(args.root, args.n, args.mode, args.workers)
        return
    t = time.perf_counter()
    build(args.root, args.n)
    print(f"dataset: {args.n} JPEGs 178x218 in {args.root} ({time.perf_counter() - t:.0f} s)")
    small, large = min(2000, args.n), 3 * args.n
    runs = [run(args.root, args.n, "naive"),
            run(args.root, args.n, "stream", 1),
            run(args.root, small, "stream", 2),
            run(args.root, args.n, "stream", 2),
            run(args.root, large, "stream", 2)]
    base = runs[0]["n"] / runs[0]["seconds"]
    print(f"{'images':>7} {'method':<24} {'img/s':>7} {'ratio':>6} {'main peak MB':>13} "
          f"{'growth MB':>10} {'worker peak MB':>15}")
    for r in runs:
        rate = r["n"] / r["seconds"]
        name = "naive loop (baseline)" if r["mode"] == "naive" else \
            f"streamed, {r['workers']} process(es)"
        print(f"{r['n']:>7} {name:<24} {rate:>7.0f} {rate / base:>5.2f}x "
              f"{r['peak_mb']:>13.0f} {r['peak_mb'] - r['before_mb']:>10.0f} "
              f"{r['worker_peak_mb']:>15.0f}")
    def growth(r: dict) -> float:
        return r["peak_mb"] - r["before_mb"]

    print(f"streamed: memory growth {small} -> {args.n} images: "
          f"{growth(runs[3]) - growth(runs[2]):+.0f} MB; {args.n} -> {large} images: "
          f"{growth(runs[4]) - growth(runs[3]):+.0f} MB "
          f"(images: {large - args.n} x {32 * 32 * 3} bytes = "
          f"{(large - args.n) * 32 * 32 * 3 / 2**20:.0f} MB decoded)")


if __name__ == "__main__":
    main()
