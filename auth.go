package main

// Users, password hashing, login protection and the scope-checking wrapper.

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// scopeDescriptions is the service's scope table (RFC 6749 §3.3): the only
// scopes a users file may grant and a client may ask for.
var scopeDescriptions = map[string]string{
	scopeMe:    "Read information about the current user.",
	scopeItems: "Read items.",
}

// user is one account, as the users file spells it.
type user struct {
	Username       string   `json:"username"`
	FullName       *string  `json:"full_name"`
	Email          *string  `json:"email"`
	HashedPassword string   `json:"hashed_password"`
	Disabled       bool     `json:"disabled"`
	Scopes         []string `json:"scopes"` // what this user may be granted
	hash           passwordHash
}

// demoUsers are the built-in accounts of the FastAPI example, for trying
// the service out: johndoe/secret and alice/secret2 (disabled). Their
// hashes were made by passlib 1.7.4 at the default cost.
const demoUsers = `[
{"username": "johndoe", "full_name": "John Doe", "email": "johndoe@example.com", "scopes": ["me", "items"],
 "hashed_password": "$pbkdf2-sha256$600000$DuE8R8hZK0VIqRUiJGSsVQ$gB9/5.oXgxEYu9eahDDA.MSvT4ANpiVhjePb01lUc4Y"},
{"username": "alice", "full_name": "Alice Wonderson", "email": "alice@example.com", "scopes": ["me"], "disabled": true,
 "hashed_password": "$pbkdf2-sha256$600000$0Lp3jrEWQmgNQajV2vu/9w$QFM3Briq4tj4VK0Lb2X/ODKzsqkCUejnfkLv2e2bMas"}]`

// parseUsers reads a users file (a JSON array of users). Anything doubtful
// is an error naming the user, so a typo cannot quietly lock someone out or
// grant a scope nobody defined.
func parseUsers(data []byte) (map[string]*user, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var list []*user
	if err := dec.Decode(&list); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the JSON array")
	}
	users := make(map[string]*user, len(list))
	for i, u := range list {
		if u == nil || u.Username == "" {
			return nil, fmt.Errorf("user #%d: username is required", i+1)
		}
		if _, dup := users[u.Username]; dup {
			return nil, fmt.Errorf("user %q: listed twice", u.Username)
		}
		h, err := parseHash(u.HashedPassword)
		if err != nil {
			return nil, fmt.Errorf("user %q: hashed_password: %w", u.Username, err)
		}
		for _, s := range u.Scopes {
			if _, ok := scopeDescriptions[s]; !ok {
				return nil, fmt.Errorf("user %q: unknown scope %q", u.Username, s)
			}
		}
		u.hash = h
		users[u.Username] = u
	}
	return users, nil
}

// Password hashing: PBKDF2-HMAC-SHA256 (RFC 8018 §5.2) in passlib's
// pbkdf2_sha256 format, so hashes move between this service and Python.
const (
	defaultRounds = 600_000    // OWASP's figure for PBKDF2-HMAC-SHA256
	minRounds     = 1_000      // passlib's own floor
	maxRounds     = 10_000_000 // caps what a users file can make a login cost
	saltBytes     = 16
	keyBytes      = 32
)

// passwordHash is a parsed "$pbkdf2-sha256$<rounds>$<salt>$<checksum>".
type passwordHash struct {
	rounds    int
	salt, key []byte
}

// hashFormat is the canonical shape: rounds without sign or leading zero,
// salt and checksum in passlib's "ab64" (standard base64, '.' for '+', no
// padding).
var hashFormat = regexp.MustCompile(`^\$pbkdf2-sha256\$([1-9][0-9]{0,7})\$([A-Za-z0-9./]*)\$([A-Za-z0-9./]{43})$`)

// ab64 is passlib's base64 variant: the standard alphabet with '.' for '+'.
var ab64 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./").WithPadding(base64.NoPadding).Strict()

// hashPassword returns the encoded hash of password; salt should be
// saltBytes from crypto/rand (RFC 8018 §4.1).
func hashPassword(password string, salt []byte, rounds int) (string, error) {
	key, err := pbkdf2.Key(sha256.New, password, salt, rounds, keyBytes)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("$pbkdf2-sha256$%d$%s$%s", rounds, ab64.EncodeToString(salt), ab64.EncodeToString(key)), nil
}

// parseHash reads an encoded hash, refusing a cost outside what we are
// willing to spend per login.
func parseHash(s string) (passwordHash, error) {
	m := hashFormat.FindStringSubmatch(s)
	if m == nil {
		return passwordHash{}, errors.New("not a $pbkdf2-sha256$ hash")
	}
	rounds, _ := strconv.Atoi(m[1]) // the pattern admits only 1 to 8 digits
	if rounds < minRounds || rounds > maxRounds {
		return passwordHash{}, fmt.Errorf("rounds %d outside %d-%d", rounds, minRounds, maxRounds)
	}
	salt, err1 := ab64.DecodeString(m[2])
	key, err2 := ab64.DecodeString(m[3])
	if err1 != nil || err2 != nil || len(salt) > 1024 {
		return passwordHash{}, errors.New("salt or checksum is not canonical ab64")
	}
	return passwordHash{rounds, salt, key}, nil
}

// matches reports whether password hashes to h, in constant time.
func (h passwordHash) matches(password string) bool {
	key, err := pbkdf2.Key(sha256.New, password, h.salt, h.rounds, len(h.key))
	return err == nil && subtle.ConstantTimeCompare(key, h.key) == 1
}

// dummyHash is what an unknown username is checked against: the cost most
// users have, so the answer's timing does not say whether a name exists.
func dummyHash(users map[string]*user) passwordHash {
	count := map[int]int{defaultRounds: 0}
	rounds := defaultRounds
	for _, u := range users {
		r := u.hash.rounds
		if count[r]++; count[r] > count[rounds] || count[r] == count[rounds] && r > rounds {
			rounds = r
		}
	}
	return passwordHash{rounds, make([]byte, saltBytes), make([]byte, keyBytes)}
}

// hashPool bounds password hashing: at most cap(running) hashes at once and
// cap(admitted) logins in or waiting for a slot, so a login flood neither
// takes every core from the protected endpoints nor queues without end.
type hashPool struct {
	admitted, running chan struct{}
}

func newHashPool(workers, queue int) *hashPool {
	return &hashPool{make(chan struct{}, workers+queue), make(chan struct{}, workers)}
}

// do runs f in a free slot. It answers errPoolFull at once when the queue
// is full, and gives up waiting if stop is closed (the client went away).
func (p *hashPool) do(stop <-chan struct{}, f func()) error {
	select {
	case p.admitted <- struct{}{}:
		defer func() { <-p.admitted }()
	default:
		return errPoolFull
	}
	select {
	case p.running <- struct{}{}:
		defer func() { <-p.running }()
	case <-stop:
		return errPoolFull
	}
	f()
	return nil
}

var errPoolFull = errors.New("password-hash queue is full")

// Login throttle, per username (known or not): after lockAfter consecutive
// failures, attempts are refused for a window that starts at firstLock and
// doubles with each further failure, up to maxLock.
const (
	lockAfter    = 5
	firstLock    = time.Second
	maxLock      = 15 * time.Minute
	maxThrottled = 10_000 // names tracked at once
)

// throttle counts failed logins. Names are kept as SHA-256 digests, so the
// table's memory is bounded whatever length of username is sprayed at it.
type throttle struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]*throttleEntry
}

type throttleEntry struct {
	failures    int
	lockedUntil time.Time
}

func newThrottle() *throttle {
	return &throttle{entries: make(map[[sha256.Size]byte]*throttleEntry)}
}

// wait returns how long name is still locked out at now; zero means go on.
func (t *throttle) wait(name string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[sha256.Sum256([]byte(name))]; e != nil && now.Before(e.lockedUntil) {
		return e.lockedUntil.Sub(now)
	}
	return 0
}

// record notes a password check's outcome: success forgets the name, a
// failure counts and, from the lockAfter-th on, locks it. When the table is
// full, names not locked at now are dropped; a locked name never is, and if
// every tracked name is locked a new one goes untracked until some expire.
func (t *throttle) record(name string, ok bool, now time.Time) {
	key := sha256.Sum256([]byte(name))
	t.mu.Lock()
	defer t.mu.Unlock()
	if ok {
		delete(t.entries, key)
		return
	}
	e := t.entries[key]
	if e == nil {
		if len(t.entries) >= maxThrottled {
			for k, old := range t.entries {
				if !now.Before(old.lockedUntil) {
					delete(t.entries, k)
				}
			}
			if len(t.entries) >= maxThrottled {
				return
			}
		}
		e = &throttleEntry{}
		t.entries[key] = e
	}
	e.failures++
	if e.failures >= lockAfter {
		e.lockedUntil = now.Add(min(maxLock, firstLock<<min(e.failures-lockAfter, 20)))
	}
}

// bearerToken extracts the token from the one Authorization field (RFC 6750
// §2.1; the scheme is case-insensitive, RFC 7235 §2.1). It never looks at
// the query string, body or cookies (RFC 6750 §2.2, §2.3; RFC 9700 §4.3.2).
// An empty token means no bearer credentials at all.
func bearerToken(r *http.Request) (token string, err error) {
	fields := r.Header.Values("Authorization")
	if len(fields) > 1 {
		return "", errors.New("several Authorization fields")
	}
	if len(fields) == 0 {
		return "", nil
	}
	scheme, rest, _ := strings.Cut(fields[0], " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", nil
	}
	return strings.TrimLeft(rest, " "), nil
}

// userHandler serves a request whose token and scopes have been checked.
type userHandler func(w http.ResponseWriter, r *http.Request, u *user)

// requireScopes guards an endpoint with RFC 6750's checks, in SPEC order:
// credentials present (401), token valid and its user known (401), every
// required scope granted (403, §3.1), and, if active is set, the user not
// disabled (400, as FastAPI answers). The handler only sees requests that
// passed.
func requireScopes(cfg *config, active bool, required ...string) func(userHandler) http.Handler {
	challenge := `Bearer error="invalid_token"`
	if len(required) > 0 {
		challenge += fmt.Sprintf(`, scope="%s"`, strings.Join(required, " "))
	}
	notAuthenticated := &apiError{status: http.StatusUnauthorized, detail: detailNotAuthenticated, authenticate: "Bearer"}
	invalid := &apiError{status: http.StatusUnauthorized, detail: detailInvalidCredentials, authenticate: challenge}
	forbidden := &apiError{status: http.StatusForbidden, detail: detailNotEnoughPermissions,
		authenticate: fmt.Sprintf(`Bearer error="insufficient_scope", scope="%s"`, strings.Join(required, " "))}
	inactive := &apiError{status: http.StatusBadRequest, detail: detailInactiveUser}
	return func(next userHandler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, err := bearerToken(r)
			if err != nil {
				writeError(w, invalid.because(err))
				return
			}
			if token == "" {
				writeError(w, notAuthenticated)
				return
			}
			c, err := cfg.verify(token)
			if err != nil {
				writeError(w, invalid.because(err))
				return
			}
			u := cfg.users[c.Subject]
			if u == nil {
				writeError(w, invalid.because(errors.New("token for an unknown user")))
				return
			}
			for _, s := range required {
				if !slices.Contains(c.Scopes, s) {
					writeError(w, forbidden)
					return
				}
			}
			if active && u.Disabled {
				writeError(w, inactive)
				return
			}
			next(w, r, u)
		})
	}
}
