package main

// HS256 JWTs (RFC 7519, RFC 7515 compact form) with crypto/hmac; no HTTP,
// users or scopes here. A token not exactly as an honest signer makes it is refused.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	maxTokenBytes   = 8 << 10                                // bounds a token's work; we never mint one longer
	maxCachedTokens = 4096                                   // bounds tokenCache: at most 4 MiB of tokens
	jwtHeader       = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" // {"alg":"HS256","typ":"JWT"}: no parsing needed
)

// Why a token was refused: logged, never shown (clients get one 401).
var (
	errTokenMalformed   = errors.New("token: malformed")
	errTokenAlgorithm   = errors.New("token: algorithm or crit not accepted")
	errTokenSignature   = errors.New("token: signature mismatch")
	errTokenClaims      = errors.New("token: invalid claims")
	errTokenExpired     = errors.New("token: expired")
	errTokenNotYetValid = errors.New("token: not yet valid")
)

// b64 is base64url without padding (RFC 7515 §2); Strict skips CR and LF.
var b64 = base64.RawURLEncoding.Strict()

// claims: who (RFC 7519 §4.1.2), which scopes, and when (§4.1.4-6).
type claims struct {
	Subject                        string
	Scopes                         []string
	IssuedAt, NotBefore, ExpiresAt time.Time
}

// validAt applies exp and nbf with no leeway (RFC 7519 §4.1.4, §4.1.5).
func (c *claims) validAt(now time.Time) error {
	if !now.Before(c.ExpiresAt) {
		return errTokenExpired
	} else if now.Before(c.NotBefore) {
		return errTokenNotYetValid
	}
	return nil
}

// hmacKey pools HMAC states: hmac.New costs allocations and two hash blocks.
type hmacKey struct{ states sync.Pool }

func newHMACKey(secret []byte) *hmacKey {
	secret = bytes.Clone(secret)
	return &hmacKey{sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}}
}

// sum appends the HMAC-SHA256 of data to dst.
func (k *hmacKey) sum(dst, data []byte) []byte {
	h := k.states.Get().(hash.Hash)
	defer k.states.Put(h)
	h.Reset()
	h.Write(data)
	return h.Sum(dst)
}

// signToken returns c as a compact JWS (RFC 7515 §7.1). Scopes go in the
// space-separated "scope" claim (RFC 8693 §4.2), left out when empty. A
// subject of at most 256 bytes (as users files allow) keeps it under 8 KiB.
func signToken(key *hmacKey, c claims) string {
	payload, _ := json.Marshal(struct { // cannot fail: strings and integers
		Sub   string `json:"sub"`
		Scope string `json:"scope,omitempty"`
		Iat   int64  `json:"iat"`
		Exp   int64  `json:"exp"`
	}{c.Subject, strings.Join(c.Scopes, " "), c.IssuedAt.Unix(), c.ExpiresAt.Unix()})
	buf := b64.AppendEncode([]byte(jwtHeader+"."), payload)
	var mac [sha256.Size]byte
	return string(b64.AppendEncode(append(buf, '.'), key.sum(mac[:0], buf)))
}

// verifyToken returns token's claims if valid at now under one of keys.
// Nothing is parsed before the HS256 MAC is checked in constant time (RFC
// 8725 §3.1); then alg must be HS256 and crit absent (RFC 7515 §4.1.11).
// No member (kid, jku, jwk, x5u, x5c) ever selects or fetches a key.
func verifyToken(token string, keys []*hmacKey, now time.Time) (claims, error) {
	// strings.Cut, never Split: many dots cost nothing (CVE-2025-30204).
	header, rest, ok1 := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	switch {
	case len(token) > maxTokenBytes || !ok1 || !ok2 || strings.Contains(sig, "."):
		return claims{}, fmt.Errorf("over 8 KiB or not three segments: %w", errTokenMalformed)
	case !macMatches([]byte(token[:len(header)+1+len(payload)]), sig, keys):
		return claims{}, errTokenSignature
	}
	if header != jwtHeader {
		h, err := readObject(header, "alg", "crit")
		if err != nil {
			return claims{}, fmt.Errorf("header: %w", err)
		}
		if alg, ok := jsonString(h[0]); !ok || alg != "HS256" || h[1] != nil {
			return claims{}, errTokenAlgorithm
		}
	}
	c, err := parseClaims(payload)
	if err == nil {
		err = c.validAt(now)
	}
	return c, err
}

// macMatches reports whether sig is the canonical base64url of the HMAC of
// signingInput under one of keys; other spellings of those bytes fail.
func macMatches(signingInput []byte, sig string, keys []*hmacKey) bool {
	var mac [sha256.Size]byte
	var want [43]byte // the unpadded base64 of 32 bytes
	for _, k := range keys {
		b64.Encode(want[:], k.sum(mac[:0], signingInput))
		if subtle.ConstantTimeCompare(want[:], []byte(sig)) == 1 {
			return true
		}
	}
	return false
}

// parseClaims reads claims by exact name, each of one JSON type: sub a
// non-empty string; exp (required), nbf and iat numbers (a numeric string,
// null or bool is no NumericDate, RFC 7519 §2); either "scope", space-
// separated (RFC 8693 §4.2), or, as the FastAPI example mints, "scopes", a
// list of non-empty strings.
func parseClaims(segment string) (claims, error) {
	m, err := readObject(segment, "sub", "exp", "nbf", "iat", "scope", "scopes")
	if err != nil {
		return claims{}, fmt.Errorf("payload: %w", err)
	}
	var c claims
	var ok [5]bool
	c.Subject, ok[0] = jsonString(m[0])
	c.ExpiresAt, ok[1] = jsonTime(m[1])
	c.NotBefore, ok[2] = jsonTime(m[2])
	c.IssuedAt, ok[3] = jsonTime(m[3])
	if scope, list := m[4], m[5]; scope != nil {
		var s string
		s, ok[4] = jsonString(scope)
		c.Scopes, ok[4] = strings.Fields(s), ok[4] && list == nil
	} else { // null reads as "", so an empty entry is refused too
		ok[4] = list == nil || list[0] == '[' && json.Unmarshal(list, &c.Scopes) == nil && !slices.Contains(c.Scopes, "")
	}
	if c.Subject == "" || m[1] == nil || slices.Contains(ok[:], false) {
		return claims{}, fmt.Errorf("sub, exp, nbf, iat or scope missing or mistyped: %w", errTokenClaims)
	}
	return c, nil
}

// readObject decodes canonical base64url (RFC 4648 §5: no padding or white
// space, zero unused bits) holding a JSON object, and returns the raw values
// of the members named in want, by exact name. A repeated name refuses it:
// parsers that disagree about a token are how tokens get forged.
func readObject(segment string, want ...string) ([][]byte, error) {
	data, err := b64.DecodeString(segment)
	if err != nil || strings.ContainsAny(segment, "\r\n") {
		return nil, fmt.Errorf("not canonical base64url: %w", errTokenMalformed)
	}
	const space = " \t\n\r" // RFC 8259 §2
	skip := func(i int, chars string) int { return len(data) - len(bytes.TrimLeft(data[i:], chars)) }
	if !json.Valid(data) || data[skip(0, space)] != '{' {
		return nil, fmt.Errorf("not a JSON object: %w", errTokenMalformed)
	}
	values, names := make([][]byte, len(want)), make([][]byte, 0, 8)
	for i := skip(0, space+"{"); data[i] != '}'; i = skip(i, space+",") { // i: at a name
		end := valueEnd(data, i)
		name := data[i+1 : end-1]
		if !plainString(name) {
			s, _ := jsonString(data[i:end])
			name = []byte(s)
		}
		for _, seen := range names { // quadratic, but only MAC-checked objects get here
			if bytes.Equal(name, seen) {
				return nil, fmt.Errorf("repeated member: %w", errTokenMalformed)
			}
		}
		names = append(names, name)
		i = skip(end, space+":")
		end = valueEnd(data, i)
		for j, w := range want {
			if string(name) == w {
				values[j] = data[i:end]
			}
		}
		i = end
	}
	return values, nil
}

// valueEnd returns the index just past the JSON value at i: in data that
// passed json.Valid, the first delimiter outside strings and brackets.
func valueEnd(data []byte, i int) int {
	for depth := 0; i < len(data); i++ {
		switch data[i] {
		case '"':
			for i++; data[i] != '"'; i++ {
				if data[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth < 0 {
				return i
			}
		case ',', ':', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return i
}

// jsonString reads a JSON string; plainString ones need no decoding (no
// escapes, valid UTF-8, which encoding/json would replace with U+FFFD).
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if plainString(raw) {
		return string(raw[1 : len(raw)-1]), true // json.Valid vouched for it
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

func plainString(b []byte) bool { return bytes.IndexByte(b, '\\') < 0 && utf8.Valid(b) }

// jsonTime reads a NumericDate, clamped to ±2^40 s to fit; nil is zero time.
func jsonTime(raw []byte) (time.Time, bool) {
	if raw == nil || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return time.Time{}, raw == nil // absent is fine; a string, bool or null is not
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	f = max(-1<<40, min(1<<40, f))
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), err == nil
}

// tokenCache remembers verified tokens (at most maxCachedTokens of 1 KiB),
// so a token sent again skips the MAC and JSON. A hit needs the same bytes,
// under keys fixed for the process's life; exp and nbf are checked anew.
type tokenCache struct {
	mu     sync.RWMutex
	claims map[string]claims
}

// verify is verifyToken, remembered.
func (tc *tokenCache) verify(token string, keys []*hmacKey, now time.Time) (claims, error) {
	tc.mu.RLock()
	c, hit := tc.claims[token]
	tc.mu.RUnlock()
	if hit {
		return c, c.validAt(now)
	}
	c, err := verifyToken(token, keys, now)
	if err == nil && len(token) <= 1<<10 {
		tc.mu.Lock()
		if tc.claims == nil || len(tc.claims) >= maxCachedTokens {
			tc.claims = make(map[string]claims) // simpler than LRU; refilling costs a check per token
		}
		tc.claims[strings.Clone(token)] = c
		tc.mu.Unlock()
	}
	return c, err
}
