package main

// Users, password hashes, login protection, and the scope-checking wrapper.

import (
	"bytes"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// scopeDescriptions is the scope table (RFC 6749 §3.3).
var scopeDescriptions = map[string]string{
	scopeMe:    "Read information about the current user.",
	scopeItems: "Read items.",
}

// user is one account of the users file; GET /users/me/ shows its profile.
type user struct {
	profile
	HashedPassword string   `json:"hashed_password"`
	Scopes         []string `json:"scopes"` // what the user may be granted
	hash           passwordHash
	profileJSON    []byte // the profile, encoded once
}

type profile struct {
	Username string  `json:"username"`
	Email    *string `json:"email"`
	FullName *string `json:"full_name"`
	Disabled bool    `json:"disabled"`
}

// demoUsers: johndoe/secret and alice/secret2 (disabled), hashed by passlib 1.7.4.
const demoUsers = `[
{"username": "johndoe", "full_name": "John Doe", "email": "johndoe@example.com", "scopes": ["me", "items"],
 "hashed_password": "$pbkdf2-sha256$600000$DuE8R8hZK0VIqRUiJGSsVQ$gB9/5.oXgxEYu9eahDDA.MSvT4ANpiVhjePb01lUc4Y"},
{"username": "alice", "full_name": "Alice Wonderson", "email": "alice@example.com", "scopes": ["me"], "disabled": true,
 "hashed_password": "$pbkdf2-sha256$600000$0Lp3jrEWQmgNQajV2vu/9w$QFM3Briq4tj4VK0Lb2X/ODKzsqkCUejnfkLv2e2bMas"}]`

// parseUsers reads a users file; anything doubtful is an error naming the user.
func parseUsers(data []byte, log *slog.Logger) (map[string]*user, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var list []*user
	if err := dec.Decode(&list); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the array")
	}
	users := make(map[string]*user, len(list))
	for i, u := range list {
		if u == nil || u.Username == "" || len(u.Username) > 256 { // so that tokens stay small
			return nil, fmt.Errorf("user #%d: username is required, at most 256 bytes", i+1)
		}
		if users[u.Username] != nil {
			return nil, fmt.Errorf("user %q: listed twice", u.Username)
		}
		var err error
		if u.hash, err = parseHash(u.HashedPassword); err != nil {
			return nil, fmt.Errorf("user %q: hashed_password: %w", u.Username, err)
		} else if u.hash.rounds < defaultRounds {
			log.Warn("password hash below 600000 rounds; rehash it with hash-password", "user", u.Username)
		}
		for _, s := range u.Scopes {
			if _, ok := scopeDescriptions[s]; !ok {
				return nil, fmt.Errorf("user %q: unknown scope %q", u.Username, s)
			}
		}
		profile, _ := json.Marshal(&u.profile) // cannot fail: strings and a bool
		u.profileJSON = append(profile, '\n')
		users[u.Username] = u
	}
	return users, nil
}

// Passwords: PBKDF2-HMAC-SHA256 (RFC 8018 §5.2) in passlib's pbkdf2_sha256 format.
const (
	defaultRounds = 600_000    // OWASP's figure for PBKDF2-HMAC-SHA256
	minRounds     = 1_000      // passlib's floor
	maxRounds     = 10_000_000 // caps what a users file can make one login cost
	saltBytes     = 16
)

// passwordHash is a parsed "$pbkdf2-sha256$<rounds>$<salt>$<checksum>"
// whose salt and checksum are in ab64, passlib's base64 with '.' for '+'.
type passwordHash struct {
	rounds    int
	salt, key []byte
}

var hashFormat = regexp.MustCompile(`^\$pbkdf2-sha256\$([1-9][0-9]{0,7})\$([A-Za-z0-9./]*)\$([A-Za-z0-9./]{43})$`)
var ab64 = base64.NewEncoding("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789./").WithPadding(base64.NoPadding).Strict()

// hashPassword encodes password's hash; salt comes from crypto/rand.
func hashPassword(password string, salt []byte, rounds int) (string, error) {
	key, err := pbkdf2.Key(sha256.New, password, salt, rounds, sha256.Size)
	return fmt.Sprintf("$pbkdf2-sha256$%d$%s$%s", rounds, ab64.EncodeToString(salt), ab64.EncodeToString(key)), err
}

// parseHash reads an encoded hash, refusing a cost we will not pay per login.
func parseHash(s string) (passwordHash, error) {
	m := hashFormat.FindStringSubmatch(s)
	if m == nil {
		return passwordHash{}, errors.New("not a $pbkdf2-sha256$ hash")
	}
	rounds, _ := strconv.Atoi(m[1]) // at most 8 digits: cannot fail
	if rounds < minRounds || rounds > maxRounds {
		return passwordHash{}, fmt.Errorf("rounds %d outside %d-%d", rounds, minRounds, maxRounds)
	}
	salt, err1 := ab64.DecodeString(m[2])
	key, err2 := ab64.DecodeString(m[3])
	if err1 != nil || err2 != nil || len(salt) > 1024 {
		return passwordHash{}, errors.New("salt or checksum is not canonical ab64, or salt over 1 KiB")
	}
	return passwordHash{rounds, salt, key}, nil
}

// matches reports whether password hashes to h, compared in constant time.
func (h passwordHash) matches(password string) bool {
	key, err := pbkdf2.Key(sha256.New, password, h.salt, h.rounds, len(h.key))
	return err == nil && subtle.ConstantTimeCompare(key, h.key) == 1
}

// dummyHash, for unknown names, costs what most users' do: timing tells nothing.
func dummyHash(users map[string]*user) passwordHash {
	count := map[int]int{defaultRounds: 0}
	rounds := defaultRounds
	for _, u := range users {
		r := u.hash.rounds
		if count[r]++; count[r] > count[rounds] || count[r] == count[rounds] && r > rounds {
			rounds = r
		}
	}
	return passwordHash{rounds, make([]byte, saltBytes), make([]byte, sha256.Size)}
}

// hashPool bounds hashes running and queued, so logins never starve token checks.
type hashPool struct{ admitted, running chan struct{} }

var errPoolFull = errors.New("password-hash queue full")

func newHashPool(workers, queue int) *hashPool {
	return &hashPool{make(chan struct{}, workers+queue), make(chan struct{}, workers)}
}

// do runs f in a hash slot; it fails if the queue is full, or stop closes.
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

// SPEC §6: lockAfter failures lock a name for firstLock, doubling each time to maxLock.
const (
	lockAfter    = 5
	firstLock    = time.Second
	maxLock      = 15 * time.Minute
	maxThrottled = 10_000 // names tracked at once
)

// throttle counts names' failed logins, keyed by SHA-256 to bound memory.
type throttle struct {
	mu      sync.Mutex
	entries map[[sha256.Size]byte]throttleEntry
}

type throttleEntry struct {
	failures    int
	lockedUntil time.Time
}

// wait returns how long name stays locked after now; zero means go on.
func (t *throttle) wait(name string, now time.Time) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	return max(0, t.entries[sha256.Sum256([]byte(name))].lockedUntil.Sub(now))
}

// record notes a password check: success forgets name, failure counts. A
// full table drops names not locked at now; if all are, a new name is not counted.
func (t *throttle) record(name string, ok bool, now time.Time) {
	key := sha256.Sum256([]byte(name))
	t.mu.Lock()
	defer t.mu.Unlock()
	e, known := t.entries[key]
	if ok {
		delete(t.entries, key)
		return
	}
	if t.entries == nil {
		t.entries = make(map[[sha256.Size]byte]throttleEntry)
	} else if !known && len(t.entries) >= maxThrottled {
		maps.DeleteFunc(t.entries, func(_ [sha256.Size]byte, old throttleEntry) bool { return !now.Before(old.lockedUntil) })
	}
	if known || len(t.entries) < maxThrottled {
		if e.failures++; e.failures >= lockAfter {
			e.lockedUntil = now.Add(min(maxLock, firstLock<<min(e.failures-lockAfter, 20)))
		}
		t.entries[key] = e
	}
}

// bearerToken returns the token of the one Authorization field (RFC 6750
// §2.1; case-insensitive scheme, RFC 9110 §11.1), "" if there is none.
// Never from the query, body or cookies (RFC 6750 §2.2-2.3, RFC 9700 §4.3.2).
func bearerToken(r *http.Request) (string, error) {
	fields := r.Header.Values("Authorization")
	if len(fields) > 1 {
		return "", errors.New("several Authorization fields")
	}
	scheme, token, _ := strings.Cut(strings.Join(fields, ""), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", nil
	}
	return strings.TrimLeft(token, " "), nil
}

var errUnknownUser = errors.New("token: no such user")

// userHandler serves a request that passed requireScopes, for its user.
type userHandler func(w http.ResponseWriter, r *http.Request, u *user)

// requireScopes runs SPEC §4's checks in order: credentials present (401),
// token valid for a known user (401), scopes granted (403 per RFC 6750
// §3.1; FastAPI: 401), and if active, the user not disabled (400).
func requireScopes(cfg *config, active bool, required ...string) func(userHandler) http.Handler {
	scope := ""
	if len(required) > 0 {
		scope = fmt.Sprintf(`, scope="%s"`, strings.Join(required, " "))
	}
	challenge := func(v string) http.Header { return http.Header{"Www-Authenticate": {v}} }
	missing := &apiError{status: http.StatusUnauthorized, detail: detailNotAuthenticated, header: challenge("Bearer")}
	invalid := &apiError{status: http.StatusUnauthorized, detail: detailInvalidCredentials, header: challenge(`Bearer error="invalid_token"` + scope)}
	forbidden := &apiError{status: http.StatusForbidden, detail: detailNotEnoughPermissions, header: challenge(`Bearer error="insufficient_scope"` + scope)}
	inactive := &apiError{status: http.StatusBadRequest, detail: detailInactiveUser}
	return func(next userHandler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			token, err := bearerToken(r)
			var c claims
			if err == nil && token != "" {
				c, err = cfg.tokens.verify(token, cfg.keys, cfg.now())
			}
			u := cfg.users[c.Subject]
			switch {
			case err == nil && token == "":
				writeError(w, missing)
			case err != nil:
				writeError(w, invalid.because(err))
			case u == nil:
				writeError(w, invalid.because(errUnknownUser))
			case slices.ContainsFunc(required, func(s string) bool { return !slices.Contains(c.Scopes, s) }):
				writeError(w, forbidden)
			case active && u.Disabled:
				writeError(w, inactive)
			default:
				next(w, r, u)
			}
		})
	}
}
