"""Item-embedding collections in Milvus, and the serving alias that picks one.

Blue/green by alias: every model version gets a NEW collection (built, flushed, indexed,
loaded and row-count verified); only then is the serving alias moved to it, atomically.
The previous collection is kept for rollback, so nothing here ever drops a collection
that an alias points to.

All functions take the Milvus ``uri`` (not a client object), so any pipeline task can
call them alone after a retry.
"""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from tqdm.auto import tqdm

from components.config import IndexConfig

log = logging.getLogger(__name__)

ID_FIELD = "item_id"
VECTOR_FIELD = "embedding"
SEARCH_BATCH_SIZE = 256  # queries per search request
MAX_TOPK = 16384  # Milvus's limit on topk per search
INSERT_BATCH_ROWS = 4096  # rows per insert request (each well under gRPC's message limit)


class IndexBuildError(RuntimeError):
    """A collection could not be built or verified."""


class ProtectedCollectionError(RuntimeError):
    """Refused to drop a collection that is serving, aliased or protected."""


@contextmanager
def milvus_client(uri: str, timeout: float = 60.0) -> Iterator[Any]:
    """A MilvusClient for ``uri``, closed afterwards (``$LREM_MILVUS_TOKEN``: credentials of a secured Milvus).

    The client gets its own gRPC channel (``dedicated``): pymilvus otherwise shares one channel
    per URI across the process, and a shared channel left idle (e.g. while an ``airflow dags
    test`` subprocess runs) can be closed by the server with "too many pings"; recovering it in
    place then fails. Connecting is retried a few times for the same reason.
    """
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            client = MilvusClient(uri=uri, timeout=timeout, token=os.environ.get("LREM_MILVUS_TOKEN", ""),
                                  dedicated=True)
            break
        except MilvusException as exc:
            if attempt == attempts:
                raise
            log.warning("connecting to Milvus at %s failed (attempt %d of %d): %s", uri, attempt, attempts, exc)
            time.sleep(attempt)
    try:
        yield client
    finally:
        try:
            client.close()
        except Exception:
            pass


# ----------------------------------------------------------------------- index params
def _nlist(n_rows: int) -> int:
    # The usual rule of thumb (about 4 x sqrt(n) clusters), kept within Milvus's bounds.
    return int(min(65536, max(1, round(4 * math.sqrt(max(n_rows, 1))))))


def index_build_params(index_type: str, n_rows: int, dim: int) -> dict[str, Any]:
    """Build parameters for ``index_type`` suited to a collection of ``n_rows`` x ``dim``."""
    kind = index_type.upper()
    if kind == "HNSW":
        return {"M": 16, "efConstruction": 200}
    if kind in ("IVF_FLAT", "IVF_SQ8"):
        return {"nlist": _nlist(n_rows)}
    if kind == "IVF_PQ":
        # m must divide dim; aim for about 4 dimensions per sub-quantizer
        m = max(d for d in range(1, dim + 1) if dim % d == 0 and d <= max(1, dim // 4))
        return {"nlist": _nlist(n_rows), "m": m, "nbits": 8}
    if kind == "SCANN":
        return {"nlist": _nlist(n_rows), "with_raw_data": True}
    return {}  # FLAT, AUTOINDEX, DISKANN, BRUTE_FORCE: no build parameters needed


def index_search_params(index_type: str, build_params: dict[str, Any], limit: int) -> dict[str, Any]:
    """Search-time parameters giving high recall for a top-``limit`` search."""
    kind = index_type.upper()
    if kind.startswith("HNSW"):
        # ef >= topk; 2 x topk: at top 100 ef 100 found 0.986 of FLAT's top 100, ef 200 0.9987 at
        # 10k items; at 100k even ef 400 found 0.895 (bench/bench_million_items.py; docs/scaling.md)
        return {"ef": min(max(2 * limit, 128), 32768)}  # 32768: the largest ef Milvus takes
    if kind.startswith("IVF") or kind == "SCANN":
        nlist = int(build_params.get("nlist", 128))
        # recall@100 >= 0.99 of FLAT at every size measured with one setting (bench/bench_million_items.py,
        # docs/scaling.md): nprobe 64 found 0.9954 at 10k items (400 lists; 32: 0.960), 0.9979 at 100k
        # (1265 lists) and 0.9997 at 1M (4000 lists; 32: 0.9951). Probing more lists bought no recall
        # that matters and, at 1M on Milvus Lite, no measurable latency either way.
        params: dict[str, Any] = {"nprobe": min(nlist, 64)}
        if kind == "SCANN":
            params["reorder_k"] = max(limit, 100)
        return params
    if kind == "DISKANN":
        return {"search_list": max(limit, 100)}
    return {}


# ----------------------------------------------------------------------------- aliases
def _all_aliases(client: Any) -> list[str]:
    return list(client.list_aliases().get("aliases", []))


def _alias_target(client: Any, alias: str) -> str | None:
    # list first: describe_alias on a missing alias logs a scary RPC traceback
    if alias not in _all_aliases(client):
        return None
    return client.describe_alias(alias)["collection_name"]


def alias_target(uri: str, alias: str) -> str | None:
    """The collection ``alias`` points to, or None when the alias does not exist."""
    with milvus_client(uri) as client:
        return _alias_target(client, alias)


def _is_collection(client: Any, name: str) -> bool:
    # has_collection is also true for an alias name; a real collection is in the list
    return name in client.list_collections()


def point_alias(uri: str, alias: str, collection: str) -> dict[str, Any]:
    """Create ``alias`` -> ``collection``, or move it there atomically if it exists.

    The collection must exist and be loaded (it is loaded if it is not). Verified with
    ``describe_alias`` afterwards. Returns {alias, collection, previous} where previous
    is the collection the alias pointed to before (None if new): keep it for rollback.
    """
    from pymilvus import MilvusException

    with milvus_client(uri) as client:
        if not _is_collection(client, collection):
            raise ValueError(f"cannot point alias {alias!r} at {collection!r}: no such collection")
        if _is_collection(client, alias):
            raise ValueError(f"{alias!r} is a collection name, so it cannot be used as an alias")
        if _load_state(client, collection) != "Loaded":
            client.load_collection(collection)
        previous = _alias_target(client, alias)
        if previous is None:
            try:
                client.create_alias(collection, alias)
            except MilvusException:
                # another task created it in between: moving it is what we want anyway
                if _alias_target(client, alias) is None:
                    raise
                client.alter_alias(collection, alias)
        elif previous != collection:
            client.alter_alias(collection, alias)  # one atomic switch for every reader
        now = client.describe_alias(alias)["collection_name"]
        if now != collection:
            raise RuntimeError(f"alias {alias!r} points to {now!r} after moving it to {collection!r}")
    log.info("alias %s -> %s (was %s)", alias, collection, previous)
    return {"alias": alias, "collection": collection, "previous": previous}


# -------------------------------------------------------------------------- collections
def _load_state(client: Any, collection: str) -> str:
    state = client.get_load_state(collection).get("state")
    return getattr(state, "name", str(state))


def ensure_loaded(client: Any, collection_or_alias: str) -> None:
    """Load a collection that is not in memory: a restarted Milvus (Lite) server keeps the data but
    releases every collection, and a search on a released one fails."""
    target = collection_or_alias
    if target not in client.list_collections():
        try:
            target = client.describe_alias(target)["collection_name"]
        except Exception:  # neither a collection nor an alias: let the search report it
            return
    if _load_state(client, target) != "Loaded":
        log.info("loading released collection %s", target)
        client.load_collection(target)


def collection_row_count(uri: str, collection: str) -> int:
    """Rows in a collection (or the collection behind an alias) as of its last flush; 0 if missing."""
    with milvus_client(uri) as client:
        if not _is_collection(client, collection) and collection not in _all_aliases(client):
            return 0
        return int(client.get_collection_stats(collection)["row_count"])


def _guard_drop(client: Any, collection: str, cfg: IndexConfig, protected: set[str]) -> None:
    if collection in protected:
        raise ProtectedCollectionError(f"refusing to drop {collection!r}: it is in the protected set")
    serving = _alias_target(client, cfg.serving_alias)
    if serving == collection:
        raise ProtectedCollectionError(
            f"refusing to drop {collection!r}: the serving alias {cfg.serving_alias!r} points to it; "
            "build into a new collection and move the alias instead"
        )
    pointing = client.list_aliases(collection).get("aliases", [])
    if pointing:
        raise ProtectedCollectionError(
            f"refusing to drop {collection!r}: aliases {sorted(pointing)} point to it"
        )


def _as_matrix(vectors: Any, n: int, where: str) -> np.ndarray:
    if hasattr(vectors, "detach"):  # a torch tensor
        vectors = vectors.detach().float().cpu().numpy()
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[0] != n:
        raise IndexBuildError(f"{where}: embed_fn returned shape {matrix.shape}, expected ({n}, dim)")
    if not np.isfinite(matrix).all():
        raise IndexBuildError(f"{where}: embed_fn returned NaN or infinite values")
    return matrix


def _create_collection(client: Any, collection: str, dim: int, id_max_length: int) -> None:
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                        description="LREM item embeddings")
    schema.add_field(ID_FIELD, DataType.VARCHAR, is_primary=True, max_length=id_max_length)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
    # No index yet: bulk insert first, then one index build over all rows.
    client.create_collection(collection, schema=schema, consistency_level="Strong")


def _build_index(client: Any, collection: str, cfg: IndexConfig, n_rows: int, dim: int) -> dict[str, Any]:
    index_params = client.prepare_index_params()
    params = index_build_params(cfg.index_type, n_rows, dim)
    index_params.add_index(field_name=VECTOR_FIELD, index_name=VECTOR_FIELD, index_type=cfg.index_type.upper(),
                           metric_type=cfg.metric_type.upper(), params=params)
    try:
        client.create_index(collection, index_params)
    except Exception as exc:
        raise IndexBuildError(
            f"could not build a {cfg.index_type} index on {collection!r} ({exc}); Milvus Lite builds "
            "FLAT, HNSW, IVF_FLAT and AUTOINDEX"
        ) from exc
    described = client.describe_index(collection, VECTOR_FIELD) or {}
    built = str(described.get("index_type", "")).upper()
    if built != cfg.index_type.upper():
        # Milvus Lite accepts some index types without building them
        log.warning("asked for a %s index on %s, Milvus reports %r", cfg.index_type, collection, described)
    return params


def build_item_index(
    uri: str,
    collection: str,
    item_ids: Sequence[str],
    titles: Sequence[str],
    embed_fn: Callable[[list[str]], np.ndarray],
    cfg: IndexConfig,
    protected: set[str] = frozenset(),
) -> dict[str, Any]:
    """Embed ``titles`` and build a new, loaded, verified collection ``collection``.

    ``embed_fn`` maps a list of titles to a (len, dim) float array; it is called in
    batches of ``cfg.batch_size``. An existing collection of that name (a retried task)
    is dropped and rebuilt, unless the serving alias or any other alias points to it
    or it is in ``protected``: then :class:`ProtectedCollectionError` is raised.

    Returns {collection, rows, dim, index_type, metric_type, index_params, seconds}.
    """
    titles = list(titles)
    if len(item_ids) != len(titles):
        raise ValueError(f"{len(item_ids)} item ids but {len(titles)} titles")
    batch_size = max(1, int(cfg.batch_size))

    def batches() -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, len(titles), batch_size):
            chunk = titles[start:start + batch_size]
            yield start, _as_matrix(embed_fn(chunk), len(chunk), f"batch at {start}")

    return insert_item_vectors(uri, collection, item_ids, batches(), cfg, protected)


def insert_item_vectors(
    uri: str,
    collection: str,
    item_ids: Sequence[str],
    batches: Iterable[tuple[int, np.ndarray]],
    cfg: IndexConfig,
    protected: set[str] = frozenset(),
    probes: int = 0,
) -> dict[str, Any]:
    """Build a new, loaded, verified collection from precomputed vectors.

    ``batches`` yields ``(start, matrix)``: rows ``start .. start + len(matrix)`` of ``item_ids``,
    in order (the embeddings of a sharded encoding, read back shard by shard). The collection is
    dropped and rebuilt if it exists, under the same guard as :func:`build_item_index`. Verified
    before anyone can point at it: the row count, the load state and, with ``probes`` > 0, a probe
    search: that many stored items, spread over the collection, must each find themselves in their
    own top 10 (:class:`IndexBuildError` otherwise).
    """
    started = time.monotonic()
    item_ids = [str(i) for i in item_ids]
    if not item_ids:
        raise ValueError("no items to index")
    if len(set(item_ids)) != len(item_ids):
        # Milvus upserts on a repeated primary key, so the row count would silently shrink
        seen: set[str] = set()
        dupes = sorted({i for i in item_ids if i in seen or seen.add(i)})
        raise ValueError(f"duplicate item ids: {dupes[:10]}{' ...' if len(dupes) > 10 else ''}")
    if collection == cfg.serving_alias:
        raise ValueError(f"{collection!r} is the serving alias name; collections need their own name")
    id_max_length = min(65535, max(64, max(len(i.encode("utf-8")) for i in item_ids)))
    probe_rows = sorted({round(k * (len(item_ids) - 1) / max(1, probes - 1)) for k in range(probes)}) if probes else []
    probe_vectors: dict[int, np.ndarray] = {}

    with milvus_client(uri) as client:
        if collection in _all_aliases(client):
            raise ValueError(f"{collection!r} is an alias; collections need their own name")
        if _is_collection(client, collection):
            _guard_drop(client, collection, cfg, set(protected))
            log.info("collection %s exists (a retried build?): dropping it and rebuilding", collection)
            client.drop_collection(collection)

        dim: int | None = None
        inserted = 0
        expected_start = 0
        with tqdm(total=len(item_ids), desc=f"inserting {collection}", unit="item") as bar:
            for start, vectors in batches:
                if start != expected_start:
                    raise IndexBuildError(f"vectors for rows from {start} arrived, expected rows from {expected_start}")
                ids = item_ids[start:start + len(vectors)]
                vectors = _as_matrix(vectors, len(ids), f"batch at {start}")
                if dim is None:
                    dim = int(vectors.shape[1])
                    _create_collection(client, collection, dim, id_max_length)
                elif vectors.shape[1] != dim:
                    raise IndexBuildError(f"batch at {start}: dim {vectors.shape[1]}, first batch had {dim}")
                for row in probe_rows:
                    if start <= row < start + len(ids):
                        probe_vectors[row] = vectors[row - start]
                # insert in requests of at most INSERT_BATCH_ROWS rows (gRPC message size)
                for at in range(0, len(ids), INSERT_BATCH_ROWS):
                    rows = [{ID_FIELD: i, VECTOR_FIELD: v}
                            for i, v in zip(ids[at:at + INSERT_BATCH_ROWS], vectors[at:at + INSERT_BATCH_ROWS].tolist())]
                    inserted += int(client.insert(collection, rows)["insert_count"])
                bar.update(len(ids))
                expected_start = start + len(ids)
        if dim is None:
            raise IndexBuildError(f"no vectors arrived for {collection!r}")
        if expected_start != len(item_ids):
            raise IndexBuildError(f"vectors for {expected_start} rows arrived, expected {len(item_ids)}")
        client.flush(collection)
        params = _build_index(client, collection, cfg, len(item_ids), dim)
        client.load_collection(collection)

        rows = int(client.get_collection_stats(collection)["row_count"])
        if rows != len(item_ids) or inserted != len(item_ids):
            raise IndexBuildError(
                f"collection {collection!r} holds {rows} rows ({inserted} inserted), expected {len(item_ids)}"
            )
        state = _load_state(client, collection)
        if state != "Loaded":
            raise IndexBuildError(f"collection {collection!r} is {state} after load_collection")
        if probe_vectors:
            _probe_search(client, collection, cfg, params, {item_ids[r]: v for r, v in probe_vectors.items()})

    seconds = round(time.monotonic() - started, 3)
    log.info("built %s: %d rows, dim %d, %s/%s in %.1fs", collection, rows, dim, cfg.index_type,
             cfg.metric_type, seconds)
    return {
        "collection": collection,
        "rows": rows,
        "dim": dim,
        "index_type": cfg.index_type.upper(),
        "metric_type": cfg.metric_type.upper(),
        "index_params": params,
        "probes": len(probe_vectors),
        "seconds": seconds,
    }


def _probe_search(client: Any, collection: str, cfg: IndexConfig, build_params: dict[str, Any],
                  probes: dict[str, np.ndarray], k: int = 10) -> None:
    """Each probe item, searched by its own stored vector, must be among its top ``k`` hits."""
    ids = list(probes)
    result = client.search(collection, data=[probes[i].tolist() for i in ids], limit=k, anns_field=VECTOR_FIELD,
                           search_params={"metric_type": cfg.metric_type.upper(),
                                          "params": index_search_params(cfg.index_type, build_params, k)},
                           output_fields=[ID_FIELD])
    missed = [i for i, hits in zip(ids, result) if i not in {str(hit.id) for hit in hits}]
    if missed:
        raise IndexBuildError(f"probe search on {collection!r}: {len(missed)} of {len(ids)} items are not in their "
                              f"own top {k}: {missed[:5]}")


def search(
    uri: str,
    collection_or_alias: str,
    query_embeddings: np.ndarray,
    limit: int,
    batch_size: int = SEARCH_BATCH_SIZE,
) -> list[list[str]]:
    """Top-``limit`` item ids for each query embedding, best first, in query order."""
    if len(query_embeddings) == 0:
        return []
    queries = _as_matrix(query_embeddings, len(query_embeddings), "query embeddings")
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    limit = min(int(limit), MAX_TOPK)
    out: list[list[str]] = []
    with milvus_client(uri) as client:
        ensure_loaded(client, collection_or_alias)
        described = client.describe_index(collection_or_alias, VECTOR_FIELD) or {}
        index_type = str(described.get("index_type", "FLAT"))
        build_params = {k: v for k, v in described.items() if k in ("nlist", "M", "efConstruction")}
        search_params: dict[str, Any] = {"params": index_search_params(index_type, build_params, limit)}
        if described.get("metric_type"):
            search_params["metric_type"] = described["metric_type"]
        for start in range(0, len(queries), max(1, batch_size)):
            chunk = queries[start:start + batch_size]
            result = client.search(
                collection_or_alias,
                data=chunk.tolist(),
                limit=limit,
                anns_field=VECTOR_FIELD,
                search_params=search_params,
                output_fields=[ID_FIELD],
            )
            out.extend([str(hit.id) for hit in hits] for hits in result)
    return out
