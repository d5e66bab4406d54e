"""Synthetic catalogue pairs: counts, geometry, truth statistics, chunking and parquet I/O.

Geometry and astrometry are checked with astropy (`SkyCoord.separation`,
`directional_offset_by`, `spherical_offsets_to`), independently of the generator's
own vector arithmetic.
"""

from __future__ import annotations

import json
import math

import astropy.units as u
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from astropy.coordinates import SkyCoord
from scipy import stats

from vanotebook._errors import VanotebookInputError
from vanotebook.sky._catalogues import RIGHT_ID_OFFSET, CataloguePair, catalogue_pair

CENTRES = [(150.0, 2.0), (10.0, 89.5), (0.2, -30.0), (300.0, -89.9), (42.0, 90.0)]


def whole(pair: CataloguePair) -> tuple[pd.DataFrame, pd.DataFrame]:
    lefts, rights = zip(*pair.iter_chunks(), strict=True)
    return pd.concat(lefts, ignore_index=True), pd.concat(rights, ignore_index=True)


def coords(df: pd.DataFrame) -> SkyCoord:
    return SkyCoord(df["ra"].to_numpy() * u.deg, df["dec"].to_numpy() * u.deg)


@pytest.fixture(scope="module", params=CENTRES[:3], ids=["equator", "pole", "ra0"])
def drawn(request: pytest.FixtureRequest) -> tuple[CataloguePair, pd.DataFrame, pd.DataFrame]:
    pair = catalogue_pair(20_000, center=request.param, seed=7, chunk_rows=6_000)
    return (pair, *whole(pair))


@pytest.mark.parametrize(
    ("n_left", "n_right", "true_fraction", "chunk_rows"),
    [
        (10_001, None, 0.7, 3_000),
        (5_000, 12_000, 0.333, 1_000),
        (999, 0, 0.0, 250),
        (1_000, 1_000, 1.0, 1_000),
    ],
)
def test_counts_ids_and_true_fraction_are_exact(
    n_left: int, n_right: int | None, true_fraction: float, chunk_rows: int
) -> None:
    pair = catalogue_pair(n_left, n_right=n_right, true_fraction=true_fraction,
                          chunk_rows=chunk_rows, radius=0.5)  # fmt: skip
    left, right = whole(pair)
    n_right = n_left if n_right is None else n_right
    assert (len(left), len(right)) == (n_left, n_right)
    assert pair.n_chunks == math.ceil(n_left / chunk_rows)
    assert list(left["source_id"]) == list(range(1, n_left + 1))
    first = RIGHT_ID_OFFSET + 1
    assert sorted(right["source_id"]) == list(range(first, first + n_right))
    truth = right["truth_left_id"]
    assert (truth >= 0).sum() == round(true_fraction * n_left)
    assert truth[truth >= 0].is_unique and truth[truth >= 0].isin(left["source_id"]).all()
    assert set(truth[truth < 0]) <= {-1}
    assert left.dtypes.to_dict() == {
        "source_id": np.int64, "ra": np.float64, "dec": np.float64, "ra_error": np.float32,
        "dec_error": np.float32, "pmra": np.float32, "pmdec": np.float32, "epoch": np.float64,
        "mag": np.float32}  # fmt: skip
    assert list(right.columns) == ["source_id", "ra", "dec", "ra_error", "dec_error", "epoch",
                                   "mag", "truth_left_id"]  # fmt: skip
    assert (left["epoch"] == 2016.0).all() and (right["epoch"] == 2000.0).all()


@pytest.mark.parametrize("center", CENTRES)
def test_every_row_lies_inside_the_cone(center: tuple[float, float]) -> None:
    pair = catalogue_pair(5_000, center=center, radius=1.0, seed=3)
    centre = SkyCoord(center[0] * u.deg, center[1] * u.deg)
    for df in whole(pair):
        assert df["ra"].between(0, 360, inclusive="left").all()
        assert df["dec"].between(-90, 90).all()
        sep = centre.separation(coords(df)).deg
        assert sep.max() <= 1.0 + 1e-10
        assert sep.max() > 0.99  # fills the cone up to the edge
        if center[0] == 0.2:  # really straddles RA 0/360
            assert (df["ra"] > 359).any() and (df["ra"] < 1).any()


def test_positions_are_uniform_in_solid_angle(drawn: tuple) -> None:
    pair, left, right = drawn
    centre = SkyCoord(*pair.center, unit="deg")
    r = math.radians(pair.radius)
    for df in (left, right):
        points = coords(df)
        sep = centre.separation(points).rad
        inner = (sep <= r / 2).mean()
        expected = math.sin(r / 4) ** 2 / math.sin(r / 2) ** 2  # solid-angle ratio
        assert abs(inner - expected) < 4 * math.sqrt(expected * (1 - expected) / len(df))
        # (1 - cos sep) / (1 - cos r) is uniform, and so is the position angle.
        assert stats.kstest(np.sin(sep / 2) ** 2 / math.sin(r / 2) ** 2, "uniform").pvalue > 1e-3
        pa = centre.position_angle(points).rad / (2 * math.pi)
        assert stats.kstest(pa, "uniform").pvalue > 1e-3


def true_pairs(left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
    matched = right[right["truth_left_id"] >= 0]
    return matched.merge(left, left_on="truth_left_id", right_on="source_id", suffixes=("_r", "_l"))


def normalised_offsets(pairs: pd.DataFrame, propagate: bool = True) -> tuple[np.ndarray, ...]:
    """Right minus (propagated) left offsets, per axis, over the combined errors."""
    start = SkyCoord(pairs["ra_l"].to_numpy() * u.deg, pairs["dec_l"].to_numpy() * u.deg)
    dt = (pairs["epoch_r"] - pairs["epoch_l"]).to_numpy()
    pmra, pmdec = pairs["pmra"].to_numpy(np.float64), pairs["pmdec"].to_numpy(np.float64)
    if propagate:  # a great circle along the proper motion; dt < 0 flips the direction
        pa = np.arctan2(pmra, pmdec) * u.rad + np.where(dt < 0, 180.0, 0.0) * u.deg
        start = start.directional_offset_by(pa, np.hypot(pmra, pmdec) * np.abs(dt) * u.mas)
    end = SkyCoord(pairs["ra_r"].to_numpy() * u.deg, pairs["dec_r"].to_numpy() * u.deg)
    dra, ddec = (d.to_value(u.arcsec) for d in start.spherical_offsets_to(end))
    s_ra = np.hypot(pairs["ra_error_l"], pairs["ra_error_r"]).to_numpy(np.float64)
    s_dec = np.hypot(pairs["dec_error_l"], pairs["dec_error_r"]).to_numpy(np.float64)
    return dra / s_ra, ddec / s_dec


def test_true_pair_offsets_follow_the_stated_errors(drawn: tuple) -> None:
    _, left, right = drawn
    pairs = true_pairs(left, right)
    assert len(pairs) == 14_000
    z_ra, z_dec = normalised_offsets(pairs)
    assert stats.kstest(z_ra, "norm").pvalue > 1e-3
    assert stats.kstest(z_dec, "norm").pvalue > 1e-3
    assert stats.kstest(z_ra**2 + z_dec**2, stats.chi2(2).cdf).pvalue > 1e-3
    # Each error belongs to its own axis: the likelihood drops if ra/dec errors are swapped.
    swapped = pairs.rename(
        columns={
            "ra_error_l": "dec_error_l",
            "dec_error_l": "ra_error_l",
            "ra_error_r": "dec_error_r",
            "dec_error_r": "ra_error_r",
        }
    )
    s_ra = np.hypot(pairs["ra_error_l"], pairs["ra_error_r"])
    s_dec = np.hypot(pairs["dec_error_l"], pairs["dec_error_r"])
    right_axes = -0.5 * (z_ra**2 + z_dec**2) - np.log(s_ra * s_dec)
    z_ra, z_dec = normalised_offsets(swapped)
    wrong_axes = -0.5 * (z_ra**2 + z_dec**2) - np.log(s_ra * s_dec)
    assert right_axes.sum() - wrong_axes.sum() > 100
    # The check has teeth: ignoring proper motion must fail it.
    z_ra, z_dec = normalised_offsets(pairs, propagate=False)
    assert stats.kstest(z_ra**2 + z_dec**2, stats.chi2(2).cdf).pvalue < 1e-6


def test_errors_proper_motions_and_magnitudes_are_plausible(drawn: tuple) -> None:
    pair, left, right = drawn
    assert left[["ra_error", "dec_error"]].stack().between(0.05, 0.3).all()
    assert right[["ra_error", "dec_error"]].stack().between(0.2, 1.0).all()
    assert left["mag"].between(12, 21).all()
    pm = np.hypot(left["pmra"], left["pmdec"])
    assert 0.02 < (pm > 100).mean() < 0.04
    assert 10 < np.median(pm) < 14  # Rayleigh median of sigma=10 mas/yr is 11.8
    pairs = true_pairs(left, right)
    assert np.corrcoef(pairs["mag_l"], pairs["mag_r"])[0, 1] > 0.9
    # Row order gives the truth away on neither side (true rows are spread through a chunk).
    chunk_left, chunk_right = pair.chunk(0)
    true_rows = np.flatnonzero(chunk_right["truth_left_id"] >= 0) / len(chunk_right)
    true_left = chunk_left["source_id"].isin(chunk_right["truth_left_id"]).to_numpy()
    assert abs(true_rows.mean() - 0.5) < 0.02
    assert abs(np.flatnonzero(true_left).mean() / len(chunk_left) - 0.5) < 0.02


def test_density_option_and_properties() -> None:
    pair = catalogue_pair(density=2_000, radius=0.5, n_right=3_000, true_fraction=0.5)
    area = 2 * math.pi * (1 - math.cos(math.radians(0.5))) * math.degrees(1) ** 2
    assert pair.area == pytest.approx(area, rel=1e-12)
    assert pair.n_left == round(2_000 * area)
    assert pair.density == pytest.approx((pair.n_left / area, 3_000 / area))
    assert catalogue_pair().n_left == 100_000


def test_chunks_are_independent_of_order() -> None:
    pair = catalogue_pair(2_500, chunk_rows=1_000, seed=11)
    in_order = list(pair.iter_chunks())
    alone = catalogue_pair(2_500, chunk_rows=1_000, seed=11).chunk(2)
    for a, b in zip(in_order[2], alone, strict=True):
        pd.testing.assert_frame_equal(a, b)
    assert [len(left) for left, _ in in_order] == [1_000, 1_000, 500]
    with pytest.raises(VanotebookInputError, match=r"^i:"):
        pair.chunk(3)


def test_same_seed_same_catalogues_other_seed_differs() -> None:
    a, b, c = (catalogue_pair(3_000, seed=s, chunk_rows=1_000) for s in (5, 5, 6))
    for x, y in zip(whole(a), whole(b), strict=True):
        pd.testing.assert_frame_equal(x, y)
    assert not np.array_equal(whole(a)[0]["ra"], whole(c)[0]["ra"])
    assert not np.array_equal(whole(a)[1]["truth_left_id"], whole(c)[1]["truth_left_id"])


def test_to_tables_carries_units() -> None:
    left, right = catalogue_pair(1_500, chunk_rows=1_000).to_tables()
    assert (len(left), len(right)) == (1_500, 1_500)
    assert left["ra"].unit == u.deg and left["pmra"].unit == u.mas / u.yr
    assert right["ra_error"].unit == u.arcsec and right["mag"].unit == u.mag
    assert right["truth_left_id"].unit is None
    with pytest.raises(VanotebookInputError, match=r"^n_left:.*write\(\)"):
        catalogue_pair(5_000_001).to_tables()


def test_write_round_trips_with_metadata(tmp_path) -> None:
    pair = catalogue_pair(2_500, n_right=4_000, chunk_rows=1_000, seed=2)
    paths = pair.write(tmp_path / "out")
    assert paths == {"left": tmp_path / "out/left.parquet", "right": tmp_path / "out/right.parquet"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["left.parquet", "right.parquet"]
    for path, expected in zip(paths.values(), whole(pair), strict=True):
        assert pq.ParquetFile(path).num_row_groups == pair.n_chunks
        pd.testing.assert_frame_equal(pd.read_parquet(path), expected)
        meta = pq.read_schema(path).metadata
        units = json.loads(meta[b"vanotebook.units"])
        assert units["ra"] == "deg" and units["dec_error"] == "arcsec" and units["mag"] == "mag"
        assert u.Unit(units["epoch"]) == u.yr and "source_id" not in units
        config = json.loads(meta[b"vanotebook.config"])
        assert config["n_right"] == 4_000 and config["seed"] == 2
    assert "pmra" in json.loads(pq.read_schema(paths["left"]).metadata[b"vanotebook.units"])


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = catalogue_pair(2_500, chunk_rows=1_000)
    fresh, existing = tmp_path / "fresh", tmp_path / "existing"
    catalogue_pair(500).write(existing)
    before = {p.name: p.read_bytes() for p in existing.iterdir()}
    real = CataloguePair._chunk

    def flaky(self: CataloguePair, i: int, rng: np.random.Generator) -> tuple:
        if i == 1:
            raise OSError("disk full")
        return real(self, i, rng)

    monkeypatch.setattr(CataloguePair, "_chunk", flaky)
    for directory in (fresh, existing):
        with pytest.raises(OSError, match="disk full"):
            pair.write(directory)
    assert list(fresh.iterdir()) == []
    assert {p.name: p.read_bytes() for p in existing.iterdir()} == before


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"n_left": 0}, "n_left"),
        ({"n_left": 2.5}, "n_left"),
        ({"radius": 0}, "radius"),
        ({"radius": 90.5}, "radius"),
        ({"radius": float("nan")}, "radius"),
        ({"true_fraction": 1.2}, "true_fraction"),
        ({"true_fraction": -0.1}, "true_fraction"),
        ({"center": (10.0, 90.5)}, "center"),
        ({"center": "M31"}, "center"),
        ({"n_left": 100, "n_right": 69}, "n_right"),
        ({"seed": -1}, "seed"),
        ({"chunk_rows": 0}, "chunk_rows"),
        ({"left_epoch": "J2016"}, "left_epoch"),
        ({"n_left": 10, "density": 5.0}, "density"),
        ({"density": -1.0}, "density"),
    ],
)
def test_bad_input_names_the_argument(kwargs: dict, argument: str) -> None:
    with pytest.raises(VanotebookInputError, match=rf"^{argument}:") as info:
        catalogue_pair(**kwargs)
    assert info.value.argument == argument and isinstance(info.value, ValueError)
