"""`onss serve`: the same app in a browser through textual-serve, bound to localhost for ssh -L."""

import asyncio
import re
import socket
import subprocess
import sys
import time

import pytest

from onss_tui.pipeline.demo import make_demo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def plain(terminal_output: bytes) -> str:
    """The text of a terminal stream, without its escape sequences."""
    escapes = rb"\x1b\[[0-9;?$]*[A-Za-z]|\x1b\][^\x07\x1b]*(\x07|\x1b\\)"
    return re.sub(escapes, b"", terminal_output).decode(errors="replace")


def test_serve_page_and_the_app_behind_its_websocket(tmp_path):
    aiohttp = pytest.importorskip("aiohttp")
    pytest.importorskip("textual_serve")
    make_demo(tmp_path)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "onss_tui.cli", "serve", "--port", str(port)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    async def talk() -> tuple[str, bytes]:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://localhost:{port}/") as r:
                        assert r.status == 200
                        page = await r.text()
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError("the server never answered")
            shown = b""
            async with session.ws_connect(f"http://localhost:{port}/ws?width=80&height=24") as ws:
                end = time.monotonic() + 60
                while "free disk" not in plain(shown) and time.monotonic() < end:
                    try:
                        msg = await asyncio.wait_for(ws.receive(), 1)
                    except TimeoutError:
                        continue
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        shown += msg.data
                    elif msg.type != aiohttp.WSMsgType.TEXT:
                        break
            return page, shown

    try:
        page, shown = asyncio.run(talk())
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert "onss" in page
    text = plain(shown)
    assert "Next: audio" in text and "free disk" in text  # the environment screen, drawn for the browser
    assert f"ssh -L {port}:localhost:{port}" in out and f"http://localhost:{port}" in out


def test_serve_without_the_extra_says_how_to_install_it():
    code = ("import sys; sys.modules['textual_serve'] = None; sys.modules['textual_serve.server'] = None\n"
            "from onss_tui.cli import main; sys.exit(main(['serve']))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 2 and "pip install 'onss-tui[serve]'" in p.stderr and "Traceback" not in p.stderr
