"""Corpora: generate once per (size, seed, generator version) and cache; hand each bench run a private copy.

The cached corpus is never modified. A bench run works on a hard-linked copy of its `projects/` tree
(cheap at 1 GB), in which the few files the catch-up section will append to are real copies, made BEFORE
the cold ingest so that appending later changes neither their inode nor the cached original.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

GENERATOR_ENV = "CCTALLY_GEN_CORPUS"


def find_generator(repo: Path, explicit: str | None = None) -> Path:
    """gen_corpus.py: --gen-corpus, else $CCTALLY_GEN_CORPUS, else ../shared/bench/gen_corpus.py beside the repo."""
    candidates = [explicit, os.environ.get(GENERATOR_ENV), str(repo.parent / "shared" / "bench" / "gen_corpus.py"),
                  "/work/shared/bench/gen_corpus.py"]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c).resolve()
    raise FileNotFoundError("gen_corpus.py not found: pass --gen-corpus PATH or set " + GENERATOR_ENV)


@dataclass
class Corpus:
    path: Path                 # a Claude config dir: path/projects/..., path/truth.json
    size_mb: float
    seed: int
    truth: dict
    bytes: int
    files: int
    lines: int

    @property
    def requests(self) -> int:
        return int(self.truth["totals"]["requests"])


def _stats(projects: Path) -> tuple[int, int, int]:
    nbytes = nfiles = nlines = 0
    for dirpath, _, names in os.walk(projects):
        for name in names:
            if not name.endswith(".jsonl"):
                continue
            with open(os.path.join(dirpath, name), "rb") as f:
                data = f.read()
            nfiles += 1
            nbytes += len(data)
            nlines += data.count(b"\n")
    return nbytes, nfiles, nlines


def ensure_corpus(cache: Path, generator: Path, size_mb: float, seed: int, log=print) -> Corpus:
    """The cached corpus for (size, seed, generator content), generated on first use."""
    gen_hash = hashlib.sha256(generator.read_bytes()).hexdigest()[:8]
    size_tag = f"{size_mb:g}".replace(".", "p")
    final = cache / f"size{size_tag}mb-seed{seed}-gen{gen_hash}"
    meta_path = final / "corpus.json"
    if not meta_path.exists():
        tmp = cache / (final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.parent.mkdir(parents=True, exist_ok=True)
        log(f"generating a {size_mb:g} MB corpus (seed {seed}) with {generator} ...")
        subprocess.run([sys.executable, str(generator), str(tmp), "--size-mb", f"{size_mb:g}", "--seed", str(seed)],
                       check=True, stdout=sys.stderr)      # keep stdout for the tables
        nbytes, nfiles, nlines = _stats(tmp / "projects")
        (tmp / "corpus.json").write_text(json.dumps({"size_mb": size_mb, "seed": seed, "generator": str(generator),
                                                     "generator_sha256_8": gen_hash, "bytes": nbytes,
                                                     "files": nfiles, "lines": nlines}, indent=1))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    meta = json.loads(meta_path.read_text())
    truth = json.loads((final / "truth.json").read_text())
    truth.pop("by_request", None)          # large and unused here
    return Corpus(path=final, size_mb=size_mb, seed=seed, truth=truth, bytes=meta["bytes"], files=meta["files"],
                  lines=meta["lines"])


def session_files(projects: Path) -> list[Path]:
    """Main session transcripts (`projects/<dir>/<uuid>.jsonl`), not subagent files."""
    out = []
    for pdir in sorted(projects.iterdir()):
        if pdir.is_dir():
            out += [p for p in sorted(pdir.glob("*.jsonl")) if not p.name.startswith("agent-")]
    return out


def make_workdir(corpus: Corpus, work: Path, private_files: int, seed: int) -> tuple[Path, list[Path]]:
    """A hard-linked copy of corpus/projects at work/projects; returns (config dir, files made private)
    — `private_files` session files chosen by `seed`, copied for real so they can be appended to."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        shutil.copytree(corpus.path / "projects", work / "projects", copy_function=os.link)
    except OSError:                        # another file system: copy for real
        shutil.rmtree(work / "projects", ignore_errors=True)
        shutil.copytree(corpus.path / "projects", work / "projects")
    rng = random.Random(seed)
    candidates = session_files(work / "projects")
    targets = rng.sample(candidates, min(private_files, len(candidates)))
    for p in targets:
        tmp = p.with_name(p.name + ".copy")
        shutil.copyfile(p, tmp)
        os.replace(tmp, p)
    return work, targets


# ---------------------------------------------------------------- appending fresh, realistic lines

_ID_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz123456789"
_UUID_KEYS = ("uuid", "parentUuid", "leafUuid", "messageId", "logicalParentUuid")
EXPECTED_FIELDS = ("requests", "input", "output", "cache_write_5m", "cache_write_1h", "cache_read")


@dataclass
class Appended:
    bytes: int
    lines: int
    files: int
    expected: dict[str, int]           # truth-style totals of the requests these lines add
    expected_by_day: dict[str, dict[str, int]] = field(default_factory=dict)


class Appender:
    """Appends ~N bytes of new lines to a fixed set of session files, as active sessions would.

    Lines are copied from other session files of the corpus with fresh uuids, message ids and request ids
    (one mapping per append, so the streamed copies of one response still share their ids) and the
    target's sessionId. `/btw`-style replays are left out, so every copied response is one new request;
    `expected` is what those requests add to truth (FORMAT-NOTES 5: largest output_tokens per key)."""

    def __init__(self, projects: Path, targets: list[Path], seed: int) -> None:
        self.rng = random.Random(seed)
        self.targets = targets
        self.sources = [p for p in session_files(projects) if p not in set(targets)] or list(targets)

    def _uid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _rand(self, prefix: str, n: int) -> str:
        return prefix + "".join(self.rng.choice(_ID_CHARS) for _ in range(n))

    def append(self, target_bytes: int = 1_000_000) -> Appended:
        idmap: dict[str, str] = {}
        keys: dict[tuple, dict] = {}
        per_file = max(1, target_bytes // len(self.targets))
        total_bytes = total_lines = 0

        def mapped(old: str, kind: str) -> str:
            new = idmap.get(old)
            if new is None:
                new = {"msg": lambda: self._rand("msg_01", 22), "req": lambda: self._rand("req_011C", 20)}.get(
                    kind, self._uid)()
                idmap[old] = new
            return new

        for target in self.targets:
            sid = target.stem
            chunk: list[bytes] = []
            size = 0
            while size < per_file:
                source = self.rng.choice(self.sources)
                for raw in source.read_bytes().splitlines():
                    line = self._rewrite(raw, sid, mapped, keys)
                    if line is None:
                        continue
                    chunk.append(line)
                    size += len(line) + 1
                    if size >= per_file:
                        break
            data = b"\n".join(chunk) + b"\n"
            with open(target, "ab") as f:
                f.write(data)
            total_bytes += len(data)
            total_lines += len(chunk)
        expected = {k: 0 for k in EXPECTED_FIELDS}
        by_day: dict[str, dict[str, int]] = {}
        for rec in keys.values():
            day = by_day.setdefault(rec["day"], {k: 0 for k in EXPECTED_FIELDS})
            for acc in (expected, day):
                acc["requests"] += 1
                for k in EXPECTED_FIELDS[1:]:
                    acc[k] += rec[k]
        return Appended(total_bytes, total_lines, len(self.targets), expected, by_day)

    def _rewrite(self, raw: bytes, sid: str, mapped, keys: dict) -> bytes | None:
        try:
            obj = json.loads(raw)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        kind = obj.get("type")
        if kind == "assistant" and obj.get("isSidechain") and not obj.get("agentId"):
            return None                                     # a /btw replay: not a request of its own
        for k in _UUID_KEYS:
            if isinstance(obj.get(k), str):
                obj[k] = mapped(obj[k], "uuid")
        if "sessionId" in obj:
            obj["sessionId"] = sid
        if kind == "assistant":
            self._rewrite_message(obj, mapped)
            self._count(obj, sid, keys, obj.get("timestamp"))
        elif kind == "progress" and isinstance(obj.get("data"), dict) and obj["data"].get("type") == "agent_progress":
            inner = obj["data"].get("message")
            if isinstance(inner, dict):
                for k in _UUID_KEYS:
                    if isinstance(inner.get(k), str):
                        inner[k] = mapped(inner[k], "uuid")
                if "sessionId" in inner:
                    inner["sessionId"] = sid
                self._rewrite_message(inner, mapped)
                self._count(inner, sid, keys, min(filter(None, [inner.get("timestamp"), obj.get("timestamp")])))
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    @staticmethod
    def _rewrite_message(line: dict, mapped) -> None:
        msg = line.get("message")
        if isinstance(msg, dict) and isinstance(msg.get("id"), str):
            msg["id"] = mapped(msg["id"], "msg" if msg["id"].startswith("msg_") else "uuid")
        if isinstance(line.get("requestId"), str):
            line["requestId"] = mapped(line["requestId"], "req")

    @staticmethod
    def _count(line: dict, sid: str, keys: dict, ts: str | None) -> None:
        msg = line.get("message")
        if not isinstance(msg, dict) or msg.get("model") == "<synthetic>":
            return
        u = msg.get("usage")
        if not isinstance(u, dict):
            return
        cc = u.get("cache_creation") or {}
        rec = {"input": u.get("input_tokens") or 0, "output": u.get("output_tokens") or 0,
               "cache_write_5m": cc.get("ephemeral_5m_input_tokens") or 0,
               "cache_write_1h": cc.get("ephemeral_1h_input_tokens") or 0,
               "cache_read": u.get("cache_read_input_tokens") or 0, "day": (ts or "")[:10]}
        if not any(rec[k] for k in EXPECTED_FIELDS[1:]):
            return
        rid = line.get("requestId")
        key = (msg.get("id"), rid) if rid else (sid, msg.get("id"))
        old = keys.get(key)
        if old is None:
            keys[key] = rec
        else:
            day = min(old["day"], rec["day"])
            if rec["output"] >= old["output"]:
                keys[key] = rec
            keys[key]["day"] = day
