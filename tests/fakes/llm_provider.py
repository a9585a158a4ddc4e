#!/usr/bin/env python3
"""A fake LLM provider for the tests: OpenAI chat completions or Anthropic
messages, on the exact wire formats (JSON bodies, error shapes, SSE with
OpenAI's `data:` chunks and `[DONE]`, Anthropic's named events).

No internet here, so no real provider; this one answers deterministically:
- the last user text containing "weather" with tools offered -> a tool call
  to the first tool with {"city": "Paris"};
- "say: TEXT" -> exactly TEXT; anything else -> "Echo: " + the text;
- a tool result in the last turn -> "The tool said: " + its content.
The OpenAI flavor also serves the Responses API (/v1/responses: input
string or items, function calls, named stream events with sequence numbers).
Streams send one word per event; so does a Realtime session (OpenAI's
WebSocket API at .../realtime, with the Realtime event names).
The vertex flavor is Google's Vertex AI: Claude models at
.../publishers/anthropic/models/MODEL:rawPredict and :streamRawPredict
(Anthropic's API, its version in the body, no model in it), count-tokens,
the OpenAI-compatible .../endpoints/openapi/ paths, and Google's OAuth token
endpoint (POST /token: a service account's RS256 JWT assertion, verified,
for an access token that every Vertex call must carry, or for an ID token
when it names a target_audience) and the metadata server's identity endpoint.
The bedrock flavor is Amazon Bedrock's runtime API: Converse at
/model/MODEL/converse and /converse-stream (the model id URL-escaped in the
path; unknown body fields refused, roles alternating, no blank text), its
streamed answers as AWS event-stream frames (messageStart,
contentBlockStart/Delta/Stop, messageStop, metadata; an exception frame for
"break mid-stream"), Bedrock's error bodies and x-amzn-ErrorType, and a
guardrail that intervenes on "forbidden", and InvokeModel (/model/MODEL/invoke) for
Titan Text Embeddings and Cohere Embed (vectors from each text's SHA-256, see
embedding()). Every call must carry a SigV4
signature by --aws-key ID:SECRET[:TOKEN] for service bedrock and
--region, checked by botocore's own signer (or, with --key, a Bedrock API
key as a bearer token). Temporary keys are issued, to be signed with like
the fixed one, by STS (POST / with AssumeRoleWithWebIdentity and the token
--web-identity-token, or AssumeRole signed for sts by a key it knows), container credentials (GET /_aws/container-credentials
with the token --container-token) and IMDSv2 (PUT /latest/api/token, then
/latest/meta-data/iam/security-credentials/ROLE) and the IAM Identity Center
portal (GET /federation/credentials with x-amz-sso_bearer_token, a token it
issued: --sso-token, or one SSO OIDC's POST /token gave for the current
refresh token of client --sso-client ID:SECRET, which rotates it); they
expire after --aws-ttl seconds. GET /_aws_issued counts what each source
issued (and sso_refreshed, the tokens refreshed).
With --azure-entra the openai flavor is Azure behind Microsoft Entra ID:
every call needs a bearer token this fake issued for the path's audience
(https://ai.azure.com for Foundry's /api/projects/ paths, else
https://cognitiveservices.azure.com), issued by the tenant token endpoint
(POST /TENANT/oauth2/v2.0/token: client credentials with the secret of
--azure-secret CLIENT:SECRET, or the federated token --azure-assertion as
the client assertion), the instance metadata service (GET
/metadata/identity/oauth2/token, header Metadata: true), the App Service
endpoint (GET /_azure/identity, header X-IDENTITY-HEADER: the value of
--azure-identity-header) or, for a fake `az`, GET /_azure/cli; they live
--token-ttl seconds. GET /_azure_issued lists what was issued.
GET /_test/service-account.json gives a key whose token_uri is this fake
(?forged=1: one signed by another key); GET /_tokens counts tokens issued. `--fail STATUS`
answers every request with that error. `--key` makes the API key mandatory. GET /_requests lists what
was received (path, headers, body, the caller's port), for the tests' assertions.

Usage: llm_provider.py --flavor openai|anthropic|vertex|bedrock [--port 0] [--key K]
                       [--fail 429] [--token-ttl SECONDS] [--aws-key ID:SECRET[:TOKEN]]
                       [--region us-east-1] [--azure-entra] [--azure-secret CLIENT:SECRET]
                       [--azure-assertion TOKEN] [--azure-identity-header VALUE]
Prints "listening on PORT" once ready.
"""

import argparse
import binascii
import datetime
import hashlib
import json
import re
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARGS = None
RECEIVED = []
LOCK = threading.Lock()
# Vertex: the service account's key, and the access tokens issued with it.
SA_KEY = None
TOKENS = []
ID_TOKENS = []
# Azure: tokens issued -> (audience, how, expiry); the issue log.
ENTRA_TOKENS = {}
ENTRA_ISSUED = []
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
SA_EMAIL = "gateway@wardgate-test.iam.gserviceaccount.com"


def rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key):
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def words(text):
    out = []
    for i, w in enumerate(text.split(" ")):
        out.append(w if i == 0 else " " + w)
    return out


def count_tokens(text):
    return max(1, len(text.split()))


def texts_of_content(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


class Turn:
    """What the fake decided to answer."""

    def __init__(self, text="", tool=None):
        self.text = text
        self.tool = tool  # (name, arguments dict) or None


def decide(last_user, tool_result, tool_names):
    if tool_result is not None:
        return Turn("The tool said: " + tool_result)
    if "weather" in last_user.lower() and tool_names:
        return Turn("", (tool_names[0], {"city": "Paris"}))
    if last_user.startswith("say: "):
        return Turn(last_user[len("say: "):])
    return Turn("Echo: " + last_user)


# ---- Amazon Bedrock -------------------------------------------------------

# Key id -> (secret, session token, expiry or None): the fixed key and those issued.
AWS_KEYS = {}
AWS_ISSUED = {"sts": 0, "container": 0, "imds": 0, "assume": 0, "sso": 0}
# IAM Identity Center: the access tokens issued, the current refresh token.
SSO = {"access": set(), "refresh": "sso-refresh-0", "refreshed": 0}
# The AssumeRole calls STS took (their form fields).
ASSUMED = []
IMDS_TOKEN = "imds-session-token"


def issue_keys(source):
    with LOCK:
        AWS_ISSUED[source] += 1
        n = sum(AWS_ISSUED.values())
        key_id = "ASIA%s%d" % (source.upper(), n)
        secret, token = "temp-secret-%d" % n, "temp-token-%s-%d" % (source, n)
        expires = time.time() + ARGS.aws_ttl
        AWS_KEYS[key_id] = (secret, token, expires)
    stamp = datetime.datetime.fromtimestamp(expires, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return key_id, secret, token, stamp


TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def converse_name_refusal(req):
    """Bedrock's validation of tool names: in the tools, the tool choice and
    the history's tool uses (its words, for the first name that fails)."""
    config = req.get("toolConfig") or {}
    named = [("toolConfig.tools.%d.member.toolSpec.name" % (i + 1), t["toolSpec"].get("name"))
             for i, t in enumerate(config.get("tools") or []) if "toolSpec" in t]
    if "tool" in (config.get("toolChoice") or {}):
        named.append(("toolConfig.toolChoice.tool.name", config["toolChoice"]["tool"].get("name")))
    named += [("messages.%d.member.content.%d.member.toolUse.name" % (i + 1, j + 1), b["toolUse"].get("name"))
              for i, m in enumerate(req.get("messages") or [])
              for j, b in enumerate(m.get("content") or []) if "toolUse" in b]
    for where, name in named:
        if not isinstance(name, str) or not TOOL_NAME.fullmatch(name):
            return ("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: "
                    "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+ and have length "
                    "less than or equal to 64" % (name, where))
    return None


CONVERSE_FIELDS = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig",
                   "additionalModelRequestFields", "additionalModelResponseFieldPaths",
                   "promptVariables", "requestMetadata", "performanceConfig", "outputConfig"}


GEMINI_FIELDS = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings",
                 "cachedContent", "labels"}
GENERATION_FIELDS = {"maxOutputTokens", "temperature", "topP", "topK", "seed", "presencePenalty",
                     "frequencyPenalty", "stopSequences", "responseMimeType", "responseJsonSchema",
                     "responseSchema", "thinkingConfig", "candidateCount"}
THINKING_FIELDS = {"includeThoughts", "thinkingBudget", "thinkingLevel"}
# The thought signatures the fake Gemini gave, which it takes back.
GEMINI_SIGNATURES = set()


# ---- thinking and structured output (Claude's rules, as both APIs apply them)

EFFORTS = {"low", "medium", "high", "xhigh", "max"}


def signature(text):
    """The fake's signature of a thinking text: checked when it comes back."""
    return "fakesig-" + hashlib.sha256(text.encode()).hexdigest()[:24]


def thinking_refusal(thinking, max_tokens, model):
    """Claude's checks of a `thinking` switch, or None."""
    if thinking is None:
        return None
    kind = thinking.get("type") if isinstance(thinking, dict) else None
    if kind not in ("enabled", "adaptive", "disabled"):
        return "thinking.type: Input tag '%s' found using 'type' does not match any of the expected tags" % kind
    if kind == "adaptive" and re.search(r"claude-(opus|sonnet|haiku)-4-5", model or ""):
        return "thinking.type: adaptive thinking is not supported on this model; use enabled with budget_tokens"
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if not isinstance(max_tokens, int) or budget >= max_tokens:
            return "`max_tokens` must be greater than `thinking.budget_tokens`"
    return None


def thinks(thinking):
    return isinstance(thinking, dict) and thinking.get("type") in ("enabled", "adaptive")


def history_refusal(assistant_turns, thinking_on):
    """Claude's checks of thinking sent back: every thinking block signed by
    the model, and, with thinking on, a last assistant turn that used a tool
    starting with its thinking. `assistant_turns`: (index, [(kind, text,
    signature)]) in order, kinds 'thinking', 'redacted', 'tool', 'text'."""
    for i, blocks in assistant_turns:
        for j, (kind, text, sig) in enumerate(blocks):
            if kind == "thinking" and sig != signature(text):
                return "messages.%d.content.%d: Invalid `signature` in `thinking` block" % (i, j)
    if thinking_on and assistant_turns:
        i, blocks = assistant_turns[-1]
        kinds = [k for k, _, _ in blocks]
        if "tool" in kinds and kinds[0] not in ("thinking", "redacted"):
            return ("messages.%d.content.0.type: Expected `thinking` or `redacted_thinking`, but found `%s`. "
                    "When `thinking` is enabled, a final `assistant` message must start with a thinking "
                    "block (preceeding the lastmost set of `tool_use` and `tool_result` blocks)."
                    % (i, "tool_use" if kinds[0] == "tool" else kinds[0]))
    return None


def sample_of(schema):
    """A value that fits a JSON schema: what a model held to it writes."""
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {k: sample_of(v) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [sample_of(schema.get("items") or {"type": "string"})]
    return {"string": "Paris", "integer": 21, "number": 21.5, "boolean": True}.get(kind)


def format_refusal(config, converse=False):
    """Checks of Claude's output_config (Anthropic) or Converse's outputConfig;
    the schema, or an error."""
    if config is None:
        return None, None
    allowed = {"textFormat", "effort"} if converse else {"format", "effort"}
    extra = sorted(set(config) - allowed)
    if extra:
        return None, "output_config.%s: Extra inputs are not permitted" % extra[0]
    if "effort" in config and config["effort"] not in EFFORTS:
        return None, "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'"
    fmt = config.get("textFormat" if converse else "format")
    if fmt is None:
        return None, None
    if fmt.get("type") != "json_schema":
        return None, "output_config.format.type: Input should be 'json_schema'"
    if converse:
        raw = ((fmt.get("structure") or {}).get("jsonSchema") or {}).get("schema")
        try:
            schema = json.loads(raw)
        except (TypeError, ValueError):
            return None, "outputConfig.textFormat.structure.jsonSchema.schema must be a JSON string"
    else:
        schema = fmt.get("schema")
    if not isinstance(schema, dict):
        return None, "output_config.format.schema: Input should be a valid dictionary"
    return schema, None


def event_frame(headers, payload):
    """One AWS event-stream message: prelude (total and header lengths, and
    their CRC32), string headers, payload, and the message's CRC32."""
    hdrs = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        hdrs += struct.pack("B", len(n)) + n + b"\x07" + struct.pack(">H", len(v)) + v
    total = 12 + len(hdrs) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hdrs))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + hdrs + payload
    return message + struct.pack(">I", binascii.crc32(message))


def check_own_frames():
    """The frames this fake writes parse with botocore's event-stream parser."""
    from botocore.eventstream import EventStreamBuffer
    buf = EventStreamBuffer()
    buf.add_data(event_frame({":event-type": "messageStop", ":content-type": "application/json",
                              ":message-type": "event"}, b'{"stopReason":"end_turn"}'))
    (msg,) = list(buf)
    assert msg.headers[":event-type"] == "messageStop" and msg.payload == b'{"stopReason":"end_turn"}'


class BedrockMixin:
    """Amazon Bedrock's runtime API, for the Handler below."""

    def sigv4_refusal(self, raw, service="bedrock"):
        """None if the request is signed by --aws-key (or keys issued here)
        for `service` in --region (verified with botocore's signer), else
        why not."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
        auth = self.headers.get("authorization") or ""
        if ARGS.key and auth == "Bearer " + ARGS.key:
            return None
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return (403, "Missing Authentication Token", "MissingAuthenticationTokenException")
        fields = dict(part.strip().split("=", 1) for part in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        want_service = service
        key_id, day, region, service, _ = fields["Credential"].split("/")
        with LOCK:
            known = AWS_KEYS.get(key_id)
        if known is None:
            return (403, "The security token included in the request is invalid.",
                    "UnrecognizedClientException")
        secret, token, expires = known
        if expires is not None and time.time() > expires:
            return (403, "The security token included in the request is expired", "ExpiredTokenException")
        if region != ARGS.region or service != want_service:
            return (403, "Credential should be scoped to a valid region and service %s, not %s/%s"
                    % (want_service, region, service), "InvalidSignatureException")
        amz_date = self.headers.get("x-amz-date") or ""
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
            tzinfo=datetime.timezone.utc)
        if abs((datetime.datetime.now(datetime.timezone.utc) - signed_at).total_seconds()) > 300:
            return (403, "Signature expired", "InvalidSignatureException")
        signed = fields["SignedHeaders"].split(";")
        if token and (self.headers.get("x-amz-security-token") != token
                      or "x-amz-security-token" not in signed):
            return (403, "The security token included in the request is invalid.",
                    "UnrecognizedClientException")
        req = AWSRequest(method="POST", url="https://%s%s" % (self.headers["host"], self.path), data=raw,
                         headers={h: self.headers[h] for h in signed})
        req.context["timestamp"] = amz_date
        signer = SigV4Auth(Credentials(key_id, secret, token), want_service, ARGS.region)
        canonical = signer.canonical_request(req)
        want = signer.signature(signer.string_to_sign(req, canonical), req)
        if want != fields["Signature"]:
            return (403, "The request signature we calculated does not match the signature you "
                    "provided. Check your AWS Secret Access Key and signing method.\n\n"
                    "The Canonical String for this request should have been\n'%s'" % canonical,
                    "InvalidSignatureException")
        return None

    def xml(self, status, text):
        data = text.encode()
        self.send_response(status)
        self.send_header("content-type", "text/xml")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def assume_role(self, raw, form):
        """STS's AssumeRole: signed (for sts) by keys this fake knows."""
        refusal = self.sigv4_refusal(raw, "sts")
        if refusal:
            return self.xml(refusal[0], "<ErrorResponse><Error><Type>Sender</Type><Code>%s</Code>"
                            "<Message>%s</Message></Error></ErrorResponse>" % (refusal[2], refusal[1]))
        if not form.get("RoleArn", "").startswith("arn:aws:iam::") or not form.get("RoleSessionName"):
            return self.xml(400, "<ErrorResponse><Error><Code>ValidationError</Code>"
                            "<Message>RoleArn and RoleSessionName are required</Message></Error></ErrorResponse>")
        with LOCK:
            ASSUMED.append(form)
        self.sts_keys("AssumeRole", "assume", form)

    def sts_keys(self, action, source, form, subject=""):
        """STS's answer to `action`: keys issued by `source`."""
        key_id, secret, token, stamp = issue_keys(source)
        name = form["RoleSessionName"]
        self.xml(200, """<%sResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <%sResult>%s
    <AssumedRoleUser>
      <AssumedRoleId>AROAFAKE:%s</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/wardgate/%s</Arn>
    </AssumedRoleUser>
    <Credentials>
      <SessionToken>%s</SessionToken>
      <SecretAccessKey>%s</SecretAccessKey>
      <Expiration>%s</Expiration>
      <AccessKeyId>%s</AccessKeyId>
    </Credentials>
  </%sResult>
  <ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata>
</%sResponse>
""" % (action, action, subject, name, name, token, secret, stamp, key_id, action, uuid.uuid4(), action))

    def sts(self, raw):
        form = dict(urllib.parse.parse_qsl(raw.decode()))
        if form.get("Action") == "AssumeRole" and form.get("Version") == "2011-06-15":
            return self.assume_role(raw, form)
        if form.get("Action") != "AssumeRoleWithWebIdentity" or form.get("Version") != "2011-06-15":
            return self.send_json(400, {"message": "unsupported STS call %s" % form.get("Action")})
        if form.get("WebIdentityToken") != ARGS.web_identity_token or \
                not form.get("RoleArn", "").startswith("arn:aws:iam::") or not form.get("RoleSessionName"):
            return self.xml(400, "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>"
                            "<Message>Couldn't retrieve verification key from your identity provider</Message>"
                            "</Error></ErrorResponse>")
        self.sts_keys("AssumeRoleWithWebIdentity", "sts", form, "\n    <SubjectFromWebIdentityToken>"
                      "system:serviceaccount:ai:wardgate</SubjectFromWebIdentityToken>")

    def sso_oidc(self, raw):
        """SSO OIDC's CreateToken with a refresh token (rotated on use)."""
        try:
            req = json.loads(raw)
        except ValueError:
            req = {}
        client = "%s:%s" % (req.get("clientId"), req.get("clientSecret"))
        with LOCK:
            ok = req.get("grantType") == "refresh_token" and client == ARGS.sso_client \
                and req.get("refreshToken") == SSO["refresh"]
            if ok:
                SSO["refreshed"] += 1
                n = SSO["refreshed"]
                access, SSO["refresh"] = "sso-access-%d" % n, "sso-refresh-%d" % n
                SSO["access"].add(access)
        if not ok:
            return self.send_json(400, {"error": "invalid_grant",
                                        "error_description": "Invalid refresh token provided"},
                                  {"x-amzn-ErrorType": "InvalidGrantException"})
        self.send_json(200, {"accessToken": access, "tokenType": "Bearer", "expiresIn": 3600,
                             "refreshToken": SSO["refresh"]})

    def sso_portal(self):
        """The IAM Identity Center portal's GetRoleCredentials."""
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(self.path).query))
        with LOCK:
            known = self.headers.get("x-amz-sso_bearer_token") in SSO["access"]
        if not known:
            return self.send_json(401, {"message": "Session token not found or invalid"},
                                  {"x-amzn-ErrorType": "UnauthorizedException"})
        if not query.get("account_id") or not query.get("role_name"):
            return self.send_json(400, {"message": "account_id and role_name are required"},
                                  {"x-amzn-ErrorType": "InvalidRequestException"})
        key_id, secret, token, _ = issue_keys("sso")
        expires = int(AWS_KEYS[key_id][2] * 1000)
        self.send_json(200, {"roleCredentials": {"accessKeyId": key_id, "secretAccessKey": secret,
                                                 "sessionToken": token, "expiration": expires}})

    def aws_get(self):
        """Container credentials, the instance metadata service and the SSO
        portal; False if the path is none of them."""
        if self.path.startswith("/federation/credentials"):
            self.sso_portal()
            return True
        if self.path == "/_aws/container-credentials":
            if self.headers.get("authorization") != ARGS.container_token:
                self.send_json(401, {"message": "invalid authorization token"})
                return True
            key_id, secret, token, stamp = issue_keys("container")
            self.send_json(200, {"AccessKeyId": key_id, "SecretAccessKey": secret, "Token": token,
                                 "Expiration": stamp, "RoleArn": "arn:aws:iam::123456789012:role/wardgate"})
            return True
        prefix = "/latest/meta-data/iam/security-credentials/"
        if not self.path.startswith(prefix):
            return False
        if self.headers.get("x-aws-ec2-metadata-token") != IMDS_TOKEN:
            self.send_response(401)
            self.send_header("content-length", "0")
            self.end_headers()
            return True
        role = self.path[len(prefix):]
        if not role:
            data = b"wardgate-role"
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return True
        key_id, secret, token, stamp = issue_keys("imds")
        self.send_json(200, {"Code": "Success", "LastUpdated": stamp, "Type": "AWS-HMAC",
                             "AccessKeyId": key_id, "SecretAccessKey": secret, "Token": token,
                             "Expiration": stamp})
        return True

    def do_PUT(self):
        if self.path == "/latest/api/token" and self.headers.get("x-aws-ec2-metadata-token-ttl-seconds"):
            data = IMDS_TOKEN.encode()
            self.send_response(200)
            self.send_header("content-type", "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            return self.wfile.write(data)
        self.send_response(400)
        self.send_header("content-length", "0")
        self.end_headers()

    def bedrock(self, path, req, raw):
        refusal = self.sigv4_refusal(raw)
        if refusal:
            return self.error(refusal[0], refusal[1], refusal[2])
        parts = self.path.split("?")[0].split("/")
        if len(parts) == 4 and parts[1] == "model" and parts[3] == "invoke":
            return self.invoke(urllib.parse.unquote(parts[2]), req)
        if len(parts) == 4 and parts[1] == "model" and parts[3] == "count-tokens":
            return self.count_tokens(req)
        if len(parts) != 4 or parts[1] != "model" or parts[3] not in ("converse", "converse-stream"):
            return self.error(404, "no such Bedrock path: " + path, "UnknownOperationException")
        model, stream = urllib.parse.unquote(parts[2]), parts[3] == "converse-stream"
        extra = sorted(set(req) - CONVERSE_FIELDS)
        if extra:
            return self.error(400, "Malformed input request: extraneous key [%s] is not permitted" % extra[0])
        msgs = req.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return self.error(400, "A conversation must start with a user message.")
        roles = [m.get("role") for m in msgs]
        if roles[0] != "user" or any(a == b for a, b in zip(roles, roles[1:])):
            return self.error(400, "A conversation must alternate between user and assistant roles.")
        for m in msgs:
            for b in m.get("content") or []:
                if "text" in b and not b["text"].strip():
                    return self.error(400, "The text field in the ContentBlock object is blank.")
        refused = converse_name_refusal(req)
        if refused:
            return self.error(400, refused)
        thinking = (req.get("additionalModelRequestFields") or {}).get("thinking")
        refused = thinking_refusal(thinking, (req.get("inferenceConfig") or {}).get("maxTokens"), model)
        schema, bad_format = format_refusal(req.get("outputConfig"), converse=True)

        def kind(b):
            r = b.get("reasoningContent")
            if r is not None:
                t = r.get("reasoningText")
                return ("thinking", t["text"], t.get("signature")) if t else ("redacted", "", None)
            return ("tool" if "toolUse" in b else "text", "", None)
        turns = [(i, [kind(b) for b in m.get("content") or []])
                 for i, m in enumerate(msgs) if m["role"] == "assistant"]
        refused = refused or bad_format or history_refusal(turns, thinks(thinking))
        if refused:
            return self.error(400, refused)
        last = msgs[-1]
        results = [b["toolResult"] for b in last.get("content") or [] if "toolResult" in b]
        tool_result = "".join(c.get("text", "") for c in results[-1]["content"]) if results else None
        last_user = "".join(b.get("text", "") for b in last.get("content") or [] if "text" in b)
        if last_user == "bad request":
            return self.error(400, "the fake refuses 'bad request'")
        tools = [t["toolSpec"]["name"] for t in (req.get("toolConfig") or {}).get("tools") or []
                 if "toolSpec" in t]
        turn = decide(last_user, tool_result, tools)
        if schema is not None and not turn.tool:
            turn = Turn(json.dumps(sample_of(schema)))
        thought = "Thinking about: " + (tool_result or last_user) if thinks(thinking) else None
        stop = "tool_use" if turn.tool else "end_turn"
        if req.get("guardrailConfig") and "forbidden" in last_user:
            turn, stop = Turn("Sorry, the model cannot answer this question."), "guardrail_intervened"
        prompt = sum(count_tokens(" ".join(b.get("text", "") for b in m.get("content") or []))
                     for m in msgs) + sum(count_tokens(b.get("text", "")) for b in req.get("system") or [])
        out = count_tokens(turn.text) if turn.text else 5
        usage = {"inputTokens": prompt, "outputTokens": out, "totalTokens": prompt + out}
        rid = str(uuid.uuid4())
        content = []
        if thought:
            content.append({"reasoningContent": {"reasoningText": {"text": thought,
                                                                   "signature": signature(thought)}}})
        if turn.text:
            content.append({"text": turn.text})
        if turn.tool:
            content.append({"toolUse": {"toolUseId": "tooluse_fake1", "name": turn.tool[0],
                                        "input": turn.tool[1]}})
        if not stream:
            return self.send_json(200, {"output": {"message": {"role": "assistant", "content": content}},
                                        "stopReason": stop, "usage": usage, "metrics": {"latencyMs": 42}},
                                  {"x-amzn-RequestId": rid})
        self.send_response(200)
        self.send_header("content-type", "application/vnd.amazon.eventstream")
        self.send_header("x-amzn-RequestId", rid)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

        def event(kind, obj):
            obj["p"] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ"[: 1 + len(kind)]  # AWS's padding field
            frame = event_frame({":event-type": kind, ":content-type": "application/json",
                                 ":message-type": "event"}, json.dumps(obj).encode())
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            self.wfile.flush()

        event("messageStart", {"role": "assistant"})
        if last_user == "break mid-stream":
            event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Half"}})
            frame = event_frame({":exception-type": "modelStreamErrorException",
                                 ":content-type": "application/json", ":message-type": "exception"},
                                b'{"message":"The model stopped: try again."}')
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))
            return self.end_stream()
        index = 0
        if thought:
            for w in words(thought):
                event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": w}}})
            event("contentBlockDelta", {"contentBlockIndex": 0,
                                        "delta": {"reasoningContent": {"signature": signature(thought)}}})
            event("contentBlockStop", {"contentBlockIndex": 0})
            index = 1
        if turn.text:
            for w in words(turn.text):
                event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"text": w}})
            event("contentBlockStop", {"contentBlockIndex": index})
            index += 1
        if turn.tool:
            event("contentBlockStart", {"contentBlockIndex": index, "start": {"toolUse": {
                "toolUseId": "tooluse_fake1", "name": turn.tool[0]}}})
            args = json.dumps(turn.tool[1])
            for part in (args[: len(args) // 2], args[len(args) // 2:]):
                event("contentBlockDelta", {"contentBlockIndex": index, "delta": {"toolUse": {"input": part}}})
            event("contentBlockStop", {"contentBlockIndex": index})
        event("messageStop", {"stopReason": stop})
        event("metadata", {"usage": usage, "metrics": {"latencyMs": 42}})
        self.end_stream()


    def count_tokens(self, req):
        """CountTokens for a Converse request: its texts' words, plus 10 per
        tool; strict about the fields as Bedrock is."""
        inner = req.get("input")
        if set(req) != {"input"} or not isinstance(inner, dict) or list(inner) != ["converse"]:
            return self.error(400, "Malformed input request: input must hold converse or invokeModel")
        conv = inner["converse"]
        extra = sorted(set(conv) - {"messages", "system", "toolConfig", "additionalModelRequestFields"})
        if extra:
            return self.error(400, "Malformed input request: extraneous key [%s] is not permitted" % extra[0])
        msgs = conv.get("messages") or []
        roles = [m.get("role") for m in msgs]
        if not msgs or roles[0] != "user" or any(a == b for a, b in zip(roles, roles[1:])):
            return self.error(400, "A conversation must alternate between user and assistant roles.")
        words = sum(count_tokens(b["text"]) for m in msgs for b in m.get("content") or [] if "text" in b)
        words += sum(count_tokens(b["text"]) for b in conv.get("system") or [] if "text" in b)
        tools = len((conv.get("toolConfig") or {}).get("tools") or [])
        self.send_json(200, {"inputTokens": words + 10 * tools})

    def invoke(self, model, req):
        """InvokeModel for Titan Text Embeddings and Cohere Embed, strict
        about their fields as Bedrock is."""
        def invalid(message):
            return self.error(400, message, "ValidationException")

        if "titan-embed" in model:
            allowed = {"inputText", "normalize", "embeddingTypes"} | \
                ({"dimensions"} if "v2" in model else set())
            extra = sorted(set(req) - allowed)
            if extra:
                return invalid("Malformed input request: extraneous key [%s] is not permitted" % extra[0])
            text = req.get("inputText")
            if not isinstance(text, str) or not text.strip():
                return invalid("Malformed input request: expected minLength: 1, actual: 0")
            dims = req.get("dimensions", 1024)
            if dims not in (256, 512, 1024):
                return invalid("Malformed input request: %s is not a valid enum value" % dims)
            vector = embedding(text, dims)
            tokens = count_tokens(text)
            return self.send_json(200, {"embedding": vector, "embeddingsByType": {"float": vector},
                                        "inputTextTokenCount": tokens},
                                  {"X-Amzn-Bedrock-Input-Token-Count": str(tokens)})
        if "cohere.embed" in model:
            allowed = {"texts", "input_type", "truncate", "embedding_types", "images"} | \
                ({"output_dimension"} if "v4" in model else set())
            extra = sorted(set(req) - allowed)
            if extra:
                return invalid("Malformed input request: extraneous key [%s] is not permitted" % extra[0])
            texts = req.get("texts")
            if not isinstance(texts, list) or not 1 <= len(texts) <= 96 or \
                    not all(isinstance(t, str) for t in texts):
                return invalid("Malformed input request: texts must hold 1 to 96 strings")
            kind = req.get("input_type")
            if kind not in ("search_document", "search_query", "classification", "clustering"):
                return invalid("Malformed input request: input_type is required")
            dims = req.get("output_dimension", 1536 if "v4" in model else 1024)
            vectors = [embedding(kind + ":" + t, dims) for t in texts]
            tokens = sum(count_tokens(t) for t in texts)
            body = {"id": str(uuid.uuid4()), "texts": texts}
            if req.get("embedding_types"):
                body.update(embeddings={"float": vectors}, response_type="embeddings_by_type")
            else:
                body.update(embeddings=vectors, response_type="embeddings_floats")
            return self.send_json(200, body, {"X-Amzn-Bedrock-Input-Token-Count": str(tokens)})
        return invalid("The provided model identifier is invalid.")


def embedding(text, dims):
    """A vector the test clients can compute too: the SHA-256 of the text,
    its bytes as multiples of 1/128 (exact in float32)."""
    digest = hashlib.sha256(text.encode()).digest()
    return [(digest[i % 32] - 128) / 128 for i in range(dims)]


class Handler(BedrockMixin, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    # ---- plumbing ---------------------------------------------------------

    def body(self):
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def send_json(self, status, obj, extra=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def start_stream(self):
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()

    def chunk(self, data):
        raw = data.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(raw), raw))
        self.wfile.flush()
        if ARGS.chunk_delay_ms:
            time.sleep(ARGS.chunk_delay_ms / 1000)

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def error(self, status, message, kind=None):
        if ARGS.flavor == "bedrock":
            kinds = {400: "ValidationException", 403: "AccessDeniedException",
                     404: "ResourceNotFoundException", 429: "ThrottlingException",
                     500: "InternalServerException", 503: "ServiceUnavailableException"}
            return self.send_json(status, {"message": message},
                                  {"x-amzn-ErrorType": (kind or kinds.get(status, "InternalServerException"))
                                   + ":http://internal.amazon.com/coral/com.amazon.bedrock/",
                                   "x-amzn-RequestId": str(uuid.uuid4())})
        if ARGS.flavor == "openai" or (ARGS.flavor == "vertex" and "/endpoints/openapi/" in self.path):
            kinds = {400: "invalid_request_error", 401: "invalid_request_error",
                     429: "requests", 500: "server_error", 503: "server_error"}
            codes = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
            body = {"error": {"message": message, "type": kind or kinds.get(status, "server_error"),
                              "param": None, "code": codes.get(status)}}
        else:
            kinds = {400: "invalid_request_error", 401: "authentication_error",
                     429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
            body = {"type": "error", "error": {"type": kind or kinds.get(status, "api_error"),
                                               "message": message}}
        extra = {"retry-after": "30"} if status == 429 else None
        self.send_json(status, body, extra)

    # ---- routes -----------------------------------------------------------

    # ---- Microsoft Entra ID ------------------------------------------------

    def entra_issue(self, resource, how, extra):
        """A token for `resource` (a scope's resource, without /.default)."""
        with LOCK:
            token = "entra-%d" % (len(ENTRA_ISSUED) + 1)
            ENTRA_TOKENS[token] = (resource, time.time() + ARGS.token_ttl)
            ENTRA_ISSUED.append(dict(extra, via=how, resource=resource))
        return token

    def entra_error(self, status, code, description):
        self.send_json(status, {"error": code, "error_description": description,
                                "error_codes": [int(description[6:description.index(":")])]})

    def entra_token(self, raw):
        """The tenant's v2.0 token endpoint: client credentials only."""
        form = dict(urllib.parse.parse_qsl(raw.decode()))
        tenant = self.path.split("/")[1]
        if form.get("grant_type") != "client_credentials":
            return self.entra_error(400, "unsupported_grant_type", "AADSTS70003: grant type not supported")
        scope = form.get("scope", "")
        if not scope.endswith("/.default"):
            return self.entra_error(400, "invalid_scope", "AADSTS70011: the scope must end in /.default")
        client, secret = ARGS.azure_secret.split(":", 1)
        if form.get("client_id") != client:
            return self.entra_error(400, "unauthorized_client", "AADSTS700016: application not found")
        if "client_secret" in form:
            if form["client_secret"] != secret:
                return self.entra_error(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
            how = "secret"
        elif form.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
            if form.get("client_assertion") != ARGS.azure_assertion:
                return self.entra_error(401, "invalid_client", "AADSTS700024: Client assertion is not valid.")
            how = "workload"
        else:
            return self.entra_error(401, "invalid_client", "AADSTS7000216: a secret or assertion is required")
        token = self.entra_issue(scope[:-len("/.default")], how, {"tenant": tenant, "client": client})
        self.send_json(200, {"token_type": "Bearer", "expires_in": ARGS.token_ttl,
                             "ext_expires_in": ARGS.token_ttl, "access_token": token})

    def entra_managed(self):
        path, _, query = self.path.partition("?")
        q = dict(urllib.parse.parse_qsl(query))
        identity = {k: v for k, v in q.items() if k not in ("api-version", "resource")}
        resource = q.get("resource", "")
        if path == "/metadata/identity/oauth2/token":
            if self.headers.get("metadata") != "true" or q.get("api-version") != "2018-02-01":
                return self.send_json(400, {"error": "invalid_request", "error_description": "Required metadata header not specified"})
            token = self.entra_issue(resource, "imds", identity)
            return self.send_json(200, {"access_token": token, "expires_in": str(ARGS.token_ttl),
                                        "expires_on": str(int(time.time()) + ARGS.token_ttl),
                                        "resource": resource, "token_type": "Bearer"})
        if path == "/_azure/identity":
            if self.headers.get("x-identity-header") != ARGS.azure_identity_header:
                return self.send_json(401, {"error": "unauthorized", "error_description": "bad X-IDENTITY-HEADER"})
            token = self.entra_issue(resource, "appservice", identity)
            return self.send_json(200, {"access_token": token,
                                        "expires_on": str(int(time.time()) + ARGS.token_ttl),
                                        "resource": resource, "token_type": "Bearer"})
        # What a fake `az account get-access-token` asks for.
        token = self.entra_issue(resource, "cli", {})
        self.send_json(200, {"accessToken": token, "tokenType": "Bearer",
                             "expires_on": int(time.time()) + ARGS.token_ttl,
                             "expiresOn": "2099-01-01 00:00:00.000000"})

    def entra_refusal(self, path):
        """Why a call's bearer token is not good for this Azure path, if it is not."""
        auth = self.headers.get("authorization") or ""
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        want = "https://ai.azure.com" if path.startswith("/api/projects/") \
            else "https://cognitiveservices.azure.com"
        with LOCK:
            issued = ENTRA_TOKENS.get(token)
        if issued is None:
            return "Access denied due to invalid subscription key or wrong API endpoint, or a token Entra ID did not issue"
        if issued[0] != want:
            return "Token audience %s is not %s" % (issued[0], want)
        if issued[1] < time.time():
            return "Token expired"
        return None

    def do_GET(self):
        if self.path == "/_azure_issued":
            with LOCK:
                return self.send_json(200, ENTRA_ISSUED)
        if ARGS.azure_entra and self.path.startswith(
                ("/metadata/identity/oauth2/token", "/_azure/identity", "/_azure/cli")):
            return self.entra_managed()
        if self.path == "/_aws_issued":
            with LOCK:
                return self.send_json(200, dict(AWS_ISSUED, assumed=ASSUMED,
                                                sso_refreshed=SSO["refreshed"]))
        if ARGS.flavor == "bedrock" and self.aws_get():
            return
        if self.path == "/_requests":
            with LOCK:
                return self.send_json(200, RECEIVED)
        if self.path == "/_tokens":
            with LOCK:
                return self.send_json(200, {"issued": len(TOKENS), "id_tokens": ID_TOKENS})
        if ARGS.flavor == "vertex" and self.path.startswith(
                "/computeMetadata/v1/instance/service-accounts/default/identity"):
            return self.metadata_identity()
        if self.path.startswith("/_test/service-account.json"):
            key = rsa_key() if "forged=1" in self.path else SA_KEY
            return self.send_json(200, {
                "type": "service_account", "project_id": "wardgate-test",
                "private_key_id": "k1", "private_key": pem(key), "client_email": SA_EMAIL,
                "client_id": "1", "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": "http://127.0.0.1:%d/token" % self.server.server_address[1]})
        if self.path.split("?")[0].endswith("/realtime") and ARGS.flavor == "openai":
            return self.realtime()
        if self.path.endswith("/models"):
            self.record(b"")
            return self.send_json(200, {"object": "list", "data": [
                {"id": "fake-model", "object": "model", "created": 1700000000, "owned_by": ARGS.name}]})
        self.error(404, "no such path " + self.path)

    def record(self, raw):
        with LOCK:
            RECEIVED.append({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                             "body": json.loads(raw) if raw else None,
                             # The caller's port: which connection the request came on.
                             "peer": self.client_address[1]})

    def do_POST(self):
        raw = self.body()
        if ARGS.flavor == "vertex" and self.path == "/token":
            return self.google_token(raw)
        if ARGS.flavor == "bedrock" and self.path == "/":
            return self.sts(raw)
        if ARGS.flavor == "bedrock" and self.path == "/token":
            return self.sso_oidc(raw)
        if ARGS.azure_entra and self.path.endswith("/oauth2/v2.0/token"):
            return self.entra_token(raw)
        self.record(raw)
        if ARGS.fail:
            return self.error(ARGS.fail, f"{ARGS.name} fails on purpose ({ARGS.fail})")
        if ARGS.azure_entra:
            refusal = self.entra_refusal(self.path.split("?")[0])
            if refusal:
                return self.send_json(401, {"error": {"code": "401", "message": refusal}})
        if ARGS.key and ARGS.flavor != "bedrock":
            got = (self.headers.get("authorization") or "") if ARGS.flavor == "openai" \
                else (self.headers.get("x-api-key") or "")
            want = "Bearer " + ARGS.key if ARGS.flavor == "openai" else ARGS.key
            if got != want:
                return self.error(401, "invalid api key")
        try:
            req = json.loads(raw)
        except ValueError:
            return self.error(400, "body is not JSON")
        path = self.path.split("?")[0]
        if ARGS.flavor == "vertex":
            return self.vertex(path, req)
        if ARGS.flavor == "bedrock":
            return self.bedrock(path, req, raw)
        if ARGS.flavor == "openai":
            if path.endswith("/embeddings"):
                return self.send_json(200, {"object": "list", "model": req.get("model"),
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                    "usage": {"prompt_tokens": 3, "total_tokens": 3}})
            if path.endswith("/responses"):
                return self.responses_api(req)
            if not path.endswith("/chat/completions"):
                return self.error(404, "no such path " + self.path)
            return self.openai(req)
        if not path.endswith("/v1/messages"):
            return self.error(404, "no such path " + self.path)
        return self.anthropic(req)

    # ---- OpenAI Realtime (WebSocket) --------------------------------------

    def realtime(self):
        """A Realtime session: the WebSocket handshake and frames by the
        `websockets` library's sans-I/O protocol on this handler's socket;
        the events are the Realtime API's (session.created, then per
        response.create: response.created, response.output_text.delta per
        word, response.output_text.done, response.done with usage)."""
        from urllib.parse import parse_qs, urlparse

        from websockets.frames import Opcode
        from websockets.protocol import State
        from websockets.server import ServerProtocol

        self.record(b"")
        self.close_connection = True
        if ARGS.key and self.headers.get("authorization") != "Bearer " + ARGS.key:
            return self.error(401, "invalid api key")
        ws = ServerProtocol(max_size=None)
        # The protocol parses the handshake itself: give it the head that
        # http.server has already read.
        head = self.requestline + "\r\n"
        head += "".join("%s: %s\r\n" % (k, v) for k, v in self.headers.items()) + "\r\n"
        ws.receive_data(head.encode("latin-1"))
        [request] = ws.events_received()
        response = ws.accept(request)
        ws.send_response(response)
        self.flush_ws(ws)
        if response.status_code != 101:
            return
        model = parse_qs(urlparse(self.path).query).get("model", [""])[0]
        ids = iter(range(1, 1 << 30))

        def send(event):
            event["event_id"] = "event_%d" % next(ids)
            ws.send_text(json.dumps(event).encode())

        session = {"type": "realtime", "object": "realtime.session", "id": "sess_fake",
                   "model": model, "output_modalities": ["text"]}
        send({"type": "session.created", "session": session})
        self.flush_ws(ws)
        said = ""
        while ws.state is not State.CLOSED:
            data = self.rfile.read1(65536)
            if data:
                ws.receive_data(data)
            else:
                ws.receive_eof()
            for frame in ws.events_received():
                if frame.opcode is not Opcode.TEXT:
                    continue
                event = json.loads(frame.data)
                kind = event.get("type")
                if kind == "session.update":
                    session.update(event.get("session") or {})
                    send({"type": "session.updated", "session": session})
                elif kind == "conversation.item.create":
                    item = dict(event["item"], id="item_user", status="completed")
                    said = texts_of_content([
                        {"text": c.get("text", "")} for c in item.get("content", [])])
                    send({"type": "conversation.item.added", "previous_item_id": None, "item": item})
                    send({"type": "conversation.item.done", "previous_item_id": None, "item": item})
                elif kind == "response.create":
                    self.realtime_response(send, decide(said, None, []).text)
                else:
                    send({"type": "error", "error": {"type": "invalid_request_error",
                          "code": "unknown_event", "message": "unknown event " + str(kind),
                          "param": None, "event_id": event.get("event_id")}})
            self.flush_ws(ws)
            if not data:
                break

    def realtime_response(self, send, text):
        resp = {"object": "realtime.response", "id": "resp_fake", "status": "in_progress",
                "output": [], "conversation_id": "conv_fake", "output_modalities": ["text"]}
        send({"type": "response.created", "response": resp})
        item = {"id": "item_fake", "type": "message", "role": "assistant", "status": "in_progress",
                "content": []}
        where = {"response_id": "resp_fake", "item_id": "item_fake", "output_index": 0}
        send({"type": "response.output_item.added", "response_id": "resp_fake", "output_index": 0,
              "item": item})
        send(dict(where, type="response.content_part.added", content_index=0,
                  part={"type": "text", "text": ""}))
        for w in words(text):
            send(dict(where, type="response.output_text.delta", content_index=0, delta=w))
        send(dict(where, type="response.output_text.done", content_index=0, text=text))
        part = {"type": "text", "text": text}
        send(dict(where, type="response.content_part.done", content_index=0, part=part))
        item = dict(item, status="completed", content=[{"type": "output_text", "text": text}])
        send({"type": "response.output_item.done", "response_id": "resp_fake", "output_index": 0,
              "item": item})
        tokens_in, tokens_out = 3, count_tokens(text)
        send({"type": "response.done", "response": dict(resp, status="completed", output=[item],
              usage={"total_tokens": tokens_in + tokens_out, "input_tokens": tokens_in,
                     "output_tokens": tokens_out})})

    def flush_ws(self, ws):
        for data in ws.data_to_send():
            if data:
                self.wfile.write(data)
        self.wfile.flush()

    # ---- OpenAI -----------------------------------------------------------

    def openai(self, req):
        msgs = req.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return self.error(400, "'messages' must be a non-empty array")
        if not req.get("model"):
            return self.error(400, "you must provide a model parameter")
        last = msgs[-1]
        tool_result = texts_of_content(last.get("content")) if last.get("role") == "tool" else None
        users = [m for m in msgs if m.get("role") == "user"]
        last_user = texts_of_content(users[-1].get("content")) if users else ""
        if last_user == "bad request":
            return self.error(400, "the fake refuses 'bad request'")
        for m in msgs:
            extra = sorted(set(m) - {"role", "content", "name", "tool_calls", "tool_call_id", "refusal",
                                     "audio", "function_call", "annotations"})
            if extra:
                return self.error(400, "Unrecognized request argument supplied: messages.%s" % extra[0])
        effort = req.get("reasoning_effort")
        if effort is not None and effort not in ("none", "minimal", "low", "medium", "high", "xhigh"):
            return self.error(400, "Invalid value for 'reasoning_effort': '%s'" % effort)
        fmt = req.get("response_format") or {"type": "text"}
        if fmt.get("type") not in ("text", "json_object", "json_schema") or \
                (fmt["type"] == "json_schema" and not isinstance((fmt.get("json_schema") or {}).get("schema"), dict)):
            return self.error(400, "Invalid 'response_format'")
        tools = [t["function"]["name"] for t in req.get("tools") or []]
        turn = decide(last_user, tool_result, tools)
        if fmt["type"] != "text" and not turn.tool:
            schema = fmt["json_schema"]["schema"] if fmt["type"] == "json_schema" else {
                "type": "object", "properties": {"answer": {"type": "string"}}}
            turn = Turn(json.dumps(sample_of(schema)))
        # As OpenAI-compatible reasoning servers (vLLM, DeepSeek) answer.
        thought = "Thinking about: " + (tool_result or last_user) if effort not in (None, "none") else None
        prompt = sum(count_tokens(texts_of_content(m.get("content"))) for m in msgs)
        out = count_tokens(turn.text) if turn.text else 5
        usage = {"prompt_tokens": prompt, "completion_tokens": out, "total_tokens": prompt + out,
                 "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0,
                                               "rejected_prediction_tokens": 0}}
        cid, created, model = "chatcmpl-fake%d" % len(RECEIVED), int(time.time()), req["model"]
        call = None
        if turn.tool:
            call = {"id": "call_fake1", "type": "function",
                    "function": {"name": turn.tool[0], "arguments": json.dumps(turn.tool[1])}}
        finish = "tool_calls" if call else "stop"
        if not req.get("stream"):
            message = {"role": "assistant", "content": turn.text if not call else None,
                       "refusal": None, "annotations": []}
            if thought:
                message["reasoning_content"] = thought
            if call:
                message["tool_calls"] = [call]
            return self.send_json(200, {"id": cid, "object": "chat.completion", "created": created,
                "model": model, "choices": [{"index": 0, "message": message, "logprobs": None,
                                             "finish_reason": finish}],
                "usage": usage, "service_tier": "default", "system_fingerprint": "fp_fake"})
        with_usage = (req.get("stream_options") or {}).get("include_usage")

        def chunk(delta, finish_reason=None):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                 "system_fingerprint": "fp_fake",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
            if with_usage:
                c["usage"] = None
            self.chunk("data: " + json.dumps(c) + "\n\n")

        self.start_stream()
        chunk({"role": "assistant", "content": "", "refusal": None})
        for w in words(thought) if thought else []:
            chunk({"reasoning_content": w})
        if call:
            chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                   "function": {"name": call["function"]["name"], "arguments": ""}}]})
            args = call["function"]["arguments"]
            for part in (args[: len(args) // 2], args[len(args) // 2:]):
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
        else:
            for w in words(turn.text):
                chunk({"content": w})
        chunk({}, finish)
        if with_usage:
            self.chunk("data: " + json.dumps({"id": cid, "object": "chat.completion.chunk",
                "created": created, "model": model, "system_fingerprint": "fp_fake",
                "choices": [], "usage": usage}) + "\n\n")
        self.chunk("data: [DONE]\n\n")
        self.end_stream()

    # ---- OpenAI Responses -------------------------------------------------

    def responses_api(self, req):
        if not req.get("model"):
            return self.error(400, "you must provide a model parameter")
        items = req.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        if not isinstance(items, list) or not items:
            return self.error(400, "'input' must be a string or a non-empty array")
        last = items[-1]
        tool_result = None
        if last.get("type") == "function_call_output":
            out = last.get("output")
            tool_result = out if isinstance(out, str) else texts_of_content(out)
        users = [i for i in items if i.get("role") == "user"]
        last_user = texts_of_content(users[-1].get("content")) if users else ""
        if last_user == "bad request":
            return self.error(400, "the fake refuses 'bad request'")
        tools = [t["name"] for t in req.get("tools") or [] if t.get("type") == "function"]
        turn = decide(last_user, tool_result, tools)
        prompt = count_tokens(req.get("instructions") or "") if req.get("instructions") else 0
        prompt += sum(count_tokens(texts_of_content(i.get("content") or i.get("output") or ""))
                      for i in items)
        out_tokens = count_tokens(turn.text) if turn.text else 5
        usage = {"input_tokens": prompt, "input_tokens_details": {"cached_tokens": 0},
                 "output_tokens": out_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": prompt + out_tokens}
        rid = "resp_fake%d" % len(RECEIVED)
        base = {"id": rid, "object": "response", "created_at": int(time.time()),
                "status": "in_progress", "background": False, "error": None,
                "incomplete_details": None, "instructions": req.get("instructions"),
                "max_output_tokens": req.get("max_output_tokens"), "model": req["model"],
                "output": [], "parallel_tool_calls": True, "previous_response_id": None,
                "reasoning": {"effort": None, "summary": None}, "store": True, "temperature": 1.0,
                "text": {"format": {"type": "text"}}, "tool_choice": "auto",
                "tools": req.get("tools") or [], "top_p": 1.0, "truncation": "disabled",
                "usage": None, "user": None, "metadata": {}}
        if turn.tool:
            item = {"id": "fc_fake1", "type": "function_call", "status": "completed",
                    "call_id": "call_fake1", "name": turn.tool[0],
                    "arguments": json.dumps(turn.tool[1])}
        else:
            item = {"id": "msg_fake1", "type": "message", "status": "completed", "role": "assistant",
                    "content": [{"type": "output_text", "text": turn.text, "annotations": [],
                                 "logprobs": []}]}
        done = dict(base, status="completed", output=[item], usage=usage)
        if not req.get("stream"):
            return self.send_json(200, done)
        seq = [0]

        def send(obj):
            obj["sequence_number"] = seq[0]
            seq[0] += 1
            self.chunk("event: %s\ndata: %s\n\n" % (obj["type"], json.dumps(obj)))

        self.start_stream()
        send({"type": "response.created", "response": base})
        send({"type": "response.in_progress", "response": base})
        if turn.tool:
            send({"type": "response.output_item.added", "output_index": 0,
                  "item": dict(item, status="in_progress", arguments="")})
            args = item["arguments"]
            for part in (args[: len(args) // 2], args[len(args) // 2:]):
                send({"type": "response.function_call_arguments.delta", "item_id": item["id"],
                      "output_index": 0, "delta": part})
            send({"type": "response.function_call_arguments.done", "item_id": item["id"],
                  "output_index": 0, "name": item["name"], "arguments": args})
        else:
            where = {"item_id": item["id"], "output_index": 0, "content_index": 0}
            send({"type": "response.output_item.added", "output_index": 0,
                  "item": dict(item, status="in_progress", content=[])})
            send(dict(where, type="response.content_part.added",
                      part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""}))
            for w in words(turn.text):
                send(dict(where, type="response.output_text.delta", delta=w, logprobs=[]))
            send(dict(where, type="response.output_text.done", text=turn.text, logprobs=[]))
            send(dict(where, type="response.content_part.done", part=item["content"][0]))
        send({"type": "response.output_item.done", "output_index": 0, "item": item})
        send({"type": "response.completed", "response": done})
        self.end_stream()

    # ---- Anthropic --------------------------------------------------------

    # ---- Google: OAuth token endpoint and Vertex AI ------------------------

    def google_token(self, raw):
        import jwt
        form = urllib.parse.parse_qs(raw.decode())
        if form.get("grant_type") != [JWT_BEARER] or "assertion" not in form:
            return self.send_json(400, {"error": "unsupported_grant_type",
                                        "error_description": "Invalid grant_type"})
        token_uri = "http://127.0.0.1:%d/token" % self.server.server_address[1]
        try:
            claims = jwt.decode(form["assertion"][0], SA_KEY.public_key(), algorithms=["RS256"],
                                audience=token_uri,
                                # Google takes `"sub": null` (no user to act as).
                                options={"require": ["exp", "iat", "iss"], "verify_sub": False})
        except jwt.PyJWTError as e:
            return self.send_json(400, {"error": "invalid_grant",
                                        "error_description": "Invalid JWT Signature. (%s)" % e})
        if claims["exp"] - claims["iat"] > 3600:
            return self.send_json(400, {"error": "invalid_grant", "error_description": "JWT lives too long"})
        if claims.get("target_audience"):
            # An ID token: Google's answer carries only `id_token`.
            if claims["iss"] != SA_EMAIL:
                return self.send_json(400, {"error": "invalid_grant", "error_description": "bad iss"})
            return self.send_json(200, {"id_token": self.id_token(claims["target_audience"], "key")})
        if claims["iss"] != SA_EMAIL or CLOUD_PLATFORM not in claims.get("scope", "").split():
            return self.send_json(400, {"error": "invalid_scope", "error_description": "bad iss or scope"})
        with LOCK:
            TOKENS.append("ya29.fake-%d" % (len(TOKENS) + 1))
            token = TOKENS[-1]
        self.send_json(200, {"access_token": token, "expires_in": ARGS.token_ttl, "token_type": "Bearer"})

    def id_token(self, audience, via):
        import jwt
        now = int(time.time())
        token = jwt.encode({"iss": "https://accounts.google.com", "aud": audience, "azp": SA_EMAIL,
                            "email": SA_EMAIL, "email_verified": True, "sub": "1",
                            "iat": now, "exp": now + ARGS.token_ttl}, SA_KEY, algorithm="RS256")
        with LOCK:
            ID_TOKENS.append({"aud": audience, "via": via})
        return token

    def metadata_identity(self):
        """The metadata server's identity endpoint (on Google Cloud machines)."""
        if self.headers.get("metadata-flavor") != "Google":
            return self.send_json(403, {"error": "Missing Metadata-Flavor:Google header"})
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        if not query.get("audience"):
            return self.send_json(400, {"error": "non-empty audience parameter required"})
        data = self.id_token(query["audience"][0], "metadata").encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("metadata-flavor", "Google")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def google_error(self, status, message, word):
        self.send_json(status, {"error": {"code": status, "message": message, "status": word}})

    def vertex(self, path, req):
        auth = self.headers.get("authorization") or ""
        with LOCK:
            known = auth.startswith("Bearer ") and auth[7:] in TOKENS
        if not known:
            return self.google_error(401, "Request had invalid authentication credentials. Expected OAuth 2 "
                                     "access token, login cookie or other valid authentication credential.",
                                     "UNAUTHENTICATED")
        prefix = "/v1/projects/wardgate-test/locations/"
        if not path.startswith(prefix):
            return self.google_error(404, "no such project or location: " + path, "NOT_FOUND")
        location, _, rest = path[len(prefix):].partition("/")
        if rest == "endpoints/openapi/chat/completions":
            return self.openai(req)
        if rest == "endpoints/openapi/embeddings":
            return self.send_json(200, {"object": "list", "model": req.get("model"),
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2, 0.3]}],
                "usage": {"prompt_tokens": 3, "total_tokens": 3}})
        if rest.startswith("publishers/google/models/") and ":" in rest:
            model, _, method = rest[len("publishers/google/models/"):].partition(":")
            return self.gemini(model, method, req)
        models = "publishers/anthropic/models/"
        if not rest.startswith(models) or ":" not in rest:
            return self.google_error(404, "no such Vertex path: " + path, "NOT_FOUND")
        model, _, method = rest[len(models):].partition(":")
        if req.get("anthropic_version") != "vertex-2023-10-16":
            return self.error(400, "anthropic_version: vertex-2023-10-16 is required in the body")
        if model == "count-tokens" and method == "rawPredict":
            msgs = req.get("messages") or []
            return self.send_json(200, {"input_tokens": sum(
                count_tokens(texts_of_content(m.get("content"))) for m in msgs)})
        if "model" in req:
            return self.error(400, "model: Extra inputs are not permitted")
        if method not in ("rawPredict", "streamRawPredict") or \
                (method == "streamRawPredict") != bool(req.get("stream")):
            return self.error(400, "%s does not match stream=%s" % (method, req.get("stream")))
        req["model"] = model
        return self.anthropic(req, vertex=True)

    def gemini(self, model, method, req):
        """Gemini's generateContent on Vertex, strict about its fields; Gemini 3
        wants each step's first function call back with the thought signature
        it gave (as Google's API does)."""
        if method not in ("generateContent", "streamGenerateContent"):
            return self.google_error(404, "no such method: " + method, "NOT_FOUND")
        stream = method == "streamGenerateContent"
        if stream and "alt=sse" not in self.path:
            return self.google_error(400, "the fake streams only with alt=sse", "INVALID_ARGUMENT")

        def invalid(message):
            return self.google_error(400, message, "INVALID_ARGUMENT")
        for fields, allowed in ((req, GEMINI_FIELDS), (req.get("generationConfig") or {}, GENERATION_FIELDS),
                                ((req.get("generationConfig") or {}).get("thinkingConfig") or {}, THINKING_FIELDS)):
            extra = sorted(set(fields) - allowed)
            if extra:
                return invalid('Invalid JSON payload received. Unknown name "%s": Cannot find field.' % extra[0])
        gen = req.get("generationConfig") or {}
        if "responseJsonSchema" in gen and gen.get("responseMimeType") != "application/json":
            return invalid("responseJsonSchema requires responseMimeType application/json")
        contents = req.get("contents")
        if not isinstance(contents, list) or not contents:
            return invalid("contents is not specified")
        called = []
        for i, c in enumerate(contents):
            if c.get("role") not in ("user", "model") or not c.get("parts"):
                return invalid("contents[%d]: a role of user or model and some parts are required" % i)
            calls = [p for p in c["parts"] if "functionCall" in p]
            if calls and "gemini-3" in model:
                with LOCK:
                    signed = calls[0].get("thoughtSignature") in GEMINI_SIGNATURES
                if not signed:
                    return invalid("Function call is missing a thought_signature in functionCall parts. This is "
                                   "required for tools to work correctly. Additional data, function call `%s`, "
                                   "position %d." % (calls[0]["functionCall"].get("name"), i + 1))
            called += [p["functionCall"].get("name") for p in calls]
            for p in c["parts"]:
                if "functionResponse" in p and p["functionResponse"].get("name") not in called:
                    return invalid("contents[%d]: function response %s answers no call" %
                                   (i, p["functionResponse"].get("name")))
        last = contents[-1]
        results = [p["functionResponse"] for p in last["parts"] if "functionResponse" in p]
        tool_result = str((results[-1].get("response") or {}).get("content")) if results else None
        users = [c for c in contents if c["role"] == "user" and any("text" in p for p in c["parts"])]
        last_user = "".join(p.get("text", "") for p in users[-1]["parts"]) if users else ""
        if last_user == "bad request":
            return invalid("the fake refuses 'bad request'")
        tools = [d["name"] for t in req.get("tools") or [] for d in t.get("functionDeclarations") or []]
        turn = decide(last_user, tool_result, tools)
        if gen.get("responseMimeType") == "application/json" and not turn.tool:
            schema = gen.get("responseJsonSchema") or {"type": "object", "properties": {"answer": {"type": "string"}}}
            turn = Turn(json.dumps(sample_of(schema)))
        thinking = gen.get("thinkingConfig") or {}
        thought = "Thinking about: " + (tool_result or last_user) if thinking.get("includeThoughts") else None
        sig = None
        if turn.tool and "gemini-3" in model:
            sig = "gemsig-" + hashlib.sha256((thought or last_user).encode()).hexdigest()[:24]
            with LOCK:
                GEMINI_SIGNATURES.add(sig)
        prompt = sum(count_tokens(" ".join(p.get("text", "") for p in c["parts"])) for c in contents)
        out = count_tokens(turn.text) if turn.text else 5
        usage = {"promptTokenCount": prompt, "candidatesTokenCount": out, "totalTokenCount": prompt + out}
        if thought:
            usage["thoughtsTokenCount"] = count_tokens(thought)
            usage["totalTokenCount"] += usage["thoughtsTokenCount"]
        call = None
        if turn.tool:
            call = {"functionCall": {"name": turn.tool[0], "args": turn.tool[1]}}
            if sig:
                call["thoughtSignature"] = sig
        rid = "gemresp-%d" % len(RECEIVED)
        if not stream:
            parts = ([{"text": thought, "thought": True}] if thought else []) + \
                ([{"text": turn.text}] if turn.text else []) + ([call] if call else [])
            return self.send_json(200, {"candidates": [{"content": {"role": "model", "parts": parts},
                                                        "finishReason": "STOP", "avgLogprobs": -0.1}],
                                        "usageMetadata": usage, "modelVersion": model, "responseId": rid,
                                        "createTime": "2026-12-05T06:00:00Z"})
        self.start_stream()

        def chunk(parts, last=False):
            c = {"candidates": [{"content": {"role": "model", "parts": parts}}],
                 "modelVersion": model, "responseId": rid, "createTime": "2026-12-05T06:00:00Z"}
            if last:
                c["candidates"][0]["finishReason"] = "STOP"
                c["usageMetadata"] = usage
            self.chunk("data: " + json.dumps(c) + "\r\n\r\n")
        for w in words(thought) if thought else []:
            chunk([{"text": w, "thought": True}])
        for w in words(turn.text) if turn.text else []:
            chunk([{"text": w}])
        if call:
            chunk([call])
        chunk([{"text": ""}], last=True)
        self.end_stream()

    def anthropic(self, req, vertex=False):
        if not vertex and not self.headers.get("anthropic-version"):
            return self.error(400, "anthropic-version: header is required")
        if not isinstance(req.get("max_tokens"), int):
            return self.error(400, "max_tokens: Field required")
        msgs = req.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return self.error(400, "messages: at least one message is required")
        roles = [m.get("role") for m in msgs]
        if roles[0] != "user" or any(a == b for a, b in zip(roles, roles[1:])) \
                or any(r not in ("user", "assistant") for r in roles):
            return self.error(400, "messages: roles must alternate between user and assistant, starting with user")
        last = msgs[-1]
        tool_result = None
        if isinstance(last.get("content"), list):
            results = [b for b in last["content"] if b.get("type") == "tool_result"]
            if results:
                tool_result = texts_of_content(results[-1].get("content"))
        last_user = ""
        for m in reversed(msgs):
            if m["role"] == "user":
                c = m.get("content")
                last_user = c if isinstance(c, str) else "".join(
                    b.get("text", "") for b in c if b.get("type") == "text")
                if last_user:
                    break
        if last_user == "bad request":
            return self.error(400, "the fake refuses 'bad request'")
        thinking = req.get("thinking")
        refusal = thinking_refusal(thinking, req.get("max_tokens"), req.get("model"))
        schema, bad_format = format_refusal(req.get("output_config"))
        kinds = {"thinking": "thinking", "redacted_thinking": "redacted", "tool_use": "tool"}
        turns = [(i, [(kinds.get(b.get("type"), "text"), b.get("thinking", ""), b.get("signature"))
                      for b in m["content"]])
                 for i, m in enumerate(msgs) if m["role"] == "assistant" and isinstance(m.get("content"), list)]
        refusal = refusal or bad_format or history_refusal(turns, thinks(thinking))
        if refusal:
            return self.error(400, refusal)
        tools = [t["name"] for t in req.get("tools") or []]
        turn = decide(last_user, tool_result, tools)
        if schema is not None and not turn.tool:
            turn = Turn(json.dumps(sample_of(schema)))
        thought = "Thinking about: " + (tool_result or last_user) if thinks(thinking) else None
        system = req.get("system")
        prompt = sum(count_tokens(texts_of_content(m.get("content"))) for m in msgs) + \
            (count_tokens(texts_of_content(system)) if system else 0)
        out = count_tokens(turn.text) if turn.text else 5
        mid, model = "msg_fake%d" % len(RECEIVED), req.get("model")
        content = []
        if thought:
            content.append({"type": "thinking", "thinking": thought, "signature": signature(thought)})
        if turn.text:
            content.append({"type": "text", "text": turn.text})
        if turn.tool:
            content.append({"type": "tool_use", "id": "toolu_fake1", "name": turn.tool[0], "input": turn.tool[1]})
        stop = "tool_use" if turn.tool else "end_turn"
        usage = {"input_tokens": prompt, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                 "output_tokens": out, "service_tier": "standard"}
        if not req.get("stream"):
            return self.send_json(200, {"id": mid, "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage})

        def event(name, obj):
            self.chunk("event: %s\ndata: %s\n\n" % (name, json.dumps(obj)))

        self.start_stream()
        event("message_start", {"type": "message_start", "message": {"id": mid, "type": "message",
            "role": "assistant", "model": model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": prompt, "cache_creation_input_tokens": 0,
                      "cache_read_input_tokens": 0, "output_tokens": 1}}})
        index = 0
        if thought:
            event("content_block_start", {"type": "content_block_start", "index": 0,
                                          "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            for w in words(thought):
                event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "thinking_delta", "thinking": w}})
            event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "signature_delta", "signature": signature(thought)}})
            event("content_block_stop", {"type": "content_block_stop", "index": 0})
            index = 1
        if turn.text:
            event("content_block_start", {"type": "content_block_start", "index": index,
                                          "content_block": {"type": "text", "text": ""}})
            event("ping", {"type": "ping"})
            for w in words(turn.text):
                event("content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "text_delta", "text": w}})
            event("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        if turn.tool:
            event("content_block_start", {"type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": "toolu_fake1", "name": turn.tool[0], "input": {}}})
            args = json.dumps(turn.tool[1])
            for part in (args[: len(args) // 2], args[len(args) // 2:]):
                event("content_block_delta", {"type": "content_block_delta", "index": index,
                                              "delta": {"type": "input_json_delta", "partial_json": part}})
            event("content_block_stop", {"type": "content_block_stop", "index": index})
        event("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                "usage": {"output_tokens": out}})
        event("message_stop", {"type": "message_stop"})
        self.end_stream()


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument("--flavor", choices=["openai", "anthropic", "vertex", "bedrock"], required=True)
    p.add_argument("--aws-key", default="AKIDWARDGATETEST:wardgate-test-secret")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--aws-ttl", type=int, default=3600)
    p.add_argument("--web-identity-token", default="wardgate-k8s-token")
    p.add_argument("--container-token", default="wardgate-pod-token")
    p.add_argument("--sso-token", default="sso-access-0")
    p.add_argument("--sso-client", default="wardgate-sso-client:wardgate-sso-secret")
    p.add_argument("--token-ttl", type=int, default=3599)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--key")
    p.add_argument("--fail", type=int)
    p.add_argument("--name", default="fake")
    p.add_argument("--chunk-delay-ms", type=float, default=0)
    p.add_argument("--azure-entra", action="store_true")
    p.add_argument("--azure-secret", default="wardgate-app:wardgate-app-secret")
    p.add_argument("--azure-assertion", default="wardgate-federated-token")
    p.add_argument("--azure-identity-header", default="wardgate-identity-header")
    ARGS = p.parse_args()
    if ARGS.flavor == "vertex":
        global SA_KEY
        SA_KEY = rsa_key()
    if ARGS.flavor == "bedrock":
        check_own_frames()
        key_id, secret, token = (ARGS.aws_key.split(":") + [None])[:3]
        AWS_KEYS[key_id] = (secret, token, None)
        SSO["access"].add(ARGS.sso_token)
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    server.daemon_threads = True
    print("listening on %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
