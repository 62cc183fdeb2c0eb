"""Deploying an app to AWS: CloudFormation template, code zip, stack create/update.

- `build`: App -> deployment model (`model`); `template`: model -> CloudFormation dict;
  `permissions`: least privilege per handler; `package`: the deterministic code zip (all
  four pure);
- `deployer`: the only module here that calls AWS (boto3, imported when used).

Nothing here imports `wsgate.server` or `wsgate.cli`.
"""

from wsgate.deploy.build import build
from wsgate.deploy.model import Analysis, Api, Function, Grant
from wsgate.deploy.package import Package, app_target, build_package
from wsgate.deploy.permissions import analyse, grant_for
from wsgate.deploy.template import dumps, generate, render

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
