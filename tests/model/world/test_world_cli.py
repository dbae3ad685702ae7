import numpy as np
from PIL import Image

from model.world.__main__ import main


def test_grid_command_writes_an_8x8_sample_grid(tmp_path):
    target = tmp_path / "images" / "grid.png"
    main(["--grid", str(target), "--seed", "3"])
    grid = Image.open(target)
    assert grid.size == (530, 530)  # eight 64 px tiles and nine 2 px gaps each way
    pixels = np.asarray(grid)
    tile_backgrounds = {
        tuple(pixels[2 + 66 * row, 2 + 66 * column]) for row in range(8) for column in range(8)
    }
    assert len(tile_backgrounds) >= 6  # 64 different scenes, not one picture repeated
