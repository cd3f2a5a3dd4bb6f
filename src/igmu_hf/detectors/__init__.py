"""Detectors the EvalIGMU metrics call: MultClf (forgetting), YOLO (person/object preservation), CLIP (scores)."""
