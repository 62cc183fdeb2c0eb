"""`wsgate template TARGET` and `wsgate deploy TARGET`: the app on AWS, unchanged.

`template` writes the CloudFormation template (YAML or JSON) and needs no AWS access;
`deploy` packages the code, uploads it and creates or updates the stack, printing
CloudFormation's events as they come. Warnings (a handler the permission analyser could
not read, for instance) go to stderr; the template or the stack's outputs to stdout.
"""

from __future__ import annotations

from typing import IO

import click

from wsgate.exceptions import WsgateError

_FULL_PERMISSIONS_HELP = (
    "Grant every function all wsgate.connections permissions instead of what its "
    "handler's code shows it uses."
)


def _progress(line: str) -> None:
    click.echo(line, err=True)


@click.command()
@click.argument("target")
@click.option(
    "-o",
    "--output",
    type=click.File("w"),
    default="-",
    show_default="stdout",
    help="Write the template to this file.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["yaml", "json"]),
    default="yaml",
    show_default=True,
)
@click.option(
    "--stage", default="dev", show_default=True, help="Default of the StageName parameter."
)
@click.option("--name", default=None, help="The API's name (default: the App's name).")
@click.option("--full-permissions", is_flag=True, help=_FULL_PERMISSIONS_HELP)
def template(
    target: str, output: IO[str], fmt: str, stage: str, name: str | None, full_permissions: bool
) -> None:
    """Write the CloudFormation template for TARGET (path.py, path.py:app or module:app).

    The template takes the code zip's location as parameters CodeBucket and CodeKey;
    `wsgate deploy` fills them in.
    """
    from wsgate.deploy.package import app_target
    from wsgate.deploy.template import dumps, generate
    from wsgate.importer import load_app

    try:
        app = load_app(target)
        document, warnings = generate(
            app,
            app_target=app_target(target),
            stage=stage,
            name=name,
            full_permissions=full_permissions,
        )
        text = dumps(document, fmt)
    except WsgateError as exc:
        raise click.ClickException(str(exc)) from exc
    for warning in warnings:
        _progress(f"warning: {warning}")
    output.write(text)


@click.command()
@click.argument("target")
@click.option("--stack-name", default=None, help="Default: <app name>-<stage>.")
@click.option("--bucket", required=True, help="S3 bucket for the code zip.")
@click.option("--create-bucket", is_flag=True, help="Create the bucket if it does not exist.")
@click.option("--region", default=None, help="Default: AWS_REGION / AWS_DEFAULT_REGION / profile.")
@click.option(
    "--endpoint-url",
    default=None,
    help="Talk to this endpoint instead of AWS (moto, LocalStack).",
)
@click.option("--stage", default="dev", show_default=True)
@click.option("--name", default=None, help="The API's name (default: the App's name).")
@click.option("--full-permissions", is_flag=True, help=_FULL_PERMISSIONS_HELP)
@click.option(
    "--poll-interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds between progress checks.",
)
def deploy(
    target: str,
    stack_name: str | None,
    bucket: str,
    create_bucket: bool,
    region: str | None,
    endpoint_url: str | None,
    stage: str,
    name: str | None,
    full_permissions: bool,
    poll_interval: float,
) -> None:
    """Package TARGET and create or update its CloudFormation stack."""
    from wsgate.deploy.deployer import DeployOptions, default_stack_name, deploy_app
    from wsgate.importer import load_app

    try:
        app = load_app(target)
        options = DeployOptions(
            stack_name=stack_name or default_stack_name(name or app.name, stage),
            bucket=bucket,
            stage=stage,
            region=region,
            endpoint_url=endpoint_url,
            create_bucket=create_bucket,
            name=name,
            full_permissions=full_permissions,
            poll_interval=poll_interval,
        )
        result = deploy_app(app, target, options, echo=_progress)
    except WsgateError as exc:
        raise click.ClickException(str(exc)) from exc
    verb = "deployed" if result.changed else "unchanged"
    _progress(f"{verb}: stack {result.stack_name} is {result.status}")
    for key, value in result.outputs.items():
        click.echo(f"{key}: {value}")
