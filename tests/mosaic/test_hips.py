"""Image HiPS: tiles against reproject.hips, the HEALPix layout, orders, Allsky, MOC, Dask."""

from __future__ import annotations

import warnings
from pathlib import Path

import array_api_strict as xps
import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from astropy_healpix import core as hp

from vanotebook._errors import VanotebookInputError
from vanotebook._optional import HAS_NUMBA
from vanotebook.mosaic import Hips, to_hips
from vanotebook.mosaic._hips import read_properties
from vanotebook.mosaic._hips_kernels import (
    downsample2,
    node_positions,
    numba_sample_tiles,
    sample_tiles,
    subpixel_index,
    tile_offsets,
    to_uint8,
)
from vanotebook.provenance import Provenance

N = 256
SIGMA = 1.0
WIDTH = 64


def _image(n=N, *, frame="icrs", seed=0, scale=5.0, centre=(150.1, 2.2)):
    """Noise (sigma 1) plus 40 point sources, on a TAN grid of ``scale`` arcsec pixels."""
    rng = np.random.default_rng(seed)
    data = rng.normal(0, SIGMA, (n, n))
    yy, xx = np.mgrid[0:n, 0:n]
    for x, y, f in zip(rng.uniform(5, n - 5, 40), rng.uniform(5, n - 5, 40),
                       rng.uniform(5, 50, 40), strict=True):
        data += f * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"] if frame == "icrs" else ["GLON-TAN", "GLAT-TAN"]
    w.wcs.crval = list(centre)
    w.wcs.crpix = [n / 2 + 0.5, n / 2 + 0.5]
    w.wcs.cdelt = [-scale / 3600, scale / 3600]
    return data.astype(np.float32), w


def _tiles(folder: Path, order: int, fmt: str = "fits") -> dict[int, Path]:
    return {int(p.stem[4:]): p for p in (folder / f"Norder{order}").glob(f"Dir*/Npix*.{fmt}")}


@pytest.fixture(scope="module")
def hips(tmp_path_factory):
    data, w = _image()
    out = tmp_path_factory.mktemp("hips") / "h"
    return to_hips((data, w), out, tile_width=WIDTH), data, w


# ----------------------------------------------------------------------------- kernels
def test_layout_is_healpix_nested():
    """Tile pixel [r, c] is HEALPix pixel index*w^2 + subpixel_index[r, c] one level w deeper,
    checked with astropy_healpix's own positions (the HiPS standard's layout)."""
    w, order, index = 16, 4, 1234
    r, c = np.mgrid[0:w, 0:w]
    dx, dy = tile_offsets(r, c, w)
    lon, lat = hp.healpix_to_lonlat(np.full(r.shape, index), 2**order, dx=dx, dy=dy,
                                    order="nested")
    deep = hp.lonlat_to_healpix(lon, lat, 2**order * w, order="nested")
    np.testing.assert_array_equal(deep, index * w * w + subpixel_index(w))


def _nodes(rng, t=3, n=5):
    base = rng.uniform(20, 60, (t, 1, 1))
    pos = node_positions(WIDTH, n)
    gx = base + pos[None, None, :] * 0.6 + pos[None, :, None] * 0.1
    gy = base[:, :, ::-1] + pos[None, :, None] * 0.55 - pos[None, None, :] * 0.05
    return gx + rng.normal(0, 0.3, gx.shape), gy + rng.normal(0, 0.3, gy.shape)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
def test_sample_tiles_strict_equals_numpy_and_numba(interpolation):
    rng = np.random.default_rng(3)
    full = rng.normal(size=(80, 90)).astype(np.float32)
    full[40, 45] = np.nan
    nx, ny = _nodes(rng)  # crossing the top and right edges of the image
    region, origin = full[10:, 15:], (10, 15)  # all the pixels the tiles need
    kw = {"width": WIDTH, "origin": origin, "shape": full.shape, "interpolation": interpolation}
    ref = sample_tiles(full, nx, ny, width=WIDTH, shape=full.shape,
                       interpolation=interpolation)
    got = sample_tiles(xps.asarray(region), xps.asarray(nx), xps.asarray(ny), **kw)
    assert got.dtype == xps.float32
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-5, atol=1e-5, equal_nan=True)
    assert np.isnan(ref).any() and np.isfinite(ref).any()
    if HAS_NUMBA:
        fast = numba_sample_tiles(region, nx, ny, **kw)
        np.testing.assert_allclose(fast, ref, rtol=1e-5, atol=1e-5, equal_nan=True)


def test_downsample_and_stretch_strict_equal_numpy():
    rng = np.random.default_rng(4)
    tiles = rng.normal(size=(2, 8, 8)).astype(np.float32)
    tiles[0, :2, :2] = np.nan
    tiles[1, 0, 0] = np.nan
    ref = downsample2(tiles)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmean(tiles.reshape(2, 4, 2, 4, 2), axis=(2, 4))
    np.testing.assert_allclose(ref, expected, rtol=1e-6, equal_nan=True)
    np.testing.assert_allclose(np.asarray(downsample2(xps.asarray(tiles))), ref, rtol=1e-6,
                               equal_nan=True)
    for stretch in ("linear", "sqrt", "log", "asinh"):
        a = to_uint8(tiles, (-1.0, 1.0), stretch)
        b = to_uint8(xps.asarray(tiles), (-1.0, 1.0), stretch)
        np.testing.assert_array_equal(np.asarray(b), a)
        assert (a[np.isnan(tiles)] == 0).all() and (a[~np.isnan(tiles)] >= 1).all()


# ----------------------------------------------------------------------------- peers
@pytest.mark.parametrize("frame", ["icrs", "galactic"])
def test_tiles_agree_with_reproject_hips(tmp_path, frame):
    """Deepest tiles equal reproject.hips's (reproject_interp, bilinear) within 1% of the
    noise rms, over the same pixels; the image is Galactic in the second case."""
    from reproject import reproject_interp
    from reproject.hips import reproject_to_hips

    data, w = _image(frame=frame, centre=(150.1, 2.2) if frame == "icrs" else (33.3, -1.2))
    ours = to_hips((data, w), tmp_path / "ours", tile_width=WIDTH)
    reproject_to_hips((data, w), coord_system_out="equatorial",
                      reproject_function=reproject_interp, output_directory=tmp_path / "rep",
                      level=ours.order, tile_size=WIDTH, order="bilinear")
    theirs = _tiles(tmp_path / "rep", ours.order)
    mine = _tiles(ours.path, ours.order)
    assert set(mine) == set(theirs)
    compared = 0
    for index, path in theirs.items():
        a = fits.getdata(path)
        b = fits.getdata(mine[index])
        np.testing.assert_array_equal(np.isfinite(a), np.isfinite(b))
        both = np.isfinite(a) & np.isfinite(b)
        assert np.abs(a - b)[both].max() < 0.01 * SIGMA
        compared += both.sum()
    assert compared > 0.9 * N * N * (5.0 / (3600 * 58.6 / 2**ours.order / WIDTH)) ** 2


def test_order_chosen_like_hipsgen():
    """Deepest order: the coarsest whose tile pixels are no larger than the image pixels."""
    from vanotebook.mosaic._hips import choose_order

    for scale_arcsec, width in ((1.0, 512), (5.0, 64), (60.0, 512), (0.1, 512)):
        k = choose_order(scale_arcsec / 3600, width)
        res = hp.nside_to_pixel_resolution(2**k * width).to_value(u.arcsec)
        coarser = hp.nside_to_pixel_resolution(2 ** (k - 1) * width).to_value(u.arcsec)
        assert k == 3 or (res <= scale_arcsec < coarser)
    assert choose_order(1 / 3600, 512) == 9  # the benchmark: orders 0-9


# ----------------------------------------------------------------------------- the folder
def test_properties_allsky_moc(hips):
    from mocpy import MOC
    from PIL import Image as PILImage

    h, data, w = hips
    assert isinstance(h, Hips)
    props = read_properties(h.path)
    assert props["dataproduct_type"] == "image"
    assert int(props["hips_order"]) == h.order and int(props["hips_tile_width"]) == WIDTH
    assert props["hips_frame"] == "equatorial" and props["hips_tile_format"] == "fits png"
    assert props["hips_pixel_bitpix"] == "-32" and props["creator_did"].startswith("ivo://")
    lo, hi = map(float, props["hips_data_range"].split())
    deepest = np.stack([fits.getdata(f) for f in _tiles(h.path, h.order).values()])
    assert lo == pytest.approx(np.nanmin(deepest), rel=1e-5)
    assert hi == pytest.approx(np.nanmax(deepest), rel=1e-5)
    assert np.nanmin(data) <= lo < hi <= np.nanmax(data)
    assert len(props["hips_pixel_cut"].split()) == 2
    assert abs(float(props["hips_initial_ra"]) - 150.1) < 1e-3
    record = Provenance.read(h.path / "provenance.json")
    assert props["vanotebook_provenance_digest"] == record.digest == \
        Provenance.from_dict(h.provenance).digest
    # every order from 0 to the deepest, in both formats
    for order in range(h.order + 1):
        assert _tiles(h.path, order) and set(_tiles(h.path, order)) == \
            set(_tiles(h.path, order, "png"))
    # Allsky: 27 x 29 tiles of 64 px; each order-3 tile's block is its tile averaged down
    allsky = fits.getdata(h.path / "Norder3" / "Allsky.fits")
    assert allsky.shape == (29 * 64, 27 * 64)
    with PILImage.open(h.path / "Norder3" / "Allsky.png") as png:
        assert png.size == (27 * 64, 29 * 64)
    (index, path), = _tiles(h.path, 3).items()
    tile = fits.getdata(path)
    b, a = divmod(index, 27)
    block = allsky[allsky.shape[0] - (b + 1) * 64: allsky.shape[0] - b * 64,
                   a * 64:(a + 1) * 64]
    np.testing.assert_allclose(block, tile, rtol=1e-6, equal_nan=True)  # 64 px: no averaging
    outside = np.ones(allsky.shape, bool)
    outside[allsky.shape[0] - (b + 1) * 64: allsky.shape[0] - b * 64, a * 64:(a + 1) * 64] = False
    assert np.isnan(allsky[outside]).all()
    # MOC: covers every image pixel centre, and not far away
    moc = MOC.from_fits(h.path / "Moc.fits")
    yy, xx = np.mgrid[0:N, 0:N]
    lon, lat = w.wcs_pix2world(xx.ravel(), yy.ravel(), 0)
    assert moc.contains_lonlat(lon * u.deg, lat * u.deg).all()
    assert not moc.contains_lonlat([150.1 + 1.0] * u.deg, [2.2] * u.deg).any()
    assert moc.sky_fraction < 2 * (N * 5 / 3600) ** 2 / 41253


def test_png_tiles_are_flipped_stretched_fits(hips):
    from PIL import Image as PILImage

    h, _, _ = hips
    index, path = max(_tiles(h.path, h.order).items())
    tile = fits.getdata(path)
    with PILImage.open(h.tile_path(h.order, index, "png")) as png:
        grey = np.asarray(png)[::-1]
        assert png.info.get("transparency") == 0 and png.mode == "L"
    np.testing.assert_array_equal(grey == 0, np.isnan(tile))
    lo, hi = h.cut
    ok = np.isfinite(tile)
    assert (grey[ok & (tile >= hi)] == 255).all() and (grey[ok & (tile <= lo)] == 1).all()
    inside = ok & (tile > lo) & (tile < hi)
    expected = np.round((tile[inside] - lo) / (hi - lo) * 254) + 1
    assert np.abs(grey[inside] - expected).max() <= 1


def test_lower_orders_are_2x2_means(hips):
    from astropy.nddata import block_reduce

    h, _, _ = hips
    for order in range(h.order - 1, -1, -1):
        children = _tiles(h.path, order + 1)
        for index, path in _tiles(h.path, order).items():
            expected = np.full((WIDTH, WIDTH), np.nan)
            half = WIDTH // 2
            spots = {0: (slice(half, None), slice(None, half)),
                     1: (slice(None, half), slice(None, half)),
                     2: (slice(half, None), slice(half, None)),
                     3: (slice(None, half), slice(half, None))}
            for sub, spot in spots.items():
                if 4 * index + sub in children:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        expected[spot] = block_reduce(fits.getdata(children[4 * index + sub]),
                                                      2, func=np.nanmean)
            np.testing.assert_allclose(fits.getdata(path), expected, rtol=1e-5, atol=1e-6,
                                       equal_nan=True)


def test_fits_tiles_have_wcs_and_provenance(hips):
    h, _, _ = hips
    index, path = min(_tiles(h.path, h.order).items())
    with fits.open(path) as hdul:
        hdr = hdul[0].header
        tile = hdul[0].data
    assert hdr["NPIX"] == index and hdr["ORDER"] == h.order
    assert hdr["PROVACT"] == "vanotebook.mosaic.to_hips"
    assert hdr["PROVDIG"] == read_properties(h.path)["vanotebook_provenance_digest"]
    # the tile WCS (HPX, as reproject.hips writes it) puts tile pixels on the sky right
    r, c = np.argwhere(np.isfinite(tile))[len(np.argwhere(np.isfinite(tile))) // 2]
    lon, lat = WCS(hdr).wcs_pix2world([[c, r]], 0)[0]
    dx, dy = tile_offsets(r, c, WIDTH)
    lon2, lat2 = hp.healpix_to_lonlat(index, 2**h.order, dx=dx, dy=dy, order="nested")
    assert abs(lon - lon2.to_value(u.deg)) < 1e-6 and abs(lat - lat2.to_value(u.deg)) < 1e-6


# ----------------------------------------------------------------------------- inputs and Dask
def _same_tiles(a: Path, b: Path, rtol: float = 0.0) -> int:
    n = 0
    for order in range(3, 12):
        ta, tb = _tiles(a, order), _tiles(b, order)
        assert set(ta) == set(tb)
        for index in ta:
            np.testing.assert_allclose(fits.getdata(ta[index]), fits.getdata(tb[index]),
                                       rtol=rtol, atol=0, equal_nan=True)
            n += 1
    return n


def test_dask_chunks_and_fits_path_equal_in_memory(hips, tmp_path):
    """A dask-chunked array, small task blocks, and a FITS path read block by block all give
    the in-memory tiles, and the progress callback reaches 1."""
    import dask.array as da

    h, data, w = hips
    seen: list[float] = []
    lazy = to_hips((da.from_array(data, chunks=50), w), tmp_path / "dask", tile_width=WIDTH,
                   chunks=WIDTH, progress=seen.append)
    assert _same_tiles(h.path, lazy.path) > 10
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    fits.writeto(tmp_path / "in.fits", data, w.to_header())
    from_file = to_hips(tmp_path / "in.fits", tmp_path / "file", tile_width=WIDTH, chunks=128)
    _same_tiles(h.path, from_file.path, rtol=1e-6)  # the WCS went through header text
    assert from_file.provenance["vanotebook"]["inputs"][0]["path"].endswith("in.fits")


@pytest.mark.slow
def test_distributed_client_equals_in_process(hips, tmp_path):
    from distributed import Client, LocalCluster

    h, data, w = hips
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        on_dask = to_hips((data, w), tmp_path / "d", tile_width=WIDTH, client=client,
                          chunks=WIDTH)
    _same_tiles(h.path, on_dask.path)


def test_mosaic_dataset_input(sky, tmp_path):
    """The simple call on the mosaic service's product (the viewer's call)."""
    from vanotebook.mosaic import mosaic

    ds = mosaic(sky.images("radio")[:2])
    h = to_hips(ds, tmp_path / "m", tile_width=128)
    ref = to_hips((ds["mosaic"].values, WCS(fits.Header.fromstring(ds.attrs["header"]))),
                  tmp_path / "r", tile_width=128)
    assert h.order == ref.order and _same_tiles(h.path, ref.path) > 0
    assert u.Unit(read_properties(h.path)["vanotebook_unit"]) == u.Jy / u.beam


# ----------------------------------------------------------------------------- bad input
def test_bad_input_named(hips, tmp_path):
    h, data, w = hips
    image = (data, w)
    spectral = WCS(naxis=2)
    spectral.wcs.ctype = ["FREQ", "STOKES"]
    cases = [
        ({"image": (data, spectral)}, "image"),
        ({"out": h.path}, "out"),
        ({"formats": ("jpeg",)}, "formats"),
        ({"formats": ()}, "formats"),
        ({"formats": ("fits", "fits")}, "formats"),
        ({"order": 2}, "order"),
        ({"order": 30}, "order"),
        ({"order": 4.5}, "order"),
        ({"tile_width": 100}, "tile_width"),
        ({"interpolation": "cubic"}, "interpolation"),
        ({"stretch": "gamma"}, "stretch"),
        ({"frame": "fk4"}, "frame"),
        ({"cut": (1, 0)}, "cut"),
        ({"image": (np.full((20, 20), np.nan, np.float32), w)}, "image"),
    ]
    for kwargs, argument in cases:
        args = {"image": image, "out": tmp_path / "x", "tile_width": WIDTH} | kwargs
        with pytest.raises(VanotebookInputError) as err:
            to_hips(args.pop("image"), args.pop("out"), **args)
        assert err.value.argument == argument, kwargs
        assert not (tmp_path / "x").exists()
    with pytest.raises(TypeError):
        to_hips(image, tmp_path / "x", 5)  # keyword-only after the data


def test_failure_midway_leaves_no_folder(hips, tmp_path):
    """A block that fails while tiles are being written: no folder, no temporary, and an
    existing HiPS given with overwrite=True stays as it was."""
    import dask.array as da

    h, data, w = hips

    def boom(block, block_info=None):
        if block_info[0]["chunk-location"] == (1, 1):
            raise RuntimeError("disk on fire")
        return block

    bad = da.from_array(data, chunks=128).map_blocks(boom, dtype=np.float32)
    with pytest.raises(RuntimeError, match="disk on fire"):
        to_hips((bad, w), tmp_path / "h", tile_width=WIDTH, chunks=WIDTH, cut=(0, 1))
    assert list(tmp_path.iterdir()) == []
    before = sorted(p.relative_to(h.path) for p in h.path.rglob("*"))
    with pytest.raises(RuntimeError, match="disk on fire"):
        to_hips((bad, w), h.path, tile_width=WIDTH, chunks=WIDTH, cut=(0, 1), overwrite=True)
    assert sorted(p.relative_to(h.path) for p in h.path.rglob("*")) == before
    assert not [p for p in h.path.parent.iterdir() if p.name.startswith(".")]


def test_overwrite_replaces(hips, tmp_path):
    _, data, w = hips
    first = to_hips((data, w), tmp_path / "o", tile_width=WIDTH, formats=("fits",))
    assert not _tiles(first.path, first.order, "png")
    second = to_hips((data, w), tmp_path / "o", tile_width=WIDTH, formats=("png",),
                     overwrite=True, stretch="asinh")
    assert _tiles(second.path, second.order, "png") and not _tiles(second.path, second.order)
    props = read_properties(second.path)
    assert props["hips_tile_format"] == "png" and props["hips_pixel_func"] == "asinh"
    assert not (second.path / "Norder3" / "Allsky.fits").exists()
