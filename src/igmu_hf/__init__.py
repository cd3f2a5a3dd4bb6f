"""igmu_hf: image generation model unlearning (IGMU) with Hugging Face conventions."""

__version__ = "0.1.0"
