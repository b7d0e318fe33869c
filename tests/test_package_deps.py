"""What the installed dependencies must do: the clean stage's MP3 mode checks that libsndfile writes MP3
before any work, and says how to fix it (a libsndfile that cannot is not to be had here: the probe is faked)."""

import json

import numpy as np
import pytest

from onss_tui.cli import EXIT_USER_ERROR, main
from onss_tui.pipeline import clean as dsp
from onss_tui.pipeline.context import RunError
from onss_tui.pipeline.demo import PITCHES, make_demo
from onss_tui.pipeline.stages import clean as clean_stage

OLD_SOUNDFILE = "write() got an unexpected keyword argument 'compression_level'"  # soundfile 0.12's answer


def test_the_installed_libsndfile_writes_mp3():
    assert dsp.mp3_unavailable() is None
    clean_stage.check_mp3()  # (no error)


def test_a_libsndfile_without_mp3_is_named(monkeypatch):
    formats = {k: v for k, v in dsp.sf.available_formats().items() if k != "MP3"}  # as libsndfile 1.0.x lists
    monkeypatch.setattr(dsp.sf, "available_formats", lambda: formats)
    monkeypatch.setattr(dsp.sf, "__libsndfile_version__", "1.0.31")
    why = dsp.mp3_unavailable()
    assert why is not None and "libsndfile 1.0.31" in why and "has no MP3 format" in why
    with pytest.raises(RunError, match="clean mode mp3") as exc:
        clean_stage.check_mp3()
    assert "pip install -U 'soundfile>=0.13'" in str(exc.value) and "mode: lowpass" in str(exc.value)


def test_a_failing_test_write_is_named(monkeypatch):
    def old_write(*args, **kwargs):
        raise TypeError(OLD_SOUNDFILE)

    monkeypatch.setattr(dsp.sf, "write", old_write)
    why = dsp.mp3_unavailable()
    assert why is not None and "test MP3 write failed" in why and OLD_SOUNDFILE in why


def test_the_check_is_a_round_trip_of_a_few_samples():
    y = dsp.mp3_round_trip(np.zeros(dsp.SAMPLE_RATE // 100, np.float32))
    assert len(y) > 0 and np.abs(y).max() < 1e-3


NO_MP3 = "libsndfile 1.0.31 (soundfile 0.12.1) has no MP3 format"


def _small_demo(folder):
    recipe = make_demo(folder)
    text = recipe.read_text().replace("resolution: 9", "resolution: 2")
    recipe.write_text(text.replace(f"pitches: {list(PITCHES)}", f"pitches: [{PITCHES[0]}]"))
    return recipe


def _refused(err: str) -> None:
    assert "onss: error: clean: the recipe's clean mode mp3 needs a libsndfile that writes MP3" in err
    assert "libsndfile 1.0.31" in err and "soundfile>=0.13" in err and "mode: lowpass" in err
    assert "Traceback" not in err


def test_a_run_is_refused_before_any_work_and_so_is_its_dry_run(tmp_path, monkeypatch, capsys):
    """Not after hours of generation: the run checks MP3 before its first stage."""
    recipe = _small_demo(tmp_path)
    with monkeypatch.context() as m:  # (the conftest's own settings stay)
        m.setattr(dsp, "mp3_unavailable", lambda: NO_MP3)
        assert main(["run", str(recipe), "--dry-run"]) == EXIT_USER_ERROR
        _refused(capsys.readouterr().err)
        assert main(["run", str(recipe), "--json"]) == EXIT_USER_ERROR
        _refused(capsys.readouterr().err)
    run = tmp_path / "run"
    state = json.loads((run / "state.json").read_text()) if (run / "state.json").is_file() else {"stages": {}}
    assert not [s for s, st in state["stages"].items() if st.get("status") == "done"]
    assert not (run / "generate").is_dir() or not list((run / "generate").iterdir())
    assert main(["run", str(recipe), "--json"]) == 0  # the libsndfile is fixed: the run goes on
    assert (run / "settings.json").is_file()


def test_the_clean_stage_checks_again_before_any_shard_and_the_run_resumes(tmp_path, monkeypatch, capsys):
    """A libsndfile that changed under a started run (another node, an upgrade) is caught at clean."""
    from onss_tui.pipeline.runner import Runner

    recipe = _small_demo(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(Runner, "check_tools", lambda self: None)  # (the check at the start passed)
        m.setattr(dsp, "mp3_unavailable", lambda: NO_MP3)
        assert main(["run", str(recipe), "--json"]) == EXIT_USER_ERROR
    _refused(capsys.readouterr().err)
    run = tmp_path / "run"
    state = json.loads((run / "state.json").read_text())
    assert state["stages"]["generate"]["status"] == "done" and state["stages"]["clean"]["status"] != "done"
    assert not list((run / "clean").glob("shard-*.npy"))  # refused before any work
    assert main(["run", str(recipe), "--json"]) == 0
    assert (run / "settings.json").is_file()


def test_env_says_what_the_clean_stage_would_say(monkeypatch, capsys):
    assert main(["env"]) == 0
    assert "MP3 works" in capsys.readouterr().out
    monkeypatch.setattr(dsp, "mp3_unavailable", lambda: NO_MP3)
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert f"NO MP3: {NO_MP3}" in out and "soundfile>=0.13" in out
    assert main(["env", "--json"]) == 0
    audio = json.loads(capsys.readouterr().out)["audio"]
    assert audio["mp3"] is False and audio["mp3_problem"] == NO_MP3
