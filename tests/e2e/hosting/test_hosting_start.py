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


@pytest.mark.parametrize("args,message", [
    (["-m", "forking"], "--service: mode forking does not serve a hosted service yet"),
    (["-m", "threadpool"], "--service: mode threadpool does not serve a hosted service yet"),
    (["--register"], "--register with a hosted service is not supported yet"),
])
def test_not_yet_supported_is_refused(args, message, tmp_path):
    p = run(["--service", "calc_service:CalculatorService", *args], tmp_path)
    assert p.returncode == 64, p.stderr
    assert message in p.stderr
