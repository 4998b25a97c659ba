package main

// Routes, handlers, and the one place errors become HTTP answers.

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Strings clients see. FastAPI clients match on them, so, as net/http says
// of its own, due to Hyrum's law this text cannot be changed.
const (
	scopeMe    = "me"
	scopeItems = "items"

	detailNotAuthenticated     = "Not authenticated"
	detailInvalidCredentials   = "Could not validate credentials"
	detailNotEnoughPermissions = "Not enough permissions"
	detailInactiveUser         = "Inactive user"
	detailIncorrectPassword    = "Incorrect username or password"

	// RFC 6749 §5.2 error codes, plus RFC 8628 §3.5's slow_down and
	// §4.1.2.1's temporarily_unavailable for the login limits.
	codeInvalidRequest     = "invalid_request"
	codeInvalidGrant       = "invalid_grant"
	codeInvalidScope       = "invalid_scope"
	codeUnsupportedGrant   = "unsupported_grant_type"
	codeSlowDown           = "slow_down"
	codeTemporarilyUnavail = "temporarily_unavailable"
)

const (
	maxTokenRequestBytes = 64 << 10
	formContentType      = "application/x-www-form-urlencoded"
)

// newHandler builds the whole API: every route on one screen, wrapped in
// the access log. Adding a protected endpoint is one line here.
func newHandler(cfg *config) http.Handler {
	mux := http.NewServeMux()
	route := func(method, path string, h http.Handler) {
		mux.Handle(method+" "+path, h)
		allow := method
		if method == http.MethodGet {
			allow += ", " + http.MethodHead // a GET pattern also serves HEAD
		}
		// Any other method: a JSON 405, not the mux's text/plain one.
		mux.Handle(path, &apiError{status: http.StatusMethodNotAllowed, detail: "Method Not Allowed", allow: allow})
	}
	route("POST", "/token", handleToken(cfg))
	route("GET", "/users/me/{$}", requireScopes(cfg, true, scopeMe)(handleMe))
	route("GET", "/users/me/items/{$}", requireScopes(cfg, true, scopeMe, scopeItems)(handleItems))
	route("GET", "/status/{$}", requireScopes(cfg, false)(handleStatus))
	route("GET", "/healthz", handleHealthz)
	route("GET", "/openapi.json", handleOpenAPI)
	mux.Handle("/", &apiError{status: http.StatusNotFound, detail: "Not Found"})
	return logRequests(cfg.log, mux)
}

func handleMe(w http.ResponseWriter, r *http.Request, u *user) {
	writeJSON(w, http.StatusOK, struct {
		Username string  `json:"username"`
		Email    *string `json:"email"`
		FullName *string `json:"full_name"`
		Disabled bool    `json:"disabled"`
	}{u.Username, u.Email, u.FullName, u.Disabled})
}

func handleItems(w http.ResponseWriter, r *http.Request, u *user) {
	type item struct {
		ItemID string `json:"item_id"`
		Owner  string `json:"owner"`
	}
	writeJSON(w, http.StatusOK, []item{{"Foo", u.Username}})
}

func handleStatus(w http.ResponseWriter, r *http.Request, u *user) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

var handleHealthz = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
})

var handleOpenAPI = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, openAPIDocument)
})

// tokenResponse is RFC 6749 §5.1's successful answer.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// handleToken is the password grant (RFC 6749 §4.3). It answers no-store
// both ways (§5.1), since the body holds a token or says why there is none.
func handleToken(cfg *config) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		resp, err := issueToken(cfg, w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

// issueToken runs SPEC §3's checks straight down, each refusal an
// *apiError; no password is hashed until the request is known to be
// well-formed and the username is not locked out.
func issueToken(cfg *config, w http.ResponseWriter, r *http.Request) (*tokenResponse, error) {
	badRequest := func(code, description string) error {
		return &apiError{status: http.StatusBadRequest, code: code, detail: description}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTokenRequestBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: codeInvalidRequest, detail: "Request body over 64 KiB"}
	} else if err != nil {
		return nil, badRequest(codeInvalidRequest, "Could not read the request body")
	}
	// Parameters come from the body only: the query string is ignored (RFC
	// 6749 §3.2: credentials never travel in a URL).
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mediaType != formContentType {
		return nil, badRequest(codeInvalidRequest, "Content-Type must be "+formContentType)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, badRequest(codeInvalidRequest, "The request body is not valid form encoding")
	}
	// RFC 6749 §3.2: parameters must not be repeated; empty means absent.
	for _, values := range form {
		if len(values) > 1 {
			return nil, badRequest(codeInvalidRequest, "A parameter is sent more than once")
		}
	}
	username, password := form.Get("username"), form.Get("password")
	if username == "" || password == "" {
		return nil, badRequest(codeInvalidRequest, "The username and password parameters are required")
	}
	if strings.ContainsRune(password, 0) {
		return nil, badRequest(codeInvalidRequest, "The password must not contain NUL")
	}
	// FastAPI: grant_type optional; RFC 6749 §4.3.2 requires it.
	if gt := form.Get("grant_type"); gt != "" && gt != "password" {
		return nil, badRequest(codeUnsupportedGrant, "Only the password grant type is supported")
	}
	// RFC 6749 §3.3: space-delimited, order of first mention kept, a repeat
	// granted once. Every name is checked before any password is.
	var scopes []string
	for _, s := range strings.Split(form.Get("scope"), " ") {
		if _, defined := scopeDescriptions[s]; s != "" && !defined {
			return nil, badRequest(codeInvalidScope, "Unknown scope requested")
		} else if s != "" && !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	if wait := cfg.throttle.wait(username, cfg.now()); wait > 0 {
		return nil, &apiError{status: http.StatusTooManyRequests, code: codeSlowDown,
			detail: "Too many failed login attempts; try again later", retryAfter: wait}
	}
	u, found := cfg.users[username]
	h := cfg.dummyHash
	if found {
		h = u.hash
	}
	var matched bool
	if err := cfg.hashes.do(r.Context().Done(), func() { matched = h.matches(password) && found }); err != nil {
		return nil, &apiError{status: http.StatusServiceUnavailable, code: codeTemporarilyUnavail,
			detail: "Too many logins in progress; try again later", retryAfter: time.Second, cause: err}
	}
	cfg.throttle.record(username, matched, cfg.now())
	if !matched {
		return nil, badRequest(codeInvalidGrant, detailIncorrectPassword)
	}
	if u.Disabled { // FastAPI issues the token and refuses it later; we refuse now.
		return nil, badRequest(codeInvalidGrant, detailInactiveUser)
	}
	for _, s := range scopes { // FastAPI grants whatever is asked for.
		if !slices.Contains(u.Scopes, s) {
			return nil, badRequest(codeInvalidScope, "A requested scope is not granted to this user")
		}
	}
	now := cfg.now()
	ttl := cfg.tokenTTL.Truncate(time.Second)
	token, err := signToken(cfg.keys[0], claims{Subject: username, Scopes: scopes, IssuedAt: now, ExpiresAt: now.Add(ttl)})
	if err != nil {
		return nil, err
	}
	return &tokenResponse{token, "bearer", int64(ttl / time.Second), strings.Join(scopes, " ")}, nil
}

// apiError is an error answer. For /token it carries RFC 6749 §5.2's error
// code and description; every answer carries FastAPI's detail (the same
// text as the description), so both kinds of client understand it.
type apiError struct {
	status       int
	code         string        // RFC 6749 §5.2 "error"; /token only
	detail       string        // FastAPI's "detail" and §5.2 "error_description"
	authenticate string        // WWW-Authenticate (RFC 6750 §3)
	allow        string        // Allow, on 405
	retryAfter   time.Duration // Retry-After, on 429 and 503
	cause        error         // logged as the reason; never sent
}

func (e *apiError) Error() string { return e.detail }

// because returns a copy of e whose logged reason is cause.
func (e *apiError) because(cause error) *apiError {
	c := *e
	c.cause = cause
	return &c
}

// ServeHTTP lets a fixed answer (404, 405) be a route of its own.
func (e *apiError) ServeHTTP(w http.ResponseWriter, r *http.Request) { writeError(w, e) }

// writeError is the one place errors become answers. An *apiError is
// answered as it says; anything else is a bug, answered with a bare 500
// whose cause goes to the log, never to the client.
func writeError(w http.ResponseWriter, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		e = &apiError{status: http.StatusInternalServerError, detail: "Internal Server Error", cause: err}
	}
	if rec, ok := w.(*statusRecorder); ok && e.cause != nil {
		rec.reason = e.cause.Error()
	}
	h := w.Header()
	if e.authenticate != "" {
		h.Set("WWW-Authenticate", e.authenticate)
	}
	if e.allow != "" {
		h.Set("Allow", e.allow)
	}
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(int64((e.retryAfter+time.Second-1)/time.Second), 10))
	}
	if e.code == "" {
		writeJSON(w, e.status, map[string]string{"detail": e.detail})
		return
	}
	writeJSON(w, e.status, map[string]string{"error": e.code, "error_description": e.detail, "detail": e.detail})
}

// writeJSON sends v as the body, Content-Type set before the status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"detail":"Internal Server Error"}`) // unreachable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// statusRecorder remembers what the access log needs of an answer.
type statusRecorder struct {
	http.ResponseWriter
	status int
	reason string
}

func (s *statusRecorder) WriteHeader(status int) {
	if s.status == 0 {
		s.status = status
	}
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// logRequests writes one line per request: method, path (never the query
// string, which may hold a token or password), status, duration, and why a
// request was refused. Headers and bodies are never logged.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK // nothing written: net/http sends 200
		}
		attrs := []slog.Attr{slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", rec.status), slog.Duration("duration", time.Since(start))}
		if rec.reason != "" {
			attrs = append(attrs, slog.String("reason", rec.reason))
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
	})
}

// openAPIDocument describes the API in OpenAPI 3.1, as FastAPI would serve
// it, so standard tooling can log in and call the protected endpoints.
const openAPIDocument = `{
"openapi": "3.1.0",
"info": {"title": "scopeguard", "version": "1.0.0", "description": "OAuth2 password grant with scope-checked endpoints."},
"paths": {
 "/token": {"post": {"summary": "Log in with the password grant (RFC 6749 §4.3)", "operationId": "token",
  "requestBody": {"required": true, "content": {"application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/TokenRequest"}}}},
  "responses": {"200": {"description": "A bearer token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Token"}}}},
   "400": {"$ref": "#/components/responses/OAuthError"}, "413": {"$ref": "#/components/responses/OAuthError"},
   "429": {"$ref": "#/components/responses/OAuthError"}, "503": {"$ref": "#/components/responses/OAuthError"}}}},
 "/users/me/": {"get": {"summary": "The current user", "operationId": "me", "security": [{"OAuth2PasswordBearer": ["me"]}],
  "responses": {"200": {"description": "The user", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/User"}}}},
   "400": {"$ref": "#/components/responses/Detail"}, "401": {"$ref": "#/components/responses/Detail"}, "403": {"$ref": "#/components/responses/Detail"}}}},
 "/users/me/items/": {"get": {"summary": "The current user's items", "operationId": "items", "security": [{"OAuth2PasswordBearer": ["me", "items"]}],
  "responses": {"200": {"description": "The items", "content": {"application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}}}}},
   "400": {"$ref": "#/components/responses/Detail"}, "401": {"$ref": "#/components/responses/Detail"}, "403": {"$ref": "#/components/responses/Detail"}}}},
 "/status/": {"get": {"summary": "Check a token", "operationId": "status", "security": [{"OAuth2PasswordBearer": []}],
  "responses": {"200": {"$ref": "#/components/responses/Status"}, "401": {"$ref": "#/components/responses/Detail"}}}},
 "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "responses": {"200": {"$ref": "#/components/responses/Status"}}}}
},
"components": {
 "securitySchemes": {"OAuth2PasswordBearer": {"type": "oauth2", "flows": {"password": {"tokenUrl": "token",
  "scopes": {"me": "Read information about the current user.", "items": "Read items."}}}}},
 "responses": {
  "Detail": {"description": "An error", "content": {"application/json": {"schema": {"type": "object", "required": ["detail"], "properties": {"detail": {"type": "string"}}}}}},
  "OAuthError": {"description": "An RFC 6749 §5.2 error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}},
  "Status": {"description": "OK", "content": {"application/json": {"schema": {"type": "object", "properties": {"status": {"const": "ok"}}}}}}},
 "schemas": {
  "TokenRequest": {"type": "object", "required": ["username", "password"], "properties": {
   "grant_type": {"const": "password"}, "username": {"type": "string"}, "password": {"type": "string", "format": "password"},
   "scope": {"type": "string", "description": "Space-separated scopes: me, items"},
   "client_id": {"type": "string"}, "client_secret": {"type": "string", "format": "password"}}},
  "Token": {"type": "object", "required": ["access_token", "token_type", "expires_in"], "properties": {
   "access_token": {"type": "string"}, "token_type": {"const": "bearer"}, "expires_in": {"type": "integer"}, "scope": {"type": "string"}}},
  "OAuthError": {"type": "object", "required": ["error", "error_description", "detail"], "properties": {
   "error": {"type": "string"}, "error_description": {"type": "string"}, "detail": {"type": "string"}}},
  "User": {"type": "object", "required": ["username", "email", "full_name", "disabled"], "properties": {
   "username": {"type": "string"}, "email": {"type": ["string", "null"]}, "full_name": {"type": ["string", "null"]}, "disabled": {"type": "boolean"}}},
  "Item": {"type": "object", "required": ["item_id", "owner"], "properties": {"item_id": {"type": "string"}, "owner": {"type": "string"}}}
 }
}
}
`
