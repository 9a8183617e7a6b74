"""The vector index: the embedded Milvus Lite server, item collections, the serving alias."""

from components.index.collections import (
    IndexBuildError,
    ProtectedCollectionError,
    alias_target,
    build_item_index,
    collection_row_count,
    point_alias,
    search,
)
from components.index.server import (
    MilvusServerError,
    ensure_server,
    server_status,
    start_server,
    stop_server,
)

__all__ = [
    "IndexBuildError",
    "MilvusServerError",
    "ProtectedCollectionError",
    "alias_target",
    "build_item_index",
    "collection_row_count",
    "ensure_server",
    "point_alias",
    "search",
    "server_status",
    "start_server",
    "stop_server",
]
