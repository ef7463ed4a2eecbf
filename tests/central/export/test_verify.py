"""`siteline verify`: exit 0 on an intact, complete export; a non-zero exit and a report that
names the problem for each kind of tampering, for an undeclared gap and for a wrong key."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.export import (
    ExportSummary,
    IngestReceipt,
    evidence_path_for,
    export_range,
    format_report,
    verify_export,
)
from shared.chunk import ChunkHeader
from shared.clock import ManualClock
from shared.command_line import main
from shared.signing import SiteSigner
from tests.central.export.conftest import copy_export
from tests.central.export.recorded_site import GAP_NS, MS, SITE, RecordedSite, at

Manifest = dict[str, Any]
Members = dict[str, bytes]


def verify(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str]:
    code = main(["verify", *(str(a) for a in args)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def rewrite_evidence(
    media: Path,
    *,
    manifest: Callable[[Manifest], None] = lambda _: None,
    members: Callable[[Members], None] = lambda _: None,
) -> None:
    """Rewrite the evidence beside `media` as a careful forger would: a well-formed archive
    with the changes applied (CRCs and all)."""
    path = evidence_path_for(media)
    with zipfile.ZipFile(path) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(contents.pop("manifest.json"))
    manifest(document)
    members(contents)
    contents["manifest.json"] = json.dumps(document).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)


def segment_index(document: Manifest, stream: str, seq: int) -> int:
    for index, item in enumerate(document["plan"]):
        if item["kind"] == "segment" and (item["stream"], item["seq"]) == (stream, seq):
            return index
    raise AssertionError(f"no segment {stream} {seq}")


# ---------------------------------------------------------------------------------------------
# Intact exports


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_an_intact_export_verifies(
    exports: dict[str, ExportSummary],
    recorded: RecordedSite,
    capsys: pytest.CaptureFixture[str],
    container: str,
) -> None:
    summary = exports[container]
    code, report = verify(capsys, summary.media_path)
    assert code == 0, report
    assert "RESULT: AUTHENTIC AND COMPLETE" in report
    assert "7 authentic chunks, 41 media packets" in report
    assert "NOT pinned" in report
    # The evidence file names the same export; a matching pinned key is accepted.
    code, report = verify(
        capsys, summary.evidence_path, "--site-key", recorded.signer.public_key.hex()
    )
    assert code == 0, report
    assert "(pinned)" in report


def test_a_declared_recording_gap_is_reported_but_is_not_tampering(
    recorded: RecordedSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = export_range(
        recorded.store, recorded.keys, SITE, "cam-gap", at(0), at(6000),
        tmp_path / "gap.mkv", "mkv", clock=ManualClock(),
    )  # fmt: skip
    assert [(g.start_ns, g.end_ns, g.declared) for g in summary.gaps] == [
        (at(GAP_NS[0] // MS), at(GAP_NS[1] // MS), True)
    ]
    code, report = verify(capsys, summary.media_path)
    assert code == 0, report
    assert "recording gap of 2.000 s" in report
    assert "not tampering" in report


def test_an_undeclared_gap_makes_the_export_incomplete(
    recorded: RecordedSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = export_range(
        recorded.store, recorded.keys, SITE, "cam-hole", at(0), at(6000),
        tmp_path / "hole.mp4", "mp4", clock=ManualClock(),
    )  # fmt: skip
    assert [g.declared for g in summary.gaps] == [False]
    code, report = verify(capsys, summary.media_path)
    assert code == 1
    assert "incomplete: 1.000 s from 2023-11-14 22:13:22.000Z" in report
    assert "the site declared no recording gap there" in report


def test_an_export_ending_after_the_recording_is_incomplete(
    recorded: RecordedSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = export_range(
        recorded.store, recorded.keys, SITE, "cam-1", at(5000), at(8000),
        tmp_path / "tail.mp4", "mp4", clock=ManualClock(),
    )  # fmt: skip
    code, report = verify(capsys, summary.media_path)
    assert code == 1
    assert "incomplete: 2.000 s from 2023-11-14 22:13:26.000Z" in report


def test_ingest_receipts_are_checked_with_the_central_key(
    recorded: RecordedSite, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    central = SiteSigner.generate()
    receipts = [
        IngestReceipt.issue(central, chunk_hash=c.chunk_hash, site_id=SITE, received_ns=at(9000))
        for c in [*recorded.lq_chunks, *recorded.hq_chunks]
    ]
    summary = export_range(
        recorded.store, recorded.keys, SITE, "cam-1", at(300), at(5700),
        tmp_path / "receipts.mp4", "mp4", clock=ManualClock(),
        receipts=receipts, central_public_key=central.public_key,
    )  # fmt: skip
    code, report = verify(capsys, summary.media_path, "--central-key", central.public_key.hex())
    assert code == 0, report
    assert "7 of 7 chunks have a valid central ingest receipt" in report

    code, report = verify(
        capsys, summary.media_path, "--central-key", SiteSigner.generate().public_key.hex()
    )
    assert code == 1
    assert "not the pinned central key" in report
    assert "not signed by the central key" in report


# ---------------------------------------------------------------------------------------------
# Tampering


def test_a_flipped_byte_in_the_media_file_is_found(
    exports: dict[str, ExportSummary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media = copy_export(exports["mp4"], tmp_path)
    data = bytearray(media.read_bytes())
    data[len(data) // 2] ^= 0x40
    media.write_bytes(bytes(data))
    code, report = verify(capsys, media)
    assert code == 1
    assert "the file was changed after the export" in report


def test_a_changed_picture_is_found_even_when_the_recorded_hash_is_updated(
    exports: dict[str, ExportSummary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media = copy_export(exports["mp4"], tmp_path)
    data = bytearray(media.read_bytes())
    with av.open(str(media)) as container:
        stream = container.streams.video[0]
        positions = [p.pos for p in container.demux(stream) if p.size and p.pos is not None]
    data[positions[12] + 10] ^= 0x01  # inside packet 12, an HQ picture
    media.write_bytes(bytes(data))

    def forge_hash(document: Manifest) -> None:
        import hashlib  # noqa: PLC0415

        document["media"]["sha256"] = hashlib.sha256(data).hexdigest()

    rewrite_evidence(media, manifest=forge_hash)
    code, report = verify(capsys, media)
    assert code == 1
    assert "packet 12 (segment 2, chunk packet 4) differs from the signed chunk's bytes" in report


def test_an_edited_packet_in_the_evidence_is_found(
    exports: dict[str, ExportSummary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media = copy_export(exports["mp4"], tmp_path)

    def edit(members: Members) -> None:
        payload = bytearray(members["chunks/hq/0000000002.payload"])
        payload[-5] ^= 0x01
        members["chunks/hq/0000000002.payload"] = bytes(payload)

    rewrite_evidence(media, members=edit)
    code, report = verify(capsys, media)
    assert code == 1
    assert "hq seqs 1..3: MODIFIED: seq 2: the payload differs from its signed SHA-256" in report
    assert "differs from the signed chunk's bytes" in report


def test_a_dropped_chunk_is_found(
    exports: dict[str, ExportSummary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media = copy_export(exports["mp4"], tmp_path)

    def drop(document: Manifest) -> None:
        del document["plan"][segment_index(document, "hq", 2)]

    rewrite_evidence(media, manifest=drop)
    code, report = verify(capsys, media)
    assert code == 1
    assert "hq seqs 1..3: MISSING: seq 2 missing" in report
    assert "incomplete: 1.000 s" in report
    assert "packets were added or removed" in report


def test_reordered_chunks_are_found(
    exports: dict[str, ExportSummary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media = copy_export(exports["mkv"], tmp_path)

    def swap(document: Manifest) -> None:
        plan = document["plan"]
        first, second = segment_index(document, "hq", 1), segment_index(document, "hq", 2)
        plan[first], plan[second] = plan[second], plan[first]

    rewrite_evidence(media, manifest=swap)
    code, report = verify(capsys, media)
    assert code == 1
    assert "REORDERED: seq 2 is stored out of chain order" in report
    assert "the plan goes back in time" in report


def test_a_swapped_public_key_is_found(
    exports: dict[str, ExportSummary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media = copy_export(exports["mp4"], tmp_path)
    intruder = SiteSigner.generate().public_key.hex()
    rewrite_evidence(media, manifest=lambda d: d["public_keys"].update({SITE: intruder}))
    code, report = verify(capsys, media)
    assert code == 1
    assert "MODIFIED: seq 0: the signature does not verify" in report
    assert "0 authentic chunks" in report


def test_a_forgery_re_signed_with_another_key_fails_against_the_pinned_key(
    exports: dict[str, ExportSummary],
    recorded: RecordedSite,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    media = copy_export(exports["mp4"], tmp_path)
    forger = SiteSigner.generate()

    def re_sign(members: Members) -> None:
        for name in [n for n in members if n.endswith(".header")]:
            ChunkHeader.decode(members[name])  # only real headers are re-signed
            members[name.removesuffix(".header") + ".signature"] = forger.sign(members[name])

    rewrite_evidence(
        media,
        manifest=lambda d: d["public_keys"].update({SITE: forger.public_key.hex()}),
        members=re_sign,
    )
    # Without a pin the forgery is consistent; the report says the key was not pinned.
    code, report = verify(capsys, media)
    assert code == 0
    assert "NOT pinned: compare it with the key the site registered" in report
    code, report = verify(capsys, media, "--site-key", recorded.signer.public_key.hex())
    assert code == 1
    assert f"carries key {forger.public_key.hex()} for site {SITE}, not the pinned key" in report
    assert "FOREIGN: seq 0 (naming 'site-1'/'cam-1'/'lq') is signed by the key of 'the key " in (
        report
    )


def test_retimed_pictures_are_found(
    exports: dict[str, ExportSummary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The same bytes, remuxed to show the HQ part a second later, with the hash updated."""
    original = exports["mkv"].media_path
    media = copy_export(exports["mkv"], tmp_path)
    with av.open(str(original)) as source, av.open(str(media), "w", format="matroska") as out:
        template = source.streams.video[0]
        stream = out.add_stream_from_template(template)
        for index, packet in enumerate(p for p in source.demux(template) if p.size):
            if index >= 8:
                shift = round(Fraction(1) / template.time_base) if template.time_base else 0
                packet.pts = (packet.pts or 0) + shift
                packet.dts = None
            packet.stream = stream
            out.mux(packet)

    def forge_hash(document: Manifest) -> None:
        import hashlib  # noqa: PLC0415

        data = media.read_bytes()
        document["media"]["sha256"] = hashlib.sha256(data).hexdigest()
        document["media"]["bytes"] = len(data)

    rewrite_evidence(media, manifest=forge_hash)
    code, report = verify(capsys, media)
    assert code == 1
    assert "packet 8 (segment 2, chunk packet 0) is shown at 2.500000 s" in report
    assert "its signed time is 1.500000 s" in report


def test_missing_or_unreadable_evidence_fails(
    exports: dict[str, ExportSummary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media = copy_export(exports["mp4"], tmp_path)
    evidence = evidence_path_for(media)
    data = bytearray(evidence.read_bytes())
    data[100] ^= 0xFF  # inside the first member: the archive's CRC no longer matches
    evidence.write_bytes(bytes(data))
    code, report = verify(capsys, media)
    assert code == 1
    assert "evidence member chunks/lq/0000000000.header is unreadable" in report
    evidence.unlink()
    code, report = verify(capsys, media)
    assert code == 1
    assert "not a readable evidence archive" in report


def test_usage_errors_exit_2(
    exports: dict[str, ExportSummary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = verify(capsys, tmp_path / "nowhere.mp4")
    assert code == 2
    assert "no such file" in report
    code, report = verify(capsys, exports["mp4"].media_path, "--site-key", "abcd")
    assert code == 2
    assert "--site-key must be 64 hex digits" in report


def test_an_unsupported_evidence_version_is_refused(
    exports: dict[str, ExportSummary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media = copy_export(exports["mp4"], tmp_path)
    rewrite_evidence(media, manifest=lambda d: d.update(version=2))
    code, report = verify(capsys, media)
    assert code == 1
    assert "evidence format version 2 is not supported" in report


def test_names_from_the_evidence_cannot_drive_the_terminal(
    exports: dict[str, ExportSummary], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    media = copy_export(exports["mp4"], tmp_path)
    rewrite_evidence(media, manifest=lambda d: d.update(device_name="Gate\x1b[2J\nforged"))
    code, report = verify(capsys, media)
    assert code == 0  # the name is not signed, and not checked: only shown
    assert 'device cam-1 "Gate?[2J?forged"' in report
    assert "\x1b" not in report


_JSON_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(path_choice=st.integers(0, 10_000), value=_JSON_VALUES)
def test_a_hostile_manifest_is_a_finding_never_a_crash(
    exports: dict[str, ExportSummary], tmp_path: Path, path_choice: int, value: object
) -> None:
    folder = tmp_path / f"case-{path_choice}-{abs(hash(repr(value)))}"
    folder.mkdir(exist_ok=True)
    media = copy_export(exports["mp4"], folder)

    def replace_one_field(document: Manifest) -> None:
        slots: list[tuple[Any, Any]] = []

        def walk(node: Any) -> None:
            keys = node.keys() if isinstance(node, dict) else range(len(node))
            for key in keys:
                slots.append((node, key))
                if isinstance(node[key], dict | list):
                    walk(node[key])

        walk(document)
        node, key = slots[path_choice % len(slots)]
        node[key] = value

    rewrite_evidence(media, manifest=replace_one_field)
    result = verify_export(media)
    assert isinstance(format_report(result), str)
