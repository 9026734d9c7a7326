"""`pydarknet download` against a local HTTP server (never the internet): the cache fills, a cut download resumes
with a Range request, a corrupted file leaves nothing; a downloaded file is found by its name alone."""
import hashlib
import http.server
import os
import subprocess
import sys
import threading

import click._termui_impl
import pytest

from conftest import ROOT, SHARED, shared_path
from pydarknet import cli
from pydarknet.files import download

TINY_TOP5 = ["malamute: 0.167168", "Eskimo dog: 0.065828", "dogsled: 0.063020",
             "standard schnauzer: 0.051153", "Siberian husky: 0.037506"]
CONTENT = bytes(range(256)) * 1000   # 256000 bytes: several reads of download.CHUNK


class Server(http.server.ThreadingHTTPServer):
    """Serves `files` (name -> bytes) with Range support; `cut` names files whose next full response stops
    halfway (the connection dropped); `ranges` records each request's Range header."""

    def __init__(self, files):
        super().__init__(("127.0.0.1", 0), Handler)
        self.files, self.cut, self.ranges = files, set(), []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        body = self.server.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        asked = self.headers.get("Range")
        self.server.ranges.append(asked)
        start = int(asked.removeprefix("bytes=").rstrip("-")) if asked else 0
        self.send_response(206 if asked else 200)
        if asked:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        name = self.path.lstrip("/")
        if name in self.server.cut:
            self.server.cut.discard(name)
            self.wfile.write(body[start:start + len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    s = Server({"fake.weights": CONTENT})
    thread = threading.Thread(target=s.serve_forever, daemon=True)
    thread.start()
    yield s
    s.shutdown()
    s.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty download cache and a model table of one fake model (its SHA-256 that of CONTENT)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("PYDARKNET_HOME", str(folder))
    fake = download.Model("fake", "https://example.invalid/files/fake.weights", len(CONTENT),
                          hashlib.sha256(CONTENT).hexdigest(), "cfg/tiny.cfg", "a test file")
    monkeypatch.setattr(download, "MODELS", {"fake": fake})
    return folder


@pytest.fixture
def run(capsys):
    """pydarknet's main() in this process: (exit code, stdout, stderr)."""
    def run(*args):
        with pytest.raises(SystemExit) as end:
            cli.main(args)
        out, err = capsys.readouterr()
        return end.value.code, out, err
    return run


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PYDARKNET_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert download.cache_dir() == tmp_path / "xdg" / "pydarknet"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert download.cache_dir() == download.Path.home() / ".cache" / "pydarknet"
    monkeypatch.setenv("PYDARKNET_HOME", str(tmp_path / "home"))
    assert download.cache_dir() == tmp_path / "home"


def test_the_official_table_names_each_cfg_shipped():
    for model in download.MODELS.values():
        assert (ROOT / model.cfg).is_file() and model.url.endswith("/" + model.file_name)


def test_download_fills_the_cache_and_lists_it(server, cache, run):
    _, listed, _ = run("download")
    assert listed.splitlines()[1].split()[:5] == ["fake", "0.3", "MB", "cfg/tiny.cfg", "no"]
    code, out, err = run("download", "fake", "--mirror", server.url)
    assert code == 0, err
    assert out == f"{cache / 'fake.weights'}\n"
    assert (cache / "fake.weights").read_bytes() == CONTENT and not (cache / "fake.weights.part").exists()
    assert run("download")[1].splitlines()[1].split()[4] == "yes"
    code, _, err = run("download", "fake.weights", "--mirror", server.url)   # the file name names it too
    assert code == 0 and "already downloaded" in err and server.ranges == [None]


def test_a_cut_download_resumes_with_a_range_request(server, cache, run):
    server.cut.add("fake.weights")
    code, _, err = run("download", "fake", "--mirror", server.url)
    assert code == 1 and "run the command again to resume" in err
    partial = cache / "fake.weights.part"
    assert partial.stat().st_size == len(CONTENT) // 2 and not (cache / "fake.weights").exists()
    code, _, err = run("download", "fake", "--mirror", server.url)
    assert code == 0, err
    assert server.ranges == [None, f"bytes={len(CONTENT) // 2}-"]
    assert (cache / "fake.weights").read_bytes() == CONTENT and not partial.exists()


def test_a_corrupted_file_is_refused_and_leaves_nothing(server, cache, run):
    server.files["fake.weights"] = CONTENT[:-1] + b"!"
    code, _, err = run("download", "fake", "--mirror", server.url)
    assert code == 1 and "SHA-256" in err and "deleted" in err
    assert not cache.exists() or list(cache.iterdir()) == []


def test_an_unknown_name_and_a_missing_file_are_one_line_errors(server, cache, run):
    code, _, err = run("download", "yolov9")
    assert code == 1 and err.startswith("pydarknet: error: yolov9: no such model")
    code, _, err = run("download", "fake", "--mirror", server.url + "/nothing-here")
    assert code == 1 and "HTTP 404" in err and len(err.splitlines()) == 1


def test_no_network_names_the_mirror_option(cache, run):
    code, _, err = run("download", "fake", "--mirror", "http://127.0.0.1:9")   # the discard port: refused
    assert code == 1 and len(err.splitlines()) == 1
    assert err.startswith("pydarknet: error: http://127.0.0.1:9/fake.weights: ") and "`--mirror BASE_URL`" in err
    assert f"copy fake.weights into {cache}" in err


def test_progress_shows_on_a_terminal_only(server, cache, monkeypatch, run):
    _, _, err = run("download", "fake", "--mirror", server.url)
    assert "[" not in err                       # not a terminal: no bar
    (cache / "fake.weights").unlink()
    monkeypatch.setattr(cli.progress, "stderr_is_terminal", lambda: True)
    monkeypatch.setattr(click._termui_impl, "isatty", lambda stream: True)
    _, out, err = run("download", "fake", "--mirror", server.url)
    assert "fake.weights  [####" in err and "0.3 MB of 0.3 MB" in err
    assert out == f"{cache / 'fake.weights'}\n"   # the bar never reaches stdout
    (cache / "fake.weights").unlink()
    assert run("download", "fake", "--mirror", server.url, "-q")[2] == ""


def test_a_missing_weights_file_names_the_download_command(tmp_path, monkeypatch, run):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYDARKNET_HOME", str(tmp_path / "empty-cache"))
    code, _, err = run("summary", "cfg/tiny.cfg", "tiny.weights", "-q")
    assert code == 1
    assert err.startswith("pydarknet: error: tiny.weights: no such file; `pydarknet download tiny` fetches it")


@pytest.mark.parametrize("name", sorted(download.MODELS))
def test_the_download_table_is_the_original_files(name):
    """Each model's size and SHA-256 in the download table are those of the original file in ../shared/models,
    whose md5 ../shared/models/MODELS.md lists (the published weights, byte for byte)."""
    model = download.MODELS[name]
    data = shared_path("models", model.file_name).read_bytes()
    assert len(data) == model.size and hashlib.sha256(data).hexdigest() == model.sha256
    row = next(line for line in (SHARED / "models" / "MODELS.md").read_text().splitlines()
               if line.startswith(f"| `{model.file_name}`"))
    size, md5 = [cell.strip() for cell in row.split("|")[2:4]]
    assert (int(size), md5) == (model.size, hashlib.md5(data).hexdigest())
    assert (ROOT / model.cfg).is_file()


def test_classify_finds_the_downloaded_weights_from_an_empty_directory(tmp_path):
    weights = shared_path("models", "tiny.weights")
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tiny.weights").symlink_to(weights)
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYDARKNET_HOME": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "pydarknet", "classify", "cfg/tiny.cfg", "tiny.weights",
                           "data/dog.jpg"], cwd=empty, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[1:] == TINY_TOP5
    assert f"tiny.weights: not in the working directory; using the downloaded {cache / 'tiny.weights'}" in proc.stderr
