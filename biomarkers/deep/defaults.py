"""Defaults of the networks that the command line shows without importing torch.

The one source of each: the library's functions, the command line and the workflow schema
(``deep_features``) take them from here (``tests/deep/test_embed.py`` checks the schema agrees).
"""
#: Length of the autoencoder's bottleneck (the deep_* vector) and its training epochs.
LATENT, EPOCHS = 16, 10
