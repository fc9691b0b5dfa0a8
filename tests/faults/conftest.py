from tests.faults.fixtures import make_cluster, make_proxy, make_redis, make_sentinels

__all__ = ["make_cluster", "make_proxy", "make_redis", "make_sentinels"]
