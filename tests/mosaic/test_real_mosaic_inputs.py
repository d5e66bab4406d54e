"""Inputs as astronomers have them: compressed tiles (``.fits.fz``) in a folder, an HDUList
with an empty primary and an image extension, non-flux units (DN, electron/s, K, mag),
and bad calls that must fail by name."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.mosaic import mosaic, to_fits

pytestmark = pytest.mark.filterwarnings("ignore::astropy.wcs.FITSFixedWarning")


def _tile(x0: float, seed: int, unit: str = "Jy/beam") -> fits.ImageHDU:
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval, w.wcs.crpix, w.wcs.cdelt = [150.0, 2.0], [60.5 - x0, 40.5], [-1e-3, 1e-3]
    header = w.to_header()
    header["BUNIT"] = unit
    header["BMAJ"] = header["BMIN"] = 3e-3
    header["BPA"] = 0.0
    data = np.random.default_rng(seed).normal(10.0, 1.0, (80, 120)).astype(np.float32)
    return fits.ImageHDU(data, header)


def _tiles():
    return [_tile(0, 1), _tile(70, 2), _tile(140, 3)]


def _write_fz(folder, tiles):
    folder.mkdir()
    for i, t in enumerate(tiles):
        comp = fits.CompImageHDU(t.data, t.header, compression_type="RICE_1",
                                 quantize_level=64)
        fits.HDUList([fits.PrimaryHDU(), comp]).writeto(folder / f"tile{i}.fits.fz")
    # what the files hold (RICE quantises floats): the reference reads them back
    back = []
    for i in range(len(tiles)):
        with fits.open(folder / f"tile{i}.fits.fz") as hdul:
            back.append((np.asarray(hdul[1].data, np.float32), hdul[1].header.copy()))
    return back


@pytest.mark.parametrize("lazy", [False, True])
def test_fz_folder(tmp_path, lazy):
    back = _write_fz(tmp_path / "tiles", _tiles())
    kwargs = {"output": tmp_path / "m.fits"} if lazy else {}
    ds = mosaic(tmp_path / "tiles", match_background=False, **kwargs)
    ref = mosaic(back, match_background=False)
    assert len(ds.attrs["tiles"]) == 3
    np.testing.assert_allclose(ds["mosaic"].values, ref["mosaic"].values, rtol=1e-6,
                               equal_nan=True)
    np.testing.assert_array_equal(ds["coverage"].values, ref["coverage"].values)


def test_fz_paths_listed(tmp_path):
    _write_fz(tmp_path / "tiles", _tiles())
    paths = sorted((tmp_path / "tiles").iterdir())
    ds = mosaic(paths, match_background=False, output=tmp_path / "m.fits")
    assert ds["coverage"].values.max() == 2


@pytest.mark.parametrize("lazy", [False, True])
def test_hdulist_is_one_image(tmp_path, lazy):
    t = _tile(0, 1)
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(t.data, t.header)])
    kwargs = {"output": tmp_path / "m.fits"} if lazy else {}
    ds = mosaic(hdul, match_background=False, **kwargs)
    ref = mosaic([(t.data, t.header)], match_background=False)
    np.testing.assert_array_equal(ds["mosaic"].values, ref["mosaic"].values)
    ds = mosaic([hdul, _tile(70, 2)], match_background=False)
    assert len(ds.attrs["tiles"]) == 2


@pytest.mark.parametrize("unit", ["DN", "electron/s", "ELECTRONS/S", "K", "mag", "adu"])
@pytest.mark.parametrize("combine", ["mean", "median"])
def test_non_flux_units_mosaic(tmp_path, unit, combine):
    """Same-unit inputs mosaic as they are, and BUNIT round-trips through FITS."""
    from astropy import units as u

    from vanotebook.mosaic import from_fits
    from vanotebook.units import parse_unit

    tiles = [_tile(0, 1, unit), _tile(70, 2, unit)]
    ds = mosaic(tiles, match_background=False, combine=combine)
    plain = mosaic([_tile(0, 1), _tile(70, 2)], match_background=False, combine=combine)
    np.testing.assert_array_equal(ds["mosaic"].values, plain["mosaic"].values)
    to_fits(ds, tmp_path / "m.fits")
    header = fits.getheader(tmp_path / "m.fits")
    assert parse_unit(header["BUNIT"], "BUNIT") == parse_unit(unit, "unit")
    assert u.Unit(from_fits(tmp_path / "m.fits").attrs["unit"]) == parse_unit(unit, "unit")


def test_units_scaled_where_astropy_converts():
    ds = mosaic([_tile(0, 1, "K"), _tile(70, 2, "mK")], match_background=False,
                combine="last")
    one = mosaic([_tile(70, 2, "K")], match_background=False,
                 wcs=fits.Header.fromstring(ds.attrs["header"]))
    sel = ds["coverage"].values > 0
    sel &= np.isfinite(one["mosaic"].values)
    np.testing.assert_allclose(ds["mosaic"].values[sel], 1e-3 * one["mosaic"].values[sel],
                               rtol=1e-6)


def test_incompatible_units_refused_by_name():
    with pytest.raises(VanotebookInputError, match=r"images\[1\].*convertible to DN.*K"):
        mosaic([_tile(0, 1, "DN"), _tile(70, 2, "K")])


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"weights": [1, "a", 1]}, r"weights\[1\]"),
    ({"weights": [1, None, 1]}, r"weights\[1\]"),
    ({"weights": [1, True, 1]}, r"weights\[1\]"),
    ({"weights": [1, -2, 1]}, r"weights\[1\]"),
    ({"weights": [1, np.full((80, 120), -1.0), 1]}, r"weights\[1\]"),
    ({"weights": 3}, "weights"),
    ({"unit": "banana"}, "unit"),
])
def test_bad_calls_named(kwargs, argument):
    with pytest.raises(VanotebookInputError, match=argument):
        mosaic(_tiles(), match_background=False, **kwargs)


def test_to_fits_of_something_else_named():
    import xarray as xr

    with pytest.raises(VanotebookInputError, match="dataset"):
        to_fits(xr.Dataset({"a": ("x", [1])}))


@pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")
@pytest.mark.filterwarnings("ignore::astropy.utils.exceptions.AstropyUserWarning")
def test_dss_plate_with_nonstandard_card():
    """A real DSS plate (a SKEW card FITS does not allow, the DSS plate solution) mosaics."""
    from astropy.utils.data import get_pkg_data_filename

    path = get_pkg_data_filename("data/dss.14.29.56-62.41.05.fits.gz",
                                 package="astropy.wcs.tests")
    from reproject import reproject_interp

    ds = mosaic([path], match_background=False)
    grid = WCS(fits.Header.fromstring(ds.attrs["header"]))
    with fits.open(path) as hdul:
        ref, fp = reproject_interp(hdul[0], grid, shape_out=ds["mosaic"].shape)
    ours = ds["mosaic"].values
    both = (fp > 0) & np.isfinite(ours)
    assert both.sum() > 0.99 * (fp > 0).sum() > 0.9 * ours.size
    assert np.max(np.abs(ours - ref)[both]) < 1e-3 * np.nanmax(ref)


def test_zero_beam_accepted_or_named():
    t = _tile(0, 1)
    t.header["BMAJ"] = t.header["BMIN"] = 0.0
    try:
        ds = mosaic([t], match_background=False)
    except VanotebookInputError as exc:
        assert "BMAJ" in str(exc) or "beam" in str(exc)
    else:
        assert np.isfinite(ds["mosaic"].values).any()


def test_output_fits_dataset_reads_from_the_file(tmp_path):
    """``output=".fits"`` returns a Dataset backed by the file (dask over regions of it)."""
    tiles = _tiles()
    ds = mosaic(tiles, match_background=False, output=tmp_path / "m.fits", chunks=64)
    assert ds["mosaic"].chunks is not None  # dask-backed: nothing loaded yet
    assert type(ds["mosaic"].data).__name__ == "Array"
    ref = mosaic(tiles, match_background=False)
    np.testing.assert_array_equal(ds["mosaic"].values, ref["mosaic"].values)
    np.testing.assert_array_equal(ds["coverage"].values, ref["coverage"].values)
    assert ds["coverage"].dtype == np.int16
    assert ds.attrs["provenance"]["vanotebook"]["activity"] == "vanotebook.mosaic.mosaic"
