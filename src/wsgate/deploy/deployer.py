"""`wsgate deploy`: upload the code zip and create or update the stack, showing progress.

The only module of `wsgate.deploy` that talks to AWS (S3 and CloudFormation, through
boto3, imported when called). botocore's errors are translated here, at one boundary:
missing credentials or region become a `ConfigError` saying what to set; anything AWS
refuses becomes a `DeployError` carrying AWS's own message.

    result = deploy_app(app, "chat.py", DeployOptions(stack_name="chat-dev", bucket="b"))

An unchanged app builds the same zip and template, so a second deploy finds the object
already uploaded and CloudFormation answers "No updates are to be performed": reported
as `changed=False`, not as an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wsgate.app import App
from wsgate.deploy.package import Package, app_target, build_package
from wsgate.deploy.template import Template, generate
from wsgate.exceptions import ConfigError, WsgateError

if TYPE_CHECKING:
    from mypy_boto3_cloudformation.client import CloudFormationClient
    from mypy_boto3_s3.client import S3Client

Echo = Callable[[str], None]

#: CloudFormation's limit on an inline TemplateBody; larger templates go through S3.
MAX_TEMPLATE_BODY = 51_200

CREDENTIALS_HELP = (
    "no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(and AWS_SESSION_TOKEN for temporary credentials), or AWS_PROFILE, or run "
    "`aws configure`"
)
REGION_HELP = "no AWS region: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION"

_STACK_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]{0,127}")
_NO_UPDATES = "No updates are to be performed"


class DeployError(WsgateError):
    """AWS refused a request, or the stack did not reach a complete state."""


@dataclass(frozen=True, slots=True)
class DeployOptions:
    """Where and how to deploy; `endpoint_url` points at moto or LocalStack instead of AWS."""

    stack_name: str
    bucket: str
    stage: str = "dev"
    region: str | None = None
    endpoint_url: str | None = None
    create_bucket: bool = False
    #: API name; the App's name when None.
    name: str | None = None
    full_permissions: bool = False
    poll_interval: float = 5.0
    timeout: float = 3600.0


@dataclass(frozen=True, slots=True)
class DeployResult:
    """What a deploy did and where the app now lives."""

    stack_name: str
    stack_id: str
    status: str
    #: False when the stack was already up to date.
    changed: bool
    outputs: dict[str, str]
    bucket: str
    key: str
    warnings: tuple[str, ...] = field(default=())


def default_stack_name(app_name: str, stage: str) -> str:
    """`<app>-<stage>`, cleaned up to what CloudFormation accepts."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", f"{app_name}-{stage}").strip("-")
    if not name[:1].isalpha():
        name = f"wsgate-{name}"
    return name[:128]


def deploy_app(
    app: App, target: str, options: DeployOptions, *, echo: Echo = print
) -> DeployResult:
    """Template, package and deploy `app`, loaded from `target`; progress goes to `echo`."""
    if not _STACK_NAME.fullmatch(options.stack_name):
        raise ConfigError(
            f"bad stack name {options.stack_name!r}: a letter, then letters, digits or '-' "
            "(128 at most)"
        )
    template, template_warnings = generate(
        app,
        app_target=app_target(target),
        stage=options.stage,
        name=options.name,
        full_permissions=options.full_permissions,
    )
    package = build_package(target, app)
    warnings = (*template_warnings, *package.warnings)
    for warning in warnings:
        echo(f"warning: {warning}")
    echo(f"packaged {len(package.files)} files, {len(package.data) / 1024:.0f} KB zipped")
    s3, cloudformation, region = _clients(options)  # after the app's own errors, before AWS
    key = f"wsgate/{options.stack_name}/{package.sha256[:20]}.zip"
    _ensure_bucket(s3, options.bucket, region, create=options.create_bucket, echo=echo)
    _upload_code(s3, options.bucket, key, package, echo=echo)
    source = _template_source(s3, options.bucket, options.stack_name, template, region)
    parameters = {"StageName": options.stage, "CodeBucket": options.bucket, "CodeKey": key}
    stack_id, status, changed, outputs = _create_or_update(
        cloudformation,
        options,
        source,
        parameters,
        tags={"wsgate:app": app.name},
        echo=echo,
    )
    return DeployResult(
        stack_name=options.stack_name,
        stack_id=stack_id,
        status=status,
        changed=changed,
        outputs=outputs,
        bucket=options.bucket,
        key=key,
        warnings=warnings,
    )


# -- AWS access -------------------------------------------------------------------------


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    """Translate botocore's exceptions into wsgate's, saying what was being done."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    try:
        yield
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise ConfigError(CREDENTIALS_HELP) from exc
    except NoRegionError as exc:
        raise ConfigError(REGION_HELP) from exc
    except EndpointConnectionError as exc:
        raise DeployError(f"{doing}: cannot reach {exc.kwargs.get('endpoint_url')}") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise DeployError(
            f"{doing}: {error.get('Code', 'error')}: {error.get('Message', exc)}"
        ) from exc
    except BotoCoreError as exc:
        raise DeployError(f"{doing}: {exc}") from exc


def _clients(options: DeployOptions) -> tuple[S3Client, CloudFormationClient, str]:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - boto3 comes with wsgate[aws]
        raise ConfigError("wsgate deploy needs boto3: pip install 'wsgate[aws]'") from None
    with aws_errors("reading the AWS configuration"):
        # boto3 reads AWS_DEFAULT_REGION only; Lambda and most tools also set AWS_REGION
        region_name = options.region or os.environ.get("AWS_REGION") or None
        session = boto3.session.Session(region_name=region_name)
        region = session.region_name
        if not region:
            raise ConfigError(REGION_HELP)
        if session.get_credentials() is None:
            raise ConfigError(CREDENTIALS_HELP)
        # moto and LocalStack answer on one host: no bucket-name subdomains there
        s3_config = Config(s3={"addressing_style": "path"}) if options.endpoint_url else None
        s3 = session.client("s3", endpoint_url=options.endpoint_url, config=s3_config)
        cloudformation = session.client("cloudformation", endpoint_url=options.endpoint_url)
    return s3, cloudformation, region


def _error_code(exc: Exception) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))


def _is_missing(exc: Exception) -> bool:
    return _error_code(exc) in ("404", "NoSuchBucket", "NoSuchKey", "NotFound")


def _ensure_bucket(s3: S3Client, bucket: str, region: str, *, create: bool, echo: Echo) -> None:
    from botocore.exceptions import ClientError

    with aws_errors(f"checking bucket {bucket}"):
        try:
            s3.head_bucket(Bucket=bucket)
            return
        except ClientError as exc:
            if _error_code(exc) == "403":
                raise DeployError(
                    f"bucket {bucket} exists but these credentials cannot use it (403): it "
                    "may belong to another account (bucket names are global); choose "
                    "another --bucket"
                ) from exc
            if not _is_missing(exc):
                raise
        if not create:
            raise DeployError(f"bucket {bucket} does not exist: create it, or pass --create-bucket")
        if region == "us-east-1":
            s3.create_bucket(Bucket=bucket)
        else:
            s3.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
        echo(f"created bucket {bucket} in {region}")


def _upload_code(s3: S3Client, bucket: str, key: str, package: Package, *, echo: Echo) -> None:
    """Upload the zip unless this exact content is already there (the key is its hash)."""
    from botocore.exceptions import ClientError

    with aws_errors(f"uploading s3://{bucket}/{key}"):
        try:
            s3.head_object(Bucket=bucket, Key=key)
            echo(f"code unchanged: s3://{bucket}/{key}")
            return
        except ClientError as exc:
            # without s3:ListBucket, S3 answers a missing object with 403, not 404
            if not _is_missing(exc) and _error_code(exc) != "403":
                raise
        s3.put_object(Bucket=bucket, Key=key, Body=package.data, ContentType="application/zip")
        echo(f"uploaded s3://{bucket}/{key}")


def _template_source(
    s3: S3Client, bucket: str, stack_name: str, template: Template, region: str
) -> dict[str, str]:
    """TemplateBody, or TemplateURL once the template is over CloudFormation's inline limit."""
    body = json.dumps(template, separators=(",", ":"))
    if len(body.encode()) <= MAX_TEMPLATE_BODY:
        return {"TemplateBody": body}
    key = f"wsgate/{stack_name}/{hashlib.sha256(body.encode()).hexdigest()[:20]}.template.json"
    with aws_errors(f"uploading the template to s3://{bucket}/{key}"):
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return {"TemplateURL": f"https://{bucket}.s3.{region}.{suffix}/{key}"}


def _describe(cloudformation: CloudFormationClient, stack: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return dict(stacks[0]) if stacks else None


def _create_or_update(
    cloudformation: CloudFormationClient,
    options: DeployOptions,
    source: dict[str, str],
    parameters: dict[str, str],
    *,
    tags: dict[str, str],
    echo: Echo,
) -> tuple[str, str, bool, dict[str, str]]:
    """Create the stack or update it, wait for the result: (id, status, changed, outputs)."""
    from botocore.exceptions import ClientError

    name = options.stack_name
    request: dict[str, Any] = {
        "StackName": name,
        **source,
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        "Capabilities": ["CAPABILITY_IAM"],
        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
    }
    with aws_errors(f"deploying stack {name}"):
        existing = _describe(cloudformation, name)
        if existing is None:
            echo(f"creating stack {name}")
            stack_id = cloudformation.create_stack(**request)["StackId"]
            seen: set[str] = set()
        else:
            status = existing["StackStatus"]
            stack_id = existing["StackId"]
            if status == "ROLLBACK_COMPLETE":
                raise DeployError(
                    f"stack {name} is in ROLLBACK_COMPLETE (its creation failed) and cannot "
                    f"be updated: delete it (aws cloudformation delete-stack --stack-name "
                    f"{name}) and deploy again"
                )
            if status.endswith("_IN_PROGRESS"):
                raise DeployError(f"stack {name} is busy ({status}): try again when it is done")
            # the newest page is enough: events are listed newest first
            latest = cloudformation.describe_stack_events(StackName=stack_id)["StackEvents"]
            seen = {event["EventId"] for event in latest}
            try:
                cloudformation.update_stack(**request)
            except ClientError as exc:
                if _NO_UPDATES not in str(exc):
                    raise
                echo(f"no changes: stack {name} is up to date")
                return stack_id, status, False, _outputs(existing)
            echo(f"updating stack {name}")
        stack = _wait(cloudformation, stack_id, seen, options, echo=echo)
    return stack_id, stack["StackStatus"], True, _outputs(stack)


def _wait(
    cloudformation: CloudFormationClient,
    stack_id: str,
    seen: set[str],
    options: DeployOptions,
    *,
    echo: Echo,
) -> dict[str, Any]:
    """Poll until the stack settles, printing each new event once, oldest first."""
    deadline = time.monotonic() + options.timeout
    failures: list[str] = []
    while True:
        stack = dict(cloudformation.describe_stacks(StackName=stack_id)["Stacks"][0])
        for event in reversed(_events(cloudformation, stack_id, seen)):
            seen.add(event["EventId"])
            echo(_format_event(event))
            reason = event.get("ResourceStatusReason")
            if str(event.get("ResourceStatus", "")).endswith("_FAILED") and reason:
                failures.append(f"{event.get('LogicalResourceId')}: {reason}")
        status = str(stack["StackStatus"])
        if not status.endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise DeployError(
                f"stack {options.stack_name} is still {status} after {options.timeout:.0f} s"
            )
        time.sleep(options.poll_interval)
    if status not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        details = "; ".join(failures) or stack.get("StackStatusReason") or "no reason given"
        raise DeployError(f"stack {options.stack_name} ended {status}: {details}")
    return stack


def _events(
    cloudformation: CloudFormationClient, stack_id: str, seen: set[str]
) -> list[dict[str, Any]]:
    """Events not in `seen`, newest first (the API's order), stopping at the first seen."""
    new: list[dict[str, Any]] = []
    paginator = cloudformation.get_paginator("describe_stack_events")
    for page in paginator.paginate(StackName=stack_id):
        for event in page["StackEvents"]:
            if event["EventId"] in seen:
                return new
            new.append(dict(event))
    return new


def _format_event(event: dict[str, Any]) -> str:
    stamp = event.get("Timestamp")
    when = stamp.astimezone().strftime("%H:%M:%S") if stamp is not None else "--:--:--"
    line = (
        f"  {when}  {event.get('ResourceStatus', ''):<28} "
        f"{event.get('ResourceType', ''):<32} {event.get('LogicalResourceId', '')}"
    )
    reason = event.get("ResourceStatusReason")
    return f"{line}  ({reason})" if reason else line


def _outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {
        str(output["OutputKey"]): str(output.get("OutputValue", ""))
        for output in stack.get("Outputs", [])
    }
