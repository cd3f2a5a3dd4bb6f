"""The mini-world training script is resumable: an interrupted run ends with the same weights."""

import shutil

import torch
from safetensors.torch import load_file

from igmu_hf.mini.train import main, parse_args


def _run(out, extra=()):
    main(parse_args(["--output_dir", str(out), "--stages", "classifier", "--num_images", "64", "--classifier_steps",
                     "4", "--checkpointing_steps", "2", "--train_batch_size", "8", "--classifier_vae_mix", "0", *extra]))
    return load_file(str(out / "classifier" / "final" / "model.safetensors"))


def test_resumed_training_matches_uninterrupted(tmp_path):
    straight = _run(tmp_path / "a")
    # simulate a crash after step 2: drop everything written after checkpoint-2
    b = tmp_path / "b"
    _run(b)
    shutil.rmtree(b / "classifier" / "final")
    shutil.rmtree(b / "classifier" / "checkpoint-4")
    assert (b / "classifier" / "checkpoint-2").exists()
    resumed = _run(b)
    assert straight.keys() == resumed.keys()
    for k in straight:
        torch.testing.assert_close(straight[k], resumed[k], msg=k)
    # and training really moved the weights away from their initialisation
    from igmu_hf.mini.classifier import MiniClassifier, MiniClassifierConfig

    torch.manual_seed(0)
    init = MiniClassifier(MiniClassifierConfig()).state_dict()
    assert any(not torch.equal(init[k], straight[k]) for k in straight if k.endswith("weight"))


def test_parse_args_rejects_unknown_stage(capsys):
    import pytest

    with pytest.raises(SystemExit):
        parse_args(["--stages", "clip,teleport"])
    assert "unknown stage" in capsys.readouterr().err
