package main

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestTokenErrors has a row for each row of SPEC §3's error table (but 429
// and 503, tested with the throttle and the hash pool), and rows pairing
// two faults to show which check comes first.
func TestTokenErrors(t *testing.T) {
	t.Parallel()
	srv := newTestEnv(t).serve(t)
	const form = formContentType
	good := "username=johndoe&password=secret"
	tests := []struct {
		name, contentType, body string
		status                  int
		code, description       string
	}{
		{"body over 64 KiB", form, good + "&pad=" + strings.Repeat("x", 64<<10), 413, codeInvalidRequest, ""},
		{"body over 64 KiB and JSON", "application/json", strings.Repeat(" ", 64<<10+1), 413, codeInvalidRequest, ""},
		{"JSON", "application/json", `{"username":"johndoe","password":"secret"}`, 400, codeInvalidRequest, ""},
		{"multipart", "multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\njohndoe\r\n--x--\r\n", 400, codeInvalidRequest, ""},
		{"no content type", "", good, 400, codeInvalidRequest, ""},
		{"text/plain", "text/plain", good, 400, codeInvalidRequest, ""},
		{"username twice", form, good + "&username=johndoe", 400, codeInvalidRequest, ""},
		{"unknown parameter twice", form, good + "&x=1&x=2", 400, codeInvalidRequest, ""},
		{"empty parameter twice", form, good + "&scope=&scope=", 400, codeInvalidRequest, ""},
		{"no username", form, "password=secret", 400, codeInvalidRequest, ""},
		{"empty username", form, "username=&password=secret", 400, codeInvalidRequest, ""},
		{"no password", form, "username=johndoe", 400, codeInvalidRequest, ""},
		{"password with NUL", form, "username=johndoe&password=sec%00ret", 400, codeInvalidRequest, ""},
		{"bad percent-encoding", form, "username=john%zzdoe&password=secret", 400, codeInvalidRequest, ""},
		{"semicolon separator", form, "username=johndoe;password=secret", 400, codeInvalidRequest, ""},
		{"twice and bad grant", form, good + "&grant_type=x&grant_type=y", 400, codeInvalidRequest, ""},
		{"client_credentials", form, good + "&grant_type=client_credentials", 400, codeUnsupportedGrant, ""},
		{"Password", form, good + "&grant_type=Password", 400, codeUnsupportedGrant, ""},
		{"password with a space", form, good + "&grant_type=password%20", 400, codeUnsupportedGrant, ""},
		{"bad grant and bad scope", form, good + "&grant_type=implicit&scope=admin", 400, codeUnsupportedGrant, ""},
		{"undefined scope", form, good + "&scope=me+admin", 400, codeInvalidScope, ""},
		{"scope differing in case", form, good + "&scope=Me", 400, codeInvalidScope, ""},
		{"scope with a tab", form, good + "&scope=me%09items", 400, codeInvalidScope, ""},
		{"undefined scope, wrong password", form, "username=johndoe&password=nope&scope=admin", 400, codeInvalidScope, ""},
		{"unknown user", form, "username=nobody&password=secret", 400, codeInvalidGrant, detailIncorrectPassword},
		{"wrong password", form, "username=johndoe&password=Secret", 400, codeInvalidGrant, detailIncorrectPassword},
		{"username differing in case", form, "username=JohnDoe&password=secret", 400, codeInvalidGrant, detailIncorrectPassword},
		{"username with a space", form, "username=johndoe%20&password=secret", 400, codeInvalidGrant, detailIncorrectPassword},
		{"credentials in the query only", form, "", 400, codeInvalidRequest, ""},
		{"disabled user", form, "username=alice&password=secret2", 400, codeInvalidGrant, detailInactiveUser},
		{"disabled user, scope not hers", form, "username=alice&password=secret2&scope=items", 400, codeInvalidGrant, detailInactiveUser},
		{"disabled user, wrong password", form, "username=alice&password=nope", 400, codeInvalidGrant, detailIncorrectPassword},
		{"scope not the user's", form, "username=bob&password=hunter2&scope=me+items", 400, codeInvalidScope, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest("POST", srv.URL+"/token?username=johndoe&password=secret", strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			a := do(t, req)
			if a.status != tt.status || a.json["error"] != tt.code {
				t.Fatalf("got %s, want %d %s", a, tt.status, tt.code)
			}
			if got := slices.Sorted(maps.Keys(a.json)); !slices.Equal(got, []string{"detail", "error", "error_description"}) {
				t.Errorf("body keys %v", got)
			}
			desc, _ := a.json["error_description"].(string)
			if desc == "" || a.json["detail"] != desc || tt.description != "" && desc != tt.description {
				t.Errorf("error_description %q, detail %q, want %q in both", desc, a.json["detail"], tt.description)
			}
			if a.header.Get("Cache-Control") != "no-store" || a.header.Get("Content-Type") != "application/json" {
				t.Errorf("headers %v", a.header)
			}
		})
	}
}

// TestTokenSuccess checks the answer, its headers, and the token's claims.
func TestTokenSuccess(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	srv := env.serve(t)
	tests := []struct {
		name, body, wantScope string
	}{
		{"two scopes", "username=johndoe&password=secret&scope=me+items", "me items"},
		{"order of first request kept", "username=johndoe&password=secret&scope=items+me", "items me"},
		{"runs of spaces and repeats", "username=johndoe&password=secret&scope=++me+++me+items+", "me items"},
		{"no scope: none granted", "username=johndoe&password=secret", ""},
		{"empty scope", "username=johndoe&password=secret&scope=", ""},
		{"grant_type and ignored parameters", "grant_type=password&username=bob&password=hunter2&scope=me&client_id=x&client_secret=y&extra=z", "me"},
		{"password with unicode and symbols", "username=carol&password=carol-pw", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := postForm(t, srv, "application/x-www-form-urlencoded; charset=UTF-8", tt.body)
			if a.status != 200 {
				t.Fatalf("got %s", a)
			}
			if a.header.Get("Cache-Control") != "no-store" || a.header.Get("Pragma") != "no-cache" {
				t.Errorf("headers %v", a.header)
			}
			if a.json["token_type"] != "bearer" || a.json["expires_in"] != 1800.0 {
				t.Errorf("body %s", a.body)
			}
			scope, hasScope := a.json["scope"]
			if tt.wantScope == "" && hasScope || tt.wantScope != "" && scope != tt.wantScope {
				t.Errorf("scope %v, want %q", scope, tt.wantScope)
			}
			token, _ := a.json["access_token"].(string)
			c, err := verifyToken(token, env.cfg.keys, env.clock.now())
			if err != nil {
				t.Fatalf("token does not verify: %v", err)
			}
			if want, _ := url.ParseQuery(tt.body); c.Subject != want.Get("username") || strings.Join(c.Scopes, " ") != tt.wantScope {
				t.Errorf("claims %+v", c)
			}
			if !c.ExpiresAt.Equal(testStart.Add(30*time.Minute)) || !c.IssuedAt.Equal(testStart) {
				t.Errorf("iat %v exp %v", c.IssuedAt, c.ExpiresAt)
			}
			payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
			if strings.Contains(string(payload), `"scope"`) != hasScope {
				t.Errorf("payload %s: scope claim should be there only when granted", payload)
			}
		})
	}
}

// TestProtectedEndpoints has a row for each of SPEC §4's four checks on
// each endpoint, and rows pairing faults to show their order.
func TestProtectedEndpoints(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	srv := env.serve(t)
	const hour = time.Hour
	john := env.mint(t, "johndoe", hour, "me", "items")
	johnMe := env.mint(t, "johndoe", hour, "me")
	alice := env.mint(t, "alice", hour, "me", "items")
	aliceMe := env.mint(t, "alice", hour, "me")
	carol := env.mint(t, "carol", hour)
	ghost := env.mint(t, "ghost", hour, "me", "items")
	expired := env.mint(t, "johndoe", -time.Second, "me", "items")
	other := newTestEnv(t)
	other.cfg.keys = []*hmacKey{newHMACKey([]byte(strings.Repeat("k", 32)))}
	forged := other.mint(t, "johndoe", hour, "me", "items")

	const (
		invalid     = `Bearer error="invalid_token"`
		invalidMe   = invalid + `, scope="me"`
		invalidBoth = invalid + `, scope="me items"`
		scopeMe     = `Bearer error="insufficient_scope", scope="me"`
		scopeBoth   = `Bearer error="insufficient_scope", scope="me items"`
	)
	meBody := `{"username":"johndoe","email":"johndoe@example.com","full_name":null,"disabled":false}`
	itemsBody := `[{"item_id":"Foo","owner":"johndoe"}]`
	tests := []struct {
		name, path string
		auth       []string
		status     int
		body       string // exact, or the detail when it starts with no '{' or '['
		challenge  string
	}{
		{"me", "/users/me/", []string{"Bearer " + john}, 200, meBody, ""},
		{"me, scope me only", "/users/me/", []string{"Bearer " + johnMe}, 200, meBody, ""},
		{"me, lower-case scheme", "/users/me/", []string{"bearer " + john}, 200, meBody, ""},
		{"me, several spaces", "/users/me/", []string{"BEARER    " + john}, 200, meBody, ""},
		{"items", "/users/me/items/", []string{"Bearer " + john}, 200, itemsBody, ""},
		{"status", "/status/", []string{"Bearer " + carol}, 200, `{"status":"ok"}`, ""},
		{"status, disabled user", "/status/", []string{"Bearer " + aliceMe}, 200, `{"status":"ok"}`, ""},

		{"me, no Authorization", "/users/me/", nil, 401, detailNotAuthenticated, "Bearer"},
		{"me, Basic", "/users/me/", []string{"Basic am9obmRvZTpzZWNyZXQ="}, 401, detailNotAuthenticated, "Bearer"},
		{"me, Bearer alone", "/users/me/", []string{"Bearer"}, 401, detailNotAuthenticated, "Bearer"},
		{"me, Bearer and spaces", "/users/me/", []string{"Bearer    "}, 401, detailNotAuthenticated, "Bearer"},
		{"me, token without scheme", "/users/me/", []string{john}, 401, detailNotAuthenticated, "Bearer"},
		{"me, Bearer and tab", "/users/me/", []string{"Bearer\t" + john}, 401, detailNotAuthenticated, "Bearer"},
		{"items, no Authorization", "/users/me/items/", nil, 401, detailNotAuthenticated, "Bearer"},
		{"status, no Authorization", "/status/", nil, 401, detailNotAuthenticated, "Bearer"},

		{"me, garbage", "/users/me/", []string{"Bearer abc"}, 401, detailInvalidCredentials, invalidMe},
		{"me, expired", "/users/me/", []string{"Bearer " + expired}, 401, detailInvalidCredentials, invalidMe},
		{"me, other key", "/users/me/", []string{"Bearer " + forged}, 401, detailInvalidCredentials, invalidMe},
		{"me, unknown user", "/users/me/", []string{"Bearer " + ghost}, 401, detailInvalidCredentials, invalidMe},
		{"me, two Authorization fields", "/users/me/", []string{"Bearer " + john, "Bearer " + john}, 401, detailInvalidCredentials, invalidMe},
		{"me, token and trailing junk", "/users/me/", []string{"Bearer " + john + " x"}, 401, detailInvalidCredentials, invalidMe},
		{"items, expired", "/users/me/items/", []string{"Bearer " + expired}, 401, detailInvalidCredentials, invalidBoth},
		{"status, expired", "/status/", []string{"Bearer " + expired}, 401, detailInvalidCredentials, invalid},
		{"status, garbage", "/status/", []string{"Bearer x.y.z"}, 401, detailInvalidCredentials, invalid},

		{"me, no scopes", "/users/me/", []string{"Bearer " + carol}, 403, detailNotEnoughPermissions, scopeMe},
		{"items, scope me only", "/users/me/items/", []string{"Bearer " + johnMe}, 403, detailNotEnoughPermissions, scopeBoth},
		{"items, disabled and scope missing", "/users/me/items/", []string{"Bearer " + aliceMe}, 403, detailNotEnoughPermissions, scopeBoth},

		{"me, disabled", "/users/me/", []string{"Bearer " + aliceMe}, 400, detailInactiveUser, ""},
		{"items, disabled", "/users/me/items/", []string{"Bearer " + alice}, 400, detailInactiveUser, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := get(t, srv, tt.path, tt.auth...)
			want := tt.body
			if !strings.HasPrefix(want, "{") && !strings.HasPrefix(want, "[") {
				want = `{"detail":"` + want + `"}`
			}
			if a.status != tt.status || strings.TrimSpace(string(a.body)) != want {
				t.Errorf("got %s, want %d %s", a, tt.status, want)
			}
			if got := a.header.Get("WWW-Authenticate"); got != tt.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tt.challenge)
			}
			if a.header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", a.header.Get("Content-Type"))
			}
		})
	}
}

// TestTokenNeverFromElsewhere offers a valid token everywhere but the
// Authorization field (RFC 6750 §2.2, §2.3): none is accepted.
func TestTokenNeverFromElsewhere(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	srv := env.serve(t)
	token := env.mint(t, "johndoe", time.Hour, "me", "items")
	for name, req := range map[string]*http.Request{
		"query":  mustRequest("GET", srv.URL+"/users/me/?access_token="+token, "", ""),
		"body":   mustRequest("GET", srv.URL+"/users/me/", formContentType, "access_token="+token),
		"cookie": mustRequest("GET", srv.URL+"/users/me/", "", ""),
	} {
		if name == "cookie" {
			req.AddCookie(&http.Cookie{Name: "access_token", Value: token})
		}
		if a := do(t, req); a.status != 401 || a.json["detail"] != detailNotAuthenticated {
			t.Errorf("%s: got %s", name, a)
		}
	}
}

func mustRequest(method, url, contentType, body string) *http.Request {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// TestLoginThenCallEveryEndpoint is the newcomer's walk: log in, call each
// endpoint with the token.
func TestLoginThenCallEveryEndpoint(t *testing.T) {
	t.Parallel()
	srv := newTestEnv(t).serve(t)
	a := login(t, srv, "johndoe", "secret", "me items")
	token, _ := a.json["access_token"].(string)
	if a.status != 200 || token == "" {
		t.Fatalf("login: %s", a)
	}
	for _, path := range []string{"/users/me/", "/users/me/items/", "/status/"} {
		if a := get(t, srv, path, "Bearer "+token); a.status != 200 {
			t.Errorf("%s: %s", path, a)
		}
	}
}

// TestKeyRotation: tokens signed with SECRET_KEY_PREVIOUS still verify;
// new ones are signed with SECRET_KEY alone.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	old := newTestEnv(t)
	oldToken := old.mint(t, "johndoe", time.Hour, "me")
	env := newTestEnv(t)
	current := newHMACKey([]byte("the-new-key-0123456789-012345678"))
	env.cfg.keys = []*hmacKey{current, old.cfg.keys[0]}
	srv := env.serve(t)
	if a := get(t, srv, "/users/me/", "Bearer "+oldToken); a.status != 200 {
		t.Errorf("token under the previous key: %s", a)
	}
	a := login(t, srv, "johndoe", "secret", "me")
	token, _ := a.json["access_token"].(string)
	if _, err := verifyToken(token, []*hmacKey{current}, testStart); err != nil {
		t.Errorf("new token does not verify under the current key alone: %v", err)
	}
	if _, err := verifyToken(token, old.cfg.keys, testStart); err == nil {
		t.Errorf("new token verifies under the previous key")
	}
}

// TestTwoInstances: two servers sharing SECRET_KEY and users accept each
// other's tokens (SPEC §7): nothing a token needs lives in one process.
func TestTwoInstances(t *testing.T) {
	t.Parallel()
	a, b := newTestEnv(t).serve(t), newTestEnv(t).serve(t)
	for _, pair := range [][2]*httptest.Server{{a, b}, {b, a}} {
		token, _ := login(t, pair[0], "johndoe", "secret", "me").json["access_token"].(string)
		if got := get(t, pair[1], "/users/me/", "Bearer "+token); got.status != 200 {
			t.Errorf("token from %s refused by %s: %s", pair[0].URL, pair[1].URL, got)
		}
	}
}

// TestFastAPITokens: tokens PyJWT minted as the FastAPI example does
// (testdata/mint.py) are accepted with the same key.
func TestFastAPITokens(t *testing.T) {
	t.Parallel()
	v := loadVectors(t)
	env := newTestEnv(t)
	env.cfg.keys = []*hmacKey{newHMACKey([]byte(v.Key))}
	env.clock.t = time.Unix(v.Now, 0)
	srv := env.serve(t)
	fastapi := v.Tokens[0].Token
	if a := get(t, srv, "/users/me/items/", "Bearer "+fastapi); a.status != 200 {
		t.Errorf("FastAPI token: %s", a)
	}
	env.clock.advance(30 * time.Minute)
	if a := get(t, srv, "/users/me/items/", "Bearer "+fastapi); a.status != 401 {
		t.Errorf("FastAPI token after its exp: %s", a)
	}
}

// TestNotFoundAndMethodNotAllowed: JSON answers, not the mux's text ones.
func TestNotFoundAndMethodNotAllowed(t *testing.T) {
	t.Parallel()
	srv := newTestEnv(t).serve(t)
	tests := []struct {
		method, path string
		status       int
		detail       string
		allow        string
	}{
		{"GET", "/nope", 404, "Not Found", ""},
		{"GET", "/users/me/other", 404, "Not Found", ""},
		{"GET", "/users/", 404, "Not Found", ""},
		{"POST", "/nope", 404, "Not Found", ""},
		{"GET", "/token", 405, "Method Not Allowed", "POST"},
		{"PUT", "/token", 405, "Method Not Allowed", "POST"},
		{"DELETE", "/users/me/", 405, "Method Not Allowed", "GET, HEAD"},
		{"POST", "/users/me/items/", 405, "Method Not Allowed", "GET, HEAD"},
		{"POST", "/status/", 405, "Method Not Allowed", "GET, HEAD"},
		{"POST", "/healthz", 405, "Method Not Allowed", "GET, HEAD"},
		{"PATCH", "/openapi.json", 405, "Method Not Allowed", "GET, HEAD"},
	}
	for _, tt := range tests {
		a := do(t, mustRequest(tt.method, srv.URL+tt.path, "", ""))
		if a.status != tt.status || a.json["detail"] != tt.detail || a.header.Get("Allow") != tt.allow ||
			a.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: got %s Allow %q", tt.method, tt.path, a, a.header.Get("Allow"))
		}
	}
	if a := get(t, srv, "/healthz"); a.status != 200 || a.json["status"] != "ok" {
		t.Errorf("/healthz: %s", a)
	}
}

// TestOpenAPI checks the document is OpenAPI 3.1, lists exactly the five
// paths, and that the scopes it declares for each are the scopes the
// server enforces (read back from each endpoint's 403 challenge).
func TestOpenAPI(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	srv := env.serve(t)
	a := get(t, srv, "/openapi.json")
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Security []map[string][]string `json:"security"`
		} `json:"paths"`
		Components struct {
			SecuritySchemes map[string]struct {
				Type  string `json:"type"`
				Flows struct {
					Password struct {
						TokenURL string            `json:"tokenUrl"`
						Scopes   map[string]string `json:"scopes"`
					} `json:"password"`
				} `json:"flows"`
			} `json:"securitySchemes"`
		} `json:"components"`
	}
	if err := json.Unmarshal(a.body, &doc); err != nil || a.header.Get("Content-Type") != "application/json" {
		t.Fatalf("not JSON: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	scheme := doc.Components.SecuritySchemes["OAuth2PasswordBearer"]
	if scheme.Type != "oauth2" || scheme.Flows.Password.TokenURL != "token" || !maps.Equal(scheme.Flows.Password.Scopes, scopeDescriptions) {
		t.Errorf("security scheme %+v", scheme)
	}
	if got := slices.Sorted(maps.Keys(doc.Paths)); !slices.Equal(got, []string{"/healthz", "/status/", "/token", "/users/me/", "/users/me/items/"}) {
		t.Errorf("paths %v", got)
	}
	noScopes := env.mint(t, "carol", time.Hour)
	for _, path := range []string{"/users/me/", "/users/me/items/", "/status/"} {
		sec := doc.Paths[path]["get"].Security
		if len(sec) != 1 {
			t.Errorf("%s: security %v", path, sec)
			continue
		}
		declared := strings.Join(sec[0]["OAuth2PasswordBearer"], " ")
		enforced := ""
		if a := get(t, srv, path, "Bearer "+noScopes); a.status == 403 {
			_, enforced, _ = strings.Cut(a.header.Get("WWW-Authenticate"), `scope="`)
			enforced = strings.TrimSuffix(enforced, `"`)
		}
		if declared != enforced {
			t.Errorf("%s: document declares scopes %q, server enforces %q", path, declared, enforced)
		}
	}
}

// TestAccessLog: one line per request with method, path and status, and
// no password, token, Authorization value, key or query string, even when
// clients put secrets where they should not.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	srv := env.serve(t)
	a := login(t, srv, "johndoe", "secret", "me")
	token, _ := a.json["access_token"].(string)
	get(t, srv, "/users/me/?access_token="+token+"&password=qu3ry-pw", "Bearer "+token)
	get(t, srv, "/users/me/", "Bearer "+token+"x")
	login(t, srv, "johndoe", "wr0ng-pw", "")
	postForm(t, srv, "application/json", `{"password":"js0n-pw"}`)
	logged := env.log.String()
	for _, secret := range []string{"secret", token, token[:40], token[len(token)-20:], "qu3ry-pw", "wr0ng-pw",
		"js0n-pw", "access_token", testKey, "Bearer", "?"} {
		if strings.Contains(logged, secret) {
			t.Errorf("log holds %q:\n%s", secret, logged)
		}
	}
	lines := strings.Split(strings.TrimSpace(logged), "\n")
	want := []string{"method=POST path=/token status=200", "method=GET path=/users/me/ status=200",
		"method=GET path=/users/me/ status=401", "method=POST path=/token status=400", "method=POST path=/token status=400"}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), logged)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) || !strings.Contains(lines[i], "duration=") {
			t.Errorf("line %d: %q, want %q and a duration", i, lines[i], w)
		}
	}
	if !strings.Contains(lines[2], "reason=") {
		t.Errorf("refused token logged without a reason: %q", lines[2])
	}
}
