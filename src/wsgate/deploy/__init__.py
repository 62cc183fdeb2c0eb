"""Deploying an app to AWS: CloudFormation template, code zip, stack create/update.

- `template`: App -> CloudFormation dict (pure); `permissions`: least privilege per
  handler (pure); `package`: the deterministic code zip (pure);
- `deployer`: the only module here that calls AWS (boto3, imported when used).

Nothing here imports `wsgate.server` or `wsgate.cli`.
"""

from wsgate.deploy.model import Analysis, Api, Function, Grant
from wsgate.deploy.package import Package, app_target, build_package
from wsgate.deploy.permissions import analyse, grant_for
from wsgate.deploy.template import build, dumps, generate, render

__all__ = [
    "Analysis",
    "Api",
    "Function",
    "Grant",
    "Package",
    "analyse",
    "app_target",
    "build",
    "build_package",
    "dumps",
    "generate",
    "grant_for",
    "render",
]
