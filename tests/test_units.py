"""Small offline units: Retry-After parsing, domain and host names, contacts, certificate names, the work directory."""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import json
import os
import stat
import sys
import time

import pytest

from common import workdir
from common.errors import UsageError
from common.keys import generate_key, key_to_pem, same_public_key
from common.names import contact_uri, host_name, normalize_name, normalize_names, to_unicode
from common.transport import retry_after_seconds

POSIX = sys.platform != "win32"
NOW = dt.datetime(2025, 3, 14, 15, 9, 26, tzinfo=dt.timezone.utc)


# --- common.transport.retry_after_seconds -------------------------------------------------------


@pytest.mark.parametrize(("header", "seconds"), [("120", 120.0), (" 3 ", 3.0), ("0", 0.0)])
def test_retry_after_delta_seconds(header, seconds):
    assert retry_after_seconds(header) == seconds


def test_retry_after_http_date_in_future():
    header = email.utils.format_datetime(NOW + dt.timedelta(seconds=7), usegmt=True)
    assert header.endswith(" GMT")
    assert retry_after_seconds(header, now=NOW.timestamp()) == pytest.approx(7.0)


def test_retry_after_rfc850_date():
    # The obsolete RFC 850 form that RFC 9110 §5.6.7 still requires recipients to accept.
    header = (NOW + dt.timedelta(seconds=30)).strftime("%A, %d-%b-%y %H:%M:%S GMT")
    assert retry_after_seconds(header, now=NOW.timestamp()) == pytest.approx(30.0)


def test_retry_after_http_date_in_past_is_zero():
    header = email.utils.format_datetime(NOW - dt.timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(header, now=NOW.timestamp()) == 0.0


def test_retry_after_http_date_uses_clock_without_now():
    header = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=100), usegmt=True)
    assert 90.0 <= retry_after_seconds(header) <= 100.0


@pytest.mark.parametrize("header", ["soon", "-5", "1.5", "12 s", "Mon, 99 Foo 2025 nonsense", ""])
def test_retry_after_garbage_is_none(header):
    assert retry_after_seconds(header, now=NOW.timestamp()) is None


def test_retry_after_none_is_none():
    assert retry_after_seconds(None) is None


def test_retry_after_non_ascii_digit_is_none():
    # requests decodes header values as Latin-1, so a byte 0xB2 arrives as "²". str.isdigit()
    # accepts it but float() does not: expected None (garbage), not an uncaught ValueError.
    assert retry_after_seconds("\u00b2", now=NOW.timestamp()) is None


@pytest.fixture
def non_utc_local_time(monkeypatch):
    """Run with the process's local time zone five hours west of UTC."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX-only")
    monkeypatch.setenv("TZ", "EST+5")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_retry_after_asctime_date_is_gmt(non_utc_local_time):
    # RFC 9110 §5.6.7: the asctime form ("Sun Nov  6 08:49:37 1994") carries no zone but is GMT,
    # and recipients must accept it. It must not be read in the machine's local time zone.
    when = NOW + dt.timedelta(seconds=60)
    header = when.strftime("%a %b ") + f"{when.day:>2}" + when.strftime(" %H:%M:%S %Y")
    assert retry_after_seconds(header, now=NOW.timestamp()) == pytest.approx(60.0)


# --- common.names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Example.COM", "example.com"),
        ("www.example.com.", "www.example.com"),
        ("  example.org  ", "example.org"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("*.Example.COM", "*.example.com"),
        ("*.bücher.example", "*.xn--bcher-kva.example"),
        ("a-b.example", "a-b.example"),
        ("a" * 63 + ".example", "a" * 63 + ".example"),
    ],
)
def test_normalize_name(raw, expected):
    assert normalize_name(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "a..b",
        "-a.example",
        "a-.example",
        "foo*.example.com",
        "*.*.example.com",
        "www.*.example.com",
        "*",
        "example",
        "a" * 64 + ".example",
        "",
        "   ",
        "ex ample.com",
        "under_score.example",
        ".example.com",
        "example.com..",
    ],
)
def test_normalize_name_rejects(raw):
    with pytest.raises(UsageError):
        normalize_name(raw)


def test_empty_name_error_says_what_to_do():
    with pytest.raises(UsageError, match="empty name"):
        normalize_name(" ")


def test_normalize_name_rejects_overlong_name():
    name = ".".join(["a" * 63] * 4) + ".example"  # 263 characters
    with pytest.raises(UsageError):
        normalize_name(name)


def test_normalize_names_dedupes_keeping_order():
    raw = ["b.example", "A.example", "a.example.", "bücher.example", "b.example", "xn--bcher-kva.example"]
    assert normalize_names(raw) == ["b.example", "a.example", "xn--bcher-kva.example"]


def test_normalize_names_wildcard_and_base_are_distinct():
    assert normalize_names(["*.example.com", "example.com"]) == ["*.example.com", "example.com"]


def test_normalize_names_empty_list():
    with pytest.raises(UsageError):
        normalize_names([])


def test_normalize_names_propagates_invalid():
    with pytest.raises(UsageError):
        normalize_names(["example.com", "a..b"])


# --- host names (to connect to) share the label rules, laxer than a CA's ----------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("Example.COM.", "example.com"), ("localhost", "localhost"),
    ("bücher.example", "xn--bcher-kva.example"), (" www.example.com ", "www.example.com"),
])
def test_host_name_accepts_what_a_client_may_connect_to(raw, expected):
    assert host_name(raw) == expected


@pytest.mark.parametrize("raw", ["", "-a.example", "a-.example", "a..b", "a b.example", f"{'a' * 64}.example",
                                 ".".join(["abcdefghi"] * 26), "*.example.com", "_dmarc.example.com"])
def test_host_name_rejects_with_the_text_shown(raw):
    with pytest.raises(UsageError, match=r"^'shown' is not a valid host name"):
        host_name(raw, "shown")


def test_host_name_and_certificate_name_differ_where_a_ca_needs_a_full_name():
    assert host_name("xn--bcher-kva.example") == normalize_name("bücher.example")
    assert host_name("localhost") == "localhost"
    with pytest.raises(UsageError, match="needs a full domain name"):
        normalize_name("localhost")


def test_to_unicode_shows_a_labels_as_written():
    assert to_unicode("xn--bcher-kva.example") == "bücher.example"
    assert to_unicode("*.xn--bcher-kva.example") == "*.bücher.example"
    assert to_unicode("www.example.com") == "www.example.com"
    assert to_unicode("xn--zz.example") == "xn--zz.example"  # not a valid A-label: left as it is


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("admin@example.com", "mailto:admin@example.com"),
        ("  admin@example.com ", "mailto:admin@example.com"),
        ("mailto:admin@example.com", "mailto:admin@example.com"),
        ("first.last+tag@sub.example.org", "mailto:first.last+tag@sub.example.org"),
    ],
)
def test_contact_uri(raw, expected):
    assert contact_uri(raw) == expected


@pytest.mark.parametrize(
    "raw",
    ["", "admin", "admin@example", "@example.com", "a@b@example.com", "a b@example.com",
     "a@example.com,b@example.com", "mailto:"],
)
def test_contact_uri_rejects(raw):
    with pytest.raises(UsageError):
        contact_uri(raw)


# --- common.workdir ---------------------------------------------------------------------------


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _temp_files(directory) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]


@pytest.fixture(scope="module")
def keys():
    return generate_key("ec256"), generate_key("ec256")


def test_write_key_new_file(tmp_path, keys):
    work = workdir.WorkDir(tmp_path / "acme-work")
    assert work.write_key(workdir.ACCOUNT_KEY, keys[0], force=False) is False
    assert work.path(workdir.ACCOUNT_KEY).read_bytes() == key_to_pem(keys[0])
    assert same_public_key(work.read_key(workdir.ACCOUNT_KEY), keys[0])


def test_write_key_refuses_to_replace_without_force(tmp_path, keys):
    work = workdir.WorkDir(tmp_path)
    work.write_key(workdir.ACCOUNT_KEY, keys[0], force=False)
    with pytest.raises(UsageError):
        work.write_key(workdir.ACCOUNT_KEY, keys[1], force=False)
    assert work.path(workdir.ACCOUNT_KEY).read_bytes() == key_to_pem(keys[0])
    assert _temp_files(tmp_path) == []


def test_write_key_replaces_with_force(tmp_path, keys):
    work = workdir.WorkDir(tmp_path)
    work.write_key(workdir.CERT_KEY, keys[0], force=False)
    assert work.write_key(workdir.CERT_KEY, keys[1], force=True) is True
    assert work.path(workdir.CERT_KEY).read_bytes() == key_to_pem(keys[1])
    assert same_public_key(work.read_key(workdir.CERT_KEY), keys[1])
    assert _temp_files(tmp_path) == []


@pytest.mark.skipif(not POSIX, reason="POSIX file modes")
def test_key_files_are_private(tmp_path, keys):
    work = workdir.WorkDir(tmp_path)
    work.write_key(workdir.ACCOUNT_KEY, keys[0], force=False)
    assert _mode(work.path(workdir.ACCOUNT_KEY)) == 0o600
    os.chmod(work.path(workdir.ACCOUNT_KEY), 0o644)  # a replaced key must not inherit a wider mode
    work.write_key(workdir.ACCOUNT_KEY, keys[1], force=True)
    assert _mode(work.path(workdir.ACCOUNT_KEY)) == 0o600


@pytest.mark.skipif(not POSIX, reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o000])
def test_file_modes_independent_of_umask(tmp_path, keys, umask):
    old = os.umask(umask)
    try:
        work = workdir.WorkDir(tmp_path)
        work.write_key(workdir.CERT_KEY, keys[0], force=False)
        work.write_json(workdir.ORDER, {"status": "pending"})
        work.write_bytes(workdir.CERT, b"-----BEGIN CERTIFICATE-----\n")
        work.write_bytes("secret.bin", b"x", private=True)
    finally:
        os.umask(old)
    assert _mode(work.path(workdir.CERT_KEY)) == 0o600
    assert _mode(work.path("secret.bin")) == 0o600
    assert _mode(work.path(workdir.ORDER)) == 0o644
    assert _mode(work.path(workdir.CERT)) == 0o644


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "file.json"
    workdir.atomic_write(target, b"one")
    workdir.atomic_write(target, b"two")
    workdir.atomic_write(tmp_path / "sub" / "new.pem", b"new", replace=False)
    with pytest.raises(UsageError):
        workdir.atomic_write(target, b"three", replace=False)
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json", "new.pem"]


def test_atomic_write_cleans_up_when_replace_fails(tmp_path, monkeypatch):
    target = tmp_path / "file.json"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(workdir.os, "replace", broken_replace)
    with pytest.raises(OSError):
        workdir.atomic_write(target, b"new")
    monkeypatch.undo()
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.json"]


def test_write_bytes_no_replace_refuses(tmp_path):
    work = workdir.WorkDir(tmp_path)
    work.write_bytes(workdir.CSR, b"first", replace=False)
    with pytest.raises(UsageError):
        work.write_bytes(workdir.CSR, b"second", replace=False)
    assert work.read_bytes(workdir.CSR) == b"first"


def test_json_round_trip(tmp_path):
    work = workdir.WorkDir(tmp_path)
    work.write_json(workdir.ACCOUNT, {"url": "https://ca.example/acct/1", "n": [1, 2]})
    assert work.read_json(workdir.ACCOUNT) == {"url": "https://ca.example/acct/1", "n": [1, 2]}
    assert json.loads(work.path(workdir.ACCOUNT).read_text()) == {"url": "https://ca.example/acct/1", "n": [1, 2]}


@pytest.mark.parametrize(
    ("name", "reader", "step"),
    [
        ("order.json", "read_json", "05_new_order.py"),
        ("account.json", "read_json", "04_new_account.py"),
        ("account.key", "read_key", "01_create_account_key.py"),
        ("cert.key", "read_key", "02_create_cert_key.py"),
        ("cert.pem", "read_bytes", "08_get_certificate.py"),
    ],
)
def test_missing_file_names_the_step(tmp_path, name, reader, step):
    work = workdir.WorkDir(tmp_path)
    with pytest.raises(UsageError) as info:
        getattr(work, reader)(name)
    assert step in str(info.value)
    assert name in str(info.value)


def test_missing_csr_names_step_03(tmp_path):
    with pytest.raises(UsageError, match="03_create_csr.py"):
        workdir.WorkDir(tmp_path).read_csr()


def test_invalid_json_names_the_step(tmp_path):
    work = workdir.WorkDir(tmp_path)
    work.path(workdir.ORDER).write_text("{not json")
    with pytest.raises(UsageError, match="05_new_order.py"):
        work.read_json(workdir.ORDER)


def test_session_cache_round_trip_and_directory_change(tmp_path):
    work = workdir.WorkDir(tmp_path)
    cache = workdir.SessionCache(work, "https://ca.example/dir")
    assert cache.nonce is None and cache.directory is None
    cache.remember_directory({"newNonce": "https://ca.example/nonce"})
    cache.remember_nonce("abc")
    assert not work.exists(workdir.SESSION)  # written once, when the step ends (atexit)
    cache.save()
    again = workdir.SessionCache(work, "https://ca.example/dir")
    assert again.nonce == "abc"
    assert again.directory == {"newNonce": "https://ca.example/nonce"}
    other = workdir.SessionCache(work, "https://other.example/dir")
    assert other.nonce is None and other.directory is None


@pytest.mark.parametrize("damaged", [
    "[]", "{not json", '{"directory_url": "https://ca.example/dir", "directory": "x", "nonce": 5}',
])
def test_damaged_session_cache_is_ignored(tmp_path, damaged):
    (tmp_path / workdir.SESSION).write_text(damaged)
    cache = workdir.SessionCache(workdir.WorkDir(tmp_path), "https://ca.example/dir")
    assert cache.directory is None and cache.nonce is None


def test_find_challenge_picks_dns01_and_names_the_offers_when_missing():
    from common.errors import AcmeError
    from common.rfc8555 import find_challenge

    authz = {"identifier": {"type": "dns", "value": "example.com"},
             "challenges": [{"type": "http-01", "url": "u1"}, {"type": "dns-01", "url": "u2"}]}
    assert find_challenge(authz, "dns-01")["url"] == "u2"
    authz["challenges"] = [{"type": "http-01", "url": "u1"}, {"type": "tls-alpn-01", "url": "u3"}]
    with pytest.raises(AcmeError, match=r"no dns-01 challenge for example.com \(offered: http-01, tls-alpn-01\)"):
        find_challenge(authz, "dns-01")


# --- review additions: names, contacts, problem hints, no-clobber without hard links --------------


@pytest.mark.parametrize(("raw", "reason"), [
    ("192.0.2.1", "IP address"),
    ("https://example.com", "bare domain name"),
    ("https://example.com/", "bare domain name"),
    ("example.com:443", "bare domain name"),
])
def test_normalize_name_rejects_ip_url_and_port(raw, reason):
    with pytest.raises(UsageError, match=reason):
        normalize_name(raw)


@pytest.mark.parametrize("raw", ["x@y.com?subject=hi", "user@例え.jp", "a@b"])
def test_contact_uri_rejects_uri_extras_non_ascii_and_bare_host(raw):
    with pytest.raises(UsageError, match="invalid email"):
        contact_uri(raw)


def test_contact_uri_accepts_plus_and_multi_label_domain():
    assert contact_uri("first.last+tag@example.co.uk") == "mailto:first.last+tag@example.co.uk"


def test_describe_names_one_and_many():
    from common.names import describe_names

    assert describe_names(["a.example"]) == "1 name: a.example"
    many = [f"n{i}.example" for i in range(7)]
    assert describe_names(many) == "7 names: n0.example, n1.example, n2.example, n3.example, n4.example and 2 more"


def test_acme_error_lines_hint_and_empty_problem():
    from common.errors import AcmeError

    error = AcmeError("POST https://ca.example/new-order failed with HTTP 400",
                      {"type": "urn:ietf:params:acme:error:accountDoesNotExist", "detail": "no such account"})
    lines = error.lines()
    assert lines[0] == "POST https://ca.example/new-order failed with HTTP 400"
    assert "urn:ietf:params:acme:error:accountDoesNotExist: no such account" in lines[1]
    assert any("04_new_account.py" in line for line in lines[2:])
    assert AcmeError("cannot reach the CA").lines() == ["cannot reach the CA"]
    assert AcmeError("cannot reach the CA", {}).lines() == ["cannot reach the CA"]


def test_atomic_write_no_clobber_without_hard_links(tmp_path, monkeypatch):
    """FAT and some network shares refuse os.link: create exclusively instead, still never clobbering."""
    calls = []

    def no_links(src, dst):
        calls.append(dst)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(workdir.os, "link", no_links)
    target = tmp_path / "cert.key"
    workdir.atomic_write(target, b"first", workdir.PRIVATE, replace=False)
    assert calls, "os.link was not tried"
    assert target.read_bytes() == b"first"
    if POSIX:
        assert _mode(target) == 0o600
    with pytest.raises(UsageError, match="already exists"):
        workdir.atomic_write(target, b"second", workdir.PRIVATE, replace=False)
    assert target.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["cert.key"]  # no temp file left behind


# --- naming a certificate: one fingerprint function, one summary ------------------------------


def _certificate(not_after: dt.datetime):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    key = generate_key("ec256")
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "units.example")])
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(0x4F1C).not_valid_before(not_after - dt.timedelta(days=90)).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("units.example"),
                                                        x509.IPAddress(ipaddress.ip_address("192.0.2.7"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))


def test_fingerprint_forms_are_hashes_of_the_der():
    import hashlib

    from cryptography.hazmat.primitives import serialization

    from common.certs import fingerprint

    cert = _certificate(NOW)
    der = cert.public_bytes(serialization.Encoding.DER)
    sha256, sha1 = hashlib.sha256(der).hexdigest().upper(), hashlib.sha1(der).hexdigest().upper()  # noqa: S324
    assert fingerprint(cert) == ":".join(sha256[i:i + 2] for i in range(0, 64, 2))  # as openssl shows it
    assert fingerprint(cert, separator="") == sha256  # CAS's Sha2
    assert fingerprint(cert, "sha1", separator="") == sha1  # Windows' thumbprint, CAS's Fingerprint


def test_summary_and_sans():
    from common.certs import ip_sans, san_names, summary

    cert = _certificate(dt.datetime(2027, 2, 25, 13, 40, tzinfo=dt.timezone.utc))
    assert summary(cert) == "serial 4f1c, expires 2027-02-25 13:40 UTC"
    assert summary(cert, dt.datetime(2026, 11, 27, 13, 40, tzinfo=dt.timezone.utc)).endswith(" (90 days left)")
    assert summary(cert, dt.datetime(2027, 3, 1, tzinfo=dt.timezone.utc)).endswith(" UTC (EXPIRED)")
    assert san_names(cert) == ["units.example"] and ip_sans(cert) == ["192.0.2.7"]
