"""DataIGM as a ``datasets`` builder class, for code that wants the builder itself rather than ``load_dataset``.

``load_dataset`` no longer runs dataset scripts (datasets >= 4), so this file is not loaded by the Hub: a built
folder loads with ``load_dataset(folder, config)`` through its card's YAML ``configs:``, and the builder below is
what ``igmu dataigm build --repo_id`` uses to prepare the local cache that ``load_dataset(repo_id, config)`` reads
offline::

    from dataigm import DataIGM
    builder = DataIGM(built_dir="mini-dataigm", repo_id="igmu/dataigm", dataset_name="dataigm", config_name="circle")
    builder.download_and_prepare()
    ds = builder.as_dataset(split="test")
"""

from igmu_hf.data.build import DataIGMBuilder as DataIGM  # noqa: F401  (the class lives in the library)
from igmu_hf.data.schema import FEATURES, LABEL_NAMES, SOURCE_NAMES  # noqa: F401
