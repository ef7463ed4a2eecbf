"""The central's catalog: sites, devices, users, tokens, enrolment, notifications, settings.

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
    "LiveFeed",
    "NewDevice",
    "NewSite",
    "NotFound",
    "Notification",
    "Recording",
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
