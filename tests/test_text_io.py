"""read_text, split_fraction and the default corpus."""

from __future__ import annotations

import gzip

import pytest

from rnnkit.errors import DataError
from rnnkit.text import STDLIB_MODULES, default_corpus, read_text, split_fraction

# ---------------------------------------------------------------- read_text


def test_reads_plain_and_gzip(tmp_path):
    text = "first line\nsecond, é\n"
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as f:
        f.write(text)
    assert read_text(tmp_path / "a.txt") == text
    assert read_text(str(tmp_path / "a.txt.gz")) == text


def test_reads_directory_recursively_in_sorted_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("bz")
    (tmp_path / "b" / "a.txt").write_text("ba\n")
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "c.txt.gz").write_bytes(gzip.compress(b"c"))
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / ".hidden").write_text("secret")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    assert read_text(tmp_path) == "a\nba\n\nbz\nc"


def test_newlines_and_bom_are_normalised(tmp_path):
    (tmp_path / "w.txt").write_bytes(b"\xef\xbb\xbfone\r\ntwo\rthree\n")
    assert read_text(tmp_path / "w.txt") == "one\ntwo\nthree\n"


def test_other_encodings(tmp_path):
    (tmp_path / "l.txt").write_bytes("café\n".encode("latin-1"))
    assert read_text(tmp_path / "l.txt", encoding="latin-1") == "café\n"
    (tmp_path / "u16.txt").write_bytes("hi\n".encode("utf-16"))
    assert read_text(tmp_path / "u16.txt", encoding="utf-16") == "hi\n"
    with pytest.raises(DataError, match="unknown text encoding 'klingon'"):
        read_text(tmp_path / "l.txt", encoding="klingon")


def test_undecodable_bytes_name_file_offset_and_line(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("line one\nline two\ncafé\n".encode("latin-1"))
    with pytest.raises(DataError) as e:
        read_text(path)
    msg = str(e.value)
    assert str(path) in msg and "0xe9" in msg
    assert "offset 21" in msg and "line 3" in msg and "--encoding" in msg


def test_undecodable_bytes_in_gzip_say_decompressed(tmp_path):
    path = tmp_path / "latin.txt.gz"
    path.write_bytes(gzip.compress("ok\n\xff".encode("latin-1")))
    with pytest.raises(DataError, match=r"offset 3 of the decompressed text \(line 2\)"):
        read_text(path)


@pytest.mark.parametrize(
    "name, data, match",
    [
        ("empty.txt", b"", "file is empty"),
        ("empty.txt.gz", gzip.compress(b""), "empty after decompression"),
        ("image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary data.*offset 8"),
        ("bad.gz", b"this is not gzip", "corrupt or truncated gzip"),
        ("cut.txt.gz", gzip.compress(b"hello world" * 100)[:-12], "corrupt or truncated gzip"),
    ],
)
def test_unusable_files_raise_data_error_naming_the_file(tmp_path, name, data, match):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError, match=match) as e:
        read_text(path)
    assert str(e.value).startswith(str(path))


def test_missing_path_and_empty_directory(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        read_text(tmp_path / "nope.txt")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "empty.txt").write_text("")
    with pytest.raises(DataError, match="holds no non-empty files"):
        read_text(tmp_path / "d")


def test_binary_file_inside_directory_is_named(tmp_path):
    (tmp_path / "a.txt").write_text("fine")
    (tmp_path / "b.bin").write_bytes(b"\x00\x01")
    with pytest.raises(DataError, match="b.bin: looks like binary"):
        read_text(tmp_path)


# ---------------------------------------------------------------- split_fraction


def test_default_split_is_nanogpt_90_10():
    text = "".join(chr(ord("a") + i % 26) for i in range(1003))
    parts = split_fraction(text)
    n = int(len(text) * 0.9)
    assert parts == {"train": text[:n], "valid": text[n:], "test": None}


def test_three_way_split_covers_the_text():
    text = "x" * 50 + "y" * 30 + "z" * 20
    parts = split_fraction(text, 0.5, 0.3, 0.2)
    assert (parts["train"], parts["valid"], parts["test"]) == ("x" * 50, "y" * 30, "z" * 20)


def test_split_at_lines_keeps_lines_whole():
    text = "".join(f"line {i}\n" for i in range(100))
    parts = split_fraction(text, 0.8, 0.1, 0.1, at_lines=True)
    assert parts["train"] + parts["valid"] + parts["test"] == text
    for part in parts.values():
        assert part.endswith("\n") and part.startswith("line ")


@pytest.mark.parametrize(
    "fractions, text, match",
    [
        ((0.9, 0.2, 0.0), "abcdef", "summing to 1"),
        ((0.0, 1.0, 0.0), "abcdef", "train > 0"),
        ((1.1, -0.1, 0.0), "abcdef", "valid >= 0"),
        ((0.9, 0.1, 0.0), "a", "too short .* train"),
        ((0.5, 0.25, 0.25), "ab", "too short .* valid"),
    ],
)
def test_split_fraction_rejects(fractions, text, match):
    with pytest.raises(DataError, match=match):
        split_fraction(text, *fractions)


# ---------------------------------------------------------------- default corpus


def test_default_corpus_is_a_few_mb_of_python_and_deterministic():
    text = default_corpus()
    assert 2_000_000 < len(text) < 8_000_000  # about 3.9 MB on CPython 3.11
    assert text == default_corpus()
    assert "def " in text and "import " in text
    assert list(STDLIB_MODULES) == sorted(STDLIB_MODULES)
    assert "\x00" not in text
