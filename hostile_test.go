package main

// What an attacker sends, through the front door: each row gets the answer
// SPEC gives, and the service stays up.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestHostileTokensOverHTTP sends every token of the verifyToken table to
// /status/: the valid ones pass, every other one gets the one 401 SPEC §4
// gives, whatever its reason.
func TestHostileTokensOverHTTP(t *testing.T) {
	t.Parallel()
	srv := newTestEnv(t).serve(t)
	for _, tt := range forgedTokens() {
		if strings.ContainsFunc(tt.token, func(r rune) bool { return r < ' ' || r == 0x7f }) ||
			strings.TrimSpace(tt.token) != tt.token || tt.token == "" {
			continue // control bytes cannot travel in a field, and HTTP trims its white space
		}
		a := get(t, srv, "/status/", "Bearer "+tt.token)
		if tt.want == nil && a.status != 200 {
			t.Errorf("%s: got %s, want 200", tt.name, a)
		}
		if tt.want != nil && (a.status != 401 || a.json["detail"] != detailInvalidCredentials ||
			a.header.Get("WWW-Authenticate") != `Bearer error="invalid_token"`) {
			t.Errorf("%s: got %s %v", tt.name, a, a.header)
		}
	}
	if a := get(t, srv, "/healthz"); a.status != 200 {
		t.Fatalf("service down after hostile tokens: %s", a)
	}
}

// TestHostileTokenRequests: what an attacker posts to /token.
func TestHostileTokenRequests(t *testing.T) {
	t.Parallel()
	srv := newTestEnv(t).serve(t)
	const form = formContentType
	good := "username=johndoe&password=secret"
	tests := []struct {
		name, contentType, body string
		status                  int
		code                    string
	}{
		{"1 MiB password", form, "username=johndoe&password=" + strings.Repeat("x", 1<<20), 413, codeInvalidRequest},
		{"64 KiB exactly", form, good + "&pad=" + strings.Repeat("x", 64<<10-len(good)-5), 200, ""},
		{"64 KiB and one byte", form, good + "&pad=" + strings.Repeat("x", 64<<10-len(good)-4), 413, codeInvalidRequest},
		{"JSON content type, form body", "application/json", good, 400, codeInvalidRequest},
		{"form type with parameters", form + "; charset=utf-8; foo=bar", good, 200, ""},
		{"form type in capitals", "Application/X-WWW-Form-URLEncoded", good, 200, ""},
		{"malformed content type", form + "; charset", good, 400, codeInvalidRequest},
		{"password twice, once empty", form, good + "&password=", 400, codeInvalidRequest},
		{"username as a key only", form, "username&password=secret", 400, codeInvalidRequest},
		{"NUL in username", form, "username=john%00doe&password=secret", 400, codeInvalidGrant},
		{"NUL alone as password", form, "username=johndoe&password=%00", 400, codeInvalidRequest},
		{"invalid UTF-8 password", form, "username=johndoe&password=%ff%fe", 400, codeInvalidGrant},
		{"2,000 known scopes", form, good + "&scope=" + strings.Repeat("me+items+", 1000), 200, ""},
		{"2,000 scopes, the last unknown", form, good + "&scope=" + strings.Repeat("me+", 2000) + "root", 400, codeInvalidScope},
		{"10,000 spaces as scope", form, good + "&scope=" + strings.Repeat("+", 10000), 200, ""},
		{"grant_type passwordx", form, good + "&grant_type=passwordx", 400, codeUnsupportedGrant},
		{"grant_type PASSWORD", form, good + "&grant_type=PASSWORD", 400, codeUnsupportedGrant},
		{"grant_type with NUL", form, good + "&grant_type=password%00", 400, codeUnsupportedGrant},
		{"grant_type urn-like", form, good + "&grant_type=urn:ietf:params:oauth:grant-type:password", 400, codeUnsupportedGrant},
		{"client_secret empty, others fine", form, good + "&client_id=&client_secret=", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := postForm(t, srv, tt.contentType, tt.body)
			if a.status != tt.status || tt.code != "" && a.json["error"] != tt.code {
				t.Errorf("got %.200s, want %d %s", a, tt.status, tt.code)
			}
		})
	}
	// Credentials in the query string are never read, even with an empty form body.
	a := do(t, mustRequest("POST", srv.URL+"/token?"+good, formContentType, ""))
	if a.status != 400 || a.json["error"] != codeInvalidRequest {
		t.Errorf("query-string credentials: %s", a)
	}
}

// TestHostileAuthorization: odd Authorization fields, over real HTTP.
func TestHostileAuthorization(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	srv := env.serve(t)
	token := env.mint(t, "johndoe", time.Hour, "me")
	for _, tt := range []struct {
		name   string
		auth   []string
		detail string
	}{
		{"Bearer with a comma list", []string{"Bearer " + token + ", Basic x"}, detailInvalidCredentials},
		{"token in quotes", []string{`Bearer "` + token + `"`}, detailInvalidCredentials},
		{"Bearer, token in the next field", []string{"Bearer", token}, detailInvalidCredentials},
		{"Token scheme", []string{"Token " + token}, detailNotAuthenticated},
		{"Bearer: with a colon", []string{"Bearer: " + token}, detailNotAuthenticated},
		{"Bearerx scheme", []string{"Bearerx " + token}, detailNotAuthenticated},
		{"JWT scheme", []string{"JWT " + token}, detailNotAuthenticated},
		{"empty field", []string{""}, detailNotAuthenticated},
		{"8 KiB of junk", []string{"Bearer " + strings.Repeat("a", 8<<10)}, detailInvalidCredentials},
		{"many dots", []string{"Bearer " + strings.Repeat(".", 8000)}, detailInvalidCredentials},
	} {
		if a := get(t, srv, "/users/me/", tt.auth...); a.status != 401 || a.json["detail"] != tt.detail {
			t.Errorf("%s: got %.200s, want 401 %q", tt.name, a, tt.detail)
		}
	}
}

// TestSlowHeadersAreCut: a client that dribbles its request headers is
// disconnected by the server's read-header timeout instead of holding a
// connection open forever (slowloris).
func TestSlowHeadersAreCut(t *testing.T) {
	t.Parallel()
	addr, _, _ := runInBackground(t, []string{"-addr", "127.0.0.1:0"}, nil)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	closed := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, conn); closed <- err }()
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\n")
	for i := 0; ; i++ {
		select {
		case <-closed:
			return // cut, as it should be
		case <-time.After(250 * time.Millisecond):
		}
		if i == 120 { // 30 s: three times the server's limits
			t.Fatal("a connection dribbling headers was never cut")
		}
		fmt.Fprintf(conn, "X-Slow-%d: 1\r\n", i)
	}
}

// FuzzTokenEndpoint posts arbitrary bodies to /token through the real
// handler tree. Beyond never panicking: the answer is always JSON with a
// status SPEC §3 lists; every 400 carries a §5.2 code whose description is
// the detail; every 200 carries a token that verifies, for the user named
// in the form, whose password the form holds.
func FuzzTokenEndpoint(f *testing.F) {
	for _, body := range []string{"username=johndoe&password=secret", "username=bob&password=hunter2&scope=me",
		"grant_type=password&username=johndoe&password=secret&scope=items+me", "username=alice&password=secret2",
		"username=johndoe&password=x", "username=johndoe&username=x&password=secret", "a=%zz", "username=carol&password=carol-pw&scope=+"} {
		f.Add(body, formContentType)
	}
	f.Add(`{"username":"johndoe"}`, "application/json")
	env := newTestEnv(f)
	env.cfg.throttle = &throttle{}
	h := newHandler(env.cfg)
	passwords := map[string]string{}
	for _, u := range testUsers {
		passwords[u.name] = u.password
	}
	codes := map[any]bool{codeInvalidRequest: true, codeInvalidGrant: true, codeInvalidScope: true, codeUnsupportedGrant: true}
	f.Fuzz(func(t *testing.T, body, contentType string) {
		env.clock.advance(time.Hour) // no throttle window carries over between inputs
		req := httptest.NewRequest("POST", "/token", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		a := answer{status: w.Code, header: w.Header(), body: w.Body.Bytes()}
		if err := json.Unmarshal(a.body, &a.json); err != nil || a.header.Get("Content-Type") != "application/json" {
			t.Fatalf("not JSON: %s", a)
		}
		switch a.status {
		case 200:
			token, _ := a.json["access_token"].(string)
			c, err := verifyToken(token, env.cfg.keys, env.clock.now())
			form, _ := url.ParseQuery(body)
			if err != nil || c.Subject != form.Get("username") || passwords[c.Subject] != form.Get("password") {
				t.Fatalf("200 for %q: claims %+v, %v", body, c, err)
			}
		case 400, 413, 429:
			if !codes[a.json["error"]] && a.json["error"] != codeSlowDown || a.json["detail"] != a.json["error_description"] {
				t.Fatalf("%d for %q: %s", a.status, body, a.body)
			}
		default:
			t.Fatalf("status %d for %q", a.status, body)
		}
	})
}
