"""config.toml: locating, status as the toolkit reads it, and the debug toggle (byte-exact)."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpudock.toolkit import config as tc
from gpudock.toolkit.atomic import BACKUP_SUFFIX, FileChangedError

DATA = Path(__file__).resolve().parent.parent / "data" / "config-toml"
REAL = sorted(DATA.glob("*.toml"))
DEBUG_PATHS = {
    "hook-era-ubuntu.toml": {"hook": "/var/log/nvidia-container-runtime-hook.log", "runtime": None},
    "toolkit-1.13.5-ubuntu.toml": {
        "hook": "/var/log/nvidia-container-toolkit.log",
        "runtime": "/var/log/nvidia-container-runtime.log",
    },
    "toolkit-1.17-debian.toml": {
        "hook": "/var/log/nvidia-container-toolkit.log",
        "runtime": "/var/log/nvidia-container-runtime.log",
    },
}


def test_all_real_files_are_there():
    # the samples were copied from the shared reference; a missing one would silently shrink the tests
    assert {p.name for p in REAL} == set(DEBUG_PATHS)


def _copy(tmp_path: Path, src: Path | bytes, name="config.toml") -> Path:
    dst = tmp_path / name
    dst.write_bytes(src if isinstance(src, bytes) else src.read_bytes())
    return dst


def _changed_lines(a: bytes, b: bytes) -> list[tuple[int, bytes, bytes]]:
    la, lb = a.split(b"\n"), b.split(b"\n")
    assert len(la) == len(lb), "line count changed"
    return [(i + 1, x, y) for i, (x, y) in enumerate(zip(la, lb)) if x != y]


# --------------------------------------------------------------------------- real files


@pytest.mark.parametrize("src", REAL, ids=lambda p: p.name)
@pytest.mark.parametrize("component", ["hook", "runtime"])
def test_real_file_on_then_off_restores_bytes(tmp_path, src, component):
    path = _copy(tmp_path, src)
    original = path.read_bytes()
    shipped = DEBUG_PATHS[src.name][component]
    table = tc.DEBUG_TABLES[component]

    plan = tc.set_debug(str(path), component, True)
    on = path.read_bytes()
    if shipped is None:
        # the hook-era file has no runtime table: the key is added, nothing else changes
        assert plan.action == "add" and plan.added_header == f"[{table}]"
        assert on.startswith(original)
        assert on[len(original) :] == f'\n[{table}]\ndebug = "/var/log/nvidia-container-runtime.log"\n'.encode()
    else:
        changes = _changed_lines(original, on)
        assert len(changes) == 1
        lineno, old, new = changes[0]
        assert old == f'#debug = "{shipped}"'.encode()
        assert new == f'debug = "{shipped}"'.encode()
        assert plan.action == "uncomment" and plan.line == lineno
        assert plan.old_line == old.decode() and plan.new_line == new.decode()
    data = tomllib.loads(on.decode())
    assert data[table]["debug"] == (shipped or "/var/log/nvidia-container-runtime.log")
    st_on = tc.load_config(str(path)).status().debug[component]
    assert st_on.enabled and st_on.state == "set"
    assert st_on.log_path == (shipped or "/var/log/nvidia-container-runtime.log")
    # the other component is untouched
    other = "runtime" if component == "hook" else "hook"
    assert not tc.load_config(str(path)).status().debug[other].enabled
    assert (tmp_path / ("config.toml" + BACKUP_SUFFIX)).read_bytes() == original

    off = tc.set_debug(str(path), component, False)
    assert off.action == "comment"
    if shipped is not None:
        assert path.read_bytes() == original
    else:
        # nothing shipped to go back to: the added line is commented out, the rest is as before
        assert path.read_bytes().startswith(original)
        assert not tc.load_config(str(path)).status().debug[component].enabled


@pytest.mark.parametrize("src", [p for p in REAL if DEBUG_PATHS[p.name]["runtime"]], ids=lambda p: p.name)
def test_real_file_both_on_then_both_off(tmp_path, src):
    path = _copy(tmp_path, src)
    original = path.read_bytes()
    tc.set_debug(str(path), "hook", True)
    tc.set_debug(str(path), "runtime", True)
    assert len(_changed_lines(original, path.read_bytes())) == 2
    tc.set_debug(str(path), "runtime", False)
    tc.set_debug(str(path), "hook", False)
    assert path.read_bytes() == original


def test_status_of_real_files():
    s = tc.load_config(str(DATA / "toolkit-1.17-debian.toml")).status()
    assert s.settings["mode"].value == "auto" and s.settings["mode"].state == "set"
    assert s.settings["mode"].line == 21
    assert s.settings["log-level"].value == "info" and s.settings["log-level"].line == 20
    assert s.settings["ldconfig"].value == "@/sbin/ldconfig" and s.settings["ldconfig"].line == 11
    assert s.settings["no-cgroups"].value is False and s.settings["no-cgroups"].state == "commented"
    assert s.settings["no-cgroups"].line == 13
    h, r = s.debug["hook"], s.debug["runtime"]
    assert (h.enabled, h.state, h.line, h.commented_path) == (
        False,
        "commented",
        8,
        "/var/log/nvidia-container-toolkit.log",
    )
    assert (r.enabled, r.state, r.line, r.commented_path) == (
        False,
        "commented",
        19,
        "/var/log/nvidia-container-runtime.log",
    )

    s = tc.load_config(str(DATA / "toolkit-1.13.5-ubuntu.toml")).status()
    assert s.settings["ldconfig"].value == "@/sbin/ldconfig.real"
    assert s.settings["mode"].line == 28
    assert s.debug["hook"].line == 10 and s.debug["runtime"].line == 18

    s = tc.load_config(str(DATA / "hook-era-ubuntu.toml")).status()
    assert s.settings["mode"].state == "absent" and s.settings["mode"].value == "auto"
    assert s.settings["log-level"].state == "absent"
    assert s.debug["hook"].commented_path == "/var/log/nvidia-container-runtime-hook.log"
    assert s.debug["runtime"].state == "absent" and s.debug["runtime"].line is None


def test_status_json_shape():
    j = tc.load_config(str(DATA / "toolkit-1.17-debian.toml")).status().to_json()
    assert set(j) == {"path", "settings", "debug"}
    assert set(j["settings"]) == {"mode", "log-level", "ldconfig", "no-cgroups"}
    assert set(j["debug"]["hook"]) == {"component", "table", "enabled", "log_path", "state", "line", "commented_path"}


# --------------------------------------------------------------------------- hand-made variants

VARIANT_INDENTED_RUNTIME_FIRST = """\
# a hand-kept file: runtime table first, indented, odd spacing
disable-require = false

[nvidia-container-runtime]
    log-level = "debug"   # temporary
    #debug = "/var/log/nvidia-container-runtime.log"
    mode = 'legacy'

    [nvidia-container-runtime.modes.csv]
    #debug = "/not/this/one.log"
    mount-spec-path = "/etc/nvidia-container-runtime/host-files-for-container.d"

[nvidia-container-cli]
  environment = []
  #debug   =   '/var/log/nvidia-container-toolkit.log'    # the hook's log
  no-cgroups = true
  ldconfig = "@/sbin/ldconfig"

[other]
debug = "/must/stay"
"""

VARIANT_SPACED_COMMENTS = """\
disable-require = false
# swarm-resource = "DOCKER_RESOURCE_GPU"

[nvidia-container-cli]
# root = "/run/nvidia/driver"
# debug = "/var/log/nvidia-container-toolkit.log"
load-kmods = true

[nvidia-container-runtime]
# debug = "/var/log/nvidia-container-runtime.log"
"""

VARIANT_TRAPS = '''\
#debug = "/top/level/comment/not/a/table/key"
note = """
[nvidia-container-cli]
#debug = "/inside/a/multiline/string"
"""
matrix = [
  ["nvidia-container-cli"],
[ "x" ],
]

["nvidia-container-cli"]
#debug = "/var/log/nvidia-container-toolkit.log"
ldconfig = "@/sbin/ldconfig"

[nvidia-container-runtime]
#debug = "/var/log/nvidia-container-runtime.log"
'''


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize(
    "name,text,expect",
    [
        (
            "indented",
            VARIANT_INDENTED_RUNTIME_FIRST,
            {
                "hook": (
                    "  #debug   =   '/var/log/nvidia-container-toolkit.log'    # the hook's log",
                    "  debug   =   '/var/log/nvidia-container-toolkit.log'    # the hook's log",
                ),
                "runtime": (
                    '    #debug = "/var/log/nvidia-container-runtime.log"',
                    '    debug = "/var/log/nvidia-container-runtime.log"',
                ),
            },
        ),
        (
            "spaced",
            VARIANT_SPACED_COMMENTS,
            {
                "hook": (
                    '# debug = "/var/log/nvidia-container-toolkit.log"',
                    'debug = "/var/log/nvidia-container-toolkit.log"',
                ),
                "runtime": (
                    '# debug = "/var/log/nvidia-container-runtime.log"',
                    'debug = "/var/log/nvidia-container-runtime.log"',
                ),
            },
        ),
        (
            "traps",
            VARIANT_TRAPS,
            {
                "hook": (
                    '#debug = "/var/log/nvidia-container-toolkit.log"',
                    'debug = "/var/log/nvidia-container-toolkit.log"',
                ),
                "runtime": (
                    '#debug = "/var/log/nvidia-container-runtime.log"',
                    'debug = "/var/log/nvidia-container-runtime.log"',
                ),
            },
        ),
    ],
)
@pytest.mark.parametrize("component", ["hook", "runtime"])
def test_variants_on_off_byte_exact(tmp_path, name, text, expect, component, crlf):
    raw = text.replace("\n", "\r\n") if crlf else text
    path = _copy(tmp_path, raw.encode())
    original = path.read_bytes()
    tc.set_debug(str(path), component, True)
    on = path.read_bytes()
    changes = _changed_lines(original, on)
    assert len(changes) == 1
    _, old, new = changes[0]
    eol = b"\r" if crlf else b""
    assert (old, new) == (expect[component][0].encode() + eol, expect[component][1].encode() + eol)
    data = tomllib.loads(on.decode())
    if "other" in data:
        assert data["other"]["debug"] == "/must/stay"
    tc.set_debug(str(path), component, False)
    assert path.read_bytes() == original


def test_traps_status_ignores_strings_and_other_tables():
    cfg = tc.config_from_snapshot(_snap(VARIANT_TRAPS))
    s = cfg.status()
    assert s.debug["hook"].line == 12  # the quoted ["nvidia-container-cli"] header, not the string
    assert s.debug["runtime"].line == 16


def _snap(text: str):
    from gpudock.toolkit.atomic import FileSnapshot

    data = text.encode()
    return FileSnapshot(path="/x/config.toml", exists=True, data=data)


def test_other_table_debug_key_is_never_touched(tmp_path):
    path = _copy(tmp_path, VARIANT_INDENTED_RUNTIME_FIRST.encode())
    tc.set_debug(str(path), "runtime", True)
    tc.set_debug(str(path), "hook", True)
    text = path.read_text()
    assert '    #debug = "/not/this/one.log"' in text
    assert 'debug = "/must/stay"' in text
    tc.set_debug(str(path), "runtime", False)
    tc.set_debug(str(path), "hook", False)
    assert path.read_bytes() == VARIANT_INDENTED_RUNTIME_FIRST.encode()


def test_no_trailing_newline_and_trailing_comment(tmp_path):
    text = '[nvidia-container-cli]\n#debug = "/var/log/a.log" # keep me'
    path = _copy(tmp_path, text.encode())
    tc.set_debug(str(path), "hook", True)
    assert path.read_text() == '[nvidia-container-cli]\ndebug = "/var/log/a.log" # keep me'
    tc.set_debug(str(path), "hook", False)
    assert path.read_text() == text


def test_operator_path_replaces_value_keeps_quoting(tmp_path):
    path = _copy(tmp_path, VARIANT_INDENTED_RUNTIME_FIRST.encode())
    plan = tc.set_debug(str(path), "hook", True, "/var/log/gpudock-hook.log")
    assert plan.new_line == "  debug   =   '/var/log/gpudock-hook.log'    # the hook's log"
    assert tomllib.loads(path.read_text())["nvidia-container-cli"]["debug"] == "/var/log/gpudock-hook.log"
    # a path that cannot be a literal string gets a basic string with escapes
    plan = tc.set_debug(str(path), "hook", True, '/var/log/it\'s "odd".log')
    assert tomllib.loads(path.read_text())["nvidia-container-cli"]["debug"] == '/var/log/it\'s "odd".log'
    assert plan.action == "set"


def test_choose_commented_line_matching_path(tmp_path):
    text = '[nvidia-container-cli]\n#debug = "/a.log"\n#debug = "/b.log"\n'
    path = _copy(tmp_path, text.encode())
    plan = tc.set_debug(str(path), "hook", True, "/b.log")
    assert plan.line == 3 and path.read_text() == '[nvidia-container-cli]\n#debug = "/a.log"\ndebug = "/b.log"\n'


def test_noop_when_already_as_asked(tmp_path):
    path = _copy(tmp_path, DATA / "toolkit-1.17-debian.toml")
    before = os.stat(path)
    plan = tc.plan_debug(tc.load_config(str(path)), "hook", False)
    assert plan.action == "noop" and not plan.changed and "already off" in plan.describe()
    assert tc.apply_plan(plan) is None
    tc.set_debug(str(path), "hook", True)
    plan = tc.plan_debug(tc.load_config(str(path)), "hook", True)
    assert plan.action == "noop" and "already on" in plan.describe()
    assert os.stat(path).st_ino != before.st_ino  # the one real write replaced the file
    assert not (tmp_path / "config.toml.gpudock-bak").read_bytes() == path.read_bytes()


def test_runtime_dev_null_counts_as_off_and_on_sets_a_path(tmp_path):
    text = '[nvidia-container-runtime]\ndebug = "/dev/null"\n'
    path = _copy(tmp_path, text.encode())
    st = tc.load_config(str(path)).status().debug["runtime"]
    assert not st.enabled and st.state == "set"
    assert tc.plan_debug(tc.load_config(str(path)), "runtime", False).action == "noop"
    plan = tc.set_debug(str(path), "runtime", True)
    assert plan.action == "set" and plan.log_path == "/var/log/nvidia-container-runtime.log"


def test_add_key_in_existing_table_keeps_indent(tmp_path):
    text = '[nvidia-container-cli]\n  ldconfig = "@/sbin/ldconfig"\n  load-kmods = true\n\n[nvidia-ctk]\npath = "x"\n'
    path = _copy(tmp_path, text.encode())
    plan = tc.set_debug(str(path), "hook", True)
    assert plan.action == "add" and plan.line == 4 and plan.added_header is None
    assert path.read_text() == text.replace("true\n", 'true\n  debug = "/var/log/nvidia-container-toolkit.log"\n')


def test_edit_that_would_change_more_is_refused(tmp_path, monkeypatch):
    path = _copy(tmp_path, DATA / "toolkit-1.17-debian.toml")
    original = path.read_bytes()
    # a scanner bug that uncomments the wrong thing must be caught by the re-parse
    monkeypatch.setattr(tc, "_uncommented", lambda ln: 'debug = "/x"\nmode = "cdi"')
    with pytest.raises(tc.ConfigEditError, match="change more than"):
        tc.plan_debug(tc.load_config(str(path)), "hook", True)
    monkeypatch.setattr(tc, "_uncommented", lambda ln: 'debug = = "/x"')
    with pytest.raises(tc.ConfigEditError, match="would not parse"):
        tc.plan_debug(tc.load_config(str(path)), "hook", True)
    assert path.read_bytes() == original


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    log=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
        lambda s: s not in ("", "/dev/null")
    )
)
def test_any_log_path_round_trips(tmp_path, log):
    path = _copy(tmp_path, DATA / "toolkit-1.13.5-ubuntu.toml")
    original = path.read_bytes()
    plan = tc.set_debug(str(path), "runtime", True, log)
    st_ = tc.load_config(str(path)).status().debug["runtime"]
    assert st_.enabled and st_.log_path == log
    # the shipped line stays as it is; ours is the one line added right after it
    lines_before, lines_after = original.split(b"\n"), path.read_bytes().split(b"\n")
    assert plan.action == "add" and lines_after[: plan.line - 1] == lines_before[: plan.line - 1]
    assert lines_after[plan.line - 2] == b'#debug = "/var/log/nvidia-container-runtime.log"'
    assert lines_after[plan.line :] == lines_before[plan.line - 1 :]
    tc.set_debug(str(path), "runtime", False)
    assert not tc.load_config(str(path)).status().debug["runtime"].enabled
    assert path.read_bytes() == original  # on --path X, then off: the original, for any X


@pytest.mark.parametrize("src", REAL, ids=lambda p: p.name)
@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_on_with_any_path_then_off_gives_back_the_shipped_line(tmp_path, src, crlf):
    data = src.read_bytes()
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    path = _copy(tmp_path, data)
    for component in ("hook", "runtime"):
        if component == "runtime" and b"[nvidia-container-runtime]" not in data:
            continue  # the hook-era file has no runtime table
        tc.set_debug(str(path), component, True, "/srv/logs/x.log")
        assert tc.load_config(str(path)).status().debug[component].log_path == "/srv/logs/x.log"
        plan = tc.set_debug(str(path), component, False)
        assert plan.action == "remove" and "shipped #debug line stays" in plan.describe()
        assert path.read_bytes() == data


def test_on_with_a_path_on_a_last_line_without_newline(tmp_path):
    text = b'[nvidia-container-cli]\n#debug = "/var/log/nvidia-container-toolkit.log"'
    path = _copy(tmp_path, text)
    tc.set_debug(str(path), "hook", True, "/tmp/x.log")
    assert path.read_bytes() == text + b'\ndebug = "/tmp/x.log"'
    tc.set_debug(str(path), "hook", False)
    assert path.read_bytes() == text


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "text,line,col",
    [
        ('[nvidia-container-cli]\nldconfig = "@/sbin/ldconfig"\ndebug = \n', 3, 9),
        ('[nvidia-container-cli]\n#debug = "x"\n[nvidia-container-cli]\n', 3, None),
        ('a = "unterminated\n', 1, None),
    ],
)
def test_malformed_toml_refused_with_line_and_column(tmp_path, text, line, col):
    path = _copy(tmp_path, text.encode())
    before = os.stat(path)
    with pytest.raises(tc.ConfigParseError) as ei:
        tc.load_config(str(path))
    e = ei.value
    assert e.line == line and e.column is not None
    if col is not None:
        assert e.column == col
    assert f"line {e.line}, column {e.column}" in str(e) and str(path) in str(e)
    assert path.read_bytes() == text.encode() and os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert not (tmp_path / "config.toml.gpudock-bak").exists()


def test_invalid_utf8_refused_with_position(tmp_path):
    path = _copy(tmp_path, b'a = 1\nb = "\xff"\n')
    with pytest.raises(tc.ConfigParseError) as ei:
        tc.load_config(str(path))
    assert (ei.value.line, ei.value.column) == (2, 6)


def test_changed_between_plan_and_apply_is_refused(tmp_path):
    path = _copy(tmp_path, DATA / "toolkit-1.17-debian.toml")
    plan = tc.plan_debug(tc.load_config(str(path)), "hook", True)
    other = path.read_bytes().replace(b'mode = "auto"', b'mode = "cdi"')
    path.write_bytes(other)  # someone else edits while the confirmation is on screen
    with pytest.raises(FileChangedError, match="changed by someone else"):
        tc.apply_plan(plan)
    assert path.read_bytes() == other


def test_missing_config_says_so_and_defaults_can_be_written(tmp_path):
    path = tmp_path / "etc" / "nvidia-container-runtime" / "config.toml"
    with pytest.raises(tc.ConfigMissingError, match="does not exist.*gpudock toolkit defaults"):
        tc.load_config(str(path))
    tc.write_defaults(str(path), root=str(tmp_path))
    text = path.read_text()
    assert 'ldconfig = "@/sbin/ldconfig"' in text  # no /sbin/ldconfig.real under this root
    body = (DATA / "toolkit-1.17-debian.toml").read_text()
    assert text == body  # the 1.17 rendering, byte for byte
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    with pytest.raises(tc.ConfigError, match="already exists"):
        tc.write_defaults(str(path))
    (tmp_path / "sbin").mkdir()
    (tmp_path / "sbin" / "ldconfig.real").write_text("")
    assert 'ldconfig = "@/sbin/ldconfig.real"' in tc.default_config_text(root=str(tmp_path))
    # and the defaults toggle like the shipped file
    original = path.read_bytes()
    tc.set_debug(str(path), "hook", True)
    tc.set_debug(str(path), "hook", False)
    assert path.read_bytes() == original


# --------------------------------------------------------------------------- locating


def test_locate_order(tmp_path):
    root = tmp_path
    etc = root / "etc/nvidia-container-runtime/config.toml"
    xdg = root / "home/op/.config/nvidia-container-runtime/config.toml"
    env = {"XDG_CONFIG_HOME": "/home/op/.config"}
    loc = tc.locate_config(root=str(root), environ=env)
    assert (loc.path, loc.source, loc.exists) == (str(etc), "default", False)
    etc.parent.mkdir(parents=True)
    etc.write_text("")
    assert tc.locate_config(root=str(root), environ=env).source == "default"
    xdg.parent.mkdir(parents=True)
    xdg.write_text("")
    loc = tc.locate_config(root=str(root), environ=env)
    assert (loc.path, loc.source) == (str(xdg), "XDG_CONFIG_HOME")
    ctk = root / "opt/ctk.toml"
    ctk.parent.mkdir()
    ctk.write_text("")
    loc = tc.locate_config(root=str(root), environ=env | {"NVIDIA_CTK_CONFIG_FILE_PATH": "/opt/ctk.toml"})
    assert loc.source == "NVIDIA_CTK_CONFIG_FILE_PATH" and loc.path == str(ctk)
    loc = tc.locate_config("/some/where.toml", root=str(root), environ=env)
    assert (loc.path, loc.source, loc.exists) == ("/some/where.toml", "--config", False)
    assert tc.locate_config(environ={}).path == "/etc/nvidia-container-runtime/config.toml"


def test_locate_override_order_each_only_when_the_file_exists(tmp_path):
    root = tmp_path / "host"
    for rel in (
        "etc/nvidia-container-runtime/config.toml",
        "home/op/.config/nvidia-container-runtime/config.toml",
        "opt/ctk.toml",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"# {rel}\n")
    both = {"XDG_CONFIG_HOME": "/home/op/.config", "NVIDIA_CTK_CONFIG_FILE_PATH": "/opt/ctk.toml"}
    loc = tc.locate_config(root=str(root), environ=both)
    assert (loc.source, loc.host_path, loc.path) == (
        "NVIDIA_CTK_CONFIG_FILE_PATH",
        "/opt/ctk.toml",
        str(root / "opt/ctk.toml"),
    )
    (root / "opt/ctk.toml").unlink()  # a missing override is skipped: the next one wins
    loc = tc.locate_config(root=str(root), environ=both)
    assert (loc.source, loc.host_path) == ("XDG_CONFIG_HOME", "/home/op/.config/nvidia-container-runtime/config.toml")
    (root / "home/op/.config/nvidia-container-runtime/config.toml").unlink()
    loc = tc.locate_config(root=str(root), environ=both)
    assert (loc.source, loc.host_path, loc.exists) == ("default", "/etc/nvidia-container-runtime/config.toml", True)
    # A relative override names no host path: skipped, not joined to our working directory.
    loc = tc.locate_config(
        root=str(root), environ={"NVIDIA_CTK_CONFIG_FILE_PATH": "ctk.toml", "XDG_CONFIG_HOME": "cfg"}
    )
    assert loc.source == "default"
    # A directory where the override points is not a config file.
    (root / "opt/ctk.toml").mkdir()
    assert tc.locate_config(root=str(root), environ=both).source == "default"


def test_locate_absolute_symlink_cannot_escape_the_root(tmp_path):
    # A copied host whose config.toml is an absolute link: the host means its own file, never
    # this machine's file at that path.
    outside = tmp_path / "outside.toml"
    outside.write_text("accept-nvidia-visible-devices-envvar-when-unprivileged = false\n")
    root = tmp_path / "host"
    cfg = root / "etc/nvidia-container-runtime/config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.symlink_to(str(outside))  # absolute: names <root><outside> under the root
    loc = tc.locate_config(root=str(root), environ={})
    assert (loc.source, loc.exists) == ("default", False)
    assert loc.path == str(root) + str(outside)  # inside the root, where a write would go
    assert loc.host_path == "/etc/nvidia-container-runtime/config.toml"
    twin = Path(str(root) + str(outside))
    twin.parent.mkdir(parents=True)
    twin.write_text('[nvidia-container-runtime]\nmode = "cdi"\n')
    loc = tc.locate_config(root=str(root), environ={})
    assert (loc.exists, loc.path) == (True, str(twin))
    assert tc.load_config(loc.path).status().settings["mode"].value == "cdi"
    # The same through an override whose directory is an absolute link.
    (root / "home/op").mkdir(parents=True)
    (root / "home/op/.config").symlink_to("/srv/conf")
    env = {"XDG_CONFIG_HOME": "/home/op/.config"}
    assert tc.locate_config(root=str(root), environ=env).source == "default"
    inside = root / "srv/conf/nvidia-container-runtime/config.toml"
    inside.parent.mkdir(parents=True)
    inside.write_text("")
    loc = tc.locate_config(root=str(root), environ=env)
    assert (loc.source, loc.path, loc.host_path) == (
        "XDG_CONFIG_HOME",
        str(inside),
        "/home/op/.config/nvidia-container-runtime/config.toml",
    )


def test_locate_link_loop_is_not_found_and_not_raised(tmp_path):
    root = tmp_path / "host"
    d = root / "etc/nvidia-container-runtime"
    d.mkdir(parents=True)
    (d / "config.toml").symlink_to("/etc/nvidia-container-runtime/config.toml")
    loc = tc.locate_config(root=str(root), environ={})
    assert (loc.exists, loc.path) == (False, str(d / "config.toml"))


def test_defaults_ldconfig_probe_stays_inside_the_root(tmp_path):
    root = tmp_path / "host"
    (root / "sbin").mkdir(parents=True)
    target = tmp_path / "ldconfig.real"
    target.write_text("")
    (root / "sbin/ldconfig.real").symlink_to(str(target))  # dangling inside the root
    assert 'ldconfig = "@/sbin/ldconfig"' in tc.default_config_text(root=str(root))


# --------------------------------------------------------------------------- fuzzing the line scanner

# Pieces that a line-based editor easily gets wrong; {n} makes every key unique.
_PIECES = [
    'k{n} = """\n[nvidia-container-cli]\n#debug = "/in/a/string"\n"""',
    "k{n} = '''\n[nvidia-container-runtime]\n#debug = '/in/a/literal'\n'''",
    'k{n} = """a""""',
    'k{n} = "a \\" [x] # not a comment"',
    "k{n} = 'C:\\dir\\'",
    'k{n} = [\n  ["nvidia-container-cli"],\n[ "debug" ],\n  "]", \'[\',\n]',
    'k{n} = {{ a = "[", b = [1, 2] }}',
    '"quoted.key{n}" = 1',
    "'lit key{n}'.sub = true",
    'k{n}.debug = "/dotted/not/ours"',
    '#debug = "/a/comment/in/the/wrong/place"',
    "# a comment with = signs and [brackets] in it",
    "",
    "    k{n} = 2  # indented",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    before=st.lists(st.sampled_from(_PIECES), max_size=5),
    # (two commented debug lines in the target table is a choice, tested above, not a trap)
    inside=st.lists(st.sampled_from([p for p in _PIECES if not p.startswith("#debug")]), max_size=5),
    after=st.lists(st.sampled_from(_PIECES), max_size=5),
    debug_at=st.integers(0, 5),
    component=st.sampled_from(["hook", "runtime"]),
    other_first=st.booleans(),
    crlf=st.booleans(),
)
def test_fuzz_only_the_debug_line_changes(tmp_path, before, inside, after, debug_at, component, other_first, crlf):
    table = tc.DEBUG_TABLES[component]
    other = tc.DEBUG_TABLES["runtime" if component == "hook" else "hook"]
    counter = iter(range(1000))

    def render(pieces):
        return [p.format(n=next(counter)) for p in pieces]

    body = render(inside)
    body.insert(min(debug_at, len(body)), '#debug = "/var/log/target.log"')
    other_table = [f"[{other}]", *render(after), '#debug = "/var/log/other.log"']
    target_table = [f"[{table}]", *body]
    tables = other_table + target_table if other_first else target_table + other_table
    text = "\n".join(render(before) + tables) + "\n"
    if crlf:
        text = text.replace("\n", "\r\n")
    tomllib.loads(text)  # the generator only makes valid TOML
    path = _copy(tmp_path, text.encode())
    original = path.read_bytes()
    plan = tc.set_debug(str(path), component, True)
    assert plan.action == "uncomment" and plan.new_line == 'debug = "/var/log/target.log"'
    assert len(_changed_lines(original, path.read_bytes())) == 1
    s = tc.load_config(str(path)).status()
    assert s.debug[component].enabled and s.debug[component].log_path == "/var/log/target.log"
    assert not s.debug["runtime" if component == "hook" else "hook"].enabled
    tc.set_debug(str(path), component, False)
    assert path.read_bytes() == original


def test_plan_notes_the_upgrade_trap_for_default_paths(tmp_path):
    path = _copy(tmp_path, DATA / "toolkit-1.17-debian.toml")
    cfg = tc.load_config(str(path))
    assert "1.14-1.19" in tc.plan_debug(cfg, "hook", True).note
    assert tc.plan_debug(cfg, "hook", True, "/var/log/gpudock-hook-debug.log").note is None
    assert tc.plan_debug(cfg, "hook", False).note is None
    assert tc.plan_debug(cfg, "hook", True).to_json()["note"]


@pytest.mark.parametrize(
    "text,line,col,depth",
    [
        ("a = " + "[" * 5000 + "]" * 5000 + "\n", 1, 5004, 5000),
        (
            '[nvidia-container-cli]\n# [[[ not this\nx = "[[[["\ny = ' + "{a = " * 3000 + "1" + "}" * 3000 + "\n",
            4,
            5 + 5 * 2999,
            3000,
        ),
    ],
    ids=["arrays", "inline-tables"],
)
def test_nesting_too_deep_for_the_parser_is_refused_with_the_place(tmp_path, text, line, col, depth):
    path = _copy(tmp_path, text.encode())
    with pytest.raises(tc.ConfigParseError) as ei:
        tc.load_config(str(path))
    e = ei.value
    assert (e.line, e.column) == (line, col)
    assert f"{path} is not usable TOML at line {line}, column {col}: arrays or inline tables nested {depth}" in str(e)
