"""Receler (erasers after each cross-attention): ``pipeline_receler.py``."""
