"""Serving http-01 key authorizations (RFC 8555 §8.3): as files in a webroot, or from a server of our own.

For an http-01 challenge the CA fetches, over plain HTTP on port 80 of the name,

    http://<name>/.well-known/acme-challenge/<token>

and expects the key authorization (``token "." account-key-thumbprint``, §8.1) as the body.
It follows redirects, and it fetches from the Internet, often from several places at once.
Two ways to put the answer there, each a context manager that undoes itself on the way out,
however the step ends (success, an error, Ctrl-C, SIGTERM):

- :func:`webroot`: files under the document root of the web server that already answers
  port 80 (nginx, Apache, IIS ...). Written world-readable and atomically; exactly the files
  written, and the directories created, are removed afterwards.
- :func:`standalone`: a small HTTP server in a thread of the step, for a machine where
  nothing listens on port 80 yet. It answers only the tokens it was given.

:func:`self_check` fetches the URL once the way the CA will, so a web server that serves the
wrong directory shows up before a challenge is answered (a failed challenge ends the order).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import socketserver
import threading
import warnings
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import NoReturn
from urllib.parse import urlsplit

from . import challenges
from .errors import AcmeError, UsageError, despite_interrupts
from .listener import Server, client_address, listen_address, url_host
from .names import count, is_ip
from .resources import shown
from .workdir import PUBLIC, atomic_write

log = logging.getLogger("acme")

HTTP_PORT = 80  # the CA always starts at port 80 (§8.3); only test CAs such as Pebble let you change it
# RFC 8555 §8.3's example response uses this type; CAs accept any, and read the body only.
CONTENT_TYPE = "application/octet-stream"
PUBLIC_DIR = 0o755  # the web server often runs as another user: it must be able to enter the directories
# A key authorization is 43 + 1 + 43 characters; a self-check reads no more than this of an answer.
MAX_BODY = 4096
SELF_CHECK_TIMEOUT = 10.0
MAX_REDIRECTS = 10  # Let's Encrypt follows at most 10


def _path(token: str) -> str:
    """/.well-known/acme-challenge/<token>, or an AcmeError for a token that is not base64url (§8.1)."""
    try:
        return challenges.http01_path(token)
    except ValueError as exc:
        raise AcmeError(f"{exc}: {shown(token)}") from None


def _paths(key_authorizations: Mapping[str, str]) -> dict[str, str]:
    """URL path -> key authorization; every token is checked before any of them is used."""
    return {_path(token): key_authz for token, key_authz in key_authorizations.items()}


# --- --webroot -----------------------------------------------------------------------------------


class Webroot:
    """Key authorizations as files under a web server's document root (RFC 8555 §8.3).

    ``root`` is the directory the web server serves for ``http://<name>/``. Files go to
    ``root/.well-known/acme-challenge/<token>``, mode 0644, written atomically, so the web
    server never serves half a file. Leaving the ``with`` block removes exactly the files
    written and the directories created (when they are empty), and says so.
    """

    def __init__(self, root: Path, *, follow_links: bool = False) -> None:
        if not root.is_dir():
            raise UsageError(f"--webroot {root}: no such directory; give the directory your web server serves "
                             "for http://<name>/ (its document root)")
        self.root = root
        self.directory = root / ".well-known" / "acme-challenge"
        self.follow_links = follow_links
        self.written: list[Path] = []
        self.created: list[Path] = []

    def __enter__(self) -> Webroot:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        despite_interrupts(self.remove)

    def publish(self, key_authorizations: Mapping[str, str]) -> list[Path]:
        """Write one file per token (token -> key authorization); returns their paths."""
        files = {self.root / path.lstrip("/"): key_authz for path, key_authz in _paths(key_authorizations).items()}
        log.info("Writing %s to %s...", count(len(files), "key authorization file"), self.directory)
        self._make_directories()
        for path, key_authz in files.items():
            self._refuse_links()  # again: the directories may have changed since
            # Noted before the write: a token names one challenge, so a file already there can
            # only be this challenge's, left by an earlier run that was killed. The write goes to
            # a temporary file created exclusively (O_EXCL, O_NOFOLLOW) and renamed over the name,
            # which replaces whatever is there, a symbolic link included, and never follows it.
            self.written.append(path)
            atomic_write(path, key_authz.encode("ascii"), PUBLIC)
            log.info("  %s", path)
        return list(files)

    def _refuse_links(self) -> None:
        """Refuse to write through ``.well-known`` or ``acme-challenge`` when either is a link, unless allowed.

        Whoever can write into the document root (a web application, an upload) could plant a
        link there and have this step, often run as root, write files elsewhere. A challenge
        directory shared between sites on purpose is a link too: the user says so with
        --follow-webroot-links.
        """
        if self.follow_links:
            return
        for directory in (self.directory.parent, self.directory):
            if _is_link(directory):
                try:
                    target = f" (to {os.readlink(directory)})"
                except (OSError, ValueError):
                    target = ""
                raise UsageError(f"--webroot {self.root}: {directory} is a link{target}; refusing to write "
                                 "through it. If the challenge directory is shared between sites on purpose, "
                                 "pass --follow-webroot-links")

    def _make_directories(self) -> None:
        for directory in (self.directory.parent, self.directory):
            self._refuse_links()
            try:
                directory.mkdir()
            except FileExistsError:
                continue  # the site's own, or a shared one: left as it is
            self.created.append(directory)
            os.chmod(directory, PUBLIC_DIR)  # mkdir's mode is filtered by the umask

    def remove(self) -> None:
        """Remove the files written and the directories created; safe to call again."""
        if self.written:
            log.info("Removing the key authorization files...")
        while self.written:
            path = self.written[-1]
            try:
                path.unlink(missing_ok=True)
                log.info("  removed %s", path)
            except OSError as exc:
                log.warning("warning: could not remove %s (%s): remove it by hand", path, exc.strerror or exc)
            self.written.pop()
        while self.created:
            directory = self.created[-1]
            try:
                directory.rmdir()
                log.info("  removed %s/ (this step created it)", directory)
            except FileNotFoundError:
                pass
            except OSError:  # not empty: something else put files there meanwhile
                log.info("  kept %s/: it holds other files now", directory)
            self.created.pop()


def webroot(root: Path, *, follow_links: bool = False) -> Webroot:
    """``with http01.webroot(DIR) as site: site.publish({token: key_authz})`` (RFC 8555 §8.3).

    ``follow_links`` allows ``.well-known`` or ``.well-known/acme-challenge`` to be a link
    (a challenge directory shared between sites); without it such a link is refused.
    """
    return Webroot(root, follow_links=follow_links)


def _is_link(path: Path) -> bool:
    """A symbolic link, or on Windows a junction, which leads elsewhere just the same."""
    is_junction = getattr(path, "is_junction", None)  # Python 3.12+
    return path.is_symlink() or bool(is_junction and is_junction())


# --- --standalone --------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Answers GET/HEAD for the published paths with their key authorization, 404 for anything else."""

    server: _Server
    timeout = 10  # a client that goes quiet loses its connection, not a thread forever
    server_version = "acme-step-by-step"
    sys_version = ""

    def do_GET(self) -> None:  # noqa: N802 (the name http.server looks for)
        self._answer(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(with_body=False)

    def _answer(self, *, with_body: bool) -> None:
        path = urlsplit(self.path).path  # origin-form, or absolute-form as RFC 9112 §3.2.2 allows
        key_authz = self.server.responses.get(path)
        if key_authz is None:
            status, body, content_type = 404, b"not found\n", "text/plain"
        else:
            status, body, content_type = 200, key_authz.encode("ascii"), CONTENT_TYPE
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)
        client = client_address(self.client_address[0])
        if status == 200:
            # CAs fetch from several places, several times each: one line per place is enough.
            first = (path, client) not in self.server.served
            self.server.served.add((path, client))
            log.log(logging.INFO if first else logging.DEBUG, "  served %s to %s", path, client)
        else:  # the Internet's scanners knock on port 80 all day: only -v shows them
            log.debug("  404 for %s %s from %s", self.command, _printable_path(self.path), client)

    def log_message(self, format: str, *args: object) -> None:
        pass  # logged above, through the step's logger


def _printable_path(path: str) -> str:
    return path[:200].encode("ascii", "backslashreplace").decode("ascii")


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a stuck client must not keep the step from ending

    def __init__(self, address: tuple, family: int, *, dual_stack: bool) -> None:
        self.address_family = family
        self.dual_stack = dual_stack
        self.responses: dict[str, str] = {}
        self.served: set[tuple[str, str]] = set()  # (path, client address) pairs answered so far
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self.dual_stack:  # one IPv6 socket that takes IPv4 too: the CA may come either way
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # TCPServer's bind, not HTTPServer's: that one also looks up this machine's DNS name.
        socketserver.TCPServer.server_bind(self)


class Standalone(Server):
    """A small HTTP server answering http-01 requests (RFC 8555 §8.3) from a thread of the step.

    It listens from ``__enter__`` to ``__exit__`` on ``port`` of ``address`` (default: every
    address, IPv6 and IPv4) and answers GET and HEAD for
    ``/.well-known/acme-challenge/<token>`` of the published tokens only; every other
    request gets 404. A port that is taken, or that needs root, is a UsageError before
    anything is served.
    """

    def __init__(self, port: int = HTTP_PORT, address: str | None = None) -> None:
        self.port = port
        self.address = address
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        family, address, dual_stack = listen_address(self.address, self.port)
        try:
            self._server = _Server(address, family, dual_stack=dual_stack)
        except OSError as exc:
            raise UsageError(self._bind_error(exc)) from None
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="http-01 server", daemon=True)
        self._thread.start()
        log.info("Listening for the CA's http-01 requests on %s", self.where)

    def _bind_error(self, exc: OSError) -> str:
        if exc.errno in (errno.EACCES, errno.EPERM):
            return (f"--standalone cannot listen on {self.where}: ports below 1024 need root (or the "
                    "CAP_NET_BIND_SERVICE capability); run as root, or use --webroot with the web server you have")
        if exc.errno == errno.EADDRINUSE:
            return (f"--standalone cannot listen on {self.where}: another program (a web server?) already does; "
                    "stop it for the run, or use --webroot with it")
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"--bind {self.address}: not an address of this machine"
        return f"--standalone cannot listen on {self.where}: {exc.strerror or exc}"

    def publish(self, key_authorizations: Mapping[str, str]) -> list[str]:
        """Serve these (token -> key authorization) from now on; returns the URL paths."""
        if self._server is None:
            raise RuntimeError("the http-01 server is not running")
        responses = _paths(key_authorizations)
        self._server.responses = responses  # one assignment: the server thread sees all or nothing
        log.info("Serving %s:", count(len(responses), "key authorization"))
        for path in responses:
            log.info("  %s", path)
        return list(responses)

    def stop(self) -> None:
        """Stop listening; safe to call again."""
        if self._server is None:
            return
        if self._thread is not None and self._thread.is_alive():
            self._server.shutdown()  # returns once serve_forever has stopped
        self._server.server_close()
        self._server, self._thread = None, None
        log.info("Stopped the http-01 server on %s", self.where)


def standalone(port: int = HTTP_PORT, address: str | None = None) -> Standalone:
    """``with http01.standalone(80) as server: server.publish({token: key_authz})`` (RFC 8555 §8.3)."""
    return Standalone(port, address)


# --- the self-check ------------------------------------------------------------------------------


def self_check(name: str, token: str, key_authz: str, *, port: int = HTTP_PORT,
               resolve_timeout: float = 5.0) -> bool:
    """Fetch ``http://<name>/.well-known/acme-challenge/<token>`` as the CA will (RFC 8555 §8.3).

    ``name`` may be an IP address (RFC 8738 §4): the CA fetches ``http://192.0.2.10/...``, or
    ``http://[2001:db8::1]/...`` for IPv6, and so does this.

    True if it answers ``key_authz`` (trailing whitespace aside, as CAs allow); False, with a
    note, when ``name`` does not resolve from here, so there is nothing to check; a UsageError
    saying what came back otherwise. Redirects are followed, as the CA follows them, and an
    HTTPS certificate met on the way is not checked (the CA does not check it either).
    This machine may see another server than the CA does (split DNS, NAT without hairpin):
    that is what ``--no-self-check`` is for.
    """
    import requests  # here, not at the top: nothing else in this module needs it
    from urllib3.exceptions import InsecureRequestWarning

    if not is_ip(name) and not _resolves(name, resolve_timeout):
        log.info("Self-check of %s skipped: the name does not resolve from here", name)
        return False
    url = f"http://{url_host(name)}{'' if port == HTTP_PORT else f':{port}'}{_path(token)}"
    session = requests.Session()
    session.trust_env = False  # the CA uses no proxy, so neither does its rehearsal
    session.max_redirects = MAX_REDIRECTS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", InsecureRequestWarning)
            with session.get(url, timeout=SELF_CHECK_TIMEOUT, verify=False, stream=True) as resp:
                body = resp.raw.read(MAX_BODY + 1, decode_content=True)
                status = resp.status_code
    except requests.TooManyRedirects:
        _self_check_failed(url, name, port, f"redirects more than {MAX_REDIRECTS} times")
    except requests.Timeout:
        _self_check_failed(url, name, port, f"did not answer within {SELF_CHECK_TIMEOUT:.0f} s")
    except requests.RequestException as exc:
        _self_check_failed(url, name, port, f"cannot be fetched ({_root_cause(exc)})")
    finally:
        session.close()
    if status != 200:
        _self_check_failed(url, name, port, f"answers HTTP {status}")
    text = body.decode("utf-8", "replace").rstrip()
    if text != key_authz:
        _self_check_failed(url, name, port, f"answers {_short(text)!r} instead of the key authorization")
    log.info("Self-check: %s answers the key authorization", url)
    return True


def _self_check_failed(url: str, name: str, port: int, what: str) -> NoReturn:
    raise UsageError(f"self-check: {url} {what}; the CA would see the same and the order would be lost. "
                     f"Make port {port} of {name} serve it, or pass --no-self-check if this machine "
                     "does not see the name as the Internet does (split DNS, NAT)")


def _root_cause(exc: BaseException) -> str:
    """'Connection refused' rather than requests' 'HTTPConnectionPool(...): Max retries exceeded ...'."""
    seen: list[BaseException] = []
    cause: BaseException | None = exc
    while cause is not None and cause not in seen and len(seen) < 10:
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror
        seen.append(cause)
        inner = getattr(cause, "reason", None)  # urllib3's MaxRetryError
        if not isinstance(inner, BaseException):
            inner = next((a for a in cause.args if isinstance(a, BaseException)), None)
        cause = inner or cause.__cause__ or cause.__context__
    return _short(str(exc))


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _resolves(name: str, timeout: float) -> bool:
    """True if ``name`` has an address from here, asked in a thread so a dead resolver costs ``timeout`` at most."""
    found: list[bool] = []

    def lookup() -> None:
        try:
            found.append(bool(socket.getaddrinfo(name, HTTP_PORT, type=socket.SOCK_STREAM)))
        except (OSError, UnicodeError):
            found.append(False)

    thread = threading.Thread(target=lookup, name="self-check lookup", daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(found and found[0])
