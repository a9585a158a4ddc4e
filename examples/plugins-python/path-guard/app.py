"""A Wardgate policy plugin in Python: deny paths and tools by glob.

Config: {"deny": ["/admin*", "delete_*"], "status": 403}
- HTTP requests whose path matches a pattern are denied; the others get an
  `x-checked-by: path-guard.py` header, to show a modify.
- MCP tool calls whose tool name matches are denied with a JSON-RPC error.
- MCP lists lose the items whose names match.
"""
import json
from fnmatch import fnmatchcase

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import types as t

HOOKS = t.Hooks.HTTP_REQUEST | t.Hooks.MCP_REQUEST | t.Hooks.MCP_LIST

_deny: list[str] = []
_status = 403


def _blocked(name: str) -> str | None:
    return next((p for p in _deny if fnmatchcase(name, p)), None)


def _denial(message: str, code: int | None = None) -> t.Denial:
    body = json.dumps({"error": message})
    return t.Denial(_status, body, [t.Header("content-type", "application/json")], code)


class Hooks(exports.Hooks):
    def describe(self) -> t.PluginInfo:
        schema = json.dumps({
            "type": "object",
            "properties": {
                "deny": {"type": "array", "items": {"type": "string"}},
                "status": {"type": "integer"},
            },
            "required": ["deny"],
        })
        return t.PluginInfo("path-guard.py", "0.1.0", HOOKS, schema)

    def configure(self, config: str) -> None:
        global _deny, _status
        try:
            value = json.loads(config)
        except ValueError as e:
            raise Err(t.ConfigError("", f"not JSON: {e}"))
        deny = value.get("deny")
        if not isinstance(deny, list):
            raise Err(t.ConfigError("deny", "expected a list of glob patterns"))
        for i, p in enumerate(deny):
            if not isinstance(p, str) or not p:
                raise Err(t.ConfigError(f"deny[{i}]", "expected a non-empty string"))
        status = value.get("status", 403)
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise Err(t.ConfigError("status", "expected an HTTP error status (400-599)"))
        _deny, _status = deny, status

    def on_http_request(self, ctx, request):
        if (p := _blocked(request.path)) is not None:
            return t.HttpRequestAction_Deny(_denial(f"path matches '{p}'"))
        edit = t.HttpRequestEdit([t.Header("x-checked-by", "path-guard.py")], [], None, None)
        return t.HttpRequestAction_Modify(edit)

    def on_mcp_request(self, ctx, request):
        if request.method == "tools/call" and request.name and _blocked(request.name):
            return t.McpRequestAction_Deny(_denial(f"unknown tool: {request.name}", -32602))
        return t.McpRequestAction_Continue()

    def on_mcp_list(self, ctx, lst):
        kept = [item for item in lst.items if _blocked(item.name) is None]
        if len(kept) == len(lst.items):
            return t.McpListAction_Continue()
        return t.McpListAction_Modify(kept)

    # Not declared in HOOKS, so the host never calls these.
    def on_http_response(self, ctx, response):
        return t.HttpResponseAction_Continue()

    def on_llm_request(self, ctx, request):
        return t.LlmRequestAction_Continue()

    def on_llm_response(self, ctx, response):
        return t.LlmResponseAction_Continue()

    def on_llm_chunk(self, ctx, chunk):
        return t.LlmChunkAction_Continue()

    def on_mcp_response(self, ctx, response):
        return t.McpResponseAction_Continue()
