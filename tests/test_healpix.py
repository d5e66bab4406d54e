"""HEALPix partitioning: orders, margins (checked by brute force), the parquet layout."""

from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord
from astropy.table import Table
from astropy_healpix import HEALPix

from vanotebook import VanotebookInputError, healpix


def test_choose_order_from_density():
    order = healpix.choose_order(1e4, max_rows=1e5 and 100_000)
    assert 1e4 * healpix.pixel_area(order).value <= 100_000
    assert 1e4 * healpix.pixel_area(order - 1).value > 100_000
    assert healpix.choose_order(1e9, max_rows=10, radius=1 * u.deg) <= 4


def test_order_from_counts_keeps_partitions_small():
    rng = np.random.default_rng(0)
    ra, dec = rng.uniform(10, 12, 50_000), rng.uniform(-1, 1, 50_000)
    pix, counts = np.unique(healpix.pixel_index(ra, dec, 12), return_counts=True)
    order = healpix.order_from_counts(pix, counts, order=12, max_rows=5000)
    per = np.bincount(np.unique(healpix.pixel_index(ra, dec, order), return_inverse=True)[1])
    assert per.max() <= 5000
    coarser = np.bincount(np.unique(healpix.pixel_index(ra, dec, order - 1),
                                    return_inverse=True)[1])
    assert coarser.max() > 5000


@pytest.mark.parametrize("center", [(45.0, 89.99), (0.0, -89.99), (0.0, 0.0), (45.0, 41.81)])
def test_margins_hold_every_pixel_within_radius(center):
    """Brute force: sample the disc around each row and check its pixels are all covered."""
    rng = np.random.default_rng(3)
    order, radius = 5, 20 * u.arcsec
    n = 3000
    # points near pixel boundaries/corners around ``center``
    c = SkyCoord(*center, unit="deg").directional_offset_by(
        rng.uniform(0, 360, n) * u.deg, rng.uniform(0, 0.5, n) * u.deg)
    ra, dec = c.ra.deg, c.dec.deg
    own = healpix.pixel_index(ra, dec, order)
    rows, pix = healpix.margin_pixels(ra, dec, order, radius)
    have = set(zip(rows.tolist(), pix.tolist(), strict=True)) | set(enumerate(own.tolist()))
    angles = np.linspace(0, 360, 72, endpoint=False)
    for frac in (0.5, 1.0):
        for a in angles:
            q = c.directional_offset_by(a * u.deg, frac * radius)
            need = healpix.pixel_index(q.ra.deg, q.dec.deg, order)
            assert set(enumerate(need.tolist())) <= have
    assert rows.size > 0


def test_pixel_index_matches_astropy_healpix():
    hp = HEALPix(nside=2**7, order="nested")
    ra, dec = np.array([0.0, 359.9, 120.0]), np.array([-89.9, 89.9, 0.0])
    np.testing.assert_array_equal(healpix.pixel_index(ra, dec, 7),
                                  hp.lonlat_to_healpix(ra * u.deg, dec * u.deg))


def test_write_and_read_partitioned_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    t = Table({"ra": rng.uniform(0, 360, 5000), "dec": rng.uniform(-80, 80, 5000),
               "mag": rng.normal(18, 1, 5000)})
    t["ra"].unit = u.deg
    path = healpix.write_partitioned(t, tmp_path / "cat", max_rows=800)
    info = healpix.read_partition_info(path)
    assert info["num_rows"].max() <= 800 and info["num_rows"].sum() == 5000
    order, pix = int(info["Norder"][0]), int(info["Npix"][0])
    f = path / f"Norder={order}" / f"Dir={pix // 10000 * 10000}" / f"Npix={pix}.parquet"
    assert f.is_file()
    back = healpix.read_partitioned(path, lazy=False)
    assert back["ra"].unit == u.deg
    np.testing.assert_allclose(np.sort(back["mag"]), np.sort(t["mag"]))
    lazy = healpix.read_partitioned(path)
    assert lazy.npartitions == len(info)
    with pytest.raises(FileExistsError):
        healpix.write_partitioned(t, path)
    assert not list(tmp_path.glob(".*part"))


def test_bad_inputs():
    with pytest.raises(VanotebookInputError, match="order"):
        healpix.pixel_index([0.0], [0.0], 30)
    with pytest.raises(VanotebookInputError, match="radius"):
        healpix.margin_pixels([0.0], [0.0], 3, 1.0)
    with pytest.raises(VanotebookInputError, match="radius"):
        healpix.margin_pixels([0.0], [0.0], 10, 1 * u.deg)
    with pytest.raises(VanotebookInputError, match="path"):
        healpix.read_partition_info("/nonexistent")


@pytest.mark.parametrize(("order", "radius"), [(0, 1 * u.deg), (3, 10 * u.arcsec),
                                               (5, 1 * u.arcmin), (2, 1 * u.arcsec)])
def test_margin_pixels_equal_brute_force_neighbours(order, radius):
    """The border prefilter gives exactly the pixels of all 8 neighbours of every row."""
    from astropy_healpix import core as hp

    rng = np.random.default_rng(order)
    ra, dec = rng.uniform(0, 360, 100_000), np.degrees(np.arcsin(rng.uniform(-1, 1, 100_000)))
    fine = healpix.max_order_for_radius(radius)
    sub = healpix.pixel_index(ra, dec, fine)
    with np.errstate(invalid="ignore"):
        nb = np.asarray(hp.neighbours(sub, 2**fine, order="nested"), np.int64)
    parents = np.where(nb >= 0, nb >> (2 * (fine - order)), -1)
    own = sub >> (2 * (fine - order))
    expected = {(i, int(p)) for j, i in zip(*np.nonzero((parents >= 0) & (parents != own)),
                                             strict=True) for p in [parents[j, i]]}
    rows, pix = healpix.margin_pixels(ra, dec, order, radius)
    assert set(zip(rows.tolist(), pix.tolist(), strict=True)) == expected
    assert len(expected) > 10
