"""Putting the certificate to work on Alibaba Cloud (step 20): CAS, then CDN and API Gateway.

One function per API action, each naming the API and its version. Requests are signed by
:mod:`common.alibaba` (ACS3-HMAC-SHA256); endpoints, error hints and paging are
:mod:`common.alibaba_api`'s, shared with Alidns; credentials come from the environment only.

  CAS  (Certificate Management Service, 2020-04-07)  ListUserCertificateOrder, UploadUserCertificate
  CDN  (2018-05-10)                                   SetCdnDomainSSLCertificate with CertType=cas
  API Gateway (CloudAPI, 2016-07-14)                  SetDomainCertificate with the PEM itself
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import alibaba, alibaba_api, certs, workdir
from .cli import seconds as cli_seconds
from .errors import AcmeError, UsageError, bounded
from .keys import PrivateKey, same_public_key

log = logging.getLogger("acme")

CAS_VERSION = "2020-04-07"
CDN_VERSION = "2018-05-10"
CLOUDAPI_VERSION = "2016-07-14"

SERVICE_NAMES = {"cas": "CAS", "cdn": "CDN", "apigateway": "API Gateway"}
# CertRegion says where CDN finds a CAS certificate; CAS and CDN are called in that region.
CERT_REGIONS = {
    "cn-hangzhou": {"cas": "https://cas.aliyuncs.com", "cdn": "https://cdn.aliyuncs.com"},
    "ap-southeast-1": {"cas": "https://cas.ap-southeast-1.aliyuncs.com",
                       "cdn": "https://cdn.ap-southeast-1.aliyuncs.com"},
}
CAS_NAME_LIMIT = 63  # characters in an UploadUserCertificate Name
CAS_PAGE_SIZE = 50
CAS_MAX_PAGES = 20  # 1,000 uploaded certificates under one name is plenty
DEFAULT_TIMEOUT = 300.0  # seconds for every call of the step together (--timeout)

class AlibabaDeployError(AcmeError):
    """Some targets failed: exit status 1, the lines of each target's error (see :class:`Failures`)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(lines[0])
        self._lines = lines

    def lines(self) -> list[str]:
        return list(self._lines)


@dataclass(frozen=True)
class Bundle:
    """What gets deployed: the leaf, the chain after it, and the certificate key."""

    leaf: x509.Certificate
    chain: list[x509.Certificate]
    key: PrivateKey

    @property
    def fullchain_pem(self) -> str:
        return certs.certs_to_pem([self.leaf, *self.chain]).decode("ascii")

    @property
    def key_pem(self) -> str:
        """The key in the traditional form (BEGIN RSA/EC PRIVATE KEY), which every Alibaba product takes.

        Some of Alibaba's consoles and APIs have refused PKCS#8 ("BEGIN PRIVATE KEY"); none refuses this.
        """
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                      serialization.NoEncryption()).decode("ascii")

    @property
    def first_name(self) -> str:
        names = certs.san_names(self.leaf)
        return names[0] if names else self.leaf.subject.rfc4514_string()


def read_bundle(work: workdir.WorkDir) -> Bundle:
    """cert.pem, chain.pem and cert.key from the work dir, checked to belong together and be in date."""
    leaf = work.read_certificates(workdir.CERT)[0]
    chain = work.read_certificates(workdir.CHAIN)
    key = work.read_key(workdir.CERT_KEY)
    if not same_public_key(leaf, key):
        raise UsageError(f"{work.path(workdir.CERT)} is not for {work.path(workdir.CERT_KEY)}: "
                         "run 08_get_certificate.py again, or restore the key the certificate was issued for")
    if leaf.not_valid_after_utc <= datetime.datetime.now(datetime.timezone.utc):
        raise UsageError(f"{work.path(workdir.CERT)} expired on {leaf.not_valid_after_utc:%Y-%m-%d}: "
                         "get a new one (05_new_order.py to 08_get_certificate.py) before deploying")
    return Bundle(leaf, chain, key)


def certificate_name(bundle: Bundle, override: str | None = None) -> str:
    """The CAS name: ``--cert-name``, or the first name, the expiry date and a piece of the fingerprint.

    The fingerprint piece tells apart two certificates for the same name that expire the same day.
    """
    if override is not None:
        if not override.strip() or len(override) > CAS_NAME_LIMIT:
            raise UsageError(f"--cert-name must have 1 to {CAS_NAME_LIMIT} characters, not {len(override)}")
        return override
    suffix = f"-{bundle.leaf.not_valid_after_utc:%Y%m%d}-{certs.fingerprint(bundle.leaf, separator='')[:6].lower()}"
    base = re.sub(r"[^A-Za-z0-9.-]", "-", bundle.first_name.replace("*", "wildcard"))
    return base[:CAS_NAME_LIMIT - len(suffix)] + suffix


# --- options and the connection ----------------------------------------------------------------


def add_options(p: argparse.ArgumentParser) -> None:
    """The options of step 20."""
    p.add_argument("--cdn-domain", action="append", default=[], metavar="NAME",
                   help="a CDN domain to serve the certificate (repeat for several)")
    p.add_argument("--cert-region", choices=sorted(CERT_REGIONS), default="cn-hangzhou",
                   help="where CAS keeps the certificate: cn-hangzhou for China accounts, ap-southeast-1 for "
                        "international ones (default: %(default)s)")
    p.add_argument("--api-gateway-group", metavar="ID", help="the API Gateway group whose domain gets the certificate")
    p.add_argument("--api-gateway-domain", metavar="NAME", help="that group's custom domain")
    p.add_argument("--region", metavar="REGION", help="the API Gateway group's region, e.g. cn-hangzhou")
    p.add_argument("--cert-name", metavar="NAME",
                   help=f"the name in CAS (at most {CAS_NAME_LIMIT} characters; default: first name, expiry date "
                        "and fingerprint)")
    p.add_argument("--endpoint-override", action="append", default=[], metavar="SERVICE=URL",
                   help="call SERVICE (cas, cdn or apigateway) at this https:// URL instead (for tests)")
    p.add_argument("--timeout", type=_positive_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="give up on Alibaba Cloud after this long, all calls together; each one also gives up "
                        f"after {alibaba_api.EXCHANGE_DEADLINE:g} s (default: %(default)s)")


def _positive_seconds(text: str) -> float:
    value = cli_seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give more than 0 seconds")
    return value


@dataclass
class Api:
    """Alibaba Cloud as this step sees it: one AccessKey and an endpoint per service."""

    credentials: alibaba.Credentials
    endpoints: dict[str, str]
    session: requests.Session
    timeout: float = DEFAULT_TIMEOUT  # --timeout: every call of the step must end within it
    started: float = field(default_factory=time.monotonic)

    def call(self, service: str, action: str, version: str, params: dict[str, Any], about: str = "") -> dict[str, Any]:
        """One action; Alibaba's refusal becomes an AlibabaApiError (exit status 1): its code, message and a hint.

        Each exchange gets what is left of --timeout, and at most alibaba_api's EXCHANGE_DEADLINE.
        """
        where = f" for {about}" if about else ""
        what = f"{SERVICE_NAMES[service]} {action}{where}"
        left = self.timeout - (time.monotonic() - self.started)
        if left <= 0:
            raise AcmeError(f"{what}: not called, --timeout {self.timeout:g} s is up; raise --timeout to wait longer")
        seconds = min(alibaba_api.EXCHANGE_DEADLINE, left)
        hint = f" (what was left of --timeout {self.timeout:g})" if seconds < alibaba_api.EXCHANGE_DEADLINE else ""
        return alibaba_api.call(self.endpoints[service], action, version, params, self.credentials,
                                session=self.session, what=what, timeout=seconds, timeout_hint=hint)


def connect(args: argparse.Namespace) -> Api:
    """Check the options, read the credentials from the environment, pick each service's endpoint."""
    gateway = (args.api_gateway_group, args.api_gateway_domain)
    if any(gateway) and not all(gateway):
        raise UsageError("--api-gateway-group and --api-gateway-domain go together: give both")
    if args.api_gateway_group and not args.region:
        raise UsageError("--api-gateway-group needs --region (the group's region, e.g. cn-hangzhou)")
    if args.region and not re.fullmatch(r"[a-z]{2}(-[a-z0-9]+)+", args.region):
        raise UsageError(f"--region {args.region!r} is not a region id such as cn-hangzhou")
    endpoints = dict(CERT_REGIONS[args.cert_region])
    if args.region:
        endpoints["apigateway"] = f"https://apigateway.{args.region}.aliyuncs.com"
    endpoints.update(parse_endpoint_overrides(args.endpoint_override))
    return Api(alibaba_api.credentials(), endpoints, requests.Session(), args.timeout)


def parse_endpoint_overrides(values: list[str]) -> dict[str, str]:
    """``SERVICE=URL`` pairs from --endpoint-override, checked."""
    out = {}
    for value in values:
        service, _, url = value.partition("=")
        if service not in SERVICE_NAMES:
            raise UsageError(f"--endpoint-override {value!r}: the service must be one of {', '.join(SERVICE_NAMES)}")
        endpoint = alibaba_api.endpoint_url(url)
        if endpoint is None:
            raise UsageError(f"--endpoint-override {value!r}: the URL must start with https://")
        out[service] = endpoint
    return out


# --- Certificate Management Service (CAS), API 2020-04-07 ------------------------------------


def list_user_certificate_order(api: Api, keyword: str, page: int) -> dict[str, Any]:
    """CAS ListUserCertificateOrder (2020-04-07) with OrderType=UPLOAD: one page of uploaded certificates.

    Each entry has CertificateId, Name, Sha2 (SHA-256), Fingerprint (SHA-1), SerialNo, EndDate...
    """
    return api.call("cas", "ListUserCertificateOrder", CAS_VERSION,
                    {"OrderType": "UPLOAD", "Keyword": keyword, "CurrentPage": page, "ShowSize": CAS_PAGE_SIZE})


def upload_user_certificate(api: Api, name: str, bundle: Bundle) -> int:
    """CAS UploadUserCertificate (2020-04-07): the full chain and the key under ``name``; returns the CertId."""
    answer = api.call("cas", "UploadUserCertificate", CAS_VERSION,
                      {"Name": name, "Cert": bundle.fullchain_pem, "Key": bundle.key_pem}, name)
    cert_id = answer.get("CertId")
    if isinstance(cert_id, bool) or not isinstance(cert_id, int):
        raise alibaba_api.malformed("CAS UploadUserCertificate", "no CertId (a number) in its answer", answer)
    return cert_id


def find_uploaded(api: Api, bundle: Bundle) -> dict[str, Any] | None:
    """The CAS entry of this very certificate (same SHA-256, or SHA-1 where Sha2 is missing), if uploaded."""
    keyword = bundle.first_name.removeprefix("*.")
    # CAS shows both fingerprints as upper-case hex: Sha2 (SHA-256) and Fingerprint (SHA-1).
    sha256, sha1 = (certs.fingerprint(bundle.leaf, algorithm, separator="") for algorithm in ("sha256", "sha1"))
    what = "CAS ListUserCertificateOrder"
    entries = alibaba_api.paged(lambda page: list_user_certificate_order(api, keyword, page),
                                ("CertificateOrderList",), CAS_PAGE_SIZE, CAS_MAX_PAGES, what)
    for entry in entries:
        entry_sha2 = alibaba_api.text_field(entry, "Sha2", what, required=False).upper()
        entry_sha1 = alibaba_api.text_field(entry, "Fingerprint", what, required=False).upper()
        if entry_sha2 == sha256 or (not entry_sha2 and entry_sha1 == sha1):
            return entry
    return None


def upload_once(api: Api, bundle: Bundle, name: str) -> tuple[int, str | None]:
    """The CertId of this certificate in CAS, uploading it only if it is not there yet.

    Returns (CertId, the name it already had, cut and escaped for display) or (CertId, None)
    after a fresh upload.
    """
    found = find_uploaded(api, bundle)
    if found:
        what = "CAS ListUserCertificateOrder"
        cert_id = alibaba_api.text_field(found, "CertificateId", what)
        if not re.fullmatch(r"[0-9]{1,19}", cert_id):
            raise alibaba_api.malformed(what, "a CertificateId that is not a number", cert_id)
        return int(cert_id), bounded(alibaba_api.text_field(found, "Name", what, required=False))
    return upload_user_certificate(api, name, bundle), None


# --- CDN, API 2018-05-10 ----------------------------------------------------------------------


def set_cdn_domain_ssl_certificate(api: Api, domain: str, cert_id: int, cert_region: str) -> None:
    """CDN SetCdnDomainSSLCertificate (2018-05-10): HTTPS on ``domain`` with the CAS certificate ``cert_id``.

    CertType=cas points at the certificate in CAS instead of uploading it again (CertType=upload);
    SetDomainServerCertificate, the older action, is deprecated.
    """
    api.call("cdn", "SetCdnDomainSSLCertificate", CDN_VERSION,
             {"DomainName": domain, "SSLProtocol": "on", "CertType": "cas", "CertId": cert_id,
              "CertRegion": cert_region}, domain)


# --- API Gateway (CloudAPI), API 2016-07-14 --------------------------------------------------


def set_domain_certificate(api: Api, group_id: str, domain: str, name: str, bundle: Bundle) -> None:
    """CloudAPI SetDomainCertificate (2016-07-14): the group's custom domain gets the chain and key."""
    api.call("apigateway", "SetDomainCertificate", CLOUDAPI_VERSION,
             {"GroupId": group_id, "DomainName": domain, "CertificateName": name,
              "CertificateBody": bundle.fullchain_pem, "CertificatePrivateKey": bundle.key_pem},
             f"{domain} (group {group_id})")


class Failures:
    """Per-target errors collected so that one bad domain does not keep the others waiting.

    ``with failures.collect():`` around each target; leaving ``with Failures()`` raises them all.
    """

    def __init__(self) -> None:
        self.errors: list[AcmeError] = []

    @contextlib.contextmanager
    def collect(self) -> Iterator[None]:
        try:
            yield
        except AcmeError as exc:
            self.errors.append(exc)

    def __enter__(self) -> Failures:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and self.errors:
            raise AlibabaDeployError([line for error in self.errors for line in error.lines()])
