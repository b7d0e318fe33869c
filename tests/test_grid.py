"""Interpolation grid maths, naming and de-duplication against the spec (§3.2)."""

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onss_tui.pipeline.grid import combinations, corner_weights, description_name, grid_points, plan_sounds

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "onss_pipeline.md"
SHIPPED = {  # audio/settings.json of the original, as (TL, TR, BL, BR) = NW, NE, SE, SW
    "top_left": ["brass", "caridle", "crotales", "electroclav"],
    "top_right": ["fatpoly", "flute", "softpad", "kick"],
    "bottom_left": ["synthbrass", "cleanbass", "uprightbass", "windfx"],
    "bottom_right": ["marimba", "electricpiano", "snare", "steeldrum"],
}
PITCHES = list(range(24, 85, 4))


def spec_weight_table() -> np.ndarray:
    if not SPEC.is_file():
        pytest.skip("spec not found")
    rows = re.findall(r"^y(\d)\|(.*)$", SPEC.read_text(), flags=re.M)
    table = np.zeros((9, 9, 4))
    for y, cells in rows:
        for x, cell in enumerate(c.strip() for c in cells.split("|")):
            table[int(y), x] = [float(v) for v in cell.split("/")]
    assert len(rows) == 9
    return table


def test_weights_match_the_spec_table():
    table = spec_weight_table()
    for p in grid_points(9):
        np.testing.assert_allclose(np.round(corner_weights(p.x, p.y), 3), table[p.yi, p.xi], atol=1.5e-3)


def test_weights_properties():
    pts = grid_points(9)
    assert [(p.xi, p.yi) for p in pts[:10]] == [(x, 0) for x in range(9)] + [(0, 1)]  # x fastest
    w = {(p.xi, p.yi): corner_weights(p.x, p.y) for p in pts}
    assert all(abs(v.sum() - 1) < 1e-12 for v in w.values())
    for a, b in [((4, 0), (4, 1)), ((0, 4), (1, 4)), ((7, 4), (8, 4)), ((4, 7), (4, 8))]:
        assert np.array_equal(w[a], w[b])  # the four exact duplicates per 81 points
    assert w[(4, 1)][2] == 0 and w[(4, 1)][3] == 0  # (0.5, 0.125) is > 1 from the bottom corners
    assert np.array_equal(w[(0, 8)], [0, 0, 1, 0])  # corner index 2 is bottom-left


def test_names_as_the_original_writes_them():
    assert description_name(24, {"brass": 1.0}) == "brass_1.0_pitch_24"
    assert description_name(24, {"brass": 0.75, "fatpoly": 0.25}) == "brass_0.75_fatpoly_0.25_pitch_24"
    assert (description_name(60, {"uprightbass": 0.308, "brass": 0.022, "snare": 0.518, "fatpoly": 0.152})
            == "brass_0.022_fatpoly_0.152_pitch_60_snare_0.518_uprightbass_0.308")


def test_shipped_configuration_yields_118016_unique_sounds():
    plan = plan_sounds(list(SHIPPED.values()), PITCHES, 9)
    assert len(plan.sounds) == 118_016
    assert len(plan.pads) == 256 and plan.rows_per_pad == 81 * 16
    assert sum(len(r) for r in plan.pads.values()) == 331_776
    names = [s.name for s in plan.sounds]
    assert len(set(names)) == len(names)
    centre = "brass_0.25_fatpoly_0.25_marimba_0.25_pitch_24_synthbrass_0.25"
    assert centre in set(names)


def test_two_per_corner_yields_10368():
    corners = [c[:2] for c in SHIPPED.values()]
    assert len(plan_sounds(corners, PITCHES, 9).sounds) == 10_368


def test_pad_rows_point_at_the_right_sounds():
    plan = plan_sounds([["a", "b"], ["c"], ["d"], ["e"]], [30, 40], 3)
    comb = ("b", "c", "d", "e")
    rows = plan.pads[comb]
    assert list(plan.pads) == combinations([["a", "b"], ["c"], ["d"], ["e"]]) == [("a", "c", "d", "e"), comb]
    R, P = 3, 2
    for yi in range(R):
        for xi in range(R):
            for pi, pitch in enumerate([30, 40]):
                s = plan.sounds[rows[(yi * R + xi) * P + pi]]
                w = corner_weights(xi / 2, yi / 2)
                assert s.pitch == pitch
                assert dict(s.mix) == {comb[i]: w[i] for i in range(4) if w[i] > 0}
    # a pure corner sound is shared by both pads whose bottom-right is "e"
    br = lambda c: plan.pads[c][(2 * R + 2) * P]  # noqa: E731
    assert br(comb) == br(("a", "c", "d", "e"))


def test_the_same_instrument_in_two_corners_is_refused():
    with pytest.raises(ValueError, match="more than one corner"):
        plan_sounds([["a"], ["a"], ["b"], ["c"]], [60], 9)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 200_000), size=st.integers(1, 8192), workers=st.integers(1, 16))
def test_shards_cover_every_sound_once_and_balance_the_workers(tmp_path_factory, n, size, workers):
    from onss_tui.pipeline.plan import Shard, make_shards

    shards = make_shards(n, size, workers)
    assert [Shard.model_validate_json(s.model_dump_json()) for s in shards] == shards  # as plan.json stores them
    assert shards[0].start == 0 and shards[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(shards, shards[1:], strict=False))
    sizes = [s.stop - s.start for s in shards]
    assert max(sizes) <= size and max(sizes) - min(sizes) <= 1
    per_worker = [sum(s.stop - s.start for s in shards if s.worker == w) for w in range(workers)]
    # every worker gets the same count of shards (unless there are fewer sounds than that needs)
    assert len(shards) % workers == 0 or len(shards) == n
    assert max(per_worker) - min(per_worker) <= max(sizes)


def test_the_shipped_set_on_eight_gpus():
    from onss_tui.pipeline.plan import make_shards

    shards = make_shards(118_016, 4096, 8)
    assert len(shards) == 32 and {s.stop - s.start for s in shards} == {3688}
