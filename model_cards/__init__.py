"""Model card templates (Jinja, huggingface_hub.ModelCard), installed as igmu_hf.model_cards."""
