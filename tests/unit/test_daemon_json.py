"""daemon.json: status, merge-registration that keeps everything else, refusals, engine comparison."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpudock.toolkit import daemon_json as dj
from gpudock.toolkit.atomic import BACKUP_SUFFIX, FileChangedError

BUSY = """\
{
    "log-driver": "json-file",
    "log-opts": {
        "max-size": "10m",
        "max-file": "3"
    },
    "exec-opts": [
        "native.cgroupdriver=systemd"
    ],
    "registry-mirrors": [
        "https://mirror.example.org"
    ],
    "features": {
        "containerd-snapshotter": true,
        "buildkit": true
    },
    "data-root": "/srv/docker",
    "labels": [
        "rack=b7 \u00e9t\u00e9"
    ]
}
"""


def _write(tmp_path: Path, text: str | bytes, name="daemon.json") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


def test_register_keeps_every_other_key_and_order(tmp_path):
    p = _write(tmp_path, BUSY)
    before = json.loads(BUSY)
    plan = dj.register(str(p))
    after = json.loads(p.read_text())
    assert list(after) == list(before) + ["runtimes"]
    for k, v in before.items():
        assert after[k] == v
    assert after["runtimes"] == {"nvidia": {"path": "nvidia-container-runtime"}}
    assert "default-runtime" not in after
    assert plan.changed and plan.restart_needed
    assert plan.to_json()["restart_hint"] == dj.RESTART_HINT
    assert "systemctl restart docker" in dj.RESTART_HINT
    # same style: the file was in 4-space json.dumps style, so only the added lines differ
    old_lines = BUSY.splitlines()
    new_lines = p.read_text().splitlines()
    assert new_lines[: len(old_lines) - 1] == [
        ln if i != len(old_lines) - 2 else ln + "," for i, ln in enumerate(old_lines[:-1])
    ]
    assert (tmp_path / ("daemon.json" + BACKUP_SUFFIX)).read_text() == BUSY


@pytest.mark.parametrize("indent", ["  ", "    ", "\t"], ids=["2sp", "4sp", "tab"])
@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_indentation_style_detected_and_kept(tmp_path, indent, crlf):
    obj = {"log-opts": {"max-size": "10m"}, "debug": False}
    text = json.dumps(obj, indent=indent) + "\n"
    if crlf:
        text = text.replace("\n", "\r\n")
    p = _write(tmp_path, text)
    dj.register(str(p), default=True)
    out = p.read_bytes().decode()
    expected = (
        json.dumps(
            obj | {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}, "default-runtime": "nvidia"},
            indent=indent,
        )
        + "\n"
    )
    if crlf:
        expected = expected.replace("\n", "\r\n")
    assert out == expected


def test_one_line_file_stays_one_line_without_trailing_newline(tmp_path):
    p = _write(tmp_path, '{"debug": true}')
    dj.register(str(p))
    assert p.read_text() == '{"debug": true, "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}'


def test_existing_runtime_entry_merged_not_replaced(tmp_path):
    text = (
        json.dumps(
            {
                "runtimes": {
                    "nvidia": {"path": "/usr/bin/nvidia-container-runtime", "runtimeArgs": ["--x"]},
                    "crun": {"path": "/usr/bin/crun"},
                }
            },
            indent=4,
        )
        + "\n"
    )
    p = _write(tmp_path, text)
    plan = dj.register(str(p), path="/opt/nvidia/nvidia-container-runtime")
    assert plan.changes == (
        'runtime "nvidia": path "/usr/bin/nvidia-container-runtime" -> "/opt/nvidia/nvidia-container-runtime"',
    )
    after = json.loads(p.read_text())
    assert after["runtimes"]["nvidia"] == {"path": "/opt/nvidia/nvidia-container-runtime", "runtimeArgs": ["--x"]}
    assert after["runtimes"]["crun"] == {"path": "/usr/bin/crun"}


def test_default_true_false_none(tmp_path):
    p = _write(tmp_path, BUSY)
    dj.register(str(p), default=True)
    assert json.loads(p.read_text())["default-runtime"] == "nvidia"
    plan = dj.register(str(p))  # None: leave the default alone, already registered: nothing to do
    assert not plan.changed and plan.to_json()["restart_needed"] is False
    dj.register(str(p), default=False)
    after = json.loads(p.read_text())
    assert "default-runtime" not in after and after["runtimes"]["nvidia"]
    # someone else's default is not ours to remove
    d = json.loads(p.read_text()) | {"default-runtime": "crun"}
    p.write_text(json.dumps(d, indent=4) + "\n")
    assert not dj.register(str(p), default=False).changed


def test_noop_writes_nothing(tmp_path):
    p = _write(tmp_path, json.dumps({"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}))
    st = os.stat(p)
    plan = dj.register(str(p))
    assert not plan.changed and dj.apply_register(plan) is None
    assert os.stat(p).st_ino == st.st_ino and not (tmp_path / ("daemon.json" + BACKUP_SUFFIX)).exists()


@pytest.mark.parametrize("text", [None, "", "  \n"], ids=["missing", "empty", "blank"])
def test_missing_or_blank_file(tmp_path, text):
    p = tmp_path / "docker" / "daemon.json"
    if text is not None:
        p.parent.mkdir()
        p.write_text(text)
    doc = dj.load_daemon_json(str(p))
    assert doc.data == {} and doc.exists == (text is not None)
    assert doc.to_json()["nvidia_registered"] is False and doc.default_runtime is None
    dj.register(str(p))
    assert (
        p.read_text()
        == '{\n    "runtimes": {\n        "nvidia": {\n            "path": "nvidia-container-runtime"\n        }\n    }\n}\n'  # noqa: E501
    )


@pytest.mark.parametrize(
    "text,line,col",
    [
        ('{\n    "debug": true,\n}\n', 3, 1),
        ('{\n  "a": 1\n  "b": 2\n}', 3, 3),
        ('{"a": [1, 2}', 1, 12),
    ],
)
def test_malformed_json_refused_with_line_and_column(tmp_path, text, line, col):
    p = _write(tmp_path, text)
    st = os.stat(p)
    with pytest.raises(dj.DaemonJsonError) as ei:
        dj.register(str(p))
    e = ei.value
    assert (e.line, e.column) == (line, col)
    assert f"line {line}, column {col}" in str(e) and str(p) in str(e)
    assert p.read_text() == text and os.stat(p).st_mtime_ns == st.st_mtime_ns
    assert not (tmp_path / ("daemon.json" + BACKUP_SUFFIX)).exists()


def test_not_an_object_refused(tmp_path):
    p = _write(tmp_path, "[1, 2]\n")
    with pytest.raises(dj.DaemonJsonError, match="must hold a JSON object"):
        dj.load_daemon_json(str(p))
    p = _write(tmp_path, '{"runtimes": "nvidia"}\n')
    with pytest.raises(dj.DaemonJsonError, match='"runtimes" is not an object'):
        dj.register(str(p))
    assert p.read_text() == '{"runtimes": "nvidia"}\n'


def test_changed_between_plan_and_apply_is_refused(tmp_path):
    p = _write(tmp_path, BUSY)
    plan = dj.plan_register(dj.load_daemon_json(str(p)), default=True)
    theirs = BUSY.replace('"10m"', '"20m"')
    p.write_text(theirs)
    with pytest.raises(FileChangedError):
        dj.apply_register(plan)
    assert p.read_text() == theirs


def test_mode_and_owner_kept(tmp_path):
    p = _write(tmp_path, BUSY)
    os.chown(p, 1234, 1234)
    os.chmod(p, 0o600)
    dj.register(str(p))
    st = os.stat(p)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 1234, 0o600)


def test_status_finds_toolkit_runtimes_by_path():
    from gpudock.toolkit.atomic import FileSnapshot

    data = {
        "runtimes": {
            "gpu": {"path": "/usr/bin/nvidia-container-runtime"},
            "crun": {"path": "crun"},
            "nv-exp": {"path": "/opt/nvidia-container-runtime.experimental"},
        },
        "default-runtime": "gpu",
    }
    raw = json.dumps(data).encode()
    doc = dj.parse_daemon_json(FileSnapshot(path="/etc/docker/daemon.json", exists=True, data=raw))
    assert doc.toolkit_runtimes() == ["gpu"]
    assert not doc.registered("nvidia") and doc.registered("gpu")
    j = doc.to_json()
    assert j == {
        "path": "/etc/docker/daemon.json",
        "exists": True,
        "runtimes": {
            "gpu": "/usr/bin/nvidia-container-runtime",
            "crun": "crun",
            "nv-exp": "/opt/nvidia-container-runtime.experimental",
        },
        "toolkit_runtimes": ["gpu"],
        "nvidia_registered": False,
        "default_runtime": "gpu",
    }


INFO_PLAIN = {
    "Runtimes": {"io.containerd.runc.v2": {"path": "runc"}, "runc": {"path": "runc"}},
    "DefaultRuntime": "runc",
}
INFO_NVIDIA = {
    "Runtimes": INFO_PLAIN["Runtimes"] | {"nvidia": {"path": "nvidia-container-runtime"}},
    "DefaultRuntime": "runc",
}


def _doc(obj) -> dj.DaemonJson:
    from gpudock.toolkit.atomic import FileSnapshot

    return dj.parse_daemon_json(FileSnapshot(path="daemon.json", exists=True, data=json.dumps(obj).encode()))


def test_engine_comparison():
    e = dj.engine_runtimes(INFO_PLAIN)
    assert not e.knows and e.default_runtime == "runc" and not e.restart_needed
    e = dj.engine_runtimes(INFO_NVIDIA)
    assert e.knows and e.toolkit_runtimes == ("nvidia",)
    # registered in the file, unknown to the running engine: restart needed
    reg = _doc({"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}})
    e = dj.engine_runtimes(INFO_PLAIN, daemon=reg)
    assert e.restart_needed and "does not know" in e.reasons[0]
    assert not dj.engine_runtimes(INFO_NVIDIA, daemon=reg).restart_needed
    # default in the file differs from the engine's
    regd = _doc({"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}, "default-runtime": "nvidia"})
    e = dj.engine_runtimes(INFO_NVIDIA, daemon=regd)
    assert e.restart_needed and "default" in e.reasons[0]
    assert not dj.engine_runtimes(INFO_NVIDIA | {"DefaultRuntime": "nvidia"}, daemon=regd).restart_needed
    j = e.to_json()
    assert set(j) == {"runtimes", "default_runtime", "knows_runtime", "toolkit_runtimes", "restart_needed", "reasons"}
    assert j["runtimes"]["nvidia"] == "nvidia-container-runtime"


# --------------------------------------------------------------------------- edited, not re-rendered


def _one_insertion(old: bytes, new: bytes) -> bytes:
    """``new`` is ``old`` with one run of bytes inserted and nothing else changed: return the run."""
    p = 0
    while p < min(len(old), len(new)) and old[p] == new[p]:
        p += 1
    s = 0
    while s < min(len(old), len(new)) - p and old[len(old) - 1 - s] == new[len(new) - 1 - s]:
        s += 1
    assert p + s == len(old), f"bytes of the original changed:\n{old!r}\n{new!r}"
    return new[p : len(new) - s]


_NEW = '"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}'


@pytest.mark.parametrize(
    "text,at,inserted",
    [
        # one line, with json.dumps' spaces
        ('{"debug": true, "dns": ["8.8.8.8", "1.1.1.1"]}', -1, ", " + _NEW),
        # compact: no spaces anywhere, none added
        (
            '{"debug":true,"mtu":1.5e1,"dns":["8.8.8.8"]}\n',
            -2,
            ',"runtimes":{"nvidia":{"path":"nvidia-container-runtime"}}',
        ),
        # tab indentation, one-line arrays and objects inside, 1.5e1, a number written 1E2
        (
            '{\n\t"log-opts": {"max-size": "10m", "max-file": "3"},\n\t"dns": [ "8.8.8.8" ],\n\t"mtu": 1.5e1,\n'
            '\t"x": 1E2\n}\n',
            -3,
            ',\n\t"runtimes": {\n\t\t"nvidia": {\n\t\t\t"path": "nvidia-container-runtime"\n\t\t}\n\t}',
        ),
        # CRLF, two-space indentation
        (
            '{\r\n  "log-driver": "json-file",\r\n  "labels": ["a", "b"]\r\n}\r\n',
            -5,
            ',\r\n  "runtimes": {\r\n    "nvidia": {\r\n      "path": "nvidia-container-runtime"\r\n    }\r\n  }',
        ),
        # an empty object, and a file with no newline at the end
        ("{}", 1, _NEW),
        (
            "{\n}",
            1,
            '\n    "runtimes": {\n        "nvidia": {\n            "path": "nvidia-container-runtime"\n'
            "        }\n    }",
        ),
    ],
    ids=["one-line", "compact", "tabs", "crlf", "empty", "empty-multiline"],
)
def test_register_inserts_and_keeps_every_other_byte(tmp_path, text, at, inserted):
    p = _write(tmp_path, text)
    dj.register(str(p))
    assert p.read_bytes().decode() == text[:at] + inserted + text[at:]
    assert json.loads(p.read_text())["runtimes"] == {"nvidia": {"path": "nvidia-container-runtime"}}


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
def test_into_existing_runtimes_and_default_keeps_every_other_byte(tmp_path, crlf):
    text = (
        '{\n    "runtimes": {"crun": {"path": "/usr/bin/crun", "runtimeArgs": ["--x"]}},\n'
        '    "default-runtime": "crun",\n    "mtu": 1.5e1\n}\n'
    )
    eol = "\r\n" if crlf else "\n"
    text = text.replace("\n", eol)
    p = _write(tmp_path, text)
    dj.register(str(p))
    # the runtimes object is one line: the new runtime joins it on that line
    with_nvidia = text.replace('"--x"]}}', '"--x"]}, "nvidia": {"path": "nvidia-container-runtime"}}')
    assert p.read_bytes().decode() == with_nvidia
    dj.register(str(p), default=True)  # only the value of default-runtime changes
    assert p.read_bytes().decode() == with_nvidia.replace('"default-runtime": "crun"', '"default-runtime": "nvidia"')
    dj.register(str(p), default=False)  # the member goes, with its comma and its line
    assert p.read_bytes().decode() == with_nvidia.replace(f'    "default-runtime": "crun",{eol}', "")


def test_path_change_replaces_only_the_value(tmp_path):
    text = '{"runtimes":{"nvidia":{"runtimeArgs":[],"path":"/old/nvidia-container-runtime"}},"mtu":1.5e1}'
    p = _write(tmp_path, text)
    dj.register(str(p), path="/opt/nvidia-container-runtime")
    assert p.read_text() == text.replace("/old/nvidia-container-runtime", "/opt/nvidia-container-runtime")


def test_default_added_last_and_removed_cleanly_on_one_line(tmp_path):
    p = _write(tmp_path, '{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}')
    dj.register(str(p), default=True)
    assert (
        p.read_text() == '{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}, "default-runtime": "nvidia"}'
    )
    dj.register(str(p), default=False)
    assert p.read_text() == '{"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}'
    p = _write(tmp_path, '{"default-runtime": "nvidia", "runtimes": {"nvidia": {"path": "x"}}}')
    dj.register(str(p), default=False)
    assert p.read_text() == '{"runtimes": {"nvidia": {"path": "x"}}}'


def test_non_ascii_file_gets_non_ascii_text_and_ascii_file_escapes(tmp_path):
    p = _write(tmp_path, '{"labels": ["été"]}')
    dj.register(str(p), name="gpu-é", path="/opt/é/nvidia-container-runtime")
    assert p.read_text(encoding="utf-8").endswith('"gpu-é": {"path": "/opt/é/nvidia-container-runtime"}}}')
    p = _write(tmp_path, '{"labels": ["\\u00e9t\\u00e9"]}')
    dj.register(str(p), name="gpu-é")
    assert p.read_bytes().isascii() and json.loads(p.read_text())["runtimes"]["gpu-é"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    obj=st.dictionaries(
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=8).filter(
            lambda k: k not in ("runtimes", "default-runtime")
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
            lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
            max_leaves=8,
        ),
        max_size=5,
    ),
    indent=st.sampled_from([None, 0, 1, 2, 4, "\t"]),
    compact=st.booleans(),
    crlf=st.booleans(),
    ascii_only=st.booleans(),
    default=st.sampled_from([None, True]),
)
def test_fuzz_registration_is_one_insertion(tmp_path, obj, indent, compact, crlf, ascii_only, default):
    seps = (",", ":") if compact else None
    text = json.dumps(obj, indent=indent, separators=seps, ensure_ascii=ascii_only)
    if crlf:
        text = text.replace("\n", "\r\n")
    p = _write(tmp_path, text + ("\r\n" if crlf else "\n"))
    old = p.read_bytes()
    dj.register(str(p), default=default)
    _one_insertion(old, p.read_bytes())
    after = json.loads(p.read_text(encoding="utf-8"))
    assert list(after)[: len(obj)] == list(obj) and all(after[k] == obj[k] for k in obj)
    assert after["runtimes"] == {"nvidia": {"path": "nvidia-container-runtime"}}
    assert after.get("default-runtime") == ("nvidia" if default else None)


# --------------------------------------------------------------------------- a working path is kept


def test_registered_absolute_path_is_kept(tmp_path):
    text = '{"runtimes": {"nvidia": {"path": "/usr/local/nvidia/toolkit/nvidia-container-runtime"}}}\n'
    p = _write(tmp_path, text)
    doc = dj.load_daemon_json(str(p))
    assert doc.registered("nvidia")  # what `toolkit status` reports
    plan = dj.register(str(p))
    assert not plan.changed and p.read_text() == text
    assert plan.runtime_path == "/usr/local/nvidia/toolkit/nvidia-container-runtime"
    assert "kept" in plan.kept and "--path" in plan.kept
    plan = dj.register(str(p), default=True)  # the default is made without touching the path
    assert plan.changes == ('default-runtime: null -> "nvidia"',)
    assert (
        json.loads(p.read_text())["runtimes"]["nvidia"]["path"] == "/usr/local/nvidia/toolkit/nvidia-container-runtime"
    )
    plan = dj.register(str(p), path="nvidia-container-runtime")  # asked for: changed
    assert json.loads(p.read_text())["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime"


# --------------------------------------------------------------------------- not JSON, or not dockerd's


@pytest.mark.parametrize(
    "text,line,col,words",
    [
        ('{"mtu": NaN}', 1, 9, "NaN is not JSON"),
        ('{\n  "a": {"b": Infinity}\n}', 2, 14, "Infinity is not JSON"),
        ('{"a": [-Infinity]}', 1, 8, "-Infinity is not JSON"),
        ('{\n"mtu": 1e400}', 2, 8, "the number 1e400 is too large"),
        ('{"n": ' + "9" * 5000 + "}", 1, 7, "(5000 characters) is too large"),
        ('{"debug": true,\n "debug": false}', 2, 2, 'duplicate key "debug" (first at line 1)'),
        ('{"log-opts": {"max-size": "1m", "max-size": "2m"}}', 1, 33, 'duplicate key "max-size"'),
        ('{"labels": ["\\ud800"]}', 1, 13, "lone UTF-16 surrogate"),
        ('{"a": ' + "[" * 10000 + "]" * 10000 + "}", 1, 7 + dj.MAX_DEPTH - 1, "nested more than"),
        ('{"a": 1}  x', 1, 11, "extra data"),
    ],
    ids=["nan", "infinity", "-infinity", "1e400", "5000-digits", "dup", "dup-nested", "surrogate", "deep", "extra"],
)
def test_not_json_or_not_dockerds_is_refused_with_the_place(tmp_path, text, line, col, words):
    p = _write(tmp_path, text)
    before = p.read_bytes()
    with pytest.raises(dj.DaemonJsonError) as ei:
        dj.register(str(p))
    e = ei.value
    assert (e.line, e.column) == (line, col), str(e)
    assert words in str(e) and f"{p} is not valid JSON at line {line}, column {col}" in str(e)
    assert p.read_bytes() == before and not (tmp_path / ("daemon.json" + BACKUP_SUFFIX)).exists()


def test_1e400_is_never_written_back_as_infinity(tmp_path):
    p = _write(tmp_path, '{"x": 1e400}')
    with pytest.raises(dj.DaemonJsonError):
        dj.register(str(p))
    assert p.read_text() == '{"x": 1e400}'


@pytest.mark.parametrize(
    "kw,words",
    [
        ({"name": ""}, "name must not be empty"),
        ({"path": ""}, "path must not be empty"),
        ({"name": "rt\udcff"}, "not valid UTF-8"),
        ({"path": "/opt/\udce9/nvidia-container-runtime"}, "not valid UTF-8"),
        ({"name": "a\nb"}, "control characters"),
    ],
    ids=["empty-name", "empty-path", "non-utf8-name", "non-utf8-path", "newline"],
)
def test_bad_names_and_paths_are_refused(tmp_path, kw, words):
    p = _write(tmp_path, "{}\n")
    with pytest.raises(dj.RegisterArgumentError, match=words):
        dj.register(str(p), **kw)
    assert p.read_text() == "{}\n"
