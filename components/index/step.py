"""Step `build_index`: embed the whole catalog into a new Milvus collection for this version.

The encoding is split into ``index.shards`` parts (contiguous runs of whole encoding batches, in
catalog order). Each shard is one call of :func:`run_encode_shard`, which writes its embeddings
to the run's scratch (``<run dir>/index_shards/<collection>/``): ``shard-IIIII-of-NNNNN.npy``
(float32 vectors), ``.ids.npy`` (item ids) and, last, the ``.json`` manifest (checksums, row
range and the fingerprint of what was encoded), each written to a temporary name and renamed, so
a shard is either complete or absent. The Airflow DAG runs the shards as mapped tasks, in
parallel; ``lrem pipeline`` and ``lrem step build_index --shard I`` run them in this process.

:func:`run` (the step itself) then reads every shard back, checks each against its manifest and
fails naming the shards that are missing or do not match, inserts the vectors into a new
collection, builds the index and verifies the row count and a probe search, before the model
version is tagged with the collection (nothing points at it before that: the serving alias moves
only at ``promote``). A retried shard whose files are complete and match is reused as it is.
Once the collection is verified and tagged, the shard files are deleted (:func:`discard_shards`);
a build that fails keeps them, so its retry inserts them again without encoding anything.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import mlflow
import numpy as np

from components import tracking
from components.artifacts import DataSnapshot, ItemIndex, RegisteredModel
from components.config import PipelineConfig
from components.data.io import load_world
from components.paths import run_dir
from components.registry import models
from components.serving import COLLECTION_TAG, collection_name, collection_of

log = logging.getLogger(__name__)

PROBES = 8  # items searched by their own vector after the build


class MissingShardError(RuntimeError):
    """The final task found shards missing or not matching their manifest."""


# ------------------------------------------------------------------------------ shard plan
def shard_bounds(n_items: int, num_shards: int, batch_size: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, end)`` of each shard: contiguous, in order, whole encoding batches.

    Cutting on batch boundaries makes every shard encode exactly the batches that one process
    encoding the whole catalog would, so the sharded embeddings equal the unsharded ones. Shards
    past the number of batches are empty.
    """
    if num_shards < 1:
        raise ValueError(f"index.shards must be >= 1, got {num_shards}")
    batch_size = max(1, int(batch_size))
    n_batches = -(-n_items // batch_size)
    per, extra = divmod(n_batches, num_shards)
    bounds, batch = [], 0
    for shard in range(num_shards):
        take = per + (1 if shard < extra else 0)
        start, batch = batch, batch + take
        bounds.append((min(start * batch_size, n_items), min(batch * batch_size, n_items)))
    return bounds


def shard_name(shard: int, num_shards: int) -> str:
    return f"shard-{shard:05d}-of-{num_shards:05d}"


def shard_root(run_key: str, collection: str) -> Path:
    path = run_dir(run_key) / "index_shards" / collection
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def shard_fingerprint(model_uri: str, ids: list[str], titles: list[str], start: int, batch_size: int) -> str:
    """What a shard's vectors depend on: the model, its rows (ids and titles) and the batching."""
    h = hashlib.sha256(f"{model_uri}\n{start}\n{batch_size}\n".encode())
    for item_id, title in zip(ids, titles):
        h.update(f"{item_id}\t{title}\n".encode())
    return h.hexdigest()


def _atomic_save(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_shard(root: Path, shard: int, num_shards: int, fingerprint: str | None = None
               ) -> tuple[dict[str, Any], np.ndarray, np.ndarray] | None:
    """A complete shard (manifest, vectors, ids) whose files match its manifest (and ``fingerprint``
    when given), or None when it is absent, incomplete, corrupt or stale."""
    name = shard_name(shard, num_shards)
    manifest_path = root / f"{name}.json"
    if not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        vec_path, ids_path = root / f"{name}.npy", root / f"{name}.ids.npy"
        if fingerprint is not None and manifest.get("fingerprint") != fingerprint:
            return None
        if _sha256_file(vec_path) != manifest["sha256"] or _sha256_file(ids_path) != manifest["ids_sha256"]:
            return None
        vectors = np.load(vec_path, allow_pickle=False)
        ids = np.load(ids_path, allow_pickle=False)
    except (OSError, ValueError, KeyError) as exc:
        log.warning("shard %s unreadable (%s)", name, exc)
        return None
    if vectors.shape[0] != manifest["rows"] or ids.shape[0] != manifest["rows"]:
        return None
    return manifest, vectors, ids


def encode_shard(root: Path, shard: int, num_shards: int, item_ids: list[str], titles: list[str],
                 embed_fn, model_uri: str, batch_size: int) -> dict[str, Any]:
    """Encode shard ``shard`` of the catalog into ``root`` (or reuse it when its files are complete
    and match); returns its manifest plus ``reused`` and ``seconds``."""
    started = time.monotonic()
    start, end = shard_bounds(len(item_ids), num_shards, batch_size)[shard]
    ids, part = [str(i) for i in item_ids[start:end]], list(titles[start:end])
    fingerprint = shard_fingerprint(model_uri, ids, part, start, batch_size)
    name = shard_name(shard, num_shards)
    found = read_shard(root, shard, num_shards, fingerprint)
    if found is not None:
        log.info("%s: complete and matching, reused (%d rows)", name, found[0]["rows"])
        return {**found[0], "reused": True, "seconds": round(time.monotonic() - started, 3)}
    (root / f"{name}.json").unlink(missing_ok=True)  # a stale manifest must not vouch for new files
    chunks = [np.asarray(embed_fn(part[at:at + batch_size]), dtype=np.float32)
              for at in range(0, len(part), max(1, batch_size))]
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    if vectors.shape[0] != len(ids):
        raise RuntimeError(f"{name}: encoder returned {vectors.shape[0]} vectors for {len(ids)} items")
    _atomic_save(root / f"{name}.npy", lambda f: np.save(f, vectors, allow_pickle=False))
    _atomic_save(root / f"{name}.ids.npy", lambda f: np.save(f, np.asarray(ids, dtype=str), allow_pickle=False))
    manifest = {"shard": shard, "num_shards": num_shards, "start": start, "end": end, "rows": len(ids),
                "dim": int(vectors.shape[1]) if len(ids) else 0, "model_uri": model_uri, "fingerprint": fingerprint,
                "sha256": _sha256_file(root / f"{name}.npy"), "ids_sha256": _sha256_file(root / f"{name}.ids.npy")}
    _atomic_save(root / f"{name}.json", lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    seconds = round(time.monotonic() - started, 3)
    log.info("%s: encoded rows %d..%d in %.1fs", name, start, end, seconds)
    return {**manifest, "reused": False, "seconds": seconds}


def gather_shards(root: Path, num_shards: int, item_ids: list[str], model_uri: str
                  ) -> Iterator[tuple[int, np.ndarray]]:
    """An iterator of every shard's ``(start, vectors)`` in order, after checking ALL of them (now,
    before anything is inserted or dropped): raises
    :class:`MissingShardError` naming each shard that is missing, incomplete or not this model's,
    or whose ids are not the catalog's rows."""
    problems, found = [], []
    for shard in range(num_shards):
        name = shard_name(shard, num_shards)
        got = read_shard(root, shard, num_shards)
        if got is None:
            problems.append(f"{name} (missing or incomplete)")
            continue
        manifest = got[0]
        start, end = manifest["start"], manifest["end"]
        if manifest.get("model_uri") != model_uri:
            problems.append(f"{name} (encoded by {manifest.get('model_uri')}, not {model_uri})")
        elif [str(i) for i in got[2].tolist()] != [str(i) for i in item_ids[start:end]]:
            problems.append(f"{name} (its ids are not catalog rows {start}..{end})")
        else:
            found.append(manifest)
    if problems:
        raise MissingShardError(f"{len(problems)} of {num_shards} index shards unusable in {root}: "
                                f"{', '.join(problems)}; rerun those shard tasks (by hand: lrem step build_index --shard I)")
    expected = 0
    for manifest in found:
        if manifest["start"] != expected:
            raise MissingShardError(f"shard {manifest['shard']} starts at row {manifest['start']}, expected {expected}")
        expected = manifest["end"]
    if expected != len(item_ids):
        raise MissingShardError(f"the shards cover {expected} rows, the catalog has {len(item_ids)}")

    def vectors() -> Iterator[tuple[int, np.ndarray]]:
        for manifest in found:
            if manifest["rows"]:
                got = read_shard(root, manifest["shard"], num_shards)
                if got is None:  # changed on disk since the check
                    raise MissingShardError(f"{shard_name(manifest['shard'], num_shards)} changed while inserting")
                yield manifest["start"], got[1]

    return vectors()


def discard_shards(root: Path) -> int:
    """Delete a built collection's shard files (``root``) and the run's ``index_shards`` folder once
    it holds nothing else; returns the bytes freed."""
    if not root.is_dir():
        return 0
    freed = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    shutil.rmtree(root)
    try:
        root.parent.rmdir()  # index_shards/, when no other collection's shards are there
    except OSError:
        pass
    return freed


# ---------------------------------------------------------------------------- the steps
def _collection(cfg: PipelineConfig, model: RegisteredModel) -> str:
    return collection_name(cfg, model.model_version)


def run_encode_shard(cfg: PipelineConfig, snapshot: DataSnapshot, model: RegisteredModel,
                     shard: int) -> dict[str, Any]:
    """One shard of ``build_index``: encode its items into the run's scratch (an Airflow mapped task)."""
    num_shards = int(cfg.index.shards)
    if not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} out of range: index.shards is {num_shards}")
    tracking.configure(cfg)
    lrem = models.load_lrem(model.model_uri)  # first: a missing or corrupt model fails the shard at once
    world = load_world(snapshot.data_uri)
    root = shard_root(snapshot.run_key, _collection(cfg, model))
    return encode_shard(root, shard, num_shards, world.catalog["item_id"].astype(str).tolist(),
                        world.catalog["title"].tolist(),
                        lambda titles: lrem.embed_items(titles, batch_size=cfg.index.batch_size),
                        model.model_uri, cfg.index.batch_size)


def _finished_build(cfg: PipelineConfig, snapshot: DataSnapshot, model: RegisteredModel, name: str) -> int | None:
    """The row count of ``name`` when an earlier attempt of this step finished it: the model version
    carries the collection tag and the collection holds exactly the catalog's rows; else None."""
    from components.index.collections import collection_row_count
    from components.index.server import ensure_server

    tracking.configure(cfg)
    mv = mlflow.MlflowClient().get_model_version(model.model_name, model.model_version)
    if mv.tags.get(COLLECTION_TAG) != name:
        return None
    ensure_server(cfg.index.milvus_uri)
    try:
        rows = int(collection_row_count(cfg.index.milvus_uri, name))
    except Exception:  # no such collection (dropped since): not finished
        return None
    return rows if rows == len(load_world(snapshot.data_uri).catalog) else None


def run(cfg: PipelineConfig, snapshot: DataSnapshot, model: RegisteredModel) -> ItemIndex:
    """The final task: insert every shard, build and verify the collection, tag the model version."""
    from components.index.collections import insert_item_vectors
    from components.index.server import ensure_server

    name = _collection(cfg, model)
    root = shard_root(snapshot.run_key, name)
    num_shards = int(cfg.index.shards)
    absent = [shard_name(s, num_shards) for s in range(num_shards)
              if not (root / f"{shard_name(s, num_shards)}.json").exists()]
    if absent:
        # a retry of a build that finished (worker lost after the shard files were deleted): the
        # version is tagged with this collection and the collection holds the catalog, so nothing is
        # left to do; otherwise the shard tasks did not all finish
        built = _finished_build(cfg, snapshot, model, name)
        if built is not None:
            log.info("%s already built and verified for v%s (%d rows): nothing to redo", name,
                     model.model_version, built)
            return ItemIndex(collection=name, rows=built, model_version=model.model_version)
        raise MissingShardError(f"{len(absent)} of {num_shards} index shards missing in {root}: {', '.join(absent)}; "
                                "rerun those shard tasks (by hand: lrem step build_index --shard I)")
    ensure_server(cfg.index.milvus_uri)
    tracking.configure(cfg)
    world = load_world(snapshot.data_uri)
    item_ids = world.catalog["item_id"].astype(str).tolist()
    batches = gather_shards(root, num_shards, item_ids, model.model_uri)
    champion = models.alias_version(model.model_name, models.CHAMPION)
    protected = {collection_of(cfg, champion.version, champion)} if champion is not None else set()
    result = insert_item_vectors(cfg.index.milvus_uri, name, item_ids, batches, cfg.index, protected=protected,
                                 probes=PROBES)
    mlflow.MlflowClient().set_model_version_tag(model.model_name, model.model_version, COLLECTION_TAG, name)
    with tracking.resume(cfg, snapshot.mlflow_run_id):
        mlflow.log_metrics({"index/rows": float(result["rows"]), "index/seconds": float(result["seconds"]),
                            "index/shards": float(cfg.index.shards)})
        mlflow.set_tag(COLLECTION_TAG, name)
    # verified and tagged: the vectors live in Milvus now. Any failure above raised before this
    # line and left the shard files for the retry.
    freed = discard_shards(root)
    log.info("deleted the %d shard files of %s (%.1f MB)", 3 * num_shards, name, freed / 1e6)
    return ItemIndex(collection=name, rows=int(result["rows"]), model_version=model.model_version)
