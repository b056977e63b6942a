"""daemon.tailer: complete lines only, bounded batches, and change detection against a stored snapshot."""
from __future__ import annotations

import os
from pathlib import Path

from daemon.tailer import (FINGERPRINT_BYTES, READ_CHUNK, Change, Snapshot, classify, fingerprints, read_lines)


def lines_of(path: Path, offset: int = 0, **kw) -> tuple[list[bytes], list]:
    with open(path, "rb") as f:
        batches = list(read_lines(f, offset, **kw))
    return [ln for b in batches for ln in b.lines], batches


def snapshot_after_read(path: Path) -> Snapshot:
    """What ingest stores after reading every complete line of `path`."""
    st = os.stat(path)
    with open(path, "rb") as f:
        batches = list(read_lines(f, 0))
        end = batches[-1].end if batches else 0
        read_to = batches[-1].read_to if batches else st.st_size
        head, tail = fingerprints(f, end)
    return Snapshot(dev=st.st_dev, inode=st.st_ino, size=read_to, offset=end, mtime_ns=st.st_mtime_ns,
                    head_hash=head, tail_hash=tail)


def test_complete_lines_only_partial_held_back(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"one\ntwo\nthr")
    got, batches = lines_of(p)
    assert got == [b"one", b"two"]
    assert batches[-1].end == 8 and batches[-1].read_to == 11
    with open(p, "ab") as f:
        f.write(b"ee\n")
    got, batches = lines_of(p, 8, first_line_no=3)
    assert got == [b"three"] and batches[0].first_line_no == 3 and batches[-1].end == 14


def test_nothing_complete_yields_nothing(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"type":"assistant","message":{"usage":{"input_tok')
    assert lines_of(p) == ([], [])
    p.write_bytes(b"")
    assert lines_of(p) == ([], [])


def test_batches_end_on_line_boundaries_and_cover_everything(tmp_path):
    p = tmp_path / "a.jsonl"
    body = b"".join(b"line-%05d-" % i + b"x" * (i % 37) + b"\n" for i in range(2000))
    p.write_bytes(body + b"tail-without-newline")
    got, batches = lines_of(p, batch_bytes=1000)
    assert len(batches) > 20
    assert got == body.split(b"\n")[:-1]
    prev_end, line_no = 0, 1
    for b in batches:
        assert b.first_line_no == line_no
        assert body[b.end - 1:b.end] == b"\n"
        assert b.end > prev_end
        # each batch's lines are exactly the bytes between the previous end and this end
        assert body[prev_end:b.end] == b"".join(ln + b"\n" for ln in b.lines)
        prev_end, line_no = b.end, line_no + len(b.lines)
    assert prev_end == len(body)


def test_crlf_lines_keep_their_cr_for_the_parser(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"a\r\nb\r\n")
    assert lines_of(p)[0] == [b"a\r", b"b\r"]


def test_line_spanning_read_chunks_is_intact(tmp_path):
    p = tmp_path / "a.jsonl"
    big = b"{" + b"x" * (5 * READ_CHUNK + 123) + b"}"
    p.write_bytes(b"first\n" + big + b"\nlast\n")
    got, _ = lines_of(p)
    assert got == [b"first", big, b"last"]


def test_oversized_lines_are_skipped_counted_and_the_next_line_kept(tmp_path):
    p = tmp_path / "a.jsonl"
    huge = b"y" * (3 * READ_CHUNK)
    p.write_bytes(b"before\n" + huge + b"\nafter\n" + huge + b"\nend\n")
    with open(p, "rb") as f:
        batches = list(read_lines(f, 0, max_line=READ_CHUNK // 2))
    got = [ln for b in batches for ln in b.lines if ln]
    assert got == [b"before", b"after", b"end"]
    assert sum(b.oversized for b in batches) == 2
    assert batches[-1].end == p.stat().st_size


def test_oversized_unterminated_line_at_eof_waits(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"ok\n" + b"z" * (3 * READ_CHUNK))
    with open(p, "rb") as f:
        batches = list(read_lines(f, 0, max_line=READ_CHUNK // 2))
    assert [ln for b in batches for ln in b.lines] == [b"ok"]
    assert batches[-1].end == 3 and sum(b.oversized for b in batches) == 0


def test_fingerprints_cover_head_and_the_bytes_before_offset(tmp_path):
    p = tmp_path / "a.jsonl"
    data = bytes(range(256)) * 100     # 25.6 KB
    p.write_bytes(data)
    with open(p, "rb") as f:
        h, t = fingerprints(f, 20000)
        assert fingerprints(f, 0) == ("", "")
        h_small, t_small = fingerprints(f, 100)
    assert h_small == t_small          # the same 100 bytes
    changed = bytearray(data)
    changed[20000 - 10] ^= 0xFF        # inside the tail window
    p.write_bytes(bytes(changed))
    with open(p, "rb") as f:
        assert fingerprints(f, 20000) == (h, fingerprints(f, 20000)[1]) != (h, t)
    changed = bytearray(data)
    changed[FINGERPRINT_BYTES - 1] ^= 0xFF   # inside the head window
    p.write_bytes(bytes(changed))
    with open(p, "rb") as f:
        assert fingerprints(f, 20000)[0] != h


def test_classify_new_unchanged_appended(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"one\ntwo\n")
    assert classify(str(p), None)[0] is Change.NEW
    snap = snapshot_after_read(p)
    assert classify(str(p), snap)[0] is Change.UNCHANGED
    with open(p, "ab") as f:
        f.write(b"three\n")
    assert classify(str(p), snap)[0] is Change.APPENDED


def test_classify_partial_line_then_completed_is_appended(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"one\ntw")
    snap = snapshot_after_read(p)
    assert snap.offset == 4 and snap.size == 6
    assert classify(str(p), snap)[0] is Change.UNCHANGED
    with open(p, "ab") as f:
        f.write(b"o\n")
    assert classify(str(p), snap)[0] is Change.APPENDED


def test_classify_truncation_is_reset(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"one\ntwo\nthree\n")
    snap = snapshot_after_read(p)
    with open(p, "r+b") as f:
        f.truncate(4)
    assert classify(str(p), snap)[0] is Change.RESET


def test_classify_rewrite_in_place_same_size_is_reset(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"one\ntwo\nsix\n")
    snap = snapshot_after_read(p)
    ino = p.stat().st_ino
    with open(p, "r+b") as f:          # same inode, same size, other bytes
        f.write(b"uno\ndos\ntre\n")
    os.utime(p, ns=(snap.mtime_ns + 1_000_000, snap.mtime_ns + 1_000_000))
    assert p.stat().st_ino == ino and p.stat().st_size == snap.size
    assert classify(str(p), snap)[0] is Change.RESET


def test_classify_rewrite_that_grows_with_other_prefix_is_reset(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"one\ntwo\n")
    snap = snapshot_after_read(p)
    with open(p, "r+b") as f:
        f.write(b"ONE\ntwo\nthree\nfour\n")
    assert classify(str(p), snap)[0] is Change.RESET


def test_classify_replacement_new_inode_is_reset(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"one\ntwo\n")
    snap = snapshot_after_read(p)
    keep = tmp_path / "keep"           # hold the old inode so it cannot be reused
    os.link(p, keep)
    tmp = tmp_path / "new.tmp"
    tmp.write_bytes(b"one\ntwo\n")     # identical bytes, new inode (atomic replace)
    os.replace(tmp, p)
    assert p.stat().st_ino != snap.inode
    assert classify(str(p), snap)[0] is Change.RESET


def test_classify_gone(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"one\n")
    snap = snapshot_after_read(p)
    p.unlink()
    change, st = classify(str(p), snap)
    assert change is Change.GONE and st is None


def test_caller_may_use_the_file_between_batches(tmp_path):
    """Ingest hashes the bytes before `batch.end` while the generator is suspended; no line may be
    duplicated or corrupted by that (it was, at every batch boundary with a partial line pending)."""
    p = tmp_path / "big.jsonl"
    body = b"".join(b'{"i":%d,"pad":"%s"}\n' % (i, b"z" * (i % 500)) for i in range(12000))
    p.write_bytes(body + b'{"partial"')
    for batch_bytes in (1, 777, 100_000, READ_CHUNK, 2 * READ_CHUNK):
        got = []
        with open(p, "rb") as f:
            for b in read_lines(f, 0, batch_bytes=batch_bytes):
                fingerprints(f, b.end)
                f.seek(0)
                f.read(10)
                got.extend(b.lines)
        assert got == body.split(b"\n")[:-1], batch_bytes
