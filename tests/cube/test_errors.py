"""Bad inputs get named errors before any work."""

from __future__ import annotations

import inspect

import astropy.units as u
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from vanotebook import VanotebookInputError
from vanotebook.cube import channel_maps, moments, parse_cube, pv_slice, spectrum

KMS = u.km / u.s


def test_a_2d_image_is_refused(M, tmp_path):
    hdu = M.hdu("vrad")
    h = WCS(hdu.header).celestial.to_header()
    image = fits.PrimaryHDU(hdu.data[0], h)
    for form in (image, (hdu.data[0], WCS(h))):
        with pytest.raises(VanotebookInputError, match=r"cube: expected a 3-D cube.*2-D image"):
            moments(form)
    image.writeto(tmp_path / "image.fits")
    with pytest.raises(VanotebookInputError, match="2-D image"):
        moments(str(tmp_path / "image.fits"))


def test_no_spectral_axis_is_refused(M):
    hdu = M.hdu("vrad")
    hdu.header["CTYPE3"], hdu.header["CUNIT3"] = "LINEAR", ""
    with pytest.raises(VanotebookInputError, match="spectral WCS axis"):
        moments(hdu)


def test_frequency_without_rest_frequency_is_refused(M):
    hdu = M.hdu("freq")
    del hdu.header["RESTFRQ"]
    with pytest.raises(VanotebookInputError, match="rest frequency"):
        moments(hdu)
    ds = moments(hdu, (1,), rest=M.REST * u.Hz)  # given here instead, it works
    assert np.isfinite(ds["moment1"].values).any()


def test_velocity_range_outside_the_cube_is_refused(M):
    hdu = M.hdu("vrad")
    for call in (lambda v: moments(hdu, velocity=v), lambda v: pv_slice(hdu, [(0, 0), (9, 9)],
                                                                        velocity=v),
                 lambda v: channel_maps(hdu, velocity=v)):
        with pytest.raises(VanotebookInputError, match=r"velocity: expected a range holding"):
            call((500 * KMS, 600 * KMS))
        with pytest.raises(VanotebookInputError, match="velocity"):
            call((1 * u.s, 2 * u.s))


def test_other_bad_arguments(M):
    hdu = M.hdu("vrad")
    with pytest.raises(VanotebookInputError, match="orders"):
        moments(hdu, (4,))
    with pytest.raises(VanotebookInputError, match="orders"):
        moments(hdu, ("moment7",))
    with pytest.raises(VanotebookInputError, match="mask"):
        moments(hdu, mask="everything")
    with pytest.raises(VanotebookInputError, match="mask"):
        moments(hdu, mask=1 * u.Jy)
    with pytest.raises(VanotebookInputError, match="convention"):
        moments(hdu, convention="sideways")
    with pytest.raises(VanotebookInputError, match="chunks"):
        moments(hdu, chunks=0)
    with pytest.raises(VanotebookInputError, match="path"):
        pv_slice(hdu, [(1, 1)])
    with pytest.raises(VanotebookInputError, match="path"):
        pv_slice(hdu, [(1, 1), (1.2, 1.2)])  # shorter than a step
    with pytest.raises(VanotebookInputError, match="order"):
        pv_slice(hdu, [(1, 1), (9, 9)], order=2)
    with pytest.raises(VanotebookInputError, match="region"):
        spectrum(hdu, (10.0, 10.0, 1 * u.arcsec))  # far from the cube
    stokes = M.hdu("vrad", stokes=True)
    data = np.concatenate([stokes.data, stokes.data])  # two Stokes planes: not degenerate
    with pytest.raises(VanotebookInputError, match="degenerate"):
        parse_cube((data, WCS(stokes.header)))
    rotated = M.hdu("vrad")
    rotated.header["PC1_3"] = 0.1  # the spectral axis mixed into the sky
    with pytest.raises(VanotebookInputError, match="separable"):
        moments(rotated)


def test_options_are_keyword_only():
    for func, positional in ((moments, {"cube", "orders"}), (pv_slice, {"cube", "path"}),
                             (spectrum, {"cube", "region"}), (channel_maps, {"cube", "n"})):
        params = inspect.signature(func).parameters.values()
        assert {p.name for p in params if p.kind is p.POSITIONAL_OR_KEYWORD} == positional
