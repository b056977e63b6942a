# Vendored copy of ../shared/bench/gen_corpus.py (the project's shared corpus generator), so a clone of this
# repository alone can run its tests. tests/truth.py prefers the shared original when it is beside the checkout.
#!/usr/bin/env python3
"""Generate a realistic synthetic Claude Code config dir, with its ground truth.

    python3 gen_corpus.py OUT --size-mb 50 [--seed 1] [--days 45] [--start 2026-09-01] [--nasty]

Writes OUT/projects/<encoded-cwd>/<session>.jsonl (plus <session>/subagents/agent-*.jsonl and flat
agent-*.jsonl files) shaped like real transcripts of Claude Code 2.0.x-2.1.x, and OUT/truth.json.

Ground truth semantics (see FORMAT-NOTES.md, section 5):
  * one API request = one key: (message.id, requestId), or (sessionId, message.id) when requestId is absent;
  * streamed copies of a request share the key; the copy with the largest output_tokens is the true one
    (early copies carry a placeholder output count <= the final one; each copy has its own timestamp, also
    when requestId is absent -- ccusage's `daily` loader keys requestId-less lines by timestamp too and so
    counts every streamed line of such a response; truth counts it once, as FORMAT-NOTES 5.1/5.4 say);
  * keys are global: resumed sessions copy earlier lines (same ids) into new files;
  * subagent requests of 2.1.2-2.1.96 sessions also appear embedded in the parent's `progress` lines
    (data.type == agent_progress); a few of those subagent files are missing, so those requests exist only
    there and still count;
  * a `/btw`-style sidechain replay (same message.id, other requestId, isSidechain) is not a new request;
  * `<synthetic>` API-error lines carry zero usage and are not requests;
  * with --nasty: garbage, blank, CRLF, non-object, invalid UTF-8, oversized and null-field lines are added,
    and some files end in a partial line (no newline) that must not be counted yet.
Day buckets in truth.json are UTC dates of the request's earliest timestamp.
Cost is not in truth.json: it depends on the price table (price it per request from by_request if needed).
"""
import argparse, datetime as dt, hashlib, json, os, random, re, uuid

VERSIONS_STREAM_PLACEHOLDER = ["2.0.76", "2.1.39"]   # early lines carry a placeholder output count
VERSIONS_STREAM_FINAL = ["2.1.178", "2.1.280"]       # every line carries the final usage
MODELS = [("claude-opus-4-6", 30), ("claude-sonnet-4-5-20250929", 25), ("claude-sonnet-4-6", 15),
          ("claude-opus-4-5-20251101", 10), ("claude-haiku-4-5-20251001", 15), ("claude-opus-4-1-20250805", 5)]
SUB_MODELS = ["claude-haiku-4-5-20251001", "claude-sonnet-4-5-20250929"]
WORDS = ("the of and to in is for on with that this file test function return value error build run "
         "import class def self data config path line token cache model request session project").split()


def vtuple(version):
    return tuple(int(x) for x in version.split("."))


def has_agent_progress(version):
    """2.1.2 .. 2.1.96 embed subagent lines in the parent's agent_progress lines (numeric compare, not string)."""
    return (2, 1, 2) <= vtuple(version) <= (2, 1, 96)


def encode_dir(cwd):
    return re.sub(r"[^A-Za-z0-9]", "-", cwd)


class Gen:
    def __init__(self, out, seed, days, start, nasty):
        self.out, self.r, self.days, self.start, self.nasty = out, random.Random(seed), days, start, nasty
        self.bytes = 0
        self.truth = {}          # key -> request dict
        self.sessions = []       # (cwd, session_id, lines) for resume copies
        self.partial_files = 0
        self.bad_lines = 0

    # ---------- small helpers
    def uid(self):
        return str(uuid.UUID(int=self.r.getrandbits(128), version=4))

    def text(self, n):
        r = self.r
        words = []
        size = 0
        while size < n:
            w = r.choice(WORDS)
            words.append(w)
            size += len(w) + 1
        return " ".join(words)

    def msg_id(self):
        return "msg_01" + "".join(self.r.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz123456789") for _ in range(22))

    def req_id(self):
        return "req_011C" + "".join(self.r.choice("ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz123456789") for _ in range(20))

    def ts(self, t):
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"

    def usage(self, model, big=False):
        r = self.r
        cr = int(r.lognormvariate(10.5, 1.0)) if r.random() < 0.9 else 0
        if big:
            cr = r.randint(205_000, 400_000)
        c1h = int(r.lognormvariate(7.5, 1.3)) if r.random() < 0.25 else 0
        c5m = int(r.lognormvariate(7.5, 1.3)) if r.random() < 0.5 else 0
        u = {"input_tokens": r.randint(1, 12) if r.random() < 0.85 else r.randint(100, 20_000),
             "cache_creation_input_tokens": c5m + c1h,
             "cache_read_input_tokens": cr,
             "cache_creation": {"ephemeral_5m_input_tokens": c5m, "ephemeral_1h_input_tokens": c1h},
             "output_tokens": max(1, int(r.lognormvariate(5.5, 1.2))),
             "service_tier": "standard"}
        if r.random() < 0.03:
            u["server_tool_use"] = {"web_search_requests": r.randint(1, 3), "web_fetch_requests": 0}
        return u

    def record(self, key, model, u, t, sid, cwd, agent):
        """Remember the true request (largest output wins; earliest timestamp kept)."""
        old = self.truth.get(key)
        if old is None:
            self.truth[key] = dict(model=model, ts=t, session=sid, cwd=cwd, agent=agent,
                                   input=u["input_tokens"], output=u["output_tokens"],
                                   cache_write_5m=u["cache_creation"]["ephemeral_5m_input_tokens"],
                                   cache_write_1h=u["cache_creation"]["ephemeral_1h_input_tokens"],
                                   cache_read=u["cache_read_input_tokens"],
                                   web_search=(u.get("server_tool_use") or {}).get("web_search_requests", 0))
        elif u["output_tokens"] > old["output"]:
            old["output"] = u["output_tokens"]

    # ---------- one API response, streamed as 1..4 lines
    def response_lines(self, env, model, t, version, sid, cwd, agent=None, with_req=True, big=False):
        r = self.r
        mid, rid = self.msg_id(), (self.req_id() if with_req else None)
        final = self.usage(model, big)
        n = r.choice([1, 2, 2, 3, 3, 4])
        lines = []
        parent = env["parentUuid"]
        for i in range(n):
            last = i == n - 1
            u = json.loads(json.dumps(final))
            if version in VERSIONS_STREAM_PLACEHOLDER and not last:
                u["output_tokens"] = min(r.randint(1, 10), final["output_tokens"])   # a placeholder never exceeds the final count
                u.pop("server_tool_use", None)
            block = r.choice(["text", "tool_use", "thinking"]) if not last else r.choice(["text", "tool_use"])
            if block == "text":
                content = [{"type": "text", "text": self.text(r.randint(50, 1500))}]
            elif block == "thinking":
                content = [{"type": "thinking", "thinking": self.text(r.randint(100, 3000)), "signature": "E" + "x" * 200}]
            else:
                content = [{"type": "tool_use", "id": "toolu_01" + self.uid()[:20], "name": r.choice(["Bash", "Read", "Edit", "Grep"]),
                            "input": {"command": self.text(r.randint(20, 300))}}]
            u_uuid = self.uid()
            line = dict(env, parentUuid=parent, uuid=u_uuid, timestamp=self.ts(t + dt.timedelta(milliseconds=300 * i)),
                        type="assistant",
                        message={"id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
                                 "stop_reason": ("tool_use" if block == "tool_use" else "end_turn") if last else None,
                                 "stop_sequence": None, "usage": u})
            if rid:
                line["requestId"] = rid
            if agent:
                line["agentId"] = agent
                line["isSidechain"] = True
            if self.nasty and r.random() < 0.02:
                line["message"]["usage"]["speed"] = None
                line["message"]["usage"]["inference_geo"] = None
            parent = u_uuid
            lines.append(line)
        key = (mid, rid) if rid else (sid, mid)
        self.record(key, model, final, t, sid, cwd, agent)
        return lines, parent, mid, rid

    def user_line(self, env, t, parent, size):
        content = [{"type": "tool_result", "tool_use_id": "toolu_01" + self.uid()[:20], "content": self.text(size)}]
        u_uuid = self.uid()
        return dict(env, parentUuid=parent, uuid=u_uuid, timestamp=self.ts(t), type="user",
                    message={"role": "user", "content": content}), u_uuid

    def write(self, path, lines, partial_tail=None):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        crlf = self.nasty and self.r.random() < 0.05
        with open(path, "wb") as f:
            for ln in lines:
                b = ln if isinstance(ln, bytes) else json.dumps(ln, separators=(",", ":"), ensure_ascii=False).encode()
                f.write(b + (b"\r\n" if crlf else b"\n"))
                self.bytes += len(b) + 1
            if partial_tail is not None:
                f.write(partial_tail)
                self.bytes += len(partial_tail)

    def nasty_lines(self):
        r = self.r
        out = [b"", b"   ", b"{not json", b"[1,2,3]", b"\"just a string\"", b"null",
               b'{"type":"assistant","message":"not an object"}',
               b'{"type":"assistant","message":{"id":"msg_x","usage":"zero"}}',
               b'{"type":"user","message":{"content":"bad \xff\xfe utf8"}}',
               b'{"type":"mystery-future-type","payload":{"a":1}}']
        self.bad_lines += len(out)
        return [r.choice(out) for _ in range(r.randint(1, 4))]

    # ---------- one session file (+ subagents)
    def session(self, cwd, day0):
        r = self.r
        sid = self.uid()
        version = r.choice(VERSIONS_STREAM_PLACEHOLDER + VERSIONS_STREAM_FINAL)
        model = r.choices([m for m, _ in MODELS], [w for _, w in MODELS])[0]
        t = day0 + dt.timedelta(hours=r.uniform(7, 22), seconds=r.uniform(0, 3600))
        env = {"parentUuid": None, "isSidechain": False, "userType": "external", "cwd": cwd, "sessionId": sid,
               "version": version, "gitBranch": r.choice(["main", "main", "feature/x", "HEAD", ""])}
        lines = []
        pdir = os.path.join(self.out, "projects", encode_dir(cwd))
        # resumed session: copies of an earlier session's lines with their original ids
        if self.sessions and r.random() < 0.12:
            _, _, prev = r.choice(self.sessions[-20:])
            lines.extend(prev[: r.randint(1, len(prev))])
        lines.append({"type": "summary", "summary": self.text(40), "leafUuid": self.uid()})
        parent = None
        n_turns = int(r.lognormvariate(3.0, 0.8)) + 1
        subagent_files = []
        for turn in range(n_turns):
            t += dt.timedelta(seconds=r.uniform(5, 240))
            ul, parent = self.user_line(env, t, parent, int(r.lognormvariate(6.5, 1.5)))
            lines.append(ul)
            t += dt.timedelta(seconds=r.uniform(2, 40))
            with_req = not (version == "2.0.76" and r.random() < 0.05)
            big = r.random() < 0.01
            rl, parent, mid, rid = self.response_lines(env, model, t, version, sid, cwd, with_req=with_req, big=big)
            lines.extend(rl)
            if r.random() < 0.15:   # progress noise
                lines.append(dict(env, parentUuid=parent, uuid=self.uid(), timestamp=self.ts(t), type="progress",
                                  data={"type": "bash_progress", "output": self.text(r.randint(50, 2000))}))
            if r.random() < 0.01:   # API error, zero usage
                lines.append(dict(env, parentUuid=parent, uuid=self.uid(), timestamp=self.ts(t), type="assistant",
                                  isApiErrorMessage=True, requestId=self.req_id(),
                                  message={"id": self.uid(), "type": "message", "role": "assistant", "model": "<synthetic>",
                                           "content": [{"type": "text", "text": "API Error: 500"}], "stop_reason": "stop_sequence",
                                           "usage": {"input_tokens": 0, "output_tokens": 0, "cache_creation_input_tokens": 0,
                                                     "cache_read_input_tokens": 0, "service_tier": None}}))
            if r.random() < 0.004:  # /btw replay: same message id, new requestId, sidechain -> not a new request
                replay = json.loads(json.dumps(rl[-1]))
                replay["isSidechain"] = True
                replay["requestId"] = self.req_id()
                replay["uuid"] = self.uid()
                lines.append(replay)
            if r.random() < 0.08 and version != "2.0.76":   # a subagent
                agent = "a" + hashlib.sha1(self.uid().encode()).hexdigest()[:7 if r.random() < 0.7 else 16]
                senv = dict(env, isSidechain=True)
                sub, sparent = [], None
                st = t
                for _ in range(r.randint(1, 8)):
                    st += dt.timedelta(seconds=r.uniform(1, 20))
                    ul2, sparent = self.user_line(senv, st, sparent, int(r.lognormvariate(6.0, 1.2)))
                    ul2["agentId"] = agent
                    sub.append(ul2)
                    srl, sparent, _, _ = self.response_lines(senv, r.choice(SUB_MODELS), st, version, sid, cwd, agent=agent)
                    sub.extend(srl)
                    if has_agent_progress(version):   # 2.1.2-2.1.96: agent_progress copies
                        lines.append(dict(env, parentUuid=parent, uuid=self.uid(), timestamp=self.ts(st), type="progress",
                                          data={"type": "agent_progress", "agentId": agent, "message": srl[-1]}))
                missing = r.random() < 0.05 and has_agent_progress(version)
                if not missing:
                    subagent_files.append((agent, sub))
            if r.random() < 0.05:
                lines.append(dict(env, parentUuid=parent, uuid=self.uid(), timestamp=self.ts(t), type="system",
                                  subtype="compact_boundary", content="Conversation compacted",
                                  compactMetadata={"trigger": "auto", "preTokens": r.randint(100000, 180000)}))
            if self.nasty and r.random() < 0.03:
                lines.extend(self.nasty_lines())
        lines.append({"type": "file-history-snapshot", "messageId": self.uid(), "snapshot": {"trackedFileBackups": {}}, "isSnapshotUpdate": False})
        if self.nasty and r.random() < 0.01:
            lines.append(dict(env, uuid=self.uid(), timestamp=self.ts(t), type="user",
                              message={"role": "user", "content": [{"type": "text", "text": "x" * 5_000_000}]}))
        partial = None
        if self.nasty and r.random() < 0.05:
            # the file is being written: an unterminated assistant line that must not count yet
            partial = b'{"type":"assistant","requestId":"req_partial' + self.uid().encode() + b'","message":{"id":"msg_partial","model":"claude-opus-4-6","usage":{"input_tokens":9999999,"output_to'
            self.partial_files += 1
        self.write(os.path.join(pdir, sid + ".jsonl"), lines, partial)
        for agent, sub in subagent_files:
            if version.startswith("2.0."):
                path = os.path.join(pdir, f"agent-{agent}.jsonl")
            else:
                path = os.path.join(pdir, sid, "subagents", f"agent-{agent}.jsonl")
            self.write(path, sub)
        self.sessions.append((cwd, sid, [ln for ln in lines if isinstance(ln, dict) and ln.get("type") in ("user", "assistant")]))

    def run(self, size_mb):
        r = self.r
        projects = [f"/home/dev/src/{name}" for name in ("api-server", "web_app", "infra.tools", "data-pipeline", "my project", "notes")]
        projects += [f"/Users/dev/work/client-{i}" for i in range(6)]
        while self.bytes < size_mb * 1_000_000:
            day = self.start + dt.timedelta(days=r.randrange(self.days))
            self.session(r.choice(projects), day)
        return self.summary()

    def summary(self):
        tot = dict(requests=0, input=0, output=0, cache_write_5m=0, cache_write_1h=0, cache_read=0, web_search=0)
        by = {"model": {}, "day": {}, "project": {}, "session": {}}
        for (a, b), q in self.truth.items():
            groups = {"model": q["model"], "day": q["ts"].strftime("%Y-%m-%d"), "project": q["cwd"], "session": q["session"]}
            for g, name in groups.items():
                d = by[g].setdefault(name, {k: 0 for k in tot})
                d["requests"] += 1
                for k in tot:
                    if k != "requests":
                        d[k] += q[k]
            tot["requests"] += 1
            for k in tot:
                if k != "requests":
                    tot[k] += q[k]
        tot["cache_write"] = tot["cache_write_5m"] + tot["cache_write_1h"]
        requests = [dict(key=[a, b], model=q["model"], ts=self.ts(q["ts"]), session=q["session"], project=q["cwd"],
                         input=q["input"], output=q["output"], cache_write_5m=q["cache_write_5m"],
                         cache_write_1h=q["cache_write_1h"], cache_read=q["cache_read"])
                    for (a, b), q in self.truth.items()]
        return {"totals": tot, "by_model": by["model"], "by_day_utc": by["day"], "by_project": by["project"],
                "by_session": by["session"], "sessions": len(by["session"]), "bytes": self.bytes,
                "partial_files": self.partial_files, "bad_lines_written": self.bad_lines, "by_request": requests}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--size-mb", type=float, default=20)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--days", type=int, default=45)
    ap.add_argument("--start", default="2026-09-01")
    ap.add_argument("--nasty", action="store_true")
    a = ap.parse_args()
    start = dt.datetime.fromisoformat(a.start).replace(tzinfo=dt.timezone.utc)
    g = Gen(a.out, a.seed, a.days, start, a.nasty)
    truth = g.run(a.size_mb)
    with open(os.path.join(a.out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1, sort_keys=True)
    t = truth["totals"]
    print(f"wrote {truth['bytes'] / 1e6:.1f} MB, {t['requests']} requests, {truth['sessions']} sessions -> {a.out}")


if __name__ == "__main__":
    main()
