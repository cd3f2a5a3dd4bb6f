"""Hub-side files of igmu_hf's custom pipelines, one folder per pipeline (installed as ``igmu_hf.pipelines``).

Each file is self-contained (torch + diffusers) and is copied into the pipeline folders that use it, so the folder
loads with stock diffusers: ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)``.
"""
