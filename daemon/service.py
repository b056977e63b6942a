"""Run cctally as a per-user background service: a systemd user unit on Linux, a LaunchAgent on macOS.

`run_service_command(action)` is the whole public contract (the CLI's `cctally service
install|uninstall|status [--dry-run]`). The rest of the module renders the two templates shipped in
`daemon/templates/` and talks to the service manager, always through `_run`, which is the only place
this module starts a process.

Exit codes: 0 done (for `status`: installed and running); 1 a service-manager command failed or the
state could not be read; 2 unsupported here (not Linux/macOS, or systemctl/launchctl missing, or an
unknown action); 3 `status` only: not running (or not installed).

Nothing is written and nothing is run with `dry_run=True`: the file that would be written and the
commands that would run are printed instead.
"""
from __future__ import annotations

import getpass
import logging
import os
import plistlib
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from daemon import config

log = logging.getLogger(__name__)

ACTIONS = ("install", "uninstall", "status")
UNIT_NAME = "cctally.service"
LABEL = "io.github.cctally.cctally"
ENV_HOST = "CCTALLY_HOST"
ENV_PORT = "CCTALLY_PORT"

EXIT_OK, EXIT_FAILED, EXIT_UNSUPPORTED, EXIT_NOT_RUNNING = 0, 1, 2, 3
_TIMEOUT = 60
_sleep: Callable[[float], None] = time.sleep  # tests replace it


class ServiceError(Exception):
    """A value that cannot be written into a unit file or plist (e.g. a path containing a newline)."""


# ---------------------------------------------------------------------------------------------
# What goes into the files


def executable_command() -> list[str]:
    """The absolute command that starts cctally: `sys.argv[0]` if it is the cctally script (the install
    that is running: `/venv/bin/cctally service install` from a venv that is not activated must not pick
    another install's `cctally` earlier on PATH), else `cctally` on PATH, else
    `[sys.executable, "-m", "daemon.cli"]`. Symlinks are kept (a pipx or venv link survives upgrades);
    the interpreter path is not resolved (that would leave the venv).
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if argv0 and Path(argv0).name.lower().startswith("cctally"):
        path = Path(os.path.abspath(os.path.expanduser(argv0)))
        if path.is_file() and os.access(path, os.X_OK):
            return [str(path)]
    found = shutil.which("cctally")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "daemon.cli"]


def _abs_path(value: str) -> str:
    return os.path.abspath(os.path.expanduser(value))


def service_environment(port: int | None = None, host: str | None = None) -> dict[str, str]:
    """The environment the service runs with: the cctally variables set in this shell, paths made
    absolute, plus `CCTALLY_PORT` / `CCTALLY_HOST` when given.

    `CCTALLY_HOME` is always present (the resolved data dir, even when it came from XDG_DATA_HOME
    or the platform default), because the systemd sandbox makes exactly that directory writable.
    """
    env: dict[str, str] = {}
    claude = os.environ.get("CLAUDE_CONFIG_DIR", "").strip()
    if claude:
        env["CLAUDE_CONFIG_DIR"] = ",".join(_abs_path(p.strip()) for p in claude.split(",") if p.strip())
    db = os.environ.get("CCTALLY_DB", "").strip()
    if db:
        env["CCTALLY_DB"] = db if "://" in db else _abs_path(db)
    env["CCTALLY_HOME"] = _abs_path(str(config.data_dir()))
    host_id = os.environ.get("CCTALLY_HOST_ID", "").strip()
    if host_id:
        env["CCTALLY_HOST_ID"] = host_id
    host = host or os.environ.get(ENV_HOST, "").strip() or None
    if host:
        env[ENV_HOST] = host
    port_value = str(port) if port is not None else os.environ.get(ENV_PORT, "").strip()
    if port_value:
        env[ENV_PORT] = port_value
    for key, value in env.items():
        if any(c in value for c in "\n\r\0"):
            raise ServiceError(f"{key} contains a newline or NUL; it cannot be written into a service file")
    return env


def writable_paths(env: dict[str, str]) -> list[Path]:
    """Directories the daemon must write: the data dir, and the SQLite file's directory when the
    database lives elsewhere (SQLite creates -wal/-shm files next to it)."""
    data = Path(env["CCTALLY_HOME"])
    paths = [data]
    url = env.get("CCTALLY_DB") or ""
    if url.startswith("sqlite:///") or (url and "://" not in url):
        file = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
        if file and file != ":memory:":
            parent = Path(_abs_path(file)).parent
            if parent != data and data not in parent.parents:
                paths.append(parent)
    return paths


def _template(name: str) -> str:
    return resources.files("daemon").joinpath("templates").joinpath(name).read_text(encoding="utf-8")


_SAFE_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def _unit_word(value: str, *, in_exec: bool = False) -> str:
    """One word of a unit-file setting: `%` (specifiers) doubled, `$` doubled in ExecStart arguments
    (variable expansion), double-quoted with backslash escapes when it holds anything but plain path chars."""
    if any(c in value for c in "\n\r\0"):
        raise ServiceError(f"{value!r} contains a newline or NUL; it cannot be written into a unit file")
    value = value.replace("%", "%%")
    if in_exec:
        value = value.replace("$", "$$")
    if _SAFE_WORD.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_systemd_unit(command: list[str], env: dict[str, str], writable: list[Path]) -> str:
    """The systemd unit text: the template with the cctally command (`executable_command()`; the
    template adds `run`), Environment= lines and ReadWritePaths= filled in."""
    values = {
        # systemd expands $VARS in ExecStart's arguments but not in the executable path (specifiers in both)
        "CCTALLY": " ".join(_unit_word(arg, in_exec=i > 0) for i, arg in enumerate(command)),
        "ENVIRONMENT": "".join(f"Environment={_unit_word(f'{k}={v}')}\n" for k, v in env.items()),
        "READ_WRITE_PATHS": " ".join(_unit_word(str(p)) for p in writable),
    }
    text = _template("cctally.service").replace("@ENVIRONMENT@\n", values.pop("ENVIRONMENT"))
    return re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], text)


def render_launchd_plist(command: list[str], env: dict[str, str], logs: Path) -> bytes:
    """The LaunchAgent plist: the template read with plistlib, the cctally command (the template adds
    `run`), environment and log directory filled in, written back with plistlib (which does the escaping)."""
    data: dict[str, Any] = plistlib.loads(_template("cctally.plist").encode("utf-8"))
    args: list[str] = []
    for arg in data["ProgramArguments"]:
        args.extend(command if arg == "@CCTALLY@" else [arg])
    data["ProgramArguments"] = args
    data["EnvironmentVariables"] = dict(env)
    for key in ("StandardOutPath", "StandardErrorPath"):
        data[key] = data[key].replace("@LOG_DIR@", str(logs))
    return plistlib.dumps(data, fmt=plistlib.FMT_XML, sort_keys=False)


# ---------------------------------------------------------------------------------------------
# Where the files go


def unit_path() -> Path:
    """`$XDG_CONFIG_HOME/systemd/user/cctally.service` (default `~/.config/...`)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user" / UNIT_NAME


def plist_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"


def launchd_log_dir() -> Path:
    return Path.home() / "Library" / "Logs" / "cctally"


# ---------------------------------------------------------------------------------------------
# Running things


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run one service-manager command and capture its output. The only process this module starts."""
    log.debug("running %s", shlex.join(cmd))
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=_TIMEOUT, check=False)
    except FileNotFoundError:
        return subprocess.CompletedProcess(cmd, 127, "", f"{cmd[0]}: command not found")
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(cmd, 124, "", f"{shlex.join(cmd)} timed out after {_TIMEOUT}s")


def _write_file(path: Path, data: bytes) -> None:
    """Write atomically (temp file + rename), mode 0644, creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def _username() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return str(os.getuid())


@dataclass
class _Ctx:
    out: TextIO
    dry_run: bool
    port: int | None
    host: str | None

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    def failed(self, res: subprocess.CompletedProcess[str], hint: str = "") -> int:
        detail = (res.stderr or res.stdout or "").strip() or f"exit status {res.returncode}"
        self.say(f"error: `{shlex.join(res.args)}` failed: {detail}")
        if hint:
            self.say(hint)
        return EXIT_FAILED

    def show_plan(self, writes: Sequence[tuple[Path, str]], commands: Sequence[tuple[list[str], str]],
                  removes: Sequence[Path] = (), mkdirs: Sequence[Path] = ()) -> int:
        self.say("# dry run: nothing is written and no command is run")
        for d in mkdirs:
            self.say(f"# would create directory {d}")
        for path, text in writes:
            self.say(f"# would write {path}:")
            self.say(text.rstrip("\n"))
        for path in removes:
            self.say(f"# would remove {path}")
        if commands:
            self.say("# would run:")
            for cmd, note in commands:
                self.say(shlex.join(cmd) + (f"    # {note}" if note else ""))
        return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Linux: systemd user unit

_SYSTEMCTL = ["systemctl", "--user"]
_BUS_HINT = (
    "hint: systemctl could not reach your systemd user manager. Run this as your own user in a "
    "login session (not via sudo/su); on a server, `loginctl enable-linger $USER`, log in again, and retry.")


def _no_systemctl(ctx: _Ctx) -> int:
    ctx.say("error: systemctl not found; `cctally service` needs systemd (a systemd user session) on Linux.\n"
            "Without systemd, start `cctally run` from your init system or a login script instead.\n"
            "`cctally service install --dry-run` prints the unit file for reference.")
    return EXIT_UNSUPPORTED


def _bus_hint(res: subprocess.CompletedProcess[str]) -> str:
    text = (res.stderr or "") + (res.stdout or "")
    markers = ("Failed to connect to bus", "DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "No medium found")
    return _BUS_HINT if any(m in text for m in markers) else ""


def _systemd_install(ctx: _Ctx) -> int:
    path = unit_path()
    env = service_environment(ctx.port, ctx.host)
    writable = writable_paths(env)
    text = render_systemd_unit(executable_command(), env, writable)
    reinstall = path.exists()
    commands: list[list[str]] = [_SYSTEMCTL + ["daemon-reload"]]
    if reinstall:  # pick up the new unit; clear a crash-loop's start limit
        commands += [_SYSTEMCTL + ["reset-failed", UNIT_NAME], _SYSTEMCTL + ["try-restart", UNIT_NAME]]
    commands.append(_SYSTEMCTL + ["enable", "--now", UNIT_NAME])
    if ctx.dry_run:
        return ctx.show_plan([(path, text)], [(c, "") for c in commands],
                             mkdirs=[p for p in writable if not p.exists()])
    if shutil.which("systemctl") is None:
        return _no_systemctl(ctx)
    if os.geteuid() == 0:
        ctx.say("warning: running as root installs the service for root; run without sudo for your own user.")
    for directory in writable:  # ReadWritePaths= must exist, and the read-only home stops the daemon creating it
        directory.mkdir(parents=True, exist_ok=True)
    _write_file(path, text.encode("utf-8"))
    ctx.say(f"wrote {path}")
    for cmd in commands:
        res = _run(cmd)
        if res.returncode != 0 and "reset-failed" not in cmd:
            return ctx.failed(res, _bus_hint(res) or
                              "see `journalctl --user -u cctally -e` and `cctally service status`")
    ctx.say("cctally is running as a systemd user service and starts when you log in.")
    ctx.say("logs:   journalctl --user -u cctally -f")
    ctx.say("status: cctally service status")
    _linger_advice(ctx)
    return EXIT_OK


def _linger_advice(ctx: _Ctx) -> None:
    user = _username()
    res = _run(["loginctl", "show-user", user, "--property=Linger"])
    if res.returncode == 0 and "Linger=yes" in res.stdout:
        ctx.say(f"lingering is on for {user}: the service also runs at boot, without a login.")
        return
    if res.returncode != 0 and res.returncode != 1:  # 127: no loginctl; 1: user not logged in = not lingering
        ctx.say("(could not check lingering with loginctl)")
    ctx.say(f"note: the service stops when your last session ends. On a machine without a desktop login\n"
            f"(a server you ssh into), keep it running at boot with:  loginctl enable-linger {user}")


def _systemd_uninstall(ctx: _Ctx) -> int:
    path = unit_path()
    if not path.exists():
        ctx.say(f"cctally service is not installed ({path} does not exist).")
        return EXIT_OK
    disable = _SYSTEMCTL + ["disable", "--now", UNIT_NAME]
    reload = _SYSTEMCTL + ["daemon-reload"]
    if ctx.dry_run:
        ctx.say("# dry run: nothing is written and no command is run")
        ctx.say("# would run:\n" + shlex.join(disable))
        ctx.say(f"# would remove {path}")
        ctx.say("# would run:\n" + shlex.join(reload))
        return EXIT_OK
    if shutil.which("systemctl") is None:
        return _no_systemctl(ctx)
    res = _run(disable)
    if res.returncode != 0:
        return ctx.failed(res, _bus_hint(res) or f"{path} was left in place; retry, or stop the service and remove it.")
    path.unlink()
    ctx.say(f"stopped and disabled cctally; removed {path}")
    res = _run(reload)
    if res.returncode != 0:
        return ctx.failed(res)
    ctx.say(f"your data in {config.data_dir()} is kept.")
    return EXIT_OK


_STATUS_PROPS = "LoadState,ActiveState,SubState,MainPID,ExecMainCode,ExecMainStatus,NRestarts"


def _describe_exit(code: str, status: str) -> str:
    """systemd's ExecMainCode (CLD_EXITED=1, CLD_KILLED=2, CLD_DUMPED=3) and ExecMainStatus, in words."""
    if code == "1":
        return f"exit code {status}"
    if code in ("2", "3"):
        try:
            name = signal.Signals(int(status)).name
        except ValueError:
            name = f"signal {status}"
        return f"killed by {name}" + (" (core dumped)" if code == "3" else "")
    return "none yet"


def _systemd_status(ctx: _Ctx) -> int:
    path = unit_path()
    cmd = _SYSTEMCTL + ["show", UNIT_NAME, f"--property={_STATUS_PROPS}"]
    if ctx.dry_run:
        return ctx.show_plan([], [(cmd, "")])
    ctx.say(f"cctally service (systemd user unit {path})")
    ctx.say(f"  installed: {'yes' if path.exists() else 'no'}")
    if shutil.which("systemctl") is None:
        ctx.say("  running:   unknown")
        return _no_systemctl(ctx)
    res = _run(cmd)
    if res.returncode != 0:
        ctx.say("  running:   unknown")
        return ctx.failed(res, _bus_hint(res))
    props = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
    active, sub = props.get("ActiveState", "unknown"), props.get("SubState", "unknown")
    running = active == "active"
    pid = props.get("MainPID", "0")
    detail = f"{active}/{sub}" + (f", pid {pid}" if running and pid not in ("", "0") else "")
    ctx.say(f"  running:   {'yes' if running else 'no'} ({detail})")
    ctx.say(f"  last exit: {_describe_exit(props.get('ExecMainCode', '0'), props.get('ExecMainStatus', '0'))}")
    if props.get("NRestarts", "0") not in ("", "0"):
        ctx.say(f"  restarts:  {props['NRestarts']}")
    ctx.say("  logs:      journalctl --user -u cctally -f")
    if active == "failed":
        ctx.say("  the service failed; read the logs, then `systemctl --user restart cctally` "
                "(or `cctally service install` again).")
    return EXIT_OK if running else EXIT_NOT_RUNNING


# ---------------------------------------------------------------------------------------------
# macOS: launchd agent


def _no_launchctl(ctx: _Ctx) -> int:
    ctx.say("error: launchctl not found; `cctally service` on macOS needs launchd.")
    return EXIT_UNSUPPORTED


def _launchd_target() -> tuple[str, str]:
    domain = f"gui/{os.getuid()}"
    return domain, f"{domain}/{LABEL}"


def _launchd_install(ctx: _Ctx) -> int:
    path, logs = plist_path(), launchd_log_dir()
    env = service_environment(ctx.port, ctx.host)
    data = render_launchd_plist(executable_command(), env, logs)
    domain, target = _launchd_target()
    bootout, bootstrap = ["launchctl", "bootout", target], ["launchctl", "bootstrap", domain, str(path)]
    if ctx.dry_run:
        return ctx.show_plan([(path, data.decode("utf-8"))],
                             [(bootout, "only if already loaded"), (bootstrap, "")],
                             mkdirs=[logs] if not logs.exists() else [])
    if shutil.which("launchctl") is None:
        return _no_launchctl(ctx)
    logs.mkdir(parents=True, exist_ok=True)  # launchd does not create the log directory
    loaded = _run(["launchctl", "print", target]).returncode == 0
    if loaded:
        res = _run(bootout)
        if res.returncode != 0:
            return ctx.failed(res, "could not stop the running agent; try `launchctl bootout "
                                   f"{target}` yourself, then install again.")
    _write_file(path, data)
    ctx.say(f"wrote {path}")
    res = _run(bootstrap)
    for _ in range(2):  # right after a bootout, launchd may still be tearing the old job down (error 5)
        if res.returncode == 0 or not loaded:
            break
        _sleep(1.0)
        res = _run(bootstrap)
    if res.returncode != 0:
        return ctx.failed(res, f"check the file with `plutil -lint {path}`, then install again.")
    ctx.say("cctally is running as a launchd agent and starts when you log in.")
    ctx.say(f"logs:   tail -f {logs}/cctally.err.log {logs}/cctally.out.log")
    ctx.say("status: cctally service status")
    return EXIT_OK


def _launchd_uninstall(ctx: _Ctx) -> int:
    path = plist_path()
    if not path.exists():
        ctx.say(f"cctally service is not installed ({path} does not exist).")
        return EXIT_OK
    _, target = _launchd_target()
    bootout = ["launchctl", "bootout", target]
    if ctx.dry_run:
        return ctx.show_plan([], [(bootout, "only if loaded")], removes=[path])
    if shutil.which("launchctl") is None:
        return _no_launchctl(ctx)
    if _run(["launchctl", "print", target]).returncode == 0:
        res = _run(bootout)
        if res.returncode != 0:
            return ctx.failed(res, f"{path} was left in place; retry, or run `launchctl bootout {target}`.")
    path.unlink()
    ctx.say(f"stopped cctally; removed {path}")
    ctx.say(f"your data in {config.data_dir()} and logs in {launchd_log_dir()} are kept.")
    return EXIT_OK


_LAUNCHD_FIELD = re.compile(r"^\t(?!\t)([a-z][a-z ]*?) = (.*)$")


def parse_launchctl_print(text: str) -> dict[str, str]:
    """Top-level `key = value` fields of `launchctl print` (one tab deep; nested blocks skipped)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        m = _LAUNCHD_FIELD.match(line)
        if m and m.group(1) not in fields:
            fields[m.group(1)] = m.group(2).strip()
    return fields


def _launchd_status(ctx: _Ctx) -> int:
    path = plist_path()
    _, target = _launchd_target()
    cmd = ["launchctl", "print", target]
    if ctx.dry_run:
        return ctx.show_plan([], [(cmd, "")])
    ctx.say(f"cctally service (launchd agent {path})")
    ctx.say(f"  installed: {'yes' if path.exists() else 'no'}")
    if shutil.which("launchctl") is None:
        ctx.say("  running:   unknown")
        return _no_launchctl(ctx)
    res = _run(cmd)
    if res.returncode != 0:
        ctx.say("  running:   no (not loaded)")
        return EXIT_NOT_RUNNING
    fields = parse_launchctl_print(res.stdout)
    state = fields.get("state", "unknown")
    running = state == "running"
    pid = fields.get("pid")
    ctx.say(f"  running:   {'yes' if running else 'no'} ({state}{f', pid {pid}' if running and pid else ''})")
    last = fields.get("last exit code", "none yet")
    if "last terminating signal" in fields:
        last += f" ({fields['last terminating signal']})"
    ctx.say(f"  last exit: {last}")
    ctx.say(f"  logs:      {launchd_log_dir()}/cctally.err.log")
    return EXIT_OK if running else EXIT_NOT_RUNNING


# ---------------------------------------------------------------------------------------------

_HANDLERS: dict[str, dict[str, Callable[[_Ctx], int]]] = {
    "linux": {"install": _systemd_install, "uninstall": _systemd_uninstall, "status": _systemd_status},
    "darwin": {"install": _launchd_install, "uninstall": _launchd_uninstall, "status": _launchd_status},
}


def run_service_command(action: str, *, dry_run: bool = False, port: int | None = None, host: str | None = None,
                        out: TextIO = sys.stdout, platform: str | None = None) -> int:
    """`cctally service install|uninstall|status`: install, remove or inspect the per-user service.

    `platform` defaults to `sys.platform` ("linux*" -> systemd user unit, "darwin" -> LaunchAgent).
    `port`/`host` are written into the service environment as CCTALLY_PORT/CCTALLY_HOST. Output goes
    to `out`; the return value is the exit code (see the module docstring).
    """
    ctx = _Ctx(out=out, dry_run=dry_run, port=port, host=host)
    plat = platform or sys.platform
    family = "linux" if plat.startswith("linux") else plat
    if action not in ACTIONS:
        ctx.say(f"error: unknown service action {action!r}; use one of: {', '.join(ACTIONS)}")
        return EXIT_UNSUPPORTED
    if family not in _HANDLERS:
        ctx.say(f"error: `cctally service` supports Linux (systemd) and macOS (launchd), not {plat!r}.\n"
                "Run `cctally run` yourself instead, e.g. from Task Scheduler at log on on Windows.")
        return EXIT_UNSUPPORTED
    try:
        return _HANDLERS[family][action](ctx)
    except ServiceError as exc:
        ctx.say(f"error: {exc}")
        return EXIT_FAILED
