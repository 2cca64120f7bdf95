"""The one redaction: what a record, report, log line or error sentence must never carry.

Records are shared and committed, reports are uploaded as CI artifacts, stderr goes to CI logs. Every writer
(records.write_json/append_record/write_records, files.replace_atomically for reports and the gate's files,
the progress line) and every program's stdout and stderr (cli.run) pass what they write through here, so a
secret that reaches any of them by any path (a flag, --model_args, an environment variable, a storage URL, a
user's exception message, a script's arguments) is replaced by REDACTED. docs/records.md lists what is
redacted; tests/test_redaction.py holds the corpus of shapes.

Three kinds of secret, by where they sit:
- under a name that says it holds one (`secret_name`): a dict key, a flag, an environment variable, a
  `name=value` or `"name": "value"` pair inside text, a `--name value` argument;
- in a URL's user-info (`scheme://user:PASSWORD@host`, any user, any characters in the password);
- shaped like a well-known token or key (GitHub, GitLab, Slack, AWS, GCP, Hugging Face, OpenAI, Stripe, npm,
  PyPI, JWT, PEM private keys, `Bearer`/`Basic` credentials).
Numbers and booleans under a secret name are kept (a hyperparameter `key_dim=64` is no secret); strings are not.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "<redacted>"

# Name parts (split at anything not a letter or digit, and at camelCase) that say a value is a secret. A strong
# part's value is a secret even as a number (a PIN); under a weak part only strings are (`key_dim=64` stays).
_STRONG_PARTS = frozenset({
    "password", "passwd", "pwd", "pass", "passphrase", "passcode", "pin", "secret", "secrets", "token", "tokens",
    "apikey", "credential", "credentials", "creds", "auth", "authorization", "cookie", "bearer", "privatekey",
    "accesskey", "secretkey", "authtoken", "accesstoken"})
_WEAK_PARTS = frozenset({"key", "sig", "signature", "pat", "sas", "webhook"})
# Runs of letters that say it anywhere inside a name (`dbpassword`, `mysecret`, `slacktoken`).
_SECRET_INSIDE = ("password", "passwd", "secret", "token", "apikey", "credential", "privatekey")
# The harness's own identity fields (hex digests of a trial's config and seeds, named *_key), and the gate's
# verdict word (`PASS: the candidate passed`): never secrets.
HARNESS_KEY_FIELDS = frozenset({"trial_key", "run_key", "PASS"})
# A name ending so says what kind of secret, or where one is kept, not the secret itself (RAY_AUTH_MODE=token,
# token_type=bearer, --password_file=PATH), or is an error's (KeyError: 'units', TokenizerWarning).
_NOT_SECRET_ENDS = ("error", "exception", "warning", "mode", "type", "method", "scheme", "kind", "enabled",
                    "required", "file", "path", "dir", "name")


@functools.lru_cache(maxsize=4096)
def _name_parts(name: str) -> tuple[str, ...]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name.lstrip("-"))
    return tuple(part.lower() for part in re.split(r"[^A-Za-z0-9]+", spaced) if part)


def _may_be_secret(name: str) -> bool:
    """Not a name the harness knows is no secret: its own identity fields, a kind or place of a secret, an error."""
    parts = _name_parts(name)
    return name not in HARNESS_KEY_FIELDS and bool(parts) and parts[-1] not in _NOT_SECRET_ENDS


@functools.lru_cache(maxsize=4096)
def secret_name(name: str) -> bool:
    """Whether a key, flag or variable called `name` holds a secret: password, passwd, pwd, pass, secret, token,
    key, credential, auth, cookie, signature, ... as a part of it (`api_key`, `HARNESS_PWD`, `authToken`,
    `--db-password`), or password, secret, token, ... anywhere in it (`dbpassword`)."""
    return strong_secret_name(name) or (_may_be_secret(name) and any(part in _WEAK_PARTS
                                                                      for part in _name_parts(name)))


@functools.lru_cache(maxsize=4096)
def strong_secret_name(name: str) -> bool:
    """A secret name whose value is a secret even when it is a number (password, pin, token, ...)."""
    if not _may_be_secret(name):
        return False
    parts = _name_parts(name)
    joined = "".join(parts)
    return any(part in _STRONG_PARTS for part in parts) or any(word in joined for word in _SECRET_INSIDE)


# Characters that end a secret inside text: whitespace, quotes (a JSON or shell string's end), a backslash (a
# JSON escape), angle brackets (HTML). A password holding one of these is redacted up to it; the structural
# redaction (`redact`) of a value under a secret name takes all of it.
_END = r"\s\"'`<>\\"
# scheme://[user][:password]@host: the password runs to the token's last @, so @, / and : inside it go too.
_URL_USERINFO = re.compile(rf"(?i)\b([a-z][a-z0-9+.-]*://)([^{_END}:@/]*):([^{_END}]*)@(?=[^{_END}@]*(?:[{_END}]|$))")
# scheme://TOKEN@host: a user name long enough to be a token (GitHub's https://<token>@github.com).
_URL_TOKEN_USER = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([\w-]{20,})@")
# user:password@registry/image without a scheme (docker login references), but not image:tag@sha256:digest.
_BARE_USERINFO = re.compile(rf"(?<![\w.%+/-])([\w.%+-]+):([^{_END}:@/]+)@(?!sha\d+:)(?=[\w.-]+)")
# Credentials in headers and command lines: an Authorization header's whole value (Basic, Bearer, Token, AWS4 ...
# to the line's or quote's end), and a Bearer token or Basic credentials anywhere.
_AUTH_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization)(\s*[:=]\s*)([^\r\n\"'`<>]+)")
_AUTH_SCHEME = re.compile(r"\b(Bearer|bearer|BEARER|Basic|basic|BASIC)(\s+)([A-Za-z0-9._~+/-]{6,}=*)")
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY[A-Z ]*)-----.*?(?:-----END [A-Z0-9 ]*-----|(?=[\"'`])|$)",
                  re.DOTALL)
# Well-known token and key shapes, each matched whole.
_TOKENS = re.compile(r"(?=[gxhAyGesrpnSd])(?:" + "|".join([
    r"\bgh[pousr]_[A-Za-z0-9]{20,255}\b",  # GitHub
    r"\bgithub_pat_[A-Za-z0-9_]{20,255}\b",
    r"\bglpat-[A-Za-z0-9_-]{20,}\b",  # GitLab
    r"\bxox[abposre]-[A-Za-z0-9-]{10,}\b",  # Slack
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/_-]+",
    r"\b(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}\b",  # AWS access key ids
    r"\bAIza[0-9A-Za-z_-]{30,40}\b",  # GCP API key
    r"\bya29\.[0-9A-Za-z_-]{20,}",  # Google OAuth access token
    r"\bGOCSPX-[0-9A-Za-z_-]{20,}",  # Google OAuth client secret
    r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # JWT
    r"\bhf_[A-Za-z0-9]{30,}\b",  # Hugging Face
    r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_-]{20,}",  # OpenAI, Anthropic
    r"\b(?:sk|rk|pk)_(?:live|test)_[0-9A-Za-z]{16,}\b",  # Stripe
    r"\bnpm_[A-Za-z0-9]{36}\b",  # npm
    r"\bpypi-AgE[A-Za-z0-9_-]{40,}",  # PyPI
    r"\bSG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}",  # SendGrid
    r"\bdop_v1_[a-f0-9]{64}\b",  # DigitalOcean
]) + ")")  # the lookahead first: most positions start with none of the tokens' first letters
# Pairs whose name says the value is a secret, each with what ends its value: "name": "value" (JSON, Python
# reprs, and JSON inside a JSON string, its quotes escaped), --name=value and --name value (command lines),
# name=value (variables, query strings, options) and name: value (headers, YAML). A quoted value goes to its
# closing quote. The value is matched ahead, not taken, so a pair inside another pair's value is found too.
_QUOTED = r'"(?:[^"\\]|\\.)*"' + r"|'[^'\n]*'"
_PAIRS = (
    re.compile(rf"(?P<name>([\"'])[^\"'\\\n]{{1,80}}\2)(?P<sep>\s*:\s*)(?=(?P<value>{_QUOTED}|[^\s,}}\]]+))"),
    re.compile(r'(?P<name>(?P<q>\\+")[^"\\\n]{1,80}(?P=q))(?P<sep>\s*:\s*)(?=(?P<value>(?P=q).*?(?P=q)|[^\s,}\]\\]+))'),
    re.compile(rf"(?<![^\s\"'=])(?P<name>--?[A-Za-z][\w.-]*)(?P<sep>=|\s+)(?=(?P<value>{_QUOTED}|[^\s{_END}]+))"),
    re.compile(rf"(?<![\w.-])(?P<name>[A-Za-z_][\w.-]*)(?P<sep>\s*=\s*)(?=(?P<value>{_QUOTED}|[^\s&;,{_END}]+))"),
    re.compile(rf"(?<![\w.-])(?P<name>[A-Za-z_][\w-]*)(?P<sep>:[ \t]+)(?=(?P<value>{_QUOTED}|[^\s,;{_END}]+))"),
)


def redact_text(text: str) -> str:
    """`text` with every secret in it (see the module's docstring) replaced by REDACTED."""
    if not text:
        return text
    text = _PEM.sub(lambda m: f"-----BEGIN {m.group(1)}-----{REDACTED}", text)
    text = _URL_USERINFO.sub(_url_password, text)
    text = _URL_TOKEN_USER.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _BARE_USERINFO.sub(lambda m: f"{m.group(1)}:{REDACTED}@", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _AUTH_SCHEME.sub(lambda m: m.group(0) if m.group(1).lower() == "basic" and not _looks_encoded(m.group(3))
                            else f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    text = _TOKENS.sub(REDACTED, text)
    return _redact_pairs(text)


def _url_password(match: re.Match) -> str:
    scheme, user, password = match.groups()
    # host:PORT/path...@: a port, and an @ further on in the path or query (?mail=a@b), not a password.
    if re.fullmatch(r"\d{1,5}/.*", password, re.DOTALL):
        return match.group(0)
    return f"{scheme}{user}:{REDACTED}@"


def _redact_pairs(text: str) -> str:
    """Every value of a secret-named pair (`_PAIRS`) replaced, quotes kept; a value inside one replaced already
    goes with it."""
    spans = []
    for pairs in _PAIRS:
        for match in pairs.finditer(text):
            name, value = match.group("name").strip("\\\"'"), match.group("value")
            if not secret_name(name) or value.strip("\\\"'") == REDACTED or (
                    _is_number_or_literal(value) and not strong_secret_name(name)):
                continue
            quote = re.match(r"\\*[\"']", value)
            quote_text = quote.group(0) if quote and len(value) >= 2 * len(quote.group(0)) else ""
            if not quote_text and match.group("name").endswith('"'):  # a JSON number or literal: a string now
                quote_text = re.match(r'\\*"', match.group("name")).group(0)
            spans.append((match.start("value"), match.end("value"), quote_text))
    pieces, at = [], 0
    for start, end, quote in sorted(spans):
        if start < at:
            continue
        pieces += [text[at:start], f"{quote}{REDACTED}{quote}"]
        at = end
    return "".join(pieces) + text[at:]


def _looks_encoded(word: str) -> bool:
    """Whether a word after "Basic" is base64 credentials rather than prose ("Basic usage")."""
    return len(word) >= 8 and (bool(re.search(r"[0-9+/=]", word)) or (word != word.lower() and word != word.title()))


def _is_number_or_literal(value: str) -> bool:
    """A number, true/false/null: kept under a name that says "key" or "signature" only (`key_dim=64`)."""
    return bool(re.fullmatch(r"-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false|null|True|False|None", value))


def redact(value: Any, name: str | None = None) -> Any:
    """`value` (a JSON-like document: dicts, lists, strings, numbers) with its secrets redacted: every string under a
    secret-named key (at any depth) becomes REDACTED, and every other string goes through `redact_text`."""
    if isinstance(value, dict):
        return {key: redact(item, str(key) if name is None or not secret_name(name) else name)
                for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item, name) for item in value]
    if name is not None and secret_name(name):
        if isinstance(value, str):
            return REDACTED if value else value
        if isinstance(value, (int, float)) and not isinstance(value, bool) and strong_secret_name(name):
            return REDACTED
    return redact_text(value) if isinstance(value, str) else value


def redact_args(args: Iterable[str]) -> list[str]:
    """A command line's arguments with their secrets redacted: `--password=x`, `--password x` (the next argument)
    and any secret inside an argument (a URL's password, a token)."""
    redacted: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next and not arg.startswith("-"):
            redacted.append(REDACTED)
        elif arg.startswith("-") and "=" in arg and secret_name(arg.split("=", 1)[0]):
            redacted.append(f"{arg.split('=', 1)[0]}={REDACTED}")
        else:
            redacted.append(redact_text(arg))
        hide_next = arg.startswith("-") and "=" not in arg and secret_name(arg)
    return redacted


class RedactingStream:
    """A text stream that writes through another with every secret redacted: a program's stdout and stderr
    (cli.run), which CI logs keep, and the log a user's objective prints into (tuning/objective_runs.py)."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        self.stream.write(redact_text(text))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str):  # flush, fileno, isatty, encoding, buffer ...: the stream's own
        return getattr(self.stream, name)
