"""Check a trained mini-world base (VAE + classifier): classifier recall on drawings and on VAE reconstructions.

    python examples/mini_world/check_base.py build/mini [grid.png]
"""

import json
import sys
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image

from igmu_hf.mini.classifier import MiniClassifier
from igmu_hf.mini.domain import make_dataset
from igmu_hf.mini.quality import render_recall


def main(out: str, grid: str | None = None) -> None:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    clf = MiniClassifier.from_pretrained(Path(out) / "classifier" / "final").to(device).eval()
    vae = AutoencoderKL.from_pretrained(Path(out) / "vae" / "final").to(device).eval()
    print(json.dumps({"drawings": render_recall(clf), "reconstructions": render_recall(clf, vae)}))
    if grid:
        images, _, _ = make_dataset(16, 777)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float().to(device) / 127.5 - 1
        with torch.no_grad():
            r = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
        r = ((r + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        both = np.concatenate([images, r]).reshape(4, 8, 32, 32, 3).transpose(0, 2, 1, 3, 4).reshape(128, 256, 3)
        Image.fromarray(both).resize((512, 256), Image.NEAREST).save(grid)


if __name__ == "__main__":
    main(*sys.argv[1:])
