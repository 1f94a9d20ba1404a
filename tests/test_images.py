"""Pictures of digits made MNIST-like: round trips from real MNIST digits rendered as photos,
a classifier's accuracy on them, and every documented refusal."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")
ImageDraw = pytest.importorskip("PIL.ImageDraw")

from gpumlp.data.images import MAX_PIXELS, find_images, read_digit, to_mnist  # noqa: E402
from helpers.bad_files import png_declaring  # noqa: E402
from helpers.cli import PATIENCE  # noqa: E402
from helpers.faults import PEAK_RSS  # noqa: E402

N_PHOTOS = 200
CENTRE = 14.0  # MNIST's mean centre of mass (pixel-centre coordinates), see gpumlp.data.images


# -- helpers ------------------------------------------------------------------------------------


def centre_of_mass(x: np.ndarray) -> np.ndarray:
    """(row, column) centre of mass of a (784,) digit, pixel-centre coordinates."""
    a = x.reshape(28, 28).astype(np.float64)
    i = np.arange(28)
    return np.array([a.sum(axis=1) @ i, a.sum(axis=0) @ i]) / a.sum()


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def photo(x, rng, *, fill: bool, dark: bool, contrast: float | None = None) -> np.ndarray:
    """An MNIST digit x (784,) as a grey "photo" (h, w) in [0, 1]: upscaled 3-12 times with a
    smooth filter, cropped to its ink, framed by no margin (``fill``) or a random one with the
    digit anywhere, on paper with a brightness gradient and noise, ink dark or light."""
    k = rng.uniform(3, 12)
    n = round(28 * k)
    big = np.clip(np.asarray(Image.fromarray(x.reshape(28, 28).astype(np.float32))
                             .resize((n, n), Image.Resampling.BICUBIC)), 0, 1)  # fmt: skip
    rows, cols = np.flatnonzero(big.max(1) > 0.05), np.flatnonzero(big.max(0) > 0.05)
    big = big[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = big.shape
    mh, mw = rng.integers(0, 3, 2) if fill else (rng.uniform(0.2, 3, 2) * max(h, w)).astype(int)
    oy, ox = rng.integers(0, mh + 1), rng.integers(0, mw + 1)
    digit = np.zeros((h + mh, w + mw))
    digit[oy : oy + h, ox : ox + w] = big
    if contrast is None:
        paper, ink = (rng.uniform(0.65, 0.95), rng.uniform(0, 0.3)) if dark else \
                     (rng.uniform(0, 0.25), rng.uniform(0.7, 1))  # fmt: skip
    else:
        paper = 0.85 if dark else 0.15
        ink = paper - contrast if dark else paper + contrast
    yy, xx = np.mgrid[0 : h + mh, 0 : w + mw]
    angle = rng.uniform(0, 2 * np.pi)
    gradient = 0.12 * ((yy / yy.shape[0] - 0.5) * np.sin(angle) + (xx / xx.shape[1] - 0.5)
                       * np.cos(angle))  # fmt: skip
    pic = paper + gradient + (ink - paper) * digit + rng.normal(0, 0.02, digit.shape)
    return np.clip(pic, 0, 1)


def save(pic: np.ndarray, path: Path, *, rgb: bool = False, **kw) -> Path:
    img = Image.fromarray((pic * 255).round().astype(np.uint8))
    if rgb:  # slightly tinted paper, as a colour photo would be
        img = Image.merge("RGB", [img.point(lambda v, t=t: int(v * t)) for t in (1, 0.95, 0.85)])
    img.save(path, **kw)
    return path


def naive(path: Path) -> np.ndarray:
    """What ``gpumlp predict`` did before: the whole frame resized to 28×28, inverted when its
    border is light."""
    with Image.open(path) as img:
        p = np.asarray(img.convert("L").resize((28, 28), Image.Resampling.LANCZOS)) / 255.0
    if np.concatenate([p[0], p[-1], p[:, 0], p[:, -1]]).mean() > 0.5:
        p = 1.0 - p
    return p.astype(np.float32).ravel()


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist():
    from gpumlp.data.mnist import load_mnist

    try:  # fetched when not cached, as test_mnist does
        return load_mnist()
    except (OSError, RuntimeError) as exc:  # offline: no fetch; a bad file or reader fails
        pytest.skip(f"MNIST cannot be fetched here: {exc}")


@pytest.fixture(scope="module")
def net(mnist):
    """A quick classifier (~96% on the test set in a few seconds)."""
    import gpumlp

    (X, y), _, _ = mnist
    net = gpumlp.Network([784, 100, 10], cost="cross_entropy", init="scaled", backend="numpy",
                         seed=0)  # fmt: skip
    net.fit(X, y, epochs=3, batch_size=10, lr=0.5)
    return net


def predict(net, X) -> np.ndarray:
    from gpumlp.backend import to_host

    return to_host(net.predict(np.asarray(X, np.float32)))


@pytest.fixture(scope="module")
def photos(mnist, tmp_path_factory):
    """N_PHOTOS test digits as photo files (a third filling their frame, half dark on light,
    half colour, half JPEG), read back with read_digit and with the naive resize."""
    _, _, (X, y) = mnist
    rng = np.random.default_rng(1)
    idx = rng.choice(len(X), N_PHOTOS, replace=False)
    folder = tmp_path_factory.mktemp("photos")
    fill = np.arange(N_PHOTOS) % 3 == 0
    paths = []
    for i, j in enumerate(idx):
        pic = photo(X[j], rng, fill=bool(fill[i]), dark=i % 2 == 0)
        jpeg = rng.random() < 0.5
        name = folder / f"{i:03d}.{'jpg' if jpeg else 'png'}"
        paths.append(save(pic, name, rgb=rng.random() < 0.5, **({"quality": 90} if jpeg else {})))
    return {"X": X[idx], "y": y[idx], "fill": fill, "paths": paths,
            "ours": np.stack([read_digit(p) for p in paths]),
            "naive": np.stack([naive(p) for p in paths])}  # fmt: skip


# -- round trips and a classifier ----------------------------------------------------------------


def test_photos_come_back_as_their_mnist_digits(photos):
    ours, X = photos["ours"], photos["X"]
    assert ours.shape == (N_PHOTOS, 784) and ours.dtype == np.float32
    assert ours.min() >= 0 and ours.max() == 1
    r = np.array([corr(a, b) for a, b in zip(ours, X, strict=True)])
    assert (r > 0.8).mean() >= 0.95, np.sort(r)[:10]
    assert np.median(r) > 0.9
    # The centre of mass sits at MNIST's centre (a sub-pixel shift); the originals' lie within
    # half a pixel of it (an integer shift).
    com = np.array([centre_of_mass(x) for x in ours])
    assert np.abs(com - CENTRE).max() < 0.05
    assert np.abs(np.array([centre_of_mass(x) for x in X]) - CENTRE).max() <= 0.55


def test_preprocessing_keeps_accuracy_where_the_naive_resize_loses_it(photos, net):
    y, fill = photos["y"], photos["fill"]
    original = (predict(net, photos["X"]) == y).mean()
    ours = predict(net, photos["ours"]) == y
    naive_ = predict(net, photos["naive"]) == y
    assert original > 0.9
    assert ours.mean() >= original - 0.05
    # Frame-filling (stretched, no margin) and off-centre small digits both defeat the resize.
    for subset in (fill, ~fill):
        assert ours[subset].mean() >= original - 0.08
        assert naive_[subset].mean() <= original - 0.4


def seven(path: Path, *, width: int, size=(240, 320)) -> Path:
    """A '7' of thick lines filling its whole frame, black on white."""
    w, h = size
    img = Image.new("L", size, 255)
    ImageDraw.Draw(img).line([(0, width // 2), (w - width // 2, width // 2), (w // 3, h)],
                             fill=0, width=width, joint="curve")  # fmt: skip
    img.save(path)
    return path


@pytest.mark.parametrize("width", [12, 36])
def test_a_seven_filling_its_frame_is_a_seven(net, tmp_path, width):
    path = seven(tmp_path / "seven.png", width=width)
    assert predict(net, read_digit(path)[None])[0] == 7


# -- what the preprocessing copes with -----------------------------------------------------------


def test_polarity_does_not_matter(mnist, tmp_path):
    _, _, (X, _) = mnist
    rng = np.random.default_rng(2)
    pic = photo(X[0], rng, fill=False, dark=True)
    dark = read_digit(save(pic, tmp_path / "dark.png"))
    light = read_digit(save(1 - pic, tmp_path / "light.png"))
    np.testing.assert_allclose(dark, light, atol=0.02)
    assert corr(dark, X[0]) > 0.85


def test_faint_pencil_on_unevenly_lit_paper(mnist):
    _, _, (X, _) = mnist
    rng = np.random.default_rng(3)
    for x in X[:10]:
        pic = photo(x, rng, fill=False, dark=True, contrast=0.12)  # noise 0.02, gradient 0.12
        got = to_mnist(pic)
        assert got.max() == 1 and corr(got, x) > 0.8


def test_dust_moves_neither_the_box_nor_the_centre(mnist):
    _, _, (X, _) = mnist
    rng = np.random.default_rng(4)
    pic = photo(X[1], rng, fill=False, dark=True)
    clean = to_mnist(pic)
    dusty = pic.copy()
    h, w = pic.shape
    for y, x in zip(rng.integers(0, h - 3, 12), rng.integers(0, w - 3, 12), strict=True):
        dusty[y : y + 3, x : x + 3] = 0.05  # dark specks of 3×3 pixels anywhere
    got = to_mnist(dusty)
    assert np.abs(centre_of_mass(got) - CENTRE).max() < 0.25
    assert corr(got, clean) > 0.97


FORMATS = {  # file name: how to make it from an 8-bit grey picture (a float one for "F")
    "rgb.png": lambda g, f: g.convert("RGB"),
    "la.png": lambda g, f: g.convert("LA"),
    "i16.png": lambda g, f: Image.fromarray((f * 65535).round().astype(np.uint16)),
    "palette.gif": lambda g, f: g.convert("P"),
    "bits.png": lambda g, f: g.point(lambda v: 255 if v > 128 else 0).convert("1"),  # a scan
    "cmyk.jpg": lambda g, f: g.convert("CMYK"),
    "grey.bmp": lambda g, f: g,
    "float.tif": lambda g, f: Image.fromarray(f.astype(np.float32)),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_formats_and_modes_agree(mnist, tmp_path, name):
    _, _, (X, _) = mnist
    pic = photo(X[3], np.random.default_rng(8), fill=False, dark=True)
    reference = read_digit(save(pic, tmp_path / "grey.png"))
    FORMATS[name](Image.open(tmp_path / "grey.png"), pic).save(tmp_path / name)
    assert corr(read_digit(tmp_path / name), reference) > (0.95 if name == "bits.png" else 0.98)


def test_transparent_canvas_is_white_paper(tmp_path):
    rgba = Image.new("RGBA", (120, 160), (0, 0, 0, 0))  # transparent black: "nothing"
    ImageDraw.Draw(rgba).line([(60, 10), (60, 150)], fill=(0, 0, 0, 255), width=14)
    rgba.save(tmp_path / "ink.png")
    white = Image.new("L", (120, 160), 255)
    ImageDraw.Draw(white).line([(60, 10), (60, 150)], fill=0, width=14)
    white.save(tmp_path / "paper.png")
    got = read_digit(tmp_path / "ink.png")
    np.testing.assert_allclose(got, read_digit(tmp_path / "paper.png"), atol=1e-6)
    bar = got.reshape(28, 28)[:, 14]  # an upright bar, 20 pixels tall, centred on row 14:
    assert bar[5:24].min() > 0.9 and bar[[4, 24]] == pytest.approx(0.5, abs=0.1)  # 4.5..24.5


def test_exif_orientation_is_undone(mnist, tmp_path):
    _, _, (X, _) = mnist
    pic = photo(X[2], np.random.default_rng(5), fill=False, dark=True)
    upright = read_digit(save(pic, tmp_path / "upright.jpg", quality=95))
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: the stored picture must be turned back
    turned = read_digit(save(np.rot90(pic).copy(), tmp_path / "turned.jpg", quality=95,
                             exif=exif))  # fmt: skip
    assert corr(turned, upright) > 0.98


def test_tiny_pictures(tmp_path):
    bar = np.ones((3, 3))
    bar[:, 1] = 0  # a dark middle column: a 3-pixel '1'
    got = read_digit(save(bar, tmp_path / "bar.png"))
    assert got.shape == (784,) and got.max() == 1
    assert np.abs(centre_of_mass(got) - CENTRE).max() < 0.25
    assert got.reshape(28, 28)[5:23, 14].min() > 0.5  # scaled up to a 20-pixel bar
    with pytest.raises(ValueError, match=r"no digit found in image .*blank"):
        read_digit(save(np.ones((3, 3)), tmp_path / "blank.png"))


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "1", "I;16", "F"])
@pytest.mark.parametrize("size", [(1, 1), (1, 2), (2, 1)])
def test_a_picture_of_one_or_two_pixels_is_blank_without_a_warning(tmp_path, mode, size):
    # A 1x1 picture has no neighbours to measure the noise from: it used to leak NumPy's
    # "Mean of empty slice" RuntimeWarning on the way to the same refusal.
    path = tmp_path / "dot.png" if mode != "F" else tmp_path / "dot.tif"
    Image.new(mode, size).save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=re.escape(f"no digit found in image '{path}'")):
            read_digit(path)


def test_side_and_pixels_are_checked():
    pic = np.ones((50, 40))
    pic[10:40, 18:22] = 0
    got = to_mnist(pic, side=20)
    assert got.shape == (400,)
    assert got.reshape(20, 20).max(axis=1).sum() == pytest.approx(round(20 * 20 / 28), abs=0.5)
    for bad in (np.ones((4, 4, 3)), np.ones((0, 5)), pic * 2, np.full((5, 5), np.nan)):
        with pytest.raises(ValueError, match="pixels must be"):
            to_mnist(bad)
    with pytest.raises(ValueError, match="side must be"):
        to_mnist(pic, side=2)


# -- refusals ------------------------------------------------------------------------------------


def blank_pictures():
    rng = np.random.default_rng(6)
    faint = np.full((100, 80), 0.8)
    faint[30:70, 35:45] -= 0.02  # 5 grey levels: below the 0.04 contrast a digit needs
    speck = np.clip(0.8 + rng.normal(0, 0.02, (300, 300)), 0, 1)
    speck[150:152, 100:102] = 0.0  # one dark speck on a noisy page
    return {
        "white": np.ones((50, 50)),
        "black": np.zeros((50, 50)),
        "noisy grey": np.clip(0.5 + rng.normal(0, 0.05, (200, 150)), 0, 1),
        "uneven light": np.linspace(0.3, 0.9, 200)[:, None] * np.ones((1, 120)),
        "faint": faint,
        "speck": speck,
    }


@pytest.mark.parametrize("name", list(blank_pictures()))
def test_blank_pictures_have_no_digit(tmp_path, name):
    path = save(blank_pictures()[name], tmp_path / "blank.png")
    with pytest.raises(ValueError, match=re.escape(f"no digit found in image '{path}'")):
        read_digit(path)


def test_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image '.*nope\.png' does not exist"):
        read_digit(tmp_path / "nope.png")
    with pytest.raises(ValueError, match=re.escape(f"image '{tmp_path}' is a directory")):
        read_digit(tmp_path)
    (tmp_path / "notes.png").write_text("not a picture\n")
    with pytest.raises(ValueError, match=r"image '.*notes\.png' cannot be read"):
        read_digit(tmp_path / "notes.png")
    pic = np.random.default_rng(7).random((300, 300))
    whole = save(pic, tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=r"image '.*cut\.png' cannot be read"):
        read_digit(tmp_path / "cut.png")


def test_huge_images_are_refused_from_their_header(tmp_path):
    """Three sizes: ours alone refuses 50 MP; Pillow warns at 100 MP (we refuse, no warning
    escapes); Pillow itself refuses 400 MP. Each in well under a second and a few MB, measured
    in a fresh process whose peak memory shows any decoding (50 MP would take 50 MB as grey)."""
    files = [png_declaring(tmp_path / f"{w}x{h}.png", w, h)
             for w, h in [(10000, 5000), (10000, 10000), (20000, 20000)]]  # fmt: skip
    assert max(f.stat().st_size for f in files) < 1 << 20
    code = (
        "import json, sys, time, warnings\n"
        f"{PEAK_RSS}\n"
        "import PIL.Image\n"
        "from gpumlp.data.images import read_digit\n"
        "warnings.simplefilter('error', PIL.Image.DecompressionBombWarning)\n"
        "out = []\n"
        "for path in sys.argv[1:]:\n"
        "    rss, t = peak_rss(), time.perf_counter()\n"
        "    try:\n"
        "        read_digit(path)\n"
        "        msg = None\n"
        "    except Exception as exc:\n"
        "        msg = f'{type(exc).__name__}: {exc}'\n"
        "    grew = peak_rss() - rss\n"
        "    out.append([msg, time.perf_counter() - t, grew / 2**20])\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run([sys.executable, "-c", code, *map(str, files)], capture_output=True,
                         text=True, timeout=PATIENCE, check=True)  # fmt: skip
    results = json.loads(run.stdout)
    limit = f"more than the {MAX_PIXELS / 1e6:g} megapixels gpumlp reads; scale it down first"
    for (msg, seconds, grew_mb), size in zip(results, ["10000x5000 pixels", "10000x10000 pixels",
                                                       "400 megapixels"], strict=True):  # fmt: skip
        assert msg is not None and msg.startswith("ValueError: image '") and size in msg, msg
        assert limit in msg and "\n" not in msg
        assert seconds < 2 and grew_mb < 20, (msg, seconds, grew_mb)


@pytest.mark.parametrize(
    ("rgb", "mode", "need"), [(False, "L", "480,000 bytes"), (True, "RGB", "1.8 MiB")]
)
def test_pictures_that_do_not_fit_in_memory_are_refused_before_decoding(
    tmp_path, monkeypatch, rgb, mode, need
):
    # Under MAX_PIXELS, but reading it peaks at 4 (grey) to 16 (colour) bytes a pixel.
    from gpumlp.files import safeio

    path = save(np.ones((300, 400)), tmp_path / "p.png", rgb=rgb)
    monkeypatch.setattr(safeio, "host_available_memory", lambda: 100_000)
    message = (f"image '{path}' (400x300 pixels, {mode}) would need {need} but only 100,000 "
               "bytes of memory is free")  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(message)):
        read_digit(path)
    monkeypatch.setattr(safeio, "host_available_memory", lambda: 2 << 20)
    with pytest.raises(ValueError, match="no digit found"):  # read: a blank page
        read_digit(path)


def test_pillow_limit_below_ours_is_reported(tmp_path, monkeypatch):
    path = save(np.ones((100, 100)), tmp_path / "small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a caller's own, stricter limit
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ValueError, match=r"image '.*small\.png' is too large for Pillow"):
            read_digit(path)


def test_without_pillow(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "PIL", None)  # makes `from PIL import Image` fail
    with pytest.raises(ImportError, match=r"pip install 'gpumlp\[image\]'"):
        read_digit(tmp_path / "any.png")
    with pytest.raises(ImportError, match="needs Pillow"):
        to_mnist(np.ones((5, 5)))
    code = "import sys; sys.modules['PIL'] = None; import gpumlp.data.images; print('ok')"
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE
    )
    assert run.stdout.strip() == "ok", run.stderr


# -- find_images ---------------------------------------------------------------------------------


def test_find_images_in_folders_and_files(tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    for name in ["b.png", "a.JPG", "c.jpeg", "notes.txt", "model.npz", ".hidden.png"]:
        (folder / name).write_bytes(b"")
    (folder / "sub.png").mkdir()  # a folder named like an image: not recursed into, not taken
    loose = tmp_path / "loose.dat"  # a file named is taken whatever its extension
    loose.write_bytes(b"")
    assert find_images([folder]) == [folder / n for n in ["a.JPG", "b.png", "c.jpeg"]]
    assert find_images([loose, str(folder), loose]) == [
        loose, folder / "a.JPG", folder / "b.png", folder / "c.jpeg", loose]  # fmt: skip
    assert find_images(loose) == [loose]


def test_find_images_refusals(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"image '.*missing\.png' does not exist"):
        find_images([tmp_path / "missing.png"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no pictures here")
    with pytest.raises(ValueError, match=r"folder '.*empty' holds no image files"):
        find_images([tmp_path / "empty"])
    with pytest.raises(ValueError, match="no image paths given"):
        find_images([])
