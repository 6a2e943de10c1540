import json

import numpy as np

from lace_jax import records
from lace_jax.runs import images


def test_to_uint8_matches_upstream_rule():
    x = np.array([-1.2, -1.0, -0.5, 0.0, 0.004, 0.99, 1.0, 3.0], np.float32).reshape(1, 1, 1, 8)
    expected = np.clip(x * 127.5 + 128, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(images.to_uint8_nhwc(x), expected)
    assert images.to_uint8_nhwc(x).ravel().tolist() == [0, 0, 64, 128, 128, 254, 255, 255]


def test_grid_layout_and_png_roundtrip(tmp_path):
    imgs = np.zeros((5, 4, 6, 3), np.uint8)
    for i in range(5):
        imgs[i] = 10 * (i + 1)
    grid = images.make_grid(imgs, ncols=3, pad=1, pad_value=0)
    assert grid.shape == (2 * 5 + 1, 3 * 7 + 1, 3)
    assert grid[1, 1, 0] == 10 and grid[6, 8, 0] == 50 and grid[6, 15, 0] == 0  # 6th cell is empty padding
    path = images.save_png(tmp_path / "g.png", grid)
    from PIL import Image
    np.testing.assert_array_equal(np.asarray(Image.open(path)), grid)
    assert not list(tmp_path.glob("*.tmp"))


def test_scatter_places_points():
    img = images.scatter_png(np.array([[0.5, 0.5]]), extent=(0, 1, 0, 1), size=101, radius=1,
                             colors=np.array([[255, 0, 0]], np.uint8))
    assert tuple(img[50, 50]) == (255, 0, 0)
    assert tuple(img[10, 10]) == (255, 255, 255)


def test_records_json(tmp_path):
    rec = {"a": np.float32(1.5), "b": np.arange(3), "nan": float("nan"), "env": records.environment()}
    path = records.write_json(tmp_path / "r.json", rec)
    back = json.loads(path.read_text())
    assert back["a"] == 1.5 and back["b"] == [0, 1, 2] and back["nan"] is None
    assert "jax" in back["env"]["versions"]
