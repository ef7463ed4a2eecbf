"""The agent's configuration: the sample is valid, and every error names the file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_agent_config
from agent.sample_config import InitError, write_sample_config


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    return write_sample_config(tmp_path, name="Shop 12", admin_password="pw", port=9443)


def test_sample_config_loads_with_synthetic_cameras(sample: Path) -> None:
    config = load_agent_config(sample)
    assert config.site.name == "Shop 12"
    assert config.api.port == 9443
    assert [c.source for c in config.cameras] == ["synthetic", "synthetic"]
    assert config.storage.path == sample.parent / "store"
    assert config.users[0].username == "admin"
    assert "cam-1.mic" in config.device_ids()
    assert "cam-1.motion" in config.device_ids()


def test_init_refuses_to_overwrite(sample: Path) -> None:
    with pytest.raises(InitError, match="exists already"):
        write_sample_config(sample.parent, name="x", admin_password="pw", port=1)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("[storage]", '[storage]\nquotta = "1 GiB"', r"storage\.quotta: unknown key"),
        ('quota = "4 GiB"', 'quota = "lots"', r"storage\.quota: 'lots' is not a size"),
        ('quota = "4 GiB"', 'quota = "1 MiB"', r"storage\.quota: must be at least 16 MiB"),
        ("port = 9443", "port = 70000", r"api\.port: must be at most 65535"),
        ("port = 9443", 'port = "9443"', r"api\.port: expected an integer, got str '9443'"),
        ('scheme = "https"', 'scheme = "ftp"', r"api\.scheme: must be one of https, http"),
        ('time_zone = "UTC"', 'time_zone = "Mars/Olympus"', r"site\.time_zone: unknown time"),
        ('source = "synthetic"', 'source = "webcam"', r"cameras\[0\]\.source: must be one of"),
        ('id = "cam-2"', 'id = "cam-1"', r"device id 'cam-1' is used twice"),
        ('id = "cam-2"', 'id = "Cam 2"', r"cameras\[1\]\.id: 'Cam 2' must be lowercase"),
        (
            'hq = { mode = "continuous" }',
            'hq = { mode = "always" }',
            r"cameras\[0\]\.recording\.hq\.mode: must be one of continuous",
        ),
        (
            "width = 1920,",
            "width = 1921,",
            r"cameras\[0\]\.synthetic\.hq\.width: width and height must be even",
        ),
        (
            'hq = { mode = "motion" }',
            'hq = { mode = "schedule" }',
            r"cameras\[1\]\.recording\.schedule: a stream records on a schedule",
        ),
        ('devices = ["*"]', 'devices = ["cam-9"]', r"granted unknown device 'cam-9'"),
        (
            "pre_buffer_s = 5\npost_buffer_s = 10\n\n[cameras.motion]",
            'pre_buffer_s = 5\npost_buffer_s = 10\ntrigger_inputs = ["gate"]\n\n[cameras.motion]',
            r"cameras\[0\]\.recording\.trigger_inputs: 'gate' is not one of the \[\[inputs\]\]",
        ),
        ('password_hash = "scrypt', 'password_hash = "md5', r"users\[0\]\.password_hash"),
        ("period_s = 40", "period_s = 0", r"inputs\[0\]\.period_s: must be at least 1"),
        (
            "motion_duration_s = 8",
            "motion_duration_s = 31",
            r"cameras\[0\]\.synthetic\.motion_duration_s: must be shorter than motion_period_s",
        ),
        (
            "post_buffer_s = 10\n\n[cameras.motion]",
            'post_buffer_s = 10\nschedule = ["mon-fri 8:00-18:00"]\n\n[cameras.motion]',
            r"cameras\[0\]\.recording\.schedule: .*'8:00'",
        ),
    ],
)
def test_errors_name_the_key(sample: Path, old: str, new: str, message: str) -> None:
    _edit(sample, old, new)
    with pytest.raises(ConfigError, match=message) as info:
        load_agent_config(sample)
    assert str(sample.resolve().name) in str(info.value)


def test_rtsp_camera_url_with_dangerous_scheme_is_refused(sample: Path) -> None:
    text = sample.read_text() + (
        '\n[[cameras]]\nid = "ipcam"\nsource = "rtsp"\n[cameras.rtsp]\n'
        'hq_url = "concat:/etc/passwd|/etc/shadow"\nlq_url = "rtsp://10.0.0.5/sub"\n'
    )
    sample.write_text(text)
    with pytest.raises(ConfigError, match=r"cameras\[2\]\.rtsp\.hq_url"):
        load_agent_config(sample)


def test_rtsp_camera_with_good_urls_loads(sample: Path) -> None:
    text = sample.read_text() + (
        '\n[[cameras]]\nid = "ipcam"\nsource = "rtsp"\n[cameras.rtsp]\n'
        'hq_url = "rtsp://user:secret@10.0.0.5:554/main"\nlq_url = "rtsp://10.0.0.5/sub"\n'
    )
    sample.write_text(text)
    config = load_agent_config(sample)
    assert config.cameras[2].source == "rtsp"


def test_rtsp_reader_is_chosen_and_checked(sample: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    camera = (
        '\n[[cameras]]\nid = "ipcam"\nsource = "rtsp"\n[cameras.rtsp]\n'
        'hq_url = "rtsp://10.0.0.5/main"\nlq_url = "rtsp://10.0.0.5/sub"\n'
    )
    original = sample.read_text()
    sample.write_text(original + camera)
    assert load_agent_config(sample).cameras[2].settings.reader == "ffmpeg"  # type: ignore[union-attr]
    sample.write_text(original + camera + 'reader = "in_process"\n')
    assert load_agent_config(sample).cameras[2].settings.reader == "in_process"  # type: ignore[union-attr]
    sample.write_text(original + camera + 'reader = "gstreamer"\n')
    with pytest.raises(ConfigError, match=r"cameras\[2\]\.rtsp\.reader: must be one of auto"):
        load_agent_config(sample)
    sample.write_text(original + camera + 'reader = "ffmpeg"\n')
    monkeypatch.setenv("PATH", str(sample.parent / "no-programs-here"))
    with pytest.raises(ConfigError, match=r"cameras\[2\]\.rtsp\.reader: 'ffmpeg' needs the ffmpeg"):
        load_agent_config(sample)


def test_not_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text("[site\nname=")
    with pytest.raises(ConfigError, match=r"agent\.toml: not valid TOML"):
        load_agent_config(path)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_agent_config(tmp_path / "absent.toml")


def test_missing_required_section(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('[storage]\npath = "x"\n')
    with pytest.raises(ConfigError, match="site: is required"):
        load_agent_config(path)


def test_picamera2_low_resolution_output_shares_the_frame_rate(sample: Path) -> None:
    text = sample.read_text() + (
        '\n[[cameras]]\nid = "picam"\nsource = "picamera2"\n[cameras.picamera2]\n'
        "lq = { width = 640, height = 360, fps = 8 }\n"
    )
    sample.write_text(text)
    with pytest.raises(ConfigError, match=r"cameras\[2\]\.picamera2\.lq: fps must equal hq fps"):
        load_agent_config(sample)


def test_command_line_version_and_init_then_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.command_line import main  # noqa: PLC0415

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("siteline ")
    assert (
        main(["agent", "init", "--dir", str(tmp_path), "--admin-password", "pw", "--port", "9000"])
        == 0
    )
    assert "port = 9000" in (tmp_path / "agent.toml").read_text()
    # Nothing recorded yet and no key: check says why it cannot verify, and fails.
    assert main(["agent", "check", "--config", str(tmp_path / "agent.toml")]) == 2
    assert "no signing key" in capsys.readouterr().err


GOOD_LINK = """
[link]
read_timeout_s = 20
central_url = "https://central.example:8444/api/v1/sites/link"
enrolment_token = "enrol-0123456789abcdef"
central_fingerprint = "{fingerprint}"
account = "admin"
""".format(fingerprint=":".join(["AB"] * 32))


def test_the_outbound_link_loads(sample: Path) -> None:
    sample.write_text(sample.read_text() + GOOD_LINK)
    link = load_agent_config(sample).link
    assert link.central_url == "https://central.example:8444/api/v1/sites/link"
    assert (link.account, link.read_timeout_s) == ("admin", 20.0)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('central_url = "https:', 'central_url = "ftp:', "link.central_url: must be an http"),
        (
            'enrolment_token = "enrol-0123456789abcdef"',
            'enrolment_token = "short"',
            "link.enrolment_token: is required with central_url",
        ),
        ('account = "admin"', 'account = "ghost"', "link.account: 'ghost' is not one of"),
        ('central_fingerprint = "AB', 'central_fingerprint = "ZZ', "link.central_fingerprint"),
        ("read_timeout_s = 20", "read_timeout_s = 1", "link.read_timeout_s"),
        (
            'central_url = "https://central.example:8444/api/v1/sites/link"\n',
            "",
            "link.enrolment_token: only makes sense with central_url",
        ),
    ],
)
def test_link_errors_name_the_key(sample: Path, old: str, new: str, message: str) -> None:
    sample.write_text(sample.read_text() + GOOD_LINK.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message):
        load_agent_config(sample)
