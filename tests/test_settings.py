"""Settings: every variable takes effect, bad values name the variable, misspellings warn."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cleversync.errors import ConfigurationError
from cleversync.settings import Settings, all_variables

# Every setting (README: 'Configuration'), a non-default value, and how to read it back.
EVERY_VARIABLE = {
    "CleverSync__Clever__ApiBaseUrl": (
        "http://127.0.0.1:9999",
        lambda s: s.clever.api_base_url,
        "http://127.0.0.1:9999",
    ),
    "CleverSync__Clever__ApiVersion": ("v3.1", lambda s: s.clever.api_version, "v3.1"),
    "CleverSync__Clever__TokenUrl": (
        "http://127.0.0.1:9999/oauth/tokens",
        lambda s: s.clever.token_url,
        "http://127.0.0.1:9999/oauth/tokens",
    ),
    "CleverSync__Clever__TokenMode": (
        "client_credentials",
        lambda s: s.clever.token_mode,
        "client_credentials",
    ),
    "CleverSync__Clever__TokenMaxAgeMinutes": ("15", lambda s: s.clever.token_max_age_minutes, 15),
    "CleverSync__Clever__TimeoutSeconds": ("7.5", lambda s: s.clever.timeout_seconds, 7.5),
    "CleverSync__KeyVault__Url": (
        "https://kv-demo.vault.azure.net/",
        lambda s: s.key_vault.url,
        "https://kv-demo.vault.azure.net/",
    ),
    "CleverSync__KeyVault__RetryAttempts": ("4", lambda s: s.key_vault.retry_attempts, 4),
    "CleverSync__KeyVault__RetryDelaySeconds": (
        "0.5",
        lambda s: s.key_vault.retry_delay_seconds,
        0.5,
    ),
    "CleverSync__DataDir": (
        "/var/lib/cleversync",
        lambda s: s.data_dir,
        Path("/var/lib/cleversync"),
    ),
    "CleverSync__Secrets__File": (
        "/etc/cleversync/secrets.json",
        lambda s: s.secrets_file,
        Path("/etc/cleversync/secrets.json"),
    ),
    "CleverSync__Secrets__CacheSeconds": ("60", lambda s: s.secrets.cache_seconds, 60),
    "CleverSync__TokenRefreshThreshold": ("0.5", lambda s: s.token_refresh_threshold, 0.5),
    "CleverSync__Concurrency__MaxSchoolsInParallel": (
        "12",
        lambda s: s.concurrency.max_schools_in_parallel,
        12,
    ),
    "CleverSync__Sync__PageSize": ("5000", lambda s: s.sync.page_size, 5000),
    "CleverSync__Sync__BatchSize": ("250", lambda s: s.sync.batch_size, 250),
    "CleverSync__Sync__TimeoutMinutes": ("45", lambda s: s.sync.timeout_minutes, 45),
    "CleverSync__Sync__RunDeadlineMinutes": ("0", lambda s: s.sync.run_deadline_minutes, 0),
    "CleverSync__Sync__MaxDeletePercent": ("25", lambda s: s.sync.max_delete_percent, 25),
    "CleverSync__Sync__DeleteMode": ("Deactivate", lambda s: s.sync.delete_mode, "Deactivate"),
    "CleverSync__Sync__EventRetentionDays": ("20", lambda s: s.sync.event_retention_days, 20),
    "CleverSync__Retry__CleverApi__MaxAttempts": (
        "2",
        lambda s: s.retry.clever_api.max_attempts,
        2,
    ),
    "CleverSync__Retry__CleverApi__BackoffBase": (
        "0",
        lambda s: s.retry.clever_api.backoff_base,
        0,
    ),
    "CleverSync__Retry__Database__MaxAttempts": ("1", lambda s: s.retry.database.max_attempts, 1),
    "CleverSync__Retry__Database__BackoffBase": (
        "0.25",
        lambda s: s.retry.database.backoff_base,
        0.25,
    ),
    "CleverSync__Retry__RateLimitRespectRetryAfter": (
        "false",
        lambda s: s.retry.rate_limit_respect_retry_after,
        False,
    ),
    "CleverSync__Retry__MaxWaitSeconds": ("45", lambda s: s.retry.max_wait_seconds, 45),
    "CleverSync__Health__CacheDurationSeconds": ("5", lambda s: s.health.cache_duration_seconds, 5),
    "CleverSync__Monitoring__AlertAfterConsecutiveFailures": (
        "5",
        lambda s: s.monitoring.alert_after_consecutive_failures,
        5,
    ),
    "CleverSync__History__RetentionDays": ("30", lambda s: s.history.retention_days, 30),
    "CleverSync__History__MaxChangeDetailsPerRun": (
        "7",
        lambda s: s.history.max_change_details_per_run,
        7,
    ),
    "CleverSync__Logging__LogLevel": ("Debug", lambda s: s.logging.python_level, logging.DEBUG),
    "CleverSync__Admin__AllowedUsers": (
        "Ada@Example.org; grace@example.org,",
        lambda s: s.admin.users,
        frozenset({"ada@example.org", "grace@example.org"}),
    ),
    "CleverSync__Admin__Role": ("CleverSync.Admin", lambda s: s.admin.role, "CleverSync.Admin"),
    "CleverSync__Notify__To": (
        "ops@example.org, it@example.org",
        lambda s: s.notify.recipients,
        ("ops@example.org", "it@example.org"),
    ),
    "CleverSync__Notify__From": (
        "cleversync@example.org",
        lambda s: s.notify.from_address,
        "cleversync@example.org",
    ),
    "CleverSync__Notify__SmtpHost": (
        "smtp.example.org",
        lambda s: s.notify.smtp_host,
        "smtp.example.org",
    ),
    "CleverSync__Notify__SmtpPort": ("2525", lambda s: s.notify.smtp_port, 2525),
    "CleverSync__Notify__SmtpUser": ("apikey", lambda s: s.notify.smtp_user, "apikey"),
    "CleverSync__Notify__On": ("Always", lambda s: s.notify.on, "always"),
    "CleverSync__Notify__DashboardUrl": (
        "https://cleversync.example.org/admin",
        lambda s: s.notify.dashboard_url,
        "https://cleversync.example.org/admin",
    ),
    "CleverSync__Notify__TimeoutSeconds": ("5", lambda s: s.notify.timeout_seconds, 5),
    "CleverSyncSchedule": ("0 30 3 * * *", lambda s: s.schedule, "0 30 3 * * *"),
    "CleverSyncQueueName": ("sync-test", lambda s: s.queue_name, "sync-test"),
    "APPLICATIONINSIGHTS_CONNECTION_STRING": (
        "InstrumentationKey=00000000-0000-0000-0000-000000000000",
        lambda s: s.appinsights_connection_string,
        "InstrumentationKey=00000000-0000-0000-0000-000000000000",
    ),
}


def test_defaults_match_the_design() -> None:
    s = Settings.load({})
    assert s.clever.api_base_url == "https://api.clever.com"
    assert s.clever.api_version == "v3.0"
    assert s.clever.token_url == "https://clever.com/oauth/tokens"
    assert s.clever.token_mode == "district_tokens"
    assert s.clever.token_max_age_minutes == 60
    assert s.clever.timeout_seconds == 30
    assert s.key_vault.url == "" and not s.uses_key_vault
    assert (s.key_vault.retry_attempts, s.key_vault.retry_delay_seconds) == (3, 2)
    assert s.data_dir == Path(".cleversync")
    assert s.secrets_file == Path(".cleversync/secrets.json")
    assert s.secrets.cache_seconds == 900
    assert s.token_refresh_threshold == 0.75
    assert s.schedule == "0 0 2 * * *"
    assert s.concurrency.max_schools_in_parallel == 5
    assert (s.sync.page_size, s.sync.batch_size, s.sync.timeout_minutes) == (1000, 500, 30)
    assert s.sync.run_deadline_minutes == 25
    assert (s.sync.max_delete_percent, s.sync.delete_mode, s.sync.event_retention_days) == (
        40,
        "Delete",
        29,
    )
    assert (s.retry.clever_api.max_attempts, s.retry.clever_api.backoff_base) == (5, 2)
    assert (s.retry.database.max_attempts, s.retry.database.backoff_base) == (3, 1)
    assert s.retry.rate_limit_respect_retry_after is True
    assert s.retry.max_wait_seconds == 120
    assert s.health.cache_duration_seconds == 30
    assert s.monitoring.alert_after_consecutive_failures == 3
    assert s.history.retention_days == 90
    assert s.logging.log_level == "Information" and s.logging.python_level == logging.INFO
    assert s.appinsights_connection_string == ""
    assert (s.notify.to, s.notify.from_address, s.notify.smtp_host) == ("", "", "")
    assert (s.notify.smtp_port, s.notify.smtp_user, s.notify.on) == (587, "", "failures")
    assert (s.notify.dashboard_url, s.notify.timeout_seconds) == ("", 10)


def test_every_variable_takes_effect() -> None:
    settings = Settings.load({name: raw for name, (raw, _, _) in EVERY_VARIABLE.items()})
    for name, (_, read, expected) in EVERY_VARIABLE.items():
        assert read(settings) == expected, name
    assert settings.unknown_variables == ()


def test_the_table_covers_every_setting() -> None:
    # A setting added to the model without a row above would escape the test above.
    assert set(all_variables()) == set(EVERY_VARIABLE)


def test_names_are_matched_ignoring_case() -> None:
    settings = Settings.load(
        {"CLEVERSYNC__SYNC__PAGESIZE": "42", "cleversync__retry__cleverapi__backoffbase": "0"}
    )
    assert settings.sync.page_size == 42
    assert settings.retry.clever_api.backoff_base == 0
    assert settings.retry.clever_api.max_attempts == 5  # the sibling keeps its default


def test_a_misspelled_variable_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cleversync.settings"):
        settings = Settings.load({"CleverSync__Sync__PageSzie": "50", "CleverSync__Sync": "x"})
    assert settings.unknown_variables == ("CleverSync__Sync", "CleverSync__Sync__PageSzie")
    assert settings.sync.page_size == 1000
    assert "CleverSync__Sync__PageSzie" in caplog.text


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("CleverSync__Sync__PageSize", "0", "greater than or equal to 1"),
        ("CleverSync__Sync__PageSize", "10001", "less than or equal to 10000"),
        ("CleverSync__Sync__PageSize", "many", "valid integer"),
        ("CleverSync__Sync__BatchSize", "2001", "less than or equal to 2000"),
        ("CleverSync__Concurrency__MaxSchoolsInParallel", "21", "less than or equal to 20"),
        ("CleverSync__TokenRefreshThreshold", "1", "less than 1"),
        ("CleverSync__TokenRefreshThreshold", "0", "greater than 0"),
        ("CleverSync__Sync__MaxDeletePercent", "101", "less than or equal to 100"),
        ("CleverSync__Sync__DeleteMode", "Shred", "'Delete' or 'Deactivate'"),
        ("CleverSync__Clever__TokenMode", "password", "'district_tokens' or 'client_credentials'"),
        ("CleverSync__Logging__LogLevel", "Loud", "Trace, Debug, Information"),
        ("CleverSync__KeyVault__Url", "http://vault", "https://"),
        ("CleverSync__Clever__ApiBaseUrl", "api.clever.com", "absolute http(s) URL"),
        ("CleverSync__Clever__ApiBaseUrl", "http://api.clever.com", "must use https"),
        ("CleverSync__Clever__TokenUrl", "http://clever.com/oauth/tokens", "only for loopback"),
        ("CleverSync__Retry__CleverApi__MaxAttempts", "-1", "greater than or equal to 0"),
        ("CleverSyncSchedule", "0 2 * * *", "six-field NCRONTAB"),
        ("CleverSyncQueueName", "Sync_Queue", "Storage queue name"),
        ("CleverSyncQueueName", "a" * 57, "Storage queue name"),
        ("CleverSync__Retry__MaxWaitSeconds", "inf", "finite number"),
        ("CleverSync__Retry__MaxWaitSeconds", "-1", "greater than or equal to 0"),
        ("CleverSync__Sync__RunDeadlineMinutes", "-5", "greater than or equal to 0"),
        ("CleverSync__Notify__To", "ops@example.org, not-an-address", "email addresses"),
        ("CleverSync__Notify__To", "ops@example.org\r\nBcc: x@evil.example", "email addresses"),
        ("CleverSync__Notify__From", "CleverSync", "email addresses"),
        ("CleverSync__Notify__SmtpHost", "smtp.example.org", "CleverSync__Notify__To and"),
        ("CleverSync__Notify__SmtpHost", "smtp example.org", "host name or IP address"),
        ("CleverSync__Notify__SmtpPort", "0", "greater than or equal to 1"),
        ("CleverSync__Notify__SmtpPort", "70000", "less than or equal to 65535"),
        ("CleverSync__Notify__On", "sometimes", "'failures', 'always' or 'never'"),
        ("CleverSync__Notify__DashboardUrl", "admin.example.org", "absolute http(s) URL"),
        ("CleverSync__Notify__TimeoutSeconds", "0", "greater than 0"),
    ],
)
def test_a_bad_value_names_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.load({name: value})
    assert info.value.setting == name
    assert name in str(info.value)
    assert fragment in str(info.value)


def test_an_smtp_host_needs_a_sender_and_recipients_unless_reports_are_off() -> None:
    env = {"CleverSync__Notify__SmtpHost": "smtp.example.org", "CleverSync__Notify__To": "a@b.org"}
    with pytest.raises(ConfigurationError, match="CleverSync__Notify__From must be set"):
        Settings.load(env)
    assert Settings.load({**env, "CleverSync__Notify__On": "never"}).notify.smtp_host
    assert Settings.load({**env, "CleverSync__Notify__From": "c@b.org"}).notify.uses_smtp


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("[::1]", True),
        ("127.0.0.2", False),
        ("smtp.example.org", False),
    ],
)
def test_only_loopback_names_may_skip_starttls(host: str, loopback: bool) -> None:
    env = {
        "CleverSync__Notify__SmtpHost": host,
        "CleverSync__Notify__To": "a@b.org",
        "CleverSync__Notify__From": "c@b.org",
    }
    assert Settings.load(env).notify.smtp_is_loopback is loopback


def test_the_variable_is_named_as_the_operator_spelled_it() -> None:
    with pytest.raises(ConfigurationError, match="cleversync__sync__pagesize"):
        Settings.load({"cleversync__sync__pagesize": "0"})


def test_a_rejected_value_is_never_echoed() -> None:
    secret_looking = "Password=hunter2-do-not-print"
    with pytest.raises(ConfigurationError) as info:
        Settings.load({"CleverSync__Sync__PageSize": secret_looking})
    assert "hunter2" not in str(info.value)


def test_net_and_python_log_level_names() -> None:
    for name, level in [
        ("Trace", 10),
        ("Information", 20),
        ("WARNING", 30),
        ("error", 40),
        ("Critical", 50),
    ]:
        assert Settings.load({"CleverSync__Logging__LogLevel": name}).logging.python_level == level


def test_the_run_deadline_leaves_a_margin_inside_the_hosts_function_timeout() -> None:
    # A run that is still starting schools when the host stops it at functionTimeout loses
    # them and restarts the worker: the default deadline leaves the last ones time to end.
    host = json.loads((Path(__file__).resolve().parents[1] / "host.json").read_text())
    hours, minutes, seconds = map(int, host["functionTimeout"].split(":"))
    timeout = hours * 60 + minutes + seconds / 60
    assert 0 < Settings.load({}).sync.run_deadline_minutes <= timeout - 5
