"""`onss serve`: the same app in a browser through textual-serve, bound to localhost for ssh -L."""

import asyncio
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
                while b"Next: audio" not in shown and time.monotonic() < end:
                    try:
                        msg = await asyncio.wait_for(ws.receive(), 1)
                    except asyncio.TimeoutError:
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
    assert b"Next: audio" in shown and b"free disk for ./runs" in shown  # the environment screen, for the browser
    assert f"ssh -L {port}:localhost:{port}" in out and f"http://localhost:{port}" in out


def test_serve_without_the_extra_says_how_to_install_it():
    code = ("import sys; sys.modules['textual_serve'] = None; sys.modules['textual_serve.server'] = None\n"
            "from onss_tui.cli import main; sys.exit(main(['serve']))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 2 and "pip install 'onss-tui[serve]'" in p.stderr and "Traceback" not in p.stderr
