"""The error tree every component raises, and the only one the edges translate.

    CodeIntelError
    ├── ConfigError          bad settings, flags, CodeIndex spec, or a wrong path
    ├── GitError             not a repository, unknown ref, unreachable URL, empty repo
    │   └── PathNotFoundError    a path absent from the indexed commit (HTTP 404)
    ├── EmbeddingError       the embedder failed
    │   ├── EmbeddingTimeoutError
    │   ├── EmbeddingHTTPError   a status the retries could not get past
    │   ├── DimensionMismatchError
    │   └── ModelMismatchError   the query model is not the model that embedded the index
    ├── IndexFormatError     a store that is missing, corrupt, newer than us, or half-written
    │   ├── NoGenerationError    no generation has been published yet
    │   │   └── IndexingError        … and the first one is being built (progress attached)
    │   ├── GenerationCorruptError   a served generation's files went bad under the searcher
    │   └── CurrentUnreadableError   an update or merge cannot start from the live generation
    └── QueryError           a request the tools refuse (names the field)
        ├── RepoNotFoundError    a `repos`/`repo` that names nothing served (HTTP 404)
        ├── CursorExpiredError   a page cursor whose generation is gone (410)
        ├── NotIndexedError      a symbol tool on a store built before symbols (409: rebuild)
        └── ModelMixError        repositories of different embedding models in one query (400)

The CLI prints ``str(error)`` on one line and exits non-zero; the searcher maps
each class to an HTTP status in one exception handler; the operator maps them to
``kopf.TemporaryError`` / ``kopf.PermanentError``.
"""

from __future__ import annotations


class CodeIntelError(Exception):
    """Base of every error codeintel raises on purpose."""

    exit_code: int = 1


class ConfigError(CodeIntelError):
    """Settings, flags or a spec that cannot work as given."""

    exit_code = 2


class GitError(CodeIntelError):
    """A repository, ref or URL that git cannot use."""


class PathNotFoundError(GitError):
    """A path that does not exist at the indexed commit."""

    def __init__(self, path: str, commit: str | None = None) -> None:
        where = f" at commit {commit[:12]}" if commit else ""
        super().__init__(f"path not found{where}: {path!r}")
        self.path = path
        self.commit = commit


class EmbeddingError(CodeIntelError):
    """The embedding model or server failed."""


class EmbeddingTimeoutError(EmbeddingError):
    """The embedding server did not answer in time."""


class EmbeddingHTTPError(EmbeddingError):
    """The embedding server answered with an error status the retries could not get past."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class DimensionMismatchError(EmbeddingError):
    """Vectors whose dimension differs from the store's."""


class ModelMismatchError(EmbeddingError):
    """Query vectors from another model than the one that embedded the generation.

    Two models of the same dimension give vectors that compare without error and
    rank at random, so the searcher refuses dense search instead (lexical still works).
    """


class IndexFormatError(CodeIntelError):
    """A store or generation that cannot be read: missing, corrupt, or too new."""


class NoGenerationError(IndexFormatError):
    """A store with no published generation yet."""


class IndexingError(NoGenerationError):
    """The embedded default is building its first generation: what needs it answers 503.

    ``progress`` (phase, done, total, eta_seconds, commit, error) goes into the error
    body as it is; ``retry_after`` is the seconds a client should wait (``Retry-After``).
    """

    def __init__(self, message: str, progress: dict[str, object], retry_after: int) -> None:
        super().__init__(message)
        self.progress = progress
        self.retry_after = retry_after


class GenerationCorruptError(IndexFormatError):
    """A file of the generation being served failed a read (e.g. a damaged ``chunks.sqlite``)."""

    def __init__(self, message: str, generation: str) -> None:
        super().__init__(message)
        self.generation = generation


class CurrentUnreadableError(IndexFormatError):
    """The live generation an update or merge starts from cannot be read.

    Only a full build gets out (it writes a fresh generation over it), so the exit code
    is its own: the operator reads it from the indexer pod and starts that build."""

    exit_code = 3


class QueryError(CodeIntelError):
    """A request refused because of one of its fields."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RepoNotFoundError(QueryError):
    """A repository name or glob that matches no store this searcher (or router) serves."""

    def __init__(self, message: str, field: str = "repos") -> None:
        super().__init__(message, field=field)


class CursorExpiredError(QueryError):
    """A page cursor whose generation the searcher no longer keeps (HTTP 410 Gone).

    Pages never mix commits, so the caller starts again from the first page."""

    def __init__(self, message: str) -> None:
        super().__init__(message, field="cursor")


class NotIndexedError(QueryError):
    """A symbol tool asked of a repository whose index has no symbols (an older store).

    ``repos`` names them; rebuilding the index (``codeintel index build``) adds them,
    and every other tool keeps answering meanwhile."""

    def __init__(self, repos: list[str]) -> None:
        named = ", ".join(repos)
        super().__init__(
            f"not indexed: {named} has no symbol index (built by an older codeintel); "
            "rebuild it with `codeintel index build` (search, read_file and the other tools "
            "still answer)",
            field="repos",
        )
        self.repos = repos


class ModelMixError(QueryError):
    """A semantic query over repositories indexed with different embedding models.

    ``groups`` maps each model to the repositories indexed with it, so the caller
    can narrow ``repos`` to one group."""

    def __init__(self, groups: dict[str, list[str]]) -> None:
        named = "; ".join(f"{model}: {', '.join(repos)}" for model, repos in sorted(groups.items()))
        super().__init__(
            "the selected repositories were indexed with different embedding models, and one "
            f"query vector cannot search them all; narrow `repos` to one group ({named})",
            field="repos",
        )
        self.groups = groups
