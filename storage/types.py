"""Plain values the storage layer hands out: enums and frozen dataclasses, never ORM objects.

Callers (web, CLI) depend on these only, so the database behind them can change freely.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, NamedTuple, TypeVar


class Role(StrEnum):
    MEMBER = "member"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class GenerationStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


class ReviewStatus(StrEnum):
    DRAFT = "draft"
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"


class GuidanceDecay(StrEnum):
    NONE = "none"
    LINEAR = "linear"
    COSINE = "cosine"


class HistorySort(StrEnum):
    NEWEST = "newest"
    OLDEST = "oldest"
    MOST_USED = "most_used"


class Operator:
    """The local command line. It acts with the data directory's owner's authority.

    Web code never passes it, so no HTTP request can act as it.
    Services accept it where an administrator could act (user admin, tokens, export).
    """

    def __repr__(self) -> str:
        return "OPERATOR"


OPERATOR = Operator()
Actor = int | Operator
"""Who acts: a user id, or the command line's OPERATOR."""


@dataclass(frozen=True)
class UserInfo:
    id: int
    username: str
    display_name: str
    role: Role
    active: bool
    must_change_password: bool
    created_at: datetime
    updated_at: datetime
    last_login_at: datetime | None


@dataclass(frozen=True)
class CreatedUser:
    user: UserInfo
    generated_password: str | None
    """Set when no password was given: shown once, and the user must change it at first login."""


@dataclass(frozen=True)
class TokenInfo:
    id: int
    user_id: int
    username: str
    label: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewToken:
    info: TokenInfo
    secret: str
    """The plaintext token. It is never stored, so this is the only time anyone sees it."""


@dataclass(frozen=True)
class UploadInfo:
    id: int
    uploader_id: int
    sha256: str
    relpath: str
    size: int
    width: int
    height: int
    created_at: datetime


@dataclass(frozen=True)
class MixIngredientRef:
    """One ingredient of an embedding mix by reference: a text or an upload's id, with a signed weight.

    The shape a stored prompt and a web request (webapp.services.generation_jobs.JobRequest) share; the
    engine's `MixIngredient` holds the upload's pixels instead, and a recipe names the upload by its sha256.
    """

    weight: float
    text: str | None = None
    upload_id: int | None = None


@dataclass(frozen=True)
class Guidance:
    """A guidance image (an upload) pulled toward with `scale`, decaying over the steps."""

    upload_id: int
    scale: float
    decay: GuidanceDecay = GuidanceDecay.NONE


@dataclass(frozen=True)
class PromptInfo:
    id: int
    author_id: int
    author: str
    text: str
    negative_prompt: str
    mix: tuple[MixIngredientRef, ...]
    guidance: Guidance | None
    tags: tuple[str, ...]
    shared: bool
    use_count: int
    parent_id: int | None
    created_at: datetime
    updated_at: datetime


class NewImage(NamedTuple):
    """One finished image to record: PNG bytes (recipe included), the size they encode and its own seed."""

    index: int  # type: ignore[assignment]  # shadows tuple.index, on purpose: it is the image's index
    png: bytes
    width: int
    height: int
    seed: int | None = None


@dataclass(frozen=True)
class ImageInfo:
    id: int
    generation_id: int
    index: int
    sha256: str
    relpath: str
    width: int
    height: int
    review_status: ReviewStatus
    file_missing: bool
    created_at: datetime
    revision_of: int | None = None
    """The earlier image this one revises, if the author submitted it as a revision."""
    seed: int | None = None
    """The image's own seed, as its PNG's recipe records it."""


@dataclass(frozen=True)
class GenerationInfo:
    id: int
    user_id: int
    username: str
    prompt_id: int
    model_id: str
    model_hash: str
    params: dict[str, Any]
    seed: int | None
    status: GenerationStatus
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    queue_wait_s: float | None
    model_s: float | None
    images: tuple[ImageInfo, ...] = ()


@dataclass(frozen=True)
class ReviewInfo:
    id: int
    image_id: int
    reviewer_id: int
    reviewer: str
    decision: Decision
    comment: str
    created_at: datetime


@dataclass(frozen=True)
class InboxItem:
    """A decision on one of the author's images, with what the author needs to find the image again."""

    review: ReviewInfo
    image: ImageInfo
    prompt_text: str


@dataclass(frozen=True)
class HistoryItem:
    generation: GenerationInfo
    prompt: PromptInfo
    favourite: bool


@dataclass(frozen=True)
class ReviewQueueItem:
    image: ImageInfo
    generation: GenerationInfo
    prompt: PromptInfo


@dataclass(frozen=True)
class AuditEventInfo:
    id: int
    actor_id: int | None
    actor_name: str
    action: str
    target_type: str | None
    target_id: str | None
    detail: dict[str, Any]
    created_at: datetime


T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    total: int
    page: int
    page_size: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))


@dataclass(frozen=True)
class HistoryQuery:
    """What the History tab asks for. Every field is optional; the default lists everything visible."""

    text: str = ""
    author: str | None = None
    mine: bool = False
    review_status: ReviewStatus | None = None
    status: GenerationStatus | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    favourites_only: bool = False
    sort: HistorySort = HistorySort.NEWEST
    page: int = 1
    page_size: int = 20


@dataclass(frozen=True)
class ExportSummary:
    count: int
    missing_image_ids: tuple[int, ...] = field(default=())
    """Approved images whose file is gone: listed here, left out of the zip."""


class ProblemKind(StrEnum):
    MISSING_FILE = "missing_file"  # a row whose file is gone
    ORPHAN_FILE = "orphan_file"  # a file no row refers to
    HASH_MISMATCH = "hash_mismatch"  # a file whose bytes do not match its name
    STRAY_FILE = "stray_file"  # a file the store did not name
    TEMP_FILE = "temp_file"  # a temp file left by an interrupted write
    FILE_BACK = "file_back"  # a row marked missing whose file is there again


@dataclass(frozen=True)
class Problem:
    kind: ProblemKind
    store: str
    relpath: str
    detail: str
    repaired: bool = False


@dataclass(frozen=True)
class CheckReport:
    problems: tuple[Problem, ...]
    rows: int
    files: int

    @property
    def ok(self) -> bool:
        """True when nothing is wrong, or everything wrong was repaired."""
        return all(problem.repaired for problem in self.problems)
