from tests.faults.fixtures import make_cluster, make_proxy, make_redis

__all__ = ["make_cluster", "make_proxy", "make_redis"]
