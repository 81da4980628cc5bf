"""The deployment template (azure.yaml + infra/*.bicep) against the app it deploys.

Bicep cannot be compiled here, so these checks read the text: every app setting the template
sets must be one the app (or the Functions platform) reads, with a value the app accepts;
the queue, the alert query and the role ids must be the ones the app and Azure use.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cleversync.errors import ConfigurationError
from cleversync.orchestrator import ALERT_EVENT
from cleversync.settings import PREFIX, QUEUE_VARIABLE, SEPARATOR, Settings, all_variables

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"

QUEUE_SETTING = QUEUE_VARIABLE
QUEUE_NAME = "cleversync-sync"

# Settings read by the Functions host, the Azure SDK or the Azure Monitor exporter, by name.
PLATFORM_SETTINGS = frozenset(
    {
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "AZURE_CLIENT_ID",
    }
)

# Flex Consumption rejects these as app settings: runtime, scale and content come from
# functionAppConfig (a deployment that sets one fails).
REJECTED_ON_FLEX = frozenset(
    {
        "FUNCTIONS_EXTENSION_VERSION",
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_WORKER_RUNTIME_VERSION",
        "FUNCTIONS_MAX_HTTP_CONCURRENCY",
        "FUNCTIONS_WORKER_PROCESS_COUNT",
        "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
        "SCALE_CONTROLLER_SCALE_DOWN_DELAY",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
        "WEBSITE_CONTENTOVERVNET",
        "WEBSITE_CONTENTSHARE",
        "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
        "WEBSITE_NODE_DEFAULT_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
        "WEBSITE_VNET_ROUTE_ALL",
        "AzureWebJobsStorage",  # a connection string needs shared keys, which are off
    }
)

# Azure's built-in role definition ids (the same in every tenant).
BUILT_IN_ROLES = {
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Key Vault Secrets Officer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
}

_KEY = re.compile(r"^\s*(?:'([^']+)'|([A-Za-z_][A-Za-z0-9_]*))\s*:\s*(.*?)\s*$")


def _bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def _object_after(text: str, start: int) -> str:
    """The text of the ``{ ... }`` literal that opens at or after ``start``."""
    opening = text.index("{", start)
    depth = 0
    for at in range(opening, len(text)):
        if text[at] == "{":
            depth += 1
        elif text[at] == "}":
            depth -= 1
            if depth == 0:
                return text[opening + 1 : at]
    raise AssertionError("unbalanced braces in a Bicep object")


def _strip_comment(line: str) -> str:
    """The line without a ``//`` comment (one inside a quoted string, e.g. a URL, stays)."""
    quoted = False
    for at, char in enumerate(line):
        if char == "'":
            quoted = not quoted
        elif not quoted and line.startswith("//", at):
            return line[:at]
    return line


def _top_level_entries(body: str) -> dict[str, str]:
    """An object literal's own keys (not nested ones) and their value text."""
    entries: dict[str, str] = {}
    depth = 0
    for line in body.splitlines():
        code = _strip_comment(line)
        match = _KEY.match(code)
        if depth == 0 and match:
            name = match.group(1) or match.group(2)
            assert name not in entries, f"app setting {name} is set twice"
            entries[name] = match.group(3)
        depth += code.count("{") + code.count("[") - code.count("}") - code.count("]")
    return entries


def bicep_app_settings(infra: Path = INFRA) -> dict[str, str]:
    """Every app setting the Bicep files set, with its value as written.

    Both forms a template may use: a ``config`` resource named ``appsettings`` (an object of
    name: value) and ``siteConfig.appSettings`` (a list of { name, value }).
    """
    settings: dict[str, str] = {}
    for path in sorted(infra.rglob("*.bicep")):
        text = path.read_text()
        for found in re.finditer(r"name:\s*'appsettings'", text):
            body = _object_after(text, text.index("properties:", found.end()))
            for name, value in _top_level_entries(body).items():
                assert name not in settings, f"app setting {name} is set twice"
                settings[name] = value
        for found in re.finditer(r"\bappSettings:\s*\[", text):
            block = text[found.end() : text.index("]", found.end())]
            for name in re.findall(r"name:\s*'([^']+)'", block):
                assert name not in settings, f"app setting {name} is set twice"
                settings[name] = "(list form)"
    return settings


def _literal(value: str) -> str | None:
    """The string a Bicep value is, if it is a plain quoted literal (not an expression)."""
    match = re.fullmatch(r"'((?:[^'\\$]|\\.)*)'", value)
    return match.group(1) if match else None


def test_the_template_sets_the_settings_the_app_needs_in_azure() -> None:
    settings = bicep_app_settings()
    needed = {
        "CleverSyncSchedule",
        QUEUE_SETTING,
        "CleverSync__KeyVault__Url",
        "AZURE_CLIENT_ID",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
    }
    assert needed <= set(settings), sorted(needed - set(settings))
    assert _literal(settings[QUEUE_SETTING]) == QUEUE_NAME
    assert _literal(settings["AzureWebJobsStorage__credential"]) == "managedidentity"


def check_names(settings: dict[str, str]) -> None:
    """Each setting is one the app reads, or a platform setting by name; none Flex rejects."""
    known = set(all_variables())
    for name in settings:
        if name.startswith(PREFIX + SEPARATOR):
            assert name in known, f"{name} is not a CleverSync setting (see all_variables())"
        else:
            assert name in known | PLATFORM_SETTINGS, (
                f"{name} is neither a setting the app reads nor an allowed platform setting"
            )
        assert name not in REJECTED_ON_FLEX, f"{name} is rejected on Flex Consumption"


def check_values(settings: dict[str, str]) -> Settings:
    """Values are strings; the app's settings given as literals load without an error."""
    literals: dict[str, str] = {}
    for name, value in settings.items():
        # App settings are strings: a bare 1000 or true is not one.
        assert not re.fullmatch(r"-?\d+(\.\d+)?|true|false", value), f"{name}: quote {value}"
        text = _literal(value)
        if text is not None and name in all_variables():
            literals[name] = text
    loaded = Settings.load(literals)
    assert loaded.unknown_variables == ()
    return loaded


def test_every_app_setting_the_template_sets_is_one_the_app_knows() -> None:
    settings = bicep_app_settings()
    assert settings, "no app settings found in infra/: the parser no longer matches the Bicep"
    check_names(settings)


def test_the_template_s_literal_values_are_strings_the_app_accepts() -> None:
    settings = bicep_app_settings()
    loaded = check_values(settings)
    assert loaded.schedule == _literal(settings["CleverSyncSchedule"]) == "0 0 2 * * *"
    assert loaded.queue_name == _literal(settings[QUEUE_SETTING]) == QUEUE_NAME
    assert loaded.sync.page_size == 1000


def test_the_template_creates_the_queue_and_its_poison_queue() -> None:
    text = "\n".join(p.read_text() for p in _bicep_files())
    assert "Microsoft.Storage/storageAccounts/queueServices/queues@" in text
    names = set(re.findall(r"'(cleversync-[a-z-]+)'", text))
    assert {QUEUE_NAME, f"{QUEUE_NAME}-poison"} <= names


def test_the_alert_rule_runs_the_readme_query_for_the_app_s_event() -> None:
    text = "\n".join(p.read_text() for p in _bicep_files())
    assert "Microsoft.Insights/scheduledQueryRules@" in text
    assert "Microsoft.Insights/actionGroups@" in text
    condition = f'customDimensions.EventName == "{ALERT_EVENT}"'
    assert condition in text, "the alert rule does not look for the app's alert event"
    readme = (ROOT / "README.md").read_text()
    assert condition in readme
    assert re.search(r"emailReceivers:[\s\S]*?emailAddress:\s*alertEmail", text)


def test_role_assignments_use_azure_s_built_in_role_ids() -> None:
    text = "\n".join(p.read_text() for p in _bicep_files())
    used = set(
        re.findall(r"'([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'", text)
    )
    assert used == set(BUILT_IN_ROLES.values()), used ^ set(BUILT_IN_ROLES.values())
    for name, role_id in BUILT_IN_ROLES.items():
        # Each id is written next to its role's name, so a reader can check one against the other.
        assert re.search(rf"'{role_id}'.*//\s*{re.escape(name)}\s*$", text, re.M), name


def test_the_function_app_runs_python_3_11_on_flex_consumption() -> None:
    text = "\n".join(p.read_text() for p in _bicep_files())
    assert re.search(r"tier:\s*'FlexConsumption'", text)
    assert re.search(r"runtime:\s*\{\s*name:\s*'python'\s+version:\s*'3\.11'\s*\}", text)
    assert re.search(r"allowSharedKeyAccess:\s*false", text)
    assert re.search(r"enableRbacAuthorization:\s*true", text)


def _parameters(bicep: str) -> dict[str, bool]:
    """main.bicep's parameters: name -> has a default."""
    found = re.findall(r"^param\s+(\w+)\s+\w+(\s*=)?", bicep, re.M)
    return {name: bool(default) for name, default in found}


def test_main_parameters_json_fills_main_bicep_s_parameters() -> None:
    declared = _parameters((INFRA / "main.bicep").read_text())
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(declared), sorted(set(given) - set(declared))
    # A parameter without a default takes its value from the file; azd prompts for it when
    # the variable named there is unset.
    required = {name for name, has_default in declared.items() if not has_default}
    assert required <= set(given), sorted(required - set(given))
    assert {"environmentName", "location", "alertEmail"} <= set(given)


def _azure_yaml_services() -> dict[str, dict[str, str]]:
    """azure.yaml's services as {name: {key: value}} (the file is flat YAML, no PyYAML here)."""
    services: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    in_services = False
    for line in (ROOT / "azure.yaml").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        if indent == 0:
            in_services = line.strip() == "services:"
            continue
        if not in_services:
            continue
        key, _, value = line.strip().partition(":")
        if indent == 2:
            current = services.setdefault(key, {})
        elif current is not None and indent == 4:
            current[key] = value.strip().strip("'\"")
    return services


def test_azure_yaml_deploys_this_folder_as_a_python_function_app() -> None:
    services = _azure_yaml_services()
    assert len(services) == 1, services
    (name, service), *_ = services.items()
    assert service.get("language") == "python"
    assert service.get("host") == "function"
    assert service.get("project") in (".", "./")
    # azd finds the app by this tag.
    text = "\n".join(p.read_text() for p in _bicep_files())
    assert re.search(rf"'azd-service-name':\s*'{re.escape(name)}'", text)


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("CleverSync__Sync__PagSize: '1000'", "not a CleverSync setting"),
        ("FUNCTIONS_WORKER_RUNTIME: 'python'", "neither a setting"),
        ("CleverSync__Sync__PageSize: 1000", "quote"),
        ("CleverSync__Sync__PageSize: '0'", "invalid configuration"),
        ("CleverSyncSchedule: '0 2 * * *'", "set twice"),
    ],
)
def test_the_checks_catch_a_bad_setting(setting: str, expected: str, tmp_path: Path) -> None:
    (tmp_path / "app.bicep").write_text(
        "resource s 'config' = {\n  name: 'appsettings'\n  properties: {\n"
        "    CleverSyncSchedule: '0 0 2 * * *' // nightly\n"
        "    CleverSync__KeyVault__Url: 'https://kv.vault.azure.net/' // a URL is not a comment\n"
        f"    {setting}\n  }}\n}}\n"
    )
    with pytest.raises((AssertionError, ConfigurationError), match=expected):
        _check_all(tmp_path)


def _check_all(infra: Path) -> None:
    settings = bicep_app_settings(infra)
    check_names(settings)
    check_values(settings)


def test_the_checks_pass_a_good_setting(tmp_path: Path) -> None:
    (tmp_path / "app.bicep").write_text(
        "resource s 'config' = {\n  name: 'appsettings'\n  properties: {\n"
        "    CleverSync__KeyVault__Url: 'https://kv.vault.azure.net/' // comment\n"
        "    AZURE_CLIENT_ID: identity.properties.clientId\n  }\n}\n"
    )
    settings = bicep_app_settings(tmp_path)
    assert settings == {
        "CleverSync__KeyVault__Url": "'https://kv.vault.azure.net/'",
        "AZURE_CLIENT_ID": "identity.properties.clientId",
    }
    check_names(settings)
    assert check_values(settings).key_vault.url == "https://kv.vault.azure.net/"


# --- the dashboard's sign-in ----------------------------------------------------------------


def test_the_dashboard_sign_in_is_app_service_authentication_with_entra_id() -> None:
    api = (INFRA / "app" / "api.bicep").read_text()
    match = re.search(r"resource authSettings 'config' = if \(!empty\(dashboardClientId\)\)", api)
    assert match, "no authsettingsV2 resource, or it is not conditional on the client id"
    body = _object_after(api, match.end())
    assert re.search(r"name:\s*'authsettingsV2'", api[match.start() : match.end() + 200])
    assert re.search(r"platform:\s*\{\s*enabled:\s*true\s*\}", body)
    # Anonymous requests pass: the function-key routes and the health probe stay reachable;
    # the app itself refuses the dashboard to anyone not signed in (401 with a sign-in link).
    assert re.search(r"requireAuthentication:\s*false", body)
    assert re.search(r"unauthenticatedClientAction:\s*'AllowAnonymous'", body)
    assert re.search(r"azureActiveDirectory:\s*\{\s*enabled:\s*true", body)
    assert re.search(r"clientId:\s*dashboardClientId", body)
    assert "tenant().tenantId}/v2.0" in body


def test_the_email_report_settings_come_from_parameters() -> None:
    settings = bicep_app_settings()
    main = (INFRA / "main.bicep").read_text()
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    for key, param, variable in (
        ("SmtpHost", "notifySmtpHost", "NOTIFY_SMTP_HOST="),
        ("SmtpUser", "notifySmtpUser", "NOTIFY_SMTP_USER="),
        ("From", "notifyFrom", "NOTIFY_FROM="),
        ("To", "notifyTo", "NOTIFY_TO="),
        ("On", "notifyOn", "NOTIFY_ON=failures"),
    ):
        assert settings[f"CleverSync__Notify__{key}"] == param
        assert re.search(rf"{param}: {param}\b", main), f"main.bicep does not pass {param} on"
        assert given[param]["value"] == "${" + variable + "}"
    # The password is a vault secret, never a parameter or an app setting.
    assert not any("password" in name.lower() for name in given)
    assert not any("Password" in name for name in settings)
    allowed = re.search(r"@allowed\(\[([^\]]*)\]\)\nparam notifyOn string", main)
    assert allowed is not None
    assert set(re.findall(r"'(\w+)'", allowed.group(1))) == {"failures", "always", "never"}


def test_the_dashboard_admin_settings_and_csrf_key_come_from_parameters() -> None:
    from cleversync.secrets import names

    settings = bicep_app_settings()
    assert settings["CleverSync__Admin__AllowedUsers"] == "dashboardAllowedUsers"
    assert settings["CleverSync__Admin__Role"] == "dashboardRole"
    resources = (INFRA / "resources.bicep").read_text()
    assert f"name: '{names.DASHBOARD_CSRF_KEY}'" in resources
    assert re.search(r"@secure\(\)\s*param dashboardCsrfKey string", resources)
    main = (INFRA / "main.bicep").read_text()
    assert re.search(
        r"@secure\(\)\n(@description\(.*\)\n)?param dashboardCsrfKey string = newGuid\(\)", main
    )
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert given["dashboardClientId"]["value"] == "${DASHBOARD_CLIENT_ID=}"
    assert "dashboardCsrfKey" not in given  # a new random key unless one is given
    for name in ("dashboardClientId", "dashboardAllowedUsers", "dashboardRole", "dashboardCsrfKey"):
        assert re.search(rf"{name}: {name}\b", main), f"main.bicep does not pass {name} on"
