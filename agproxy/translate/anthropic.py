"""Anthropic Messages ⇄ Gemini: pure functions, no I/O.

Thinking blocks travel with their signatures: a signed thinking block in the history
becomes a thought part carrying `thoughtSignature`, and a tool_use the backend must
see as signed gets the signature of the thinking that preceded it (or the one
remembered for its id), else the backend's "skip validation" sentinel. The answer's
side (MessageStream) is in translate/anthropic_answer.py, web search in anthropic_search.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agproxy.translate.anthropic_answer import MessageStream, tool_id
from agproxy.translate.anthropic_search import (
    WEB_SEARCH_TYPE,
    WebSearch,
    client_tool_schema,
    history_text,
    refused_tool,
    search_declaration,
    web_search_tool,
)
from agproxy.translate.fields import (
    BadRequest,
    as_dict,
    as_list,
    opt_dict,
    opt_list,
    opt_str,
    strings,
    text,
    wrong,
)
from agproxy.translate.gemini import SKIP_SIGNATURE, repair_tool_turns
from agproxy.translate.schema import clean_schema

__all__ = ["MessageStream", "messages_to_gemini", "tool_id", "tool_result_text", "web_search_of"]

MAX_OUTPUT = 65536
ADAPTIVE_BUDGET = 24576


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise wrong(where, "a string or an array of blocks")
    return [as_dict(block, f"{where}[{j}]") for j, block in enumerate(content)]


def tool_result_text(
    content: Any, where: str = "tool_result.content"
) -> tuple[str, list[dict[str, Any]]]:
    if content is None or isinstance(content, str):
        return content or "", []
    texts, images = [], []
    for j, block in enumerate(as_list(content, where)):
        at = f"{where}[{j}]"
        block = as_dict(block, at)
        if block.get("type") == "text":
            texts.append(text(block, "text", at))
        elif block.get("type") == "image":
            images.append(_media(block, at))
    return "\n".join(texts), images


def _media(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = opt_dict(block, "source", where)
    data = opt_str(source, "data", f"{where}.source")
    if source.get("type") == "base64" and data:
        return {
            "inlineData": {
                "mimeType": opt_str(source, "media_type", f"{where}.source") or "image/png",
                "data": data,
            }
        }
    raise BadRequest(
        f"{where}: {str(block.get('type'))[:20]} blocks need a base64 source "
        "here (URL sources are fetched by the gateway first)",
        f"{where}.source",
    )


def _system_texts(system: Any) -> list[str]:
    if system is None or isinstance(system, str):
        return [system] if system else []
    texts = []
    for j, block in enumerate(as_list(system, "system")):
        block = as_dict(block, f"system[{j}]")
        if block.get("type") == "text" and (said := text(block, "text", f"system[{j}]")):
            texts.append(said)
    return texts


class _Turn:
    """The Gemini parts of one message, and what later messages need from earlier ones."""

    def __init__(self, names: dict[str, str], signatures: Mapping[str, str]) -> None:
        self.names = names  # tool_use id → tool name, for the results that follow
        self.signatures = signatures
        self.last_signature: str | None = None

    def parts(self, block: dict[str, Any], role: str, where: str) -> list[dict[str, Any]]:
        kind = block.get("type")
        if kind == "text":
            said = text(block, "text", where)
            return [{"text": said}] if said else []
        if kind in ("image", "document"):
            return [_media(block, where)]
        if kind == "thinking" and role == "assistant":
            thought = text(block, "thinking", where)
            signature = opt_str(block, "signature", where)
            if signature:
                self.last_signature = signature
                return [{"text": thought, "thought": True, "thoughtSignature": signature}]
            return [{"text": thought}] if thought else []
        if kind == "tool_use" and role == "assistant":
            tool_id = text(block, "id", where)
            self.names[tool_id] = text(block, "name", where)
            call: dict[str, Any] = {
                "name": self.names[tool_id],
                "args": opt_dict(block, "input", where),
            }
            if tool_id:
                call["id"] = tool_id
            return [
                {
                    "functionCall": call,
                    "thoughtSignature": self.signatures.get(tool_id)
                    or self.last_signature
                    or SKIP_SIGNATURE,
                }
            ]
        if kind == "tool_result":
            tool_id = text(block, "tool_use_id", where)
            result, images = tool_result_text(block.get("content"), f"{where}.content")
            if not result:
                result = (
                    "Tool execution failed with no output."
                    if block.get("is_error")
                    else "Command executed successfully."
                )
            elif block.get("is_error"):
                result = f"Error: {result}"
            response: dict[str, Any] = {
                "name": self.names.get(tool_id, tool_id),
                "response": {"result": result},
            }
            if tool_id:
                response["id"] = tool_id
            return [{"functionResponse": response}, *images]
        if kind in ("server_tool_use", "web_search_tool_result"):
            return [{"text": history_text(block, where)}]
        return []  # redacted_thinking, other server tools' blocks: nothing to carry


def messages_to_gemini(
    body: dict[str, Any], model: str, signatures: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The inner Gemini request for an Anthropic Messages body. `signatures` maps tool_use
    ids to the thought signatures seen when they were produced."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages: at least one message is required", "messages")
    system_texts = _system_texts(body.get("system"))
    names: dict[str, str] = {}
    contents: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        message = as_dict(message, where)
        role = message.get("role")
        blocks = _blocks(message.get("content"), f"{where}.content")
        if role == "system":  # Claude Code 2.x sends some of these inside messages
            system_texts += [
                text(b, "text", f"{where}.content[{j}]")
                for j, b in enumerate(blocks)
                if b.get("type") == "text"
            ]
            continue
        if role not in ("user", "assistant"):
            raise BadRequest(f"{where}.role: unexpected role {str(role)[:40]!r}", f"{where}.role")
        turn = _Turn(names, signatures or {})
        parts = [
            part
            for j, block in enumerate(blocks)
            for part in turn.parts(block, role, f"{where}.content[{j}]")
        ]
        if parts:
            gemini_role = "model" if role == "assistant" else "user"
            if contents and contents[-1]["role"] == gemini_role:
                contents[-1]["parts"] += parts
            else:
                contents.append({"role": gemini_role, "parts": parts})
    contents = repair_tool_turns(contents)
    if not contents or contents[0]["role"] != "user":
        contents.insert(0, {"role": "user", "parts": [{"text": " "}]})
    request: dict[str, Any] = {"contents": contents}
    if system_texts:
        request["systemInstruction"] = {
            "role": "user",
            "parts": [{"text": "\n\n".join(system_texts)}],
        }
    _add_tools(request, body)
    request["generationConfig"] = _generation(body)
    return request


def _add_tools(request: dict[str, Any], body: dict[str, Any]) -> None:
    declarations, search = _tools(opt_list(body, "tools", ""))
    if search is not None and not declarations:
        # Web search alone: Google Search grounding (the answer carries the searches).
        request["tools"] = [{"googleSearch": {}}]
        if hint := search.hint():
            system = request.setdefault("systemInstruction", {"role": "user", "parts": []})
            system["parts"].append({"text": hint})
    elif declarations:
        # With client tools the backend refuses googleSearch: the gateway runs the search
        # when the model calls this function (frontends/anthropic_search.py).
        if search is not None:
            if any(d["name"] == search.name for d in declarations):
                raise BadRequest(
                    f"tools: two tools are named {search.name!r} (a client tool and the "
                    "web search tool); tool names must be unique",
                    "tools",
                )
            declarations.append(search_declaration(search))
        request["tools"] = [{"functionDeclarations": declarations}]
        request["toolConfig"] = {"functionCallingConfig": _calling_config(body.get("tool_choice"))}


def web_search_of(body: dict[str, Any]) -> WebSearch | None:
    """The request's web_search tool, if it has one (checked by messages_to_gemini)."""
    return _tools(opt_list(body, "tools", ""))[1]


def _tools(tools: list[Any]) -> tuple[list[dict[str, Any]], WebSearch | None]:
    """Function declarations for the client's tools, and the web search tool if any. A
    server tool the gateway cannot run is refused, never dropped without a word."""
    declarations, search = [], None
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        tool = as_dict(tool, where)
        kind = tool.get("type")
        if isinstance(kind, str) and WEB_SEARCH_TYPE.match(kind):
            search = web_search_tool(tool, where)
            continue
        name = opt_str(tool, "name", where)
        schema = tool.get("input_schema")
        if kind not in (None, "custom") and schema is None:
            schema = client_tool_schema(str(kind))
            if schema is None:
                raise refused_tool(str(kind), where)
        if not name:
            continue
        declaration: dict[str, Any] = {"name": name}
        if description := opt_str(tool, "description", where):
            declaration["description"] = description
        if not isinstance(schema, dict):
            raise wrong(f"{where}.input_schema", "an object")
        declaration["parameters"] = clean_schema(schema, upper_types=False)
        declarations.append(declaration)
    return declarations, search


def _calling_config(choice: Any) -> dict[str, Any]:
    if isinstance(choice, str):  # a bare "auto" from a lenient client
        choice = {"type": choice}
    choice = as_dict(choice, "tool_choice") if choice is not None else {}
    kind = opt_str(choice, "type", "tool_choice")
    mode = {"auto": "AUTO", "any": "ANY", "tool": "ANY", "none": "NONE"}.get(
        kind or "", "VALIDATED"
    )
    config: dict[str, Any] = {"mode": mode}
    if kind == "tool" and (name := opt_str(choice, "name", "tool_choice")):
        config["allowedFunctionNames"] = [name]
    return config


def _generation(body: dict[str, Any]) -> dict[str, Any]:
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise BadRequest("max_tokens: a positive integer is required", "max_tokens")
    config: dict[str, Any] = {"maxOutputTokens": min(max_tokens, MAX_OUTPUT)}
    for src, dst in (("temperature", "temperature"), ("top_p", "topP"), ("top_k", "topK")):
        value = body.get(src)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadRequest(f"{src}: a number is required", src)
            config[dst] = value
    stops = strings(body, "stop_sequences", "")
    if stops:
        config["stopSequences"] = stops[:5]
    thinking = opt_dict(body, "thinking", "")
    if thinking.get("type") in ("enabled", "adaptive"):
        budget = thinking.get("budget_tokens") or thinking.get("budgetTokens") or ADAPTIVE_BUDGET
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise BadRequest(
                "thinking.budget_tokens: a positive integer is required", "thinking.budget_tokens"
            )
        config["thinkingConfig"] = {"includeThoughts": True, "thinkingBudget": budget}
        if config["maxOutputTokens"] <= budget:
            config["maxOutputTokens"] = min(budget + 8192, MAX_OUTPUT)
            config["thinkingConfig"]["thinkingBudget"] = min(budget, config["maxOutputTokens"] - 1)
    return config
