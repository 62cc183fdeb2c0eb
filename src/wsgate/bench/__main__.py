"""`python -m wsgate.bench`: the same command as `wsgate bench`."""

from wsgate.bench.command import bench

bench(auto_envvar_prefix="WSGATE_BENCH")
