#!/usr/bin/env python
"""Train MultClf heads (the EvalIGMU forgetting classifier) with ``transformers.Trainer``.

The CLIP vision tower stays frozen; only the gated-MLP heads learn. Data:
  * ``--dataset_name_or_path DIR`` an image folder (``DIR/<class>/*.png``): each class becomes a one-vs-rest task;
  * ``--dataset_name_or_path ID_OR_DIR --tasks a b`` a ``datasets`` dataset (Hub id or ``save_to_disk`` folder) with
    an image column and one 0/1 column per task (-1 = unknown);
  * ``--mini_world`` the mini world's scenes with exact labels for its 19 tasks (the first mini heads);
  * ``--dataset_name_or_path DATAIGM --dataset_config_name circle star`` DataIGM configs (a built folder or Hub id):
    each config trains the head of its task on its ``train`` split and is scored on its ``test`` split per source;
    ``--sources REAL`` keeps only some sources (the paper's "detector trained on REAL only").
    With ``--pretrained_model_name_or_path`` only the heads of those tasks train (the others stay as saved);
    ``--reset_heads`` starts them from fresh weights. The shipped mini heads of circle, star, sketch and striped are
    the first heads (``--mini_world`` below) fine-tuned on the mini DataIGM:

    python examples/train_multclf.py --pretrained_model_name_or_path multclf-mini \
        --dataset_name_or_path mini-dataigm --dataset_config_name circle star sketch striped \
        --learning_rate 1e-4 --num_train_epochs 5 --output_dir multclf-dataigm

    python examples/train_multclf.py --mini_world --output_dir multclf-mini
    python examples/train_multclf.py --clip_name_or_path openai/clip-vit-large-patch14 \
        --dataset_name_or_path my_folder --output_dir multclf --push_to_hub --hub_model_id me/multclf
"""

import argparse
import sys
import json
import os
from pathlib import Path

import datasets
import numpy as np
import torch
from transformers import CLIPImageProcessor, Trainer, TrainingArguments, set_seed

from igmu_hf.detectors.multclf import MultClfCollator, MultClfModel
from igmu_hf.mini import CLIP_PATH


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip_name_or_path", type=str, default=CLIP_PATH,
                   help="CLIP model whose vision tower is the backbone (default: the mini CLIP).")
    p.add_argument("--pretrained_model_name_or_path", type=str, default=None,
                   help="Continue from a saved MultClf (its tasks and heads) instead of fresh heads.")
    p.add_argument("--dataset_name_or_path", type=str, default=None, help="Image folder, saved dataset or Hub id.")
    p.add_argument("--mini_world", action="store_true", help="Train on the mini world's scenes (19 tasks).")
    p.add_argument("--num_images", type=int, default=20000, help="Mini-world images (with --mini_world).")
    p.add_argument("--tasks", type=str, nargs="*", default=None, help="Label columns = task names.")
    p.add_argument("--dataset_config_name", type=str, nargs="*", default=None,
                   help="DataIGM configs to train on (each one's head learns target vs pair).")
    p.add_argument("--sources", type=str, nargs="*", default=None,
                   help="DataIGM sources to keep (REAL, LAION, SD-GEN; default all three).")
    p.add_argument("--reset_heads", action="store_true",
                   help="With --pretrained_model_name_or_path: start the trained heads from fresh weights.")
    p.add_argument("--image_column", type=str, default="image")
    p.add_argument("--validation_split", type=float, default=0.05)
    p.add_argument("--output_dir", type=str, required=True)
    p.add_argument("--num_train_epochs", type=float, default=3)
    p.add_argument("--per_device_train_batch_size", type=int, default=256)
    p.add_argument("--learning_rate", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume_from_checkpoint", type=str, default=None)
    p.add_argument("--push_to_hub", action="store_true")
    p.add_argument("--hub_model_id", type=str, default=None)
    return p.parse_args(argv)


def load_data(args):
    """(dataset, tasks, collator kwargs)."""
    if args.mini_world:
        from igmu_hf.mini.multclf import MINI_TASKS, mini_multclf_dataset

        return mini_multclf_dataset(args.num_images, seed=args.seed + 7), MINI_TASKS, {}
    if args.dataset_name_or_path is None:
        raise ValueError("Pass --dataset_name_or_path (image folder, saved dataset or Hub id) or --mini_world.")
    if args.dataset_config_name:
        from igmu_hf.data.training import dataigm_task_dataset

        return dataigm_task_dataset(args.dataset_name_or_path, args.dataset_config_name, "train", args.sources), \
            list(args.dataset_config_name), {}
    path = Path(args.dataset_name_or_path)
    if path.is_dir() and (path / "dataset_info.json").exists():
        ds = datasets.load_from_disk(str(path))
    elif path.is_dir() and not args.tasks:
        ds = datasets.load_dataset("imagefolder", data_dir=str(path), split="train")
    else:
        ds = datasets.load_dataset(args.dataset_name_or_path, split="train")
    if isinstance(ds, datasets.DatasetDict):
        ds = ds["train"]
    if args.image_column not in ds.column_names:
        raise ValueError(f"--image_column {args.image_column!r} is not a column; columns: {ds.column_names}.")
    if args.tasks:
        missing = [t for t in args.tasks if t not in ds.column_names]
        if missing:
            raise ValueError(f"Task columns {missing} are not in the dataset; columns: {ds.column_names}.")
        return ds, list(args.tasks), {}
    if "label" not in ds.column_names or not isinstance(ds.features["label"], datasets.ClassLabel):
        raise ValueError("Pass --tasks (one 0/1 column per task), or give an image folder whose class folders "
                         "become the tasks.")
    names = ds.features["label"].names
    return ds, names, {"label_column": "label", "class_names": names}


def compute_metrics(eval_pred) -> dict:
    """Accuracy of each head's thresholded prediction, ignoring unknown (-1) labels."""
    logits, labels = eval_pred
    logits = logits[0] if isinstance(logits, tuple) else logits  # (logits, image_embeds)
    mask = labels >= 0
    correct = ((logits > 0) == (labels > 0.5)) & mask
    return {"accuracy": float(correct.sum() / max(mask.sum(), 1)),
            "worst_task_accuracy": float(np.min(correct.sum(0) / np.maximum(mask.sum(0), 1)))}


def main(argv=None):
    from igmu_hf.errors import check_hub_id
    from igmu_hf.outputs import check_writable_dir

    args = parse_args(argv)
    check_writable_dir(args.output_dir)  # before any work
    if args.push_to_hub:
        check_hub_id("--hub_model_id", args.hub_model_id)
    set_seed(args.seed)
    ds, tasks, collate_kwargs = load_data(args)
    if args.pretrained_model_name_or_path:
        model = MultClfModel.from_pretrained(args.pretrained_model_name_or_path, dtype=torch.float32)  # trains in fp32
        missing = [t for t in tasks if t not in model.config.tasks]
        if missing:
            raise ValueError(f"The saved MultClf has no head for {missing}; its heads: {model.config.tasks}. Train "
                             f"from --clip_name_or_path instead, or name tasks it has.")
        processor = CLIPImageProcessor.from_pretrained(args.pretrained_model_name_or_path)
        model.train_only(tasks, reset=args.reset_heads, seed=args.seed)
    else:
        model = MultClfModel.from_clip(args.clip_name_or_path, tasks=tasks)
        processor = CLIPImageProcessor.from_pretrained(args.clip_name_or_path)
    model_tasks = list(model.config.tasks)
    if args.dataset_config_name:  # DataIGM has its own test split: evaluate on it, not on a slice of train
        from igmu_hf.data.training import dataigm_task_dataset

        split = {"train": ds, "test": dataigm_task_dataset(args.dataset_name_or_path, args.dataset_config_name,
                                                           "test", args.sources)}
        collate_kwargs = {**collate_kwargs, "missing_as_unknown": True}  # heads not trained here: label -1
    else:
        split = ds.train_test_split(test_size=args.validation_split, seed=args.seed)
    training_args = TrainingArguments(
        output_dir=args.output_dir, num_train_epochs=args.num_train_epochs, learning_rate=args.learning_rate,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_train_batch_size, eval_strategy="epoch", save_strategy="epoch",
        save_total_limit=2, logging_steps=20, seed=args.seed, remove_unused_columns=False, report_to=[],
        label_names=["labels"], dataloader_num_workers=0, push_to_hub=False, use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=model, args=training_args, train_dataset=split["train"], eval_dataset=split["test"],
                      data_collator=MultClfCollator(processor, model_tasks, args.image_column, **collate_kwargs),
                      compute_metrics=compute_metrics)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    metrics = trainer.evaluate()
    model.save_pretrained(args.output_dir)
    processor.save_pretrained(args.output_dir)
    if args.dataset_config_name:  # the paper's Table 6: accuracy, precision, recall, F1 per task and source
        from igmu_hf.data.reliability import MultClfDetector, detector_reliability, reliability_markdown

        study = detector_reliability(args.dataset_name_or_path, args.dataset_config_name,
                                     [MultClfDetector("MultClf", args.output_dir)])
        metrics["per_source"] = {c: {s: e["MultClf"] for s, e in v.items()} for c, v in study["results"].items()}
        (Path(args.output_dir) / "per_source_accuracy.md").write_text(reliability_markdown(study))
    (Path(args.output_dir) / "eval_results.json").write_text(json.dumps(metrics, indent=2))
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}, indent=2))
    if "per_source" in metrics:
        print((Path(args.output_dir) / "per_source_accuracy.md").read_text())
    if args.push_to_hub:
        from igmu_hf.hub import push_folder_to_hub

        push_folder_to_hub(args.output_dir, args.hub_model_id)
    return metrics


if __name__ == "__main__":
    from igmu_hf.errors import run_command

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(run_command(lambda: main() and 0, "train_multclf.py"))
