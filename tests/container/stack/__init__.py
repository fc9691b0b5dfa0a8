"""The production compose stack, for real: a Docker engine of the test's own, the stand-in
base images (deploy/test-images), the project's image from its Dockerfile, and
docker-compose.yml run with a small override (test certificate, published ports).

Nothing here is mocked: nginx, the web replicas, the worker, Redis and PostgreSQL run in
containers from docker-compose.yml. What the override changes, and why:
- the proxy mounts a self-signed certificate made for the test where nginx.conf expects
  Let's Encrypt's, and publishes on free ports of 127.0.0.1 (HTTP_PORT / HTTPS_PORT);
- `ulimits: nofile` is lowered to this process's hard limit when that is below the
  most the compose file asks for, 131072 (a sandbox may forbid raising it: runc then refuses to
  start the container).
And the env file moves each stack's network to a subnet of its own (free_subnet): CI may run
another engine's stacks on the same host at the same time.

Its modules, each for one part (the tests import from the module that holds a name):
- common: the repository's root, the timings, waiting, free ports, the tools needed;
- network: the subnet each stack's compose network takes (free_subnet);
- engine: the Docker engine of the test's own (Engine);
- compose: the compose project (Stack, Container, new_stack) and its files;
- clients: a browser (Browser) and a WebSocket (Socket) through the stack's proxy, off_loop.
"""
