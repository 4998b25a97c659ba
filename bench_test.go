package main

// Benchmarks: go test -run '^$' -bench . -benchmem
// Compare figures as ratios within one run (see README, Performance).

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func BenchmarkSignToken(b *testing.B) {
	key := newHMACKey([]byte(testKey))
	c := claims{Subject: "johndoe", Scopes: []string{"me", "items"}, IssuedAt: testStart, ExpiresAt: testStart.Add(time.Hour)}
	b.ReportAllocs()
	for b.Loop() {
		signToken(key, c)
	}
}

// BenchmarkVerifyToken is the full check of a token not seen before: MAC,
// then claims. BenchmarkVerifyTokenBadSignature must cost no more.
func BenchmarkVerifyToken(b *testing.B) {
	benchmarkVerify(b, func(token string) string { return token }, nil)
}

func BenchmarkVerifyTokenBadSignature(b *testing.B) {
	benchmarkVerify(b, func(token string) string { return token[:len(token)-2] + "AA" }, errTokenSignature)
}

// BenchmarkVerifyTokenCached is what a request pays for a token it has
// sent before: a map lookup and the exp and nbf checks.
func BenchmarkVerifyTokenCached(b *testing.B) {
	env := newTestEnv(b)
	token := env.mint(b, "johndoe", time.Hour, "me", "items")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := env.cfg.tokens.verify(token, env.cfg.keys, testStart); err != nil {
			b.Fatal(err)
		}
	}
}

func benchmarkVerify(b *testing.B, alter func(string) string, want error) {
	env := newTestEnv(b)
	token := alter(env.mint(b, "johndoe", time.Hour, "me", "items"))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := verifyToken(token, env.cfg.keys, testStart); err != want {
			b.Fatal(err)
		}
	}
}

// benchmarkRequest serves one prebuilt request again and again through the
// whole handler tree, access log included (to io.Discard), without TCP.
func benchmarkRequest(b *testing.B, path string, authorization string) {
	env := newTestEnv(b)
	env.cfg.log = slog.New(slog.NewTextHandler(discard{}, nil))
	h := newHandler(env.cfg)
	req := httptest.NewRequest("GET", path, nil)
	if authorization != "" {
		req.Header.Set("Authorization", strings.ReplaceAll(authorization, "TOKEN", env.mint(b, "johndoe", time.Hour, "me", "items")))
	}
	b.ReportAllocs()
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func BenchmarkHealthz(b *testing.B)          { benchmarkRequest(b, "/healthz", "") }
func BenchmarkProtectedRequest(b *testing.B) { benchmarkRequest(b, "/users/me/", "Bearer TOKEN") }

// BenchmarkHashPassword is one login's password check at the production
// cost: the price of every POST /token that gets as far as the password.
func BenchmarkHashPassword(b *testing.B) {
	h, err := parseHash(loadVectors(b).Hashes[1].Hash)
	if err != nil || h.rounds != defaultRounds {
		b.Fatal(h, err)
	}
	for b.Loop() {
		h.matches("secret")
	}
}

// BenchmarkLogin* compare, at the production cost, a wrong password for a
// known user with any password for an unknown one: the dummy hash should
// make them cost the same (SPEC §6), so timing does not reveal usernames.
func BenchmarkLoginWrongPassword(b *testing.B) { benchmarkLogin(b, "johndoe", "wrong") }
func BenchmarkLoginUnknownUser(b *testing.B)   { benchmarkLogin(b, "nobody", "wrong") }

func benchmarkLogin(b *testing.B, username, password string) {
	env := newTestEnv(b)
	users, err := parseUsers([]byte(demoUsers), discardLog) // passlib hashes at 600,000 rounds
	if err != nil {
		b.Fatal(err)
	}
	env.cfg.users, env.cfg.dummyHash = users, dummyHash(users)
	h := newHandler(env.cfg)
	body := "username=" + username + "&password=" + password
	for b.Loop() {
		env.clock.advance(time.Hour) // never throttled
		req := httptest.NewRequest("POST", "/token", strings.NewReader(body))
		req.Header.Set("Content-Type", formContentType)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusBadRequest {
			b.Fatalf("%d %s", w.Code, w.Body)
		}
	}
}
