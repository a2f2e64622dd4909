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


def refused_with_file(toml, check, tmp_path):
    """Starts (or --check-config) with c.toml holding `toml`; asserts exit 78."""
    (tmp_path / "c.toml").write_text(toml)
    p = run(["-c", "c.toml"] + (["--check-config"] if check else []), tmp_path)
    assert p.returncode == 78, p.stderr
    return p


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
    ("[protocol]\ninclude_local_traceback = 'no'\n",
     "c.toml:3: key 'protocol.include_local_traceback': expected a boolean"),
    ("protocol = 1\n", "c.toml:2: key 'protocol': expected a table"),
])
@pytest.mark.parametrize("check", [True, False], ids=["check-config", "start"])
def test_bad_protocol_table_exits_78(toml, message, check, tmp_path):
    p = refused_with_file('service = "calc_service:CalculatorService"\n' + toml, check, tmp_path)
    assert message in p.stderr


@pytest.mark.parametrize("value", ["true", "false"])
def test_exception_keys_take_both_values(value, tmp_path):
    keys = ["include_local_traceback", "include_local_version", "import_custom_exceptions",
            "instantiate_custom_exceptions", "instantiate_oldstyle_exceptions",
            "propagate_SystemExit_locally", "propagate_KeyboardInterrupt_locally"]
    (tmp_path / "c.toml").write_text('service = "calc_service:CalculatorService"\n[protocol]\n' +
                                     "".join(f"{k} = {value}\n" for k in keys))
    p = run(["-c", "c.toml", "--check-config"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "configuration OK" in p.stdout


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


# ---- bad input from a file names FILE:LINE; service-path (issue 13) -----------------------------

def run_bare(args, cwd, env_path=None, timeout=30):
    """rpyc-classicd without the services on PYTHONPATH (service-path must find them)."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if env_path:
        env["PYTHONPATH"] = env_path
    return subprocess.run([str(CLASSICD), "--log", "stderr", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def service_module(directory, name, text):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(text)


SYNTAX_ERROR = "import rpyc\n\nclass Service(rpyc.Service)\n    pass\n"
SMALL_SERVICE = ("import rpyc\n\nclass SmallService(rpyc.Service):\n"
                 "    def exposed_add(self, a, b):\n        return a + b\n"
                 "    def exposed_where(self):\n        return __file__\n")


@pytest.mark.parametrize("check", [True, False], ids=["check-config", "start"])
def test_syntax_error_in_the_service_exits_78_with_the_line(check, tmp_path):
    service_module(tmp_path / "lib", "syntax_error_service", SYNTAX_ERROR)
    p = run(["--service", "syntax_error_service:Service", "--service-path", "lib"]
            + (["--check-config"] if check else []), tmp_path)
    assert p.returncode == 78, p.stderr
    assert "service 'syntax_error_service:Service': importing syntax_error_service failed" \
        in p.stderr
    assert "syntax_error_service.py\", line 3" in p.stderr
    assert "SyntaxError: expected ':'" in p.stderr


@pytest.mark.parametrize("check", [True, False], ids=["check-config", "start"])
@pytest.mark.parametrize("spec,reason", [
    ("no_such_module:Service", "ModuleNotFoundError: No module named 'no_such_module'"),
    ("calc_service:NotAService", "is not an rpyc.Service subclass or instance"),
    ("calc_service:OwnProtocolService", "replaces rpyc's Connection class"),
])
def test_unhostable_service_from_the_file_names_its_line(spec, reason, check, tmp_path):
    p = refused_with_file(f'# a service\n\nservice = "{spec}"\n', check, tmp_path)
    assert f"c.toml:3: key 'service': service '{spec}': " in p.stderr
    assert reason in p.stderr


def test_service_path_is_relative_to_the_file_and_comes_first(tmp_path):
    conf = tmp_path / "etc"
    service_module(conf / "services", "small_service", SMALL_SERVICE)
    # The same module name on PYTHONPATH: service-path comes first.
    service_module(tmp_path / "other", "small_service", "raise RuntimeError('wrong one')\n")
    port = free_port()
    (conf / "small.toml").write_text(
        f'service = "small_service:SmallService"\nservice-path = ["services"]\n'
        f'host = "127.0.0.1"\nport = {port}\n')
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    p = run_bare(["-c", str(conf / "small.toml"), "--check-config"], elsewhere,
                 env_path=str(tmp_path / "other"))
    assert p.returncode == 0, p.stderr
    dumped = run_bare(["-c", str(conf / "small.toml"), "--dump-config"], elsewhere)
    assert f'service-path = ["{conf / "services"}"]\n' in dumped.stdout
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "other"))
    proc = subprocess.Popen([str(CLASSICD), "-c", str(conf / "small.toml"), "--log", "stderr"],
                            env=env, cwd=elsewhere, stderr=subprocess.PIPE, text=True)
    try:
        client = subprocess.run(
            ["/usr/bin/python3", "-c",
             "import sys, time, rpyc\n"
             "for _ in range(100):\n"
             "    try:\n"
             f"        c = rpyc.connect('127.0.0.1', {port}); break\n"
             "    except OSError: time.sleep(0.1)\n"
             "print(c.root.add(1, 2), c.root.where())\n"],
            capture_output=True, text=True, timeout=30)
        assert client.returncode == 0, client.stderr
        assert client.stdout.split() == ["3", str(conf / "services" / "small_service.py")]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    assert "hosting service small_service:SmallService (SMALL)" in err


def test_service_path_switch_is_relative_to_the_working_directory(tmp_path):
    service_module(tmp_path / "lib", "small_service", SMALL_SERVICE)
    p = run_bare(["-c", "", "--service", "small_service:SmallService", "--service-path", "lib",
                  "--check-config"], tmp_path)
    assert p.returncode == 0, p.stderr
    p = run_bare(["-c", "", "--service", "small_service:SmallService", "--check-config"],
                 tmp_path)
    assert p.returncode == 78, p.stderr
    assert "No module named 'small_service'" in p.stderr


@pytest.mark.parametrize("check", [True, False], ids=["check-config", "start"])
@pytest.mark.parametrize("line,reason", [
    ('service-path = ["missing"]', "service-path {dir}/missing: No such file or directory"),
    ('service-path = ["c.toml"]', "service-path {dir}/c.toml: not a directory"),
])
def test_service_path_that_is_no_directory_exits_78(line, reason, check, tmp_path):
    p = refused_with_file(f'service = "calc_service:CalculatorService"\n{line}\n', check,
                          tmp_path)
    assert f"c.toml:2: key 'service-path': {reason.format(dir=tmp_path)}" in p.stderr


@pytest.mark.parametrize("toml,message", [
    ('service-path = ["lib"]\n', "c.toml:1: key 'service-path': applies to a hosted service"),
    ('service = "calc_service:CalculatorService"\nservice-path = "lib"\n',
     "c.toml:2: key 'service-path': expected a list of strings, found a string"),
    ('service = "calc_service:CalculatorService"\nservice-path = [""]\n',
     "c.toml:2: key 'service-path': an empty path"),
])
def test_bad_service_path_key_exits_78(toml, message, tmp_path):
    (tmp_path / "c.toml").write_text(toml)
    p = run(["-c", "c.toml", "--check-config"], tmp_path)
    assert p.returncode == 78, p.stderr
    assert message in p.stderr
