"""Train the mini world's tiny YOLO on the domain's object boxes (the stand-in for a COCO "person" detector).

    python -m igmu_hf.mini.train_yolo --output_dir /tmp/mini_yolo --export_to src/igmu_hf/mini/weights/yolo

The data are drawn by :func:`igmu_hf.mini.domain.make_dataset` (exact boxes), written in the ultralytics layout
(``images/`` + ``labels/`` + ``data.yaml``) and trained with ultralytics' own trainer on CPU. The architecture is
ultralytics' YOLOv8 with a narrower width so it trains in minutes and ships in a few hundred kB.
"""

import argparse
import json
from pathlib import Path

import yaml
from PIL import Image

from .domain import IMAGE_SIZE, make_dataset


NAMES = {0: "object"}
IMGSZ = 64  # YOLO needs a multiple of its 32-pixel stride; 32x32 images are upscaled 2x


def write_yolo_dataset(root: Path, num_images: int, seed: int, split: str) -> None:
    """Images and YOLO-format labels (``class xc yc w h``, normalised) of ``num_images`` mini scenes."""
    images, _, labels = make_dataset(num_images, seed=seed)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i, (img, lab) in enumerate(zip(images, labels)):
        Image.fromarray(img).save(root / "images" / split / f"{i:06d}.png")
        rows = []
        for _, (x0, y0, x1, y1) in lab["boxes"]:
            rows.append(f"0 {(x0 + x1) / 2 / IMAGE_SIZE:.6f} {(y0 + y1) / 2 / IMAGE_SIZE:.6f} "
                        f"{(x1 - x0) / IMAGE_SIZE:.6f} {(y1 - y0) / IMAGE_SIZE:.6f}")
        (root / "labels" / split / f"{i:06d}.txt").write_text("\n".join(rows))


def tiny_yolo_yaml(path: Path) -> Path:
    """YOLOv8's architecture (read from ultralytics) at width 0.125 and one class."""
    from ultralytics.nn.tasks import yaml_model_load

    cfg = yaml_model_load("yolov8n.yaml")
    cfg = {k: v for k, v in cfg.items() if k != "yaml_file"}
    cfg.update(nc=len(NAMES), scales={"t": [0.33, 0.125, 256]}, scale="t")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", type=str, required=True, help="Dataset and ultralytics run folder.")
    parser.add_argument("--export_to", type=str, default=None, help="Save the trained detector here (safetensors).")
    parser.add_argument("--num_images", type=int, default=4000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    from ultralytics import YOLO

    from ..detectors.yolo import save_yolo

    root = Path(args.output_dir).resolve()
    data = root / "data"
    if not (data / "data.yaml").exists():
        write_yolo_dataset(data, args.num_images, args.seed + 101, "train")
        write_yolo_dataset(data, max(200, args.num_images // 10), args.seed + 202, "val")
        (data / "data.yaml").write_text(yaml.safe_dump({"path": str(data), "train": "images/train",
                                                        "val": "images/val", "names": NAMES}))
    model = YOLO(str(tiny_yolo_yaml(root / "yolo_tiny.yaml")), task="detect")
    results = model.train(data=str(data / "data.yaml"), imgsz=IMGSZ, epochs=args.epochs, batch=args.batch_size,
                          device="cpu", workers=0, seed=args.seed, deterministic=True, plots=False, amp=False,
                          project=str(root / "runs"), name="train", exist_ok=True, verbose=False,
                          fliplr=0.5, mosaic=1.0, close_mosaic=3)
    metrics = {k: float(v) for k, v in getattr(results, "results_dict", {}).items()}
    print(json.dumps(metrics, indent=2))
    if args.export_to:
        best = YOLO(str(root / "runs" / "train" / "weights" / "best.pt"))
        save_yolo(best, args.export_to, imgsz=IMGSZ,
                  extra={"trained_on": f"mini domain boxes, {args.num_images} images, seed {args.seed}",
                         "epochs": args.epochs, "val_metrics": metrics})
        print(f"saved to {args.export_to}")


if __name__ == "__main__":
    main()
