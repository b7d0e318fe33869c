"""Hostile and broken input to the ``onss`` command line: each case ends promptly with exit status 2
and one message naming the file (or option) and the fix; no traceback, no hang, nothing lost.

The CLI runs as a subprocess with a timeout (a hang fails the test), and where a regression could
eat the machine (memory, disk) under a resource limit, so that it fails fast instead.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from onss_tui.cli import EventPrinter
from onss_tui.model import install
from onss_tui.recipe import PAD_NAME_MAX, RecipeError, parse_recipe
from tests.helpers import small_recipe, write_notes

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


def limits(memory: int | None = 2 << 30, file_size: int | None = None):
    """A preexec_fn: caps the child's address space (and the size of any file it writes)."""

    def apply() -> None:
        if memory is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        if file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))

    return apply


def onss(*args: str, cwd: Path, timeout: float = 120, preexec=None, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run([sys.executable, "-m", "onss_tui", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, preexec_fn=preexec, **kw)


def refused(p: subprocess.CompletedProcess, *words: str) -> str:
    """Exit status 2, every word in the message, no traceback; returns stderr."""
    err = p.stderr
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    for w in words:
        assert w in err, (w, err)
    return err


def recipe_text(**over) -> str:
    data = {"name": "x", "inputs": "audio", "pitches": [60],
            "corners": {c: [n] for c, n in zip(CORNERS, "abcd", strict=True)}}
    data.update(over)
    return yaml.safe_dump(data, sort_keys=False)


# --------------------------------------------------------------------------------------------
# 1. YAML that expands without bound; a recipe file that is far too big


def billion_laughs(levels: int = 9) -> str:
    names = "abcdefghijklmnopqrstuvwxyz"[:levels]
    lines = [f"a: &a [{', '.join(['x'] * 9)}]"]
    for prev, cur in zip(names, names[1:], strict=False):
        lines.append(f"{cur}: &{cur} [{', '.join([f'*{prev}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case", ["billion-laughs", "self-alias", "deep-nesting"])
def test_yaml_bombs_are_refused_before_they_expand(tmp_path, case):
    f = tmp_path / "bomb.yaml"
    if case == "billion-laughs":
        f.write_text(billion_laughs(9))
        words = ["bomb.yaml:6:4:", "&f", "aliases", "100,000"]  # &f is the first anchor past 100,000 values
    elif case == "self-alias":
        f.write_text("name: x\ncorners: &c {top_left: [*c]}\n")
        words = ["bomb.yaml:2:10:", "&c", "alias of itself"]
    else:
        f.write_text("name: " + "[" * 20000 + "]" * 20000 + "\n")
        words = ["bomb.yaml:", "nested too deeply"]
    p = onss("recipe", "check", str(f), cwd=tmp_path, timeout=60, preexec=limits(memory=2 << 30))
    refused(p, *words)


def test_a_recipe_file_over_the_size_limit_is_refused_unread(tmp_path):
    f = tmp_path / "huge.yaml"
    f.write_text(recipe_text() + "# " + "x" * 2_000_000 + "\n")  # valid YAML, and a valid recipe
    refused(onss("recipe", "check", str(f), cwd=tmp_path, timeout=60), "huge.yaml:", "more than 1,000,000 bytes",
            "right file")


# --------------------------------------------------------------------------------------------
# 2. A recipe that is not UTF-8


def test_a_latin1_recipe_names_the_file_the_position_and_the_fix(tmp_path):
    f = tmp_path / "latin.yaml"
    f.write_bytes(recipe_text().encode() + b"# caf\xe9\n")
    line = recipe_text().count("\n") + 1
    refused(onss("recipe", "check", str(f), cwd=tmp_path, timeout=60),
            f"latin.yaml:{line}:6:", "not UTF-8", "0xe9", "save the file as UTF-8")


# --------------------------------------------------------------------------------------------
# 3. Instrument names whose pad file names would be too long


def test_pad_file_names_over_the_limit_are_refused_at_recipe_load(tmp_path):
    # one long name per corner (beside short ones): the longest combination is what counts
    corners = {"top_left": ["s1", "a" * 70], "top_right": ["b" * 70], "bottom_left": ["c" * 70, "s2"],
               "bottom_right": ["d" * 70]}
    f = tmp_path / "long.yaml"
    f.write_text(recipe_text(corners=corners))
    err = refused(onss("recipe", "check", str(f), cwd=tmp_path, timeout=60),
                  "long.yaml:", "corners", f"is {4 * 70 + 3 + 4} bytes", f"at most {PAD_NAME_MAX}",
                  "use shorter instrument names")
    assert "a" * 70 + "_" + "b" * 70 in err
    # just inside the limit loads; just past it does not
    fits = (PAD_NAME_MAX - 3 - len(".bin")) // 4
    rest = PAD_NAME_MAX - 3 - len(".bin") - 3 * fits
    ok = {c: [ch * n] for c, ch, n in zip(CORNERS, "abcd", [fits, fits, fits, rest], strict=True)}
    assert parse_recipe(recipe_text(corners=ok)).corners.names()[3] == ["d" * rest]
    over = {**ok, "bottom_right": ["d" * (rest + 1)]}
    with pytest.raises(RecipeError, match=f"is {PAD_NAME_MAX + 1} bytes"):
        parse_recipe(recipe_text(corners=over))
    # the per-name rules still apply beside the length rule
    with pytest.raises(RecipeError, match=r"corners.top_left.0.name: 'a_b': use letters, digits"):
        parse_recipe(recipe_text(corners={"top_left": ["a_b"], "top_right": ["b"], "bottom_left": ["c"],
                                          "bottom_right": ["d"]}))
    with pytest.raises(RecipeError, match="appears in top_left and top_right"):
        parse_recipe(recipe_text(corners={"top_left": ["a" * 100], "top_right": ["a" * 100], "bottom_left": ["c"],
                                          "bottom_right": ["d"]}))


# --------------------------------------------------------------------------------------------
# 4. Paths with [ ] (Rich markup) on a terminal


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_event_lines_on_a_terminal_are_printed_as_they_are_not_as_markup():
    out = FakeTerminal()
    events = [
        {"event": "stage_start", "stream": "supervisor", "stage": "prepare"},
        {"event": "warning", "stream": "prepare", "message": "/in[/b]puts/a_60.wav: quiet"},
        {"event": "stage_redo", "stream": "supervisor", "stage": "pack", "reason": "[bold]x[/bold] changed"},
        {"event": "run_done", "stream": "supervisor", "pads": "/r/[red]x[/red]/pads", "settings": "/r/s[1].json"},
    ]
    with EventPrinter(stream=out) as printer:
        assert printer._progress is not None  # (the Rich console is in use)
        for e in events:
            printer(e)
    text = out.getvalue()
    for literal in ("[prepare] started", "/in[/b]puts/a_60.wav: quiet", "[pack] again: [bold]x[/bold] changed",
                    "/r/[red]x[/red]/pads", "/r/s[1].json"):
        assert literal in text, (literal, text)


# --------------------------------------------------------------------------------------------
# 5. A reader that goes away (| head -1) or a closed stdout never stops the run


def small_run(tmp: Path) -> Path:
    write_notes(tmp / "audio", list("abcd"), [60, 64])
    return small_recipe(tmp)


def assert_run_finished(tmp: Path) -> None:
    state = json.loads((tmp / "run" / "state.json").read_text())
    assert state["status"] == "done", state
    assert sorted(f.name for f in (tmp / "run" / "pads").glob("*.bin")) == ["a_b_c_d.bin"]


def test_a_run_piped_into_head_goes_on_to_the_end(tmp_path):
    recipe = small_run(tmp_path)
    err_file = tmp_path / "stderr.txt"
    with open(err_file, "w") as err:
        p = subprocess.Popen([sys.executable, "-m", "onss_tui", "run", str(recipe)], cwd=tmp_path,
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            first = p.stdout.readline()  # as `| head -1`: one line, then the reader is gone
            p.stdout.close()
            code = p.wait(timeout=300)
        finally:
            p.kill()
    err = err_file.read_text()
    assert first.startswith("pads:"), first  # (the progress is on stderr: its reader going away, test_cli_conventions)
    assert code == 0, err
    assert "Traceback" not in err and "Exception ignored" not in err and "BrokenPipe" not in err, err
    assert_run_finished(tmp_path)


def test_a_run_with_stdout_closed_goes_on_to_the_end(tmp_path):
    recipe = small_run(tmp_path)
    p = onss("run", str(recipe), cwd=tmp_path, timeout=300, preexec=lambda: os.close(1))  # as `>&-`
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr, p.stderr[-3000:]
    assert_run_finished(tmp_path)


# --------------------------------------------------------------------------------------------
# 6. onss serve: a port in use, out of range; a host open to the network


def listening(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((host, 0))
    s.listen()
    return s


def test_serve_on_a_port_in_use_says_which_and_how_to_choose_another(tmp_path):
    with listening("127.0.0.1") as s:
        port = s.getsockname()[1]
        refused(onss("serve", "--port", str(port), cwd=tmp_path, timeout=60), f"port {port} is in use", "--port N")


def test_serve_on_a_network_address_warns_that_the_wizard_is_open_to_it(tmp_path):
    with listening("0.0.0.0") as s:  # (busy, so the command ends after the warning)
        port = s.getsockname()[1]
        err = refused(onss("serve", "--host", "0.0.0.0", "--port", str(port), cwd=tmp_path, timeout=60),
                      "warning", "reachable from the network", "no password", f"ssh -L {port}:localhost:{port}",
                      f"port {port} is in use")
    assert err.index("warning") < err.index("is in use")


# --------------------------------------------------------------------------------------------
# 7. Numeric options: positive integers, ports 1-65535 (argparse: exit 2 before any work)


@pytest.mark.parametrize("args,words", [
    (["encode", "x.wav", "-o", "out", "--batch-size", "0"], ["argument --batch-size: 0: must be 1 or more"]),
    (["encode", "x.wav", "-o", "out", "--batch-size", "-4"], ["argument --batch-size: -4: must be 1 or more"]),
    (["encode", "x.wav", "-o", "out", "--batch-size", "two"], ["argument --batch-size: 'two' is not a whole number"]),
    (["bench", "--device", "cpu", "--batch", "8", "0"], ["argument --batch: 0: must be 1 or more"]),
    (["bench", "--device", "cpu", "--steps", "0"], ["argument --steps: 0: must be 1 or more"]),
    (["bench", "--device", "cpu", "--fidelity-samples", "-1"], ["argument --fidelity-samples: -1: must be 1 or more"]),
    (["validate", ".", "--resolution", "0"], ["argument --resolution: 0: must be 1 or more"]),
    (["serve", "--port", "80000"], ["argument --port: 80000: a port is 1-65535"]),
    (["serve", "--port", "0"], ["argument --port: 0: a port is 1-65535"]),
    (["serve", "--port", "http"], ["argument --port: 'http': a port is a number, 1-65535"]),
])
def test_numeric_options_out_of_range_are_refused_by_name(tmp_path, args, words):
    refused(onss(*args, cwd=tmp_path, timeout=60), *words)


# --------------------------------------------------------------------------------------------
# 8. A decompression bomb as the checkpoint tar


def gzip_bomb(path: Path, member: str, size: int) -> Path:
    """A .tar.gz of ~2 MB whose one file declares and holds ``size`` zero bytes (gzip members of
    1 MiB of zeros, concatenated: a valid gzip stream, made without compressing ``size`` bytes)."""
    info = tarfile.TarInfo(member)
    info.size = size
    zeros = gzip.compress(bytes(1 << 20), compresslevel=9)
    with open(path, "wb") as f:
        f.write(gzip.compress(info.tobuf(format=tarfile.GNU_FORMAT)))
        for _ in range(size // (1 << 20) + 1):  # the data, then zero blocks: the end of the archive
            f.write(zeros)
    return path


def test_a_gzip_bomb_checkpoint_is_refused_before_it_fills_the_disk(tmp_path):
    bomb = gzip_bomb(tmp_path / "wavenet-ckpt.tar.gz", "wavenet-ckpt/model.ckpt-200000.junk", 2 << 30)
    assert bomb.stat().st_size < 8 << 20
    models = tmp_path / "models"
    (models / "wavenet-ckpt").mkdir(parents=True)
    (models / "wavenet-ckpt" / "keep.txt").write_text("the installed checkpoint")
    # a regression that writes the bomb out fails fast (EFBIG) instead of filling the disk
    p = onss("model", "download", "--from-file", str(bomb), "--dir", str(models), cwd=tmp_path, timeout=120,
             preexec=limits(memory=None, file_size=64 << 20))
    refused(p, "wavenet-ckpt.tar.gz:", f"more than the {install.MAX_UNPACK_BYTES:,} bytes allowed",
            "not the NSynth checkpoint", "onss model download")
    assert sorted(f.name for f in models.rglob("*")) == ["keep.txt", "wavenet-ckpt"]  # nothing lost or left


def test_unpacking_stops_at_the_limit_across_files(tmp_path, monkeypatch):
    monkeypatch.setattr(install, "MAX_UNPACK_BYTES", 1 << 20)
    path = tmp_path / "many.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for i in range(4):  # each under the limit, together over it
            info = tarfile.TarInfo(f"wavenet-ckpt/part-{i}")
            info.size = 400_000
            tar.addfile(info, io.BytesIO(bytes(info.size)))
    written: list[int] = []
    with pytest.raises(install.InstallError, match="not the NSynth checkpoint"):
        install.install_from_tar(path, tmp_path / "m", expected_sizes={},
                                 progress=lambda done, total: written.append(done))
    assert max(written, default=0) <= 1 << 20
    assert list((tmp_path / "m").iterdir()) == []


# --------------------------------------------------------------------------------------------
# 9. The wizard without a terminal


@pytest.mark.parametrize("command", ["tui", "attach"])
def test_the_wizard_without_a_terminal_refuses_instead_of_hanging(tmp_path, command):
    args = [command]
    if command == "attach":
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "state.json").write_text("{}")
        args.append(str(tmp_path / "run"))
    refused(onss(*args, cwd=tmp_path, timeout=60, stdin=subprocess.DEVNULL), "needs a terminal", "SSH session",
            "onss run RECIPE" if command == "tui" else "onss status")
    # bare `onss` shows the help instead
    p = onss(cwd=tmp_path, timeout=60)
    assert p.returncode == 0 and "usage: onss" in p.stdout
