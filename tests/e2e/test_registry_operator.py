"""rpyc-registryd for the operator (issue 14): the reference's switch syntax, --help, -m both,
log wording, the `file` key, and what a reload reports."""
import os
import re
import shutil
import signal
import subprocess

import pytest

from registry_support import REGISTRYD, Daemon, require_binary, run_client, wait_until

H = "127.0.0.1"


def run(args, timeout=10):
    require_binary(REGISTRYD)
    return subprocess.run([str(REGISTRYD), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args,listing", [
    (["-l"], []), (["-l", "true"], []), (["-l", "1"], []), (["-l", "yes"], []),
    (["-l", "false"], None), (["-l", "no"], None), (["-l", "0"], None), ([], None),
])
def test_listing_switch_takes_the_references_values(args, listing):
    # The reference's -l takes a value (and is on even for `-l false`); here it is optional.
    with Daemon(["-m", "UDP", *args]) as d:
        assert run_client("rpyc5", [["list", "UDP", H, d.port]]) == [listing]
        assert d.stop() == 0


def test_quiet_switch_takes_a_value():
    with Daemon(["-m", "UDP", "-q", "1"]) as d:
        assert run_client("rpyc5", [["register", "UDP", H, d.port, ["Q"], 1]]) == [True]
        assert "DEBUG:" not in d.log()
        assert d.stop() == 0
    with Daemon(["-m", "UDP", "-q", "0"]) as d:
        assert run_client("rpyc5", [["register", "UDP", H, d.port, ["Q"], 1]]) == [True]
        assert wait_until(lambda: "registering 127.0.0.1:1 as Q" in d.log())
        assert d.stop() == 0


def test_help_shows_types_and_choices_and_errors_name_the_switch():
    out = run(["--help"])
    assert out.returncode == 0
    assert "-m,--mode {UDP,TCP,both}" in out.stdout, out.stdout
    assert "--log {auto,stderr,journal}" in out.stdout
    assert "-p,--port INT" in out.stdout
    assert "-l,--listing [BOOL]" in out.stdout
    assert "[default: ]" not in out.stdout
    for args, message in [(["-m"], "--mode: expected one of UDP, TCP, both (try --help)"),
                          (["-p", "x"], "--port: expected a number 0-65535, got 'x'"),
                          (["-l", "maybe"], "-l: expected a boolean (true/false/yes/no/on/off/1/0), got 'maybe'")]:
        err = run(args)
        assert err.returncode == 64
        assert message in err.stderr, err.stderr


def test_both_binds_one_port_and_logs_both_listeners_closing():
    # Not through Daemon, which chooses a port itself: here the kernel chooses (-p 0).
    require_binary(REGISTRYD)
    proc = subprocess.Popen([str(REGISTRYD), "-m", "both", "-p", "0", "--host", "::1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = [proc.stdout.readline() for _ in range(2)]
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=5)
    assert proc.returncode == 0
    udp_port = lines[0].split(":")[-1].strip()
    assert lines[0] == f"DEBUG:REGSRV/UDP/{udp_port}:server started on [::1]:{udp_port}\n", lines
    assert lines[1] == f"DEBUG:REGSRV/TCP/{udp_port}:server started on [::1]:{udp_port}\n", lines
    assert f"DEBUG:REGSRV/UDP/{udp_port}:server closed" in rest, rest
    assert f"DEBUG:REGSRV/TCP/{udp_port}:server closed" in rest, rest


def test_plurals_in_status_and_log():
    with Daemon(["-m", "UDP"]) as d:
        assert run_client("rpyc5", [["register", "UDP", H, d.port, ["ONE"], 1]]) == [True]
        assert "STATUS=1 service, 1 server" in d.notify.wait_for("STATUS=1 ")
        assert run_client("rpyc5", [["unregister", "UDP", H, d.port, 1]]) == [None]
        assert wait_until(lambda: "unregistering 127.0.0.1:1 (1 entry)" in d.log()), d.log()
        assert d.stop() == 0


def test_file_is_a_configuration_key(tmp_path):
    log = tmp_path / "r.log"
    conf = tmp_path / "r.toml"
    conf.write_text(f'file = "{log}"\n')
    assert run(["-c", str(conf), "--check-config"]).returncode == 0
    with Daemon(["-m", "UDP", "-c", str(conf)]) as d:
        assert wait_until(lambda: log.exists() and "server started" in log.read_text())
        assert d.stop() == 0
    conf.write_text(f'file = "{log}"\nlogfile = "{log}"\n')
    out = run(["-c", str(conf), "--check-config"])
    assert out.returncode == 78
    assert ":2: key 'logfile': the same setting as 'file' on line 1; keep one" in out.stderr


def test_reload_logs_what_changed_and_what_needs_a_restart_every_time(tmp_path):
    conf = tmp_path / "r.toml"
    conf.write_text("timeout = 240\n")
    with Daemon(["-m", "UDP", "-c", str(conf)]) as d:
        d.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "reload: configuration unchanged" in d.log()), d.log()
        conf.write_text('timeout = 30\nhost = "127.0.0.1"\nmax-entries = 10\n')
        for n in (1, 2):
            d.proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda: d.log().count("needs a restart to apply") == n), d.log()
        # Turning quiet on is itself logged (at the level in force before the reload).
        conf.write_text('timeout = 30\nhost = "127.0.0.1"\nmax-entries = 10\nquiet = true\n')
        d.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "reload: applied quiet false -> true" in d.log()), d.log()
        log = d.log()
        assert d.stop() == 0
    assert "INFO:REGSRV/UDP/%d:reload: applied timeout 240 -> 30" % d.port in log, log
    assert log.count("reload: needs a restart to apply: host 0.0.0.0 -> 127.0.0.1, max-entries 65536 -> 10") == 3, log
    # The second reload applies nothing new: timeout is already 30.
    assert log.count("reload: applied") == 2, log


# --- -v, --dump-config, --log-level, the default file, file errors, --check-config ------------

def test_version_names_the_build_and_the_loaded_libraries():
    short, long = run(["-v"]), run(["--version"])
    assert short.returncode == long.returncode == 0
    assert short.stdout == long.stdout
    assert re.match(r"rpyc-registryd \S+ \(commit ([0-9a-f]{7,}(-dirty)?|unknown \(built without git\))\)\n",
                    long.stdout), long.stdout
    assert re.search(r"OpenSSL 3\.\d+\.\d+", long.stdout) and re.search(r"libevent 2\.\d+", long.stdout)


def test_dump_config_reads_back_and_leaves_the_file_alias_out(tmp_path):
    conf = tmp_path / "r.toml"
    conf.write_text(f'file = "{tmp_path}/r.log"\ntimeout = 30\n')
    first = run(["-c", str(conf), "-m", "both", "-l", "--dump-config"])
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert 'mode = "both"' in lines and "listing = true" in lines and "timeout = 30" in lines
    assert f'logfile = "{tmp_path}/r.log"' in lines
    assert not any(l.startswith("file =") for l in lines)  # the alias: one key per setting
    dumped = tmp_path / "dumped.toml"
    dumped.write_text(first.stdout)
    again = run(["-c", str(dumped), "--dump-config"])
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout


@pytest.mark.parametrize("args,shown", [([], True), (["--log-level", "info"], False)])
def test_log_level(args, shown):
    with Daemon(["-m", "UDP", *args]) as d:
        assert run_client("rpyc5", [["register", "UDP", H, d.port, ["LV"], 1]]) == [True]
        assert wait_until(lambda: "REGSRV" in d.log() or not shown)
        log = d.log()  # the REGISTER was answered, so its line was written
        assert d.stop() == 0
        assert ("registering 127.0.0.1:1 as LV" in log) == shown, log


def test_reload_applies_the_log_level(tmp_path):
    conf = tmp_path / "r.toml"
    conf.write_text('log-level = "debug"\n')
    with Daemon(["-m", "UDP", "-c", str(conf)]) as d:
        assert run_client("rpyc5", [["register", "UDP", H, d.port, ["BEFORE"], 1]]) == [True]
        assert wait_until(lambda: "as BEFORE" in d.log()), d.log()
        conf.write_text('log-level = "info"\n')
        d.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: 'reload: applied log-level debug -> info' in d.log()), d.log()
        assert run_client("rpyc5", [["register", "UDP", H, d.port, ["AFTER"], 1]]) == [True]
        d.proc.send_signal(signal.SIGHUP)  # a line after the REGISTER's, at info
        assert wait_until(lambda: d.log().count("reload: configuration unchanged") == 1), d.log()
        log = d.log()
        assert d.stop() == 0
    assert "as AFTER" not in log, log


def test_a_reload_logs_every_error_of_the_file_on_one_line(tmp_path):
    conf = tmp_path / "r.toml"
    conf.write_text("timeout = 240\n")
    with Daemon(["-m", "UDP", "-c", str(conf)]) as d:
        conf.write_text("bogus = 1\ntimeout = 0\n")
        d.proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: "keeping the running configuration" in d.log()), d.log()
        line = next(l for l in d.log().splitlines() if "keeping the running configuration" in l)
        assert f"{conf}:1: key 'bogus': unknown key; rpyc-registryd: {conf}:2: key 'timeout'" in line, line
        assert d.stop() == 0


def test_default_file_is_read_and_minus_c_empty_reads_none(tmp_path):
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-m", "true"]).returncode:
        pytest.skip("no mount namespace here")
    m = re.search(r"\[default: (\S+) if it exists", run(["--help"]).stdout)
    assert m, "--help does not name the default configuration file"
    path = m.group(1)
    target = os.path.dirname(path)
    etc = tmp_path / os.path.basename(target)
    etc.mkdir()
    (etc / os.path.basename(path)).write_text("timeout = 33\n")
    mount_at, source = (target, etc) if os.path.isdir(target) else (os.path.dirname(target), tmp_path)

    def private(*args):
        return subprocess.run(["unshare", "-m", "sh", "-c", 'mount --bind "$1" "$2" && shift 2 && exec "$@"',
                               "sh", str(source), mount_at, str(REGISTRYD), *args],
                              capture_output=True, text=True, timeout=10)
    assert "timeout = 33" in private("--dump-config").stdout.splitlines()
    assert "timeout = 240" in private("-c", "", "--dump-config").stdout.splitlines()


def test_file_errors_all_in_file_order_and_a_directory_is_refused(tmp_path):
    conf = tmp_path / "r.toml"
    conf.write_text("mode = tcp\nmax-entries = 0\nmax_entries = 1\n")
    out = run(["-c", str(conf), "--check-config"])
    assert out.returncode == 78
    assert out.stderr.splitlines() == [
        f"rpyc-registryd: {conf}:1:9: Error while parsing boolean: expected 'true', saw 'tc' "
        '(a string must be quoted: mode = "tcp")',
        f"rpyc-registryd: {conf}:2: key 'max-entries': expected a number 1-10000000, got 0",
        f"rpyc-registryd: {conf}:3: key 'max_entries': the same setting as 'max-entries' on line 2; "
        "keep one",
    ], out.stderr
    out = run(["-c", str(tmp_path), "--check-config"])
    assert out.returncode == 78
    assert out.stderr == f"rpyc-registryd: {tmp_path}: is a directory, not a configuration file\n"


def test_check_config_checks_the_log_file(tmp_path):
    out = run(["-c", "", "-f", str(tmp_path / "no" / "r.log"), "--check-config"])
    assert out.returncode == 78
    assert out.stderr == (f"rpyc-registryd: log file {tmp_path}/no/r.log: directory {tmp_path}/no: "
                          "No such file or directory\n")
    out = run(["-c", "", "-f", str(tmp_path), "--check-config"])
    assert out.returncode == 78 and f"log file {tmp_path}: is a directory" in out.stderr
