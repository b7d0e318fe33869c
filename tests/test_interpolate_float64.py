"""The interpolated embeddings are bit-identical to the original step 02 (spec §3.2.4):

    interpolated = (embeddings.T * weights).T.sum(axis=0)       float64 weights x float32 embeddings
    np.save(..., interpolated.astype(np.float32))

The float64 weight array promotes each product to float64, the four are summed in float64 and the sum
is cast to float32 once. Taking the products in float32 (a Python float times a float32 array) rounds
each product first, which moves some outputs by one float32 ulp.

The reference below is written from the original's code, independently of onss's grid module: its own
grid (meshgrid), weights (np.linalg.norm), descriptions (np.around) and names.
"""

from itertools import product

import numpy as np
import pytest

from onss_tui.pipeline.grid import corner_weights, grid_points
from onss_tui.pipeline.stages.interpolate import interpolate
from onss_tui.recipe import Recipe

CORNERS = {"top_left": ["a", "e"], "top_right": ["b"], "bottom_left": ["c", "g"], "bottom_right": ["d"]}
PITCHES = [48, 60]


def original_step02(corners: list[list[str]], pitches: list[int], resolution: int,
                    lookup: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """name -> saved embedding, as 02_compute_new_embeddings.py (with utils.py) computes it."""
    x, y = np.meshgrid(np.linspace(0, 1, resolution), np.linspace(0, 1, resolution))
    xy_grid = list(zip(x.reshape(-1), y.reshape(-1), strict=True))
    corner_xy = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    done, out = set(), {}
    for combination in sorted(product(*corners)):
        for pitch in pitches:
            embeddings = np.asarray([lookup[f"{inst}_{pitch}"] for inst in combination])  # float32 (4, T, 16)
            for xy in xy_grid:
                weights = np.maximum(1 - np.linalg.norm(np.asarray(xy) - corner_xy, axis=1), 0)
                weights /= weights.sum()
                assert weights.dtype == np.float64
                interpolated = (embeddings.T * weights).T.sum(axis=0)
                assert interpolated.dtype == np.float64
                meta = {"pitch": pitch}
                for inst, w in zip(combination, weights, strict=True):
                    if w > 0:
                        meta[inst] = np.around(w, decimals=3)
                key = tuple(sorted(meta.items()))
                if key in done:
                    continue
                done.add(key)
                name = "_".join(f"{k}_{meta[k]}" for k in sorted(meta))
                out[name] = interpolated.astype(np.float32)
    return out


def float32_products(corners, pitches, resolution, lookup) -> dict[str, np.ndarray]:
    """The same, but each product taken in float32 (the old onss arithmetic): for the guard below."""
    x, y = np.meshgrid(np.linspace(0, 1, resolution), np.linspace(0, 1, resolution))
    corner_xy = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    out = {}
    for combination in sorted(product(*corners)):
        for pitch in pitches:
            for xy in zip(x.reshape(-1), y.reshape(-1), strict=True):
                w = np.maximum(1 - np.linalg.norm(np.asarray(xy) - corner_xy, axis=1), 0)
                w /= w.sum()
                acc = np.zeros(lookup[f"{combination[0]}_{pitch}"].shape)
                for inst, wi in zip(combination, w, strict=True):
                    if wi > 0:
                        acc += float(wi) * lookup[f"{inst}_{pitch}"]  # float32 product
                meta = {"pitch": pitch} | {i: np.around(wi, 3) for i, wi in zip(combination, w, strict=True) if wi > 0}
                out.setdefault("_".join(f"{k}_{meta[k]}" for k in sorted(meta)), acc.astype(np.float32))
    return out


@pytest.mark.parametrize(("seed", "scale", "resolution"), [(0, 1.0, 9), (1, 37.5, 5), (2, 1e-3, 7), (3, 4.0, 9)])
def test_embeddings_are_bit_identical_to_the_original(tmp_path, seed, scale, resolution):
    rng = np.random.default_rng(seed)
    names = [n for c in CORNERS.values() for n in c]
    note_index = {(n, p): i for i, (n, p) in enumerate(product(names, PITCHES))}
    frames = 31
    # mixed magnitudes and signs, as real encodings have
    encodings = (rng.standard_normal((len(note_index), frames, 16)) * scale
                 * rng.uniform(0.01, 3.0, (len(note_index), 1, 16))).astype(np.float32)
    lookup = {f"{n}_{p}": encodings[i] for (n, p), i in note_index.items()}
    recipe = Recipe.model_validate({"name": "t", "inputs": "audio", "corners": CORNERS, "pitches": PITCHES,
                                    "resolution": resolution, "engine": "nsynth"})

    grid = interpolate(recipe, tmp_path, note_index, encodings)
    z = np.load(tmp_path / "embeddings.npy")
    assert z.dtype == np.float32 and z.shape == (len(grid.sounds), frames, 16)

    corners = [CORNERS[c] for c in ("top_left", "top_right", "bottom_left", "bottom_right")]
    want = original_step02(corners, PITCHES, resolution, lookup)
    assert sorted(s.name for s in grid.sounds) == sorted(want)
    for s in grid.sounds:
        assert z[s.index].tobytes() == want[s.name].tobytes(), s.name

    # the data tells the two arithmetics apart: products taken in float32 give other bits somewhere
    old = float32_products(corners, PITCHES, resolution, lookup)
    differing = sum(int(np.count_nonzero(old[n].view(np.uint32) != want[n].view(np.uint32))) for n in want)
    assert differing > 0


def test_corner_weights_are_the_originals_bit_for_bit():
    """utils.get_weights on the make_grid points, every resolution a recipe allows (np.hypot, used
    before, differed from the original's np.linalg.norm in the last bit at thousands of points)."""
    corner_xy = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    for resolution in range(2, 34):
        x, y = np.meshgrid(np.linspace(0, 1, resolution), np.linspace(0, 1, resolution))
        for p, xy in zip(grid_points(resolution), zip(x.reshape(-1), y.reshape(-1), strict=True), strict=True):
            assert (p.x, p.y) == xy
            distances = np.linalg.norm(np.asarray(xy) - corner_xy, axis=1)
            distances = np.maximum(1 - distances, 0)
            distances /= distances.sum()
            assert corner_weights(p.x, p.y).tobytes() == distances.tobytes(), (resolution, p)
