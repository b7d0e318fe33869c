"""The validator refuses every settings.json the device's app aborts or misbehaves on (spec §4.2):
each key the app reads, mutated in a good file the project's own writer made, is refused with a
message naming the key, the bad value and the fix; and the writer never writes what it refuses."""

import json
import math

import pytest

from onss_tui.device.settings import (
    DeviceOptions,
    Instrument,
    build_settings,
    validate_pack,
    validate_settings,
    write_settings,
)
from tests.test_device import write_pads

CORNERS = [["bird1"], ["bird2"], ["bird3"], ["bird4"]]
PITCHES = [60]
R = 2


@pytest.fixture
def pack(tmp_path):
    """A one-pad pack and the settings.json the project's writer makes for it."""
    pads = tmp_path / "pads"
    write_pads(pads, CORNERS, PITCHES, R)
    return pads, write_settings(tmp_path / "settings.json", good_settings())


def good_settings() -> dict:
    instruments = [[Instrument.from_name(n) for n in c] for c in CORNERS]
    return build_settings(instruments, PITCHES, R, DeviceOptions(data_directory="/home/pi/birds"))


def errors(findings):
    return [str(f) for f in findings if f.level == "error"]


def mutate(path, fn):
    s = json.loads(path.read_text())
    fn(s)
    path.write_text(json.dumps(s))  # Python writes float("nan") as the literal NaN, as a hand edit would


def put(*keys_and_value):
    """A mutation setting s[k0][k1]...[kn] = value (keys may be list indices)."""
    *keys, last, value = keys_and_value

    def fn(s):
        for k in keys:
            s = s[k]
        s[last] = value

    return fn


# (label, mutation, words every one of which one error message must hold: the key, the bad value, the fix)
RULES = [
    ("midi.device a number", put("midi", "device", 5), ["midi.device", "must be a string", "/dev/ttyAMA0", "not 5"]),
    ("midi not an object", put("midi", 5), ["midi:", "must be an object", '"channel": 1', "not 5"]),
    ("osc not an object", put("osc", 5), ["osc:", "must be an object", '{"in": {"port": 8000}}', "not 5"]),
    ("osc.in a string", put("osc", "in", "x"), ["osc.in:", "must be an object", '{"port": 8000}', "not 'x'"]),
    ("osc.in.port too big", put("osc", "in", "port", 70000), ["osc.in.port", "integer 1-65535", "not 70000"]),
    ("osc.in.port zero", put("osc", "in", "port", 0), ["osc.in.port", "integer 1-65535", "not 0"]),
    ("osc.in.port a string", put("osc", "in", "port", "8000"), ["osc.in.port", "integer 1-65535", "not '8000'"]),
    ("audio not an object", put("audio", 5), ["audio:", "must be an object", '"bufferSize": 128', "not 5"]),
    ("audio.sampleRate zero", put("audio", "sampleRate", 0), ["audio.sampleRate", "positive integer", "not 0"]),
    ("audio.sampleRate a string", put("audio", "sampleRate", "48000"),
     ["audio.sampleRate", "positive integer", "e.g. 48000", "not '48000'"]),
    ("audio.bufferSize negative", put("audio", "bufferSize", -128),
     ["audio.bufferSize", "positive integer", "e.g. 128", "not -128"]),
    ("audio.deviceId a string", put("audio", "deviceId", "0"),
     ["audio.deviceId", "integer >= 0", "not '0'", "leave it out"]),
    ("audio.deviceId negative", put("audio", "deviceId", -1), ["audio.deviceId", "integer >= 0", "not -1"]),
    ("patchFile a number", put("patchFile", 42), ["patchFile", "must be a string", "bin/data/patches.json", "not 42"]),
    ("NaN literal", put("nsynth", "loopStart", math.nan), ["nsynth.loopStart", "NaN is not JSON", "finite number"]),
    ("NaN in a key the app ignores", put("osc", "in", "portNumber", math.nan),
     ["osc.in.portNumber", "NaN is not JSON", "does not start"]),
    ("Infinity literal", put("audio", "sampleRate", math.inf), ["audio.sampleRate", "Infinity is not JSON"]),
    ("-Infinity literal", put("nsynth", "loopEnd", -math.inf), ["nsynth.loopEnd", "-Infinity is not JSON"]),
    ("nsynth not an object", put("nsynth", 5), ["nsynth:", "must be an object", '"resolution": 9', "not 5"]),
    ("corner not an object", put("corners", 1, 5), ["corners[1]:", "must be an object", '"instruments"', "not 5"]),
    ("instrument not an object", put("corners", 0, "instruments", 0, "bird1"),
     ["corners[0].instruments[0]:", "must be an object", '"abbr"', "not 'bird1'"]),
    ("display a number", put("corners", 2, "instruments", 0, "display", 5),
     ["corners[2].instruments[0].display", "must be a string", "not 5"]),
    ("loopStart a string", put("nsynth", "loopStart", "0.2"),
     ["nsynth.loopStart", "must be a number", "fraction of the row", "not '0.2'"]),
    ("dataDirectory a number", put("nsynth", "dataDirectory", 5),
     ["nsynth.dataDirectory", "must be a string", "not 5"]),
    ("pitches a string", put("nsynth", "pitches", "60"),
     ["nsynth.pitches", "non-empty list of integers", "not '60'"]),
]


def test_the_writers_file_validates_clean(pack):
    pads, path = pack
    assert validate_pack(path, pads, resolution=R, pitches=PITCHES) == []
    assert validate_settings(json.loads(path.read_text()), resolution=R, pitches=PITCHES) == []


@pytest.mark.parametrize("label,change,words", RULES, ids=[r[0] for r in RULES])
def test_each_rule_refuses_its_mutation(pack, label, change, words):
    pads, path = pack
    mutate(path, change)
    errs = errors(validate_pack(path, pads, resolution=R, pitches=PITCHES))
    assert any(all(w in e for w in words) for e in errs), errs


def test_the_nan_mutation_writes_a_literal(pack):
    """The NaN cases test what they claim: the file holds the bare literal (Python's json reads it)."""
    _, path = pack
    mutate(path, put("nsynth", "loopStart", math.nan))
    assert '"loopStart": NaN' in path.read_text()


@pytest.mark.parametrize("label,change,words", RULES, ids=[r[0] for r in RULES])
def test_the_writer_refuses_what_the_validator_refuses(tmp_path, label, change, words):
    settings = good_settings()
    change(settings)
    target = tmp_path / "settings.json"
    with pytest.raises(ValueError) as exc:
        write_settings(target, settings)
    assert all(w in str(exc.value) for w in words), str(exc.value)
    assert "not written" in str(exc.value)
    assert not target.exists() and not list(tmp_path.iterdir())  # nothing half-written left behind


def test_the_writer_refuses_bad_device_options(tmp_path):
    instruments = [[Instrument.from_name(n) for n in c] for c in CORNERS]
    for options, words in [
        (DeviceOptions(osc_port=70000), ["osc.in.port", "not 70000"]),
        (DeviceOptions(audio_buffer_size=0), ["audio.bufferSize", "not 0"]),
        (DeviceOptions(audio_sample_rate=-48000), ["audio.sampleRate", "not -48000"]),
        (DeviceOptions(loop_start=math.nan), ["nsynth.loopStart", "not JSON"]),
    ]:
        with pytest.raises(ValueError) as exc:
            write_settings(tmp_path / "settings.json", build_settings(instruments, PITCHES, R, options))
        assert all(w in str(exc.value) for w in words), str(exc.value)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("keys", [("nsynth", "looping"), ("nsynth", "loopStart"), ("midi", "device"),
                                  ("osc", "in", "port"), ("patchFile",), ("audio", "deviceId"), ("osc",)])
def test_null_means_the_default(pack, keys):
    """The app's getDefault reads JSON null as "use the default": that is not an error."""
    pads, path = pack
    mutate(path, put(*keys, None))
    assert errors(validate_pack(path, pads, resolution=R, pitches=PITCHES)) == []
