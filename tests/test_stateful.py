"""A hypothesis state machine over a live transcript tree: whatever the order of appends, partial lines,
truncations, in-place rewrites, rotations, deletions, restarts and ingests, the ledger holds exactly the
unique requests (FORMAT-NOTES 5 keys; the max-output copy, direct before embedded; the earliest time) of
everything that was ever on disk as a complete line when an ingest looked. Content removed from disk after
it was read stays counted.

The oracle is independent of the parser: every line is generated from a small table of request
identities, and the expected row of a key is folded from the descriptors of the lines seen.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from daemon.ingest import Ingester
from fixtures_lines import (HOST, agent_progress, assistant, dumps, epoch_ms, files, fresh_store, rows, ts, usage,
                            user)


@dataclass(frozen=True)
class Identity:
    """One API request: everything but the output count and the time is the same in all its copies."""

    mid: str
    rid: str | None
    session: str
    model: str
    inp: int
    c5m: int
    c1h: int
    cread: int
    sidechain: bool = False
    final_output: int = 500

    @property
    def key(self) -> str:
        return f"m:{self.mid}|r:{self.rid}" if self.rid else f"s:{self.session}|m:{self.mid}"


IDENTITIES = [
    Identity("msg_01A", "req_01A", "sess-a", "claude-opus-4-6", 5, 100, 0, 20_000),
    Identity("msg_01B", "req_01B", "sess-a", "claude-sonnet-4-5-20250929", 12, 0, 300, 9_000),
    Identity("msg_01C", "req_01C", "sess-b", "claude-haiku-4-5-20251001", 3, 40, 40, 0),
    Identity("msg_01D", None, "sess-b", "claude-opus-4-6", 7, 0, 0, 1_234),            # no requestId
    Identity("msg_01D", None, "sess-a", "claude-opus-4-6", 8, 0, 0, 4_321),            # same id, other session
    Identity("msg_01S", "req_01S", "sess-a", "claude-haiku-4-5-20251001", 2, 10, 0, 500, sidechain=True),   # subagent
    Identity("msg_01T", "req_01T", "sess-b", "claude-haiku-4-5-20251001", 4, 0, 0, 800, sidechain=True),
    Identity("msg_01A", "req_01X", "sess-a", "claude-opus-4-6", 5, 100, 0, 20_000, sidechain=True),   # /btw replay of A
    Identity("kimi-const", None, "sess-b", "kimi-for-coding", 100, 0, 0, 0),            # gateway, unpriced
]
REPLAY_OF = {IDENTITIES[7].key: IDENTITIES[0]}


@dataclass(frozen=True)
class Copy:
    """What one generated line means: a copy of `ident` with this output count and time."""

    ident: Identity
    output: int
    ts_ms: int
    embedded: bool


class Ledger(RuleBasedStateMachine):
    """The tree under `base`; `self.content` mirrors every transcript on disk, byte for byte."""

    base_dir: Path
    runs = 0

    def __init__(self) -> None:
        super().__init__()
        Ledger.runs += 1
        self.dir = Ledger.base_dir / f"run-{Ledger.runs}"
        self.root = self.dir / "claude"
        proj = self.root / "projects" / "-home-dev-src-app"
        self.paths = [proj / "sess-a.jsonl", proj / "sess-b.jsonl", proj / "sess-a" / "subagents" / "agent-a1.jsonl"]
        for p in self.paths:
            p.parent.mkdir(parents=True, exist_ok=True)
        self.db = self.dir / "ledger.db"
        self.store = fresh_store(self.db)
        self.ingester = Ingester(self.store, [self.root], host=HOST, batch_bytes=700)
        self.content: dict[Path, bytes] = {}          # live files -> bytes on disk
        self.pending: dict[Path, bytes] = {}          # the rest of a partial last line
        self.meaning: dict[bytes, Copy] = {}          # line bytes -> what it is
        self.seen: set[bytes] = set()                 # request lines an ingest has looked at
        self.clock = epoch_ms(ts(1, 9))
        self.rotations = 0
        self.checked = False

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- line making
    def tick(self) -> int:
        self.clock += 1_000
        return self.clock

    def make_line(self, data: st.DataObject, noise: bool = True) -> bytes:
        kind = data.draw(st.sampled_from(["copy", "copy", "copy", "embedded"] + (["noise"] if noise else [])))
        if kind == "noise":
            return data.draw(st.sampled_from([
                dumps(user("hi", session="sess-a", at=ts(1, 8))), b"{not json", b"", b"[1,2]",
                dumps({"type": "progress", "data": {"type": "bash_progress", "message": {"type": "assistant",
                      "message": {"id": "msg_01Z", "usage": {"input_tokens": 9, "output_tokens": 9}}}}}),
                dumps(assistant("uuid-synthetic", "req_err", model="<synthetic>", at=ts(),
                                u=usage(input=0, output=0)))]))
        ident = data.draw(st.sampled_from(IDENTITIES if kind == "copy" else [i for i in IDENTITIES[5:7]]))
        output = data.draw(st.sampled_from([1, 3, 7, ident.final_output]))
        at = self.tick()
        line = assistant(ident.mid, ident.rid, session=ident.session, model=ident.model, sidechain=ident.sidechain,
                         agent="a1" if ident.sidechain else None, cwd="/home/dev/src/app",
                         at=_iso(at), u=usage(input=ident.inp, output=output, cache_read=ident.cread,
                                              cache_5m=ident.c5m, cache_1h=ident.c1h))
        if kind == "embedded":
            line = agent_progress(line, session=ident.session, at=_iso(at), agent="a1")
        raw = dumps(line)
        self.meaning[raw] = Copy(ident, output, at, kind == "embedded")
        return raw

    def lines(self, data: st.DataObject, lo: int = 1, hi: int = 4) -> bytes:
        return b"".join(self.make_line(data) + b"\n" for _ in range(data.draw(st.integers(lo, hi))))

    # ---- disk
    def write(self, path: Path, body: bytes, mode: str) -> None:
        with open(path, mode) as f:
            f.write(body)
        self.content[path] = (self.content.get(path, b"") if mode == "ab" else b"") + body

    def finish_partial(self, path: Path) -> None:
        rest = self.pending.pop(path, None)
        if rest is not None:
            self.write(path, rest, "ab")

    def live(self) -> list[Path]:
        return sorted(self.content)

    # ---- rules
    @rule(data=st.data(), i=st.integers(0, 2))
    def append_lines(self, data, i):
        path = self.paths[i]
        self.finish_partial(path)
        self.write(path, self.lines(data), "ab")

    @rule(data=st.data(), i=st.integers(0, 2))
    def append_partial_line(self, data, i):
        path = self.paths[i]
        self.finish_partial(path)
        raw = self.make_line(data, noise=False) + b"\n"
        cut = data.draw(st.integers(1, len(raw) - 1))
        self.write(path, raw[:cut], "ab")
        self.pending[path] = raw[cut:]

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def complete_partial_line(self, data):
        self.finish_partial(data.draw(st.sampled_from(sorted(self.pending))))

    @precondition(lambda self: self.content)
    @rule(data=st.data())
    def truncate(self, data):
        path = data.draw(st.sampled_from(self.live()))
        body = self.content[path]
        ends = [0] + [i + 1 for i, b in enumerate(body) if b == 0x0A]
        keep = data.draw(st.sampled_from(ends))
        with open(path, "r+b") as f:
            f.truncate(keep)
        self.content[path] = body[:keep]
        self.pending.pop(path, None)

    @precondition(lambda self: self.content)
    @rule(data=st.data())
    def rewrite_in_place(self, data):
        path = data.draw(st.sampled_from(self.live()))
        before = os.stat(path)
        body = self.lines(data, 0, 4)
        with open(path, "r+b") as f:                 # same inode, other bytes
            f.write(body)
            f.truncate(len(body))
        self.content[path] = body
        self.pending.pop(path, None)
        # Same size in the same clock tick is invisible to a stat-based tailer; real rewrites happen
        # later than the read they follow, so let the mtime show it (see tailer.classify).
        later = max(before.st_mtime_ns + 1_000_000, os.stat(path).st_mtime_ns)
        os.utime(path, ns=(later, later))

    @precondition(lambda self: self.content)
    @rule(data=st.data(), visible=st.booleans())
    def rotate(self, data, visible):
        """Rename the file away and start a new one at its path. The old bytes either stay a transcript
        (re-read under a new name: deduped) or leave the tree (what was read of them stays counted)."""
        path = data.draw(st.sampled_from([p for p in self.live() if p in self.paths] or self.live()))
        self.rotations += 1
        if visible:
            archived = path.with_name(f"{path.stem}.{self.rotations}.jsonl")
            os.rename(path, archived)
            self.content[archived] = self.content.pop(path)
            if path in self.pending:
                self.pending[archived] = self.pending.pop(path)
        else:
            os.rename(path, self.dir / f"rotated-{self.rotations}.bak")     # keeps the inode allocated
            del self.content[path]
            self.pending.pop(path, None)
        self.write(path, self.lines(data, 0, 3), "wb")

    @precondition(lambda self: self.content)
    @rule(data=st.data())
    def delete(self, data):
        path = data.draw(st.sampled_from(self.live()))
        path.unlink()
        del self.content[path]
        self.pending.pop(path, None)

    @rule()
    def restart(self):
        self.store = fresh_store(self.db)
        self.ingester = Ingester(self.store, [self.root], host=HOST, batch_bytes=700)

    @rule()
    def ingest(self):
        self.ingester.catch_up()
        for path in self.live():
            self.look_at(path)
        for path, f in files(self.db).items():       # every live file is read up to its last newline
            p = Path(path)
            if p in self.content:
                body = self.content[p]
                assert f["offset"] == body.rfind(b"\n") + 1, path
                assert not f["missing"]
            else:
                assert f["missing"], path
        self.check()

    @precondition(lambda self: self.content)
    @rule(data=st.data())
    def ingest_one_path(self, data):                 # a watcher hint
        path = data.draw(st.sampled_from(self.live()))
        self.ingester.ingest_path(str(path))
        self.look_at(path)
        self.check()

    # ---- the oracle
    def look_at(self, path: Path) -> None:
        body = self.content[path]
        for raw in body[:body.rfind(b"\n") + 1].split(b"\n"):
            if raw in self.meaning:
                self.seen.add(raw)

    def expected(self) -> dict[str, tuple]:
        best: dict[str, dict] = {}
        for raw in self.seen:
            c = self.meaning[raw]
            e = best.setdefault(c.ident.key, {"ident": c.ident, "direct": None, "embedded": None, "ts": c.ts_ms})
            slot = "embedded" if c.embedded else "direct"
            e[slot] = max(e[slot] or 0, c.output)
            e["ts"] = min(e["ts"], c.ts_ms)
        main_seen = {e["ident"].mid for e in best.values() if not e["ident"].sidechain}
        out = {}
        for k, e in best.items():
            i = e["ident"]
            if k in REPLAY_OF and i.mid in main_seen:
                continue                             # /btw replay of a main-chain message
            output = e["direct"] if e["direct"] is not None else e["embedded"]
            out[k] = (i.model, i.inp, output, i.c5m, i.c1h, i.cread, e["ts"])
        return out

    def check(self) -> None:
        got = {k: (r["model"], r["input_tokens"], r["output_tokens"], r["cache_write_5m"], r["cache_write_1h"],
                   r["cache_read"], r["ts_ms"]) for k, r in rows(self.db).items()}
        assert got == self.expected()
        self.checked = True


def _iso(ms: int) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_ledger_state_machine(tmp_path, isolated_env):
    Ledger.base_dir = tmp_path
    run_state_machine_as_test(Ledger, settings=settings(
        max_examples=int(os.environ.get("CCTALLY_STATEFUL_EXAMPLES", "100")), stateful_step_count=30,
        deadline=None, suppress_health_check=list(HealthCheck), database=None))
