"""mosaic against reproject_and_coadd, the truth offsets, flux conservation, Dask and errors."""

from __future__ import annotations

import inspect

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.mosaic import from_fits, mosaic, to_fits


@pytest.fixture(scope="module")
def radio(sky):
    return sky.images("radio")


@pytest.fixture(scope="module")
def radio_mosaic(radio):
    return mosaic(radio, match_background=False)


def _reference(tiles, ds, **kwargs):
    from reproject import reproject_interp
    from reproject.mosaicking import reproject_and_coadd

    header = fits.Header.fromstring(ds.attrs["header"])
    return reproject_and_coadd([(t[0].data, t[0].header) for t in tiles], WCS(header).celestial,
                               shape_out=ds["mosaic"].shape, reproject_function=reproject_interp,
                               **kwargs)


def test_keyword_only():
    params = inspect.signature(mosaic).parameters
    assert [p for p in params.values() if p.kind != p.KEYWORD_ONLY] == [params["images"]]


def test_matches_reproject_and_coadd(radio, radio_mosaic):
    ref, footprint = _reference(radio, radio_mosaic)
    ours = radio_mosaic["mosaic"].values
    both = (footprint > 0) & np.isfinite(ours)
    assert both.sum() > 0.99 * (footprint > 0).sum()
    noise = radio[0][0].header["NOISE"]
    assert np.max(np.abs(ours - ref)[both]) < 0.01 * noise
    assert radio_mosaic.attrs["transform_error"] <= 1e-5
    np.testing.assert_array_equal(radio_mosaic["coverage"].values > 0, footprint > 0)


@pytest.mark.parametrize("combine", ["sum", "first", "last", "median", "count"])
def test_combines_against_reproject(radio, radio_mosaic, combine):
    ours = mosaic(radio, wcs=fits.Header.fromstring(radio_mosaic.attrs["header"]),
                  match_background=False, combine=combine)["mosaic"].values
    noise = radio[0][0].header["NOISE"]
    if combine == "count":
        cov = radio_mosaic["coverage"].values
        np.testing.assert_array_equal(np.nan_to_num(ours), cov)
        return
    if combine == "median":  # reproject has no median: the median of the stacked tiles
        from reproject import reproject_interp

        header = fits.Header.fromstring(radio_mosaic.attrs["header"])
        stack = np.stack([reproject_interp(t[0], WCS(header).celestial,
                                           shape_out=ours.shape)[0] for t in radio])
        cov = radio_mosaic["coverage"].values
        assert (cov >= 3).sum() > 100  # where a median differs from a mean
        with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore", RuntimeWarning)  # uncovered pixels
            ref = np.nanmedian(stack, axis=0)
        sel = cov >= 1
        assert np.max(np.abs(ours - ref)[cov >= 3]) < 0.01 * noise
    else:
        ref, footprint = _reference(radio, radio_mosaic, combine_function=combine)
        sel = footprint > 0
    assert np.max(np.abs(ours - ref)[sel]) < 0.01 * noise


def test_background_offsets_recovered(sky, radio):
    ds = mosaic(radio, match_background=True)
    truth = np.asarray(sky.observe("radio").offsets["offset"])
    got = np.array([ds.attrs["background"][str(i)][0] for i in range(len(radio))])
    err = (got - got.mean()) - (truth - truth.mean())
    assert np.max(np.abs(err)) < 0.05 * np.ptp(truth)
    # and the corrected mosaic is seamless: overlaps now agree
    plain = mosaic(radio, match_background=False, combine="first")["mosaic"].values
    fixed = mosaic(radio, match_background=True, combine="first")["mosaic"].values
    last = mosaic(radio, match_background=True, combine="last")["mosaic"].values
    both = ds["coverage"].values >= 2
    assert abs(np.nanmedian((fixed - last)[both])) < 0.2 * abs(np.nanmedian(
        (plain - mosaic(radio, match_background=False, combine="last")["mosaic"].values)[both]))


def test_plane_model_recovers_offsets(sky, radio):
    ds = mosaic(radio, match_background="plane")
    truth = np.asarray(sky.observe("radio").offsets["offset"])
    got = np.array([ds.attrs["background"][str(i)][0] for i in range(len(radio))])
    err = (got - got.mean()) - (truth - truth.mean())
    assert np.max(np.abs(err)) < 0.1 * np.ptp(truth)


def test_flux_conserving(radio):
    tile = radio[0]
    header = tile[0].header
    w = WCS(header)
    out = w.deepcopy()  # a coarser, rotated grid that contains the tile
    out.wcs.cdelt = w.wcs.cdelt * 2.5
    out.wcs.crpix = [140, 140]
    out.wcs.pc = [[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]]
    ds = mosaic([tile], wcs=out, shape=(280, 280), method="flux-conserving",
                match_background=False)
    in_area = (abs(w.wcs.cdelt[0]) * u.deg) ** 2
    out_area = (abs(out.wcs.cdelt[0]) * u.deg) ** 2
    flux_in = np.nansum(tile[0].data.astype(float)) * in_area.to_value(u.sr)
    m, wt = ds["mosaic"].values.astype(float), ds["weight"].values.astype(float)
    flux_out = np.nansum(m * wt) * out_area.to_value(u.sr)
    assert flux_out == pytest.approx(flux_in, rel=1e-4)
    # and it is reproject_exact's answer, pixel by pixel, over the whole footprint
    from reproject import reproject_exact

    ref, fp = reproject_exact(tile[0], out, shape_out=(280, 280))
    foot = fp > 0
    assert np.isfinite(m[foot]).all()
    assert np.max(np.abs(m - ref)[foot]) < 1e-3 * header["NOISE"]
    # bilinear sampling of a 2.5x coarser grid does not conserve flux: it samples, so the
    # summed flux is off by far more than the flux-conserving mode's 1e-4
    bl = mosaic([tile], wcs=out, shape=(280, 280), method="bilinear", match_background=False)
    b = bl["mosaic"].values.astype(float)
    flux_bl = np.nansum(b * bl["weight"].values) * out_area.to_value(u.sr)
    assert abs(flux_bl / flux_in - 1) > 10 * abs(flux_out / flux_in - 1)


def test_nearest_matches_reproject_nearest(radio, radio_mosaic):
    from reproject import reproject_interp

    header = fits.Header.fromstring(radio_mosaic.attrs["header"])
    shape = radio_mosaic["mosaic"].shape
    ours = mosaic([radio[1]], wcs=WCS(header).celestial, shape=shape, method="nearest",
                  match_background=False)["mosaic"].values
    ref, fp = reproject_interp(radio[1][0], WCS(header).celestial, shape_out=shape,
                               order="nearest-neighbor")
    sel = (fp > 0) & np.isfinite(ours)
    assert np.mean(ours[sel] == ref[sel].astype(np.float32)) > 0.999


def test_fits_round_trip(tmp_path, radio_mosaic):
    path = tmp_path / "m.fits"
    to_fits(radio_mosaic, path)
    back = from_fits(path)
    for name in ("mosaic", "weight", "coverage"):
        np.testing.assert_array_equal(back[name].values, radio_mosaic[name].values)
    assert back.attrs["provenance"]["vanotebook"]["activity"] == "vanotebook.mosaic.mosaic"
    assert WCS(fits.Header.fromstring(back.attrs["header"])).celestial.wcs.compare(
        WCS(fits.Header.fromstring(radio_mosaic.attrs["header"])).celestial.wcs)


def test_written_output_equals_memory(tmp_path, radio, radio_mosaic):
    fits_ds = mosaic(radio, match_background=False, chunks=300, output=tmp_path / "m.fits")
    np.testing.assert_allclose(fits_ds["mosaic"].values, radio_mosaic["mosaic"].values,
                               rtol=1e-6, atol=1e-9)
    zarr_ds = mosaic(radio, match_background=False, chunks=300, output=tmp_path / "m.zarr")
    np.testing.assert_allclose(zarr_ds["mosaic"].values, radio_mosaic["mosaic"].values,
                               rtol=1e-6, atol=1e-9)
    assert "provenance" in zarr_ds.attrs
    with fits.open(tmp_path / "m.fits") as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "WEIGHT", "COVERAGE", "PROVENANCE"]
        assert hdul[0].header["PROVACT"] == "vanotebook.mosaic.mosaic"


def test_blocks_equal_one(radio, radio_mosaic):
    small = mosaic(radio, match_background=False, chunks=128)
    np.testing.assert_allclose(small["mosaic"].values, radio_mosaic["mosaic"].values,
                               rtol=1e-6, atol=1e-10)
    np.testing.assert_array_equal(small["coverage"].values, radio_mosaic["coverage"].values)


def test_mixed_units_converted(sky):
    from vanotebook.units import convert_brightness

    tiles = sky.images("radio")
    other = tiles[1][0].copy()
    other.data = convert_brightness(other.data.astype(np.float64), "Jy/beam", "MJy/sr",
                                    beam=__import__("vanotebook.units").units.Beam.from_header(
                                        other.header)).astype(np.float32)
    other.header["BUNIT"] = "MJy/sr"
    ds = mosaic([tiles[0], other], match_background=False)
    ref = mosaic([tiles[0], tiles[1]], match_background=False)
    np.testing.assert_allclose(ds["mosaic"].values, ref["mosaic"].values, rtol=1e-5,
                               atol=1e-9)


# --------------------------------------------------------------------------- errors
def _assert_no_file(tmp_path):
    assert list(tmp_path.iterdir()) == []


def test_error_empty_list(tmp_path):
    with pytest.raises(VanotebookInputError, match="images"):
        mosaic([], output=tmp_path / "x.fits")
    _assert_no_file(tmp_path)


def test_error_no_celestial_wcs(tmp_path, radio):
    w = WCS(naxis=2)
    w.wcs.ctype = ["FREQ", "VELO"]
    with pytest.raises(VanotebookInputError, match="celestial"):
        mosaic([radio[0], (np.ones((10, 10)), w)], output=tmp_path / "x.fits")
    _assert_no_file(tmp_path)


def test_error_all_nan(tmp_path, radio):
    bad = radio[1][0].copy()
    bad.data = np.full_like(bad.data, np.nan)
    with pytest.raises(VanotebookInputError, match=r"images\[1\].*finite"):
        mosaic([radio[0], bad], output=tmp_path / "x.fits")
    _assert_no_file(tmp_path)


def test_error_mixed_units_without_beam(tmp_path, radio):
    other = radio[1][0].copy()
    other.header["BUNIT"] = "MJy/sr"
    first = radio[0][0].copy()
    for key in ("BMAJ", "BMIN", "BPA"):
        del first.header[key]
        del other.header[key]
    with pytest.raises(VanotebookInputError, match=r"images\[1\].*beam"):
        mosaic([first, other], output=tmp_path / "x.fits")
    _assert_no_file(tmp_path)


def test_error_grid_misses_images(tmp_path, radio):
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [10.0, 40.0]
    w.wcs.cdelt = [-1e-3, 1e-3]
    w.wcs.crpix = [50, 50]
    with pytest.raises(VanotebookInputError, match="wcs"):
        mosaic(radio, wcs=w, shape=(100, 100), output=tmp_path / "x.fits")
    _assert_no_file(tmp_path)


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"combine": "max"}, "combine"), ({"method": "cubic"}, "method"),
    ({"match_background": "quadratic"}, "match_background"), ({"frame": "ecliptic"}, "frame"),
    ({"output": "x.png"}, "output"), ({"tolerance": -1}, "tolerance"),
])
def test_error_options(radio, kwargs, argument):
    with pytest.raises(VanotebookInputError, match=argument):
        mosaic(radio, **kwargs)
