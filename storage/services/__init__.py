"""One module per service. Each takes the acting user, checks role and active flag itself, and
returns `storage.types` dataclasses."""

from .audit import AuditService
from .check import CheckService
from .export import ExportService
from .frontends import FrontendService
from .generations import GenerationService
from .history import HistoryService
from .prompts import PromptService
from .reviews import ReviewService
from .sessions import BrowserSessionService
from .tokens import TokenService
from .uploads import UploadService
from .users import UserService

__all__ = [
    "AuditService",
    "BrowserSessionService",
    "CheckService",
    "ExportService",
    "FrontendService",
    "GenerationService",
    "HistoryService",
    "PromptService",
    "ReviewService",
    "TokenService",
    "UploadService",
    "UserService",
]
