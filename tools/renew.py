#!/usr/bin/env python3
"""renew.sh: keep certificates alive, unattended (cron or a systemd timer; see systemd/).

  ./renew.sh --dir DIR [options to save]     renew DIR if due, saving the options given for later runs
  ./renew.sh --all ROOT | --dir DIR ...      renew every due directory, each with its saved options
  ./renew.sh --status [--all ROOT | --dir DIR ...]   show each directory's state; asks no CA anything

Options saved in DIR/renew-options.json (private, 0600). Given with one --dir, each kind replaces only
the saved one of its kind and the others stay as saved; an empty value (--deploy-hook '') drops one:
  [--provider P ...]        options it does not know go to step 06 (06_dns_challenge.py)
  --http | --tls-alpn       prove the names with 06_http_challenge.py (or 06_tls_alpn_challenge.py) instead
                            (step 06 and its options are one kind: either given replaces both, so give
                            --http or --tls-alpn with them, as when they were first saved)
  --profile NAME            the certificate profile to order (05_new_order.py --profile)
  --new-key                 a new certificate key each time (02_create_cert_key.py --force)
  --password-file FILE | --password-env VAR   also write certificate.pfx (09); only the name is saved
  --deploy-hook CMD         run after a renewal (sh -c CMD), the details in its environment
  --on-failure-hook CMD     run after a failed renewal (sh -c CMD), the details in its environment
  --hook-timeout SECONDS    stop a hook still running after this long (default 600); it has failed
  --fallback DIR2           an account made by 01 and 04 at another CA, used when this one cannot issue
  --reset                   forget every saved option: save exactly the ones given (none: the defaults)
Run options: --force (renew now: no schedule, back-off or Retry-After), -v (steps show the HTTP exchange).
With --all, --deploy-hook, --on-failure-hook and --hook-timeout apply to the directories that saved none.

Each directory: 11_renewal_info.py --check asks the CA that issued the certificate when to renew
(ARI, RFC 9773; without an answer: when a third of its lifetime is left, half if it is shorter
than 10 days). When due, the current files are copied to DIR/previous/ and 02 (--new-key), 03,
05 (--replaces), 06, 07, 08 and 09 run, each a separate process; if one fails the previous files
are put back, so cert.key always matches cert.pem; so they are after Ctrl-C, SIGTERM or SIGHUP,
once the step under way has been stopped and has cleaned up, and after any other error in renew.sh
itself. A failure is recorded in DIR/renew-state.json (private, 0600)
and the next attempt waits 1 h, doubling to 24 h, never past half the time left before expiry; a
CA that paused the account (rateLimited with an unpause link) gets no more tries until --force.
A directory that cannot be read, locked or renewed fails alone: the others are still renewed.

Hook environment: ACME_DIR, ACME_NAMES, ACME_CERT_NOT_AFTER; after a renewal ACME_RENEWED_DIR,
ACME_RENEWED_NAMES, ACME_CERT_PATH, ACME_CHAIN_PATH, ACME_FULLCHAIN_PATH, ACME_KEY_PATH,
ACME_PFX_PATH (with a password option), ACME_ISSUER_URL; after a failure ACME_FAILED_DIR,
ACME_FAILED_NAMES, ACME_FAILED_STEP, ACME_ERROR, ACME_FAILURES, ACME_NEXT_TRY, ACME_UNPAUSE_URL.

Ends with one summary line per directory. Exit status: 0 none failed (renewed, not due, backing
off or locked by another run), 1 any failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import codecs
import dataclasses
import datetime
import os
import selectors
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from common import renewal_runs as runs  # noqa: E402
from common.errors import UsageError  # noqa: E402
from common.renewal_runs import RenewOptions  # noqa: E402

NOT_DUE = 3
# The files a renewal replaces, kept in previous/ until the new ones are written, put back on failure.
KEPT = ("cert.key", "cert.csr", "cert.pem", "chain.pem", "fullchain.pem", "certificate.pfx", "install-iis.ps1")
# What an order at the fallback CA makes in its scratch directory and hands to the work directory.
MOVED = ("cert.csr", "cert.pem", "chain.pem", "fullchain.pem")
PER_DIRECTORY = ("http", "tls_alpn", "profile", "new_key", "password_file", "password_env", "deploy_hook",
                 "on_failure_hook", "hook_timeout", "fallback", "reset")
RUN_WIDE = ("deploy_hook", "on_failure_hook", "hook_timeout")  # allowed with --all: for directories that saved none
# Signals that stop a run (Ctrl-C, the timer's service stopped, the terminal gone): the step under way is
# stopped the same way, and the previous files are put back before renew.sh ends.
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STEP_GRACE = 60.0  # seconds a stopped step has to clean up (remove its TXT records) before it is killed
# Seconds the stderr pipe is still read after the step has ended: what is left in it, not what a process
# the step left behind (which inherited the pipe) may write to it later.
PIPE_GRACE = 1.0


class Stopped(KeyboardInterrupt):
    """One of STOPPING arrived; ``signum`` says which (exit status 128 + signum)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _stop(signum, frame):
    raise Stopped(signum)


class SignalsHeld:
    """A block that a signal must not cut short (copying files, putting them back, waiting for a step to
    clean up): the first signal that arrives meanwhile is kept, and raised when the block ends."""

    def __enter__(self) -> SignalsHeld:
        self.received: int | None = None
        self.saved = {signum: signal.getsignal(signum) for signum in STOPPING}
        for signum in STOPPING:
            signal.signal(signum, self._keep)
        return self

    def _keep(self, signum, frame) -> None:
        self.received = self.received or signum

    def __exit__(self, kind, value, traceback) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        if self.received and kind is None:
            raise Stopped(self.received)


@dataclass
class Result:
    work: Path
    failed: bool
    line: str


@dataclass
class Ca:
    """A CA renew can order from: the directory's own account, or the fallback's."""

    account_dir: Path
    directory_url: str
    ca_bundle: str | None
    fallback: bool

    def identity(self) -> dict:
        return {"directory_url": self.directory_url, "ca_bundle": self.ca_bundle,
                "fallback": str(self.account_dir) if self.fallback else None}


class StepError(Exception):
    def __init__(self, step: str, status: int, stderr: str) -> None:
        super().__init__(f"{step} failed (exit status {status})")
        self.step, self.status, self.stderr = step, status, stderr


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def say(line: str = "", *, err: bool = False) -> None:
    print(line, file=sys.stderr if err else sys.stdout, flush=True)


# --- running the steps ---------------------------------------------------------------------------


def step(work: Path, script: str, *args: str, verbose: bool = False, quiet_error: bool = False,
         answers: tuple[int, ...] = ()) -> str:
    """Run one numbered step on ``work``, its output shown as it comes; returns what it wrote to stderr.

    Raises StepError. ``quiet_error`` holds the stderr back (alreadyReplaced is handled, not shown);
    ``answers`` are exit statuses that are an answer, not a failure (11 --check: 3, not due).
    """
    command = [sys.executable, str(HERE / script), "--dir", str(work), *(["-v"] if verbose else []), *args]
    say(f"-> {shlex.join([script, '--dir', str(work), *args])}")
    # A process group of its own: Ctrl-C reaches renew.sh alone, which stops the step and waits for it.
    group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, **group)
    seen: list[str] = []
    try:
        relay(proc, seen, quiet_error)
        status = proc.wait()
    except Stopped as exc:
        with SignalsHeld():  # the step must be over before any file is put back
            stop_step(proc, exc.signum, seen, quiet_error)
        raise
    finally:
        assert proc.stderr is not None
        proc.stderr.close()
    stderr = "".join(seen)
    if status != 0:
        if not quiet_error and status not in answers:
            say(f"renew: {script} failed (exit status {status})", err=True)
        raise StepError(script, status, stderr)
    return stderr


def relay(proc: subprocess.Popen, seen: list[str], quiet: bool) -> None:
    """Show the step's stderr as it comes (unless ``quiet``), keeping it in ``seen``, until the step has ended.

    Not until the end of the pipe: a process the step started and left running (a DNS hook's helper)
    holds it open, and renew.sh must not wait for that one. After the step's end the pipe is read for
    PIPE_GRACE more, for what the step wrote last.
    """
    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
    pending = ""

    def show(text: str) -> None:
        seen.append(text)
        if not quiet:
            sys.stderr.write(text)
            sys.stderr.flush()

    ended: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while ended is None or time.monotonic() - ended < PIPE_GRACE:
            if ended is None and proc.poll() is not None:
                ended = time.monotonic()
            if not selector.select(timeout=0.1):
                if ended is not None:
                    break  # the step has ended and wrote nothing more
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break  # the end of the pipe: nothing holds it open any more
            *lines, pending = (pending + decoder.decode(chunk)).split("\n")
            for line in lines:
                show(line + "\n")
    pending += decoder.decode(b"", final=True)
    if pending:
        show(pending)


def signal_group(proc: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` to every process of the group ``proc`` leads (it and what it started)."""
    try:
        os.killpg(proc.pid, signum)
    except ProcessLookupError:
        pass  # all of them have ended


def stop_step(proc: subprocess.Popen, signum: int, seen: list[str], quiet: bool) -> None:
    """Pass ``signum`` on to the step and wait until it has ended: it cleans up as on Ctrl-C (06 removes
    its TXT records); one that takes longer than STEP_GRACE is killed with what it started (its process
    group), so none of them can write anything after."""
    if proc.poll() is None:
        proc.send_signal(signum)
    killer = threading.Timer(STEP_GRACE, signal_group, (proc, signal.SIGKILL))
    killer.start()
    try:
        relay(proc, seen, quiet)
        proc.wait()
    finally:
        killer.cancel()


def load_cert(work: Path):
    from cryptography import x509

    from common import certs

    pem = (work / "cert.pem").read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    return cert, certs.fingerprint(cert), certs.san_names(cert)


def account_ca(account_dir: Path, *, fallback: bool) -> Ca:
    from common.workdir import WorkDir

    recorded = WorkDir(account_dir).read_account()
    return Ca(account_dir, recorded["directory_url"], recorded.get("ca_bundle"), fallback)


# --- one directory ---------------------------------------------------------------------------------


class Renewal:
    """One run's work on one directory (locked by the caller)."""

    def __init__(self, work: Path, options: RenewOptions, args: argparse.Namespace) -> None:
        self.work, self.options, self.args = work, options, args
        self.state = runs.read_state(work)
        self.cert, self.fingerprint, self.names = load_cert(work)
        self.not_after = self.cert.not_valid_after_utc
        self.primary = account_ca(work, fallback=False)
        issued = self.state.get("issued_by") or {}
        # Which CA issued cert.pem: the record says so if it is about this certificate, else its own account.
        self.issued_by = issued if issued.get("certificate") == self.fingerprint else self.primary.identity()

    def run(self) -> Result:
        self.recover()
        if self.args.force:
            say("Renewing now (--force): no schedule, no back-off, no waiting for the CA's Retry-After.")
        else:
            waiting = self.waiting()
            if waiting:
                return waiting
            due, when = self.schedule()
            if not due:
                say("Not due yet: nothing to do.")
                return self.finish(Result(self.work, False, f"not due until {when}"))
        return self.renew()

    def waiting(self) -> Result | None:
        """A pause or a back-off that stops this run before it asks anything."""
        paused = self.state.get("paused")
        if paused:
            link = paused.get("unpause_url")
            say(f"renew: the CA paused this account for these names on {paused.get('at')}: visit {link} to "
                f"unpause it, then run renew.sh --dir {self.work} --force", err=True)
            return Result(self.work, True, f"failed: paused by the CA; visit {link} then run with --force")
        next_try = runs.parse_time(self.state.get("next_try"))
        if next_try and now() < next_try:
            last = self.state.get("last_failure") or {}
            say(f"Backing off after {self.state.get('failures')} failed renewal(s) (last: {last.get('step')}: "
                f"{last.get('error')}): next try after {runs.text(next_try)} (--force tries now)")
            return self.finish(Result(self.work, False, f"skipped: backing off until {runs.text(next_try)}"))
        return None

    def schedule(self) -> tuple[bool, str]:
        """Ask the issuing CA (11 --check); without an answer, the saved decision or the lifetime rule."""
        from common import renewal

        ask = [] if self.issued_by.get("directory_url") == self.primary.directory_url else [
            "--server", self.issued_by["directory_url"],
            *(["--ca-bundle", self.issued_by["ca_bundle"]] if self.issued_by.get("ca_bundle") else [])]
        try:
            step(self.work, "11_renewal_info.py", "--check", *ask, verbose=self.args.verbose, answers=(NOT_DUE,))
            answered = True
        except StepError as exc:
            answered = exc.status == NOT_DUE
            if not answered:
                say("renew: no answer from the CA about when to renew: going by the saved decision, else by "
                    "the certificate's lifetime", err=True)
        decision = None
        saved = renewal_json(self.work)
        if saved and saved.get("certificate") == self.fingerprint:
            decision = saved.get("renew_at")
        if not decision:
            decision = renewal.lifetime_decision(self.cert).renew_at
            if answered:
                say("renew: 11 saved no decision; going by the certificate's lifetime", err=True)
        when = runs.parse_time(decision)
        return (when is None or now() >= when), decision

    # -- renewing ----------------------------------------------------------------------------------

    def recover(self) -> None:
        """A run killed outright (SIGKILL, a power cut) in the middle of a renewal put nothing back: if
        cert.key no longer matches cert.pem while previous/ holds this certificate with its key, restore it."""
        previous = self.work / "previous"
        if matching_pair(self.work) is not False or matching_pair(previous) is not True:
            return
        if (previous / "cert.pem").read_bytes() != (self.work / "cert.pem").read_bytes():
            return
        say(f"renew: cert.key in {self.work} does not match cert.pem (a renewal was cut short); putting the "
            "previous files back", err=True)
        self.restore(say_so=False)

    def renew(self) -> Result:
        previous = self.work / "previous"
        with SignalsHeld():  # previous/ is a whole set or the one before it, never a mix of the two
            previous.mkdir(exist_ok=True)
            os.chmod(previous, 0o700)
            for name in KEPT:
                copy_or_remove(self.work / name, previous / name)
        try:
            if self.options.new_key:
                step(self.work, "02_create_cert_key.py", "--force", verbose=self.args.verbose)
            step(self.work, "03_create_csr.py", "--names-from-cert", str(previous / "cert.pem"),
                 verbose=self.args.verbose)
            issuer = self.order_somewhere()
            if self.options.password_options():
                step(self.work, "09_export_pkcs12.py", "--force", *self.options.password_options(),
                     verbose=self.args.verbose)
        except StepError as exc:
            self.restore()
            return self.failed(exc.step, runs.error_line(exc.stderr, exc.status), exc.stderr)
        except KeyboardInterrupt:  # Ctrl-C, or the timer's service stopped (SIGTERM): leave a matching pair
            self.restore()  # the step was stopped and has ended (stop_step): nothing writes after this
            raise
        except Exception as exc:  # renew.sh's own trouble (a file it cannot write...): still a matching pair
            error = f"{type(exc).__name__}: {exc}"
            say(f"renew: {self.work}: {error}", err=True)
            self.restore()
            return self.failed("renew.sh", error, "")
        (self.work / "renewal.json").unlink(missing_ok=True)  # about the old certificate
        self.cert, self.fingerprint, self.names = load_cert(self.work)
        self.not_after = self.cert.not_valid_after_utc
        runs.record_success(self.state, {"certificate": self.fingerprint, **issuer.identity()})
        say(f"Renewed: {self.work}/cert.pem (the previous files are in {self.work}/previous/)")
        by = f"by the fallback CA {issuer.directory_url} ({issuer.account_dir})" if issuer.fallback else \
            f"by {issuer.directory_url}"
        line = f"renewed {by}, valid until {runs.text(self.not_after)}"
        if self.deploy() != 0:
            line += ", but the deploy hook failed"
            return self.finish(Result(self.work, True, line))
        return self.finish(Result(self.work, False, line))

    def order_somewhere(self) -> Ca:
        """Order at the primary CA; if it cannot issue, at once at the fallback's. Returns the CA that issued."""
        try:
            self.order(self.primary)
            return self.primary
        except StepError as exc:
            if not self.options.fallback:
                raise
            first = exc
        fallback_dir = Path(self.options.fallback)
        say(f"renew: the CA at {self.primary.directory_url} could not issue ({first.step}: "
            f"{runs.error_line(first.stderr, first.status)}); trying the fallback CA with the account in "
            f"{fallback_dir}", err=True)
        try:
            fallback = account_ca(fallback_dir, fallback=True)
        except Exception as exc:  # a fallback that cannot be used: the primary's failure is the one to report
            say(f"renew: the fallback in {fallback_dir} cannot be used: {exc}", err=True)
            raise first from None
        self.order(fallback)
        return fallback

    def order(self, ca: Ca) -> None:
        """05 to 08 at ``ca``: in the work directory for its own account, in a scratch directory for the fallback."""
        previous = str(self.work / "previous" / "cert.pem")
        options, where = self.options, self.work
        if ca.fallback:
            saved = runs.read_options(ca.account_dir)
            where = self.scratch(ca)
            if saved:  # the fallback CA's own profile and step-06 options
                options = RenewOptions(**{**vars(self.options), "profile": saved.profile,
                                          "challenge_step": saved.challenge_step,
                                          "challenge_options": saved.challenge_options})
            else:
                options = RenewOptions(**{**vars(self.options), "profile": None})
            step(where, "03_create_csr.py", "--names-from-cert", previous, verbose=self.args.verbose)
        profile = ["--profile", options.profile] if options.profile else []
        # replaces names a certificate of the CA being asked; another CA's certificate is nothing to it.
        if self.issued_by.get("directory_url") == ca.directory_url:
            try:
                step(where, "05_new_order.py", "--replaces", previous, *profile, verbose=self.args.verbose,
                     quiet_error=True)
            except StepError as exc:
                if runs.problem_type(exc.stderr) != "alreadyReplaced":
                    sys.stderr.write(exc.stderr)
                    say(f"renew: 05_new_order.py failed (exit status {exc.status})", err=True)
                    raise
                say("renew: the CA says an earlier order already replaces this certificate; ordering without "
                    "--replaces")
                step(where, "05_new_order.py", *profile, verbose=self.args.verbose)
        else:
            step(where, "05_new_order.py", *profile, verbose=self.args.verbose)
        challenge = options.challenge_step
        if not (HERE / challenge).exists():
            say(f"renew: {challenge} does not exist in this checkout: save other options for {where}", err=True)
            raise StepError(challenge, 2, f"error: {challenge} does not exist in this checkout\n")
        step(where, challenge, *options.challenge_options, verbose=self.args.verbose)
        step(where, "07_finalize.py", verbose=self.args.verbose)
        step(where, "08_get_certificate.py", verbose=self.args.verbose)
        if ca.fallback:
            for name in MOVED:
                os.replace(where / name, self.work / name)
            self.clean_scratch(where)

    def scratch(self, ca: Ca) -> Path:
        """A work directory for the fallback's order: its account (linked, not copied) and this directory's key."""
        where = self.work / runs.FALLBACK_WORK
        if where.exists():
            self.clean_scratch(where)
        where.mkdir(mode=0o700, exist_ok=True)
        for name, target in (("account.key", ca.account_dir / "account.key"),
                             ("account.json", ca.account_dir / "account.json"),
                             ("cert.key", self.work / "cert.key")):
            (where / name).symlink_to(target.resolve())
        return where

    @staticmethod
    def clean_scratch(where: Path) -> None:
        """Empty the scratch directory, except TXT records step 06 has yet to remove (its next run does)."""
        for item in where.iterdir():
            if item.name != "dns-records.json":
                item.unlink()
        if not any(where.iterdir()):
            where.rmdir()

    def restore(self, *, say_so: bool = True) -> None:
        previous = self.work / "previous"
        try:
            with SignalsHeld():  # a second Ctrl-C must not leave half the files put back
                for name in KEPT:
                    copy_or_remove(previous / name, self.work / name)
                scratch = self.work / runs.FALLBACK_WORK
                if scratch.exists():
                    self.clean_scratch(scratch)
        except Exception as exc:  # the failure is still recorded and reported; the next run tries again
            say(f"renew: could not put the previous files back in {self.work} ({type(exc).__name__}: {exc}): "
                f"they are in {previous}/", err=True)
            return
        if say_so:
            say(f"renew: failed; the previous certificate files are back in place in {self.work}", err=True)

    def failed(self, step_name: str, error: str, stderr: str) -> Result:
        link = runs.unpause_url(stderr)
        runs.record_failure(self.state, now(), self.not_after, {
            "step": step_name, "error": error, "problem": runs.problem_type(stderr), "unpause_url": link})
        if link:
            say(f"renew: the CA paused this account for these names: visit {link} to unpause it, then run "
                f"renew.sh --dir {self.work} --force; no more tries until then", err=True)
            line = f"failed: {step_name}: the CA paused the account; visit {link} then run with --force"
        else:
            line = f"failed: {step_name}: {error}; next try after {self.state['next_try']}"
        self.hook(self.options.on_failure_hook, "on-failure", {
            "ACME_FAILED_DIR": str(self.work), "ACME_FAILED_NAMES": " ".join(self.names),
            "ACME_FAILED_STEP": step_name, "ACME_ERROR": error, "ACME_FAILURES": str(self.state["failures"]),
            "ACME_NEXT_TRY": "" if link else self.state["next_try"], "ACME_UNPAUSE_URL": link or ""})
        return self.finish(Result(self.work, True, line))

    def deploy(self) -> int:
        pfx = self.work / "certificate.pfx"
        return self.hook(self.options.deploy_hook, "deploy", {
            "ACME_RENEWED_DIR": str(self.work), "ACME_RENEWED_NAMES": " ".join(self.names),
            "ACME_CERT_PATH": str(self.work / "cert.pem"), "ACME_CHAIN_PATH": str(self.work / "chain.pem"),
            "ACME_FULLCHAIN_PATH": str(self.work / "fullchain.pem"), "ACME_KEY_PATH": str(self.work / "cert.key"),
            "ACME_PFX_PATH": str(pfx) if self.options.password_options() and pfx.exists() else "",
            "ACME_ISSUER_URL": self.state["issued_by"]["directory_url"]})

    def hook(self, command: str | None, what: str, details: dict[str, str]) -> int:
        """Run the user's command line with ``sh -c``; names and paths reach it only through its environment.

        In a process group of its own, so that one still running after the hook timeout is stopped with all
        it started (SIGTERM, then SIGKILL); a signal that stops renew.sh meanwhile is passed on to it."""
        if not command:
            return 0
        say(f"Running the {what} hook...")
        env = {**os.environ, "ACME_DIR": str(self.work), "ACME_NAMES": " ".join(self.names),
               "ACME_CERT_NOT_AFTER": runs.text(self.not_after), **details}
        timeout = self.options.hook_timeout or runs.HOOK_TIMEOUT
        group = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}
        proc = subprocess.Popen(["sh", "-c", command], env=env, stdin=subprocess.DEVNULL, **group)
        try:
            status = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            say(f"renew: the {what} hook was still running after {timeout} s (--hook-timeout); stopping it",
                err=True)
            end_group(proc, signal.SIGTERM)
            status = 124  # timed out, as timeout(1) says
        except Stopped as exc:
            with SignalsHeld():
                end_group(proc, exc.signum)
            raise
        if status != 0:
            say(f"renew: the {what} hook failed (exit status {status})" + (
                f": the new certificate is in {self.work} but may not be in use" if what == "deploy" else ""),
                err=True)
        return status

    def finish(self, result: Result) -> Result:
        self.state["last_run"] = {"at": runs.text(now()), "result": result.line}
        runs.write_state(self.work, self.state)
        return result


def end_group(proc: subprocess.Popen, signum: int, grace: float = 10.0) -> None:
    """Send ``signum`` to ``proc``'s process group, and SIGKILL to it if ``proc`` has not ended ``grace`` s later."""
    signal_group(proc, signum)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        signal_group(proc, signal.SIGKILL)
        proc.wait()


def copy_or_remove(source: Path, target: Path) -> None:
    """Make ``target`` a copy of ``source`` (atomically, with its mode), or remove it if there is no ``source``."""
    from common.workdir import atomic_write

    if source.exists():
        atomic_write(target, source.read_bytes(), source.stat().st_mode & 0o777)
    else:
        target.unlink(missing_ok=True)


def matching_pair(where: Path) -> bool | None:
    """Whether cert.key in ``where`` is the key of cert.pem there; None if either is missing or unreadable."""
    from common import keys

    try:
        cert, _, _ = load_cert(where)
        key = keys.key_from_pem((where / "cert.key").read_bytes(), str(where / "cert.key"), "")
    except (OSError, ValueError, UsageError):
        return None
    return keys.same_public_key(cert, key)


def renewal_json(work: Path) -> dict | None:
    import json

    try:
        data = json.loads((work / "renewal.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def renew_directory(work: Path, options: RenewOptions, args: argparse.Namespace) -> Result:
    lock = runs.Lock(work)
    try:
        locked = lock.acquire()
    except OSError as exc:  # a directory renew.sh cannot write: this one fails, not the whole run
        line = (f"cannot lock {lock.path} ({exc.strerror or exc}): make the directory writable by the user "
                "renew.sh runs as")
        say(f"== {work}")
        say(f"renew: {line}", err=True)
        return Result(work, True, f"failed: {line}")
    if not locked:
        say(f"== {work}: another renewal of this directory is running; skipping it")
        return Result(work, False, "locked: another run is renewing it; skipped")
    try:
        say(f"== {runs.text(now())} renew {work}")
        try:
            return Renewal(work, options, args).run()
        except (OSError, ValueError, KeyError, UsageError) as exc:  # a damaged file here: this one fails, not all
            say(f"renew: {work}: {exc}", err=True)
            return Result(work, True, f"failed: {exc}")
        except Exception as exc:  # anything else, too: the other directories are still renewed
            say(f"renew: {work}: {type(exc).__name__}: {exc}", err=True)
            return Result(work, True, f"failed: {type(exc).__name__}: {exc}")
    finally:
        lock.release()


# --- --status ---------------------------------------------------------------------------------------


def status(work: Path) -> list[str]:
    """What a directory's files say, without asking any CA."""
    lines = [f"{work}"]
    try:
        cert, fingerprint, names = load_cert(work)
    except (OSError, ValueError) as exc:
        return [*lines, f"  certificate: unreadable ({exc})"]
    from common import renewal

    not_after = cert.not_valid_after_utc
    left = not_after - now()
    lines.append(f"  names: {' '.join(names)}")
    lines.append(f"  expires: {runs.text(not_after)}" + (f" (in {left.days} days)" if left.days >= 0 else " (EXPIRED)"))
    decision = renewal_json(work)
    if decision and decision.get("certificate") == fingerprint:
        source = ("the CA's window " + f"{decision.get('window_start')} to {decision.get('window_end')}"
                  if decision.get("source") == "ari" else "the certificate's lifetime")
        lines.append(f"  renewal time: {decision.get('renew_at')} (from {source})")
        if decision.get("ask_again_after"):
            lines.append(f"  the CA is asked again after {decision['ask_again_after']}")
    else:
        lines.append(f"  renewal time: none saved (11 has not asked the CA about this certificate); by its "
                     f"lifetime it would be {renewal.lifetime_decision(cert).renew_at}")
    try:
        state = runs.read_state(work)
        options = runs.read_options(work)
    except ValueError as exc:
        return [*lines, f"  {exc}"]
    issued = state.get("issued_by") or {}
    if issued.get("certificate") == fingerprint:
        lines.append(f"  issued by: {issued.get('directory_url')}" +
                     (f" (fallback {issued['fallback']})" if issued.get("fallback") else ""))
    last = state.get("last_run")
    lines.append(f"  last run: {last['at']}: {last['result']}" if last else "  last run: none")
    if state.get("failures"):
        failure = state.get("last_failure") or {}
        lines.append(f"  failures in a row: {state['failures']} (last {failure.get('at')}, "
                     f"{failure.get('step')}: {failure.get('error')})")
        lines.append(f"  back-off: no new try before {state.get('next_try')}")
    if state.get("paused"):
        lines.append(f"  PAUSED by the CA: visit {state['paused'].get('unpause_url')}, then renew with --force")
    lines.append(f"  saved options: {options.shown() if options else 'none'}")
    return lines


# --- the command line --------------------------------------------------------------------------------


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(prog="renew.sh", description=__doc__, add_help=False, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-h", "--help", action="store_true")
    p.add_argument("--dir", action="append", default=[], type=Path)
    p.add_argument("--all", type=Path, metavar="ROOT")
    p.add_argument("--status", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("--http", action="store_true")
    p.add_argument("--tls-alpn", action="store_true")
    p.add_argument("--profile")
    p.add_argument("--new-key", action="store_true")
    p.add_argument("--password-file")
    p.add_argument("--password-env")
    p.add_argument("--deploy-hook")
    p.add_argument("--on-failure-hook")
    p.add_argument("--hook-timeout", metavar="SECONDS")
    p.add_argument("--fallback", type=Path)
    p.add_argument("--reset", action="store_true")
    args, challenge_options = p.parse_known_args(argv)
    if args.help:
        print(__doc__.strip())
        sys.exit(0)
    return args, challenge_options


def is_given(args: argparse.Namespace, name: str) -> bool:
    return getattr(args, name) not in (None, False)


def given_options(args: argparse.Namespace, challenge_options: list[str]) -> dict | None:
    """The per-directory options on the command line, as the RenewOptions fields they replace (each kind
    replaces all its fields: step 06 and its options, the two password options); None if none were given."""
    if not challenge_options and not any(is_given(args, name) for name in PER_DIRECTORY):
        return None
    if args.http and args.tls_alpn:
        raise UsageError("--http and --tls-alpn choose different steps: give one")
    if args.password_file and args.password_env:
        raise UsageError("give the .pfx password with --password-file or --password-env, not both")
    challenge = runs.DNS_CHALLENGE
    if args.http:
        challenge = runs.HTTP_CHALLENGE
    if args.tls_alpn:
        challenge = runs.TLS_ALPN_CHALLENGE
    cwd = Path.cwd()
    fallback = None
    if args.fallback:
        fallback = str(args.fallback.absolute())
        for name in ("account.json", "account.key"):
            if not (args.fallback / name).exists():
                raise UsageError(f"--fallback {args.fallback}: no {name} there; make the account at the other CA "
                            "with 01_create_account_key.py and 04_new_account.py --dir DIR2 first")
    for word in challenge_options:
        if word in ("--dir", "--force") or word.startswith("--dir="):
            raise UsageError(f"{word} cannot be passed on to step 06")
    hook_timeout = None
    if args.hook_timeout:
        try:
            hook_timeout = int(args.hook_timeout)
        except ValueError:
            hook_timeout = 0
        if not 0 < hook_timeout <= 86400:
            raise UsageError(f"--hook-timeout {args.hook_timeout}: give a whole number of seconds from 1 to 86400")
    changes: dict = {}
    if args.http or args.tls_alpn or challenge_options:
        changes.update(challenge_step=challenge, challenge_options=runs.absolute_paths(challenge_options, cwd))
    if args.profile is not None:
        changes["profile"] = args.profile or None
    if args.new_key:
        changes["new_key"] = True
    if args.password_file is not None or args.password_env is not None:
        changes.update(password_file=str(Path(args.password_file).absolute()) if args.password_file else None,
                       password_env=args.password_env or None)
    for name in ("deploy_hook", "on_failure_hook"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name) or None
    if args.hook_timeout is not None:
        changes["hook_timeout"] = hook_timeout
    if args.fallback is not None:
        changes["fallback"] = fallback
    return changes


def merged(work: Path, changes: dict, reset: bool) -> RenewOptions:
    """What ``work`` saves: its saved options with the kinds given replaced, or (``reset``) only those given."""
    if reset:
        return RenewOptions(**changes)
    try:
        saved = runs.read_options(work)
    except ValueError as exc:
        raise UsageError(f"{exc}; or give --reset to replace it with the options given") from None
    return dataclasses.replace(saved or RenewOptions(), **changes)


def main(argv: list[str]) -> int:
    args, challenge_options = parse(argv)
    dirs = list(args.dir)
    if not dirs and not args.all and os.environ.get("ACME_DIR"):
        dirs = [Path(os.environ["ACME_DIR"])]
    if not dirs and not args.all:
        raise UsageError("give the work directory with --dir DIR (or set ACME_DIR), or every one under ROOT "
                         "with --all ROOT")
    if args.all:
        if not args.all.is_dir():
            raise UsageError(f"--all {args.all}: not a directory")
        dirs += [d for d in runs.find_work_dirs(args.all) if d not in dirs]
    given = given_options(args, challenge_options)
    single = len(args.dir) == 1 and not args.all
    if single and given is not None and not args.status and not (dirs[0] / "cert.pem").exists() \
            and (dirs[0] / "account.json").exists():
        # An account kept for another directory's --fallback: its own step-06 options and profile.
        options = merged(dirs[0], given, args.reset)
        path = runs.save_options(dirs[0], options)
        say(f"Saved in {path}: {options.shown()}; {dirs[0]} holds no certificate to renew (as another "
            "directory's --fallback, its profile and step-06 options are used)")
        return 0
    for work in args.dir:
        if not (work / "cert.pem").exists():
            raise UsageError(f"{work}/cert.pem not found: get the first certificate with steps 01 to 08")
    if args.status:
        if given is not None or args.force:
            raise UsageError("--status shows what is saved: give only --dir or --all with it")
        for work in dirs:
            say("\n".join(status(work)))
        return 0
    if given is not None and not single:
        extra = [w for w in challenge_options] + [f"--{n.replace('_', '-')}" for n in PER_DIRECTORY
                                                  if is_given(args, n) and n not in RUN_WIDE]
        if extra:
            raise UsageError(f"{' '.join(extra[:3])}: a directory's options are saved with --dir DIR alone; with --all "
                             "or several --dir only --deploy-hook, --on-failure-hook and --hook-timeout (for "
                             "directories that saved none)")
    chosen = None
    if given is not None and single:
        chosen = merged(dirs[0], given, args.reset)
        path = runs.save_options(dirs[0], chosen)
        say(f"Saved in {path} (later runs use them): {chosen.shown()}")
    if not dirs:
        say(f"Nothing to renew: no work directory with a cert.pem under {args.all}")
        return 0
    results = []
    for work in dirs:
        try:
            options = chosen or runs.read_options(work) or RenewOptions()
        except ValueError as exc:  # a damaged renew-options.json: this directory fails, the others run
            say(f"== {work}")
            say(f"renew: {exc}", err=True)
            results.append(Result(work, True, f"failed: {exc}"))
            continue
        if not single and given:  # run-wide hooks, for directories that saved none
            options.deploy_hook = options.deploy_hook or args.deploy_hook
            options.on_failure_hook = options.on_failure_hook or args.on_failure_hook
            options.hook_timeout = options.hook_timeout or given.get("hook_timeout")
        results.append(renew_directory(work, options, args))
    say("== Summary")
    for result in results:
        say(f"{result.work}: {result.line}")
    return 1 if any(r.failed for r in results) else 0


if __name__ == "__main__":
    for signum in STOPPING:
        signal.signal(signum, _stop)
    try:
        sys.exit(main(sys.argv[1:]))
    except UsageError as exc:
        print(f"renew: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        print(f"renew: interrupted by {exc or 'SIGINT'}", file=sys.stderr)
        sys.exit(128 + getattr(exc, "signum", signal.SIGINT))
