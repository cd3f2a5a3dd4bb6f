"""Safe Latent Diffusion (inference-time safety guidance): ``pipeline_sld.py``."""
