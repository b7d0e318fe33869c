"""The command line's conventions (issue 17), each through the real CLI in a child process:
--version; no hang without a terminal; no traceback on a closed pipe; progress on stderr and results
on stdout; stage lines that name their stage on a terminal; a description and an example in every
command's help; shell completion; `onss env`; `onss model info`'s exit status; `onss validate RUN`."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onss_tui.cli import EventPrinter, build_parser
from tests.helpers import small_recipe, write_notes

BAD_OUTPUT = ("Traceback", "BrokenPipeError", "Exception ignored")


def onss(*args: str, cwd: Path, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "onss_tui", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, **kw)


def fast_recipe(tmp: Path) -> Path:
    """A recipe of four instruments at two pitches with the preview engine and no MP3 pass: seconds."""
    write_notes(tmp / "audio", list("abcd"), [60, 64], seconds=0.5)
    return small_recipe(tmp, clean={"mode": "none"})


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished run folder, as `onss demo` makes it."""
    out = tmp_path_factory.mktemp("demo") / "d"
    env = {**os.environ, **{f"ONSS_{k}_DIR": str(out.parent / k.lower()) for k in ("CACHE", "DATA", "STATE")}}
    p = onss("demo", "--out", str(out), cwd=out.parent, timeout=300, env=env)  # (before the per-test folders)
    assert p.returncode == 0, p.stderr[-3000:]
    return out / "run"


def command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """Every subcommand path with its parser: ("model",), ("model", "info"), ..."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*path, name), child
                yield from command_paths(child, (*path, name))


# --------------------------------------------------------------------------------------------
# 1. --version


def test_version_prints_onss_and_the_installed_version(tmp_path):
    p = onss("--version", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"onss {importlib.metadata.version('onss-tui')}\n"
    import onss_tui

    assert onss_tui.__version__ == importlib.metadata.version("onss-tui")


# --------------------------------------------------------------------------------------------
# 2. Without a terminal: refused at once, saying what to use instead


def test_attach_without_a_terminal_and_without_a_run_says_to_use_status(tmp_path):
    start = time.monotonic()
    p = onss("attach", cwd=tmp_path, timeout=30)  # stdin /dev/null, stdout a pipe; no ./runs either
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "needs a terminal" in p.stderr and "onss status RUN" in p.stderr, p.stderr
    assert time.monotonic() - start < 20 and not any(b in p.stderr for b in BAD_OUTPUT)


def test_tui_without_a_terminal_names_status_and_run(tmp_path):
    p = onss("tui", cwd=tmp_path, timeout=30)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "needs a terminal" in p.stderr and "onss status RUN" in p.stderr and "onss run RECIPE" in p.stderr


def test_a_terminal_on_stdin_only_is_refused_too_and_bare_onss_shows_the_help(tmp_path):
    """stdin a terminal, stdout a pipe (`onss tui | tee log`): no wizard that would wait on keys."""
    main_fd, child_fd = pty.openpty()
    try:
        for args in (["tui"], ["attach", "runs/x"]):
            p = onss(*args, cwd=tmp_path, timeout=30, stdin=child_fd)
            assert p.returncode == 2 and "needs a terminal" in p.stderr and "onss status" in p.stderr, p.stderr
        bare = onss(cwd=tmp_path, timeout=30, stdin=child_fd)
    finally:
        os.close(main_fd)
        os.close(child_fd)
    assert bare.returncode == 0 and "usage: onss" in bare.stdout
    assert "needs a terminal" in bare.stderr and "onss status RUN" in bare.stderr, bare.stderr


# --------------------------------------------------------------------------------------------
# 3. A reader that goes away: no BrokenPipeError traceback


def reader_goes_away(args: list[str], cwd: Path, lines: int) -> tuple[int, str]:
    """The command with stdout into a pipe whose reader reads ``lines`` lines and closes it
    (``| head -1``; 0: it closes before the command writes anything). (exit status, stderr)"""
    p = subprocess.Popen([sys.executable, "-m", "onss_tui", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(lines):
            assert p.stdout.readline(), "no output at all"
        p.stdout.close()
        err = p.stderr.read()
        return p.wait(timeout=120), err
    finally:
        p.kill()


@pytest.mark.parametrize("lines", [0, 1])
@pytest.mark.parametrize("command", ["status", "--help", "run --help", "recipe schema", "validate", "bare",
                                     "completion bash"])
def test_a_closed_pipe_is_never_a_traceback(finished_run, command, lines):
    args = {"status": ["status", str(finished_run)], "validate": ["validate", str(finished_run)],
            "bare": []}.get(command, command.split())
    code, err = reader_goes_away(args, finished_run.parent, lines)
    assert not any(b in err for b in BAD_OUTPUT), err
    assert code in (0, 1, 141), (code, err)  # done, or ended by the closed pipe as `| head` expects (128+SIGPIPE)


# --------------------------------------------------------------------------------------------
# 4 and 5. `onss run`: progress on stderr, results on stdout; on a terminal each stage line names its stage


def test_run_progress_goes_to_stderr_and_the_results_to_stdout(tmp_path):
    recipe = fast_recipe(tmp_path)
    p = onss("run", str(recipe), "--device", "cpu", cwd=tmp_path, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "[prepare] started" in p.stderr and "[validate] done" in p.stderr and "[generate] done" in p.stderr
    out = p.stdout.splitlines()
    assert not any(line.startswith("[") for line in out), p.stdout  # no progress line on stdout
    run = (tmp_path / "run").resolve()
    assert out[0] == f"pads:     {run / 'pads'}" and out[1] == f"settings: {run / 'settings.json'}", out
    assert any(line.startswith("Done (PREVIEW engine") and line.endswith(str(run)) for line in out), out
    assert "pads:" not in p.stderr and "Done" not in p.stderr
    # --json: the event lines are the output (stdout), as before
    j = onss("run", str(recipe), "--device", "cpu", "--json", cwd=tmp_path, timeout=300)
    events = [json.loads(line) for line in j.stdout.splitlines()]
    assert {e["event"] for e in events} >= {"run_start", "stage_skip", "run_done"}


def test_deploy_progress_goes_to_stderr_and_the_results_to_stdout(finished_run, tmp_path):
    from onss_tui.device.deploy import APP_DATA

    card = tmp_path / "card"
    (card / APP_DATA).mkdir(parents=True)
    p = onss("deploy", str(finished_run), "--to", str(card), cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    pads = sorted(f.name for f in (finished_run / "pads").glob("*.bin"))
    n = len(pads)
    assert [line for line in p.stderr.splitlines() if "copied" in line] == \
        [f"  copied {name} ({i}/{n})" for i, name in enumerate(pads, 1)], p.stderr  # progress: stderr
    assert "copied " not in p.stdout.replace(f"{n} copied", ""), p.stdout  # no per-file line on stdout
    assert f"Pads in {card.resolve() / 'home/pi/demo'}: {n} copied, 0 already there." in p.stdout, p.stdout
    assert f"Settings written: {card.resolve() / APP_DATA / 'settings.json'}" in p.stdout, p.stdout
    assert "Pads in" not in p.stderr and "Settings" not in p.stderr


def test_a_run_whose_progress_reader_goes_away_finishes_and_still_prints_its_results(tmp_path):
    recipe = fast_recipe(tmp_path)
    p = subprocess.Popen([sys.executable, "-m", "onss_tui", "run", str(recipe), "--device", "cpu"], cwd=tmp_path,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = p.stderr.readline()  # `2>&1 >out | head -1` on the progress
        p.stderr.close()
        out = p.stdout.read()
        code = p.wait(timeout=300)
    finally:
        p.kill()
    assert first.startswith("[prepare]"), first
    assert code == 0 and "Done" in out and "pads:" in out, out
    assert json.loads((tmp_path / "run" / "state.json").read_text())["status"] == "done"


def read_pty(fd: int, proc: subprocess.Popen, timeout: float) -> str:
    chunks = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    return b"".join(chunks).decode(errors="replace")


def test_run_on_a_terminal_names_the_stage_of_every_stage_line(tmp_path):
    """On a real terminal (a pty: Rich draws the bars) the lines read as they do on a pipe."""
    recipe = fast_recipe(tmp_path)
    main_fd, child_fd = pty.openpty()
    env = {**os.environ, "COLUMNS": "160", "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "onss_tui", "run", str(recipe), "--device", "cpu"], cwd=tmp_path,
                            stdin=child_fd, stdout=child_fd, stderr=child_fd, env=env)
    os.close(child_fd)
    try:
        text = read_pty(main_fd, proc, 300)
        assert proc.wait(timeout=60) == 0, text[-3000:]
    finally:
        proc.kill()
        os.close(main_fd)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    for stage in ("prepare", "plan", "generate", "pack", "settings", "validate"):
        assert f"[{stage}] started" in plain and f"[{stage}] done (" in plain, (stage, plain[-3000:])
    assert not re.search(r"(^|\r|\n) (started|done \()", plain), plain[-3000:]  # never a bare " started"
    assert "Done (PREVIEW engine" in plain and "pads:" in plain


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_terminal_printer_names_stages_and_prints_results_after_the_bars():
    progress, results = FakeTerminal(), io.StringIO()
    with EventPrinter(stream=progress, out=results) as printer:
        assert printer._progress is not None  # the Rich path
        printer({"event": "stage_start", "stream": "supervisor", "stage": "prepare"})
        printer({"event": "progress", "stream": "clean", "done": 1, "total": 2})
        printer({"event": "stage_done", "stream": "supervisor", "stage": "prepare", "seconds": 0.1, "t": 1})
        printer({"event": "run_done", "stream": "supervisor", "pads": "/r/pads", "settings": "/r/settings.json"})
        assert results.getvalue() == ""  # (not inside the live display)
    text = progress.getvalue()
    assert "[prepare] started" in text and "[prepare] done (seconds 0.1)" in text, text
    assert "pads:" not in text
    assert results.getvalue() == "pads:     /r/pads\nsettings: /r/settings.json\n"


# --------------------------------------------------------------------------------------------
# 6. onss model info: exit 1 when nothing is installed


def test_model_info_exits_1_when_nothing_is_installed(tmp_path):
    p = onss("model", "info", cwd=tmp_path)  # (ONSS_DATA_DIR: an empty folder of this test)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "onss model download" in p.stdout
    j = onss("model", "info", "--json", cwd=tmp_path)
    assert j.returncode == 1 and json.loads(j.stdout)["installed"] is False
    missing = onss("model", "info", "--checkpoint", str(tmp_path / "nothing"), cwd=tmp_path)
    assert missing.returncode == 2  # a checkpoint named that is not there: a mistake to fix


# --------------------------------------------------------------------------------------------
# 7. onss validate RUN_FOLDER, and --json on every read command


def test_validate_takes_a_run_folder_with_no_false_errors(finished_run):
    cwd = finished_run.parent
    p = onss("validate", str(finished_run), cwd=cwd)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "valid (0 errors, 0 warnings)" in p.stdout and "error:" not in p.stdout
    j = onss("validate", str(finished_run), "--json", cwd=cwd)
    report = json.loads(j.stdout)
    assert j.returncode == 0 and report["verdict"] == "valid" and report["findings"] == []
    assert report["pads"] == str(finished_run / "pads") and report["resolution"] == 9  # the run's recipe
    # its pads/ and its recipe name the same pack
    assert onss("validate", str(finished_run / "pads"), cwd=cwd).returncode == 0
    assert onss("validate", str(cwd / "recipes" / "demo.yaml"), cwd=cwd).returncode == 0
    # a damaged pack: "invalid", every finding, exit 1
    bad = cwd / "bad"
    shutil.copytree(finished_run, bad)
    next((bad / "pads").glob("*.bin")).unlink()
    j = onss("validate", str(bad), "--json", cwd=cwd)
    report = json.loads(j.stdout)
    assert j.returncode == 1 and report["verdict"] == "invalid" and report["errors"] >= 1
    assert report["findings"][0]["level"] == "error" and "missing" in report["findings"][0]["message"]


def test_every_read_command_has_json(finished_run, tmp_path):
    cwd = finished_run.parent
    for args in (["status", str(finished_run)], ["validate", str(finished_run)], ["model", "info"],
                 ["recipe", "check", str(cwd / "recipes" / "demo.yaml")], ["env"]):
        p = onss(*args, "--json", cwd=cwd)
        assert isinstance(json.loads(p.stdout), dict), (args, p.stdout[:500], p.stderr[-500:])


# --------------------------------------------------------------------------------------------
# 8. Every command's help: a description and an example


def test_every_subcommand_has_a_description_and_an_example(tmp_path):
    paths = list(command_paths(build_parser()))
    assert len(paths) >= 20
    for path, parser in paths:
        assert parser.description and len(parser.description) > 20, path
        assert parser.epilog and parser.epilog.startswith("example") and "onss " in parser.epilog, path
        assert parser.formatter_class is argparse.RawDescriptionHelpFormatter, path
    for path, parser in paths:  # and as printed
        p = onss(*path, "--help", cwd=tmp_path)
        assert p.returncode == 0, (path, p.stderr)
        assert parser.description.split()[0] in p.stdout and "\nexample" in p.stdout, (path, p.stdout)
        example = parser.epilog.splitlines()[1]
        assert example in p.stdout, (path, example)  # the examples keep their lines


# --------------------------------------------------------------------------------------------
# 9. onss completion bash|zsh|fish


def bash_complete(script: Path, *words: str) -> list[str]:
    """What bash's completion offers for ``words`` (the last one being completed)."""
    line = " ".join(f"'{w}'" if w else "''" for w in words)
    code = (f"source {script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMPREPLY=()\n"
            "_onss\nprintf '%s\\n' \"${COMPREPLY[@]}\"")
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return [w for w in p.stdout.splitlines() if w]


def test_bash_completion_completes_commands_options_and_choices(tmp_path):
    p = onss("completion", "bash", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    script = tmp_path / "onss.bash"
    script.write_text(p.stdout)
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert bash_complete(script, "onss", "st") == ["status", "stop"]
    assert bash_complete(script, "onss", "stat") == ["status"]
    top = bash_complete(script, "onss", "")
    assert set(top) == {name for (name, *rest), _ in command_paths(build_parser()) if not rest}
    assert bash_complete(script, "onss", "model", "") == ["download", "info"]
    assert bash_complete(script, "onss", "recipe", "c") == ["check"]
    assert "--dry-run" in bash_complete(script, "onss", "run", "recipes/x.yaml", "--d")
    assert bash_complete(script, "onss", "bench", "--precision", "b") == ["bf16"]
    assert bash_complete(script, "onss", "completion", "") == ["bash", "zsh", "fish"]
    assert bash_complete(script, "onss", "run", "") == []  # (bash then completes file names: -o default)


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completion(tmp_path):
    script = tmp_path / "onss.fish"
    script.write_text(onss("completion", "fish", cwd=tmp_path).stdout)
    p = subprocess.run(["fish", "--no-config", "-c", f"source {script}; complete -C 'onss st'; "
                        "complete -C 'onss model info --j'"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert [line.split("\t")[0] for line in p.stdout.splitlines()] == ["status", "stop", "--json"], p.stdout


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_completion(tmp_path):
    """The zsh function with compadd and _describe stubbed: what it would offer."""
    script = tmp_path / "_onss"
    script.write_text(onss("completion", "zsh", cwd=tmp_path).stdout)
    code = (f"compdef() {{ :; }}\nsource {script}\n"
            "compadd() { [[ $1 == -- ]] && shift; print -r -- \"$@\"; }\n"
            "_describe() { local -a arr; arr=(\"${(@P)4}\"); print -r -- \"${arr[@]%%:*}\"; }\n"
            "_files() { print FILES; }\n"
            "t() { words=(\"$@\"); CURRENT=${#words}; _onss; }\n"
            "t onss ''; t onss model ''; t onss completion ''; t onss run ''")
    p = subprocess.run(["zsh", "-f", "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split()[:3] == ["model", "encode", "recipe"] and "status" in lines[0].split()
    assert lines[1:] == ["download info", "bash zsh fish", "FILES"], lines


# --------------------------------------------------------------------------------------------
# 10. onss env


def test_env_shows_what_the_environment_screen_shows_without_the_ui_libraries(tmp_path):
    p = onss("env", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    for label in ("python", "torch", "GPUs", "checkpoint", "slurm", "audio", "ffmpeg"):
        assert re.search(rf"^{label}\s", p.stdout, re.M), (label, p.stdout)
    assert "not installed" in p.stdout and "onss model download" in p.stdout  # (an empty data folder)
    env = json.loads(onss("env", "--json", cwd=tmp_path).stdout)
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["checkpoint"]["installed"] is False
    assert env["slurm"]["available"] == (shutil.which("sbatch") is not None)
    import soundfile

    assert env["audio"]["mp3"] == ("MP3" in soundfile.available_formats()) and env["audio"]["mp3_problem"] is None
    code = ("import sys, io, contextlib\nfrom onss_tui.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n    main(['env', '--json'])\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert loaded.stdout.strip() == "[]", loaded.stdout + loaded.stderr
