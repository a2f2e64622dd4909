"""rpyc-classicd for the operator (issue 14): --help, errors, -v, --dump-config, --log-level, the
default configuration file, the file's errors and --check-config opening what a start opens."""

import os
import platform
import re
import shutil
import socket
import subprocess

import pytest

from classic_support import CLASSICD, REFERENCE, Daemon, free_port, wait_for

pytestmark = pytest.mark.skipif(REFERENCE, reason="the native daemon's command line")


def run(args, timeout=20):
    if not CLASSICD.exists():
        pytest.fail(f"daemon binary not found: {CLASSICD}")
    return subprocess.run([str(CLASSICD), *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def default_config_path():
    """The file the daemon reads without -c, as its --help says."""
    m = re.search(r"\[default: (\S+) if it exists", run(["--help"]).stdout)
    assert m, "--help does not name the default configuration file"
    return m.group(1)


# --- --help and errors -----------------------------------------------------------------------

def test_help_shows_types_choices_and_real_defaults():
    out = run(["--help"])
    assert out.returncode == 0
    text = out.stdout
    assert "-p,--port INT" in text
    assert "[default: 18812, or 18821 with TLS]" in text
    assert "-m,--mode {threaded,threadpool,forking,oneshot,stdio}" in text
    assert "--registry-type {UDP,TCP}" in text
    assert "--log-level {error,warning,info,debug}" in text
    assert "[default: ]" not in text
    assert "-1" not in text


@pytest.mark.parametrize("args,message", [
    (["-p", "70000"], "--port: expected a number 0-65535, got '70000'"),
    (["-p", "-1"], "--port: expected a number 0-65535, got '-1'"),
    (["-p", "x"], "--port: expected a number 0-65535, got 'x'"),
    (["-p"], "--port: expected a number 0-65535 (try --help)"),
    (["-m", "spawn"], "--mode: expected one of threaded, threadpool, forking, oneshot, stdio, got 'spawn'"),
    (["--log-level", "trace"], "--log-level: expected one of error, warning, info, debug, got 'trace'"),
    (["--bogus"], "unknown switch '--bogus' (try --help)"),
    (["stray"], "unexpected argument 'stray' (try --help)"),
])
def test_errors_name_the_switch_and_what_it_expects(args, message):
    out = run(args)
    assert out.returncode == 64, out.stderr
    assert out.stderr == f"rpyc-classicd: {message}\n"


# --- -v / --version --------------------------------------------------------------------------

def test_version_names_the_build_and_the_loaded_libraries():
    short, long = run(["-v"]), run(["--version"])
    assert short.returncode == long.returncode == 0
    assert short.stdout == long.stdout
    text = long.stdout
    assert re.match(r"rpyc-classicd \S+ \(commit ([0-9a-f]{7,}(-dirty)?|unknown \(built without git\))\)\n",
                    text), text
    # The libpython the daemon loaded is Debian's, the one /usr/bin/python3 runs.
    assert f"CPython {platform.python_version()}" in text, text
    assert re.search(r"OpenSSL 3\.\d+\.\d+", text), text
    assert re.search(r"libevent 2\.\d+\.\d+", text), text


# --- --dump-config ---------------------------------------------------------------------------

def test_dump_config_merges_and_reads_back(tmp_path):
    conf = tmp_path / "in.toml"
    conf.write_text('max-connections = 7\nhost = "127.0.0.1"\nlog-level = "warning"\n')
    first = run(["-c", str(conf), "-p", "2345", "--threads", "3", "--dump-config"])
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "port = 2345" in lines           # a switch
    assert "max-connections = 7" in lines   # the file
    assert 'log-level = "warning"' in lines
    assert "threads = 3" in lines
    assert 'mode = "threaded"' in lines     # a default
    dumped = tmp_path / "dumped.toml"
    dumped.write_text(first.stdout)
    again = run(["-c", str(dumped), "--dump-config"])
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    # The port left unset is said, not invented: a later TLS setting still picks 18821.
    plain = run(["-c", "", "--dump-config"]).stdout
    assert "# port: not set (18812, or 18821 with TLS)" in plain.splitlines()


# --- --log-level -----------------------------------------------------------------------------

def lifetime_line_logged(d):
    return "objects lent at disconnect" in d.log()


def connect_once(port):
    # A bare connect and close is enough for the per-connection lines.
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


@pytest.mark.parametrize("level,debug_lines", [("debug", True), ("info", False)])
def test_log_level_switch_sets_the_threshold(tmp_path, level, debug_lines):
    d = Daemon(tmp_path, extra_args=["--log-level", level])
    try:
        connect_once(d.port)
        wait_for(lambda: "goodbye" in d.log() or "ended" in d.log() or lifetime_line_logged(d),
                 what="the connection's end logged")
        assert lifetime_line_logged(d) == debug_lines, d.log()
    finally:
        assert d.stop() == 0


def test_log_level_key_and_quiet(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('log-level = "warning"\n')
    d = Daemon(tmp_path, extra_args=["-c", str(conf), "--log-level=warning"])
    try:
        connect_once(d.port)
    finally:
        assert d.stop() == 0
    assert "INFO:" not in d.log() and "DEBUG:" not in d.log(), d.log()
    out = run(["-c", str(conf), "--dump-config"])
    assert 'log-level = "warning"' in out.stdout.splitlines()
    bad = tmp_path / "bad.toml"
    bad.write_text('\nlog-level = "verbose"\n')
    out = run(["-c", str(bad), "--check-config"])
    assert out.returncode == 78
    assert f"{bad}:2: key 'log-level': expected one of error, warning, info, debug, got 'verbose'" \
        in out.stderr


# --- the default configuration file ----------------------------------------------------------

def in_private_etc(etc_dir, args):
    """Runs the daemon with `etc_dir` mounted over the directory of its default file, in a mount
    namespace of its own: the machine's /etc (or /usr/local/etc) is neither read nor touched."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) not installed")
    target = os.path.dirname(default_config_path())
    # The directory may not exist (no package installed): mount over its parent instead.
    mount_at, source = target, etc_dir
    if not os.path.isdir(target):
        mount_at = os.path.dirname(target)
        source = etc_dir.parent
        assert etc_dir.name == os.path.basename(target)
    script = 'mount --bind "$1" "$2" && shift 2 && exec "$@"'
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no mount namespace here: {probe.stderr.decode().strip()}")
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(source), mount_at,
                           str(CLASSICD), *args], capture_output=True, text=True, timeout=20)


def test_default_file_is_read_when_it_exists_and_minus_c_empty_reads_none(tmp_path):
    name = os.path.basename(default_config_path())
    etc = tmp_path / "etc" / "rpyc"
    etc.mkdir(parents=True)
    (tmp_path / "etc" / "rpyc" / name).write_text("max-connections = 42\n")
    etc_dir = tmp_path / "etc" / "rpyc"
    out = in_private_etc(etc_dir, ["--dump-config"])
    assert out.returncode == 0, out.stderr
    assert "max-connections = 42" in out.stdout.splitlines()
    out = in_private_etc(etc_dir, ["--check-config"])
    assert out.returncode == 0 and f"configuration OK ({default_config_path()})" in out.stdout
    out = in_private_etc(etc_dir, ["-c", "", "--dump-config"])
    assert "max-connections = 1000" in out.stdout.splitlines()
    # A broken default file stops the start like a broken -c file.
    (etc_dir / name).write_text("max-connections = 'many'\n")
    out = in_private_etc(etc_dir, ["--check-config"])
    assert out.returncode == 78
    assert f"{default_config_path()}:1: key 'max-connections'" in out.stderr
    # Absent: the built-in defaults.
    (etc_dir / name).unlink()
    out = in_private_etc(etc_dir, ["--dump-config"])
    assert out.returncode == 0 and "max-connections = 1000" in out.stdout.splitlines()


# --- errors of a configuration file ----------------------------------------------------------

def test_every_error_of_a_file_in_file_order(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text("zzz = 1\n"
                    "max-connections-per-peer = 2\n"
                    "mode = threaded\n"
                    "max_connections_per_peer = 3\n"
                    "port = 'x'\n")
    out = run(["-c", str(conf), "--check-config"])
    assert out.returncode == 78
    assert out.stderr.splitlines() == [
        f"rpyc-classicd: {conf}:1: key 'zzz': unknown key",
        f"rpyc-classicd: {conf}:3:9: Error while parsing boolean: expected 'true', saw 'th' "
        '(a string must be quoted: mode = "threaded")',
        f"rpyc-classicd: {conf}:4: key 'max_connections_per_peer': the same setting as "
        "'max-connections-per-peer' on line 2; keep one",
        f"rpyc-classicd: {conf}:5: key 'port': expected a number 0-65535, found a string",
    ], out.stderr


def test_a_directory_as_configuration_file_is_an_error(tmp_path):
    out = run(["-c", str(tmp_path), "-p", str(free_port())])
    assert out.returncode == 78
    assert out.stderr == f"rpyc-classicd: {tmp_path}: is a directory, not a configuration file\n"


# --- --check-config opens what a start opens -------------------------------------------------

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pems(tmp_path_factory):
    d = tmp_path_factory.mktemp("pems")
    for name in ("one", "two"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=d)
    (d / "garbage.pem").write_text("not a certificate\n")
    return d


def tls_args(pems, key="one.key", cert="one.pem", ca=None):
    args = ["--ssl-keyfile", str(pems / key), "--ssl-certfile", str(pems / cert)]
    if ca:
        args += ["--ssl-cafile", str(pems / ca)]
    return args


def test_check_config_accepts_what_starts(pems, tmp_path):
    out = run([*tls_args(pems, ca="two.pem"), "--logfile", str(tmp_path / "d.log"),
               "--unix-socket", str(tmp_path / "s.sock"), "-c", "", "--check-config"])
    assert out.returncode == 0, out.stderr
    assert out.stdout == "rpyc-classicd: configuration OK\n"
    assert not (tmp_path / "d.log").exists()  # checked, not created


@pytest.mark.parametrize("case,args,reason", [
    ("missing key", lambda p, t: tls_args(p, key="absent.key"), "key file {p}/absent.key"),
    ("missing certificate", lambda p, t: tls_args(p, cert="absent.pem"), "certificate file {p}/absent.pem"),
    ("broken certificate", lambda p, t: tls_args(p, cert="garbage.pem"), "certificate file {p}/garbage.pem"),
    # (OpenSSL finds the mismatch while loading the key; the wording is the TLS layer's.)
    ("key of another certificate", lambda p, t: tls_args(p, cert="two.pem"), "key file {p}/one.key"),
    ("missing CA", lambda p, t: tls_args(p, ca="absent-ca.pem"), "CA file {p}/absent-ca.pem"),
    ("log file is a directory", lambda p, t: ["--logfile", str(t)], "log file {t}: is a directory"),
    ("log file's directory missing", lambda p, t: ["--logfile", str(t / "no" / "d.log")],
     "log file {t}/no/d.log: directory {t}/no: No such file or directory"),
    ("unix socket's directory missing", lambda p, t: ["--unix-socket", str(t / "no" / "s.sock")],
     "unix socket {t}/no/s.sock: directory {t}/no: No such file or directory"),
])
def test_check_config_fails_for_what_a_start_cannot_open(pems, tmp_path, case, args, reason):
    out = run(["-c", "", *args(pems, tmp_path), "--check-config"])
    assert out.returncode == 78, (case, out.stdout, out.stderr)
    assert out.stderr.startswith("rpyc-classicd: " + reason.format(p=pems, t=tmp_path)), out.stderr
    assert "configuration OK" not in out.stdout


def test_a_missing_log_directory_stops_the_start_and_is_not_created(tmp_path):
    missing = tmp_path / "no"
    out = run(["-c", "", "-p", str(free_port()), "--logfile", str(missing / "d.log")])
    assert out.returncode != 0
    assert f"log file {missing}/d.log: directory {missing}: No such file or directory" in out.stderr
    assert not missing.exists()


def test_a_rule_broken_by_the_file_names_the_key_as_written(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('\nssl-keyfile = "/k.pem"\n')
    out = run(["-c", str(conf), "--check-config"])
    assert out.returncode == 78
    assert out.stderr == f"rpyc-classicd: {conf}:2: key 'ssl-keyfile': requires ssl_certfile\n"
