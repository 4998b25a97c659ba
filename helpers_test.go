package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// discardLog is a logger for tests that do not read the log.
var discardLog = slog.New(slog.DiscardHandler)

// testKey is the HMAC key of test configs: 32 bytes, RFC 7518's minimum.
const testKey = "test-key-0123456789-0123456789ab"

// testStart is the fake clock's starting time in every test config.
var testStart = time.Unix(1_700_000_000, 0)

// fakeClock is a settable clock, so expiry and the throttle are tested
// without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines to log to.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testUser is one account of the test users file, with its password.
type testUser struct {
	name, password string
	scopes         []string
	disabled       bool
}

var testUsers = []testUser{
	{"johndoe", "secret", []string{"me", "items"}, false},
	{"alice", "secret2", []string{"me"}, true},
	{"bob", "hunter2", []string{"me"}, false},
	{"carol", "carol-pw", nil, false},
}

// usersFile renders users as a users file, hashed at the cheapest cost
// parseUsers accepts so that tests stay fast.
func usersFile(t testing.TB, users []testUser) []byte {
	t.Helper()
	var list []map[string]any
	for _, u := range users {
		h, err := hashPassword(u.password, []byte("0123456789abcdef"), minRounds)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, map[string]any{"username": u.name, "hashed_password": h,
			"email": u.name + "@example.com", "scopes": u.scopes, "disabled": u.disabled})
	}
	data, _ := json.Marshal(list)
	return data
}

// testEnv is a config for tests plus the handles tests steer it by.
type testEnv struct {
	cfg   *config
	clock *fakeClock
	log   *syncBuffer
}

func newTestEnv(t testing.TB) *testEnv {
	t.Helper()
	users, err := parseUsers(usersFile(t, testUsers), discardLog)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: testStart}
	log := &syncBuffer{}
	return &testEnv{
		cfg: &config{
			tokenTTL:  30 * time.Minute,
			keys:      []*hmacKey{newHMACKey([]byte(testKey))},
			users:     users,
			dummyHash: dummyHash(users),
			hashes:    newHashPool(2, 4),
			throttle:  &throttle{},
			now:       clock.now,
			log:       slog.New(slog.NewTextHandler(log, nil)),
		},
		clock: clock,
		log:   log,
	}
}

// serve starts the real handler tree on a loopback test server.
func (e *testEnv) serve(t testing.TB) *httptest.Server {
	srv := httptest.NewServer(newHandler(e.cfg))
	t.Cleanup(srv.Close)
	return srv
}

// mint signs a token for sub with scopes, valid for ttl from the clock.
func (e *testEnv) mint(t testing.TB, sub string, ttl time.Duration, scopes ...string) string {
	t.Helper()
	now := e.clock.now()
	return signToken(e.cfg.keys[0], claims{Subject: sub, Scopes: scopes, IssuedAt: now, ExpiresAt: now.Add(ttl)})
}

// answer is a response with its body read and, if JSON, decoded.
type answer struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

func (a answer) String() string { return fmt.Sprintf("%d %s", a.status, a.body) }

func do(t testing.TB, req *http.Request) answer {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: body}
	json.Unmarshal(body, &a.json)
	return a
}

// postForm posts body to /token with the given Content-Type.
func postForm(t testing.TB, srv *httptest.Server, contentType, body string) answer {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/token", strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return do(t, req)
}

// login runs the password grant and returns the answer.
func login(t testing.TB, srv *httptest.Server, username, password, scope string) answer {
	t.Helper()
	form := url.Values{"username": {username}, "password": {password}}
	if scope != "" {
		form.Set("scope", scope)
	}
	return postForm(t, srv, formContentType, form.Encode())
}

// get sends GET path with the given Authorization fields.
func get(t testing.TB, srv *httptest.Server, path string, authorization ...string) answer {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	for _, v := range authorization {
		req.Header.Add("Authorization", v)
	}
	return do(t, req)
}
