"""A local stand-in for Alibaba Cloud's Alidns, CAS, CDN and API Gateway APIs, for tests.

An HTTPS server on 127.0.0.1 with a throwaway CA (made here with ``cryptography``). Clients trust
it through ``REQUESTS_CA_BUNDLE`` = a bundle holding the system's roots plus that CA.

Its signature check is not the project's code: it recomputes the Authorization header with
Alibaba's own SDK (``alibabacloud_openapi_util``'s ``get_authorization``) from the request as it
arrived, and rejects what Alibaba rejects: a bad signature (``SignatureDoesNotMatch``), an
x-acs-date more than 15 minutes off (``InvalidTimeStamp.Expired``), a nonce used before
(``SignatureNonceUsed``), an unknown AccessKey (``InvalidAccessKeyId.NotFound``), an STS token
that does not belong to the key. Answers and errors have Alibaba's JSON shapes (``RequestId``,
``HostId``, ``Code``, ``Message``, ``Recommend``); the fields of the successful answers are the
ones in Alibaba's API metadata for each action.

Each service is reached under its own path prefix: ``https://127.0.0.1:PORT/alidns``, ``/cas``,
``/cdn``, ``/apigateway`` (what ``--endpoint-override SERVICE=URL`` takes). A request to ``/``
is routed by its ``x-acs-version``, so Alibaba's SDK, which always posts to ``/``, can call it too.

Use from a test::

    from fake_alibaba import fake_alibaba  # the session-scoped fixture

    def test_something(fake_alibaba):
        fake_alibaba.reset()                      # fresh state for this test
        fake_alibaba.dns.add_record("example.com", "_acme-challenge", "TXT", "foreign")
        env = fake_alibaba.env()                  # REQUESTS_CA_BUNDLE and a valid AccessKey
        ...                                       # run the client with fake_alibaba.url("alidns")
        assert [c.action for c in fake_alibaba.calls] == [...]
        fake_alibaba.dns.records("example.com")   # the zone's content now

Seeding: ``dns.add_zone``/``dns.add_record``, ``cas.upload``, ``cdn.add_domain``,
``apigateway.add_domain``, ``add_access_key`` (an STS key with its token), ``clock_offset`` (the
fake's clock off by that much). ``write_certificate_files`` makes a work dir's cert.pem,
chain.pem and cert.key to deploy. State: ``dns.records(zone)``, ``cas.certificates``,
``cdn.domains``, ``apigateway.groups``; ``calls`` (every request, refused ones with ``error``),
``actions()`` and ``calls_of(action)`` (the accepted ones).

Misbehaving, for the tests that distrust it: ``misbehave(action, Misbehaviour(...))`` makes every
later answer to ``action`` another shape (``change`` turns the honest answer into what is sent),
raw bytes (``raw``, e.g. megabytes), another HTTP ``status``, or trickle one byte at a time (``trickle`` seconds apart).
``reset()`` ends the misbehaving, a trickle under way included.

Error codes this file could not confirm in Alibaba's documentation are marked "stand-in".
"""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import hmac
import ipaddress
import json
import os
import re
import ssl
import threading
import time
import types
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from alibabacloud_openapi_util.client import Client as OpenApiUtil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ACCESS_KEY_ID = "LTAI5tFakeAlibabaTestKey"
ACCESS_KEY_SECRET = "fake-alibaba-secret-9Qw3Zr7Xk2Lm5Np8"  # distinctive, so tests can grep output for it
MAX_SKEW = datetime.timedelta(minutes=15)
MAX_BODY = 1024 * 1024

# Path prefix -> (API version, product name in Alibaba's error "Recommend" links, HostId).
SERVICES = {
    "alidns": ("2015-01-09", "Alidns", "alidns.aliyuncs.com"),
    "cas": ("2020-04-07", "cas", "cas.aliyuncs.com"),
    "cdn": ("2018-05-10", "Cdn", "cdn.aliyuncs.com"),
    "apigateway": ("2016-07-14", "CloudAPI", "apigateway.cn-hangzhou.aliyuncs.com"),
}
BY_VERSION = {version: name for name, (version, _, _) in SERVICES.items()}


class ApiError(Exception):
    """An Alibaba-style error answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


def missing(name: str) -> ApiError:
    return ApiError(400, f"Missing{name}",
                    f'The input parameter "{name}" that is mandatory for processing this request is not supplied.')


@dataclass
class Call:
    """One request as the fake saw it (rejected ones too: ``error`` is then the code)."""

    service: str
    action: str
    params: dict[str, str]
    headers: dict[str, str]
    error: str | None = None


@dataclass
class Misbehaviour:
    """How to answer one action instead of honestly (see the module docstring)."""

    change: Callable[[dict[str, Any]], Any] | None = None  # the honest JSON answer -> the JSON to send
    raw: bytes | None = None  # send these bytes as the body instead
    status: int | None = None  # this HTTP status instead
    trickle: float = 0.0  # seconds between the bytes of the body


@dataclass
class AccessKey:
    secret: str
    security_token: str | None = None


def _ms(when: datetime.datetime) -> int:
    return int(when.timestamp() * 1000)


def _page(items: list[Any], params: dict[str, str], *, number: str, size: str, default: int, maximum: int
          ) -> tuple[list[Any], int, int]:
    """One page of ``items``: (page, page number, page size); bad paging values are refused."""
    try:
        page, per = int(params.get(number, "1")), int(params.get(size, str(default)))
    except ValueError:
        raise ApiError(400, "InvalidParameter", f"{number} and {size} must be integers.") from None  # stand-in
    if page < 1:
        raise ApiError(400, f"Invalid{number}", f"The specified {number} is invalid.")  # stand-in
    if not 1 <= per <= maximum:
        raise ApiError(400, f"Invalid{size}", f"The specified {size} is invalid: at most {maximum}.")  # stand-in
    return items[(page - 1) * per: page * per], page, per


def _load_pair(cert_pem: str, key_pem: str) -> tuple[list[x509.Certificate], Any]:
    """Parse a certificate chain (leaf first) and its key; refuse a key that is not the leaf's."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem.encode())
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except ValueError:
        raise ApiError(400, "Certificate.FormatError", "The format of the certificate is invalid.") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(serialization.Encoding.DER, spki) != \
            key.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise ApiError(400, "Certificate.MissMatch", "The SSLPri does not match the certificate.")
    return chain, key


# --- Alidns 2015-01-09 ----------------------------------------------------------------------


@dataclass
class Record:
    record_id: str
    domain: str
    rr: str
    type: str
    value: str
    ttl: int
    line: str
    created: int
    priority: int | None = None

    def fqdn(self) -> str:
        return self.domain if self.rr == "@" else f"{self.rr}.{self.domain}"

    def to_json(self) -> dict[str, Any]:
        out = {"RecordId": self.record_id, "DomainName": self.domain, "RR": self.rr, "Type": self.type,
               "Value": self.value, "TTL": self.ttl, "Line": self.line, "Status": "ENABLE", "Locked": False,
               "Weight": 1, "CreateTimestamp": self.created, "UpdateTimestamp": self.created}
        if self.priority is not None:
            out["Priority"] = self.priority
        return out


DEFAULT_ZONES = ["example.com", "example.com.cn", "example.net", "example.org"] + \
    [f"filler-{n:02d}.example" for n in range(1, 22)]  # 25 zones: two pages at the default PageSize of 20


class DnsState:
    """Alibaba Cloud DNS zones and records. ``add_zone``/``add_record`` seed; ``records`` reads."""

    def __init__(self) -> None:
        self.zones: dict[str, dict[str, Any]] = {}
        self._records: dict[str, Record] = {}
        self._next_id = 900000000000000001
        for zone in DEFAULT_ZONES:
            self.add_zone(zone)

    def add_zone(self, name: str) -> None:
        self.zones[name] = {"DomainId": str(uuid.uuid4()), "created": datetime.datetime.now(datetime.timezone.utc)}

    def add_record(self, domain: str, rr: str, type: str, value: str, ttl: int = 600, line: str = "default",
                   priority: int | None = None) -> str:
        """Add a record as if made in the console (duplicates allowed here); returns its RecordId."""
        record_id = str(self._next_id)
        self._next_id += 1
        now = _ms(datetime.datetime.now(datetime.timezone.utc)) + self._next_id % 1000  # distinct, ordered
        self._records[record_id] = Record(record_id, domain, rr, type.upper(), value, ttl, line, now, priority)
        return record_id

    def records(self, domain: str) -> list[dict[str, Any]]:
        """The zone's records in Alibaba's JSON shape, oldest first."""
        return [r.to_json() for r in sorted(self._records.values(), key=lambda r: r.created) if r.domain == domain]

    def _zone(self, name: str | None) -> str:
        if not name:
            raise missing("DomainName")
        if name not in self.zones:
            raise ApiError(400, "InvalidDomainName.NoExist",
                           "The specified domain name does not exist. Refresh the page and try again.")
        return name

    def DescribeDomains(self, p: dict[str, str]) -> dict[str, Any]:  # noqa: N802 (named as Alibaba's action)
        names = sorted(self.zones, key=lambda z: self.zones[z]["created"], reverse=True)  # newest first
        keyword = p.get("KeyWord", "").lower()
        if keyword:
            exact = p.get("SearchMode", "LIKE").upper() == "EXACT"
            names = [z for z in names if (z == keyword if exact else keyword in z)]
        page, number, size = _page(names, p, number="PageNumber", size="PageSize", default=20, maximum=100)
        domains = [{"DomainId": self.zones[z]["DomainId"], "DomainName": z, "PunyCode": z, "AliDomain": False,
                    "RecordCount": sum(r.domain == z for r in self._records.values()),
                    "VersionCode": "mianfei", "VersionName": "Alibaba Cloud DNS",
                    "CreateTime": f"{self.zones[z]['created']:%Y-%m-%dT%H:%MZ}",
                    "CreateTimestamp": _ms(self.zones[z]["created"]),
                    "DnsServers": {"DnsServer": ["ns1.alidns.com", "ns2.alidns.com"]}} for z in page]
        return {"Domains": {"Domain": domains}, "TotalCount": len(names), "PageNumber": number, "PageSize": size}

    def AddDomainRecord(self, p: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        domain = self._zone(p.get("DomainName"))
        for name in ("RR", "Type", "Value"):
            if not p.get(name):
                raise missing(name)
        rr, type_, value, line = p["RR"], p["Type"].upper(), p["Value"], p.get("Line", "default")
        for r in self._records.values():
            if (r.domain, r.rr.lower(), r.type, r.value, r.line) == (domain, rr.lower(), type_, value, line):
                raise ApiError(400, "DomainRecordDuplicate", "The DNS record already exists.")
        ttl = int(p.get("TTL", "600"))
        priority = int(p["Priority"]) if p.get("Priority") else None
        return {"RecordId": self.add_record(domain, rr, type_, value, ttl, line, priority)}

    def DeleteDomainRecord(self, p: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        record_id = p.get("RecordId") or ""
        if not record_id:
            raise missing("RecordId")
        if self._records.pop(record_id, None) is None:
            raise ApiError(400, "DomainRecordNotBelongToUser", "The DNS record does not belong to you.")
        return {"RecordId": record_id}

    def DescribeSubDomainRecords(self, p: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        sub = (p.get("SubDomain") or "").rstrip(".").lower()
        if not sub:
            raise missing("SubDomain")
        if p.get("DomainName"):
            zone = self._zone(p["DomainName"])
        else:  # Alibaba finds the domain itself: here, the longest zone the account has
            zones = [z for z in self.zones if sub == z or sub.endswith("." + z)]
            zone = self._zone(max(zones, key=len) if zones else sub)
        wanted = [r for r in self._records.values()
                  if r.domain == zone and r.fqdn().lower() == sub
                  and (not p.get("Type") or r.type == p["Type"].upper())
                  and (not p.get("Line") or r.line == p["Line"])]
        wanted.sort(key=lambda r: r.created, reverse=True)
        page, number, size = _page(wanted, p, number="PageNumber", size="PageSize", default=20, maximum=100)
        return {"DomainRecords": {"Record": [r.to_json() for r in page]}, "TotalCount": len(wanted),
                "PageNumber": number, "PageSize": size}

    def DescribeDomainRecords(self, p: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        zone = self._zone(p.get("DomainName"))
        wanted = [r for r in self._records.values() if r.domain == zone]
        mode, keyword = p.get("SearchMode", "").upper(), p.get("KeyWord", "").lower()
        if mode in ("LIKE", "EXACT") or (not mode and keyword):
            if keyword:
                exact = mode == "EXACT"
                wanted = [r for r in wanted if any((k == keyword if exact else keyword in k)
                                                   for k in (r.rr.lower(), r.value.lower()))]
        else:  # ADVANCED, or no mode and no KeyWord: fuzzy RR and value, exact type, line and status
            if p.get("RRKeyWord"):
                wanted = [r for r in wanted if p["RRKeyWord"].lower() in r.rr.lower()]
            if p.get("ValueKeyWord"):
                wanted = [r for r in wanted if p["ValueKeyWord"].lower() in r.value.lower()]
            for key in ("TypeKeyWord", "Type"):
                if p.get(key):
                    wanted = [r for r in wanted if r.type == p[key].upper()]
            if p.get("Line"):
                wanted = [r for r in wanted if r.line == p["Line"]]
        wanted.sort(key=lambda r: r.created, reverse=p.get("Direction", "DESC").upper() != "ASC")
        page, number, size = _page(wanted, p, number="PageNumber", size="PageSize", default=20, maximum=500)
        return {"DomainRecords": {"Record": [r.to_json() for r in page]}, "TotalCount": len(wanted),
                "PageNumber": number, "PageSize": size}


# --- Certificate Management Service (CAS) 2020-04-07 -----------------------------------------

CAS_NAME_LIMIT = 63


@dataclass
class CasCertificate:
    cert_id: int
    name: str
    cert: str
    key: str
    chain: list[x509.Certificate] = field(repr=False)

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    def expired(self, now: datetime.datetime) -> bool:
        return self.leaf.not_valid_after_utc < now

    def summary(self) -> dict[str, Any]:
        """The members ListUserCertificateOrder returns for OrderType CERT or UPLOAD."""
        leaf, der = self.leaf, self.leaf.public_bytes(serialization.Encoding.DER)
        try:
            sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = sans.get_values_for_type(x509.DNSName)
        except x509.ExtensionNotFound:
            names = []
        cn = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        issuer = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
        return {
            "CertificateId": self.cert_id, "Name": self.name,
            "CommonName": str(cn[0].value) if cn else (names[0] if names else ""),
            "Fingerprint": hashlib.sha1(der).hexdigest().upper(),  # noqa: S324 (Alibaba's field is SHA-1)
            "Sha2": hashlib.sha256(der).hexdigest().upper(),
            "SerialNo": f"{leaf.serial_number:x}",
            "Issuer": str(issuer[0].value) if issuer else leaf.issuer.rfc4514_string(),
            "Sans": ",".join(names),
            "StartDate": f"{leaf.not_valid_before_utc:%Y-%m-%d}", "EndDate": f"{leaf.not_valid_after_utc:%Y-%m-%d}",
            "Expired": self.expired(datetime.datetime.now(datetime.timezone.utc)),
            "Upload": True, "InstanceId": f"cas-upload-{self.cert_id}", "ResourceGroupId": "rg-fakeresourcegroup",
            "OrgName": "", "Province": "", "City": "", "Country": "",
        }


class CasState:
    """Certificates uploaded to CAS. ``upload`` seeds one as the console would; ``certificates`` reads."""

    def __init__(self) -> None:
        self.certificates: dict[int, CasCertificate] = {}
        self._next_id = 14500001

    def upload(self, name: str, cert_pem: str, key_pem: str) -> int:
        if len(name) > CAS_NAME_LIMIT:
            raise ApiError(400, "InvalidParameter.Name",  # stand-in
                           f"The certificate name is longer than {CAS_NAME_LIMIT} characters.")
        if any(c.name == name for c in self.certificates.values()):
            # Alibaba documents no code for this; users report the message below ("名称重复，请重新输入。").
            raise ApiError(400, "NameRepeat", "The certificate name already exists.")  # stand-in code
        chain, _ = _load_pair(cert_pem, key_pem)
        cert_id = self._next_id
        self._next_id += 1
        self.certificates[cert_id] = CasCertificate(cert_id, name, cert_pem, key_pem, chain)
        return cert_id

    def UploadUserCertificate(self, p: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        for name in ("Name", "Cert", "Key"):
            if not p.get(name):
                raise missing(name)
        return {"CertId": self.upload(p["Name"], p["Cert"], p["Key"])}

    def ListUserCertificateOrder(self, p: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        order_type = p.get("OrderType", "CPACK").upper()
        now = datetime.datetime.now(datetime.timezone.utc)
        certs = list(self.certificates.values()) if order_type in ("CERT", "UPLOAD") else []  # no orders here
        status = p.get("Status", "").upper()
        soon = now + datetime.timedelta(days=30)
        if status == "EXPIRED":
            certs = [c for c in certs if c.expired(now)]
        elif status == "WILLEXPIRED":
            certs = [c for c in certs if not c.expired(now) and c.leaf.not_valid_after_utc < soon]
        elif status == "ISSUED" or not status:  # no Status: the valid ones, issued or about to expire
            certs = [c for c in certs if not c.expired(now)]
        keyword = p.get("Keyword", "").lower()
        entries = [c.summary() for c in sorted(certs, key=lambda c: c.cert_id, reverse=True)]
        if keyword:
            entries = [e for e in entries if any(keyword in str(e[k]).lower()
                                                 for k in ("Sans", "CommonName", "Name", "InstanceId"))]
        page, number, size = _page(entries, p, number="CurrentPage", size="ShowSize", default=50, maximum=100)
        return {"CertificateOrderList": page, "TotalCount": len(entries), "CurrentPage": number, "ShowSize": size}

    def GetUserCertificateDetail(self, p: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        if not p.get("CertId"):
            raise missing("CertId")
        cert = self.certificates.get(int(p["CertId"])) if p["CertId"].isdigit() else None
        if cert is None:
            raise ApiError(400, "Certificate.NotFind", "The certificate does not exist.")  # stand-in for CAS
        s = cert.summary()
        out = {"Id": cert.cert_id, "Name": cert.name, "Common": s["CommonName"], "Fingerprint": s["Fingerprint"],
               "Sha2": s["Sha2"], "CertSha2": s["Sha2"], "SerialNo": s["SerialNo"], "Issuer": s["Issuer"],
               "Sans": s["Sans"], "StartDate": s["StartDate"], "EndDate": s["EndDate"], "Expired": s["Expired"],
               "NotBefore": _ms(cert.leaf.not_valid_before_utc), "NotAfter": _ms(cert.leaf.not_valid_after_utc),
               "BuyInAliyun": False, "CertIdentifier": f"{cert.cert_id}-cn-hangzhou", "InstanceId": s["InstanceId"],
               "Algorithm": "EC" if isinstance(cert.leaf.public_key(), ec.EllipticCurvePublicKey) else "RSA"}
        if p.get("CertFilter", "false").lower() != "true":
            out.update({"Cert": cert.cert, "Key": cert.key})
        return out


# --- CDN 2018-05-10 -------------------------------------------------------------------------


class CdnState:
    """Accelerated domains and their HTTPS settings. ``add_domain`` seeds; ``domains[name]`` reads."""

    def __init__(self, cas: CasState) -> None:
        self.cas = cas
        self.domains: dict[str, dict[str, Any]] = {}
        for name in ("cdn.example.com", "static.example.com"):
            self.add_domain(name)

    def add_domain(self, name: str) -> None:
        self.domains[name] = {"SSLProtocol": "off"}

    def SetCdnDomainSSLCertificate(self, p: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        domain = p.get("DomainName")
        if not domain:
            raise missing("DomainName")
        protocol = p.get("SSLProtocol")
        if not protocol:
            raise missing("SSLProtocol")
        if protocol not in ("on", "off"):
            raise ApiError(400, "InvalidSSLProtocol.ValueNotSupported", "The specified SSLProtocol is invalid.")
        if domain not in self.domains:
            raise ApiError(404, "InvalidDomain.NotFound", "The domain provided does not exist in our records.")
        setting: dict[str, Any] = {"SSLProtocol": protocol}
        if protocol == "on":
            cert_type = p.get("CertType", "upload")
            if cert_type == "cas":
                region = p.get("CertRegion", "cn-hangzhou")
                if region not in ("cn-hangzhou", "ap-southeast-1"):
                    raise ApiError(400, "Abs.CertRegion.ValueNotSupported", "CertRegion is not supported.")
                cert_id = int(p["CertId"]) if p.get("CertId", "").isdigit() else None
                if cert_id not in self.cas.certificates:
                    raise ApiError(400, "Certificate.NotFind", "The certificate does not exist.")
                setting.update(CertType="cas", CertId=cert_id, CertRegion=region, CertName=p.get("CertName"))
            elif cert_type == "upload":
                for name in ("SSLPub", "SSLPri"):
                    if not p.get(name):
                        raise ApiError(400, f"{name}.MissingParameter", f"The {name} parameter is required.")
                _load_pair(p["SSLPub"], p["SSLPri"])
                setting.update(CertType="upload", SSLPub=p["SSLPub"], CertName=p.get("CertName"))
            else:
                raise ApiError(400, "SetDomainCertificate.ParameterError", "The specified parameters are invalid.")
        self.domains[domain] = setting
        return {}


# --- API Gateway (CloudAPI) 2016-07-14 ------------------------------------------------------

DEFAULT_GROUP = "8d7f9e2c1b0a4f5e8d7c6b5a4f3e2d1c"


class ApiGatewayState:
    """API groups, their custom domains and the certificate each serves. ``add_domain`` seeds."""

    def __init__(self) -> None:
        self.groups: dict[str, dict[str, dict[str, Any] | None]] = {}
        self.add_domain(DEFAULT_GROUP, "api.example.com")

    def add_domain(self, group_id: str, domain: str) -> None:
        self.groups.setdefault(group_id, {})[domain] = None

    def SetDomainCertificate(self, p: dict[str, str]) -> dict[str, Any]:  # noqa: N802
        for name in ("GroupId", "DomainName", "CertificateName"):
            if not p.get(name):
                raise missing(name)
        group = self.groups.get(p["GroupId"])
        if group is None:
            raise ApiError(404, "NotFoundApiGroup", "The specified API group does not exist.")  # stand-in
        if p["DomainName"] not in group:
            raise ApiError(404, "NotFoundDomain", "The specified domain is not bound to the group.")  # stand-in
        if not p.get("CertificateBody") or not p.get("CertificatePrivateKey"):
            raise ApiError(400, "InvalidCertificate", "CertificateBody and CertificatePrivateKey are required.")
        chain, _ = _load_pair(p["CertificateBody"], p["CertificatePrivateKey"])
        group[p["DomainName"]] = {"CertificateName": p["CertificateName"], "CertificateBody": p["CertificateBody"],
                                  "serial": chain[0].serial_number}
        return {}


def write_certificate_files(work: Path, names: list[str], *, days: int = 60, rsa_key: bool = False,
                            expired: bool = False) -> None:
    """A work dir's cert.pem, chain.pem and cert.key (PKCS#8, as step 02 writes it) from a throwaway CA.

    For clients to upload: a certificate the fake's CAS, CDN and API Gateway accept.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    key = rsa.generate_private_key(65537, 2048) if rsa_key else ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Intermediate")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=400))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    start = now - datetime.timedelta(days=days + 10 if expired else 1)
    leaf = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=True)
            .sign(ca_key, hashes.SHA256()))
    work.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (work / "cert.pem").write_bytes(leaf.public_bytes(pem))
    (work / "chain.pem").write_bytes(ca.public_bytes(pem))
    (work / "cert.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
    os.chmod(work / "cert.key", 0o600)


# --- the server -----------------------------------------------------------------------------


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a certificate for 127.0.0.1; returns (cert, key, bundle) file paths.

    The bundle is the system's roots (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE or certifi's) plus the CA.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake Alibaba Cloud test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    cert_path, key_path, bundle_path = directory / "server.pem", directory / "server.key", directory / "bundle.pem"
    cert_path.write_bytes(leaf.public_bytes(pem))
    key_path.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    import certifi

    base = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    bundle_path.write_bytes(Path(base).read_bytes() + b"\n" + ca.public_bytes(pem))
    return cert_path, key_path, bundle_path


class FakeAlibaba:
    """The fake's state, its address and what it was asked. See the module docstring for use."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.server: ThreadingHTTPServer | None = None
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Back to the initial state: one AccessKey, the seeded zones and domains, no calls, no nonces."""
        with self.lock:
            self.access_keys: dict[str, AccessKey] = {ACCESS_KEY_ID: AccessKey(ACCESS_KEY_SECRET)}
            self.calls: list[Call] = []
            self.nonces: set[tuple[str, str]] = set()
            self.clock_offset = datetime.timedelta(0)  # the fake's clock minus the real one
            self.dns = DnsState()
            self.cas = CasState()
            self.cdn = CdnState(self.cas)
            self.apigateway = ApiGatewayState()
            self.misbehaviours: dict[str, Misbehaviour] = {}
            self.generation = getattr(self, "generation", 0) + 1  # a trickle of an earlier test stops

    def misbehave(self, action: str, how: Misbehaviour) -> None:
        """Answer ``action`` this way from now on, until ``reset()``."""
        with self.lock:
            self.misbehaviours[action] = how

    def add_access_key(self, key_id: str, secret: str, security_token: str | None = None) -> None:
        with self.lock:
            self.access_keys[key_id] = AccessKey(secret, security_token)

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.timezone.utc) + self.clock_offset

    @property
    def base_url(self) -> str:
        assert self.server is not None, "the fake is not started"
        return f"https://127.0.0.1:{self.server.server_address[1]}"

    def url(self, service: str) -> str:
        """The endpoint to give a client for ``service``: alidns, cas, cdn or apigateway."""
        assert service in SERVICES, service
        return f"{self.base_url}/{service}"

    def endpoint_overrides(self, *services: str) -> list[str]:
        """``--endpoint-override SERVICE=URL`` options pointing ``services`` (default all) here."""
        return [a for s in services or ("cas", "cdn", "apigateway") for a in ("--endpoint-override",
                                                                               f"{s}={self.url(s)}")]

    @property
    def ca_bundle(self) -> str:
        return str(self.directory / "bundle.pem")

    def env(self, **extra: str) -> dict[str, str]:
        """An environment for a client process: the fake's TLS trusted, the fake's valid AccessKey."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ALIBABA_CLOUD_", "ACME_"))}
        env.update({"REQUESTS_CA_BUNDLE": self.ca_bundle, "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_KEY_ID,
                    "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY_SECRET, "PYTHONUTF8": "1"})
        env.update(extra)
        return env

    def trusted(self, monkeypatch: pytest.MonkeyPatch) -> FakeAlibaba:
        """Reset, and trusted by this test process (requests' CA bundle): for in-process clients."""
        self.reset()
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", self.ca_bundle)
        return self

    def with_keys(self, monkeypatch: pytest.MonkeyPatch) -> FakeAlibaba:
        """Reset, trusted, and this test process holding the fake's AccessKey (no STS token)."""
        self.reset()
        for name, setting in self.env().items():
            if name.startswith("ALIBABA_CLOUD_") or name == "REQUESTS_CA_BUNDLE":
                monkeypatch.setenv(name, setting)
        monkeypatch.delenv("ALIBABA_CLOUD_SECURITY_TOKEN", raising=False)
        return self

    def actions(self) -> list[str]:
        """The actions called so far that succeeded, in order."""
        return [c.action for c in self.calls if c.error is None]

    def calls_of(self, action: str) -> list[Call]:
        return [c for c in self.calls if c.action == action and c.error is None]

    def start(self) -> None:
        cert, key, _ = make_tls(self.directory)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, name="fake-alibaba", daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # -- one request ---------------------------------------------------------------------

    def handle(self, method: str, raw_path: str, headers: dict[str, str], body: bytes
               ) -> tuple[int, dict[str, Any], str]:
        """Authenticate, dispatch and answer one request: (status, JSON, service name)."""
        path, _, query_string = raw_path.partition("?")
        prefix = path.strip("/").split("/")[0]
        version = headers.get("x-acs-version", "")
        service = prefix if prefix in SERVICES else BY_VERSION.get(version, "")
        action = headers.get("x-acs-action", "")
        pairs = parse_qsl(query_string, keep_blank_values=True)
        params = dict(pairs)
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        call = Call(service, action, params, dict(headers))
        with self.lock:
            self.calls.append(call)
            try:
                if not service:
                    raise ApiError(404, "InvalidAction.NotFound",
                                   "Specified api is not found, please check your url and method.")
                if len(pairs) != len(dict(pairs)):
                    raise ApiError(400, "InvalidParameter", "A parameter appears twice in the query.")  # stand-in
                self._authenticate(method, path, dict(pairs), headers, body)
                if version != SERVICES[service][0]:
                    raise ApiError(400, "InvalidVersion", "Specified parameter Version is not valid.")
                state = {"alidns": self.dns, "cas": self.cas, "cdn": self.cdn, "apigateway": self.apigateway}[service]
                operation = getattr(state, action, None) if re.fullmatch(r"[A-Z][A-Za-z]+", action) else None
                if operation is None:
                    raise ApiError(404, "InvalidAction.NotFound",
                                   "Specified api is not found, please check your url and method.")
                return 200, operation(params), service
            except ApiError as exc:
                call.error = exc.code
                return exc.status, {"Code": exc.code, "Message": exc.message}, service

    def _authenticate(self, method: str, path: str, query: dict[str, str], headers: dict[str, str],
                      body: bytes) -> None:
        """Alibaba's checks, with the expected signature computed by Alibaba's SDK code."""
        auth = headers.get("authorization", "")
        m = re.fullmatch(r"ACS3-HMAC-SHA256 Credential=([^,]+),SignedHeaders=([^,]+),Signature=([0-9a-f]{64})", auth)
        if not m:
            raise ApiError(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
        key_id, signed_names = m.group(1), m.group(2).split(";")
        key = self.access_keys.get(key_id)
        if key is None:
            raise ApiError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        needed = {"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce",
                  "x-acs-content-sha256"} | ({"x-acs-security-token"} if "x-acs-security-token" in headers else set())
        unsigned = sorted(needed - set(signed_names))
        absent = [name for name in signed_names if name not in headers]
        if unsigned or absent:
            raise ApiError(400, "IncompleteSignature", "The request signature does not conform to Aliyun standards: "
                           f"unsigned {unsigned}, signed but absent {absent}.")
        content_sha = headers["x-acs-content-sha256"]
        if content_sha != hashlib.sha256(body).hexdigest():
            raise ApiError(400, "SignatureDoesNotMatch", "x-acs-content-sha256 is not the SHA-256 of the body.")
        try:
            date = datetime.datetime.strptime(headers["x-acs-date"], "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise ApiError(400, "InvalidTimeStamp.Format",  # stand-in
                           "Specified time stamp or date value is not well formatted.") from None
        if abs(date.replace(tzinfo=datetime.timezone.utc) - self.now()) > MAX_SKEW:
            raise ApiError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
        request = types.SimpleNamespace(method=method, pathname=path, query=query,
                                        headers={name: headers[name] for name in signed_names})
        expected = OpenApiUtil.get_authorization(request, "ACS3-HMAC-SHA256", content_sha, key_id, key.secret)
        if not hmac.compare_digest(expected, auth):
            raise ApiError(400, "SignatureDoesNotMatch", "Specified signature does not match our calculation.")
        if key.security_token is not None and headers.get("x-acs-security-token") != key.security_token:
            raise ApiError(400, "InvalidSecurityToken.MismatchWithAccessKey",
                           "Specified security token does not match the access key.")
        nonce = (key_id, headers["x-acs-signature-nonce"])
        if nonce in self.nonces:
            raise ApiError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
        self.nonces.add(nonce)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeAlibaba
    server_version = "FakeAlibabaCloud/1.0"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length)
        headers = {name.lower(): value for name, value in self.headers.items()}
        status, answer, service = self.fake.handle(method, self.path, headers, body)
        request_id = str(uuid.uuid4()).upper()
        answer = {"RequestId": request_id, **answer}
        if status >= 300 and service:
            _, product, host = SERVICES[service]
            answer["HostId"] = host
            answer["Recommend"] = (f"https://api.aliyun.com/troubleshoot?q={answer['Code']}&product={product}"
                                   f"&requestId={request_id}")
        how = self.fake.misbehaviours.get(headers.get("x-acs-action", ""), Misbehaviour())
        data = how.raw if how.raw is not None else json.dumps(how.change(answer) if how.change else answer).encode()
        self.send_response(how.status or status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-acs-request-id", request_id)
        self.end_headers()
        if how.trickle:
            self._trickle(data, how.trickle)
        else:
            self.wfile.write(data)

    def _trickle(self, data: bytes, delay: float) -> None:
        """One byte at a time, until the client hangs up or the test is over (``reset()``)."""
        generation = self.fake.generation
        try:
            for i in range(len(data)):
                if self.fake.generation != generation:
                    break
                self.wfile.write(data[i:i + 1])
                self.wfile.flush()
                time.sleep(delay)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        self.close_connection = True

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The Date header, from the fake's clock (which a test may set off by ``clock_offset``)."""
        return email.utils.format_datetime(self.fake.now(), usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the request line holds every parameter, private keys included."""


_running: FakeAlibaba | None = None


@pytest.fixture(scope="session")
def fake_alibaba(tmp_path_factory: pytest.TempPathFactory):
    """The fake, started once per test session; call ``reset()`` at the start of a test for fresh state.

    Each test module that imports this fixture gets its own session-scoped copy of it from
    pytest; they all share the one running server.
    """
    global _running
    if _running is None:
        _running = FakeAlibaba(tmp_path_factory.mktemp("fake-alibaba"))
        _running.start()
    yield _running
    _running.stop()
