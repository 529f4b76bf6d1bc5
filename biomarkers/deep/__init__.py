"""Torch imaging networks: 3D U-Net segmentation, lesion-patch encoders, end-to-end survival CNNs."""
