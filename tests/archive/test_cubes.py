"""Cubes in the archive: their spectral coverage is indexed and queried by velocity/wavelength.

The coverage is checked against spectral-cube's spectral axis on real cubes
(spectral-cube's own GILDAS ``example_cube.fits``, VRAD with a degenerate
fourth axis, and the VLA HI header of Greisen et al. 2006, FREQ with RESTFRQ)
and on the demo sky's CO and HI cubes.
"""

from __future__ import annotations

import os

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS, FITSFixedWarning

from vanotebook import VanotebookInputError
from vanotebook.archive import Archive
from vanotebook.io import sky_wcs
from vanotebook.sky._cubes import demo_cubes

spectral_cube = pytest.importorskip("spectral_cube")
DATA = os.path.join(os.path.dirname(spectral_cube.__file__), "tests", "data")
KMS = u.km / u.s


def _greisen(tmp_path):
    """The Greisen 2006 VLA HI header on a 16 x 16 patch (its spectral axis untouched)."""
    header = fits.Header.fromtextfile(os.path.join(DATA, "greisen2006.hdr"))
    for key in ("CNAME3Z", "RESTWAVZ", "CTYPE3Z", "CRVAL3Z", "CDELT3Z"):  # the alternate axis
        header.remove(key, ignore_missing=True, remove_all=True)
    header["NAXIS1"] = header["NAXIS2"] = 16
    header["CRPIX1"] = header["CRPIX2"] = 8.0
    data = np.random.default_rng(0).normal(size=(header["NAXIS3"], 16, 16)).astype(np.float32)
    path = tmp_path / "greisen2006.fits"
    fits.PrimaryHDU(data, header).writeto(path)
    return path


def _peer_edges(path) -> tuple[float, float]:
    """spectral-cube's radio-convention channel velocities, widened by half a channel."""
    import warnings

    with warnings.catch_warnings():  # example_cube's blank 4th axis is taken for Stokes I
        warnings.simplefilter("ignore", spectral_cube.utils.StokesWarning)
        warnings.simplefilter("ignore", FITSFixedWarning)  # the Greisen header's old dates
        cube = spectral_cube.SpectralCube.read(path).with_spectral_unit(
            KMS, velocity_convention="radio")
    v = cube.spectral_axis.to_value(KMS)
    half = abs(v[1] - v[0]) / 2
    return float(v.min() - half), float(v.max() + half)


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    root = tmp_path_factory.mktemp("cubes")
    paths = {"example": root / "example_cube.fits", "greisen": _greisen(root)}
    with fits.open(os.path.join(DATA, "example_cube.fits")) as hdul:
        hdul.writeto(paths["example"])
    for name, cube in demo_cubes(0).items():
        paths[name] = root / f"{name}.fits"
        cube.hdu.writeto(paths[name])
    arc = Archive(root / "arc")
    arc.add_images([str(p) for p in paths.values()])
    return arc, paths


def _row(table, path):
    return table[[os.path.samefile(p, path) for p in table["path"]]]


def test_coverage_of_real_cubes_equals_spectral_cube(cubes):
    arc, paths = cubes
    table = arc.images()
    assert len(table) == 4
    for name in ("example", "greisen", "co", "hi"):
        row = _row(table, paths[name])
        assert len(row) == 1, name
        lo, hi = _peer_edges(paths[name])
        np.testing.assert_allclose([row["velocity_min_kms"][0], row["velocity_max_kms"][0]],
                                   [lo, hi], rtol=0, atol=1e-6, err_msg=name)
        assert row["spectral_convention"][0] == "radio"
        wcs = sky_wcs(fits.getheader(paths[name]))
        assert row["naxis3"][0] == wcs.pixel_shape[wcs.wcs.spec]
    assert table["velocity_min_kms"].unit == KMS
    greisen = _row(table, paths["greisen"])
    assert greisen["spectral_ctype"][0] == "FREQ"
    h = fits.getheader(paths["greisen"])
    f = h["CRVAL3"] + (np.array([0.5, h["NAXIS3"] + 0.5]) - h["CRPIX3"]) * h["CDELT3"]
    np.testing.assert_allclose([greisen["wavelength_min_m"][0], greisen["wavelength_max_m"][0]],
                               sorted(299792458.0 / f), rtol=1e-12)


def test_velocity_and_wavelength_queries_find_the_cubes_that_cover_them(cubes):
    arc, paths = cubes

    def found(**query):
        return {name for name, p in paths.items()
                if any(os.path.samefile(q, p) for q in arc.images(**query)["path"])}

    # the CO cube spans 77.6..141.6 km/s, the HI cube -154..230, example 14.27..15.00 km/s
    assert found(velocity=100 * KMS) == {"co", "hi"}
    assert found(velocity=-100 * KMS) == {"hi"}
    assert found(velocity=(140, 150) * KMS) == {"co", "hi"}
    assert found(velocity=(14.9, 15.1) * KMS) == {"example", "hi"}
    assert found(velocity=(15.01, 15.1) * KMS) == {"hi"}
    assert "co" not in found(velocity=(142, 150) * KMS)
    assert found(velocity=500 * KMS) == set()
    assert found(wavelength=(2.5, 2.7) * u.mm) == {"co"}
    assert found(wavelength=(1.41, 1.43) * u.GHz) == {"hi"}
    assert found(wavelength=(1.37, 1.39) * u.GHz) == {"greisen"}  # HI at z = 0.03
    assert found(velocity=9000 * KMS) == {"greisen"}
    # a 2-D image is not listed by a velocity query, and is by its wavelength
    tile = paths["co"].parent / "image.fits"
    with fits.open(paths["co"]) as hdul:
        h = WCS(hdul[0].header).celestial.to_header()
        h["WAVELEN"] = 2.6e-3
        fits.PrimaryHDU(hdul[0].data[0], h).writeto(tile)
    arc.add_images(str(tile))
    assert not any(os.path.samefile(p, tile) for p in arc.images(velocity=100 * KMS)["path"])
    assert any(os.path.samefile(p, tile)
               for p in arc.images(wavelength=(2.5, 2.7) * u.mm)["path"])
    row = _row(arc.images(), tile)
    assert np.ma.is_masked(row["naxis3"][0]) and np.ma.is_masked(row["velocity_min_kms"][0])


@pytest.mark.parametrize("bad", ["fast", 3, (1, 2, 3) * KMS, (1, 2) * u.mm, np.nan * KMS])
def test_a_bad_velocity_is_named(cubes, bad):
    arc, _ = cubes
    with pytest.raises(VanotebookInputError, match=r"^velocity: expected a velocity Quantity"):
        arc.images(velocity=bad)


def test_an_archive_made_before_cubes_were_indexed_gains_their_columns(tmp_path):
    import duckdb

    from vanotebook.archive import _index

    root = tmp_path / "old"
    arc = Archive(root)
    cube = demo_cubes(0)["co"].hdu
    arc.add_images(cube)
    con = duckdb.connect(str(root / _index.INDEX_FILE))
    for name in _index.SPECTRAL_DDL:
        con.execute(f"ALTER TABLE images DROP COLUMN {name}")
    con.close()
    con = duckdb.connect(str(root / _index.INDEX_FILE), read_only=True)
    try:
        assert "velocity_min_kms" not in _index.image_columns(con)
    finally:
        con.close()
    old = Archive.__new__(Archive)  # a reader that cannot migrate (read-only): NULLs, no error
    old.path = root.resolve()
    assert np.ma.is_masked(old.images()["velocity_max_kms"][0])
    assert len(old.images(velocity=100 * KMS)) == 0
    Archive(root)  # a writer adds the columns; a cube ingested afterwards has its coverage
    arc = Archive(root)
    arc.add_images(demo_cubes(0)["hi"].hdu)
    table = arc.images(velocity=-100 * KMS)
    assert len(table) == 1 and table["spectral_ctype"][0] == "FREQ"
