package main

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPasslibVectors: hashes made by passlib verify here, and our encoder
// gives, byte for byte, what Python's hashlib computes for a fixed salt
// (both from testdata/mint.py, which also checks passlib verifies the
// latter). The 600,000-round vector is the production cost.
func TestPasslibVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t).Hashes {
		h, err := parseHash(v.Hash)
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if !h.matches(v.Password) {
			t.Errorf("%s: password does not match", v.Name)
		}
		if h.rounds < defaultRounds && (h.matches(v.Password+"x") || h.matches("")) { // cheap ones only
			t.Errorf("%s: matches the wrong passwords", v.Name)
		}
		if v.SaltHex != "" {
			salt, _ := hex.DecodeString(v.SaltHex)
			if got, _ := hashPassword(v.Password, salt, h.rounds); got != v.Hash {
				t.Errorf("%s: encoded\n%s, hashlib gives\n%s", v.Name, got, v.Hash)
			}
		}
	}
}

func TestParseHashRejects(t *testing.T) {
	t.Parallel()
	const salt, sum = "2tub854TIqRUKkWolTJmbA", "o6m2aIb80BWvozwf8kj7vNqrkGbi.z5H6HXJJhuVTeM"
	good := "$pbkdf2-sha256$1000$" + salt + "$" + sum
	if _, err := parseHash(good); err != nil {
		t.Fatalf("good hash refused: %v", err)
	}
	for name, s := range map[string]string{
		"empty":                   "",
		"plain text":              "secret",
		"sha512 variant":          strings.Replace(good, "sha256", "sha512", 1),
		"999 rounds":              strings.Replace(good, "$1000$", "$999$", 1),
		"10,000,001 rounds":       strings.Replace(good, "$1000$", "$10000001$", 1),
		"rounds with a 0 in lead": strings.Replace(good, "$1000$", "$01000$", 1),
		"rounds with a sign":      strings.Replace(good, "$1000$", "$+1000$", 1),
		"rounds not a number":     strings.Replace(good, "$1000$", "$1e4$", 1),
		"salt with '+'":           strings.Replace(good, "2tub", "2t+b", 1),
		"salt padded":             strings.Replace(good, salt, salt+"==", 1),
		"salt not canonical":      strings.Replace(good, salt, flipLastBits(salt), 1),
		"checksum short":          good[:len(good)-1],
		"checksum long":           good + "A",
		"checksum not canonical":  good[:len(good)-1] + "N",
		"extra field":             good + "$x",
		"trailing newline":        good + "\n",
		"salt over 1 KiB":         strings.Replace(good, salt, strings.Repeat("A", 1368), 1),
	} {
		if _, err := parseHash(s); err == nil {
			t.Errorf("%s: %q accepted", name, s)
		}
	}
}

func TestParseUsersRejects(t *testing.T) {
	t.Parallel()
	const hash = `"$pbkdf2-sha256$1000$2tub854TIqRUKkWolTJmbA$o6m2aIb80BWvozwf8kj7vNqrkGbi.z5H6HXJJhuVTeM"`
	tests := []struct{ name, file, want string }{
		{"not JSON", `[{`, "unexpected EOF"},
		{"not a list", `{"username":"bob"}`, "cannot unmarshal"},
		{"data after the list", `[]x`, "data after the array"},
		{"unknown field", `[{"username":"bob","hashed_password":` + hash + `,"admin":true}]`, `unknown field "admin"`},
		{"no username", `[{"hashed_password":` + hash + `}]`, "user #1: username is required"},
		{"null user", `[null]`, "user #1: username is required"},
		{"username over 256 bytes", `[{"username":"` + strings.Repeat("x", 257) + `","hashed_password":` + hash + `}]`, "user #1: username is required, at most 256 bytes"},
		{"no hash", `[{"username":"bob"}]`, `user "bob": hashed_password`},
		{"malformed hash", `[{"username":"bob","hashed_password":"secret"}]`, `user "bob": hashed_password`},
		{"rounds too low", `[{"username":"bob","hashed_password":` + strings.Replace(hash, "$1000$", "$999$", 1) + `}]`, `user "bob": hashed_password: rounds 999`},
		{"rounds too high", `[{"username":"bob","hashed_password":` + strings.Replace(hash, "$1000$", "$20000000$", 1) + `}]`, `user "bob": hashed_password: rounds 20000000`},
		{"unknown scope", `[{"username":"bob","hashed_password":` + hash + `,"scopes":["me","admin"]}]`, `user "bob": unknown scope "admin"`},
		{"duplicate", `[{"username":"bob","hashed_password":` + hash + `},{"username":"bob","hashed_password":` + hash + `}]`, `user "bob": listed twice`},
	}
	for _, tt := range tests {
		if _, err := parseUsers([]byte(tt.file), discardLog); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error with %q", tt.name, err, tt.want)
		}
	}
	users, err := parseUsers([]byte(`[{"username":"bob","hashed_password":`+hash+`}]`), discardLog)
	if u := users["bob"]; err != nil || u.Disabled || u.Email != nil || u.FullName != nil || len(u.Scopes) != 0 {
		t.Errorf("defaults: got %+v, %v", u, err)
	}
}

// TestDummyHashCost: an unknown username is checked against a hash of the
// cost most users have, so its timing matches theirs (SPEC §6).
func TestDummyHashCost(t *testing.T) {
	t.Parallel()
	users := map[string]*user{}
	for i, rounds := range []int{1000, 5000, 5000, 700_000} {
		users[fmt.Sprint(i)] = &user{hash: passwordHash{rounds: rounds}}
	}
	if got := dummyHash(users).rounds; got != 5000 {
		t.Errorf("dummy rounds %d, want 5000", got)
	}
	if got := dummyHash(nil).rounds; got != defaultRounds {
		t.Errorf("no users: dummy rounds %d, want %d", got, defaultRounds)
	}
	tie := map[string]*user{"a": {hash: passwordHash{rounds: 1000}}, "b": {hash: passwordHash{rounds: 5000}}}
	for range 20 { // map order varies: the tie must always go to the costlier
		if got := dummyHash(tie).rounds; got != 5000 {
			t.Fatalf("tie: dummy rounds %d, want 5000", got)
		}
	}
}

// TestDummyHashNeverLogsIn: even if a password matched the dummy hash, an
// unknown username gets invalid_grant, never a token.
func TestDummyHashNeverLogsIn(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	h, _ := parseHash(loadVectors(t).Hashes[0].Hash) // "correct horse", 1000 rounds
	env.cfg.dummyHash = h
	a := login(t, env.serve(t), "nobody", "correct horse", "")
	if a.status != 400 || a.json["error"] != codeInvalidGrant {
		t.Errorf("got %s", a)
	}
}

// TestThrottleWindows walks SPEC §6's schedule on the fake clock: five
// failures lock for 1 s, each further failure doubles the window up to
// 15 min, refused attempts neither count nor extend it, success resets.
func TestThrottleWindows(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	srv := env.serve(t)
	attempt := func(user, password string) answer { return login(t, srv, user, password, "") }
	for _, name := range []string{"johndoe", "nobody"} { // known or not
		for i := range 5 {
			if a := attempt(name, "wrong"); a.status != 400 {
				t.Fatalf("%s failure %d: %s", name, i+1, a)
			}
		}
		// Locked for 1 s: even the right password is not checked.
		for range 3 {
			if a := attempt(name, "secret"); a.status != 429 || a.json["error"] != codeSlowDown || a.header.Get("Retry-After") != "1" {
				t.Fatalf("%s locked: %s Retry-After %q", name, a, a.header.Get("Retry-After"))
			}
		}
	}
	if a := attempt("bob", "hunter2"); a.status != 200 {
		t.Fatalf("another user is throttled too: %s", a)
	}
	for i, window := range []int{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900} {
		env.clock.advance(time.Duration(window/2) * time.Second)
		if a := attempt("johndoe", "wrong"); a.status != 429 {
			t.Fatalf("step %d: still locked at half the window: %s", i, a)
		}
		env.clock.advance(time.Duration(window-window/2) * time.Second)
		if a := attempt("johndoe", "wrong"); a.status != 400 {
			t.Fatalf("step %d: window over, want a checked failure: %s", i, a)
		}
		if a := attempt("johndoe", "wrong"); a.header.Get("Retry-After") != fmt.Sprint(window*2) && !(window*2 > 900 && a.header.Get("Retry-After") == "900") {
			t.Fatalf("step %d: Retry-After %q, want %d (at most 900)", i, a.header.Get("Retry-After"), window*2)
		}
	}
	env.clock.advance(maxLock)
	if a := attempt("johndoe", "secret"); a.status != 200 {
		t.Fatalf("right password after the window: %s", a)
	}
	for i := range 4 { // success reset the count: four failures do not lock
		if a := attempt("johndoe", "wrong"); a.status != 400 {
			t.Fatalf("failure %d after success: %s", i+1, a)
		}
	}
	if a := attempt("johndoe", "secret"); a.status != 200 {
		t.Fatalf("after four failures: %s", a)
	}
}

// TestThrottleBounded: the table holds at most maxThrottled names, and
// spraying new names evicts only names that are not locked.
func TestThrottleBounded(t *testing.T) {
	t.Parallel()
	th := &throttle{}
	for range lockAfter {
		th.record("victim", false, testStart)
	}
	th.record("half-way", false, testStart)
	for i := range 3 * maxThrottled {
		th.record(fmt.Sprint("spray-", i), false, testStart)
		if len(th.entries) > maxThrottled {
			t.Fatalf("table holds %d names", len(th.entries))
		}
	}
	if th.wait("victim", testStart) != firstLock {
		t.Error("spraying evicted a locked name")
	}
	// With every slot locked, a new name goes untracked: never a panic,
	// never an eviction.
	full := &throttle{}
	for i := range maxThrottled {
		for range lockAfter {
			full.record(fmt.Sprint(i), false, testStart)
		}
	}
	full.record("newcomer", false, testStart)
	if len(full.entries) != maxThrottled || full.wait("0", testStart) == 0 {
		t.Errorf("full table: %d entries", len(full.entries))
	}
}

// TestHashPoolSaturated: with every hash slot and queue place taken,
// logins get 503 with Retry-After at once, are not counted as failures,
// and the protected endpoints keep answering.
func TestHashPoolSaturated(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	env.cfg.hashes = newHashPool(1, 1)
	srv := env.serve(t)
	release := make(chan struct{})
	started := make(chan struct{})
	for range 2 { // one running, one queued
		go env.cfg.hashes.do(nil, func() { started <- struct{}{}; <-release })
	}
	<-started
	for len(env.cfg.hashes.admitted) < 2 {
		time.Sleep(time.Millisecond) // until the second is queued
	}
	for i := range 2 * lockAfter {
		a := login(t, srv, "johndoe", "wrong", "")
		if a.status != 503 || a.json["error"] != codeTemporarilyUnavail || a.header.Get("Retry-After") != "1" {
			t.Fatalf("attempt %d: %s Retry-After %q", i, a, a.header.Get("Retry-After"))
		}
	}
	if a := login(t, srv, "nobody", "x", ""); a.status != 503 {
		t.Errorf("unknown user skipped the hash: %s", a)
	}
	token := env.mint(t, "johndoe", time.Hour, "me")
	if a := get(t, srv, "/users/me/", "Bearer "+token); a.status != http.StatusOK {
		t.Errorf("protected endpoint while logins are saturated: %s", a)
	}
	close(release)
	<-started
	for len(env.cfg.hashes.admitted) > 0 {
		time.Sleep(time.Millisecond)
	}
	if a := login(t, srv, "johndoe", "secret", ""); a.status != 200 {
		t.Errorf("503s were counted as failures: %s", a)
	}
}
