"""What the tests of the deployment files share: docker-compose's resolved configuration and
what to read in it, the Dockerfile's instructions, and deploy/nginx.conf parsed (conftest.py
makes fixtures of the compose files and of nginx.conf).

The tests, one module for each file or concern (test_compose_file.py, test_dockerfile.py,
test_nginx_conf.py, test_healthcheck.py, test_web_server_commands.py), check that the
deployment files parse, say what docs/deploy.md promises, and pass their linters.
Without a Docker engine: docker-compose resolves the compose files (that needs no
engine), hadolint lints the Dockerfile, and the nginx configuration is read with a
small parser. The health-check script that the containers run is exercised for real,
against a local HTTP server and Redis. tests/container/test_stack.py builds the image
and runs the stack in an engine of its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
ENV_EXAMPLE = ROOT / ".env.example"
PRODUCTION = ("docker-compose.yml",)
DEVELOPMENT = ("docker-compose.yml", "docker-compose.dev.yml")


def docker_compose() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is not installed (apt-get install docker-compose); .ci/run installs it.")
    return found


def run_compose(*args: str, env_file: Path = ENV_EXAMPLE) -> subprocess.CompletedProcess:
    """docker-compose with only PATH and HOME from our environment.

    The suite's own DATABASE_URL and REDIS_URL must not leak into the
    interpolation (the shell wins over the env file), and no .env need exist:
    --env-file names the file that fills in the ${...}.
    """
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [docker_compose(), "--env-file", str(env_file), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def compose_config(files: tuple[str, ...], env_file: Path = ENV_EXAMPLE) -> dict:
    """The configuration as docker-compose resolves it: merged, anchors expanded, variables filled in."""
    file_args = [arg for name in files for arg in ("-f", name)]
    version = run_compose("version", "--short").stdout.strip()
    if version.startswith("1."):
        result = run_compose(*file_args, "config", env_file=env_file)
        assert result.returncode == 0, result.stderr
        return yaml_to_dict(result.stdout)
    result = run_compose(*file_args, "config", "--format", "json", env_file=env_file)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def yaml_to_dict(text: str) -> dict:
    """Parse YAML with the interpreter docker-compose 1.x runs on, which always has PyYAML."""
    script = Path(docker_compose()).resolve()
    shebang = script.read_bytes().split(b"\n", 1)[0].decode()
    assert shebang.startswith("#!") and "python" in shebang, f"unexpected docker-compose launcher: {shebang}"
    interpreter = shebang[2:].split()
    result = subprocess.run(
        [*interpreter, "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def health_test(service: dict) -> list[str]:
    return service.get("healthcheck", {}).get("test", [])


def health_disabled(service: dict) -> bool:
    check = service.get("healthcheck", {})
    return bool(check.get("disable")) or check.get("test") == ["NONE"]


def command_of(service: dict) -> str:
    command = service.get("command", [])
    return command if isinstance(command, str) else " ".join(command)


def published_ports(service: dict) -> list[str]:
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.append(f"{port.get('host_ip', '')}:{port.get('published', '')}:{port['target']}")
        else:
            ports.append(str(port))
    return ports


def volume_mounts(service: dict) -> dict[str, str]:
    """target -> source for each volume of the service."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = str(volume["source"])
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def nginx_tokens(text: str) -> list[str]:
    tokens = []
    for match in re.finditer(r"#[^\n]*|\"(?:[^\"\\]|\\.)*\"|'[^']*'|[{};]|[^\s{};\"'#]+", text):
        token = match.group()
        if not token.startswith("#"):
            tokens.append(token)
    return tokens


def nginx_parse(tokens: list[str]) -> list[tuple[str, list[str], list]]:
    """Nested (directive, arguments, children) like nginx reads its files; raises on bad structure."""
    stack: list[list] = [[]]
    words: list[str] = []
    for token in tokens:
        if token == ";":
            assert words, "an empty statement"
            stack[-1].append((words[0], words[1:], []))
            words = []
        elif token == "{":
            assert words, "a block without a directive"
            block = (words[0], words[1:], [])
            stack[-1].append(block)
            stack.append(block[2])
            words = []
        elif token == "}":
            assert not words, f"missing ';' after {words}"
            assert len(stack) > 1, "an unbalanced '}'"
            stack.pop()
        else:
            words.append(token)
    assert not words, f"missing ';' after {words}"
    assert len(stack) == 1, "an unclosed block"
    return stack[0]


def find(directives: list, name: str, *arguments: str) -> list[tuple[str, list[str], list]]:
    return [d for d in directives if d[0] == name and tuple(d[1][: len(arguments)]) == arguments]
