"""Masks of every format onto the PET grid: label images, DICOM-SEG (highdicom), RTSTRUCT."""
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

from biomarkers.errors import GeometryError, InputError
from biomarkers.imaging.masks import detect_mask_kind, read_mask, read_rtstruct

CT_SHAPE_ZYX = (20, 40, 40)
CT_SPACING_MM = (1.0, 1.0, 2.0)          # x, y, z; square pixels (rt-utils swaps row/column spacing)
CT_ORIGIN_MM = (-20.0, -20.0, -20.0)


def new_dataset(sop_class):
    """An empty dataset of ``sop_class`` with its file meta information."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    return ds


def ct_dataset(k, uids):
    ds = new_dataset(CTImageStorage)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Phantom^Test", "sub-01", "", "O"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.ReferringPhysicianName = "20240101", "120000", "", ""
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber, ds.Modality = "1", 1, k + 1, "CT"
    ds.Manufacturer, ds.PositionReferenceIndicator, ds.KVP = "synthetic", "", 120
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [CT_ORIGIN_MM[0], CT_ORIGIN_MM[1], CT_ORIGIN_MM[2] + k * CT_SPACING_MM[2]]
    ds.PixelSpacing = [CT_SPACING_MM[1], CT_SPACING_MM[0]]       # row spacing, column spacing
    ds.SliceThickness = CT_SPACING_MM[2]
    ds.Rows, ds.Columns = CT_SHAPE_ZYX[1:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.PixelData = np.full(CT_SHAPE_ZYX[1:], 1024, np.int16).tobytes()
    return ds


@pytest.fixture(scope="module")
def ct(tmp_path_factory):
    """A CT series written with pydicom, as a folder and as the SimpleITK image read from it."""
    folder = tmp_path_factory.mktemp("ct")
    uids = (generate_uid(), generate_uid(), generate_uid())
    files = []
    for k in range(CT_SHAPE_ZYX[0]):
        files.append(folder / f"ct_{k:03d}.dcm")
        ct_dataset(k, uids).save_as(files[-1], enforce_file_format=True)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(f) for f in files])
    image = reader.Execute()
    assert image.GetSpacing() == CT_SPACING_MM and image.GetOrigin() == CT_ORIGIN_MM
    return folder, image


@pytest.fixture(scope="module")
def pet():
    image = sitk.Image([11, 11, 11], sitk.sitkFloat32)
    image.SetSpacing((4.0, 4.0, 4.0))
    image.SetOrigin((-21.0, -19.0, -22.0))
    return image


def centres_mm(image):
    size = image.GetSize()
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    return [o + s * a for o, s, a in zip(image.GetOrigin(), image.GetSpacing(), (i, j, k))]


def volumes_mm3(image):
    values = sitk.GetArrayFromImage(image)
    voxel = float(np.prod(image.GetSpacing()))
    return {int(v): np.sum(values == v) * voxel for v in np.unique(values) if v}


def like(array, reference):
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def two_lesions(reference):
    """Labels 1 (sphere, r = 10 mm) and 2 (16 mm box) on the grid of ``reference``."""
    x, y, z = centres_mm(reference)
    labels = np.zeros(x.shape, np.uint16)
    labels[(x + 8) ** 2 + (y + 6) ** 2 + (z - 2) ** 2 <= 10 ** 2] = 1
    labels[(np.abs(x - 10) < 8) & (np.abs(y - 10) < 8) & (np.abs(z + 6) < 8)] = 2
    return labels


# --- label images -----------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_label_image_on_the_reference_grid_is_read_unchanged(tmp_path, pet, suffix):
    labels = two_lesions(pet)
    labels[labels == 2] = 5                              # label values are kept, not renumbered
    path = tmp_path / f"mask{suffix}"
    sitk.WriteImage(like(labels.astype(np.uint8), pet), str(path))
    out = read_mask(path, pet, "sub-01")
    assert out.GetPixelID() == sitk.sitkUInt16 and out.GetOrigin() == pet.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), labels)


def test_2mm_label_image_resampled_onto_4mm_pet(tmp_path, pet):
    fine = sitk.Image([24, 24, 24], sitk.sitkUInt16)
    fine.SetSpacing((2.0, 2.0, 2.0))
    fine.SetOrigin((-23.0, -23.0, -23.0))
    labels = two_lesions(fine)
    path = tmp_path / "mask_2mm.nii.gz"
    sitk.WriteImage(like(labels, fine), str(path))
    with pytest.raises(GeometryError) as err:
        read_mask(path, pet, "sub-01", reference_path=tmp_path / "pet.nii.gz")
    message = str(err.value)
    assert "sub-01" in message and "mask_2mm.nii.gz" in message and "pet.nii.gz" in message
    assert "resample=True" in message and "spacing" in message
    out = read_mask(path, pet, "sub-01", resample=True)
    assert out.GetSize() == pet.GetSize() and out.GetSpacing() == pet.GetSpacing()
    before, after = volumes_mm3(like(labels, fine)), volumes_mm3(out)
    assert sorted(after) == [1, 2]
    assert after[1] == pytest.approx(before[1], rel=0.15)       # sphere: partial volume at 4 mm
    assert after[2] == pytest.approx(before[2], rel=0.01)       # box edges fall between PET centres


def test_bad_label_images(tmp_path, pet):
    fractional = like(np.full((11, 11, 11), 0.5, np.float32), pet)
    sitk.WriteImage(fractional, str(tmp_path / "prob.nii.gz"))
    with pytest.raises(InputError, match="non-integer"):
        read_mask(tmp_path / "prob.nii.gz", pet, "sub-01")
    sitk.WriteImage(like(np.zeros((11, 11, 11), np.uint8), pet), str(tmp_path / "empty.nii.gz"))
    with pytest.raises(InputError, match="no labelled voxel"):
        read_mask(tmp_path / "empty.nii.gz", pet, "sub-01")
    with pytest.raises(InputError, match="does not exist"):
        read_mask(tmp_path / "nope.nii.gz", pet, "sub-01")
    (tmp_path / "junk.dcm").write_bytes(b"not a dicom file" * 20)
    with pytest.raises(InputError, match="nor a readable DICOM"):
        read_mask(tmp_path / "junk.dcm", pet, "sub-01")
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(InputError, match="truncated or corrupt gzip file"):
        read_mask(tmp_path / "broken.nii.gz", pet, "sub-01")


# --- DICOM-SEG --------------------------------------------------------------------------------

def write_seg(path, ct_folder, labels_zyx, fractional=None, segmentation_type="BINARY"):
    """A DICOM-SEG with one segment per label (highdicom), on the CT series' frames."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    sources = sorted((pydicom.dcmread(f) for f in ct_folder.glob("ct_*.dcm")),
                     key=lambda ds: float(ds.ImagePositionPatient[2]))
    n = int(labels_zyx.max()) if fractional is None else fractional.shape[-1]
    descriptions = [hd.seg.SegmentDescription(
        segment_number=i, segment_label=f"lesion {i}",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL) for i in range(1, n + 1)]
    if fractional is not None:
        pixels, segmentation_type = fractional, "FRACTIONAL"
    elif segmentation_type == "LABELMAP":
        pixels = labels_zyx.astype(np.uint8)
    else:
        pixels = np.stack([labels_zyx == i for i in range(1, n + 1)], axis=-1)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=pixels,
        segmentation_type=segmentation_type,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=2,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="tests",
        manufacturer_model_name="tests", software_versions="1", device_serial_number="1")
    seg.save_as(path)
    return path


@pytest.fixture(scope="module")
def seg_file(ct, tmp_path_factory):
    folder, image = ct
    labels = two_lesions(image)
    return write_seg(tmp_path_factory.mktemp("seg") / "seg.dcm", folder, labels), labels


def test_seg_onto_its_ct_grid_is_voxel_identical(seg_file, ct):
    path, labels = seg_file
    assert detect_mask_kind(path)[0] == "seg"
    out = read_mask(path, ct[1], "sub-01")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(out), labels)
    only_second = read_mask(path, ct[1], "sub-01", roi_names=["lesion 2"])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(only_second), labels == 2)


def test_labelmap_seg_onto_its_ct_grid(ct, tmp_path):
    labels = two_lesions(ct[1])
    path = write_seg(tmp_path / "labelmap.dcm", ct[0], labels, segmentation_type="LABELMAP")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(path, ct[1])), labels)


def test_seg_onto_the_pet_grid_keeps_volumes(seg_file, ct, pet):
    path, _ = seg_file
    on_ct, on_pet = volumes_mm3(read_mask(path, ct[1])), volumes_mm3(read_mask(path, pet))
    assert sorted(on_pet) == [1, 2]
    assert on_pet[1] == pytest.approx(on_ct[1], rel=0.15)
    assert on_pet[2] == pytest.approx(on_ct[2], rel=0.15)


def test_fractional_seg_is_thresholded_at_one_half(ct, tmp_path):
    folder, image = ct
    fraction = np.zeros(CT_SHAPE_ZYX + (1,), np.float32)
    fraction[5:12, 10:20, 10:25, 0] = 0.3
    fraction[7:10, 12:18, 14:20, 0] = 0.8
    path = write_seg(tmp_path / "fractional.dcm", folder, None, fractional=fraction)
    out = sitk.GetArrayFromImage(read_mask(path, image, kind="seg"))
    np.testing.assert_array_equal(out, (fraction[..., 0] >= 0.5).astype(np.uint16))


def test_seg_found_in_a_folder_and_wrong_kind_refused(seg_file, ct, tmp_path):
    path, labels = seg_file
    folder = tmp_path / "dicom"
    folder.mkdir()
    (folder / "notes.txt").write_text("not DICOM")
    (folder / "seg_copy.dcm").write_bytes(path.read_bytes())
    assert detect_mask_kind(folder) == ("seg", folder / "seg_copy.dcm")
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(folder, ct[1])), labels)
    with pytest.raises(InputError, match="Modality is SEG, expected RTSTRUCT"):
        read_mask(path, ct[1], "sub-01", kind="rtstruct")
    with pytest.raises(InputError, match="holds no RTSTRUCT"):
        read_mask(folder, ct[1], "sub-01", kind="rtstruct")


# --- RTSTRUCT ---------------------------------------------------------------------------------

def write_rtstruct(path, rois):
    """A minimal RTSTRUCT written by hand: ``rois`` maps name -> list of (n, 3) mm contours."""
    ds = new_dataset(RTStructureSetStorage)
    ds.Modality, ds.PatientID, ds.StructureSetLabel = "RTSTRUCT", "sub-01", "test"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StructureSetROISequence, ds.ROIContourSequence = DicomSequence(), DicomSequence()
    for number, (name, contours) in reversed(list(enumerate(rois.items(), start=1))):
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ROIGenerationAlgorithm = number, name, "MANUAL"
        ds.StructureSetROISequence.append(roi)
        item = Dataset()
        item.ReferencedROINumber, item.ContourSequence = number, DicomSequence()
        for points in contours:
            contour = Dataset()
            contour.ContourGeometricType = "CLOSED_PLANAR"
            contour.NumberOfContourPoints = len(points)
            contour.ContourData = [f"{v:.6g}" for v in np.asarray(points, float).ravel()]
            item.ContourSequence.append(contour)
        ds.ROIContourSequence.append(item)
    ds.save_as(path, enforce_file_format=True)
    return path


def square(x0, y0, x1, y1, z):
    return [(x0, y0, z), (x1, y0, z), (x1, y1, z), (x0, y1, z)]


def circle(radius, z, n=180):
    angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack([radius * np.cos(angle), radius * np.sin(angle), np.full(n, z)])


def test_square_contours_rasterise_to_exact_counts(ct, tmp_path):
    image = ct[1]                                       # 1 mm pixels, centres at whole mm
    on_centres = square(-5, -5, 4, 4, z=0.0)             # through voxel centres: 10 x 10, boundary in
    between = square(-5.5, -5.5, 4.5, 4.5, z=2.0)        # edges between centres: 10 x 10
    hole_between = [square(-8, -8, 7, 7, z=4.0), square(-3.5, -3.5, 2.5, 2.5, z=4.0)]  # 16^2 - 6^2
    off_plane = square(-5, -5, 4, 4, z=6.0 + 0.9)        # 0.45 slice off: nearest slice (z = 6)
    hole_on_centres = [square(-8, -8, 7, 7, z=8.0), square(-3, -3, 2, 2, z=8.0)]    # 16^2 - 4^2
    path = write_rtstruct(tmp_path / "rt.dcm", {"squares": [on_centres, between, *hole_between,
                                                            off_plane, *hole_on_centres]})
    assert detect_mask_kind(path)[0] == "rtstruct"
    out = sitk.GetArrayFromImage(read_mask(path, image, "sub-01"))
    counts = {k: int(np.sum(out[k])) for k in np.unique(np.nonzero(out)[0])}
    assert counts == {10: 100, 11: 100, 12: 16 ** 2 - 6 ** 2, 13: 100, 14: 16 ** 2 - 4 ** 2}
    assert out[12, 16, 16] == 1 and out[12, 17, 17] == 0   # x = y = -4 mm in the ROI, -3 in the hole
    assert out[14, 17, 17] == 1 and out[14, 18, 18] == 0   # the hole's contour line counts as ROI


def test_sphere_contours_match_the_analytic_volume(ct, pet, tmp_path):
    radius_mm = 15.0
    planes = np.arange(-14.0, 15.0, 1.0)                 # contours every 1 mm, denser than both grids
    contours = [circle(np.sqrt(radius_mm ** 2 - z ** 2), z) for z in planes]
    path = write_rtstruct(tmp_path / "sphere.dcm", {"sphere": contours})
    analytic_mm3 = 4 / 3 * np.pi * radius_mm ** 3
    assert volumes_mm3(read_mask(path, ct[1]))[1] == pytest.approx(analytic_mm3, rel=0.03)
    labels, transfers = read_rtstruct(path, pet)
    assert volumes_mm3(labels)[1] == pytest.approx(analytic_mm3, rel=0.05)
    assert transfers[0].planes_used == 8 and transfers[0].planes_outside == 0
    assert transfers[0].planes_used + transfers[0].planes_unused == planes.size


def test_roi_selection_order_and_unknown_names(tmp_path, ct):
    path = write_rtstruct(tmp_path / "two.dcm", {"GTV": [square(-10, -10, -5, -5, 0.0)],
                                                  "node": [square(5, 5, 8, 8, 0.0)]})
    default = sitk.GetArrayFromImage(read_mask(path, ct[1]))
    chosen = sitk.GetArrayFromImage(read_mask(path, ct[1], roi_names=["node", "GTV"]))
    assert default[10, 10, 10] == 1 and default[10, 25, 25] == 2
    assert chosen[10, 10, 10] == 2 and chosen[10, 25, 25] == 1
    with pytest.raises(InputError, match="'tumour' not found; available: 'GTV', 'node'") as err:
        read_mask(path, ct[1], "sub-01", roi_names=["tumour"])
    assert "sub-01" in str(err.value) and "two.dcm" in str(err.value)
    with pytest.raises(InputError, match="distinct"):
        read_mask(path, ct[1], "sub-01", roi_names=["GTV", "GTV"])


def test_contours_outside_the_grid_are_counted_and_an_empty_mask_refused(tmp_path, ct):
    path = write_rtstruct(tmp_path / "far.dcm", {"far": [square(-5, -5, 4, 4, z) for z in (0.0, 80.0)],
                                                 "gone": [square(-5, -5, 4, 4, 90.0)]})
    labels, transfers = read_rtstruct(path, ct[1])
    assert [(t.planes_used, t.planes_outside, t.voxels) for t in transfers] == [(1, 1, 100), (0, 1, 0)]
    with pytest.raises(InputError, match="no labelled voxel"):
        read_mask(path, ct[1], "sub-01", roi_names=["gone"])


def test_flipped_reference_axes_give_the_same_voxels(seg_file, pet, tmp_path):
    flipped = sitk.Image(pet)
    flipped.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, -1))
    size, spacing = pet.GetSize(), pet.GetSpacing()
    flipped.SetOrigin((pet.GetOrigin()[0] + (size[0] - 1) * spacing[0], pet.GetOrigin()[1],
                       pet.GetOrigin()[2] + (size[2] - 1) * spacing[2]))
    sphere = write_rtstruct(tmp_path / "sphere.dcm", {"sphere": [circle(np.sqrt(144 - z ** 2), z)
                                                                 for z in np.arange(-11.0, 12.0)]})
    for path in (seg_file[0], sphere):
        straight = sitk.GetArrayFromImage(read_mask(path, pet))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(read_mask(path, flipped))[::-1, :, ::-1],
                                      straight)


def test_tilted_contours_refused(tmp_path, ct):
    tilted = np.array(square(-5, -5, 4, 4, 0.0), float)
    tilted[:, 2] = tilted[:, 0] * 0.5                          # 4.5 mm = 2.25 slices across
    path = write_rtstruct(tmp_path / "tilted.dcm", {"tilted": [tilted]})
    with pytest.raises(InputError, match="not parallel to the slices"):
        read_mask(path, ct[1], "sub-01")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_rtstruct_written_by_rt_utils_round_trips(ct, tmp_path):
    rt_utils = pytest.importorskip("rt_utils")
    folder, image = ct
    x, y, z = centres_mm(image)
    sphere = (x - 2) ** 2 + (y + 1) ** 2 + ((z - 3) / 1.2) ** 2 <= 9.0 ** 2
    sphere[:, :, :16] &= y[:, :, :16] < 3                # not symmetric: catches flipped axes
    rtstruct = rt_utils.RTStructBuilder.create_new(dicom_series_path=str(folder))
    rtstruct.add_roi(mask=np.transpose(sphere, (1, 2, 0)), name="lesion")   # rows, columns, slices
    rtstruct.save(str(tmp_path / "rt_utils.dcm"))
    out = sitk.GetArrayFromImage(read_mask(tmp_path / "rt_utils.dcm", image))
    np.testing.assert_array_equal(out, sphere.astype(np.uint16))
