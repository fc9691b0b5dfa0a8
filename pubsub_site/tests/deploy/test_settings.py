"""Production settings refuse to start without what they need, and pass check --deploy."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
GOOD_KEY = "k" * 20 + "9x!q2m#v7w@k4e8r1t5y0u3i6o-p_a&s*d(f)g=h+j"


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DJANGO_ENV", "DEBUG", "ALLOWED_HOSTS"}}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        "DJANGO_ENV": "production",
        "SECRET_KEY": GOOD_KEY,
        "ALLOWED_HOSTS": "chat.example.com",
        "DATABASE_URL": os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/pubsub"),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9"),
    }
    env.update(overrides)
    return env


def test_production_refuses_to_start_without_a_secret_key():
    env = production_env()
    del env["SECRET_KEY"]
    result = run_manage("check", **env)
    assert result.returncode != 0
    assert "The environment variable SECRET_KEY is required." in result.stderr


def test_production_refuses_a_short_secret_key():
    result = run_manage("check", **production_env(SECRET_KEY="short"))
    assert result.returncode != 0
    assert "SECRET_KEY must be at least 50 characters" in result.stderr


def test_a_bad_boolean_is_refused_loudly():
    result = run_manage("check", DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG='maybe' is not a boolean" in result.stderr


def test_a_count_that_must_be_positive_is_refused_at_zero_and_a_cap_below_zero():
    for name in ("WS_MAX_SUBSCRIPTIONS", "WS_DB_CONNECTIONS", "PINS_MAX_PER_ROOM"):
        result = run_manage("check", **{name: "0"})
        assert result.returncode != 0
        assert f"{name}=0: at least 1." in result.stderr
    result = run_manage("check", WS_MAX_SOCKETS_PER_USER="-1")
    assert result.returncode != 0
    assert "WS_MAX_SOCKETS_PER_USER=-1 must be 0 or more." in result.stderr


def test_check_is_clean_in_development():
    result = run_manage("check")
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_is_clean_in_production():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", **production_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_without_email_host_warns_that_nothing_is_sent():
    result = run_manage("check", **production_env())
    assert result.returncode == 0, result.stderr
    assert "EMAIL_HOST is not set: e-mails (the digests of missed mentions) are written to the log" in result.stderr


def test_production_with_email_host_sends_by_smtp_with_links_to_its_first_host():
    code = (
        "from django.conf import settings as s; "
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, s.SITE_URL, s.DEFAULT_FROM_EMAIL)"
    )
    result = run_manage("shell", "-c", code, **production_env(EMAIL_HOST="smtp.example.com"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == [
        "django.core.mail.backends.smtp.EmailBackend",
        "smtp.example.com",
        "587",
        "True",
        "https://chat.example.com",
        "pubsub",
        "<noreply@chat.example.com>",
    ]
    assert "EMAIL_HOST is not set" not in result.stderr


def test_a_bad_site_url_is_refused_loudly():
    result = run_manage("check", SITE_URL="chat.example.com")
    assert result.returncode != 0
    assert "SITE_URL='chat.example.com' is not an address" in result.stderr


def test_production_refuses_to_turn_debug_on():
    result = run_manage("check", **production_env(DEBUG="1"))
    assert result.returncode != 0
    assert "DEBUG cannot be on with DJANGO_ENV=production" in result.stderr


def test_production_refuses_the_development_secret_key():
    from pubsub_site.settings import DEVELOPMENT_SECRET_KEY

    result = run_manage("check", **production_env(SECRET_KEY=DEVELOPMENT_SECRET_KEY))
    assert result.returncode != 0
    assert "SECRET_KEY is the development key" in result.stderr


def test_load_demo_refuses_to_run_in_production():
    """It would create a superuser `admin` with the password the README prints."""
    env = production_env()
    result = run_manage("load_demo", **env)
    assert result.returncode != 0
    assert "load_demo refuses to run with DJANGO_ENV=production" in result.stderr
    assert "Traceback" not in result.stderr
