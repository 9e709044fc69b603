"""What `serve` says on the terminal: one start-up line, a warning for an open unguarded port, one
line per refused request with its reason, and none of the libraries' own noise.

The library warnings filtered are named exactly (``NOISE``), each with why it is noise here;
anything else still shows.
"""

from __future__ import annotations

import json
import logging
import warnings

LOG = logging.getLogger("supporttune.serve")

# (category, message regex, module regex): warnings a server user can do nothing about
NOISE = [
    # PEFT notes that a run's adapter config names the base by the training machine's path; we load the base
    # from the run record, which is what the warning asks to check
    (UserWarning, r"The PEFT config's `base_model_name_or_path` was renamed", r"peft\."),
    # transformers deprecates an alias PEFT still reads while wrapping the model
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated", r"transformers\."),
    # torch deprecates TorchScript, which a library imported by transformers still decorates with at import
    (DeprecationWarning, r"`torch.jit.script_method` is deprecated", r"torch\."),
]


def quiet_libraries() -> None:
    """Filter exactly the warnings in NOISE (before the model loads: most come while loading)."""
    for category, message, module in NOISE:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


def startup_line(names: list[str], runs: list[str], url: str, api_key: bool, backend: str | None = None) -> str:
    """One line: what is served, from where, at which address, whether a key is required."""
    what = ", ".join(f"{n} ({r})" for n, r in zip(names, runs))
    via = f", generating on {backend}" if backend else ""
    key = "API key required" if api_key else "no API key (anyone who can reach the port may use it)"
    return f"supporttune serve: {what}{via} at {url}/v1 ; {key}"


def open_host_warning(host: str, api_key: bool) -> str | None:
    """A warning when the server listens beyond this machine with no key."""
    if api_key or host in ("127.0.0.1", "localhost", "::1"):
        return None
    return (f"warning: listening on {host} without --api-key: anyone on the network can use the agent; "
            f"set --api-key (or SUPPORTTUNE_API_KEY), or bind --host 127.0.0.1")


class ErrorLog:
    """ASGI middleware: every 4xx answer logged as one line, ``400 POST /v1/chat/completions: <reason>``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status, body = [0], [b""]

        async def watch(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "http.response.body" and 400 <= status[0] < 500 and len(body[0]) < 65536:
                body[0] += message.get("body", b"")
                if not message.get("more_body", False):
                    LOG.warning("%s %s %s: %s", status[0], scope["method"], scope["path"], _reason(body[0]))
            await send(message)

        await self.app(scope, receive, watch)


def _reason(body: bytes) -> str:
    try:
        err = json.loads(body)["error"]
        return err["message"] + (f" [{err['code']}]" if err.get("code") else "")
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")


def log_to_terminal() -> None:
    """The refused-request lines on stderr, beside uvicorn's own."""
    if not LOG.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
        LOG.propagate = False
