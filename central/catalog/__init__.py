"""The central's catalog: sites, devices, users, tokens, enrolment, notifications, settings,
retrieval jobs and rules.

Callers use the `Catalog` protocol; `SqliteCatalog` is the embedded implementation. Media
is not here: it lives in the chunk store (`shared/store/`). See docs/design/catalog.md.
"""

from central.catalog.catalog import Catalog
from central.catalog.errors import (
    CatalogError,
    Conflict,
    InvalidRecord,
    NotFound,
    SchemaError,
    SecretKeyError,
    SecretUnreadable,
)
from central.catalog.records import (
    SITE_FIELDS_CHANGEABLE,
    DeviceKind,
    DeviceRecord,
    Dial,
    EnrolmentToken,
    HardwareChange,
    HardwareDiff,
    LiveFeed,
    NewDevice,
    NewSite,
    Notification,
    Recording,
    RetrievalSettings,
    Role,
    Scheme,
    SiteRecord,
    StreamInfo,
    TokenRecord,
    UserRecord,
)
from central.catalog.schema import SCHEMA_VERSION
from central.catalog.secret_box import SecretBox
from central.catalog.sqlite_catalog import SqliteCatalog
from central.retrieval.job_records import (
    JobOrigin,
    JobState,
    JobStream,
    NewRetrievalJob,
    RetrievalJob,
)
from central.retrieval.job_state import JobTransitionError
from central.retrieval.rule_records import NewRetrievalRule, RetrievalRule

__all__ = [
    "SCHEMA_VERSION",
    "SITE_FIELDS_CHANGEABLE",
    "Catalog",
    "CatalogError",
    "Conflict",
    "DeviceKind",
    "DeviceRecord",
    "Dial",
    "EnrolmentToken",
    "HardwareChange",
    "HardwareDiff",
    "InvalidRecord",
    "JobOrigin",
    "JobState",
    "JobStream",
    "JobTransitionError",
    "LiveFeed",
    "NewDevice",
    "NewRetrievalJob",
    "NewRetrievalRule",
    "NewSite",
    "NotFound",
    "Notification",
    "Recording",
    "RetrievalJob",
    "RetrievalRule",
    "RetrievalSettings",
    "Role",
    "SchemaError",
    "Scheme",
    "SecretBox",
    "SecretKeyError",
    "SecretUnreadable",
    "SiteRecord",
    "SqliteCatalog",
    "StreamInfo",
    "TokenRecord",
    "UserRecord",
]
