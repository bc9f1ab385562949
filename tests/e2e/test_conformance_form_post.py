"""The OpenID Foundation's Form Post OP plan (oidcc-formpost-basic-certification-
test-plan: the Basic OP plan with response_mode=form_post, response_type=code,
client_secret_basic; docs/conformance-modules.md §2), one test per module that
applies to a code-flow OP with static clients, named after it.

Each test does what its module does and asserts the module's FAIL conditions;
what the suite only WARNs about is reported as a ConformanceWarning (pytest's
warnings summary), never a failure. The suite's browser is a person's
requests.Session (test_user_flow's Browser: sign in, then answer the consent
page as it answers a form_post request, with a real form submission), and the
form_post answer is read from the auto-submitting page Latchkey serves: its
form must POST (form-encoded) to the redirect URI with nothing added to its
query (OAuth2-FP-2). oidcc-server runs in Chromium instead, so that once the
POST really reaches the application (a receiver on a loopback port).

Clients are fresh per test (the suite's static clients: client and client2);
the demo user is shared by the session, so nothing here depends on order."""
import base64
import hashlib
import json
import math
import secrets
import string
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC

from conftest import StaticPage
from test_browser import browser, sign_in, wait  # noqa: F401 (the browser fixture)
from test_form_post import receiver  # noqa: F401 (the receiver fixture)
from test_user_flow import Browser, verify_id_token

# What the suite's static clients are registered for in these tests (scope modules need all of them).
CLIENT_SCOPE = "openid profile email address phone offline_access"
# OIDC Core §5.4's claims per scope, as the scope modules list them (missing ones are a WARN).
PROFILE_CLAIMS = ["name", "family_name", "given_name", "middle_name", "nickname", "preferred_username", "profile", "picture",
                  "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"]
SCOPE_CLAIMS = {"profile": PROFILE_CLAIMS, "email": ["email", "email_verified"], "address": ["address"],
                "phone": ["phone_number", "phone_number_verified"]}
# CheckErrorFromAuthorizationEndpointIsOneThatRequiredAUserInterface.
USER_INTERFACE_ERRORS = {"login_required", "interaction_required", "account_selection_required", "consent_required"}


class ConformanceWarning(UserWarning):
    """What the suite records as WARNING: reported, not a failure."""


def warn(message):
    warnings.warn(message, ConformanceWarning, stacklevel=2)


def random_alnum(length):
    """CreateRandomStateValue / CreateRandomNonceValue: alphanumeric."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(length))


def shannon_bits(value):
    """AbstractEnsureMinimumEntropy: Shannon entropy per character times the length."""
    counts = Counter(value)
    per_char = -sum(c / len(value) * math.log2(c / len(value)) for c in counts.values())
    return per_char * len(value)


def error_text_valid(value):
    """RFC 6749 §4.1.2.1 / §5.2: error and error_description are %x20-21 / %x23-5B / %x5D-7E."""
    return all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in value)


def b64json(segment):
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def unsigned_jwt(claims):
    """SerializeRequestObjectWithNullAlgorithm: alg none, empty signature."""
    enc = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()  # noqa: E731
    return enc({"alg": "none"}) + "." + enc(claims) + "."


# --- The suite's static clients -------------------------------------------------------------------------


@dataclass
class Client:
    client_id: str
    secret: str
    redirect: str
    auth_method: str = "client_secret_basic"

    def token_request(self, data):
        """The token endpoint with this client's authentication (client_secret_basic or client_secret_post)."""
        if self.auth_method == "client_secret_post":
            return dict(data, client_id=self.client_id, client_secret=self.secret), None
        return data, (self.client_id, self.secret)


def rp_base(stack):
    """The suite's base URL for one test (…/test/a/<alias>): its redirect URI is <base>/callback."""
    return f"http://127.0.0.1:{stack.port}/conformance/{secrets.token_hex(4)}"


def make_client(stack, redirect=None, auth_method="client_secret_basic", scope=CLIENT_SCOPE, name="Conformance RP", extra=None):
    redirect = redirect or rp_base(stack) + "/callback"
    body = {"client_name": name, "redirect_uris": [redirect], "grant_types": ["authorization_code", "refresh_token"],
            "scope": scope, "token_endpoint_auth_method": auth_method, **(extra or {})}
    r = requests.post(stack.url("/api/v1/clients"), headers=stack.bearer(), json=body)
    assert r.status_code == 201, r.text
    return Client(r.json()["client_id"], r.json()["client_secret"], redirect, auth_method)


def discovery(stack):
    r = requests.get(stack.url("/.well-known/openid-configuration"))
    assert r.status_code == 200
    return r.json()


def check_server_jwks(stack):
    """Every flow module's configuration step: kids present and distinct, no private or symmetric keys."""
    keys = requests.get(stack.url("/oauth2/jwks")).json()["keys"]
    kids = [k.get("kid") for k in keys]
    assert all(kids), "CheckForKeyIdInServerJWKs"
    assert len(set(kids)) == len(kids), "CheckDistinctKeyIdValueInServerJWKs"
    private = {"d", "p", "q", "dp", "dq", "qi", "k"}
    assert not [k for k in keys if private & set(k) or k.get("kty") == "oct"], "EnsureServerJwksDoesNotContainPrivateOrSymmetricKeys"


# --- The browser's side: the authorization endpoint, sign-in, consent, the form_post page --------------------


class _Forms(HTMLParser):
    """The forms of a page, with their inputs (attribute values unescaped)."""

    def __init__(self):
        super().__init__()
        self.forms = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"method": (a.get("method") or "get").lower(), "action": a.get("action"), "enctype": a.get("enctype"),
                               "inputs": []})
        elif tag == "input" and self.forms:
            self.forms[-1]["inputs"].append((a.get("type"), a.get("name"), a.get("value") or ""))


def forms_of(html):
    parser = _Forms()
    parser.feed(html)
    return parser.forms


@dataclass
class Answer:
    """What the browser ends up with: a form_post page, a redirect elsewhere, or a page (an error)."""
    kind: str
    response: requests.Response
    steps: list = field(default_factory=list)  # "login", "consent": what the OP asked of the user
    location: str | None = None
    form: dict | None = None
    seconds: float = 0.0

    @property
    def fields(self):
        return {name: value for kind, name, value in self.form["inputs"] if kind == "hidden" and name}


def authorize(stack, person, params, post=False):
    """Sends the browser to the authorization endpoint (GET, or POST as oidcc-ensure-post-request-succeeds does), signs
    in and approves where Latchkey asks (the consent page answers a form_post request with a real form submission), and
    returns what the browser is left with."""
    started = time.monotonic()
    endpoint, http, steps = stack.url("/oauth2/authorize"), person.http, []
    if post:
        r = http.post(endpoint, data=params, allow_redirects=False)
    else:
        r = http.get(endpoint, params=params, allow_redirects=False)
    for _ in range(4):
        if r.status_code not in (302, 303):
            break
        location = r.headers["Location"]
        if post and location.startswith("/oauth2/authorize?"):
            # A POST without Latchkey's cookies (as another site's form sends it) goes again as a GET, which a browser
            # sends them with.
            steps.append("as a GET")
            r = http.get(stack.url(location), allow_redirects=False)
        elif location.startswith("/login/"):
            steps.append("login")
            request_id = parse_qs(urlparse(location).query)["request"][0]
            person.login()
            r = http.get(stack.url("/oauth2/authorize/continue"), params={"request": request_id}, allow_redirects=False)
        elif location.startswith("/consent/"):
            steps.append("consent")
            request_id = parse_qs(urlparse(location).query)["request"][0]
            details = http.get(stack.url(f"/api/v1/authorization-requests/{request_id}")).json()
            form = [("scope", s["name"]) for s in details["scopes"]] + [("remember", "true"), ("csrf_token", http.cookies.get(stack.cookie("lk_csrf")))]
            r = http.post(stack.url(f"/api/v1/authorization-requests/{request_id}/accept"), data=form, allow_redirects=False)
        else:
            return Answer("redirect", r, steps, location=location, seconds=time.monotonic() - started)
    if r.status_code == 200 and r.headers.get("Content-Type", "").startswith("text/html"):
        forms = forms_of(r.text)
        if forms:
            return Answer("form_post", r, steps, form=forms[0], seconds=time.monotonic() - started)
    return Answer("page", r, steps, seconds=time.monotonic() - started)


def callback(answer, redirect):
    """processCallback with formPost: the response reaches the redirect URI as a POST, form-encoded, with no code or
    error in the URL query (OAuth2-FP-2, OIDCC-3.3.2.5, OAuth2-RT-5). Returns the POSTed fields."""
    assert answer.kind == "form_post", (f"OAuth2-FP-2: expected the form_post page, got a {answer.kind} "
                                        f"({answer.response.status_code} {answer.location or answer.response.text[:300]})")
    form = answer.form
    assert form["method"] == "post", "CheckCallbackHttpMethodIsPost"
    assert form["enctype"] in (None, "application/x-www-form-urlencoded"), "CheckCallbackContentTypeIsFormUrlEncoded"
    assert form["action"] == redirect, "the form goes to the redirect URI, unchanged"
    query = parse_qs(urlparse(form["action"]).query)
    assert "code" not in query and "error" not in query, "RejectAuthCodeInUrlQuery / RejectErrorInUrlQuery"
    return answer.fields


def check_iss(stack, fields):
    if "iss" in fields:  # ValidateIssIfPresentInAuthorizationResponse
        assert fields["iss"] == stack.base


def code_from(stack, fields, state):
    """onAuthorizationCallbackResponse: no error, state back, iss if present, a code of enough entropy."""
    check_iss(stack, fields)
    assert "error" not in fields, f"CheckIfAuthorizationEndpointError: {fields}"
    assert fields.get("state") == state, "CheckStateInAuthorizationResponse"
    code = fields.get("code")
    assert code, "ExtractAuthorizationCodeFromAuthorizationResponse"
    assert shannon_bits(code) > 96, "EnsureMinimumAuthorizationCodeEntropy"
    return code


def check_error(stack, fields, state, allowed=None):
    """performGenericAuthorizationEndpointErrorResponseValidation, plus the module's expected error codes."""
    check_iss(stack, fields)
    assert fields.get("state") == state, "CheckStateInAuthorizationResponse"
    assert fields.get("error"), "EnsureErrorFromAuthorizationEndpointResponse"
    assert "code" not in fields, "RejectAuthCodeInAuthorizationEndpointResponse"
    assert error_text_valid(fields["error"]) and error_text_valid(fields.get("error_description", "")), \
        "ValidateErrorDescriptionFromAuthorizationEndpointResponseError"
    if "error_uri" in fields:
        assert urlparse(fields["error_uri"]).scheme in ("http", "https"), "ValidateErrorUriFromAuthorizationEndpointResponseError"
    if set(fields) - {"error", "error_description", "error_uri", "state", "iss"}:
        warn(f"CheckForUnexpectedParametersInErrorResponseFromAuthorizationEndpoint: {sorted(fields)}")
    if allowed is not None:
        assert fields["error"] in allowed, f"error {fields['error']!r} is not one of {sorted(allowed)}"
    return fields["error"]


# --- The back channel: token endpoint, ID token, userinfo -----------------------------------------------------


def token_request(stack, client, data):
    data, auth = client.token_request(data)
    return requests.post(stack.url("/oauth2/token"), data=data, auth=auth)


def redeem(stack, client, code, verifier=None):
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect}
    if verifier:
        data["code_verifier"] = verifier
    return token_request(stack, client, data)


def check_token_response(r):
    """requestAuthorizationCode: a token response with an access token and an ID token; expires_in valid if present."""
    assert r.status_code == 200, f"CheckIfTokenEndpointResponseError: {r.status_code} {r.text}"
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    body = r.json()
    assert body.get("access_token"), "CheckForAccessTokenValue"
    assert body.get("id_token"), "ExtractIdTokenFromTokenResponse"
    if "expires_in" in body:
        assert isinstance(body["expires_in"], int) and body["expires_in"] > 0, "ValidateExpiresIn"
    return body


def check_id_token(stack, client, tokens, nonce):
    """PerformStandardIdTokenChecks: signature by a JWKS key named by kid, iss/aud/exp/iat/sub, the nonce, claim types."""
    id_token = tokens["id_token"]
    header = b64json(id_token.split(".")[0])
    jwks = requests.get(stack.url("/oauth2/jwks")).json()
    assert header.get("kid") in {k["kid"] for k in jwks["keys"]}, "ValidateIdTokenSignatureUsingKid"
    claims = verify_id_token(stack, id_token, client.client_id, nonce, tokens["access_token"])
    now = time.time()
    assert isinstance(claims["iat"], int) and claims["iat"] <= now + 300, "ValidateIdToken: iat"
    assert isinstance(claims["exp"], int) and claims["exp"] > now, "ValidateIdToken: exp"
    if isinstance(claims["aud"], list) and len(claims["aud"]) > 1:
        assert claims.get("azp") == client.client_id, "ValidateIdToken: azp"
    assert isinstance(claims["sub"], str) and claims["sub"], "CheckForSubjectInIdToken"
    for name in ("auth_time", "updated_at"):
        if name in claims:
            assert isinstance(claims[name], int), f"{name} must be a number"
    for name in ("email_verified", "phone_number_verified"):
        if name in claims:
            assert isinstance(claims[name], bool), f"{name} must be a boolean"
    return claims


def call_userinfo(stack, access_token, how="get"):
    url = stack.url("/oauth2/userinfo")
    if how == "get":
        return requests.get(url, headers={"Authorization": f"Bearer {access_token}"})
    if how == "post-header":
        return requests.post(url, headers={"Authorization": f"Bearer {access_token}"})
    return requests.post(url, data={"access_token": access_token})


def check_userinfo(r, sub):
    """ExtractUserInfoFromUserInfoEndpointResponse, EnsureUserInfoContainsSub, the ID token's sub, a valid updated_at."""
    assert r.status_code == 200, f"EnsureHttpStatusCodeIs200: {r.status_code} {r.text}"
    assert r.headers["Content-Type"].split(";")[0] == "application/json"
    info = r.json()
    assert info.get("sub") == sub, "the userinfo sub is the ID token's"
    if "updated_at" in info:
        assert isinstance(info["updated_at"], int), "updated_at must be a number"
    return info


@dataclass
class Flow:
    answer: Answer
    fields: dict
    code: str
    tokens: dict
    claims: dict
    state: str
    nonce: str


def auth_params(client, scope="openid", state=None, nonce=None, extra=()):
    """CreateAuthorizationRequestSteps(formPost): the authorization request's parameters, in the suite's order."""
    params = [("client_id", client.client_id), ("redirect_uri", client.redirect), ("scope", scope), ("state", state),
              ("nonce", nonce), ("response_type", "code"), ("response_mode", "form_post")]
    return [(k, v) for k, v in params if v is not None] + list(extra)


def run_flow(stack, person, client, scope="openid", extra=(), post=False, params=None, state=None, nonce=None,
             userinfo=True):
    """A module's flow: authorization request (form_post), callback checks, token request, ID token checks, userinfo."""
    check_server_jwks(stack)
    state, nonce = state or random_alnum(32), nonce or random_alnum(16)
    answer = authorize(stack, person, params or auth_params(client, scope, state, nonce, extra), post=post)
    fields = callback(answer, client.redirect)
    code = code_from(stack, fields, state)
    tokens = check_token_response(redeem(stack, client, code))
    claims = check_id_token(stack, client, tokens, nonce)
    if userinfo:
        check_userinfo(call_userinfo(stack, tokens["access_token"]), claims["sub"])
    return Flow(answer, fields, code, tokens, claims, state, nonce)


# --- The modules, in the plan's order ---------------------------------------------------------------------


def test_oidcc_server(stack, browser, receiver):
    """oidcc-server: "Tests primarily 'happy' flows". In Chromium: the form_post page really POSTs the code to the
    application. Code length and entropy are FAILs; no expires_in, `name` or unrequested claims in the ID token WARN."""
    check_server_jwks(stack)
    client = make_client(stack, redirect=receiver.redirect)
    state, nonce = random_alnum(32), random_alnum(16)
    browser.get(stack.url("/oauth2/authorize?") + urlencode(auth_params(client, "openid", state, nonce)))
    sign_in(browser, stack)
    wait(browser, EC.url_contains("/consent/"))
    wait(browser, EC.element_to_be_clickable((By.ID, "approve"))).send_keys(Keys.ENTER)
    wait(browser, lambda d: d.find_elements(By.ID, "received"))
    assert not [r for r in receiver.received if r[0] == "GET" and r[1].startswith("/cb")], "the response went in a URL"
    posts = receiver.posts()
    assert len(posts) == 1
    method, path, content_type, form = posts[0]
    assert method == "POST", "CheckCallbackHttpMethodIsPost"
    assert content_type.split(";")[0] == "application/x-www-form-urlencoded", "CheckCallbackContentTypeIsFormUrlEncoded"
    assert path == "/cb", "RejectAuthCodeInUrlQuery / RejectErrorInUrlQuery: nothing in the URL query"
    fields = {k: v[0] for k, v in form.items()}
    code = code_from(stack, fields, state)
    assert len(code) >= 22
    r = redeem(stack, client, code)
    tokens = check_token_response(r)
    if "expires_in" not in tokens:
        warn("no expires_in in the token response")
    claims = check_id_token(stack, client, tokens, nonce)
    if "name" in claims:
        warn("name in the ID token for scope=openid")
    check_userinfo(call_userinfo(stack, tokens["access_token"]), claims["sub"])


def test_oidcc_response_type_missing(stack):
    """oidcc-response-type-missing: "…must either redirect back with an 'unsupported_response_type' or
    'invalid_request' error, or must display an error saying the response type is missing". An error response must
    carry state and no code, and (form_post) arrive as a POST."""
    client = make_client(stack)
    person = Browser(stack)
    person.login()
    state = random_alnum(32)
    params = [p for p in auth_params(client, state=state, nonce=random_alnum(16)) if p[0] != "response_type"]
    answer = authorize(stack, person, params)
    if answer.kind == "page":
        assert answer.response.status_code >= 400 and "Location" not in answer.response.headers
        return
    check_error(stack, callback(answer, client.redirect), state, {"unsupported_response_type", "invalid_request"})


def test_oidcc_userinfo_get(stack):
    """oidcc-userinfo-get: "…authenticated GET request to the UserInfo endpoint and validates the response". 200, JSON,
    sub equal to the ID token's."""
    client = make_client(stack)
    flow = run_flow(stack, Browser(stack), client, userinfo=False)
    check_userinfo(call_userinfo(stack, flow.tokens["access_token"], "get"), flow.claims["sub"])


def test_oidcc_userinfo_post_header(stack):
    """oidcc-userinfo-post-header: the UserInfo request is a POST with the access token in the Authorization header."""
    client = make_client(stack)
    flow = run_flow(stack, Browser(stack), client, userinfo=False)
    check_userinfo(call_userinfo(stack, flow.tokens["access_token"], "post-header"), flow.claims["sub"])


def test_oidcc_userinfo_post_body(stack):
    """oidcc-userinfo-post-body: the access token in a form-encoded POST body. An HTTP error is only a WARN; a
    successful answer must carry the ID token's sub."""
    client = make_client(stack)
    flow = run_flow(stack, Browser(stack), client, userinfo=False)
    r = call_userinfo(stack, flow.tokens["access_token"], "post-body")
    if r.status_code != 200:
        warn(f"userinfo refused the access token in the body: {r.status_code} {r.text}")
        return
    check_userinfo(r, flow.claims["sub"])


def test_oidcc_ensure_request_without_nonce_succeeds_for_code_flow(stack):
    """oidcc-ensure-request-without-nonce-succeeds-for-code-flow: "This test should end with the authorization server
    issuing an authorization code, even though a nonce was not supplied." (No token request.)"""
    client = make_client(stack)
    state = random_alnum(32)
    answer = authorize(stack, Browser(stack), auth_params(client, state=state))
    code_from(stack, callback(answer, client.redirect), state)


def scope_module(stack, scope, claims):
    """oidcc-scope-*: skipped when scopes_supported lacks the scope; a happy flow; missing standard claims WARN."""
    supported = discovery(stack).get("scopes_supported")
    missing = [s for s in scope.split() if supported is not None and s not in supported]
    if missing:
        pytest.skip(f"scopes_supported lacks {missing}: the module skips itself")
    client = make_client(stack)
    flow = run_flow(stack, Browser(stack), client, scope=scope, userinfo=False)
    info = check_userinfo(call_userinfo(stack, flow.tokens["access_token"]), flow.claims["sub"])
    absent = [c for c in claims if c not in info]
    if absent:
        warn(f"scope {scope!r}: userinfo lacks {absent}")
    return info


def test_oidcc_scope_profile(stack):
    """oidcc-scope-profile: scope=openid profile; the 14 profile claims are expected at UserInfo (missing: WARN)."""
    scope_module(stack, "openid profile", SCOPE_CLAIMS["profile"])


def test_oidcc_scope_email(stack):
    """oidcc-scope-email: scope=openid email; email and email_verified expected (missing: WARN)."""
    scope_module(stack, "openid email", SCOPE_CLAIMS["email"])


def test_oidcc_scope_address(stack):
    """oidcc-scope-address: scope=openid address; address expected (missing: WARN)."""
    scope_module(stack, "openid address", SCOPE_CLAIMS["address"])


def test_oidcc_scope_phone(stack):
    """oidcc-scope-phone: scope=openid phone; phone_number and phone_number_verified expected (missing: WARN)."""
    scope_module(stack, "openid phone", SCOPE_CLAIMS["phone"])


def test_oidcc_scope_all(stack):
    """oidcc-scope-all: scope=openid profile email address phone; every standard claim expected (missing: WARN)."""
    scope_module(stack, "openid profile email address phone", [c for claims in SCOPE_CLAIMS.values() for c in claims])


def test_oidcc_alternate_happy_flow(stack):
    """oidcc-alternate-happy-flow: "…happy flow but with the order of the entries in the 'scope' reversed and
    authorization endpoint query parameters in a different order…", with the email scope's checks."""
    client = make_client(stack)
    state, nonce = random_alnum(32), random_alnum(16)
    params = list(reversed(auth_params(client, "email openid", state, nonce)))
    flow = run_flow(stack, Browser(stack), client, params=params, state=state, nonce=nonce, userinfo=False)
    info = check_userinfo(call_userinfo(stack, flow.tokens["access_token"]), flow.claims["sub"])
    if [c for c in SCOPE_CLAIMS["email"] if c not in info]:
        warn(f"scope email: userinfo lacks claims: {sorted(info)}")


def test_oidcc_display_page(stack):
    """oidcc-display-page: display=page "must not cause an error at the OP"; the login must succeed."""
    run_flow(stack, Browser(stack), make_client(stack), extra=[("display", "page")])


def test_oidcc_display_popup(stack):
    """oidcc-display-popup: display=popup "must not cause an error at the OP"; the login must succeed."""
    run_flow(stack, Browser(stack), make_client(stack), extra=[("display", "popup")])


def test_oidcc_prompt_login(stack):
    """oidcc-prompt-login: "The second time it will include prompt=login, so that the authorization server is required
    to ask the user to login a second time." The second auth_time, if present, must differ from the first."""
    client, person = make_client(stack), Browser(stack)
    first = run_flow(stack, person, client)
    time.sleep(1.1)  # the person takes a moment before signing in again; auth_time counts whole seconds
    second = run_flow(stack, person, client, extra=[("prompt", "login")])
    assert second.answer.steps == ["login"], f"ExpectSecondLoginPage: the OP asked for {second.answer.steps}"
    if "auth_time" in first.claims and "auth_time" in second.claims:
        assert second.claims["auth_time"] != first.claims["auth_time"], "CheckIdTokenAuthTimeClaimsDifferIfPresent"


def test_oidcc_prompt_none_not_logged_in(stack):
    """oidcc-prompt-none-not-logged-in: prompt=none with no session; "the OP will redirect back with an error", one of
    login_required, interaction_required, account_selection_required, consent_required; the 128-character state
    comes back intact."""
    client = make_client(stack)
    state = random_alnum(128)
    answer = authorize(stack, Browser(stack), auth_params(client, state=state, nonce=random_alnum(16), extra=[("prompt", "none")]))
    assert answer.steps == [], "prompt=none must not show the login page"
    check_error(stack, callback(answer, client.redirect), state, USER_INTERFACE_ERRORS)


def same_auth_twice(first, second):
    """AbstractOIDCCSameAuthTwiceServerTest: auth_time (if present) and sub the same in both ID tokens."""
    assert second.claims["sub"] == first.claims["sub"], "CheckIdTokenSubConsistentForSecondAuthorization"
    if "auth_time" in first.claims and "auth_time" in second.claims:
        assert second.claims["auth_time"] == first.claims["auth_time"], "CheckIdTokenAuthTimeClaimsSameIfPresent"


def test_oidcc_prompt_none_logged_in(stack):
    """oidcc-prompt-none-logged-in: the second request uses prompt=none and "must not request that the user logs in";
    auth_time (if present) and sub the same in both ID tokens."""
    client, person = make_client(stack), Browser(stack)
    first = run_flow(stack, person, client)
    second = run_flow(stack, person, client, extra=[("prompt", "none")])
    assert second.answer.steps == []
    same_auth_twice(first, second)


def test_oidcc_max_age_1(stack):
    """oidcc-max-age-1: "The second time it waits 1 second and includes max_age=1, so that the authorization server is
    required to ask the user to login a second time and must return an auth_time claim in the second id_token", later
    than the first and recent."""
    client, person = make_client(stack), Browser(stack)
    first = run_flow(stack, person, client)
    time.sleep(2)  # WaitFor2Seconds
    second = run_flow(stack, person, client, extra=[("max_age", "1")])
    assert second.answer.steps == ["login"], f"ExpectSecondLoginPage: the OP asked for {second.answer.steps}"
    assert "auth_time" in second.claims, "CheckIdTokenAuthTimeClaimPresentDueToMaxAge"
    if "auth_time" in first.claims:
        assert second.claims["auth_time"] > first.claims["auth_time"], "CheckSecondIdTokenAuthTimeIsLaterIfPresent"
    assert second.claims["auth_time"] >= time.time() - 301, "CheckIdTokenAuthTimeIsRecentIfPresent"


def test_oidcc_max_age_10000(stack):
    """oidcc-max-age-10000: first request max_age=15000, second max_age=10000 without a new login; auth_time present
    in both and equal; sub equal."""
    client, person = make_client(stack), Browser(stack)
    first = run_flow(stack, person, client, extra=[("max_age", "15000")])
    second = run_flow(stack, person, client, extra=[("max_age", "10000")])
    assert second.answer.steps == []
    assert "auth_time" in first.claims and "auth_time" in second.claims, "CheckIdTokenAuthTimeClaimPresentDueToMaxAge"
    same_auth_twice(first, second)


def test_oidcc_ensure_request_with_unknown_parameter_succeeds(stack):
    """oidcc-ensure-request-with-unknown-parameter-succeeds: extra=foobar must be ignored; the flow must succeed."""
    run_flow(stack, Browser(stack), make_client(stack), extra=[("extra", "foobar")])


def test_oidcc_id_token_hint(stack):
    """oidcc-id-token-hint: the second request has prompt=none and id_token_hint = the first ID token; it "must return
    successfully immediately without interacting with the user"; sub and auth_time the same."""
    client, person = make_client(stack), Browser(stack)
    first = run_flow(stack, person, client)
    second = run_flow(stack, person, client, extra=[("prompt", "none"), ("id_token_hint", first.tokens["id_token"])])
    assert second.answer.steps == []
    same_auth_twice(first, second)


def test_oidcc_login_hint(stack):
    """oidcc-login-hint: login_hint=buffy@<issuer host> "must at a minimum not result in errors"."""
    run_flow(stack, Browser(stack), make_client(stack), extra=[("login_hint", f"buffy@{urlparse(stack.base).hostname}")])


def test_oidcc_ui_locales(stack):
    """oidcc-ui-locales: ui_locales=se "must not cause an error"."""
    run_flow(stack, Browser(stack), make_client(stack), extra=[("ui_locales", "se")])


def test_oidcc_claims_locales(stack):
    """oidcc-claims-locales: claims_locales=se "must at a minimum not result in errors"."""
    run_flow(stack, Browser(stack), make_client(stack), extra=[("claims_locales", "se")])


def test_oidcc_ensure_request_with_acr_values_succeeds(stack):
    """oidcc-ensure-request-with-acr-values-succeeds: acr_values from discovery (or "1 2"); the flow must succeed. An
    acr missing from the ID token, or not one of those asked for, is only a WARN."""
    values = discovery(stack).get("acr_values_supported") or ["1", "2"]
    flow = run_flow(stack, Browser(stack), make_client(stack), extra=[("acr_values", " ".join(values))])
    if flow.claims.get("acr") not in values:
        warn(f"acr {flow.claims.get('acr')!r} is not one of the acr_values asked for ({values})")


def check_code_reuse_refused(r):
    """AbstractOIDCCAuthCodeReuse.checkResponse."""
    assert r.status_code == 400, f"CheckTokenEndpointHttpStatus400: {r.status_code} {r.text}"
    assert r.headers["Content-Type"].split(";")[0] == "application/json", "CheckTokenEndpointReturnedJsonContentType"
    body = r.json()
    assert body.get("error") == "invalid_grant", "CheckErrorFromTokenEndpointResponseErrorInvalidGrant"
    assert error_text_valid(body["error"]) and error_text_valid(body.get("error_description", "")), \
        "ValidateErrorDescriptionFromTokenEndpointResponseError"
    if "\r" in body.get("error_description", "") or "\n" in body.get("error_description", "") or "\t" in body.get("error_description", ""):
        warn("error_description contains CR, LF or TAB")


def test_oidcc_codereuse(stack):
    """oidcc-codereuse: the code redeemed again at once. A 200 is a WARN; a rejection must be 400, JSON, invalid_grant."""
    client = make_client(stack)
    flow = run_flow(stack, Browser(stack), client)
    r = redeem(stack, client, flow.code)
    if r.status_code == 200:
        warn("the authorization code was accepted a second time")
        return
    check_code_reuse_refused(r)


def test_oidcc_codereuse_30seconds(stack):
    """oidcc-codereuse-30seconds: "This test tries using an authorization code for a second time, 30 seconds after the
    first use. The server must return an invalid_grant error…" (400, JSON). An access token that still works is a WARN.
    About 31 s per store."""
    client = make_client(stack)
    flow = run_flow(stack, Browser(stack), client)
    time.sleep(30)  # WaitFor30Seconds
    check_code_reuse_refused(redeem(stack, client, flow.code))
    if call_userinfo(stack, flow.tokens["access_token"]).status_code == 200:
        warn("the access token issued for the reused code still works (RFC 6749 §4.1.2: it should be revoked)")


def test_oidcc_ensure_registered_redirect_uri(stack):
    """oidcc-ensure-registered-redirect-uri: an unregistered, randomly appended redirect_uri; "The authorization server
    should display an error saying the redirect uri is invalid". Any callback, to either URI, is a FAIL."""
    client = make_client(stack)
    bad = client.redirect.rsplit("/", 1)[0] + "/" + random_alnum(10)  # CreateBadRedirectUri: <base>/<random>
    person = Browser(stack)
    person.login()
    params = [(k, bad if k == "redirect_uri" else v) for k, v in auth_params(client, state=random_alnum(32), nonce=random_alnum(16))]
    answer = authorize(stack, person, params)
    assert answer.kind == "page", f"a callback ({answer.kind}) for an unregistered redirect_uri: {answer.location or answer.form}"
    assert answer.response.status_code == 400 and "Location" not in answer.response.headers
    assert answer.response.headers["Content-Type"].startswith("text/html"), "an error page the user sees"


def test_oidcc_ensure_post_request_succeeds(stack):
    """oidcc-ensure-post-request-succeeds: the authorization request is an HTTP POST; the flow must succeed (the
    response arriving after more than 30 s is a WARN)."""
    flow = run_flow(stack, Browser(stack), make_client(stack), post=True)
    if flow.answer.seconds > 30:
        warn(f"the authorization response took {flow.answer.seconds:.0f} s")


def test_oidcc_server_client_secret_post(stack):
    """oidcc-server-client-secret-post: a happy flow, the client authenticating with client_secret_post."""
    assert "client_secret_post" in discovery(stack)["token_endpoint_auth_methods_supported"], "EnsureServerConfigurationSupportsClientSecretPost"
    run_flow(stack, Browser(stack), make_client(stack, auth_method="client_secret_post"))


def register_dynamic_client(stack):
    """The dynamic_client variant: OIDC Registration with an initial access token."""
    redirect = rp_base(stack) + "/callback"
    r = requests.post(stack.url("/oauth2/register"), headers=stack.bearer(), json={
        "client_name": "Conformance dynamic RP", "redirect_uris": [redirect], "grant_types": ["authorization_code"],
        "response_types": ["code"], "token_endpoint_auth_method": "client_secret_basic", "scope": "openid"})
    assert r.status_code == 201, r.text
    return Client(r.json()["client_id"], r.json()["client_secret"], redirect)


def request_object_host(body):
    """Where the suite serves the request object for request_uri: GET answers it as application/oauth-authz-req+jwt."""
    host = StaticPage(body, "application/oauth-authz-req+jwt")
    host.uri = f"http://127.0.0.1:{host.port}/requests/{random_alnum(10)}"
    return host


def request_object_claims(stack, client, state, nonce):
    """ConvertAuthorizationEndpointRequestToRequestObject (+ AddIss/AddAud): the request's parameters as JWT claims."""
    return {**dict(auth_params(client, "openid", state, nonce)), "iss": client.client_id, "aud": stack.base}


def outer_parameters(client, name, value, redirect=None):
    """AbstractBuildRequestObjectRedirectToAuthorizationEndpoint with duplicates: request or request_uri, plus
    response_type, client_id, scope and redirect_uri (state, nonce and response_mode only in the object)."""
    return [(name, value), ("response_type", "code"), ("client_id", client.client_id), ("scope", "openid"),
            ("redirect_uri", redirect or client.redirect)]


def request_object_answer(stack, client, answer, state, nonce, unsupported_error):
    """What the request-object modules check: processCallback's OAuth2-FP-2 checks (the response_mode is in the
    object), then either the flow completes with the object's state and nonce, or the OP's `unsupported_error`
    makes the module skip itself."""
    fields = callback(answer, client.redirect)
    if fields.get("error") == unsupported_error:
        check_iss(stack, fields)
        assert "code" not in fields
        pytest.skip(f"the OP answered {unsupported_error}, which the module records as SKIPPED")
    code = code_from(stack, fields, state)
    check_id_token(stack, client, check_token_response(redeem(stack, client, code)), nonce)


FORM_POST_ERROR_IN_QUERY = (
    "Latchkey does not fetch request_uri documents (no request objects; a request_uri is only one PAR issued), so it "
    "cannot know the response_mode the referenced object names and answers request_uri_not_supported in the default mode: a 303 with "
    "the error in the redirect URI's query. The suite's form_post callback checks (CheckCallbackHttpMethodIsPost, "
    "RejectErrorInUrlQuery) FAIL the module before the error would make it skip. (A request object by value is read, "
    "unverified, for its response_mode and state, and refused in that mode: its module skips.)")


@pytest.mark.xfail(strict=True, reason=FORM_POST_ERROR_IN_QUERY)
def test_oidcc_request_uri_unsigned_supported_correctly_or_rejected_as_unsupported(stack):
    """oidcc-request-uri-unsigned-supported-correctly-or-rejected-as-unsupported: a request_uri pointing at an unsigned
    JWT; the OP "must successfully complete the authorization, or return a request_uri_not_supported error" (which
    makes the module skipped). Not offered for static clients: run with the dynamic_client variant. It skips itself
    when discovery lists request_object_signing_alg_values_supported without 'none'."""
    algs = discovery(stack).get("request_object_signing_alg_values_supported")
    if isinstance(algs, list) and "none" not in algs:
        pytest.skip("'none' is not in request_object_signing_alg_values_supported: the module skips itself")
    client = register_dynamic_client(stack)
    state, nonce = random_alnum(32), random_alnum(16)
    host = request_object_host(unsigned_jwt(request_object_claims(stack, client, state, nonce)))
    try:
        person = Browser(stack)
        answer = authorize(stack, person, outer_parameters(client, "request_uri", host.uri))
        request_object_answer(stack, client, answer, state, nonce, "request_uri_not_supported")
    finally:
        host.stop()


def test_oidcc_unsigned_request_object_supported_correctly_or_rejected_as_unsupported(stack):
    """oidcc-unsigned-request-object-supported-correctly-or-rejected-as-unsupported: an unsigned request object by
    value; the OP must "accept the request and process the authentication correctly, or return a request_not_supported
    error" (which makes the module skipped). It skips itself when discovery lists
    request_object_signing_alg_values_supported without 'none'."""
    algs = discovery(stack).get("request_object_signing_alg_values_supported")
    if isinstance(algs, list) and "none" not in algs:
        pytest.skip("'none' is not in request_object_signing_alg_values_supported: the module skips itself")
    client = make_client(stack)
    state, nonce = random_alnum(32), random_alnum(16)
    request = unsigned_jwt(request_object_claims(stack, client, state, nonce))
    answer = authorize(stack, Browser(stack), outer_parameters(client, "request", request))
    request_object_answer(stack, client, answer, state, nonce, "request_not_supported")


def test_oidcc_claims_essential(stack):
    """oidcc-claims-essential: claims={"userinfo":{"name":{"essential":true}}}; "the OP must return a successful
    result". A missing name at UserInfo is a WARN, and so is name in the ID token."""
    client = make_client(stack)
    claims_param = json.dumps({"userinfo": {"name": {"essential": True}}})
    flow = run_flow(stack, Browser(stack), client, extra=[("claims", claims_param)], userinfo=False)
    info = check_userinfo(call_userinfo(stack, flow.tokens["access_token"]), flow.claims["sub"])
    if "name" not in info:
        warn("name, asked for as essential, is not in the userinfo response")
    if "name" in flow.claims:
        warn("name, asked for the userinfo response only, is in the ID token")


def test_oidcc_ensure_request_object_with_redirect_uri(stack):
    """oidcc-ensure-request-object-with-redirect-uri: a valid redirect_uri in the (unsigned) request object and
    <redirect_uri>_invalid as the plain parameter. "The server must either use the redirect_uri in the request object
    … and process the authentication correctly, or show an invalid redirect_uri error". Redirecting to the registered
    URI with request_not_supported is a FAIL. Skipped by the module when discovery lists
    request_object_signing_alg_values_supported without 'none'."""
    algs = discovery(stack).get("request_object_signing_alg_values_supported")
    if isinstance(algs, list) and "none" not in algs:
        pytest.skip("'none' is not in request_object_signing_alg_values_supported: the module skips itself")
    client = make_client(stack)
    state, nonce = random_alnum(32), random_alnum(16)
    request = unsigned_jwt(request_object_claims(stack, client, state, nonce))
    person = Browser(stack)
    person.login()
    answer = authorize(stack, person, outer_parameters(client, "request", request, redirect=client.redirect + "_invalid"))
    if answer.kind == "page":
        assert answer.response.status_code == 400 and "Location" not in answer.response.headers
        return
    fields = callback(answer, client.redirect)
    assert fields.get("error") != "request_not_supported", "EnsureOPDoesNotUseDefaultRedirectUriInCaseOfInvalidRedirectUri"
    code = code_from(stack, fields, state)
    check_id_token(stack, client, check_token_response(redeem(stack, client, code)), nonce)


def refresh_client_flow(stack, client):
    """OIDCCRefreshToken for one client: scope with offline_access and prompt=consent, a token response with a refresh
    token, then RefreshTokenRequestSteps (with the scope). Returns the refresh token the client holds afterwards."""
    scope = "openid offline_access"
    flow = run_flow(stack, Browser(stack), client, scope=scope, extra=[("prompt", "consent")])
    refresh_token = flow.tokens.get("refresh_token")
    if not refresh_token:
        pytest.skip("no refresh token was issued: the module skips itself")
    if "refresh_token" not in discovery(stack).get("grant_types_supported", ["refresh_token"]):
        warn("EnsureServerConfigurationSupportsRefreshToken: grant_types_supported lacks refresh_token")
    assert all(0x20 <= ord(c) <= 0x7E for c in refresh_token), "EnsureRefreshTokenContainsAllowedCharactersOnly"
    time.sleep(1)  # WaitForOneSecond: iat values differ
    r = token_request(stack, client, {"grant_type": "refresh_token", "refresh_token": refresh_token, "scope": scope})
    assert r.status_code == 200, f"CheckTokenEndpointHttpStatus200: {r.status_code} {r.text}"
    assert r.headers["Content-Type"].split(";")[0] == "application/json", "CheckTokenEndpointReturnedJsonContentType"
    assert "no-store" in r.headers.get("Cache-Control", ""), "CheckTokenEndpointCacheHeaders"
    body = r.json()
    assert body.get("access_token"), "ExtractAccessTokenFromTokenResponse"
    assert body.get("token_type", "").lower() == "bearer", "CheckTokenTypeIsBearer"
    assert shannon_bits(body["access_token"]) > 96, "EnsureMinimumAccessTokenEntropy"
    assert all(0x20 <= ord(c) <= 0x7E for c in body["access_token"]), "EnsureAccessTokenContainsAllowedCharactersOnly"
    if "expires_in" in body:
        assert isinstance(body["expires_in"], int) and body["expires_in"] > 0, "ValidateExpiresIn"
    else:
        warn("no expires_in in the refresh response")
    if body.get("refresh_token"):
        assert len(body["refresh_token"].encode()) * 8 >= 128, "EnsureMinimumRefreshTokenLength"
        assert shannon_bits(body["refresh_token"]) > 96, "EnsureMinimumRefreshTokenEntropy"
        refresh_token = body["refresh_token"]
    if body.get("id_token"):  # CompareIdTokenClaims (OIDC Core §12.2)
        second = jwt.decode(body["id_token"], KeySet.import_key_set(requests.get(stack.url("/oauth2/jwks")).json())).claims
        for name in ("iss", "sub", "aud", "auth_time", "azp"):
            assert second.get(name) == flow.claims.get(name), f"CompareIdTokenClaims: {name}"
    check_userinfo(call_userinfo(stack, body["access_token"]), flow.claims["sub"])
    return refresh_token


def test_oidcc_refresh_token(stack):
    """oidcc-refresh-token: "…checking that the refresh token works and is correctly bound to the client…". Both
    clients get and use a refresh token; client 2's refresh token presented by client 1 must get 400 invalid_grant."""
    client1, client2 = make_client(stack), make_client(stack, name="Conformance RP 2")
    refresh_client_flow(stack, client1)
    second_clients_token = refresh_client_flow(stack, client2)
    r = token_request(stack, client1, {"grant_type": "refresh_token", "refresh_token": second_clients_token, "scope": "openid offline_access"})
    assert r.status_code == 400, f"CheckTokenEndpointHttpStatus400: {r.status_code} {r.text}"
    assert r.headers["Content-Type"].split(";")[0] == "application/json", "CheckTokenEndpointReturnedJsonContentType"
    assert r.json().get("error") == "invalid_grant", "CheckErrorFromTokenEndpointResponseErrorInvalidGrant"


def test_oidcc_ensure_request_with_valid_pkce_succeeds(stack):
    """oidcc-ensure-request-with-valid-pkce-succeeds: a valid S256 code_challenge, and its verifier at the token
    endpoint, "must succeed" whether or not the OP supports PKCE."""
    client = make_client(stack)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state, nonce = random_alnum(32), random_alnum(16)
    answer = authorize(stack, Browser(stack), auth_params(client, state=state, nonce=nonce,
                                                          extra=[("code_challenge", challenge), ("code_challenge_method", "S256")]))
    code = code_from(stack, callback(answer, client.redirect), state)
    tokens = check_token_response(redeem(stack, client, code, verifier=verifier))
    claims = check_id_token(stack, client, tokens, nonce)
    check_userinfo(call_userinfo(stack, tokens["access_token"]), claims["sub"])
