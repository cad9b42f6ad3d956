#!/usr/bin/env python3
"""A Waymark agent in one file: Python 3.8+, standard library only.

It registers an agent id, long-polls for the tasks whose executor is that id,
keeps each claimed task's lease alive with heartbeats while it works, and
completes or fails every task with its lease.

Usage:

    # An admin makes a token that acts only for this agent:
    waymark token create --name echo --agent-id echo-agent --json | jq -r .token

    export WAYMARK_SERVER=http://127.0.0.1:8080    # the default
    export WAYMARK_TOKEN=<that agent token>
    ./examples/agent.py --agent-id echo-agent                # run until Ctrl-C / SIGTERM
    ./examples/agent.py --agent-id echo-agent --once         # one batch, then exit

Options (see --help): --agent-id (or WAYMARK_AGENT_ID), --capabilities a,b,
--description TEXT, --max N tasks per claim (default 1), --wait S seconds per
long poll (default 30, at most 60), --once.

Registration: at start the agent is registered when it is not yet, and its
capabilities and description are updated when --capabilities or --description
differ from the registry. An agent token may register its own id; an operator
or admin token may register any.

The work is done by handle(task) below: replace it with your own. As shipped it
answers a task whose input is {"text": "..."} with the word count and the text
upper-cased, sleeps for {"sleep_s": N}, and fails on {"fail": "why"}.

Output: one line per task on stdout (completed / failed / lost); problems go to
stderr with what to do about them. Ctrl-C or SIGTERM finishes the tasks already
claimed (their leases are this agent's) and exits; a second Ctrl-C quits at once.

Exit status: 0 when done; 1 after an API or network error that retrying does not
fix (with --once, any); 2 for a configuration error such as a missing
WAYMARK_TOKEN; 130 when interrupted twice.
"""

import argparse
import datetime
import http.client
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request

# ---------------------------------------------------------------------------
# The work. Replace handle() with what your agent does.
# ---------------------------------------------------------------------------


def handle(task):
    """Does the work of one task and answers its output (a JSON object).

    `task` is the task as the API shows it: `id`, `key`, `name`, `input`,
    `attempts`, `max_attempts`, `unit_id`, `client_id`...

    Raise to fail the attempt: the exception's message becomes the task's
    error. A ValueError means the input is wrong, so the task fails without a
    retry; any other exception is retried while attempts remain.

    For long work, call lease_lost() now and then and stop when it is True: the
    task was taken back (cancelled, or its lease expired) and its result would
    be refused.
    """
    data = task.get("input")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError("the input must be a JSON object")
    if "fail" in data:
        raise RuntimeError(str(data["fail"]) or "asked to fail")
    output = {}
    if "sleep_s" in data:
        seconds = data["sleep_s"]
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= 3600:
            raise ValueError("sleep_s must be a number of seconds from 0 to 3600")
        sleep_unless_lost(seconds)
        output["slept_s"] = seconds
    if "text" in data:
        text = data["text"]
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        output["words"] = len(text.split())
        output["upper"] = text.upper()
    if not output:
        output["echo"] = data
    return output


# ---------------------------------------------------------------------------
# Helpers handle() may use.
# ---------------------------------------------------------------------------

_current = threading.local()


def lease_lost():
    """Whether the task handle() is working on was taken back from this agent."""
    lease = getattr(_current, "lease", None)
    return lease is not None and lease.lost.is_set()


class LeaseLost(Exception):
    """The task was taken back while handle() worked on it."""


def sleep_unless_lost(seconds):
    """Sleeps, raising LeaseLost as soon as the task is taken back."""
    lease = getattr(_current, "lease", None)
    if lease is None:
        time.sleep(seconds)
        return
    if lease.lost.wait(seconds):
        raise LeaseLost()


# ---------------------------------------------------------------------------
# The API.
# ---------------------------------------------------------------------------


class ApiError(Exception):
    """An answer with an error status: an RFC 9457 problem."""

    def __init__(self, status, problem):
        self.status = status
        self.problem = problem if isinstance(problem, dict) else {}
        self.code = self.problem.get("code") or ""
        self.detail = self.problem.get("detail") or self.problem.get("title") or "HTTP %d" % status
        super().__init__("%d %s" % (status, self.detail))

    @property
    def transient(self):
        return self.status in (408, 425, 429) or self.status >= 500


class NetworkError(Exception):
    """No answer: the server is down, unreachable or too slow."""


class Api:
    def __init__(self, server, token):
        self.server = server.rstrip("/")
        self.token = token

    def call(self, method, path, body=None, timeout=30):
        data = None if body is None else json.dumps(body).encode("utf-8")
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        req.add_header("Accept", "application/json")
        req.add_header("User-Agent", "waymark-example-agent/1")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as res:
                raw = res.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                problem = json.loads(raw.decode("utf-8"))
            except ValueError:
                problem = {"detail": raw.decode("utf-8", "replace").strip()[:300]}
            raise ApiError(e.code, problem) from None
        except urllib.error.URLError as e:
            raise NetworkError(self._describe(e.reason, timeout)) from None
        except (OSError, http.client.HTTPException) as e:
            raise NetworkError(self._describe(e, timeout)) from None
        return json.loads(raw.decode("utf-8")) if raw.strip() else None

    def _describe(self, reason, timeout):
        if isinstance(reason, ConnectionRefusedError):
            return "connection refused: is `waymark serve` running at %s? (set WAYMARK_SERVER)" % self.server
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            return "no answer from %s within %ss" % (self.server, timeout)
        return "cannot reach %s: %s" % (self.server, reason)


def hint(err, agent_id):
    """An error as one line, with what to do next."""
    if isinstance(err, NetworkError):
        return str(err)
    if err.status == 401:
        return "%s: check WAYMARK_TOKEN (an admin makes an agent token with `waymark token create --agent-id %s`)" % (
            err.detail,
            agent_id,
        )
    if err.status == 403:
        return "%s: use a token made for agent %s (`waymark token create --agent-id %s`)" % (
            err.detail,
            agent_id,
            agent_id,
        )
    if err.code:
        return "%s (%s)" % (err.detail, err.code)
    return err.detail


def quote(segment):
    return urllib.parse.quote(segment, safe="")


# ---------------------------------------------------------------------------
# The agent.
# ---------------------------------------------------------------------------


def log(message):
    print(message, file=sys.stderr, flush=True)


def say(message):
    print(message, flush=True)


def parse_time(value):
    """An RFC 3339 time as the server writes it, in seconds since the epoch."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", value or "")
    if not m:
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    at = datetime.datetime.fromisoformat(m.group(1) + zone)
    return at.timestamp() + float("0." + (m.group(2) or "0"))


def beat_every(lease_expires_at):
    """A third of what is left of the lease, in seconds (clock skew kept in bounds)."""
    until = parse_time(lease_expires_at)
    left = 60.0 if until is None else until - time.time()
    return min(max(left, 3.0), 600.0) / 3


class Lease:
    """A claimed task's lease, kept alive by a heartbeat thread until it is finished."""

    def __init__(self, api, agent_id, leased):
        self.api = api
        self.agent_id = agent_id
        self.task = leased["task"]
        self.token = leased["lease_token"]
        self.expires_at = leased.get("lease_expires_at")
        self.lost = threading.Event()
        self.why_lost = ""
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="heartbeat " + self.task["id"], daemon=True)
        self.thread.start()

    def _beat(self):
        path = "/api/v1/work/tasks/%s/heartbeat" % quote(self.task["id"])
        while not self.done.wait(beat_every(self.expires_at)):
            try:
                answer = self.api.call("POST", path, {"lease_token": self.token})
                self.expires_at = answer.get("lease_expires_at", self.expires_at)
            except ApiError as e:
                if e.status in (404, 409):
                    self.why_lost = hint(e, self.agent_id)
                    self.lost.set()
                    return
                log("heartbeat %s: %s; trying again" % (self.task["id"], hint(e, self.agent_id)))
            except NetworkError as e:
                log("heartbeat %s: %s; trying again" % (self.task["id"], e))

    def release(self):
        self.done.set()


def describe(exc):
    message = str(exc).strip()
    if type(exc) not in (RuntimeError, ValueError):
        message = "%s: %s" % (type(exc).__name__, message) if message else type(exc).__name__
    return (message or "failed")[:2000]


class Quit(BaseException):
    """A second Ctrl-C / SIGTERM while tasks were in hand."""


class Stopping:
    """Ctrl-C / SIGTERM: the first lets the claimed tasks finish, the second quits."""

    def __init__(self):
        self.requested = threading.Event()
        self.idle = True  # nothing claimed (registering, polling, backing off): stop at once

    def install(self):
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum, frame):
        if self.idle:
            self.requested.set()
            raise KeyboardInterrupt()
        if self.requested.is_set():
            raise Quit()
        self.requested.set()
        log("stopping: finishing the tasks already claimed (Ctrl-C again to quit now)")


class Agent:
    def __init__(self, api, args, stopping):
        self.api = api
        self.args = args
        self.agent_id = args.agent_id
        self.stopping = stopping
        self.fatal = False  # an API error that retrying does not fix
        # Registering and claiming retry a few times with --once, else forever.
        self.attempts = 3 if args.once else None

    def with_retries(self, what, fn, attempts=None, until_stopped=True):
        """Calls fn, retrying network errors and 5xx/429 answers with backoff
        (1, 2, 4 ... 30 s): `attempts` times in all, or forever when None; a
        stop request ends the retries too unless `until_stopped` is False."""
        delay = 1.0
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except (ApiError, NetworkError) as e:
                transient = isinstance(e, NetworkError) or e.transient
                if not transient or attempt == attempts or (until_stopped and self.stopping.requested.is_set()):
                    raise
                log("%s: %s; retrying in %gs" % (what, hint(e, self.agent_id), delay))
                time.sleep(delay)
                delay = min(delay * 2, 30.0)

    def register(self):
        """Registers the agent, or updates what --capabilities/--description changed."""
        args = self.args
        try:
            current = self.api.call("GET", "/api/v1/agents/%s" % quote(self.agent_id))
        except ApiError as e:
            if e.status != 404:
                raise
            current = None
        wanted = {
            "id": self.agent_id,
            "capabilities": args.capabilities if args.capabilities is not None else [],
            "description": args.description if args.description is not None else "",
        }
        if current is not None:
            if args.capabilities is None:
                wanted["capabilities"] = current.get("capabilities", [])
            if args.description is None:
                wanted["description"] = current.get("description", "")
            if wanted["capabilities"] == current.get("capabilities") and wanted["description"] == current.get(
                "description"
            ):
                return "registered"
        self.api.call("POST", "/api/v1/agents", wanted)
        return "updated" if current is not None else "registered now"

    def claim(self):
        body = {"max": self.args.max, "wait_s": self.args.wait}
        path = "/api/v1/agents/%s/claim" % quote(self.agent_id)
        return self.api.call("POST", path, body, timeout=self.args.wait + 30)

    def finish(self, lease, verb, body):
        """complete or fail with the lease: answers the task's status afterwards, or None."""
        task = lease.task
        path = "/api/v1/work/tasks/%s/%s" % (quote(task["id"]), verb)
        body = dict(body, lease_token=lease.token)
        try:
            answer = self.with_retries(
                verb + " " + task["id"], lambda: self.api.call("POST", path, body), attempts=5, until_stopped=False
            )
            return answer.get("status", "")
        except ApiError as e:
            if e.status == 409:
                say("lost %s key=%s: %s" % (task["id"], task.get("key", ""), hint(e, self.agent_id)))
                return None
            if e.status == 422 and verb == "complete":
                log("complete %s: %s; failing it instead" % (task["id"], hint(e, self.agent_id)))
                refusal = "the output was refused: %s" % e.detail
                return self.finish(lease, "fail", {"error": refusal[:2000], "retryable": False})
            self.fatal = True
            log("%s %s: %s" % (verb, task["id"], hint(e, self.agent_id)))
        except NetworkError as e:
            self.fatal = True
            log("%s %s: %s; the lease will expire and the task run again" % (verb, task["id"], e))
        return None

    def work(self, lease):
        """Runs handle() on one task in a thread, so that a lost lease stops the wait."""
        task = lease.task
        key = task.get("key", "")
        if lease.lost.is_set():
            say("lost %s key=%s: %s; not started" % (task["id"], key, lease.why_lost))
            return
        result = {}

        def run():
            _current.lease = lease
            try:
                result["output"] = handle(task)
            except BaseException as e:  # whatever handle() raises fails the task
                result["error"] = e
                if not isinstance(e, (RuntimeError, ValueError, LeaseLost)):
                    traceback.print_exc(file=sys.stderr)

        worker = threading.Thread(target=run, name="handle " + task["id"], daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            if lease.lost.is_set():
                break
        lease.release()
        if lease.lost.is_set():
            say("lost %s key=%s: %s; not completed" % (task["id"], key, lease.why_lost))
            return
        error = result.get("error")
        if error is None:
            output = result.get("output")
            if output is None:
                output = {}
            status = self.finish(lease, "complete", {"output": output})
            if status is not None:
                say("completed %s key=%s" % (task["id"], key))
            return
        retryable = not isinstance(error, ValueError)
        message = describe(error)
        status = self.finish(lease, "fail", {"error": message, "retryable": retryable})
        if status is not None:
            then = "will retry" if status == "ready" else "final"
            say("failed %s key=%s: %s (%s)" % (task["id"], key, message, then))

    def run_batch(self, batch):
        """Handles claimed tasks one after the other; each is heartbeated from its claim on."""
        leases = [Lease(self.api, self.agent_id, leased) for leased in batch]
        try:
            for lease in leases:
                self.work(lease)
        finally:
            for lease in leases:
                lease.release()

    def run(self):
        try:
            how = self.with_retries("register " + self.agent_id, self.register, self.attempts)
        except (ApiError, NetworkError) as e:
            log("cannot register agent %s: %s" % (self.agent_id, hint(e, self.agent_id)))
            return 1
        log(
            "agent %s (%s) polling %s for up to %d task(s) at a time"
            % (self.agent_id, how, self.api.server, self.args.max)
        )
        while not self.stopping.requested.is_set():
            self.stopping.idle = True
            try:
                batch = self.with_retries("claim", self.claim, self.attempts)
            except ApiError as e:
                log("claim: %s" % hint(e, self.agent_id))
                if e.status == 404:
                    log("the agent %s is not registered (any more): run this again to register it" % self.agent_id)
                return 1
            except NetworkError as e:
                log("claim: %s" % e)
                return 1
            finally:
                self.stopping.idle = False
            if batch:
                self.run_batch(batch)
            elif self.args.once:
                log("no task ready for %s within %ds" % (self.agent_id, self.args.wait))
            if self.args.once:
                break
        return 1 if self.fatal else 0


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="A Waymark agent: claims the tasks of an agent id and completes or fails them.",
        epilog="Environment: WAYMARK_SERVER (default http://127.0.0.1:8080), WAYMARK_TOKEN (required), "
        "WAYMARK_AGENT_ID.",
    )
    parser.add_argument(
        "--agent-id",
        default=os.environ.get("WAYMARK_AGENT_ID"),
        help="the agent id: tasks whose executor is this id are claimed (or WAYMARK_AGENT_ID)",
    )
    parser.add_argument(
        "--capabilities",
        type=lambda s: [c.strip() for c in s.split(",") if c.strip()],
        help="comma-separated capabilities to register, e.g. text,echo",
    )
    parser.add_argument("--description", help="what the agent does, for the registry")
    parser.add_argument("--max", type=int, default=1, help="tasks per claim, 1-100 (default 1)")
    parser.add_argument("--wait", type=int, default=30, help="seconds a claim waits for work, 0-60 (default 30)")
    parser.add_argument("--once", action="store_true", help="claim one batch, handle it and exit")
    args = parser.parse_args(argv)
    if not 1 <= args.max <= 100:
        parser.error("--max must be 1 to 100")
    if not 0 <= args.wait <= 60:
        parser.error("--wait must be 0 to 60 seconds")
    return parser, args


def main(argv=None):
    parser, args = parse_args(argv)
    token = os.environ.get("WAYMARK_TOKEN", "").strip()
    if not token:
        log(
            "WAYMARK_TOKEN is not set: export WAYMARK_TOKEN=<an agent token>; an admin makes one with "
            "`waymark token create --name NAME --agent-id AGENT_ID`"
        )
        return 2
    if not args.agent_id:
        parser.error("name the agent: --agent-id ID or WAYMARK_AGENT_ID")
    server = os.environ.get("WAYMARK_SERVER", "").strip() or "http://127.0.0.1:8080"
    stopping = Stopping()
    stopping.install()
    try:
        code = Agent(Api(server, token), args, stopping).run()
    except KeyboardInterrupt:
        code = 0
    except Quit:
        log("quit: the unfinished tasks run again once their leases expire")
        return 130
    if stopping.requested.is_set():
        log("stopped")
    return code


if __name__ == "__main__":
    sys.exit(main())
