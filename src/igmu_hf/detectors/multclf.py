"""MultClf: the IGMU paper's forgetting classifier as a ``transformers`` model (seed 000, §5.3).

A frozen CLIP vision tower gives image features; each task has its own small binary head, the paper's gated MLP
``x * sigmoid(W2 ReLU(W1 x)) -> LayerNorm -> 256 -> 128 -> 1``. One model holds the heads of many tasks and saves,
loads and pushes like any ``PreTrainedModel``::

    model = MultClfModel.from_clip("openai/clip-vit-large-patch14", tasks=["nudity", "Van Gogh style"])
    ...train the heads (examples/train_multclf.py)...
    model.save_pretrained("multclf"); MultClfModel.from_pretrained("multclf")
"""

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput


class MultClfConfig(PretrainedConfig):
    """Configuration of :class:`MultClfModel`.

    Args:
        vision_config: the CLIP vision tower's config (a dict or ``CLIPVisionConfig``).
        tasks: one name per head, e.g. ``["nudity", "Van Gogh style"]``; the order is the logits' order.
        gate_reduction: ``W1`` maps the feature size ``d`` to ``d // gate_reduction`` (the gate's bottleneck).
        hidden_sizes: the MLP after the LayerNorm (the paper: 256 then 128), then one logit.
        threshold: probability above which an image counts as showing the task's target.
    """

    model_type = "igmu_multclf"
    sub_configs = {"vision_config": CLIPVisionConfig}

    def __init__(self, vision_config: dict | CLIPVisionConfig | None = None, tasks: Sequence[str] = (),
                 gate_reduction: int = 4, hidden_sizes: Sequence[int] = (256, 128), threshold: float = 0.5, **kwargs):
        if isinstance(vision_config, dict):
            vision_config = CLIPVisionConfig(**vision_config)
        self.vision_config = vision_config if vision_config is not None else CLIPVisionConfig()
        self.tasks = list(tasks)
        if len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"`tasks` must be unique, got {self.tasks}.")
        self.gate_reduction = gate_reduction
        self.hidden_sizes = list(hidden_sizes)
        self.threshold = threshold
        super().__init__(**kwargs)


class GatedHead(nn.Module):
    """``x * sigmoid(W2 ReLU(W1 x)) -> LayerNorm -> hidden... -> 1`` (one binary task)."""

    def __init__(self, dim: int, reduction: int, hidden_sizes: Sequence[int]):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(dim, max(1, dim // reduction)), nn.ReLU(),
                                  nn.Linear(max(1, dim // reduction), dim))
        self.norm = nn.LayerNorm(dim)
        layers, d = [], dim
        for h in hidden_sizes:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        self.mlp = nn.Sequential(*layers, nn.Linear(d, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(x * torch.sigmoid(self.gate(x)))).squeeze(-1)


@dataclass
class MultClfOutput(ModelOutput):
    """``logits``: (batch, num_tasks), one logit per head; ``loss`` when ``labels`` were given."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None


class MultClfModel(PreTrainedModel):
    """Frozen CLIP vision tower + one gated-MLP binary head per task."""

    config_class = MultClfConfig
    main_input_name = "pixel_values"
    base_model_prefix = "multclf"
    _no_split_modules = ["CLIPEncoderLayer"]

    def __init__(self, config: MultClfConfig):
        super().__init__(config)
        self.vision_model = CLIPVisionModelWithProjection(config.vision_config)
        self.vision_model.requires_grad_(False)
        dim = config.vision_config.projection_dim
        self.heads = nn.ModuleList(GatedHead(dim, config.gate_reduction, config.hidden_sizes) for _ in config.tasks)
        self.post_init()

    def _init_weights(self, module):
        if isinstance(module, CLIPVisionModelWithProjection):
            return
        if isinstance(module, nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=5 ** 0.5)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @classmethod
    def from_clip(cls, clip_name_or_path: str, tasks: Sequence[str], **config_kwargs) -> "MultClfModel":
        """Fresh heads on a pretrained CLIP vision tower (a ``CLIPModel`` folder or Hub id)."""
        vision = CLIPVisionModelWithProjection.from_pretrained(clip_name_or_path)
        model = cls(MultClfConfig(vision_config=vision.config.to_dict(), tasks=tasks, **config_kwargs))
        model.vision_model.load_state_dict(vision.state_dict())
        model.vision_model.requires_grad_(False)
        return model

    def train_only(self, tasks: Sequence[str], reset: bool = False, seed: int = 0) -> None:
        """Make only the heads of ``tasks`` trainable (the others keep their weights exactly); ``reset`` gives those
        heads fresh weights first (seeded), so they learn from the new data alone."""
        keep = {self.task_index(t) for t in tasks}
        for k, head in enumerate(self.heads):
            head.requires_grad_(k in keep)
            if reset and k in keep:
                from ..seeding import seeded

                with seeded(seed + k):
                    head.apply(self._init_weights)

    def task_index(self, task: str) -> int:
        """Index of ``task``'s head; a clear error names the heads this model has."""
        if task not in self.config.tasks:
            raise ValueError(f"This MultClf has no head for {task!r}; its heads: {self.config.tasks}. Train one with "
                             f"examples/train_multclf.py.")
        return self.config.tasks.index(task)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> MultClfOutput:
        """``labels``: (batch, num_tasks) in {0, 1}, or -1 where a task's label is unknown (masked out of the loss)."""
        with torch.no_grad():
            embeds = self.vision_model(pixel_values=pixel_values).image_embeds
        logits = torch.stack([head(embeds) for head in self.heads], dim=-1)
        loss = None
        if labels is not None:
            labels = labels.to(logits.dtype)
            mask = (labels >= 0).to(logits.dtype)
            per = F.binary_cross_entropy_with_logits(logits, labels.clamp(min=0), reduction="none")
            loss = (per * mask).sum() / mask.sum().clamp(min=1)
        return MultClfOutput(loss=loss, logits=logits, image_embeds=embeds)

    @torch.no_grad()
    def predict_proba(self, pixel_values: torch.Tensor, task: str | None = None) -> torch.Tensor:
        """Sigmoid probabilities: (batch, num_tasks), or (batch,) for one ``task``."""
        self.eval()
        probs = torch.sigmoid(self(pixel_values.to(self.device, self.dtype)).logits.float())
        return probs if task is None else probs[:, self.task_index(task)]


class MultClfCollator:
    """Batches for ``Trainer``: rows with an image column and one 0/1 (or -1 = unknown) column per task.

    An ``imagefolder`` dataset has one ``label`` class column instead; pass ``label_column="label"`` and each class
    name becomes a one-vs-rest task.
    """

    def __init__(self, image_processor, tasks: Sequence[str], image_column: str = "image",
                 label_column: str | None = None, class_names: Sequence[str] | None = None,
                 missing_as_unknown: bool = False):
        self.image_processor = image_processor
        self.missing_as_unknown = missing_as_unknown  # a task without a column is unknown (-1): its head is not trained
        self.tasks = list(tasks)
        self.image_column = image_column
        self.label_column = label_column
        self.class_names = list(class_names) if class_names is not None else None

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        images = [row[self.image_column].convert("RGB") for row in rows]
        pixel_values = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        if self.label_column is not None:
            names = [self.class_names[row[self.label_column]] for row in rows]
            labels = [[float(n == t) for t in self.tasks] for n in names]
        else:
            labels = [[float(row.get(t, -1) if self.missing_as_unknown else row[t]) for t in self.tasks]
                      for row in rows]
        return {"pixel_values": pixel_values, "labels": torch.tensor(labels)}


def load_multclf(pretrained_model_name_or_path: str, **kwargs) -> tuple[MultClfModel, object]:
    """The model (float32, eval) and its image processor, from a folder or Hub id."""
    from transformers import CLIPImageProcessor

    model = MultClfModel.from_pretrained(pretrained_model_name_or_path, dtype=torch.float32, **kwargs).eval()
    processor = CLIPImageProcessor.from_pretrained(pretrained_model_name_or_path)
    return model, processor
