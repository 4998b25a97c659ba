package main

// Routes, handlers, the access log, and writeError: where errors become answers.

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// What clients see: FastAPI clients match on it, so by Hyrum's law it cannot change.
const (
	scopeMe    = "me"
	scopeItems = "items"

	detailNotAuthenticated     = "Not authenticated"
	detailInvalidCredentials   = "Could not validate credentials"
	detailNotEnoughPermissions = "Not enough permissions"
	detailInactiveUser         = "Inactive user"
	detailIncorrectPassword    = "Incorrect username or password"

	// RFC 6749 §5.2, plus slow_down (RFC 8628 §3.5) and temporarily_unavailable (§4.1.2.1).
	codeInvalidRequest     = "invalid_request"
	codeInvalidGrant       = "invalid_grant"
	codeInvalidScope       = "invalid_scope"
	codeUnsupportedGrant   = "unsupported_grant_type"
	codeSlowDown           = "slow_down"
	codeTemporarilyUnavail = "temporarily_unavailable"

	formContentType = "application/x-www-form-urlencoded"
)

// newHandler is the whole API on one screen; a protected endpoint is one line.
func newHandler(cfg *config) http.Handler {
	mux := http.NewServeMux()
	route := func(method, path string, h http.Handler) {
		mux.Handle(method+" "+path, h)
		allow := map[string]string{"GET": "GET, HEAD", "POST": "POST"}[method] // any other method: a JSON 405
		mux.Handle(path, &apiError{status: http.StatusMethodNotAllowed, detail: "Method Not Allowed", header: http.Header{"Allow": {allow}}})
	}
	route("POST", "/token", handleToken(cfg))
	route("GET", "/users/me/{$}", requireScopes(cfg, true, scopeMe)(handleMe))
	route("GET", "/users/me/items/{$}", requireScopes(cfg, true, scopeMe, scopeItems)(handleItems))
	route("GET", "/status/{$}", requireScopes(cfg, false)(handleStatus))
	route("GET", "/healthz", http.HandlerFunc(handleHealthz))
	route("GET", "/openapi.json", http.HandlerFunc(handleOpenAPI))
	mux.Handle("/", &apiError{status: http.StatusNotFound, detail: "Not Found"})
	return logRequests(cfg.log, mux)
}

func handleMe(w http.ResponseWriter, r *http.Request, u *user) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(u.profileJSON)
}

func handleItems(w http.ResponseWriter, r *http.Request, u *user) {
	writeJSON(w, http.StatusOK, []map[string]string{{"item_id": "Foo", "owner": u.Username}})
}

func handleStatus(w http.ResponseWriter, r *http.Request, u *user) { handleHealthz(w, r) }
func handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Status string `json:"status"`
	}{"ok"})
}

func handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, openAPIDocument)
}

// handleToken is the password grant (RFC 6749 §4.3), answered no-store (§5.1).
func handleToken(cfg *config) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Pragma", "no-cache")
		if resp, err := issueToken(cfg, w, r); err != nil {
			writeError(w, err)
		} else {
			writeJSON(w, http.StatusOK, resp)
		}
	}
}

// issueToken runs SPEC §3's checks in order, so no password is hashed for a
// bad request or a locked name; parameters never come from the URL (§3.2).
func issueToken(cfg *config, w http.ResponseWriter, r *http.Request) (map[string]any, error) {
	refuse := func(code, description string) error {
		return &apiError{status: http.StatusBadRequest, code: code, detail: description}
	}
	body, readErr := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if tooLarge := (*http.MaxBytesError)(nil); errors.As(readErr, &tooLarge) {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: codeInvalidRequest, detail: "Request body over 64 KiB"}
	}
	mediaType, _, typeErr := mime.ParseMediaType(r.Header.Get("Content-Type"))
	form, err := url.ParseQuery(string(body))
	if readErr != nil || typeErr != nil || err != nil || mediaType != formContentType {
		return nil, refuse(codeInvalidRequest, "The body must be "+formContentType)
	}
	for _, values := range form {
		if len(values) > 1 { // RFC 6749 §3.2; and an empty value counts as absent
			return nil, refuse(codeInvalidRequest, "A parameter is sent more than once")
		}
	}
	username, password := form.Get("username"), form.Get("password")
	if username == "" || password == "" || strings.ContainsRune(password, 0) {
		return nil, refuse(codeInvalidRequest, "username and password are required; a password has no NUL")
	}
	// FastAPI: grant_type may be left out, though RFC 6749 §4.3.2 requires it.
	if gt := form.Get("grant_type"); gt != "" && gt != "password" {
		return nil, refuse(codeUnsupportedGrant, "Only the password grant is supported")
	}
	var scopes []string // RFC 6749 §3.3: space-separated; first-mention order, once each
	for s := range strings.SplitSeq(form.Get("scope"), " ") {
		if _, defined := scopeDescriptions[s]; s != "" && !defined {
			return nil, refuse(codeInvalidScope, "Unknown scope requested")
		} else if s != "" && !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	if wait := cfg.throttle.wait(username, cfg.now()); wait > 0 {
		return nil, &apiError{status: http.StatusTooManyRequests, code: codeSlowDown, detail: "Too many failed logins; try again later",
			header: http.Header{"Retry-After": {strconv.Itoa(int((wait + time.Second - 1) / time.Second))}}} // RFC 9110 §10.2.3
	}
	u, found := cfg.users[username]
	h := cfg.dummyHash // for unknown names, so timing does not tell them apart
	if found {
		h = u.hash
	}
	var ok bool
	if err := cfg.hashes.do(r.Context().Done(), func() { ok = h.matches(password) && found }); err != nil {
		return nil, &apiError{status: http.StatusServiceUnavailable, code: codeTemporarilyUnavail, cause: err,
			header: http.Header{"Retry-After": {"1"}}, detail: "Too many logins in progress; try again later"}
	}
	cfg.throttle.record(username, ok, cfg.now())
	if !ok {
		return nil, refuse(codeInvalidGrant, detailIncorrectPassword)
	}
	if u.Disabled { // FastAPI issues a token and refuses it later; we refuse now
		return nil, refuse(codeInvalidGrant, detailInactiveUser)
	}
	for _, s := range scopes { // FastAPI grants whatever is asked for
		if !slices.Contains(u.Scopes, s) {
			return nil, refuse(codeInvalidScope, "A requested scope is not granted to this user")
		}
	}
	now, ttl := cfg.now(), cfg.tokenTTL.Truncate(time.Second)
	token := signToken(cfg.keys[0], claims{Subject: username, Scopes: scopes, IssuedAt: now, ExpiresAt: now.Add(ttl)})
	resp := map[string]any{"access_token": token, "token_type": "bearer", "expires_in": int64(ttl / time.Second)} // RFC 6749 §5.1
	if len(scopes) > 0 {
		resp["scope"] = strings.Join(scopes, " ")
	}
	return resp, nil
}

// apiError is an answer: FastAPI's detail, and on /token RFC 6749 §5.2's fields.
type apiError struct {
	status int
	code   string      // RFC 6749 §5.2 error code; set on /token only
	detail string      // detail and error_description
	header http.Header // WWW-Authenticate, Allow or Retry-After
	cause  error       // logged as the reason; never sent
}

func (e *apiError) Error() string { return e.detail }

// because returns a copy of e that logs cause as its reason.
func (e *apiError) because(cause error) *apiError {
	c := *e
	c.cause = cause
	return &c
}

// ServeHTTP lets a fixed answer (404, 405) be a route of its own.
func (e *apiError) ServeHTTP(w http.ResponseWriter, r *http.Request) { writeError(w, e) }

// writeError is the one place errors become answers; a non-apiError is a bug: a bare 500.
func writeError(w http.ResponseWriter, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		e = &apiError{status: http.StatusInternalServerError, detail: "Internal Server Error", cause: err}
	}
	if rec, ok := w.(*statusRecorder); ok && e.cause != nil {
		rec.reason = slog.String("reason", e.cause.Error())
	}
	maps.Copy(w.Header(), e.header)
	body := map[string]string{"detail": e.detail}
	if e.code != "" {
		body["error"], body["error_description"] = e.code, e.detail
	}
	writeJSON(w, e.status, body)
}

// writeJSON sends v with its Content-Type set before the status line.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v) // cannot fail: only strings, bools and numbers
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// statusRecorder keeps what the access log needs of an answer.
type statusRecorder struct {
	http.ResponseWriter
	status int
	reason slog.Attr // zero, so not logged, unless a refusal says why
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}

// logRequests logs method, path (never the query: it may hold secrets), status and duration.
func logRequests(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		log.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", rec.status), slog.Duration("duration", time.Since(start)), rec.reason)
	})
}

// openAPIDocument is the API in OpenAPI 3.1, as FastAPI serves it.
const openAPIDocument = `{"openapi": "3.1.0", "info": {"title": "scopeguard", "version": "1.0.0"},
"paths": {
 "/token": {"post": {"summary": "Log in with the OAuth2 password grant", "requestBody": {"required": true, "content": {
  "application/x-www-form-urlencoded": {"schema": {"type": "object", "required": ["username", "password"], "properties": {
   "grant_type": {"const": "password"}, "username": {"type": "string"}, "password": {"type": "string", "format": "password"},
   "scope": {"type": "string", "description": "space-separated: me, items"}}}}}},
  "responses": {"200": {"description": "A bearer token", "content": {"application/json": {"schema": {"type": "object", "properties": {
   "access_token": {"type": "string"}, "token_type": {"const": "bearer"}, "expires_in": {"type": "integer"}, "scope": {"type": "string"}}}}}},
   "400": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}},
 "/users/me/": {"get": {"summary": "The current user", "security": [{"OAuth2PasswordBearer": ["me"]}], "responses": {
  "200": {"description": "username, email, full_name, disabled"}, "401": {"$ref": "#/components/responses/Error"}}}},
 "/users/me/items/": {"get": {"summary": "The current user's items", "security": [{"OAuth2PasswordBearer": ["me", "items"]}], "responses": {
  "200": {"description": "A list of item_id and owner"}, "401": {"$ref": "#/components/responses/Error"}}}},
 "/status/": {"get": {"summary": "Check a token", "security": [{"OAuth2PasswordBearer": []}], "responses": {"200": {"description": "Valid"}}}},
 "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Serving"}}}}},
"components": {"securitySchemes": {"OAuth2PasswordBearer": {"type": "oauth2", "flows": {"password": {"tokenUrl": "token",
  "scopes": {"me": "Read information about the current user.", "items": "Read items."}}}}},
 "responses": {"Error": {"description": "detail; on /token also error and error_description (RFC 6749 §5.2)"}}}}
`
