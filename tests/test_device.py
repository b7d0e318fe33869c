"""Pad files, device settings and the validator: every rule catches its violation."""

import json

import numpy as np
import pytest

from onss_tui.device.pads import ROW_LENGTH, open_pad, pad_filename, pad_size, post_process, row_index, write_pad
from onss_tui.device.settings import DeviceOptions, Instrument, build_settings, validate_pack, write_settings
from onss_tui.pipeline.grid import plan_sounds

CORNERS = [["bird1", "owl"], ["bird2"], ["bird3"], ["bird4"]]
PITCHES = [48, 60]
R = 3


def sound(index: int, n: int = 20000) -> np.ndarray:
    """A distinct decaying tone per sound index, with 1000 samples of silence before the onset."""
    t = np.arange(n) / 16000
    x = 0.25 * np.sin(2 * np.pi * (200 + 37 * index) * t) * np.exp(-3 * t)
    return np.concatenate([np.zeros(1000), x]).astype(np.float32)


def write_pads(pads, corners, pitches, resolution):
    """Every pad of a grid, each row a distinct tone (:func:`sound`), into ``pads``: (plan, rows)."""
    plan = plan_sounds(corners, pitches, resolution)
    rows = [post_process(sound(s.index))[0] for s in plan.sounds]
    for combo, table in plan.pads.items():
        write_pad(pads / pad_filename(combo), (rows[i] for i in table), plan.rows_per_pad)
    return plan, rows


@pytest.fixture
def pack(tmp_path):
    pads = tmp_path / "pads"
    plan, rows = write_pads(pads, CORNERS, PITCHES, R)
    instruments = [[Instrument.from_name(n) for n in c] for c in CORNERS]
    settings = build_settings(instruments, PITCHES, R, DeviceOptions(data_directory="/home/pi/birds"))
    path = write_settings(tmp_path / "settings.json", settings)
    return pads, path, plan, rows


def errors(findings):
    return [f for f in findings if f.level == "error"]


def test_a_good_pack_validates_clean(pack):
    pads, settings, plan, rows = pack
    assert validate_pack(settings, pads, resolution=R, pitches=PITCHES) == []
    assert sorted(p.name for p in pads.iterdir()) == ["bird1_bird2_bird3_bird4.bin", "owl_bird2_bird3_bird4.bin"]


def test_rows_sit_where_the_device_reads_them(pack):
    pads, _, plan, rows = pack
    combo = ("owl", "bird2", "bird3", "bird4")
    data = open_pad(pads / pad_filename(combo), R, len(PITCHES))
    assert data.shape == (R * R * 2, ROW_LENGTH)
    assert (pads / pad_filename(combo)).stat().st_size == pad_size(R, 2) == R * R * 2 * ROW_LENGTH * 2
    raw = np.fromfile(pads / pad_filename(combo), dtype="<i2")  # little-endian, no header
    for yi in range(R):
        for xi in range(R):
            for pi, pitch in enumerate(PITCHES):
                row = row_index(xi, yi, pi, R, len(PITCHES))
                s = plan.sounds[plan.pads[combo][row]]
                assert s.pitch == pitch
                assert np.array_equal(raw[row * ROW_LENGTH : (row + 1) * ROW_LENGTH], rows[s.index])
    # bottom-right corner (xi = yi = R-1) is the pure fourth instrument of the file name
    br = plan.sounds[plan.pads[combo][row_index(R - 1, R - 1, 0, R, 2)]]
    assert br.name == "bird4_1.0_pitch_48"


def test_post_process_trims_onset_and_fades():
    x = sound(0)
    row, onset = post_process(x)
    first_loud = int(np.argmax(np.abs(x) > 0.1 * np.abs(x[:4000]).max()))  # 10 % of the peak in 0.25 s
    assert 1000 <= first_loud < 1010 and onset == first_loud - 16  # walked back 16
    assert row.dtype == np.int16 and row.shape == (ROW_LENGTH,)
    assert row[0] == 0 and row[-1] == 0
    np.testing.assert_array_equal(row[8:100], (x[onset + 8 : onset + 100] * 32768).astype(np.int16))
    assert (row[len(x) - onset :] == 0).all()  # zero-padded past the end of the sound
    # a late swell: the faithful whole-file search finds the later, louder onset
    late = np.concatenate([np.zeros(100), 0.02 * np.ones(8000), np.ones(100)]).astype(np.float32) * 0.5
    assert post_process(late)[1] == 100 - 16
    assert post_process(late, onset_search=None)[1] == 8100 - 16


def test_write_pad_refuses_wrong_rows(tmp_path):
    with pytest.raises(ValueError, match="expected 3"):
        write_pad(tmp_path / "a.bin", [np.zeros(ROW_LENGTH, np.int16)] * 2, 3)
    assert not (tmp_path / "a.bin").exists()  # nothing half-written left behind
    assert not list(tmp_path.iterdir())


def test_settings_content(pack):
    _, path, _, _ = pack
    s = json.loads(path.read_text())
    assert [c["instruments"][0]["name"] for c in s["corners"]] == ["bird1", "bird2", "bird3", "bird4"]
    assert s["nsynth"]["pitches"] == PITCHES and s["nsynth"]["resolution"] == R
    assert s["nsynth"]["length"] == 60000 and s["midi"]["channel"] == 1 and s["osc"]["in"]["port"] == 8000
    assert s["corners"][0]["instruments"][1] == {"name": "owl", "display": "OWL", "abbr": "OW"}


def mutate(path, fn):
    s = json.loads(path.read_text())
    fn(s)
    path.write_text(json.dumps(s))


RULES = [
    ("resolution", lambda s: s["nsynth"].update(resolution=5), "nsynth.resolution"),
    ("resolution type", lambda s: s["nsynth"].update(resolution="9"), "integer >= 1"),
    ("pitch order", lambda s: s["nsynth"].update(pitches=[60, 48]), "same values, same order"),
    ("pitch range", lambda s: s["nsynth"].update(pitches=[48, 200]), "0-127"),
    ("empty pitches", lambda s: s["nsynth"].update(pitches=[]), "non-empty"),
    ("length", lambda s: s["nsynth"].update(length=64000), "nsynth.length"),
    ("sample rate", lambda s: s["nsynth"].update(sampleRate=44100), "sampleRate"),
    ("loop order", lambda s: s["nsynth"].update(loopStart=0.5, loopEnd=0.4), "loopStart < loopEnd"),
    ("loop seconds", lambda s: s["nsynth"].update(loopStart=0.0, loopEnd=4.0), "not seconds"),
    ("looping type", lambda s: s["nsynth"].update(looping="yes"), "true or false"),
    ("three corners", lambda s: s["corners"].pop(), "exactly 4 corners"),
    ("empty corner", lambda s: s["corners"][1].update(instruments=[]), "at least one instrument"),
    ("name with _", lambda s: s["corners"][0]["instruments"][0].update(name="bird_1"), "without '_'"),
    ("missing display", lambda s: s["corners"][2]["instruments"][0].pop("display"), "display"),
    ("missing audio", lambda s: s.pop("audio"), "audio.sampleRate"),
    ("midi channel", lambda s: s["midi"].update(channel=17), "1-16"),
    ("renamed instrument", lambda s: s["corners"][3]["instruments"][0].update(name="bird9"), "missing"),
]


@pytest.mark.parametrize("label,change,needle", RULES, ids=[r[0] for r in RULES])
def test_each_rule_catches_its_violation(pack, label, change, needle):
    pads, path, _, _ = pack
    mutate(path, change)
    errs = errors(validate_pack(path, pads, resolution=R, pitches=PITCHES))
    assert errs and any(needle in str(e) for e in errs), [str(e) for e in errs]


def test_file_faults(pack):
    pads, path, _, _ = pack
    f = pads / "owl_bird2_bird3_bird4.bin"
    data = f.read_bytes()
    f.write_bytes(data[:-2])
    assert any("SIGBUS" in str(e) for e in errors(validate_pack(path, pads)))
    f.write_bytes(data + b"\0\0")
    assert any("another resolution" in str(e) for e in errors(validate_pack(path, pads)))
    f.unlink()
    assert any("missing" in str(e) and f.name in str(e) for e in errors(validate_pack(path, pads)))
    path.write_text("{ not json")
    assert "not valid JSON" in str(validate_pack(path, pads)[0])


def test_warnings(pack):
    pads, path, _, _ = pack
    mutate(path, lambda s: (s["midi"].pop("channel"), s["osc"]["in"].pop("port"),
                            s["corners"][0]["instruments"][0].update(display="A VERY LONG NAME")))
    found = validate_pack(path, pads)
    assert not errors(found)
    text = "\n".join(map(str, found))
    assert "channel 7" in text and "reads only 'port'" in text and "longer than 8" in text


def test_content_checks(pack):
    pads, path, _, _ = pack
    f = pads / "owl_bird2_bird3_bird4.bin"
    data = np.fromfile(f, dtype="<i2").reshape(-1, ROW_LENGTH)
    data[row_index(R - 1, R - 1, 0, R, 2)] = 0  # a silent row, and the shared bird4 corner now differs
    data.astype("<i2").tofile(f)
    text = "\n".join(map(str, validate_pack(path, pads)))
    assert "1 silent rows" in text and "corner rows differ" in text


def test_validate_cli(pack, capsys):
    from onss_tui.cli import main

    pads, path, _, _ = pack
    assert main(["validate", str(pads), "--settings", str(path), "--resolution", "3", "--pitches", "48,60"]) == 0
    assert "valid (0 errors" in capsys.readouterr().out
    assert main(["validate", str(pads)]) == 0  # finds the settings.json beside the pads folder
    capsys.readouterr()
    assert main(["validate", str(pads), "--settings", str(path), "--pitches", "60,48"]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and "same order" in out
    assert main(["validate", str(pads), "--pitches", "a,b"]) == 2
