"""Exports: a device's recording of a time range as an MP4 or Matroska file, at the best
quality available for each moment, with an evidence file that lets anyone verify it offline.

See docs/design/export.md. `export_range` makes an export, `verify_export` checks one.
"""

from central.export.chunk_source import ChunkSource
from central.export.errors import EvidenceFormatError, ExportError
from central.export.evidence import (
    EVIDENCE_FORMAT,
    EVIDENCE_VERSION,
    EvidenceManifest,
    EvidenceReader,
    evidence_path_for,
)
from central.export.export_writer import ExportContainer
from central.export.exporter import ExportSummary, export_range
from central.export.ingest_receipt import IngestReceipt
from central.export.quality_plan import (
    HQ_STREAM,
    LQ_STREAM,
    PlanGap,
    PlanSegment,
    QualityPlan,
    plan_playback,
)
from central.export.verify import (
    CheckKind,
    ExportVerification,
    VerifyFinding,
    format_report,
    verify_export,
)

__all__ = [
    "EVIDENCE_FORMAT",
    "EVIDENCE_VERSION",
    "HQ_STREAM",
    "LQ_STREAM",
    "CheckKind",
    "ChunkSource",
    "EvidenceFormatError",
    "EvidenceManifest",
    "EvidenceReader",
    "ExportContainer",
    "ExportError",
    "ExportSummary",
    "ExportVerification",
    "IngestReceipt",
    "PlanGap",
    "PlanSegment",
    "QualityPlan",
    "VerifyFinding",
    "evidence_path_for",
    "export_range",
    "format_report",
    "plan_playback",
    "verify_export",
]
