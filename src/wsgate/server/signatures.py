"""SigV4 signatures, checked as API Gateway checks them: `AWS_IAM` on `$connect` and the
`@connections` API (docs/compatibility.md §6.6 and §7.7).

The gateway holds one key store (`AccessKeys`, access key id -> secret). A signed
request names its key in its credential scope; the signature is computed again for the
request as received, with botocore's own signer (`SigV4Auth`, or `SigV4QueryAuth` for a
presigned URL) and the stored secret, and compared in constant time. botocore comes with
the `aws` extra; a gateway that needs signatures without it refuses to start.
"""

from __future__ import annotations

import calendar
import hmac
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from wsgate.context import LambdaContext
from wsgate.exceptions import ConfigError

if TYPE_CHECKING:
    from botocore.auth import SigV4Auth

#: The service every signature must be scoped to: API Gateway's execute-api.
SERVICE = "execute-api"
#: How far a request's date may be from the gateway's clock, either way (seconds).
MAX_SKEW = 300.0
_ALGORITHM = "AWS4-HMAC-SHA256"
_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_LONGEST_EXPIRY = 7 * 24 * 3600

#: API Gateway's messages for a refused signature (its `{"message": ...}` bodies).
MISSING_TOKEN = "Missing Authentication Token"
UNKNOWN_KEY = "The security token included in the request is invalid."
BAD_SIGNATURE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


class AccessKeys:
    """The access keys the gateway accepts: access key id -> secret access key.

    Every key may connect (`AWS_IAM`) and manage connections: there are no policies.
    """

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Mapping[str, str]) -> None:
        for key_id, secret in secrets.items():
            if not key_id or not secret or any(c in key_id for c in ":/ ,"):
                raise ConfigError(f"bad access key {key_id!r}: expect ACCESS_KEY_ID:SECRET")
        if not secrets:
            raise ConfigError("no access keys given")
        self._secrets = dict(secrets)
        require_botocore("signed requests")

    @classmethod
    def parse(cls, text: str) -> AccessKeys:
        """`ACCESS_KEY_ID:SECRET` pairs, one a line (or comma-separated); `#` comments."""
        secrets: dict[str, str] = {}
        for line in text.splitlines():
            for entry in line.split("#", 1)[0].split(","):
                entry = entry.strip()
                if not entry:
                    continue
                key_id, colon, secret = entry.partition(":")
                if not colon:
                    raise ConfigError(f"bad access key entry {entry[:8]!r}...: expect ID:SECRET")
                secrets[key_id.strip()] = secret.strip()
        return cls(secrets)

    @classmethod
    def from_file(cls, path: str | Path) -> AccessKeys:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read access keys from {path}: {exc.strerror}") from exc
        return cls.parse(text)

    def secret(self, key_id: str) -> str | None:
        return self._secrets.get(key_id)

    def __len__(self) -> int:
        return len(self._secrets)


def require_botocore(what: str) -> None:
    """Refuse to start without botocore, naming the extra that brings it."""
    try:
        import botocore.auth  # noqa: F401
    except ImportError:
        raise ConfigError(f"{what} need botocore: pip install 'wsgate[aws]'") from None


@dataclass(frozen=True, slots=True)
class Signer:
    """Who signed a request: the access key and where the signature was scoped."""

    access_key: str
    region: str

    def identity(self) -> dict[str, str]:
        """The IAM fields of `requestContext.identity`, as API Gateway adds them.

        wsgate's key store has no users, so the caller and user are the access key and
        the ARN is that of an IAM user named after it, in the local account.
        """
        account = LambdaContext.account_id
        return {
            "accessKey": self.access_key,
            "accountId": account,
            "caller": self.access_key,
            "user": self.access_key,
            "userArn": f"arn:aws:iam::{account}:user/{self.access_key}",
        }


class SignatureRefused(Exception):
    """The request is not signed by a known key: API Gateway's message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def verify(
    keys: AccessKeys,
    *,
    method: str,
    path: str,
    query_string: str,
    headers: Iterable[tuple[str, str]],
    body: bytes = b"",
    now: float | None = None,
) -> Signer:
    """Check a request's SigV4 signature (`Authorization` header or presigned query).

    `path` and `query_string` as received, still percent-encoded: botocore signs the
    encoded path encoded once more, so it must see what the client's botocore saw.
    Raises SignatureRefused.
    """
    from botocore.auth import SigV4Auth, SigV4QueryAuth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    header_list = list(headers)
    authorization = _header(header_list, "Authorization")
    pairs = [pair.partition("=") for pair in query_string.split("&")] if query_string else []
    query = {unquote(key): unquote(value) for key, _, value in pairs}
    presigned = "X-Amz-Signature" in query
    if presigned:
        fields = {
            "Credential": query.get("X-Amz-Credential", ""),
            "SignedHeaders": query.get("X-Amz-SignedHeaders", ""),
            "Signature": query.get("X-Amz-Signature", ""),
        }
        algorithm, amz_date = query.get("X-Amz-Algorithm"), query.get("X-Amz-Date", "")
        # The signature covers every query parameter but itself, as the client sent them.
        signed_query = "&".join(
            f"{key}{eq}{value}" for key, eq, value in pairs if unquote(key) != "X-Amz-Signature"
        )
    elif authorization is not None:
        algorithm, _, rest = authorization.strip().partition(" ")
        fields = dict(item.strip().partition("=")[::2] for item in rest.split(",") if "=" in item)
        amz_date = _header(header_list, "X-Amz-Date") or ""
        signed_query = query_string
    else:
        raise SignatureRefused(MISSING_TOKEN)
    if algorithm != _ALGORITHM or not all(fields.get(name) for name in _FIELDS):
        raise SignatureRefused(f"Authorization requires {_ALGORITHM} with {', '.join(_FIELDS)}")
    scope = fields["Credential"].split("/")
    if len(scope) != 5 or scope[3] != SERVICE or scope[4] != "aws4_request":
        raise SignatureRefused(f"Credential should be scoped to {SERVICE}: {fields['Credential']}")
    key_id, scope_date, region = scope[0], scope[1], scope[2]
    secret = keys.secret(key_id)
    if secret is None:
        raise SignatureRefused(UNKNOWN_KEY)
    signed_at = _parse_date(amz_date)
    if signed_at is None or amz_date[:8] != scope_date:
        raise SignatureRefused(BAD_SIGNATURE)
    now = time.time() if now is None else now
    _check_time(signed_at, now, query.get("X-Amz-Expires") if presigned else None)

    signed_names = fields["SignedHeaders"].lower().split(";")
    url = f"http://localhost{path}" + (f"?{signed_query}" if signed_query else "")
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in header_list:
        if name.lower() in signed_names:
            request.headers[name.lower()] = value  # appends: repeated headers stay repeated
    request.context["timestamp"] = amz_date
    credentials = Credentials(key_id, secret)
    signer: SigV4Auth = (SigV4QueryAuth if presigned else SigV4Auth)(credentials, SERVICE, region)
    if signer.signed_headers(signer.headers_to_sign(request)) != fields["SignedHeaders"].lower():
        raise SignatureRefused(BAD_SIGNATURE)  # a signed header missing (or no Host)
    canonical_request = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical_request), request)
    if not hmac.compare_digest(expected.encode(), fields["Signature"].encode()):
        raise SignatureRefused(BAD_SIGNATURE)
    return Signer(key_id, region)


_FIELDS = ("Credential", "SignedHeaders", "Signature")


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def _parse_date(text: str) -> float | None:
    try:
        return float(calendar.timegm(time.strptime(text, _DATE_FORMAT)))
    except ValueError:
        return None


def _check_time(signed_at: float, now: float, expires: str | None) -> None:
    """API Gateway's 5-minute window; a presigned URL also lives only `X-Amz-Expires`."""
    date = time.strftime(_DATE_FORMAT, time.gmtime(signed_at))
    if expires is not None:
        if not expires.isdigit() or int(expires) > _LONGEST_EXPIRY:
            raise SignatureRefused("X-Amz-Expires must be a number of seconds up to 604800")
        if now > signed_at + int(expires) + MAX_SKEW:
            raise SignatureRefused(f"Signature expired: {date} plus {expires} s is past")
        if signed_at - now > MAX_SKEW:
            raise SignatureRefused(_not_yet(date, now))
        return
    if now - signed_at > MAX_SKEW:
        earliest = time.strftime(_DATE_FORMAT, time.gmtime(now - MAX_SKEW))
        current = time.strftime(_DATE_FORMAT, time.gmtime(now))
        raise SignatureRefused(
            f"Signature expired: {date} is now earlier than {earliest} ({current} - 5 min.)"
        )
    if signed_at - now > MAX_SKEW:
        raise SignatureRefused(_not_yet(date, now))


def _not_yet(date: str, now: float) -> str:
    latest = time.strftime(_DATE_FORMAT, time.gmtime(now + MAX_SKEW))
    current = time.strftime(_DATE_FORMAT, time.gmtime(now))
    return f"Signature not yet current: {date} is still later than {latest} ({current} + 5 min.)"
