"""template.yaml: SAM transform, cfn-lint, routes against the handler's, authorization and network rules.

No AWS account is needed: aws-sam-translator runs in-process with a fixed region and a static map of
managed policies (what `sam validate` would fetch from IAM), then cfn-lint checks the CloudFormation
it produced. Current cfn-lint reads SAM templates without running the transform, so both are linted.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
REGION = "us-east-1"
MOUNT_PATH = "/mnt/counters"

# SAM resolves managed policy *names* listed under a function's Policies through IAM. Offline we hand
# it the ARNs instead; a name missing here fails the transform, so add it when the template uses one.
MANAGED_POLICIES = {
    name: f"arn:aws:iam::aws:policy/{path}{name}"
    for name, path in {
        "AWSLambdaBasicExecutionRole": "service-role/",
        "AWSLambdaVPCAccessExecutionRole": "service-role/",
        "AWSLambdaSQSQueueExecutionRole": "service-role/",
        "AmazonElasticFileSystemClientReadWriteAccess": "",
        "CloudWatchLambdaInsightsExecutionRolePolicy": "",
    }.items()
}

Template = dict[str, Any]


def _sam_source() -> Template:
    template: Template = yaml_parse(TEMPLATE.read_text(encoding="utf-8"))
    return template


def _with_uploaded_code(template: Template) -> Template:
    """Local CodeUri replaced by an S3 location, as `sam validate` does: the transform needs one."""
    template = copy.deepcopy(template)
    placeholder = "s3://bucket/counters.zip"
    globals_function = template.get("Globals", {}).get("Function", {})
    if "CodeUri" in globals_function:
        globals_function["CodeUri"] = placeholder
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function" and "CodeUri" in resource.get("Properties", {}):
            resource["Properties"]["CodeUri"] = placeholder
    return template


@pytest.fixture(scope="module")
def sam_template() -> Template:
    """template.yaml as written, short-form intrinsics (!Ref, !If) expanded."""
    return _sam_source()


@pytest.fixture(scope="module")
def cfn_template() -> Template:
    """template.yaml after the AWS::Serverless transform, with the parameters' defaults."""
    translator = Translator(
        managed_policy_map=None,
        sam_parser=Parser(),
        boto_session=boto3.session.Session(region_name=REGION),
    )
    transformed: Template = translator.translate(
        _with_uploaded_code(_sam_source()),
        parameter_values={},
        get_managed_policy_map=lambda: MANAGED_POLICIES,
    )
    return transformed


def _lint_problems(template_text: str) -> list[str]:
    """cfn-lint errors and warnings (the bar of `sam validate --lint`); informational notes pass."""
    matches = lint(template_text, config=ManualArgs(regions=[REGION]))
    return [
        f"{match.rule.id} {'/'.join(str(part) for part in match.path)}: {match.message}"
        for match in matches
        if match.rule.severity in {"error", "warning"}
    ]


def test_transformed_template_passes_cfn_lint(cfn_template: Template) -> None:
    assert not any(r["Type"].startswith("AWS::Serverless::") for r in cfn_template["Resources"].values())
    assert _lint_problems(json.dumps(cfn_template)) == []


def test_sam_template_passes_cfn_lint() -> None:
    assert _lint_problems(TEMPLATE.read_text(encoding="utf-8")) == []


# ---------------------------------------------------------------- routes


def _event_routes(sam_template: Template) -> set[tuple[str, str]]:
    events = sam_template["Resources"]["ApiFunction"]["Properties"]["Events"]
    return {
        (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
        for event in events.values()
        if event["Type"] == "HttpApi"
    }


def _definition_routes(sam_template: Template) -> set[tuple[str, str]]:
    paths = sam_template["Resources"]["CountersHttpApi"]["Properties"]["DefinitionBody"]["paths"]
    return {(method.upper(), path) for path, item in paths.items() for method in item}


def _difference(left: set[tuple[str, str]], right: set[tuple[str, str]]) -> list[str]:
    return sorted(f"{method} {path}" for method, path in left - right)


def test_every_routed_event_has_its_authorization_entry(sam_template: Template) -> None:
    # GIVEN the routes of ApiFunction's HttpApi events and the paths of the API's OpenAPI body
    events, definition = _event_routes(sam_template), _definition_routes(sam_template)

    # THEN each list holds exactly the other's routes: a route missing from the body would be public
    assert _difference(events, definition) == [], "events without an authorization entry in DefinitionBody"
    assert _difference(definition, events) == [], "DefinitionBody paths that no event routes to the function"


def test_template_routes_are_the_handler_routes(sam_template: Template) -> None:
    try:
        import handlers.api as api
    except ModuleNotFoundError as exc:
        if exc.name != "handlers.api":
            raise
        pytest.xfail("API lands with issue 4")

    handler_routes = {(method.upper(), path) for method, path in api.ROUTES}
    template_routes = _event_routes(sam_template)
    assert _difference(handler_routes, template_routes) == [], "handler routes the template does not route"
    assert _difference(template_routes, handler_routes) == [], "template routes the handler does not serve"
    assert callable(api.handler)


# ---------------------------------------------------------------- authorization


def _parameters(template: Template, overrides: Mapping[str, str]) -> dict[str, Any]:
    values = {name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()}
    values.update(overrides)
    return values


def _condition(expression: Any, template: Template, parameters: Mapping[str, Any]) -> bool:
    """Evaluate a CloudFormation condition (Equals, Not, And, Or, Condition over parameter Refs)."""
    (function, argument), *_ = expression.items()
    if function == "Condition":
        return _condition(template["Conditions"][argument], template, parameters)
    if function == "Fn::Equals":
        left, right = (_value(side, template, parameters) for side in argument)
        return str(left) == str(right)
    if function == "Fn::Not":
        return not _condition(argument[0], template, parameters)
    if function == "Fn::And":
        return all(_condition(part, template, parameters) for part in argument)
    if function == "Fn::Or":
        return any(_condition(part, template, parameters) for part in argument)
    raise AssertionError(f"condition function {function!r} is not handled by this test")


_NO_VALUE = object()


def _value(node: Any, template: Template, parameters: Mapping[str, Any]) -> Any:
    """Resolve Fn::If, parameter Refs and AWS::NoValue the way CloudFormation would; keep the rest."""
    if isinstance(node, list):
        items = (_value(item, template, parameters) for item in node)
        return [item for item in items if item is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::If"}:
        name, if_true, if_false = node["Fn::If"]
        chosen = if_true if _condition({"Condition": name}, template, parameters) else if_false
        return _value(chosen, template, parameters)
    if set(node) == {"Ref"}:
        if node["Ref"] == "AWS::NoValue":
            return _NO_VALUE
        return parameters.get(node["Ref"], node)
    resolved = {key: _value(value, template, parameters) for key, value in node.items()}
    return {key: value for key, value in resolved.items() if value is not _NO_VALUE}


def _deployed_api(cfn_template: Template, **overrides: str) -> dict[str, Any]:
    parameters = _parameters(cfn_template, overrides)
    body = cfn_template["Resources"]["CountersHttpApi"]["Properties"]["Body"]
    resolved: dict[str, Any] = _value(body, cfn_template, parameters)
    return resolved


def _operations(body: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {
        f"{method.upper()} {path}": op for path, item in body["paths"].items() for method, op in item.items()
    }


def test_by_default_every_route_requires_sigv4(cfn_template: Template) -> None:
    # WHEN the stack is deployed with the parameters' defaults
    body = _deployed_api(cfn_template)

    # THEN every route is behind IAM authorization, and no JWT authorizer exists
    assert [name for name, op in _operations(body).items() if op.get("security") != [{"AWS_IAM": []}]] == []
    schemes = body["components"]["securitySchemes"]
    assert schemes["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert "JwtAuthorizer" not in schemes


def test_jwt_parameter_puts_every_route_behind_the_jwt_authorizer(cfn_template: Template) -> None:
    issuer, audience = "https://issuer.example/pool", "client-123"
    body = _deployed_api(cfn_template, ApiAuth="JWT", JwtIssuer=issuer, JwtAudience=audience)

    assert [
        name for name, op in _operations(body).items() if op.get("security") != [{"JwtAuthorizer": []}]
    ] == []
    authorizer = body["components"]["securitySchemes"]["JwtAuthorizer"]["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "jwt"
    assert authorizer["jwtConfiguration"] == {"issuer": issuer, "audience": [audience]}


def test_only_the_public_parameter_removes_authorization(cfn_template: Template) -> None:
    body = _deployed_api(cfn_template, ApiAuth="PUBLIC")

    assert [name for name, op in _operations(body).items() if "security" in op] == []
    assert cfn_template["Parameters"]["ApiAuth"]["Default"] == "IAM"


def test_jwt_without_issuer_or_audience_is_refused_by_a_rule(sam_template: Template) -> None:
    rule = sam_template["Rules"]["JwtNeedsIssuerAndAudience"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ApiAuth"}, "JWT"]}
    asserted = json.dumps(rule["Assertions"])
    assert '"JwtIssuer"' in asserted and '"JwtAudience"' in asserted


# ---------------------------------------------------------------- functions, file system, network


def _functions(cfn_template: Template) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in cfn_template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }


def test_functions_run_python313_on_arm64_and_build_with_make(
    cfn_template: Template, sam_template: Template
) -> None:
    handlers = {name: fn["Properties"]["Handler"] for name, fn in _functions(cfn_template).items()}
    assert handlers == {
        "ApiFunction": "handlers.api.handler",
        "FleetPlanFunction": "handlers.fleet.plan",
        "FleetMigrateFunction": "handlers.fleet.migrate_shard",
    }
    for name, function in _functions(cfn_template).items():
        assert function["Properties"]["Runtime"] == "python3.13", name
        assert function["Properties"]["Architectures"] == ["arm64"], name
        assert sam_template["Resources"][name]["Metadata"] == {"BuildMethod": "makefile"}, name


@pytest.mark.parametrize("name", ["ApiFunction", "FleetMigrateFunction"])
def test_file_system_functions_mount_the_access_point_from_the_vpc(cfn_template: Template, name: str) -> None:
    function = cfn_template["Resources"][name]
    properties = function["Properties"]
    assert properties["FileSystemConfigs"] == [
        {"Arn": {"Fn::GetAtt": ["CountersAccessPoint", "Arn"]}, "LocalMountPath": MOUNT_PATH}
    ]
    assert properties["Environment"]["Variables"]["COUNTERS_ROOT"] == MOUNT_PATH
    assert len(properties["VpcConfig"]["SubnetIds"]) == 2
    assert set(function["DependsOn"]) >= {"MountTargetA", "MountTargetB"}
    # EFSWriteAccessPolicy, limited to the access point
    role = cfn_template["Resources"][properties["Role"]["Fn::GetAtt"][0]]
    statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    efs = [s for s in statements if "elasticfilesystem:ClientWrite" in s["Action"]]
    assert efs and all("elasticfilesystem:AccessPointArn" in s["Condition"]["StringEquals"] for s in efs)


def test_file_system_is_encrypted_elastic_backed_up_and_retained(cfn_template: Template) -> None:
    file_system = cfn_template["Resources"]["CountersFileSystem"]
    assert file_system["DeletionPolicy"] == file_system["UpdateReplacePolicy"] == "Retain"
    properties = file_system["Properties"]
    assert properties["Encrypted"] is True
    assert properties["PerformanceMode"] == "generalPurpose"
    assert properties["ThroughputMode"] == "elastic"
    assert properties["BackupPolicy"] == {"Status": "ENABLED"}

    access_point = cfn_template["Resources"]["CountersAccessPoint"]["Properties"]
    assert access_point["RootDirectory"]["Path"] == "/counters"
    assert set(access_point["RootDirectory"]["CreationInfo"]) == {"OwnerUid", "OwnerGid", "Permissions"}
    assert access_point["PosixUser"]["Uid"] != "0"


def test_mount_targets_accept_nfs_from_the_functions_and_nothing_else(cfn_template: Template) -> None:
    resources = cfn_template["Resources"]
    group = {"Fn::GetAtt": ["FileSystemSecurityGroup", "GroupId"]}
    ingress = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::EC2::SecurityGroupIngress" and r["Properties"]["GroupId"] == group
    ]
    assert resources["FileSystemSecurityGroup"]["Properties"].get("SecurityGroupIngress") is None
    assert {(rule["IpProtocol"], rule["FromPort"], rule["ToPort"]) for rule in ingress} == {
        ("tcp", 2049, 2049)
    }
    assert {rule["SourceSecurityGroupId"]["Fn::GetAtt"][0] for rule in ingress} == {
        "ApiFunctionSecurityGroup",
        "FleetWorkerSecurityGroup",
    }
    # The API function itself may open NFS connections to the mount targets and nothing else.
    api_egress = resources["ApiFunctionSecurityGroup"]["Properties"]["SecurityGroupEgress"]
    assert [(r["IpProtocol"], r["FromPort"], r["ToPort"]) for r in api_egress] == [("tcp", 2049, 2049)]
    assert not any(
        r["Type"] == "AWS::EC2::SecurityGroupEgress"
        and r["Properties"]["GroupId"] == {"Fn::GetAtt": ["ApiFunctionSecurityGroup", "GroupId"]}
        for r in resources.values()
    )


def test_fleet_worker_reports_partial_batch_failures_and_queue_has_a_dead_letter_queue(
    cfn_template: Template,
) -> None:
    resources = cfn_template["Resources"]
    mappings = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    assert len(mappings) == 1
    assert mappings[0]["FunctionName"] == {"Ref": "FleetMigrateFunction"}
    assert mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mappings[0]["EventSourceArn"] == {"Fn::GetAtt": ["FleetQueue", "Arn"]}

    redrive = resources["FleetQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["FleetDeadLetterQueue", "Arn"]}
    for name in ("FleetPlanFunction", "FleetMigrateFunction"):
        variables = resources[name]["Properties"]["Environment"]["Variables"]
        assert variables["FLEET_QUEUE_URL"] == {"Ref": "FleetQueue"}, name


def test_outputs_name_the_api_url_file_system_and_queue(cfn_template: Template) -> None:
    outputs = cfn_template["Outputs"]
    assert {"ApiUrl", "FileSystemId", "FleetQueueUrl"} <= set(outputs)
    assert outputs["FileSystemId"]["Value"] == {"Ref": "CountersFileSystem"}
    assert outputs["FleetQueueUrl"]["Value"] == {"Ref": "FleetQueue"}
    assert "${CountersHttpApi}" in outputs["ApiUrl"]["Value"]["Fn::Sub"]


# ---------------------------------------------------------------- security review: EFS, logs, alarms


def test_file_system_policy_refuses_clear_text_and_mounts_outside_an_access_point(
    cfn_template: Template,
) -> None:
    policy = cfn_template["Resources"]["CountersFileSystem"]["Properties"]["FileSystemPolicy"]
    denies = {s["Sid"]: s for s in policy["Statement"] if s["Effect"] == "Deny"}
    # GIVEN the deployed policy, THEN NFS without TLS is refused for every principal and action
    tls = denies["DenyWithoutTls"]
    assert tls["Principal"] == {"AWS": "*"} and tls["Action"] == "*"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # AND so is any mount, write or root access that does not name an access point
    outside = denies["DenyOutsideAnAccessPoint"]
    assert outside["Principal"] == {"AWS": "*"}
    assert set(outside["Action"]) == {
        "elasticfilesystem:ClientMount",
        "elasticfilesystem:ClientWrite",
        "elasticfilesystem:ClientRootAccess",
    }
    assert outside["Condition"] == {"Null": {"elasticfilesystem:AccessPointArn": "true"}}
    # AND nothing in it allows anything: access comes from the roles, through the access point
    assert [s for s in policy["Statement"] if s["Effect"] != "Deny"] == []


def test_every_function_logs_to_a_declared_group_kept_for_the_retention_parameter(
    cfn_template: Template,
) -> None:
    resources = cfn_template["Resources"]
    groups = {
        r["Properties"]["LogGroupName"]["Fn::Sub"]: r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Logs::LogGroup" and "LogGroupName" in r["Properties"]
    }
    for name in _functions(cfn_template):
        # Lambda writes to /aws/lambda/<function name> unless told otherwise
        assert "LogGroup" not in _functions(cfn_template)[name]["Properties"].get("LoggingConfig", {})
        assert groups[f"/aws/lambda/${{{name}}}"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name
    assert cfn_template["Parameters"]["LogRetentionDays"]["Default"] == 30


def test_the_api_writes_an_access_log_kept_for_the_retention_parameter(cfn_template: Template) -> None:
    resources = cfn_template["Resources"]
    stages = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Stage"]
    assert len(stages) == 1
    settings = stages[0]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert json.loads(settings["Format"])["requestId"] == "$context.requestId"
    assert resources["ApiAccessLogGroup"]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def _alarm_actions(alarm: Mapping[str, Any], cfn_template: Template, **overrides: str) -> Any:
    return _value(alarm, cfn_template, _parameters(cfn_template, overrides)).get("AlarmActions")


def test_alarms_watch_api_5xx_and_the_dead_letter_queue(cfn_template: Template) -> None:
    resources = cfn_template["Resources"]
    api = resources["Api5xxAlarm"]["Properties"]
    assert (api["Namespace"], api["MetricName"], api["Statistic"]) == ("AWS/ApiGateway", "5xx", "Sum")
    assert {"Name": "ApiId", "Value": {"Ref": "CountersHttpApi"}} in api["Dimensions"]
    assert (api["ComparisonOperator"], api["Threshold"]) == ("GreaterThanThreshold", 0)

    dlq = resources["FleetDeadLetterAlarm"]["Properties"]
    assert (dlq["Namespace"], dlq["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert dlq["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["FleetDeadLetterQueue", "QueueName"]}}
    ]
    assert (dlq["ComparisonOperator"], dlq["Threshold"]) == ("GreaterThanThreshold", 0)

    # Both notify the topic when one is given, and nobody otherwise
    topic = "arn:aws:sns:us-east-1:123456789012:oncall"
    for alarm in (api, dlq):
        assert _alarm_actions(alarm, cfn_template) is None
        assert _alarm_actions(alarm, cfn_template, AlarmTopicArn=topic) == [topic]


def test_the_api_function_gets_the_history_retention_setting(cfn_template: Template) -> None:
    from counter_core import config

    variables = cfn_template["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert variables[config.ENV_HISTORY_RETENTION_ROWS] == {"Ref": "HistoryRetentionRows"}
    parameter = cfn_template["Parameters"]["HistoryRetentionRows"]
    assert (parameter["Default"], parameter["MinValue"]) == (config.DEFAULT_HISTORY_RETENTION_ROWS, 0)
