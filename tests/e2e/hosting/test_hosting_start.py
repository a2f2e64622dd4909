"""Starting rpyc-classicd --service: what cannot be hosted fails at start with exit 78 and the
reason; --check-config imports the service too; [protocol] keys are checked."""

import os
import subprocess

import pytest

from hosting_support import CLASSICD, SERVICES, free_port


def run(args, tmp_path, timeout=30):
    if not CLASSICD.exists():
        pytest.fail(f"daemon binary not found: {CLASSICD}")
    env = dict(os.environ, PYTHONPATH=str(SERVICES))
    return subprocess.run([str(CLASSICD), "--host", "127.0.0.1", "-p", str(free_port()),
                           "--log", "stderr", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path)


@pytest.mark.parametrize("check", [True, False], ids=["check-config", "start"])
@pytest.mark.parametrize("spec,reason", [
    ("no_such_module:Service", "ModuleNotFoundError: No module named 'no_such_module'"),
    ("broken_service:Service", "RuntimeError: broken on purpose"),
    ("calc_service:Missing", "module calc_service has no attribute 'Missing'"),
    ("calc_service:NotAService", "is not an rpyc.Service subclass or instance"),
    ("calc_service:OwnProtocolService", "replaces rpyc's Connection class"),
    ("calc_service", "expected package.module:Name or package.module:factory()"),
])
def test_unhostable_service_exits_78(spec, reason, check, tmp_path):
    p = run(["--service", spec] + (["--check-config"] if check else []), tmp_path)
    assert p.returncode == 78, p.stderr
    assert f"service '{spec}': " in p.stderr
    assert reason in p.stderr


def test_check_config_imports_a_good_service(tmp_path):
    p = run(["--service", "calc_service:CalculatorService", "--check-config"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "configuration OK" in p.stdout


@pytest.mark.parametrize("toml,message", [
    # Line 1 is the service key.
    ("[protocol]\nallow_bogus = true\n", "c.toml:3: key 'protocol.allow_bogus': unknown key"),
    ("[protocol]\nallow_pickle = 'yes'\n",
     "c.toml:3: key 'protocol.allow_pickle': expected a boolean"),
    ("[protocol]\n\nsafe_attrs = [1]\n",
     "c.toml:4: key 'protocol.safe_attrs': expected an array of strings, found an integer in it"),
    ("[protocol]\ninclude_local_traceback = false\n",
     "c.toml:3: key 'protocol.include_local_traceback': false is not supported yet"),
    ("protocol = 1\n", "c.toml:2: key 'protocol': expected a table"),
])
def test_bad_protocol_table_exits_78(toml, message, tmp_path):
    (tmp_path / "c.toml").write_text('service = "calc_service:CalculatorService"\n' + toml)
    p = run(["-c", "c.toml", "--check-config"], tmp_path)
    assert p.returncode == 78, p.stderr
    assert message in p.stderr


def test_bad_protocol_switch_exits_64(tmp_path):
    p = run(["--service", "calc_service:CalculatorService", "--protocol", "allow_pickle=maybe"],
            tmp_path)
    assert p.returncode == 64, p.stderr
    assert "--protocol: key 'protocol.allow_pickle': expected a boolean" in p.stderr


def test_protocol_needs_a_hosted_service(tmp_path):
    (tmp_path / "c.toml").write_text("[protocol]\nallow_pickle = true\n")
    p = run(["-c", "c.toml", "--check-config"], tmp_path)
    assert p.returncode == 78, p.stderr
    assert "c.toml:1: key 'protocol': applies to a hosted service" in p.stderr


def run_plain(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(SERVICES))
    return subprocess.run([str(CLASSICD), *args], env=env, capture_output=True, text=True,
                          timeout=30, cwd=tmp_path)


def test_dump_config_writes_service_and_protocol_and_reads_back(tmp_path):
    (tmp_path / "c.toml").write_text(
        'service = "calc_service:CalculatorService"\n'
        "[protocol]\nallow_public_attrs = true\nexposed_prefix = \"x_\"\nallow_pickle = true\n")
    first = run_plain(["-c", "c.toml", "--protocol", "allow_pickle=no", "--protocol",
                       "safe_attrs=__add__,__len__", "--protocol", "sync_request_timeout=5",
                       "--dump-config"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert 'service = "calc_service:CalculatorService"\n' in first.stdout
    assert first.stdout.endswith(
        "\n[protocol]\nallow_pickle = false\nallow_public_attrs = true\n"
        'exposed_prefix = "x_"\nsafe_attrs = ["__add__", "__len__"]\n'
        "sync_request_timeout = 5.0\n"), first.stdout
    (tmp_path / "dumped.toml").write_text(first.stdout)
    again = run_plain(["-c", "dumped.toml", "--dump-config"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    check = run_plain(["-c", "dumped.toml", "--check-config"], tmp_path)
    assert check.returncode == 0, check.stderr


def test_protocol_errors_come_in_file_order(tmp_path):
    (tmp_path / "c.toml").write_text(
        'service = "calc_service:CalculatorService"\nport = "x"\n'
        "protocol = { allow_bogus = true }\nhost = 1\n")
    p = run_plain(["-c", "c.toml", "--check-config"], tmp_path)
    assert p.returncode == 78, p.stderr
    assert p.stderr.splitlines() == [
        "rpyc-classicd: c.toml:2: key 'port': expected a number 0-65535, found a string",
        "rpyc-classicd: c.toml:3: key 'protocol.allow_bogus': unknown key (rpyc's protocol_config "
        "keys: see rpyc-classicd.toml(5))",
        "rpyc-classicd: c.toml:4: key 'host': expected a string, found an integer",
    ]


@pytest.mark.parametrize("args,message", [
    (["--protocol"], "rpyc-classicd: --protocol: expected KEY=VALUE (try --help)"),
    (["--protocol", "novalue"], "rpyc-classicd: --protocol: expected KEY=VALUE, got 'novalue'"),
    (["--service"], "rpyc-classicd: --service: expected a string (try --help)"),
])
def test_switch_errors_follow_the_operator_conventions(args, message, tmp_path):
    p = run_plain(["-c", "", *args], tmp_path)
    assert p.returncode == 64, p.stderr
    assert p.stderr.strip() == message


def test_help_types_service_and_protocol(tmp_path):
    out = run_plain(["--help"], tmp_path).stdout
    assert "--service TEXT" in out
    assert "--protocol KEY=VALUE" in out
    assert "[default: classic]" in out
