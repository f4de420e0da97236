"""The command-line contract every step shares: options, output levels and exit statuses.

Exit status 0: done. 1: the CA or the network said no. 2: bad input, a missing earlier
step, or another step still changing the work directory. Neither failure prints a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import acme_servers, jws, keys, wire, workdir
from .account import refuse_deactivated
from .errors import AcmeError, Interrupted, UsageError, printable

if TYPE_CHECKING:
    from .transport import Client

log = logging.getLogger("acme")

EXIT_OK, EXIT_CA, EXIT_USAGE = 0, 1, 2
WIRE_HELP = ("show every HTTP exchange with the CA; -vv: each as it crosses the wire (request line, headers, "
             "the JWS body as sent and decoded, the response as received)")
# Signals that end a step the way Ctrl-C does, so its cleanup runs (exit status 128 + N).
TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def parser(doc: str | None, *, network: bool = False, verbose: str | None = None) -> argparse.ArgumentParser:
    """An argument parser with the options every step takes; ``network`` adds the server ones.

    ``verbose`` says what -v shows, for steps that show something else than the ACME exchange.
    -v counts: -vv is the wire view (common/wire.py) on the steps that talk to the CA.
    """
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", type=Path, default=Path(os.environ.get("ACME_DIR") or "acme-work"),
                   help="work directory holding every file the steps share (default: $ACME_DIR or ./acme-work)")
    level = p.add_mutually_exclusive_group()
    level.add_argument("-v", "--verbose", action="count", default=0,
                       help=verbose or (WIRE_HELP if network else
                                       "show what was made, decoded (a key's JWK, the CSR, the .pfx algorithms)"))
    level.add_argument("-q", "--quiet", action="store_true", help="print only errors and warnings")
    if network:
        add_server_options(p)
    return p


def add_server_options(p: argparse.ArgumentParser) -> None:
    """--server, --ca-bundle, --allow-host and --timeout. Without --server, a step uses account.json's server."""
    from .transport import DEFAULT_TIMEOUT  # here, not at the top: only the steps that talk to the CA load requests

    p.add_argument("--server", metavar="NAME|URL",
                   help=f"{', '.join(acme_servers.SERVER_NAMES)} or a directory URL (default: the server in "
                        f"account.json, else $ACME_SERVER, else {acme_servers.DEFAULT_SERVER}); "
                        f"{', '.join(acme_servers.EAB_SERVERS)} need "
                        "External Account Binding (04_new_account.py --eab-kid)")
    p.add_argument("--ca-bundle", default=os.environ.get("ACME_CA_BUNDLE"), metavar="FILE",
                   help="also trust this CA for the server's TLS (default: $ACME_CA_BUNDLE)")
    p.add_argument("--allow-host", action="append", metavar="HOST",
                   default=os.environ.get("ACME_ALLOW_HOSTS", "").replace(",", " ").split(),
                   help="also follow URLs the CA sends on HOST, besides the directory's own host; repeatable "
                        "(default: $ACME_ALLOW_HOSTS, comma-separated)")
    p.add_argument("--timeout", type=seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help="give up after this long, waits the CA asks for included (default: %(default)s)")


def add_key_options(p: argparse.ArgumentParser, *, default: str, file: str, why: str) -> None:
    """--key-type and --force, for the two steps that create a key."""
    p.add_argument("--key-type", choices=keys.KEY_TYPES, default=default, help=f"default {default}: {why}")
    p.add_argument("--force", action="store_true", help=f"replace an existing {file}")


def create_key(args: argparse.Namespace, name: str, replaced_warning: str) -> None:
    """Steps 01 and 02: a fresh --key-type key saved 0600, never replacing one without --force."""
    work = work_dir(args)
    if not args.force:
        work.refuse_existing(name)  # before announcing anything: nothing will be created
    log.info("Creating %s key %s...", args.key_type, name)
    key = keys.generate_key(args.key_type)
    log.debug("  public JWK: %s", json.dumps(jws.jwk(key)))
    log.debug("  JWK thumbprint (RFC 7638): %s", jws.key_thumbprint(key))
    if work.write_key(name, key, force=args.force):
        log.warning("warning: replaced the old %s. %s", name, replaced_warning)
    log.info("Wrote %s (%s)", work.path(name), keys.describe_key(key))


def add_poll_options(p: argparse.ArgumentParser, *, first_wait: float) -> None:
    """--first-wait, for the steps that poll the order (06 and 07)."""
    p.add_argument("--first-wait", type=seconds, default=first_wait, metavar="SECONDS",
                   help="pause at least this long before the first poll; a longer Retry-After from the CA "
                        "wins (default: %(default)s)")


def port(text: str) -> int:
    """An argparse type: a TCP port number, 1 to 65535."""
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)")
    return int(text)


def seconds(text: str) -> float:
    """An argparse type: a number of seconds from 0 to a day."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds from 0 to 86400")
    return value


def run(main: Callable[[argparse.Namespace], int | None], p: argparse.ArgumentParser) -> NoReturn:
    """Parse the options, run ``main`` and turn its failures into one-line errors and exit statuses."""
    for stream in (sys.stdout, sys.stderr):  # a name like ☃.com must not crash a cp1252 console
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = p.parse_args()
    _setup_logging(args.verbose, args.quiet)
    for signum in TERMINATING:
        signal.signal(signum, _interrupt)
    try:
        status = main(args)  # a step may return an exit status of its own (11 --check: 3 = not due)
        _flush_stdout()
    except UsageError as exc:
        _error(str(exc))
        sys.exit(EXIT_USAGE)
    except AcmeError as exc:
        _error(*exc.lines())
        sys.exit(EXIT_CA)
    except OSError as exc:  # an unwritable --dir, a full disk: the user's to fix
        _error(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(128 + signal.SIGINT)
    except Interrupted as exc:
        print(f"interrupted by {exc}", file=sys.stderr)
        sys.exit(128 + exc.signum)
    except Exception as exc:  # a bug: still one line, the traceback only with -v
        if args.verbose:
            raise
        _error(f"internal error: {type(exc).__name__}: {exc} (run again with -v for the traceback)")
        sys.exit(EXIT_CA)
    sys.exit(status or EXIT_OK)


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM/SIGHUP: raise, so ``finally`` blocks clean up (records, temporary files) as on Ctrl-C."""
    for other in TERMINATING:
        signal.signal(other, signal.SIG_IGN)  # a second signal must not cut the cleanup short
    raise Interrupted(signum, signal.Signals(signum).name)


def _error(*lines: str) -> None:
    """Print an error; control characters a CA may have put in it are escaped."""
    print("error: " + "\n".join(printable(line) for line in lines), file=sys.stderr)


def work_dir(args: argparse.Namespace, *, lock: bool = True) -> workdir.WorkDir:
    """The --dir work directory, locked for this step (exit 2 if another step is changing it).

    ``lock=False`` is for the steps that only read it (20, 21): they may run beside any other.
    """
    return workdir.WorkDir(args.dir, lock_as=Path(sys.argv[0]).name if lock else None)


def connect(args: argparse.Namespace, work: workdir.WorkDir, *, account: dict | None = None,
            signing: bool = True) -> Client:
    """A client for the server the account lives on, signing with account.key.

    ``account`` is account.json's content; without it (step 04) the server comes from the
    options alone and requests are signed with the bare key (``jwk``). ``signing=False``
    is for steps that only read what anyone may (11: renewalInfo): account.key is optional.
    """
    recorded = account or {}
    server = args.server or recorded.get("directory_url") or os.environ.get("ACME_SERVER")
    if not server:
        server = acme_servers.DEFAULT_SERVER
        log.info("No --server given and none recorded in account.json: using %s (pass --server to choose)", server)
    directory_url, bundle = acme_servers.resolve_server(server)
    same_server = directory_url == recorded.get("directory_url")
    bundle = args.ca_bundle or bundle or (recorded.get("ca_bundle") if same_server else None)
    from .transport import Client  # here, not at the top: steps 01-03 and 09 start faster without requests

    key = work.read_key(workdir.ACCOUNT_KEY) if signing or work.exists(workdir.ACCOUNT_KEY) else None
    client = Client(
        directory_url,
        verify=acme_servers.tls_verify(bundle),
        key=key,
        kid=recorded.get("account_url") if same_server else None,
        store=workdir.SessionCache(work, directory_url),
        allowed_hosts=tuple(args.allow_host),
        timeout=args.timeout,
    )
    client.ca_bundle = bundle  # recorded by step 04 so later steps trust the same CA
    client.unreachable_hint = acme_servers.unreachable_hint(directory_url)
    return client


def connect_account(args: argparse.Namespace, work: workdir.WorkDir) -> Client:
    """A client for steps 05 to 14: the account from account.json, signing with ``kid``."""
    recorded = work.read_account()
    client = connect(args, work, account=recorded)
    if not client.kid:
        raise UsageError(f"account.json is for {recorded['directory_url']}, not {client.directory_url}: "
                         "run 04_new_account.py for this server")
    check_account(work, recorded, client)
    return client


def check_account(work: workdir.WorkDir, recorded: dict, client: Client) -> None:
    """account.json's account is usable with account.key: not deactivated, and the key it was registered with."""
    from . import rollover  # here: it brings requests, which steps 01-03 do without

    refuse_deactivated(recorded)
    interrupted = work.exists(rollover.NEW_ACCOUNT_KEY)
    if recorded.get("key_thumbprint") not in (None, jws.key_thumbprint(client.key)):
        raise UsageError(rollover.INTERRUPTED if interrupted else
                         "account.key is not the key account.json was registered with: run 04_new_account.py")
    if interrupted:  # the CA may still know account.key: let the step try, but say what to do if it fails
        log.warning("warning: %s", rollover.INTERRUPTED)


def confirm(action: str, *, yes: bool) -> None:
    """Go on only after --yes, or once the person at the terminal has typed "yes" to ``action``.

    For what cannot be undone (revoking, deactivating). Without a terminal (cron, a pipe) no
    person can answer, so the step refuses rather than take whatever stdin holds for a yes.
    """
    if yes:
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError(f"not going to {action} without a confirmation, and there is no terminal to ask on: "
                         "pass --yes")
    _flush_stdout()
    try:
        answer = input(f"{action[:1].upper()}{action[1:]}? This cannot be undone. Type yes to go on: ")
    except EOFError:
        answer = ""
    if answer.strip().lower() != "yes":
        raise UsageError("not confirmed: nothing was changed")


def _flush_stdout() -> None:
    """Flush now, so a reader that went away (``| head``) ends the step quietly, as with cat."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


class _PrintableArgs(logging.Filter):
    """Escape control characters in the values a log line shows: they may come from the CA."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(printable(str(a)) if isinstance(a, (str, BaseException)) else a for a in record.args)
        return True


def _setup_logging(verbose: int, quiet: bool) -> None:
    """Progress to stdout, warnings to stderr; -v adds the exchanges, -vv the wire, -q leaves errors only."""
    out = logging.StreamHandler(sys.stdout)
    out.addFilter(_BelowWarning())
    err = logging.StreamHandler(sys.stderr)
    err.setLevel(logging.WARNING)
    for handler in (out, err):
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(_PrintableArgs())
        log.addHandler(handler)
    # -q keeps warnings: they say what a --force just destroyed.
    log.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    wire.log.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO)  # its own logger, below "acme"
    log.propagate = False
    logging.raiseExceptions = False  # a closed stdout must not turn into a logging traceback
