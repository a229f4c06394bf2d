"""What the backend refuses: proto field names, the generate envelope, contents, thinking
and tool rules (UPSTREAM.md §3.1, §3.4, §3.5). Each check raises Refusal with a message
that names the problem."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from ._http import Refusal
from ._state import FakeAccount, State

ENVELOPE_FIELDS = frozenset(
    {
        "project",
        "model",
        "request",
        "userAgent",
        "requestType",
        "requestId",
        "enabledCreditTypes",
        "userPromptId",
    }
)
METADATA_ENUMS = {
    "ideType": (
        "IdeType",
        {
            "IDE_UNSPECIFIED",
            "VSCODE",
            "INTELLIJ",
            "VSCODE_CLOUD_WORKSTATION",
            "INTELLIJ_CLOUD_WORKSTATION",
            "CLOUD_SHELL",
            "ANTIGRAVITY",
        },
    ),
    "platform": (
        "Platform",
        {
            "PLATFORM_UNSPECIFIED",
            "DARWIN_AMD64",
            "DARWIN_ARM64",
            "LINUX_AMD64",
            "LINUX_ARM64",
            "WINDOWS_AMD64",
        },
    ),
    "pluginType": (
        "PluginType",
        {"PLUGIN_UNSPECIFIED", "CLOUD_CODE", "GEMINI", "AIPLUGIN_INTELLIJ", "AIPLUGIN_STUDIO"},
    ),
}
METADATA_FIELDS = frozenset(
    {*METADATA_ENUMS, "ideVersion", "pluginVersion", "updateChannel", "duetProject", "ideName"}
)
PART_DATA = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
)
PART_FIELDS = frozenset(
    {*PART_DATA, "thought", "thoughtSignature", "videoMetadata", "partMetadata", "mediaResolution"}
)


def bad(message: str) -> Refusal:
    return Refusal.google(400, message)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def get(obj: Any, name: str) -> Any:
    """A proto JSON field under its camelCase or snake_case spelling."""
    if not isinstance(obj, dict):
        return None
    return obj[name] if name in obj else obj.get(snake(name))


def reject_unknown(obj: dict[str, Any], allowed: Iterable[str], where: str = "") -> None:
    allowed = set(allowed)
    for key in obj:
        if camel(key) not in allowed:
            at = f" at '{where}'" if where else ""
            raise bad(
                f'Invalid JSON payload received. Unknown name "{key}"{at}: Cannot find field.'
            )


def check_metadata(body: dict[str, Any]) -> None:
    metadata = get(body, "metadata")
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise bad("Invalid JSON payload received. 'metadata' must be an object.")
    reject_unknown(metadata, METADATA_FIELDS, "metadata")
    for name, (enum, values) in METADATA_ENUMS.items():
        value = get(metadata, name)
        if value is not None and value not in values:
            raise bad(
                f"Invalid value at 'metadata.{snake(name)}' (type.googleapis.com/google."
                f'internal.cloud.code.v1internal.ClientMetadata.{enum}), "{value}"'
            )


# -- contents ----------------------------------------------------------------------
def check_contents(contents: Any, where: str, alternate: bool) -> list[dict[str, Any]]:
    """Non-empty list of {role, parts}; roles user/model; each part holds exactly one
    kind of data; with `alternate`, roles alternate starting with user."""
    if not isinstance(contents, list) or not contents:
        raise bad(f"* {where}.contents: contents is not specified")
    previous = None
    for i, content in enumerate(contents):
        at = f"{where}.contents[{i}]"
        if not isinstance(content, dict):
            raise bad(f"Invalid value at '{at}': expected an object")
        reject_unknown(content, {"role", "parts"}, at)
        role = content.get("role")
        if role not in ("user", "model"):
            raise bad(f"Please use a valid role: user, model. ({at}.role is {role!r})")
        if alternate and i == 0 and role != "user":
            raise bad(
                f'Please ensure that the first content has role "user" ({at}.role is "{role}").'
            )
        if alternate and role == previous:
            raise bad(
                "Please ensure that multiturn requests alternate between user and "
                f'model: {at} repeats role "{role}".'
            )
        previous = role
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            raise bad(f"* {at}.parts: contents.parts must not be empty.")
        for j, part in enumerate(parts):
            _check_part(part, f"{at}.parts[{j}]")
    return contents


def _check_part(part: Any, at: str) -> None:
    if not isinstance(part, dict):
        raise bad(f"Invalid value at '{at}': expected an object")
    reject_unknown(part, PART_FIELDS, at)
    present = [name for name in PART_DATA if get(part, name) is not None]
    if not present:
        raise bad(f"* {at}.data: required oneof field 'data' must have one initialized field")
    if len(present) > 1:
        raise bad(
            f"Invalid JSON payload received. Oneof field 'data' is already set. Cannot "
            f"set '{present[1]}' at '{at}'"
        )


# -- the generate envelope -----------------------------------------------------------
def check_envelope(
    state: State, account: FakeAccount, body: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """(model, inner request) of a valid generate envelope."""
    reject_unknown(body, ENVELOPE_FIELDS)
    project = body.get("project")
    if not isinstance(project, str) or not project:
        raise bad('Invalid project: the envelope needs "project" (a non-empty string).')
    if not state.project_allowed(account, project):
        raise project_denied(project)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad('Invalid model: the envelope needs "model" (a non-empty string).')
    with state.lock:
        known = model in account.models
    if not known:
        raise Refusal.google(404, "Requested entity was not found.")
    request = body.get("request")
    if not isinstance(request, dict):
        raise bad('Invalid request: the envelope needs "request" (an object).')
    contents = check_contents(get(request, "contents"), "request", alternate=True)
    _check_generation_config(get(request, "generationConfig"), model)
    _check_tools(get(request, "tools"))
    if state.check_thought_signatures and model.startswith("gemini-3"):
        _check_thought_signatures(contents)
    if state.check_tool_pairing and model.startswith("claude"):
        _check_tool_pairing(contents)
    if state.check_claude_signatures and model.startswith("claude"):
        _check_claude_thinking(state, contents)
    return model, request


def project_denied(project: str) -> Refusal:
    return Refusal.google(
        403,
        f"Permission 'cloudaicompanion.companions.generateChat' denied on "
        f"resource '//cloudresourcemanager.googleapis.com/projects/"
        f"{project}' (or it may not exist).",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "iam.googleapis.com",
                "metadata": {
                    "permission": "cloudaicompanion.companions.generateChat",
                    "resource": f"projects/{project}",
                },
            }
        ],
    )


def _integer(value: Any, at: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise bad(f"Invalid value at '{at}' (TYPE_INT32), {value!r}")
    return int(value)


def _check_generation_config(config: Any, model: str) -> None:
    if config is None:
        return
    if not isinstance(config, dict):
        raise bad("Invalid value at 'request.generation_config': expected an object")
    thinking = get(config, "thinkingConfig") or {}
    where = "request.generation_config"
    max_out = _integer(get(config, "maxOutputTokens"), f"{where}.max_output_tokens")
    budget = _integer(get(thinking, "thinkingBudget"), f"{where}.thinking_config.thinking_budget")
    level = get(thinking, "thinkingLevel")
    if budget is not None and level is not None:
        raise bad("You can only set only one of thinking budget and thinking level.")
    if level is not None and not model.startswith("claude"):
        raise bad(
            f"thinkingLevel is not supported for model {model} on this endpoint; "
            "use thinkingBudget."
        )
    if max_out is not None and budget is not None and max_out <= budget:
        raise bad(
            f"maxOutputTokens ({max_out}) must be greater than "
            f"thinkingConfig.thinkingBudget ({budget})."
        )


SCHEMA_FIELDS = frozenset(
    {
        "type",
        "description",
        "properties",
        "required",
        "items",
        "enum",
        "title",
        "format",
        "nullable",
    }
)
SCHEMA_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object"})


def _check_schema(node: Any, at: str, depth: int = 0) -> None:
    """What Gemini's Schema proto takes: a small set of fields and plain type names."""
    if not isinstance(node, dict):
        raise bad(f"Invalid value at '{at}': expected an object")
    for key in node:
        if key not in SCHEMA_FIELDS:
            raise bad(
                f"Invalid JSON payload received. Unknown name \"{key}\" at '{at}': "
                "Cannot find field."
            )
    kind = node.get("type")
    if kind is not None and (not isinstance(kind, str) or kind.lower() not in SCHEMA_TYPES):
        raise bad(
            f"Invalid value at '{at}.type' (type.googleapis.com/google.ai."
            f"generativelanguage.v1beta.Type), {kind!r}"
        )
    props = node.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            raise bad(f"Invalid value at '{at}.properties': expected an object")
        for name, sub in props.items():
            _check_schema(sub, f"{at}.properties[{name}].value", depth + 1)
    if node.get("items") is not None:
        _check_schema(node["items"], f"{at}.items", depth + 1)
    enum = node.get("enum")
    if enum is not None and not all(isinstance(v, str) for v in enum):
        raise bad(f"Invalid value at '{at}.enum': enum values must be strings")


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        return
    for i, tool in enumerate(tools):
        declarations = get(tool, "functionDeclarations")
        if declarations is not None and not isinstance(declarations, list):
            raise bad(
                f"Invalid value at 'request.tools[{i}].function_declarations': expected a list"
            )
        for j, declaration in enumerate(declarations or []):
            if get(declaration, "parameters") is not None:
                _check_schema(
                    get(declaration, "parameters"),
                    f"request.tools[{i}].function_declarations[{j}].parameters",
                )
    declares = any(get(t, "functionDeclarations") for t in tools)
    searches = any(
        get(t, "googleSearch") is not None or get(t, "googleSearchRetrieval") is not None
        for t in tools
    )
    if declares and searches:
        raise bad("Multiple tools are supported only when they are all search tools.")


def _check_claude_thinking(state: State, contents: list[dict[str, Any]]) -> None:
    """Claude (relayed to Anthropic): a thinking block in the history must carry the
    signature this backend issued for it."""
    for i, content in enumerate(contents):
        if content.get("role") != "model":
            continue
        for j, part in enumerate(content.get("parts") or []):
            if not part.get("thought"):
                continue
            signature = get(part, "thoughtSignature")
            if not signature:
                raise bad(f"messages.{i}.content.{j}.thinking.signature: Field required")
            with state.lock:
                known = signature in state.issued_signatures
            if not known:
                raise bad(f"messages.{i}.content.{j}: Invalid `signature` in `thinking` block")


def _check_thought_signatures(contents: list[dict[str, Any]]) -> None:
    """Gemini 3: in the current turn (after the last user message that is not only tool
    results), the first functionCall of each model step must carry a thought signature
    (the sentinel `skip_thought_signature_validator` counts as one)."""
    start = 0
    for i, content in enumerate(contents):
        if content["role"] == "user" and any(
            get(p, "functionResponse") is None for p in content["parts"]
        ):
            start = i + 1
    for i in range(start, len(contents)):
        if contents[i]["role"] != "model":
            continue
        for j, part in enumerate(contents[i]["parts"]):
            call = get(part, "functionCall")
            if call is None:
                continue
            if not get(part, "thoughtSignature"):
                raise bad(
                    "Function call is missing a thought_signature in functionCall parts. "
                    "This is required for tools to work correctly, and missing "
                    "thought_signature may lead to degraded model performance. "
                    f"Additional data, function call `{get(call, 'name')}` , position "
                    f"request.contents[{i}].parts[{j}]. Please refer to "
                    "https://ai.google.dev/gemini-api/docs/thought-signatures for more "
                    "details."
                )
            break  # only the first call of a step carries the signature


def _ids(content: dict[str, Any], kind: str) -> list[tuple[int, str]]:
    return [
        (j, str(get(get(p, kind), "id")))
        for j, p in enumerate(content["parts"])
        if get(p, kind) is not None and get(get(p, kind), "id")
    ]


def _check_tool_pairing(contents: list[dict[str, Any]]) -> None:
    """Claude (relayed to Anthropic): every tool call id is answered in the next message,
    and every tool result answers a call of the previous one."""
    for i, content in enumerate(contents):
        if content["role"] == "model" and i + 1 < len(contents):
            answered = {call_id for _, call_id in _ids(contents[i + 1], "functionResponse")}
            missing = [
                call_id for _, call_id in _ids(content, "functionCall") if call_id not in answered
            ]
            if missing:
                raise bad(
                    f"messages.{i}: `tool_use` ids were found without `tool_result` "
                    f"blocks immediately after: {', '.join(missing)}. Each `tool_use` "
                    "block must have a corresponding `tool_result` block in the next "
                    "message."
                )
        if content["role"] == "user":
            asked = (
                {call_id for _, call_id in _ids(contents[i - 1], "functionCall")} if i else set()
            )
            for j, call_id in _ids(content, "functionResponse"):
                if call_id not in asked:
                    raise bad(
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {call_id}. Each `tool_result` block must "
                        "have a corresponding `tool_use` block in the previous message."
                    )
