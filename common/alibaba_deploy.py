"""Putting the certificate to work on Alibaba Cloud (step 20): CAS, then CDN and API Gateway.

One function per API action, each naming the API and its version. Requests are signed by
:mod:`common.alibaba` (ACS3-HMAC-SHA256); credentials come from the environment only.

  CAS  (Certificate Management Service, 2020-04-07)  ListUserCertificateOrder, UploadUserCertificate
  CDN  (2018-05-10)                                   SetCdnDomainSSLCertificate with CertType=cas
  API Gateway (CloudAPI, 2016-07-14)                  SetDomainCertificate with the PEM itself
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import alibaba, certs, workdir
from .errors import AcmeError, UsageError
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

# What to do about the errors a user can fix, by Alibaba's error code.
HINTS = {
    "InvalidAccessKeyId.NotFound": f"Alibaba does not know this AccessKey: check {alibaba.ENV_ACCESS_KEY_ID}",
    "InvalidAccessKeyId.Inactive": "this AccessKey is disabled: enable it in the RAM console or use another",
    "SignatureDoesNotMatch": f"check {alibaba.ENV_ACCESS_KEY_SECRET}: it does not belong to the AccessKey",
    "InvalidSecurityToken.Expired": f"the STS token expired: get a new one into {alibaba.ENV_SECURITY_TOKEN}",
    "InvalidSecurityToken.MismatchWithAccessKey": f"{alibaba.ENV_SECURITY_TOKEN} belongs to another AccessKey",
    "Forbidden.RAM": "the RAM user may not call this action: attach the policy in docs/put-to-work.md",
    "NoPermission": "the RAM user may not call this action: attach the policy in docs/put-to-work.md",
    "InvalidDomain.NotFound": "no CDN domain of that name in this account: check --cdn-domain",
    "Abs.CertRegion.ValueNotSupported": "use --cert-region cn-hangzhou (China) or ap-southeast-1 (international)",
}


class AlibabaDeployError(AcmeError):
    """Alibaba Cloud (or the network to it) said no: exit status 1, one or more lines to show."""

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
    def sha256(self) -> str:
        """The leaf's SHA-256 fingerprint, upper-case hex as CAS shows it (``Sha2``)."""
        return hashlib.sha256(self.leaf.public_bytes(serialization.Encoding.DER)).hexdigest().upper()

    @property
    def sha1(self) -> str:
        """The leaf's SHA-1 fingerprint, as CAS's ``Fingerprint`` field holds it."""
        return hashlib.sha1(self.leaf.public_bytes(serialization.Encoding.DER)).hexdigest().upper()  # noqa: S324

    @property
    def first_name(self) -> str:
        names = certs.san_names(self.leaf)
        return names[0] if names else self.leaf.subject.rfc4514_string()

    def describe(self) -> str:
        return f"serial {self.leaf.serial_number:x}, expires {self.leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"


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
    suffix = f"-{bundle.leaf.not_valid_after_utc:%Y%m%d}-{bundle.sha256[:6].lower()}"
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


@dataclass
class Api:
    """Alibaba Cloud as this step sees it: one AccessKey and an endpoint per service."""

    credentials: alibaba.Credentials
    endpoints: dict[str, str]
    session: requests.Session

    def call(self, service: str, action: str, version: str, params: dict[str, Any], about: str = "") -> dict[str, Any]:
        """One action; Alibaba's refusal becomes an AcmeError (exit status 1) with its code, message and a hint."""
        try:
            return alibaba.call(self.endpoints[service], action, version, params, self.credentials,
                                session=self.session)
        except alibaba.AlibabaError as exc:
            hint = HINTS.get(exc.code)
            where = f" for {about}" if about else ""
            lines = [f"{SERVICE_NAMES[service]} {action}{where} failed: {exc}"]
            raise AlibabaDeployError(lines + ([f"  ({hint})"] if hint else [])) from None


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
    try:
        credentials = alibaba.credentials_from_env()
    except alibaba.MissingCredentialsError as exc:
        raise UsageError(str(exc)) from None
    return Api(credentials, endpoints, requests.Session())


def parse_endpoint_overrides(values: list[str]) -> dict[str, str]:
    """``SERVICE=URL`` pairs from --endpoint-override, checked."""
    out = {}
    for value in values:
        service, _, url = value.partition("=")
        if service not in SERVICE_NAMES:
            raise UsageError(f"--endpoint-override {value!r}: the service must be one of {', '.join(SERVICE_NAMES)}")
        if not re.fullmatch(r"https://[^\s/?#]+(/[^\s?#]*)?", url):
            raise UsageError(f"--endpoint-override {value!r}: the URL must start with https://")
        out[service] = url.rstrip("/")
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
    if not isinstance(answer.get("CertId"), int):
        raise AcmeError(f"CAS UploadUserCertificate answered without a CertId: {sorted(answer)}")
    return answer["CertId"]


def find_uploaded(api: Api, bundle: Bundle) -> dict[str, Any] | None:
    """The CAS entry of this very certificate (same SHA-256, or SHA-1 where Sha2 is missing), if uploaded."""
    keyword = bundle.first_name.removeprefix("*.")
    for page in range(1, CAS_MAX_PAGES + 1):
        answer = list_user_certificate_order(api, keyword, page)
        entries = answer.get("CertificateOrderList") or []
        for entry in entries:
            sha2, sha1 = str(entry.get("Sha2") or "").upper(), str(entry.get("Fingerprint") or "").upper()
            if sha2 == bundle.sha256 or (not sha2 and sha1 == bundle.sha1):
                return entry
        if not entries or page * CAS_PAGE_SIZE >= int(answer.get("TotalCount") or 0):
            return None
    return None


def upload_once(api: Api, bundle: Bundle, name: str) -> tuple[int, str | None]:
    """The CertId of this certificate in CAS, uploading it only if it is not there yet.

    Returns (CertId, the name it already had) or (CertId, None) after a fresh upload.
    """
    found = find_uploaded(api, bundle)
    if found and str(found.get("CertificateId", "")).isdigit():
        return int(found["CertificateId"]), str(found.get("Name") or "")
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
