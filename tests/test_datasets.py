"""The data-set registry, the data folder, downloads (against a local HTTP server), PTB counts."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import socket
import threading
import warnings
from pathlib import Path

import pytest

from rnnkit.errors import DataError
from rnnkit.text import (
    DATASETS,
    WordTokenizer,
    data_dir,
    dataset_info,
    download_file,
    load_corpus,
    resolve,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(
    not (SHARED / "ptb").is_dir(), reason=f"shared data not found at {SHARED}"
)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve the folder ``served`` at ``http://127.0.0.1:<port>``; yields (folder, base url)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # The local server must be reached directly even where a proxy is configured.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file())


# ---------------------------------------------------------------- registry and data folder


def test_registry_entries():
    assert set(DATASETS) >= {"ptb", "tinyshakespeare", "wikitext-2"}
    assert dataset_info("ptb").level == "word"
    assert dataset_info("wikitext-2").level == "word"
    ts = dataset_info("tinyshakespeare")
    assert ts.level == "char" and ts.split == (0.9, 0.1, 0.0)
    assert [f.role for f in ts.files] == ["all"]
    for info in DATASETS.values():
        for f in info.files:
            assert f.url.startswith("https://") and f.url.endswith(f.filename)
            assert f.sha256 is None or len(f.sha256) == 64


def test_unknown_name_lists_known_names():
    with pytest.raises(DataError, match="unknown data set 'ptbb'.*ptb, tinyshakespeare"):
        resolve("ptbb")
    with pytest.raises(DataError, match="neither a known data set"):
        load_corpus("ptbb")


def test_data_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RNNKIT_DATA", str(tmp_path / "d"))
    assert data_dir() == tmp_path / "d"
    monkeypatch.delenv("RNNKIT_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_dir() == tmp_path / "xdg" / "rnnkit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_dir() == tmp_path / "home" / ".cache" / "rnnkit"


def test_missing_file_without_download(tmp_path):
    with pytest.raises(DataError, match="ptb.train.txt is missing.*by hand"):
        resolve("ptb", download=False, root=tmp_path)


def test_damaged_gzip_copy_fails_verification(tmp_path):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt.gz").write_bytes(gzip.compress(b"not it"))
    with pytest.raises(DataError, match="sha256 of the decompressed content"):
        resolve("tinyshakespeare", download=False, root=tmp_path)
    paths = resolve("tinyshakespeare", download=False, root=tmp_path, verify=False)
    assert paths["all"].name == "input.txt.gz"


# ---------------------------------------------------------------- shared data


@needs_shared
def test_resolve_shared_data_via_environment(monkeypatch):
    monkeypatch.setenv("RNNKIT_DATA", str(SHARED))
    paths = resolve("ptb", download=False)
    assert sorted(paths) == ["test", "train", "valid"]
    assert paths["train"].name == "ptb.train.txt.gz"  # stored gzipped, verified decompressed
    assert resolve("tinyshakespeare", download=False)["all"].name == "input.txt"


@needs_shared
def test_ptb_token_counts_and_vocabulary():
    texts = load_corpus("ptb", root=SHARED, download=False)
    tok = WordTokenizer().fit(texts["train"])
    # 10,000 word types (counting <unk> and <eos>) plus <pad> and <bos>
    assert len(tok.vocab) == 10_002
    assert tok.vocab.tokens[:4] == ("<pad>", "<unk>", "<bos>", "<eos>")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # valid and test hold no unknown words
        counts = [len(tok.encode(texts[k])) for k in ("train", "valid", "test")]
    assert counts == [929_589, 73_760, 82_430]


@needs_shared
def test_tinyshakespeare_split():
    texts = load_corpus("tinyshakespeare", root=SHARED, download=False)
    assert len(texts["train"]) == 1_003_854 and len(texts["valid"]) == 111_540
    assert texts["test"] is None


@needs_shared
def test_download_good_file_from_local_server(server, tmp_path):
    served, base = server
    shutil.copy(SHARED / "tinyshakespeare" / "input.txt", served / "input.txt")
    cache = tmp_path / "cache"
    paths = resolve("tinyshakespeare", root=cache, base_url=base)
    assert paths == {"all": cache / "tinyshakespeare" / "input.txt"}
    assert _files(cache) == ["input.txt"]
    digest = hashlib.sha256(paths["all"].read_bytes()).hexdigest()
    assert digest == dataset_info("tinyshakespeare").files[0].sha256


# ---------------------------------------------------------------- downloads


def test_download_file_checks_sha256(server, tmp_path):
    served, base = server
    data = b"some text\n" * 1000
    (served / "f.txt").write_bytes(data)
    dest = tmp_path / "cache" / "f.txt"
    good = hashlib.sha256(data).hexdigest()
    assert download_file(base + "/f.txt", dest, good) == dest
    assert dest.read_bytes() == data and _files(dest.parent) == ["f.txt"]
    with pytest.raises(DataError, match="expected 0000.*not saved"):
        download_file(base + "/f.txt", tmp_path / "other" / "f.txt", "0" * 64)
    assert _files(tmp_path / "other") == []


def test_wrong_download_leaves_nothing_in_cache(server, tmp_path):
    served, base = server
    (served / "input.txt").write_text("not Shakespeare\n")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="downloaded file has sha256"):
        resolve("tinyshakespeare", root=cache, base_url=base)
    assert _files(cache) == []


def test_missing_url_and_no_network_say_where_to_put_the_file(server, tmp_path):
    _, base = server
    with pytest.raises(DataError, match="HTTP 404.*put it at .*input.txt"):
        resolve("tinyshakespeare", root=tmp_path, base_url=base)
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DataError, match="could not download.*Without network access"):
        resolve("tinyshakespeare", root=tmp_path, base_url=f"http://127.0.0.1:{port}")
    assert _files(tmp_path) == []


def test_unverifiable_download_warns(server, tmp_path):
    served, base = server
    for role in ("train", "valid", "test"):
        (served / f"{role}.txt").write_text(f" {role} text\n")
    with pytest.warns(UserWarning, match="no sha256 is recorded"):
        texts = load_corpus("wikitext-2", root=tmp_path, base_url=base)
    assert texts == {"train": " train text\n", "valid": " valid text\n", "test": " test text\n"}


def test_load_corpus_from_path_splits_by_fraction(tmp_path):
    text = "abcdefghij" * 10
    (tmp_path / "t.txt").write_text(text)
    texts = load_corpus(tmp_path / "t.txt")
    assert texts == {"train": text[:90], "valid": text[90:], "test": None}
    texts = load_corpus(str(tmp_path), fractions=(0.8, 0.1, 0.1))
    assert (len(texts["train"]), len(texts["valid"]), len(texts["test"])) == (80, 10, 10)
