"""`onss model download` / `info`: resumable download over loopback, safe unpack, validation."""

import http.server
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from onss_tui.cli import main
from onss_tui.model import install


@pytest.fixture(scope="module")
def ckpt_tar(golden_checkpoint, tmp_path_factory) -> Path:
    tar_path = tmp_path_factory.mktemp("tar") / "wavenet-ckpt.tar"
    with tarfile.open(tar_path, "w") as tar:
        for f in sorted(golden_checkpoint.parent.iterdir()):
            tar.add(f, arcname=f"wavenet-ckpt/{f.name}")
    return tar_path


def sizes_of(prefix: Path) -> dict[str, int]:
    return {f.name: f.stat().st_size for f in prefix.parent.iterdir()}


class Server:
    """Serves one file on 127.0.0.1 with Range support; can cut the first response short."""

    def __init__(self, payload: bytes, cut_after: int | None = None):
        self.payload, self.cut_after, self.requests = payload, cut_after, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.requests.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                body = outer.payload[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(body)))
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.payload) - 1}/{len(outer.payload)}")
                self.end_headers()
                if outer.cut_after is not None and len(outer.requests) == 1:
                    self.wfile.write(body[: outer.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(2)  # drop the connection mid-transfer
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/wavenet-ckpt.tar"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_download_resumes_after_a_cut(tmp_path):
    payload = bytes(range(256)) * 4096  # 1 MiB
    server = Server(payload, cut_after=300_000)
    try:
        dest = tmp_path / "f.tar"
        with pytest.raises(install.InstallError, match="resume"):
            install.download(server.url, dest, chunk=65536)
        part = dest.with_name("f.tar.part")
        have = part.stat().st_size
        assert not dest.exists() and 0 < have < len(payload)  # nothing looks finished
        seen = []
        install.download(server.url, dest, progress=lambda d, t: seen.append((d, t)))
        assert dest.read_bytes() == payload and not part.exists()
        assert server.requests == [None, f"bytes={have}-"] and seen[0] == (have, len(payload))
        assert seen[-1] == (len(payload), len(payload))
    finally:
        server.close()


def test_download_and_install_via_cli(ckpt_tar, golden_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(install, "EXPECTED_SIZES", sizes_of(golden_checkpoint))
    server = Server(ckpt_tar.read_bytes())
    try:
        models = tmp_path / "models"
        assert main(["model", "download", "--dir", str(models), "--url", server.url]) == 0
    finally:
        server.close()
    prefix = models / "wavenet-ckpt" / "model.ckpt-200000"
    assert prefix.with_name(prefix.name + ".index").is_file()
    assert not (models / "wavenet-ckpt.tar").exists()  # the tar is removed once installed
    assert "Installed and verified" in capsys.readouterr().out
    assert main(["model", "info", "--checkpoint", str(models / "wavenet-ckpt")]) == 0
    out = capsys.readouterr().out
    assert "verified" in out and "61,804,048" in out and "EMA shadows present" in out
    # a second download is a no-op
    assert main(["model", "download", "--dir", str(models)]) == 0
    assert "already installed" in capsys.readouterr().out


def test_from_file_checks_the_published_sizes(ckpt_tar, tmp_path, capsys):
    code = main(["model", "download", "--dir", str(tmp_path / "m"), "--from-file", str(ckpt_tar)])
    err = capsys.readouterr().err
    assert code == 2 and "the published file is 986,763,532" in err and "Traceback" not in err
    assert not (tmp_path / "m" / "wavenet-ckpt").exists()  # nothing half-installed


def test_from_file_installs_into_the_default_data_dir(ckpt_tar, golden_checkpoint, monkeypatch, capsys):
    monkeypatch.setattr(install, "EXPECTED_SIZES", sizes_of(golden_checkpoint))
    assert main(["model", "download", "--from-file", str(ckpt_tar), "--force"]) == 0
    assert install.default_checkpoint().with_suffix(".ckpt-200000.index").is_file()
    assert main(["model", "info", "--json"]) == 0
    assert '"valid": true' in capsys.readouterr().out


@pytest.fixture(scope="module")
def flat_tar(golden_checkpoint, tmp_path_factory) -> Path:
    """The checkpoint's files at the top of the tar (no wavenet-ckpt/ in it): the unpacking folder
    itself becomes the installed one."""
    tar_path = tmp_path_factory.mktemp("flat") / "wavenet-ckpt.tar"
    with tarfile.open(tar_path, "w") as tar:
        for f in sorted(golden_checkpoint.parent.iterdir()):
            tar.add(f, arcname=f.name)
    return tar_path


@pytest.mark.parametrize("which", ["flat_tar", "ckpt_tar"])
@pytest.mark.parametrize(("umask", "folder", "file"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)])
def test_the_installed_checkpoint_follows_the_umask(which, umask, folder, file, golden_checkpoint, tmp_path,
                                                    monkeypatch, request):
    """Not mkdtemp's 0700 (the unpacking folder may become the installed one): the umask's modes."""
    monkeypatch.setattr(install, "EXPECTED_SIZES", sizes_of(golden_checkpoint))
    tar = request.getfixturevalue(which)
    models = tmp_path / "models"
    old = os.umask(umask)
    try:
        assert main(["model", "download", "--dir", str(models), "--from-file", str(tar)]) == 0
    finally:
        os.umask(old)
    target = models / "wavenet-ckpt"
    assert target.stat().st_mode & 0o7777 == folder
    files = sorted(target.iterdir())
    assert files and {f.name: f.stat().st_mode & 0o7777 for f in files} == {f.name: file for f in files}


def evil_tar(path: Path, name: str, symlink: bool = False) -> Path:
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(name)
        if symlink:
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
        else:
            data = b"x" * 10
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("name,symlink", [("../escaped.index", False), ("/abs/x.index", False),
                                          ("wavenet-ckpt/link.index", True)])
def test_unsafe_tars_are_refused(tmp_path, name, symlink):
    tar = evil_tar(tmp_path / "evil.tar", name, symlink)
    with pytest.raises(install.InstallError, match="refusing"):
        install.install_from_tar(tar, tmp_path / "models", expected_sizes={})
    assert not (tmp_path / "escaped.index").exists()
    assert not any((tmp_path / "models").glob("wavenet-ckpt*"))


def test_truncated_and_wrong_tars(ckpt_tar, tmp_path):
    cut = tmp_path / "cut.tar"
    cut.write_bytes(ckpt_tar.read_bytes()[: ckpt_tar.stat().st_size // 3])
    with pytest.raises(install.InstallError):
        install.install_from_tar(cut, tmp_path / "m", expected_sizes={})
    assert not (tmp_path / "m" / "wavenet-ckpt").exists()
    other = evil_tar(tmp_path / "other.tar", "readme.txt")
    with pytest.raises(install.InstallError, match="no checkpoint"):
        install.install_from_tar(other, tmp_path / "m", expected_sizes={})


def test_info_when_nothing_is_installed(capsys):
    assert main(["model", "info"]) == 1  # nothing installed: a state scripts can test, as --json's
    assert "onss model download" in capsys.readouterr().out
