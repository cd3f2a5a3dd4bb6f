#!/usr/bin/env python
"""Images per second of DataIGM's SD-GEN build on the mini pipeline, with 1 and 2 processes (torchrun on CPU).

    python benchmarks/bench_dataigm_build.py [--num_train 96] [--num_test 32] [--work DIR]

Each run builds the mini config ``circle`` with the original mini pipeline only (no unlearned models, so no
unlearning time is counted), then reads the SD-GEN chunks it wrote: images generated (kept or not) / SD-GEN
seconds. It also says whether the two runs wrote the same rows.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

BUILD = ("import sys, json; from igmu_hf.data.mini import build_mini_dataigm; "
         "r = build_mini_dataigm(sys.argv[1], ['circle'], [], {'train': int(sys.argv[2]), 'test': int(sys.argv[3])}, "
         "chunk_size=32, progress=False); print(json.dumps(r['seconds']))")


def run(nproc: int, folder: Path, num_train: int, num_test: int) -> dict:
    script = folder.parent / "build.py"
    script.write_text(BUILD)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", "29544",
           str(script), str(folder), str(num_train), str(num_test)]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": str(max(1, 2 // nproc))}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    seconds = json.loads(proc.stdout.strip().splitlines()[-1])["SD-GEN"]
    generated = sum(pq.read_metadata(p).num_rows for p in (folder / ".work" / "sd-gen").rglob("chunk-*.parquet"))
    return {"processes": nproc, "sd_gen_seconds": seconds, "images_generated": generated,
            "images_per_second": round(generated / seconds, 2)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--num_train", type=int, default=96)
    p.add_argument("--num_test", type=int, default=32)
    p.add_argument("--work", type=str, default=None)
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-dataigm-"))
    results = []
    for nproc in (1, 2):
        (work / f"p{nproc}").mkdir(parents=True, exist_ok=True)
        results.append(run(nproc, work / f"p{nproc}" / "dataigm", args.num_train, args.num_test))
        print(json.dumps(results[-1]))
    same = all(pq.read_table(a).equals(pq.read_table(work / "p2" / "dataigm" / a.relative_to(work / "p1" / "dataigm")))
               for a in sorted((work / "p1" / "dataigm" / "data").rglob("*.parquet")))
    print("| processes | SD-GEN images | seconds | images/s |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['processes']} | {r['images_generated']} | {r['sd_gen_seconds']:.1f} | {r['images_per_second']:.1f} |")
    print(f"1- and 2-process builds wrote identical rows: {same}")


if __name__ == "__main__":
    from results import record

    record("dataigm_build", "DataIGM SD-GEN build speed", main)
