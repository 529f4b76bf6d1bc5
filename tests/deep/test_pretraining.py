"""Transfer learning primitives: a pretrained encoder is loaded, and kept fixed when frozen."""
import numpy as np
import torch

from biomarkers.survival.cnn import CnnTraining, fit_lesion_bag_cox
from biomarkers.survival.pretraining import pretrain_encoder


def _bags(rng, n=24):
    bags = [rng.normal(0, 1, (int(rng.integers(1, 3)), 2, 8, 8, 8)).astype(np.float32) for _ in range(n)]
    time = rng.exponential(500, n)
    return bags, time, (rng.random(n) < 0.7).astype(int)


def test_frozen_encoder_keeps_the_pretrained_weights_and_finetuning_moves_them():
    rng = np.random.default_rng(0)
    bags, time, event = _bags(rng)
    patches = np.concatenate(bags)
    state, losses = pretrain_encoder(patches, ["pet", "mask"], latent=4, width=2, epochs=3, seed=0)
    assert len(losses) == 3 and losses[-1] < losses[0]  # the autoencoder learns something
    options = CnnTraining(latent=4, width=2, hidden=4, dropout=0.0, max_epochs=3, val_fraction=0.0, batch_size=12, seed=1)
    frozen = fit_lesion_bag_cox(bags, np.zeros((24, 0)), time, event, options, encoder_state=state,
                                freeze_encoder=True)
    tuned = fit_lesion_bag_cox(bags, np.zeros((24, 0)), time, event, options, encoder_state=state)
    scratch = fit_lesion_bag_cox(bags, np.zeros((24, 0)), time, event, options)
    for key, value in state.items():
        assert torch.equal(frozen.net.encoder.state_dict()[key], value)
        assert not torch.equal(tuned.net.encoder.state_dict()[key], value)
    assert not torch.equal(scratch.net.encoder.fc.weight, state["fc.weight"])
