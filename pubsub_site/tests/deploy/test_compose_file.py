"""docker-compose.yml, its development variant (docker-compose.dev.yml) and .env.example:
they resolve with docker-compose, and say what docs/deploy.md promises (one image for web,
worker and migrate, only the proxy published, health checks, named volumes, the
secrets)."""

from __future__ import annotations

import re
from pathlib import Path

from pubsub_site.tests.deploy.files import (
    ENV_EXAMPLE,
    PRODUCTION,
    ROOT,
    command_of,
    compose_config,
    health_disabled,
    health_test,
    published_ports,
    run_compose,
    volume_mounts,
)

LONG_RUNNING = ("proxy", "web", "worker", "redis", "postgres", "seaweedfs")


def test_the_production_file_resolves_with_the_example_environment(production):
    # The `ha` profile's services (a Redis replica, Sentinels: test_redis_ha.py) start only when asked.
    default = {name for name, service in production["services"].items() if "ha" not in service.get("profiles", [])}
    assert default == {"proxy", "web", "worker", "migrate", "redis", "postgres", "seaweedfs"}


def test_it_does_not_need_a_dot_env_file_but_refuses_to_run_without_the_secrets(tmp_path):
    assert compose_config(PRODUCTION)["services"]["web"]["environment"]["DJANGO_ENV"] == "production"
    lines = ENV_EXAMPLE.read_text().splitlines()
    without_secret = tmp_path / "env"
    without_secret.write_text("\n".join(line for line in lines if not line.startswith("SECRET_KEY=")))
    result = run_compose("-f", "docker-compose.yml", "config", env_file=without_secret)
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_web_worker_and_migrate_share_one_image_and_one_environment(production):
    services = production["services"]
    web, worker, migrate = services["web"], services["worker"], services["migrate"]
    assert web["image"] == worker["image"] == migrate["image"]
    assert web["build"] == worker["build"] == migrate["build"]
    assert Path(web["build"]["context"]).resolve() == ROOT
    assert web["environment"] == worker["environment"] == migrate["environment"]
    environment = web["environment"]
    assert environment["DJANGO_ENV"] == "production"
    for name in ("SECRET_KEY", "ALLOWED_HOSTS", "CSRF_TRUSTED_ORIGINS", "DATABASE_URL", "REDIS_URL"):
        assert environment[name], name
    assert environment["DATABASE_URL"].startswith("postgres://pubsub:")
    assert "@postgres:5432/pubsub" in environment["DATABASE_URL"]
    assert environment["REDIS_URL"].startswith("redis://pubsub:")  # the password: test_redis_auth.py
    assert "@redis:6379/" in environment["REDIS_URL"]
    assert "command" not in web  # the image's CMD: uvicorn
    assert command_of(worker) == "python manage.py jobs_worker"
    assert command_of(migrate) == "python manage.py migrate --noinput"


def test_the_database_password_is_the_one_postgresql_is_created_with(production):
    services = production["services"]
    password = services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert f"pubsub:{password}@postgres" in services["web"]["environment"]["DATABASE_URL"]


def test_only_the_proxy_publishes_ports_so_web_and_worker_can_scale(production):
    services = production["services"]
    assert sorted(port.rsplit(":", 1)[1].split("/")[0] for port in published_ports(services["proxy"])) == [
        "443",
        "80",
    ]
    for name in ("web", "worker", "migrate", "redis", "postgres"):
        assert published_ports(services[name]) == [], name
        assert "container_name" not in services[name], name


def test_web_runs_two_replicas_unless_told_otherwise(production, development):
    assert int(production["services"]["web"]["deploy"]["replicas"]) == 2
    assert int(production["services"]["worker"]["deploy"]["replicas"]) == 1
    assert int(development["services"]["web"]["deploy"]["replicas"]) == 1  # it publishes port 8000


def test_web_and_worker_start_after_a_successful_migration(production):
    services = production["services"]
    for name in ("web", "worker"):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    assert services["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"


def test_redis_keeps_an_append_only_file_synced_every_second_on_a_named_volume(production):
    redis = production["services"]["redis"]
    assert redis["image"].startswith("redis:7")
    command = command_of(redis)
    assert "--appendonly yes" in command
    assert "--appendfsync everysec" in command
    assert "--maxmemory-policy noeviction" in command
    assert volume_mounts(redis)["/data"] == "redis-data"
    assert "redis-data" in production["volumes"]


def test_postgresql_keeps_its_data_on_a_named_volume(production):
    postgres = production["services"]["postgres"]
    assert re.fullmatch(r"postgres:1[56](\.\d+)?", postgres["image"])
    assert volume_mounts(postgres)["/var/lib/postgresql/data"] == "postgres-data"
    assert "postgres-data" in production["volumes"]


def test_every_long_running_service_has_a_health_check_and_restarts(production):
    services = production["services"]
    for name in LONG_RUNNING:
        assert health_test(services[name]) and not health_disabled(services[name]), name
        assert services[name]["restart"] == "unless-stopped", name
    assert health_test(services["web"])[1:] == ["python", "deploy/healthcheck.py", "web"]
    assert health_test(services["worker"])[1:] == ["python", "deploy/healthcheck.py", "worker"]
    assert "pg_isready" in health_test(services["postgres"])
    assert "redis-cli ping" in " ".join(health_test(services["redis"]))
    assert health_disabled(services["migrate"])


def test_the_proxy_runs_nginx_with_the_repository_config_and_the_certificates(production):
    proxy = production["services"]["proxy"]
    assert proxy["image"].startswith("nginx:1.")
    mounts = volume_mounts(proxy)
    assert Path(mounts["/etc/nginx/nginx.conf"]).resolve() == ROOT / "deploy" / "nginx.conf"
    assert mounts["/etc/letsencrypt"] == "/etc/letsencrypt"


def test_the_development_variant_mounts_the_source_and_publishes_the_site(development):
    services = development["services"]
    for name in ("web", "worker", "migrate"):
        assert services[name]["environment"]["DJANGO_ENV"] == "development", name
        assert Path(volume_mounts(services[name])["/app"]).resolve() == ROOT, name
        assert services[name]["image"] == services["web"]["image"], name
    assert "runserver 0.0.0.0:8000" in command_of(services["web"])
    assert any(port.startswith("127.0.0.1:8000:8000") for port in published_ports(services["web"]))
    assert any(port.startswith("127.0.0.1:") for port in published_ports(services["postgres"]))
    # nginx needs certificates: in development it runs only on request.
    assert services["proxy"]["profiles"] == ["proxy"]
    assert development["volumes"].keys() >= {"postgres-data", "redis-data"}


def test_the_example_environment_names_every_secret_and_no_real_one():
    values = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    for name in (
        "SECRET_KEY",
        "ALLOWED_HOSTS",
        "CSRF_TRUSTED_ORIGINS",
        "DATABASE_URL",
        "REDIS_URL",
        "POSTGRES_PASSWORD",
    ):
        assert values.get(name), name
    # Too short for production settings (50 characters): a copied placeholder cannot go live.
    assert len(values["SECRET_KEY"]) < 50
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_worker_serves_its_metrics_on_the_network_only(production):
    worker = production["services"]["worker"]
    assert worker["environment"]["METRICS_WORKER_PORT"] == "9100"
    assert [str(port) for port in worker["expose"]] == ["9100"]
    assert published_ports(worker) == []
    assert worker["environment"]["METRICS_TOKEN"] == ""  # none unless the operator sets one
