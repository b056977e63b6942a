"""`cctally service install|uninstall|status`: the rendered unit and plist, and the exact commands issued.

systemctl, launchctl and loginctl are replaced by recorder scripts: PATH holds only the recorder
directory, so no real service manager can ever be reached from these tests.
"""
from __future__ import annotations

import configparser
import io
import json
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import service

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "daemon" / "templates"

RECORDER = '''#!{python} -S
import json, os, sys
argv = [os.path.basename(sys.argv[0])] + sys.argv[1:]
with open({log!r}, "a") as f:
    f.write(json.dumps(argv) + "\\n")
try:
    with open({rules!r}) as f:
        rules = json.load(f)
except FileNotFoundError:
    rules = []
for rule in rules:
    if argv[:len(rule["argv"])] == rule["argv"]:
        sys.stdout.write(rule["stdout"])
        sys.stderr.write(rule["stderr"])
        sys.exit(rule["rc"])
'''


class Recorder:
    """Fake `systemctl`, `launchctl`, `loginctl` and `cctally` on an otherwise empty PATH."""

    def __init__(self, root: Path) -> None:
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.log = root / "calls.log"
        self.rules_file = root / "rules.json"
        self.rules: list[dict] = []
        for tool in ("systemctl", "launchctl", "loginctl"):
            self.add_tool(tool)
        self.cctally = self.bin / "cctally"
        self.cctally.write_text("#!/bin/sh\nexit 0\n")
        self.cctally.chmod(0o755)

    def add_tool(self, name: str) -> None:
        script = self.bin / name
        script.write_text(RECORDER.format(python=sys.executable, log=str(self.log), rules=str(self.rules_file)))
        script.chmod(0o755)

    def remove_tool(self, name: str) -> None:
        (self.bin / name).unlink()

    def respond(self, argv: list[str], stdout: str = "", rc: int = 0, stderr: str = "") -> None:
        """Answer commands starting with `argv`; the most recent matching rule wins."""
        self.rules.insert(0, {"argv": argv, "stdout": stdout, "stderr": stderr, "rc": rc})
        self.rules_file.write_text(json.dumps(self.rules))

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def reset(self) -> None:
        self.log.unlink(missing_ok=True)


@pytest.fixture
def rec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder(tmp_path / "recorder")
    monkeypatch.setenv("PATH", str(recorder.bin))
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("LOGNAME", "alice")
    monkeypatch.setattr(service, "_sleep", lambda seconds: None)
    return recorder


def run(action: str, platform: str, **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    code = service.run_service_command(action, platform=platform, out=out, **kwargs)
    return code, out.getvalue()


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------------
# Templates and rendering


def test_repo_templates_are_the_packaged_ones() -> None:
    assert (REPO / "systemd" / "cctally.service").read_bytes() == (TEMPLATES / "cctally.service").read_bytes()
    assert (REPO / "launchd" / "cctally.plist").read_bytes() == (TEMPLATES / "cctally.plist").read_bytes()
    assert plistlib.loads((TEMPLATES / "cctally.plist").read_bytes())["Label"] == service.LABEL


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections -> (key, value) pairs in order; repeated keys (Environment=) kept."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"not a key=value line in a section: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def unit_environment(text: str) -> dict[str, str]:
    env = {}
    for key, value in parse_unit(text)["Service"]:
        if key == "Environment":
            (word,) = shlex.split(value)
            name, _, val = word.replace("%%", "%").partition("=")
            env[name] = val
    return env


def test_unit_has_required_sections_and_keys(rec: Recorder, isolated_env: dict[str, Path]) -> None:
    env = service.service_environment()
    text = service.render_systemd_unit(service.executable_command(), env, service.writable_paths(env))
    assert "@" not in "".join(line for line in text.splitlines() if not line.startswith("#"))

    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment]
    parser.read_string(text)
    assert parser.sections() == ["Unit", "Service", "Install"]
    assert parser["Service"]["ExecStart"] == f"{rec.cctally} run"
    expected = {
        "Unit": {"StartLimitIntervalSec": "300", "StartLimitBurst": "5"},
        "Service": {"Restart": "on-failure", "RestartSec": "10", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
                    "ProtectSystem": "strict", "ProtectHome": "read-only", "StandardOutput": "journal",
                    "StandardError": "journal", "ReadWritePaths": str(isolated_env["home"])},
        "Install": {"WantedBy": "default.target"},
    }
    for section, keys in expected.items():
        for key, value in keys.items():
            assert parser[section][key] == value, (section, key)
    assert Path(shlex.split(parser["Service"]["ExecStart"])[0]).is_absolute()
    assert unit_environment(text) == {
        "CLAUDE_CONFIG_DIR": str(isolated_env["claude"]),
        "CCTALLY_DB": str(isolated_env["db"]),
        "CCTALLY_HOME": str(isolated_env["home"]),
    }


def _systemd_verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`systemd-analyze --user verify`, falling back to the system manager's rules when no user manager
    can be set up here (e.g. in a container); the unit's own settings are checked either way."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "PATH": os.defpath, "SYSTEMD_LOG_COLOR": "0"}
    analyze = shutil.which("systemd-analyze", path=os.defpath + os.pathsep + "/usr/bin:/bin")
    res = subprocess.run([analyze, "--user", "verify", str(unit)], capture_output=True, text=True, env=env,
                         timeout=60)
    if res.returncode != 0 and unit.name not in res.stderr + res.stdout:
        res = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, env=env, timeout=60)
    return res


@pytest.mark.skipif(shutil.which("systemd-analyze", path=os.defpath + os.pathsep + "/usr/bin:/bin") is None,
                    reason="systemd-analyze not installed (Debian package `systemd`)")
def test_unit_passes_systemd_analyze_verify(rec: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Awkward values on purpose: spaces, %, $, quotes and a database outside the data dir.
    data = tmp_path / "data dir %h"
    data.mkdir()
    (tmp_path / "db$dir").mkdir()
    monkeypatch.setenv("CCTALLY_HOME", str(data))
    monkeypatch.setenv("CCTALLY_DB", str(tmp_path / "db$dir" / "x.db"))
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", f'{tmp_path}/a "quoted" dir,{tmp_path}/b\\c')
    weird_bin = tmp_path / "bin dir%n$X"
    weird_bin.mkdir()
    shutil.copy2(rec.cctally, weird_bin / "cctally")
    env = service.service_environment(port=5199, host="127.0.0.1")
    unit = tmp_path / "unit" / "cctally.service"
    unit.parent.mkdir()
    text = service.render_systemd_unit([str(weird_bin / "cctally")], env, service.writable_paths(env))
    unit.write_text(text)

    res = _systemd_verify(unit, tmp_path)
    complaints = [line for line in (res.stderr + res.stdout).splitlines() if unit.name in line]
    assert res.returncode == 0 and not complaints, res.stderr + res.stdout
    assert unit_environment(text) == env  # the quoting round-trips
    path, *args = shlex.split(dict(parse_unit(text)["Service"])["ExecStart"])
    assert path.replace("%%", "%") == str(weird_bin / "cctally") and args == ["run"]
    # arguments (the python -m fallback) get `$` doubled too; the executable path only `%`
    text = service.render_systemd_unit([str(weird_bin / "python"), "-m", "pkg$x.cli%"], env, [data])
    assert 'ExecStart="' + str(weird_bin).replace("%", "%%") + '/python" -m "pkg$$x.cli%%" run' in text


def test_unit_word_quoting() -> None:
    assert service._unit_word("/usr/bin/cctally") == "/usr/bin/cctally"
    assert service._unit_word("A=b c") == '"A=b c"'
    assert service._unit_word('say "hi" \\o/') == '"say \\"hi\\" \\\\o/"'
    assert service._unit_word("100%") == "100%%"
    assert service._unit_word("$HOME/x", in_exec=True) == '"$$HOME/x"'
    assert service._unit_word("$HOME/x") == '"$HOME/x"'  # Environment= does not expand variables
    with pytest.raises(service.ServiceError):
        service._unit_word("a\nb")


def test_plist_is_valid_and_complete(rec: Recorder, isolated_env: dict[str, Path], tmp_path: Path) -> None:
    logs = tmp_path / "home" / "Library" / "Logs" / "cctally"
    data = plistlib.loads(service.render_launchd_plist(service.executable_command(),
                                                        service.service_environment(port=6000), logs))
    assert data["Label"] == service.LABEL
    assert data["ProgramArguments"] == [str(rec.cctally), "run"]
    assert Path(data["ProgramArguments"][0]).is_absolute()
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert data["ProcessType"] == "Background"
    assert data["LowPriorityIO"] is True
    assert isinstance(data["ThrottleInterval"], int)
    assert data["StandardOutPath"] == str(logs / "cctally.out.log")
    assert data["StandardErrorPath"] == str(logs / "cctally.err.log")
    assert data["EnvironmentVariables"] == {
        "CLAUDE_CONFIG_DIR": str(isolated_env["claude"]),
        "CCTALLY_DB": str(isolated_env["db"]),
        "CCTALLY_HOME": str(isolated_env["home"]),
        "CCTALLY_PORT": "6000",
    }
    assert all(isinstance(v, str) for v in data["EnvironmentVariables"].values())


def test_environment_carry_over(rec: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", "~/one, rel/two")
    monkeypatch.setenv("CCTALLY_DB", "ledger.db")
    monkeypatch.delenv("CCTALLY_HOME")
    monkeypatch.setenv("CCTALLY_HOST_ID", "laptop")
    env = service.service_environment(port=5200, host="0.0.0.0")
    home = Path(os.environ["HOME"])
    assert env == {
        "CLAUDE_CONFIG_DIR": f"{home}/one,{tmp_path}/rel/two",
        "CCTALLY_DB": str(tmp_path / "ledger.db"),
        # not set in the shell: pinned to the data dir the installing user would get
        "CCTALLY_HOME": str(tmp_path / "home" / ".local" / "share" / "cctally"),
        "CCTALLY_HOST_ID": "laptop",
        "CCTALLY_HOST": "0.0.0.0",
        "CCTALLY_PORT": "5200",
    }
    assert service.writable_paths(env) == [Path(env["CCTALLY_HOME"]), tmp_path]
    monkeypatch.setenv("CCTALLY_DB", "postgresql://db.example/cctally")
    monkeypatch.delenv("CLAUDE_CONFIG_DIR")
    env = service.service_environment()
    assert env["CCTALLY_DB"] == "postgresql://db.example/cctally" and "CLAUDE_CONFIG_DIR" not in env
    assert "CCTALLY_PORT" not in env and "CCTALLY_HOST" not in env
    assert service.writable_paths(env) == [Path(env["CCTALLY_HOME"])]


def test_executable_fallbacks(rec: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert service.executable_command() == [str(rec.cctally)]
    rec.cctally.unlink()
    script = tmp_path / "elsewhere" / "cctally"
    script.parent.mkdir()
    shutil.copy2(rec.bin / "loginctl", script)
    monkeypatch.chdir(script.parent)
    monkeypatch.setattr(sys, "argv", ["./cctally", "service", "install"])
    assert service.executable_command() == [str(script)]
    monkeypatch.setattr(sys, "argv", [str(REPO / "daemon" / "cli.py"), "service", "install"])
    assert service.executable_command() == [sys.executable, "-m", "daemon.cli"]


def test_executable_is_the_running_install(rec: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`/venv/bin/cctally service install` with another cctally first on PATH (venv not activated, a pyenv
    shim): the unit runs the install that rendered it."""
    venv_script = tmp_path / "venv" / "bin" / "cctally"
    venv_script.parent.mkdir(parents=True)
    shutil.copy2(rec.cctally, venv_script)
    monkeypatch.setattr(sys, "argv", [str(venv_script), "service", "install", "--dry-run"])
    assert service.executable_command() == [str(venv_script)]


# ---------------------------------------------------------------------------------------------
# Linux


def test_linux_install_then_uninstall(rec: Recorder, tmp_path: Path, isolated_env: dict[str, Path]) -> None:
    rec.respond(["loginctl", "show-user"], stdout="Linger=no\n")
    unit = tmp_path / "home" / ".config" / "systemd" / "user" / "cctally.service"

    code, out = run("install", "linux", port=5300)
    assert code == 0, out
    assert rec.calls() == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "cctally.service"],
        ["loginctl", "show-user", "alice", "--property=Linger"],
    ]
    text = unit.read_text()
    assert f"ExecStart={rec.cctally} run" in text
    assert unit_environment(text)["CCTALLY_PORT"] == "5300"
    assert "journalctl --user -u cctally -f" in out
    assert "loginctl enable-linger alice" in out

    rec.reset()
    code, out = run("uninstall", "linux")
    assert code == 0, out
    assert rec.calls() == [
        ["systemctl", "--user", "disable", "--now", "cctally.service"],
        ["systemctl", "--user", "daemon-reload"],
    ]
    assert not unit.exists()
    assert isolated_env["home"].is_dir()  # the ledger is kept

    rec.reset()
    code, out = run("uninstall", "linux")
    assert code == 0 and "not installed" in out and rec.calls() == []


def test_linux_honours_xdg_config_home_and_creates_db_dir(rec: Recorder, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("CCTALLY_DB", str(tmp_path / "dbs" / "ledger.db"))
    code, out = run("install", "linux")
    assert code == 0, out
    text = (tmp_path / "cfg" / "systemd" / "user" / "cctally.service").read_text()
    rw = dict(parse_unit(text)["Service"])["ReadWritePaths"]
    assert rw.split() == [str(tmp_path / "cctally-home"), str(tmp_path / "dbs")]
    assert (tmp_path / "dbs").is_dir()  # must exist before the sandbox is set up


def test_linux_reinstall_restarts_and_clears_start_limit(rec: Recorder) -> None:
    assert run("install", "linux")[0] == 0
    rec.reset()
    code, out = run("install", "linux", host="127.0.0.2")
    assert code == 0, out
    assert [c for c in rec.calls() if c[0] == "systemctl"] == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "reset-failed", "cctally.service"],
        ["systemctl", "--user", "try-restart", "cctally.service"],
        ["systemctl", "--user", "enable", "--now", "cctally.service"],
    ]
    assert "CCTALLY_HOST=127.0.0.2" in service.unit_path().read_text()


def test_linux_linger_checks(rec: Recorder) -> None:
    rec.respond(["loginctl", "show-user"], stdout="Linger=yes\n")
    code, out = run("install", "linux")
    assert code == 0 and "lingering is on" in out and "enable-linger" not in out
    rec.remove_tool("loginctl")
    code, out = run("install", "linux")
    assert code == 0 and "could not check lingering" in out and "loginctl enable-linger alice" in out


def test_linux_install_reports_unreachable_user_manager(rec: Recorder) -> None:
    rec.respond(["systemctl", "--user", "daemon-reload"], rc=1,
                stderr="Failed to connect to bus: $DBUS_SESSION_BUS_ADDRESS and $XDG_RUNTIME_DIR not defined\n")
    code, out = run("install", "linux")
    assert code == 1
    assert "Failed to connect to bus" in out and "enable-linger" in out and "not via sudo" in out
    assert rec.calls() == [["systemctl", "--user", "daemon-reload"]]


def test_linux_without_systemctl(rec: Recorder, tmp_path: Path) -> None:
    rec.remove_tool("systemctl")
    before = files_under(tmp_path / "home") if (tmp_path / "home").exists() else set()
    code, out = run("install", "linux")
    assert code == 2 and "systemctl not found" in out
    assert not service.unit_path().exists() and rec.calls() == []
    assert (files_under(tmp_path / "home") if (tmp_path / "home").exists() else set()) == before
    code, out = run("status", "linux")
    assert code == 2 and "systemctl not found" in out


def test_linux_status(rec: Recorder) -> None:
    show = ["systemctl", "--user", "show", "cctally.service",
            "--property=LoadState,ActiveState,SubState,MainPID,ExecMainCode,ExecMainStatus,NRestarts"]
    rec.respond(show[:4], stdout="LoadState=not-found\nActiveState=inactive\nSubState=dead\nMainPID=0\n"
                                 "ExecMainCode=0\nExecMainStatus=0\nNRestarts=0\n")
    code, out = run("status", "linux")
    assert code == 3 and "installed: no" in out and "running:   no (inactive/dead)" in out
    assert rec.calls() == [show]

    assert run("install", "linux")[0] == 0
    rec.respond(show[:4], stdout="LoadState=loaded\nActiveState=active\nSubState=running\nMainPID=4242\n"
                                 "ExecMainCode=0\nExecMainStatus=0\nNRestarts=2\n")
    code, out = run("status", "linux")
    assert code == 0, out
    assert "installed: yes" in out and "running:   yes (active/running, pid 4242)" in out
    assert "last exit: none yet" in out and "restarts:  2" in out

    rec.respond(show[:4], stdout="LoadState=loaded\nActiveState=failed\nSubState=failed\nMainPID=0\n"
                                 "ExecMainCode=1\nExecMainStatus=1\nNRestarts=5\n")
    code, out = run("status", "linux")
    assert code == 3 and "running:   no (failed/failed)" in out and "last exit: exit code 1" in out
    rec.respond(show[:4], stdout="ActiveState=activating\nSubState=auto-restart\nExecMainCode=2\nExecMainStatus=9\n")
    code, out = run("status", "linux")
    assert code == 3 and "last exit: killed by SIGKILL" in out


# ---------------------------------------------------------------------------------------------
# macOS

LAUNCHCTL_PRINT = """gui/501/io.github.cctally.cctally = {
	active count = 1
	path = /Users/alice/Library/LaunchAgents/io.github.cctally.cctally.plist
	type = LaunchAgent
	state = running

	program = /usr/local/bin/cctally
	arguments = {
		/usr/local/bin/cctally
		run
	}

	environment = {
		state => not-a-field
	}
	runs = 3
	pid = 987
	last exit code = 1
}
"""


def test_darwin_install_then_uninstall(rec: Recorder, tmp_path: Path) -> None:
    uid = os.getuid()
    target = f"gui/{uid}/{service.LABEL}"
    plist = tmp_path / "home" / "Library" / "LaunchAgents" / f"{service.LABEL}.plist"
    rec.respond(["launchctl", "print"], rc=113, stderr="Could not find service\n")

    code, out = run("install", "darwin")
    assert code == 0, out
    assert rec.calls() == [
        ["launchctl", "print", target],
        ["launchctl", "bootstrap", f"gui/{uid}", str(plist)],
    ]
    data = plistlib.loads(plist.read_bytes())
    assert data["ProgramArguments"] == [str(rec.cctally), "run"]
    assert (tmp_path / "home" / "Library" / "Logs" / "cctally").is_dir()
    assert "Library/Logs/cctally/cctally.err.log" in out

    rec.reset()
    rec.respond(["launchctl", "print"], stdout=LAUNCHCTL_PRINT)
    code, out = run("install", "darwin", port=5400)  # already loaded: bootout first
    assert code == 0, out
    assert rec.calls() == [
        ["launchctl", "print", target],
        ["launchctl", "bootout", target],
        ["launchctl", "bootstrap", f"gui/{uid}", str(plist)],
    ]
    assert plistlib.loads(plist.read_bytes())["EnvironmentVariables"]["CCTALLY_PORT"] == "5400"

    rec.reset()
    code, out = run("uninstall", "darwin")
    assert code == 0, out
    assert rec.calls() == [["launchctl", "print", target], ["launchctl", "bootout", target]]
    assert not plist.exists()


def test_darwin_bootstrap_retried_after_bootout(rec: Recorder) -> None:
    rec.respond(["launchctl", "bootstrap"], rc=5, stderr="Bootstrap failed: 5: Input/output error\n")
    code, out = run("install", "darwin")
    assert code == 1 and "Input/output error" in out and "plutil -lint" in out
    assert [c[1] for c in rec.calls()] == ["print", "bootout", "bootstrap", "bootstrap", "bootstrap"]


def test_darwin_status(rec: Recorder) -> None:
    target = f"gui/{os.getuid()}/{service.LABEL}"
    rec.respond(["launchctl", "print"], rc=113)
    code, out = run("status", "darwin")
    assert code == 3 and "installed: no" in out and "not loaded" in out
    assert rec.calls() == [["launchctl", "print", target]]

    rec.respond(["launchctl", "print"], stdout=LAUNCHCTL_PRINT)
    code, out = run("status", "darwin")
    assert code == 0 and "running:   yes (running, pid 987)" in out and "last exit: 1" in out
    assert service.parse_launchctl_print(LAUNCHCTL_PRINT)["state"] == "running"

    rec.respond(["launchctl", "print"], stdout=LAUNCHCTL_PRINT.replace("state = running", "state = not running")
                .replace("last exit code = 1", "last exit code = (never exited)"))
    code, out = run("status", "darwin")
    assert code == 3 and "running:   no (not running)" in out and "last exit: (never exited)" in out


# ---------------------------------------------------------------------------------------------
# Dry run, unsupported platforms


@pytest.mark.parametrize("platform", ["linux", "darwin"])
def test_dry_run_writes_nothing_and_runs_nothing(rec: Recorder, tmp_path: Path, platform: str) -> None:
    before = files_under(tmp_path)
    code, out = run("install", platform, dry_run=True, port=5500)
    assert code == 0
    assert rec.calls() == [] and files_under(tmp_path) == before
    if platform == "linux":
        assert "[Service]" in out and "Environment=CCTALLY_PORT=5500" in out
        assert "systemctl --user enable --now cctally.service" in out
    else:
        assert "<key>ProgramArguments</key>" in out and "launchctl bootstrap" in out
    for action in ("status", "uninstall"):
        assert run(action, platform, dry_run=True)[0] == 0
    # installed for real, then a dry-run uninstall still leaves everything in place
    assert run("install", platform)[0] == 0
    rec.reset()
    before = files_under(tmp_path)
    code, out = run("uninstall", platform, dry_run=True)
    assert code == 0 and "would remove" in out
    assert rec.calls() == [] and files_under(tmp_path) == before


@pytest.mark.parametrize("platform", ["win32", "cygwin", "freebsd13"])
def test_unsupported_platform(rec: Recorder, platform: str) -> None:
    code, out = run("install", platform)
    assert code == 2 and "supports Linux (systemd) and macOS (launchd)" in out
    assert rec.calls() == []


def test_unknown_action(rec: Recorder) -> None:
    code, out = run("restart", "linux")
    assert code == 2 and "unknown service action" in out
