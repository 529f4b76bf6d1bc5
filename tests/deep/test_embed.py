"""Lesion patches, the patch autoencoder and ``deep_*`` lesion embeddings on synthetic volumes."""
from __future__ import annotations

import inspect
import itertools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from biomarkers.deep.autoencoder import load_autoencoder, load_encoder, save_autoencoder, train_autoencoder
from biomarkers.deep.crops import PatchSpec, lesion_patches
from biomarkers.deep.defaults import AutoencoderTraining
from biomarkers.features.embed import checkpoint_kind, embed_lesions, load_patch_encoder
from biomarkers.features.embed_run import embed_to_parquet, train_autoencoder_from_sheet
from biomarkers.deep.normalise import ct_channel, pet_channel
from biomarkers.errors import InputError
from biomarkers.io.atomic import read_parquet_metadata

SMALL = {"size_mm": (32.0, 32.0, 32.0), "shape": (16, 16, 16)}  # 2 mm patch voxels, fast


def phantom(shape_zyx, spacing_zyx, lesions, sigma_mm=5.0):
    """SUV, HU and labels: background SUV 1, Gaussian uptake per lesion, spheres as labels.

    ``lesions`` holds (centre_mm (z, y, x) from voxel 0's centre, radius_mm, peak SUV above 1).
    """
    axes = [np.arange(n) * s for n, s in zip(shape_zyx, spacing_zyx)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    suv = np.ones(shape_zyx)
    labels = np.zeros(shape_zyx, dtype=np.int16)
    hu = np.full(shape_zyx, 40.0)
    for label, (centre, radius, peak) in enumerate(lesions, start=1):
        d2 = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2
        suv += peak * np.exp(-d2 / (2 * sigma_mm**2))
        hu -= 30.0 * np.exp(-d2 / (2 * (2 * sigma_mm) ** 2))
        labels[d2 <= radius**2] = label
    return suv, hu, labels


def write_subject(folder, name, shape_zyx, spacing_zyx, lesions):
    """PET, CT and mask NIfTI files of a phantom; returns their paths."""
    paths = []
    for kind, array in zip(("pet", "ct", "mask"), phantom(shape_zyx, spacing_zyx, lesions)):
        image = sitk.GetImageFromArray(array.astype(np.int16 if kind == "mask" else np.float32))
        image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
        path = folder / f"{name}_{kind}.nii.gz"
        sitk.WriteImage(image, str(path))
        paths.append(path)
    return paths


def training_patches(n=32, seed=0):
    """Small patches of single lesions of varied size, uptake and offset."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        centre = 30.0 + rng.uniform(-4, 4, 3)
        suv, hu, labels = phantom((30, 30, 30), (2.0, 2.0, 2.0), [(centre, rng.uniform(4, 9), rng.uniform(2, 15))],
                                  sigma_mm=rng.uniform(3, 7))
        out.append(lesion_patches(suv, hu, labels, (2.0, 2.0, 2.0), [1], **SMALL))
    return np.concatenate(out)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: tiny convolutions run much faster so on a shared, busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TRAINING = AutoencoderTraining(latent=8, epochs=20, batch_size=8, lr=3e-3, seed=3, device="cpu", width=4)


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory):
    """A tiny trained autoencoder, its history and checkpoint path."""
    model, history = train_autoencoder(training_patches(), TRAINING)
    path = tmp_path_factory.mktemp("ae") / "ae.pt"
    save_autoencoder(model, path, PatchSpec(**SMALL), history, {"seed": 3}, ["s1", "s2"])
    return model, history, path


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """One subject on a 4 x 3 x 3 mm grid with three lesions of different size and uptake."""
    folder = tmp_path_factory.mktemp("subject")
    lesions = [((40.0, 45.0, 45.0), 8.0, 10.0), ((40.0, 45.0, 90.0), 5.0, 4.0), ((80.0, 80.0, 60.0), 10.0, 7.0)]
    return write_subject(folder, "sub-1", (30, 40, 45), (4.0, 3.0, 3.0), lesions)


def test_patch_is_centred_on_lesion_and_interpolated_trilinearly():
    spacing = (2.0, 2.0, 2.0)
    suv, hu, labels = phantom((40, 40, 40), spacing, [((40.0, 40.0, 40.0), 8.0, 10.0)])
    patch = lesion_patches(suv, hu, labels, spacing, [1])
    assert patch.shape == (1, 3, 32, 32, 32) and patch.dtype == np.float32
    pet = patch[0, 0]
    # the grid is symmetric about the centroid: the peak lies on the 8 voxels around index 15.5
    assert all(i in (15, 16) for i in np.unravel_index(pet.argmax(), pet.shape))
    weights = pet - pet.min()
    for axis in range(3):
        profile = weights.sum(axis=tuple(a for a in range(3) if a != axis))
        assert (profile * np.arange(32)).sum() / profile.sum() == pytest.approx(15.5, abs=1e-6)
    # patch voxel 16 lies 1 mm from the centre on each axis: the mean of the 8 surrounding grid values
    corners = [1 + 10 * np.exp(-(a * a + b * b + c * c) / 50) for a, b, c in itertools.product((0, 2), repeat=3)]
    assert pet[16, 16, 16] == pytest.approx(pet_channel(np.array(np.mean(corners)))[()], rel=1e-6)
    # half-voxel-shifted trilinear sampling of the same voxel size keeps the mask's volume exactly
    assert patch[0, 2].sum() * 8.0 == pytest.approx((labels == 1).sum() * 8.0, rel=1e-6)


def test_outside_the_image_is_air_and_zero_uptake():
    spacing = (3.0, 3.0, 3.0)
    suv, hu, labels = phantom((12, 12, 12), spacing, [((3.0, 3.0, 3.0), 4.0, 5.0)])
    patch = lesion_patches(suv, hu, labels, spacing, [1], mask_channel=False)
    assert patch.shape == (1, 2, 32, 32, 32)
    assert patch[0, 0, 0, 0, 0] == 0.0 and patch[0, 1, 0, 0, 0] == -1.0  # SUV 0, HU -1000
    # patch voxel 20 lies 9 mm from the centroid (voxel 1, 3 mm), i.e. on image voxel 4
    assert patch[0, 1, 20, 20, 20] == pytest.approx(ct_channel(np.array(hu[4, 4, 4]))[()], abs=1e-6)
    with pytest.raises(ValueError, match=r"\[2\] do not occur"):
        lesion_patches(suv, hu, labels, spacing, [2])


def test_same_sphere_at_two_voxel_sizes_gives_matching_patches():
    lesion = [((60.0, 60.0, 60.0), 9.0, 8.0)]  # centred on a voxel of both grids
    fine = lesion_patches(*phantom((60, 60, 60), (2.0, 2.0, 2.0), lesion), (2.0, 2.0, 2.0), [1])[0]
    coarse = lesion_patches(*phantom((24, 30, 30), (5.0, 4.0, 4.0), lesion), (5.0, 4.0, 4.0), [1])[0]
    pet_error = fine[0] - coarse[0]  # PET channel spans 0.23 .. 0.73
    # the coarse grid samples the peak of the 5 mm wide uptake less well: 0.699 instead of 0.726
    assert np.abs(pet_error).max() < 0.04 and np.sqrt(np.mean(pet_error**2)) < 0.004
    assert np.corrcoef(fine[0].ravel(), coarse[0].ravel())[0, 1] > 0.995
    assert np.abs(fine[1] - coarse[1]).max() < 0.002  # CT (smooth) channel
    # mask channel: partial-volume masks of the same sphere; volumes of the discrete spheres agree
    assert coarse[2].sum() * 8.0 == pytest.approx(fine[2].sum() * 8.0, rel=0.02)
    assert np.corrcoef(fine[2].ravel(), coarse[2].ravel())[0, 1] > 0.95


def test_autoencoder_loss_falls_and_training_is_reproducible(autoencoder):
    model, history, path = autoencoder
    loss = history["train_loss"]
    assert len(loss) == 20 and loss[-1] < 0.1 * loss[0] and loss[-1] < 0.003, loss
    again, history2 = train_autoencoder(training_patches(), TRAINING)
    assert history2 == history
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    copy = path.with_name("again.pt")
    save_autoencoder(again, copy, PatchSpec(**SMALL), history2, {"seed": 3}, ["s1", "s2"])
    assert copy.read_bytes() == path.read_bytes()


def test_checkpoint_loads_on_cpu_with_its_records(autoencoder):
    model, history, path = autoencoder
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert set(state) == {"format", "version", "config", "weights", "channels", "normalisation", "patch",
                          "training", "subjects", "history"}
    encoder, info = load_encoder(path, device="cpu")
    assert not encoder.training and next(encoder.parameters()).device.type == "cpu"
    assert info["subjects"] == ["s1", "s2"] and info["history"] == history
    assert info["patch"]["shape"] == [16, 16, 16] and info["channels"] == ["pet", "ct", "mask"]
    assert info["config"] == {"in_channels": 3, "out_channels": 2, "latent": 8, "width": 4, "shape": [16, 16, 16]}
    x = torch.from_numpy(training_patches(3, seed=9))
    with torch.no_grad():
        assert torch.equal(encoder(x), model.encoder(x))
        assert load_autoencoder(path)[0](x).shape == (3, 2, 16, 16, 16)
    assert checkpoint_kind(path) == "autoencoder"


def test_embeddings_layout_reproducible_and_distinct(autoencoder, subject, tmp_path):
    pet, ct, mask = subject
    _, _, checkpoint = autoencoder
    first = embed_to_parquet(pet, ct, mask, "sub-1", checkpoint, tmp_path / "a.parquet", device="cpu")
    second = embed_to_parquet(pet, ct, mask, "sub-1", checkpoint, tmp_path / "b.parquet", device="cpu")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert list(first.columns) == ["subject_id", "lesion_id"] + [f"deep_{i:03d}" for i in range(8)]
    assert first["lesion_id"].tolist() == [1, 2, 3] and set(first["subject_id"]) == {"sub-1"}
    pd.testing.assert_frame_equal(first, second)
    torch.set_num_threads(2)  # CPU embedding runs on one thread whatever the setting, then restores it
    try:
        pd.testing.assert_frame_equal(embed_lesions(pet, ct, mask, "sub-1", checkpoint, device="cpu")[0], first)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), first)
    vectors = first.filter(like="deep_").to_numpy()
    distances = [np.linalg.norm(vectors[i] - vectors[j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert min(distances) > 0.05 * np.linalg.norm(vectors, axis=1).mean(), distances
    meta = read_parquet_metadata(tmp_path / "a.parquet")
    assert meta["encoder"]["kind"] == "autoencoder" and meta["encoder"]["file"]["name"] == "ae.pt"
    assert meta["mask"]["name"] == "sub-1_mask.nii.gz" and meta["n_features"] == 8


class ChannelMeans(nn.Module):
    """Maps patches to the mean of each channel (a vector)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4))


class TinyConv(nn.Module):
    """Maps patches to a feature map (pooled by the embedding)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(2, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


def test_torchscript_encoder_vectors_and_maps(subject, tmp_path):
    pet, ct, mask = subject
    vector_path, map_path = tmp_path / "means.pt", tmp_path / "conv.pt"
    spec = '{"size_mm": [32, 32, 32], "shape": [16, 16, 16], "channels": ["pet", "ct", "mask"]}'
    with warnings.catch_warnings():  # torch >= 2.9 deprecates TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(ChannelMeans()), str(vector_path), _extra_files={"biomarkers.json": spec})
        with torch.random.fork_rng():
            torch.manual_seed(0)
            conv = TinyConv()
        torch.jit.save(torch.jit.script(conv), str(map_path))
    assert checkpoint_kind(vector_path) == "torchscript"
    table, meta = embed_lesions(pet, ct, mask, "sub-1", vector_path, device="cpu")
    images = [sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (pet, ct, mask)]
    patches = lesion_patches(*images, (4.0, 3.0, 3.0), [1, 2, 3], **SMALL)
    np.testing.assert_allclose(table[["deep_000", "deep_001", "deep_002"]].to_numpy(),
                               patches.mean(axis=(2, 3, 4)), rtol=1e-5)
    assert meta["encoder"]["patch"]["channels"] == ["pet", "ct", "mask"]
    table, _ = embed_lesions(pet, ct, mask, "sub-1", map_path, device="cpu")  # defaults: pet, ct; 32^3
    default = torch.from_numpy(lesion_patches(*images, (4.0, 3.0, 3.0), [1, 2, 3], mask_channel=False))
    with torch.no_grad():
        expected = conv(default).mean(dim=(2, 3, 4)).numpy()
    np.testing.assert_allclose(table.filter(like="deep_").to_numpy(), expected, rtol=1e-5, atol=1e-7)


def test_unet_checkpoint_encoder_pools_the_bottleneck(subject, tmp_path):
    unet_train = pytest.importorskip("biomarkers.segment.unet_train")
    from biomarkers.deep.unet import UNet3D

    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = UNet3D(in_channels=2, base_channels=2, depth=2).eval()
    path = tmp_path / "unet.pt"
    unet_train.write_checkpoint(net, path, (16, 16, 16), True, {"seed": 0}, [1.0])
    encoder = load_patch_encoder(path, device="cpu", size_mm=(48, 48, 48), shape=(16, 16, 16))
    assert encoder.kind == "unet" and encoder.spec.channels == ("pet", "ct")
    pet, ct, mask = subject
    table, meta = embed_lesions(pet, ct, mask, "sub-1", encoder)
    images = [sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in (pet, ct, mask)]
    x = torch.from_numpy(lesion_patches(*images, (4.0, 3.0, 3.0), [1, 2, 3], (48, 48, 48), (16, 16, 16), False))
    with torch.no_grad():
        expected = net.encode(x).mean(dim=(2, 3, 4)).numpy()
    assert table.shape == (3, 2 + 8)  # base_channels * 2**depth bottleneck maps
    np.testing.assert_allclose(table.filter(like="deep_").to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert meta["encoder"]["model_config"]["depth"] == 2


def test_errors_name_subject_and_file(autoencoder, subject, tmp_path):
    pet, ct, mask = subject
    _, _, checkpoint = autoencoder
    other = write_subject(tmp_path, "other", (30, 40, 44), (4.0, 3.0, 3.0), [((40.0, 45.0, 45.0), 8.0, 10.0)])[2]
    with pytest.raises(InputError, match=r"subject sub-1, file .*other_mask.nii.gz: geometry differs"):
        embed_to_parquet(pet, ct, other, "sub-1", checkpoint, tmp_path / "x.parquet", device="cpu")
    with pytest.raises(InputError, match=r"subject sub-1, file .*missing_ct.nii.gz: CT file does not exist"):
        embed_to_parquet(pet, tmp_path / "missing_ct.nii.gz", mask, "sub-1", checkpoint, tmp_path / "x.parquet")
    with pytest.raises(InputError, match="needs a CT image"):
        embed_lesions(pet, None, mask, "sub-1", checkpoint, device="cpu")
    assert not (tmp_path / "x.parquet").exists()


def test_train_from_sheet_reads_only_the_training_cohort(tmp_path):
    rows = []
    for i, cohort in enumerate(["train", "train", "validation"]):
        sid = f"s{i}"
        pet, ct, mask = write_subject(tmp_path, sid, (16, 20, 20), (4.0, 4.0, 4.0),
                                      [((30.0, 40.0, 40.0), 6.0, 5.0 + 3 * i), ((30.0, 40.0, 12.0), 4.0, 3.0)])
        if cohort == "train":  # the validation subject has no mask: reading it would fail
            (tmp_path / "seg").mkdir(exist_ok=True)
            mask.rename(tmp_path / "seg" / f"{sid}_lesions.nii.gz")
        rows.append({"subject_id": sid, "cohort": cohort, "center": "C1", "pet": pet.name, "ct": ct.name,
                     "time": 10.0, "event": 1})
    pd.DataFrame(rows).to_csv(tmp_path / "subjects.tsv", sep="\t", index=False)
    out = tmp_path / "ae.pt"
    summary = train_autoencoder_from_sheet(tmp_path / "subjects.tsv", "train", tmp_path / "seg", out, PatchSpec(**SMALL),
                                           AutoencoderTraining(latent=4, epochs=2, seed=1, batch_size=2, width=2,
                                                               device="cpu"))
    assert summary["subjects"] == ["s0", "s1"] and summary["n_patches"] == 4
    info = load_encoder(out)[1]
    assert info["subjects"] == ["s0", "s1"] and info["training"]["cohort"] == "train"
    assert info["training"]["n_patches"] == 4 and len(info["history"]["train_loss"]) == 2
    with pytest.raises(InputError, match=r"subject s2, file .*s2_lesions.nii.gz: lesion mask does not exist"):
        train_autoencoder_from_sheet(tmp_path / "subjects.tsv", "validation", tmp_path / "seg", out,
                                     settings=AutoencoderTraining(epochs=1))


def test_the_autoencoder_defaults_have_one_source():
    import yaml

    from biomarkers.cli.features import train_autoencoder as train_verb
    from biomarkers.deep import autoencoder, defaults

    schema = yaml.safe_load((Path(__file__).parents[2] / "workflow" / "schemas" / "config.schema.yaml").read_text())
    block = schema["properties"]["deep_features"]["properties"]
    assert (block["latent"]["default"], block["epochs"]["default"]) == (defaults.LATENT, defaults.EPOCHS)
    settings = inspect.signature(autoencoder.train_autoencoder).parameters["settings"].default
    assert (settings.latent, settings.epochs) == (defaults.LATENT, defaults.EPOCHS)
    verb = inspect.signature(train_verb).parameters
    assert (verb["latent"].default.default, verb["epochs"].default.default) == (defaults.LATENT, defaults.EPOCHS)
    with pytest.raises(ValueError, match="need epochs >= 1, batch_size >= 1, lr > 0; got 0, 16, 0.001"):
        defaults.AutoencoderTraining(epochs=0)
