"""The fleet parts of template.yaml: the dead-letter alarm (issue 12.4); the status action runs in the worker."""

from __future__ import annotations

from tests.test_template import Template, cfn_template  # noqa: F401 - the fixture, shared


def test_dead_letter_queue_has_an_alarm_on_any_visible_message(cfn_template: Template) -> None:  # noqa: F811
    alarm = cfn_template["Resources"]["FleetDeadLetterAlarm"]
    assert alarm["Type"] == "AWS::CloudWatch::Alarm"
    props = alarm["Properties"]
    assert (props["Namespace"], props["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert props["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["FleetDeadLetterQueue", "QueueName"]}}
    ]
    assert (props["ComparisonOperator"], props["Threshold"]) == ("GreaterThanThreshold", 0)
    assert props["TreatMissingData"] == "notBreaching"
    assert props["AlarmActions"] == {
        "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
    }


def test_the_status_action_is_served_by_the_worker_that_mounts_the_file_system(
    cfn_template: Template,  # noqa: F811
) -> None:
    worker = cfn_template["Resources"]["FleetMigrateFunction"]["Properties"]
    assert worker["Handler"] == "handlers.fleet.migrate_shard"
    assert worker["FileSystemConfigs"][0]["LocalMountPath"] == "/mnt/counters"
