"""CloudFormation, as far as running a template's functions locally needs it.

- `load_document`: YAML (with the short tags `!Ref`, `!GetAtt`, `!Sub`, ...) or JSON. The
  tags load as their long forms (`{"Ref": X}`, `{"Fn::GetAtt": [A, B]}`), so every caller
  sees one shape; a plain YAML loader rejects them, which is why this one exists.
- `Intrinsics`: evaluates `Ref`, `Fn::GetAtt`, `Fn::Sub`, `Fn::Join`, `Fn::Select`,
  `Fn::Split`, `Fn::FindInMap`, `Fn::Base64` and `Fn::If` (with the template's
  `Conditions`: `Fn::Equals`, `Fn::Not`, `Fn::And`, `Fn::Or`, `Condition`) against its
  resources, parameters (overridden as `sam --parameter-overrides` does, else their
  Default) and pseudo parameters. A `Ref` to a DynamoDB table is its TableName, to a
  function its FunctionName, to the WebSocket API the local API's id, to its stage the
  stage served: the values deployed code sees in its environment (so the
  `https://${Api}.execute-api.${AWS::Region}.amazonaws.com/${Stage}` a handler builds
  reaches the local gateway, see `wsgate.offline.function_process`).
- `table_spec`: an `AWS::DynamoDB::Table` as `CreateTable` parameters, to create it in a
  local DynamoDB (moto, DynamoDB Local) the way serverless-dynamodb-local does.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsgate.exceptions import ConfigError

if TYPE_CHECKING:
    import yaml
from wsgate.offline.spec import LOCAL_ACCOUNT_ID, TableSpec, environment_value

log = logging.getLogger("wsgate.offline")

DYNAMODB_TABLE = "AWS::DynamoDB::Table"
SIMPLE_TABLE = "AWS::Serverless::SimpleTable"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
SERVERLESS_FUNCTION = "AWS::Serverless::Function"
FUNCTION_TYPES = (LAMBDA_FUNCTION, SERVERLESS_FUNCTION)
API = "AWS::ApiGatewayV2::Api"
API_STAGE = "AWS::ApiGatewayV2::Stage"

#: `Fn::Sub` placeholders: `${Name}`, `${Resource.Attribute}`, `${!Literal}`.
_SUB = re.compile(r"\$\{([^}]*)\}")


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    import yaml

    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no other node kinds
        raise yaml.constructor.ConstructorError(None, None, f"unexpected node {node!r}")
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


@cache
def _loader() -> type[yaml.SafeLoader]:
    """SafeLoader plus CloudFormation's short-form tags (PyYAML is imported when first
    needed, so a base install can say which extra to install instead of failing on import)."""
    import yaml

    class CloudFormationLoader(yaml.SafeLoader):
        pass

    CloudFormationLoader.add_multi_constructor("!", _construct_tag)
    return CloudFormationLoader


def load_document(path: Path) -> Any:
    """Parse a YAML or JSON file; short CloudFormation tags become their long forms."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"cannot parse {path}: {exc}") from exc
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse {path}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Pseudo:
    """CloudFormation's pseudo parameters, with local values."""

    region: str
    stack_name: str
    account_id: str = LOCAL_ACCOUNT_ID

    def get(self, name: str) -> str | None:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account_id}:"
                f"stack/{self.stack_name}/00000000-0000-0000-0000-000000000000"
            ),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
        }.get(name)


#: What `{"Ref": "AWS::NoValue"}` evaluates to: the property is left out.
NO_VALUE: Any = object()

#: How a resource is found by logical id: its (variable-resolved) definition, or None.
ResourceLookup = Callable[[str], Mapping[str, Any] | None]


class Intrinsics:
    """Evaluates intrinsic functions in values taken from one template.

    Errors are ConfigErrors that name the file (`source`), the key being evaluated
    (`where`) and the function that failed.
    """

    def __init__(
        self,
        *,
        source: str,
        resource: ResourceLookup,
        pseudo: Pseudo,
        parameters: Mapping[str, Any] | None = None,
        mappings: Mapping[str, Any] | None = None,
        variables: Callable[[Any, str], Any] | None = None,
        api_id: str | None = None,
        overrides: Mapping[str, str] | None = None,
        conditions: Mapping[str, Any] | None = None,
    ) -> None:
        self.source = source
        #: The local API's id: what a `Ref` to the WebSocket API is (its logical id if None).
        self.api_id = api_id
        #: The stage served: what a `Ref` to an API stage is, once the loader knows it.
        self.stage: str | None = None
        #: Resolves a string's own variables first (serverless.yml's `${...}`), if any.
        self.variables = variables
        self.resource = resource
        self.pseudo = pseudo
        self.parameters = parameters or {}
        self.mappings = mappings or {}
        #: Parameter values given by the user (--parameter-overrides, samconfig.toml).
        self.overrides = overrides or {}
        self.conditions = conditions or {}
        self._condition_values: dict[str, bool] = {}
        self._active: list[str] = []

    def error(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {where}: {message}")

    def environment(self, variables: Mapping[Any, Any], where: str) -> dict[str, str]:
        """Environment variables as a Lambda function gets them: evaluated, stringified,
        `AWS::NoValue` and nulls dropped."""
        environment: dict[str, str] = {}
        for name, raw in variables.items():
            key = f"{where}.{name}"
            resolved = self.evaluate(raw, key)
            if resolved is NO_VALUE:
                continue
            try:
                text = environment_value(resolved)
            except TypeError as exc:
                raise self.error(key, str(exc)) from None
            if text is not None:
                environment[str(name)] = text
        return environment

    def evaluate(self, value: Any, where: str) -> Any:
        """`value` with every intrinsic function replaced by its result (deeply)."""
        if isinstance(value, str) and self.variables is not None:
            resolved = self.variables(value, where)
            return resolved if isinstance(resolved, str) else self.evaluate(resolved, where)
        if isinstance(value, dict):
            if len(value) == 1:
                ((key, arg),) = value.items()
                if key == "Ref":
                    return self.ref(self._text(arg, where, "Ref"), where)
                if isinstance(key, str) and key.startswith("Fn::"):
                    return self._function(key, arg, where)
            out = {}
            for key, item in value.items():
                result = self.evaluate(item, f"{where}.{key}")
                if result is not NO_VALUE:
                    out[key] = result
            return out
        if isinstance(value, list):
            items = [self.evaluate(item, f"{where}[{i}]") for i, item in enumerate(value)]
            return [item for item in items if item is not NO_VALUE]
        return value

    def _text(self, value: Any, where: str, function: str) -> str:
        value = self.evaluate(value, where)
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, str | int | float):
            raise self.error(where, f"{function} needs a string, got {json.dumps(value)}")
        return str(value)

    def _function(self, name: str, arg: Any, where: str) -> Any:
        if name == "Fn::GetAtt":
            if isinstance(arg, str):
                arg = arg.split(".", 1)
            if not isinstance(arg, list) or len(arg) != 2:
                raise self.error(where, f"Fn::GetAtt needs [Resource, Attribute], got {arg!r}")
            return self.get_att(
                self._text(arg[0], where, name), self._text(arg[1], where, name), where
            )
        if name == "Fn::Sub":
            return self._sub(arg, where)
        if name == "Fn::Join":
            if not isinstance(arg, list) or len(arg) != 2:
                raise self.error(where, f"Fn::Join needs [delimiter, [values]], got {arg!r}")
            delimiter = self._text(arg[0], where, name)
            items = self.evaluate(arg[1], where)
            if not isinstance(items, list):
                raise self.error(where, "Fn::Join needs a list of values")
            return delimiter.join(self._text(item, where, name) for item in items)
        if name == "Fn::Select":
            if not isinstance(arg, list) or len(arg) != 2:
                raise self.error(where, f"Fn::Select needs [index, [values]], got {arg!r}")
            index = int(self._text(arg[0], where, name))
            items = self.evaluate(arg[1], where)
            if not isinstance(items, list) or not 0 <= index < len(items):
                raise self.error(where, f"Fn::Select index {index} is out of range")
            return items[index]
        if name == "Fn::Split":
            if not isinstance(arg, list) or len(arg) != 2:
                raise self.error(where, f"Fn::Split needs [delimiter, string], got {arg!r}")
            return self._text(arg[1], where, name).split(self._text(arg[0], where, name))
        if name == "Fn::FindInMap":
            if not isinstance(arg, list) or len(arg) < 3:
                raise self.error(where, f"Fn::FindInMap needs [map, key, key], got {arg!r}")
            keys = [self._text(item, where, name) for item in arg[:3]]
            try:
                return self.evaluate(self.mappings[keys[0]][keys[1]][keys[2]], where)
            except (KeyError, TypeError):
                raise self.error(where, f"Fn::FindInMap {keys} is not in Mappings") from None
        if name == "Fn::Base64":
            return base64.b64encode(self._text(arg, where, name).encode()).decode("ascii")
        if name == "Fn::If":
            if not isinstance(arg, list) or len(arg) != 3:
                raise self.error(where, f"Fn::If needs [condition, then, else], got {arg!r}")
            chosen = arg[1] if self.condition(self._text(arg[0], where, name), where) else arg[2]
            return self.evaluate(chosen, where)
        if name in ("Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or"):
            return self._condition_function(name, arg, where)
        raise self.error(
            where,
            f"{name} is not supported locally (wsgate evaluates Ref, Fn::GetAtt, Fn::Sub, "
            "Fn::Join, Fn::Select, Fn::Split, Fn::FindInMap, Fn::Base64, Fn::If, Fn::Equals, "
            "Fn::Not, Fn::And and Fn::Or)",
        )

    def condition(self, name: str, where: str) -> bool:
        """The value of the template's condition `name` (evaluated once)."""
        if name not in self._condition_values:
            if name not in self.conditions:
                raise self.error(where, f"no condition {name!r} under Conditions")
            self._enter(f"Conditions.{name}", where)
            try:
                self._condition_values[name] = self._truth(
                    self.conditions[name], f"Conditions.{name}"
                )
            finally:
                self._active.pop()
        return self._condition_values[name]

    def _truth(self, value: Any, where: str) -> bool:
        if isinstance(value, dict) and list(value) == ["Condition"]:
            return self.condition(self._text(value["Condition"], where, "Condition"), where)
        result = self.evaluate(value, where)
        if isinstance(result, bool):
            return result
        if isinstance(result, str) and result.lower() in ("true", "false"):
            return result.lower() == "true"
        raise self.error(where, f"expected a condition, got {json.dumps(result)}")

    def _condition_function(self, name: str, arg: Any, where: str) -> bool:
        if name == "Fn::Equals":
            if not isinstance(arg, list) or len(arg) != 2:
                raise self.error(where, f"Fn::Equals needs [a, b], got {arg!r}")
            a, b = (self.evaluate(item, where) for item in arg)
            return bool(_comparable(a) == _comparable(b))
        items = arg if isinstance(arg, list) else [arg]
        values = [self._truth(item, where) for item in items]
        if name == "Fn::Not":
            if len(values) != 1:
                raise self.error(where, f"Fn::Not needs [condition], got {arg!r}")
            return not values[0]
        return all(values) if name == "Fn::And" else any(values)

    def included(self, resource: Mapping[str, Any], where: str) -> bool:
        """False for a resource whose `Condition` is false: it is not deployed."""
        name = resource.get("Condition")
        return name is None or self.condition(self._text(name, where, "Condition"), where)

    def _sub(self, arg: Any, where: str) -> str:
        variables: Mapping[str, Any] = {}
        if isinstance(arg, list):
            if len(arg) != 2 or not isinstance(arg[1], dict):
                raise self.error(
                    where, f"Fn::Sub needs a string or [string, {{vars}}], got {arg!r}"
                )
            arg, variables = arg
        if not isinstance(arg, str):
            raise self.error(where, f"Fn::Sub needs a string, got {arg!r}")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return self._text(variables[name], where, "Fn::Sub")
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return self.get_att(resource, attribute, where)
            return self._text(self.ref(name, where), where, "Fn::Sub")

        return _SUB.sub(replace, arg)

    def _enter(self, name: str, where: str) -> None:
        if name in self._active:
            chain = " -> ".join([*self._active, name])
            raise self.error(where, f"circular reference: {chain}")
        self._active.append(name)

    def ref(self, name: str, where: str) -> Any:
        """What `{"Ref": name}` evaluates to when deployed (as far as wsgate can know)."""
        if name == "AWS::NoValue":
            return NO_VALUE
        if name.startswith("AWS::"):
            pseudo = self.pseudo.get(name)
            if pseudo is None:
                raise self.error(where, f"pseudo parameter {name} is not supported locally")
            return pseudo
        if name in self.parameters:
            parameter = self.parameters[name]
            declared = str(parameter.get("Type", "")) if isinstance(parameter, dict) else ""
            if name in self.overrides:
                value = self.overrides[name]
            elif isinstance(parameter, dict) and "Default" in parameter:
                value = self.evaluate(parameter["Default"], f"Parameters.{name}.Default")
            else:
                raise self.error(
                    where,
                    f"parameter {name} has no Default: give it a value with "
                    f"--parameter-overrides {name}=VALUE (or parameter_overrides in "
                    "samconfig.toml)",
                )
            is_list = declared == "CommaDelimitedList" or declared.startswith("List<")
            if is_list and isinstance(value, str):
                return [item.strip() for item in value.split(",")]
            return value
        resource = self.resource(name)
        if resource is None:
            raise self.error(
                where, f"cannot resolve {{Ref: {name}}}: no resource or parameter {name}"
            )
        kind = resource.get("Type")
        self._enter(name, where)
        try:
            if kind in (DYNAMODB_TABLE, SIMPLE_TABLE):
                return self.table_name(name, resource)
            if kind in FUNCTION_TYPES:
                return self.function_name(name, resource)
        finally:
            self._active.pop()
        if kind == API and self.api_id is not None:
            return self.api_id
        if kind == API_STAGE and self.stage is not None:
            return self.stage
        # Other resources (integrations, routes...): their logical id stands for the
        # physical id, as `sam local` does.
        if not str(kind).startswith("AWS::ApiGatewayV2::"):
            log.warning(
                "%s: %s: {Ref: %s} (%s) resolves to its logical id locally",
                self.source,
                where,
                name,
                kind,
            )
        return name

    def _property(self, name: str, resource: Mapping[str, Any], key: str) -> Any:
        properties = resource.get("Properties") or {}
        if not isinstance(properties, dict) or key not in properties:
            return None
        return self.evaluate(properties[key], f"Resources.{name}.Properties.{key}")

    def table_name(self, name: str, resource: Mapping[str, Any]) -> str:
        """The TableName, or the name CloudFormation would make up, without its suffix."""
        value = self._property(name, resource, "TableName")
        return str(value) if value is not None else f"{self.pseudo.stack_name}-{name}"

    def function_name(self, name: str, resource: Mapping[str, Any]) -> str:
        value = self._property(name, resource, "FunctionName")
        return str(value) if value is not None else name

    def get_att(self, name: str, attribute: str, where: str) -> str:
        """`Fn::GetAtt` for the attributes deployed code usually reads: ARNs and names."""
        resource = self.resource(name)
        if resource is None:
            raise self.error(
                where, f"cannot resolve Fn::GetAtt {name}.{attribute}: no resource {name}"
            )
        kind = resource.get("Type")
        region, account = self.pseudo.region, self.pseudo.account_id
        self._enter(name, where)
        try:
            if kind in (DYNAMODB_TABLE, SIMPLE_TABLE):
                arn = f"arn:aws:dynamodb:{region}:{account}:table/{self.table_name(name, resource)}"
                if attribute == "Arn":
                    return arn
                if attribute == "StreamArn":
                    return f"{arn}/stream/1970-01-01T00:00:00.000"
            if kind == API and self.api_id is not None and attribute == "ApiId":
                return self.api_id
            if kind == API and self.api_id is not None and attribute == "ApiEndpoint":
                return f"wss://{self.api_id}.execute-api.{region}.amazonaws.com"
            if kind in FUNCTION_TYPES and attribute == "Arn":
                return (
                    f"arn:aws:lambda:{region}:{account}:function:"
                    f"{self.function_name(name, resource)}"
                )
        finally:
            self._active.pop()
        raise self.error(where, f"Fn::GetAtt {name}.{attribute} ({kind}) is not supported locally")


def _comparable(value: Any) -> Any:
    """`Fn::Equals` compares what CloudFormation would: strings (true == "true", 1 == "1")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def table_spec(logical_id: str, resource: Mapping[str, Any], intrinsics: Intrinsics) -> TableSpec:
    """`CreateTable` parameters for an `AWS::DynamoDB::Table` (or SAM SimpleTable)."""
    where = f"Resources.{logical_id}.Properties"
    properties = resource.get("Properties") or {}
    if not isinstance(properties, dict):
        raise intrinsics.error(where, "Properties must be a mapping")

    def prop(key: str) -> Any:
        if key not in properties:
            return None
        value = intrinsics.evaluate(properties[key], f"{where}.{key}")
        return None if value is NO_VALUE else value

    name = intrinsics.table_name(logical_id, resource)
    if resource.get("Type") == SIMPLE_TABLE:
        primary = prop("PrimaryKey") or {"Name": "id", "Type": "String"}
        kind = {"String": "S", "Number": "N", "Binary": "B"}.get(str(primary.get("Type")), "S")
        params: dict[str, Any] = {
            "TableName": name,
            "KeySchema": [{"AttributeName": primary["Name"], "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": primary["Name"], "AttributeType": kind}],
            "BillingMode": "PAY_PER_REQUEST",
        }
        return TableSpec(logical_id, params)

    key_schema = prop("KeySchema")
    attributes = prop("AttributeDefinitions")
    if not key_schema or not attributes:
        raise intrinsics.error(where, "a DynamoDB table needs KeySchema and AttributeDefinitions")
    params = {"TableName": name, "KeySchema": key_schema, "AttributeDefinitions": attributes}
    throughput = prop("ProvisionedThroughput")
    billing = prop("BillingMode") or ("PROVISIONED" if throughput else "PAY_PER_REQUEST")
    params["BillingMode"] = billing
    if billing == "PROVISIONED":
        params["ProvisionedThroughput"] = _throughput(throughput)
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        indexes = prop(key)
        if indexes:
            params[key] = [
                {
                    k: (_throughput(v) if k == "ProvisionedThroughput" else v)
                    for k, v in index.items()
                    if k != "ProvisionedThroughput" or billing == "PROVISIONED"
                }
                for index in indexes
            ]
    stream = prop("StreamSpecification")
    if isinstance(stream, dict) and stream.get("StreamViewType"):
        params["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
    ttl = prop("TimeToLiveSpecification")
    ttl_attribute = None
    if isinstance(ttl, dict) and ttl.get("Enabled") in (True, "true", "True"):
        ttl_attribute = str(ttl.get("AttributeName"))
    return TableSpec(logical_id, params, ttl_attribute)


def _throughput(value: Any) -> dict[str, int]:
    value = value or {}
    return {
        "ReadCapacityUnits": int(value.get("ReadCapacityUnits", 1)),
        "WriteCapacityUnits": int(value.get("WriteCapacityUnits", 1)),
    }
