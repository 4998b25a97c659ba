package main

// HS256 JSON Web Tokens (RFC 7519 in RFC 7515's compact form), signed and
// verified with crypto/hmac. This file knows nothing of HTTP, users or the
// scope table: it turns claims into a token and back, and refuses every
// token that is not exactly what an honest signer would have produced.

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
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// maxTokenBytes bounds the work an untrusted token can demand; the
	// service never mints a token this long.
	maxTokenBytes = 8 << 10
	// maxMembers bounds the members of a header or claim set: ours have 4.
	maxMembers = 64
	// jwtHeader is the one header we sign with, {"alg":"HS256","typ":"JWT"},
	// encoded. A token carrying it needs no header parsing at all.
	jwtHeader = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
)

// Reasons a token is refused. They are logged, never shown: clients all
// get the same 401 invalid_token (RFC 6750 §3.1).
var (
	errTokenMalformed   = errors.New("token: malformed")
	errTokenAlgorithm   = errors.New("token: algorithm or critical header not accepted")
	errTokenSignature   = errors.New("token: signature mismatch")
	errTokenClaims      = errors.New("token: invalid claims")
	errTokenExpired     = errors.New("token: expired")
	errTokenNotYetValid = errors.New("token: not yet valid")
)

// b64 is base64url without padding (RFC 7515 §2); Strict refuses non-zero
// unused trailing bits.
var b64 = base64.RawURLEncoding.Strict()

// claims are what a token says: who (RFC 7519 §4.1.2), which scopes, and
// when it is valid (§4.1.4-6).
type claims struct {
	Subject                        string
	Scopes                         []string
	IssuedAt, NotBefore, ExpiresAt time.Time
}

// validAt applies exp and nbf at now with no leeway: a token is valid
// from NotBefore up to, not including, ExpiresAt (RFC 7519 §4.1.4, §4.1.5).
func (c *claims) validAt(now time.Time) error {
	if !now.Before(c.ExpiresAt) {
		return errTokenExpired
	}
	if now.Before(c.NotBefore) {
		return errTokenNotYetValid
	}
	return nil
}

// hmacKey is one HS256 key. hmac.New costs allocations and two hash blocks
// of key setup; pooled states skip both, and each goroutine gets its own.
type hmacKey struct{ states sync.Pool }

func newHMACKey(secret []byte) *hmacKey {
	secret = bytes.Clone(secret)
	k := &hmacKey{}
	k.states.New = func() any { return hmac.New(sha256.New, secret) }
	return k
}

// sum appends the HMAC-SHA256 of data under k to dst.
func (k *hmacKey) sum(dst, data []byte) []byte {
	h := k.states.Get().(hash.Hash)
	h.Reset()
	h.Write(data)
	dst = h.Sum(dst)
	k.states.Put(h)
	return dst
}

// signToken returns the compact JWS of c (RFC 7515 §7.1): header, payload
// and HMAC-SHA256 of the two. Scopes go in the space-separated "scope"
// claim (RFC 8693 §4.2), left out when there are none.
func signToken(key *hmacKey, c claims) (string, error) {
	payload, err := json.Marshal(struct {
		Sub   string `json:"sub"`
		Scope string `json:"scope,omitempty"`
		Iat   int64  `json:"iat"`
		Exp   int64  `json:"exp"`
	}{c.Subject, strings.Join(c.Scopes, " "), c.IssuedAt.Unix(), c.ExpiresAt.Unix()})
	if err != nil {
		return "", err // unreachable: the struct always encodes
	}
	buf := make([]byte, 0, len(jwtHeader)+2+b64.EncodedLen(len(payload))+b64.EncodedLen(sha256.Size))
	buf = append(buf, jwtHeader+"."...)
	buf = b64.AppendEncode(buf, payload)
	var mac [sha256.Size]byte
	buf = b64.AppendEncode(append(buf, '.'), key.sum(mac[:0], buf))
	if len(buf) > maxTokenBytes {
		return "", fmt.Errorf("token of %d bytes is over %d", len(buf), maxTokenBytes)
	}
	return string(buf), nil
}

// verifyToken checks token under keys (signing key first, then retired
// ones) and returns its claims, valid at now. The order is RFC 8725's: the
// algorithm is pinned (§3.1), the MAC is compared in constant time before
// the payload is even decoded, and only then are claims read (§3.9). No
// header member (kid, jku, jwk, x5u, x5c) selects or fetches a key.
func verifyToken(token string, keys []*hmacKey, now time.Time) (claims, error) {
	if len(token) > maxTokenBytes {
		return claims{}, fmt.Errorf("over %d bytes: %w", maxTokenBytes, errTokenMalformed)
	}
	// strings.Cut, never Split: many dots cost nothing (CVE-2025-30204).
	header, rest, ok1 := strings.Cut(token, ".")
	payload, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return claims{}, fmt.Errorf("not three segments: %w", errTokenMalformed)
	}
	if err := checkHeader(header); err != nil {
		return claims{}, err
	}
	signingInput := []byte(token[:len(header)+1+len(payload)])
	if !macMatches(signingInput, sig, keys) {
		return claims{}, errTokenSignature
	}
	body, err := decodeSegment(payload)
	if err != nil {
		return claims{}, fmt.Errorf("payload: %w", err)
	}
	c, err := parseClaims(body)
	if err != nil {
		return claims{}, err
	}
	return c, c.validAt(now)
}

// macMatches reports whether sig is the base64url HMAC of signingInput
// under one of keys. Comparing against the canonical encoding, in constant
// time, also refuses every other spelling of the same bytes (padding,
// non-zero trailing bits, '+', '/', white space).
func macMatches(signingInput []byte, sig string, keys []*hmacKey) bool {
	var mac [sha256.Size]byte
	var want [43]byte // base64url of 32 bytes, unpadded
	got := []byte(sig)
	for _, k := range keys {
		b64.Encode(want[:], k.sum(mac[:0], signingInput))
		if subtle.ConstantTimeCompare(want[:], got) == 1 {
			return true
		}
	}
	return false
}

// decodeSegment decodes canonical base64url without padding (RFC 7515 §2,
// RFC 4648 §5): only the 64 URL-safe characters (Strict would skip CR and
// LF), zero unused bits, so each byte string has exactly one encoding.
func decodeSegment(s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return nil, fmt.Errorf("byte %d is not base64url: %w", i, errTokenMalformed)
		}
	}
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("base64url: %w", errTokenMalformed)
	}
	return b, nil
}

// checkHeader accepts a JOSE header whose alg is exactly "HS256" and with
// no crit (RFC 7515 §4.1.11: we understand no extensions, so any crit
// refuses the token). Every other member is ignored, never followed.
func checkHeader(segment string) error {
	if segment == jwtHeader {
		return nil
	}
	raw, err := decodeSegment(segment)
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	m, err := readObject(raw, "alg", "crit")
	if err != nil {
		return fmt.Errorf("header: %w", err)
	}
	if alg, ok := jsonString(m[0]); !ok || alg != "HS256" {
		return fmt.Errorf("alg is not HS256: %w", errTokenAlgorithm)
	}
	if m[1] != nil {
		return fmt.Errorf("crit header: %w", errTokenAlgorithm)
	}
	return nil
}

// parseClaims reads a claim set by exact member names, each of its one
// JSON type: sub a non-empty string, exp a number (required), nbf and iat
// numbers when present (a numeric string, null or bool is no NumericDate,
// RFC 7519 §2). Scopes come from "scope", a space-separated string, or,
// in tokens the FastAPI example minted, "scopes", a list; never both.
func parseClaims(payload []byte) (claims, error) {
	m, err := readObject(payload, "sub", "exp", "nbf", "iat", "scope", "scopes")
	if err != nil {
		return claims{}, fmt.Errorf("claims: %w", err)
	}
	var c claims
	var ok bool
	if c.Subject, ok = jsonString(m[0]); !ok || c.Subject == "" {
		return claims{}, fmt.Errorf("sub is not a non-empty string: %w", errTokenClaims)
	}
	if m[1] == nil {
		return claims{}, fmt.Errorf("no exp: %w", errTokenClaims)
	}
	for i, t := range []*time.Time{&c.ExpiresAt, &c.NotBefore, &c.IssuedAt} {
		if m[1+i] != nil {
			if *t, ok = jsonTime(m[1+i]); !ok {
				return claims{}, fmt.Errorf("exp, nbf or iat is not a number: %w", errTokenClaims)
			}
		}
	}
	switch scope, list := m[4], m[5]; {
	case scope != nil && list != nil:
		return claims{}, fmt.Errorf("both scope and scopes: %w", errTokenClaims)
	case scope != nil:
		s, ok := jsonString(scope)
		if !ok {
			return claims{}, fmt.Errorf("scope is not a string: %w", errTokenClaims)
		}
		c.Scopes = strings.Fields(s)
	case list != nil:
		var items []json.RawMessage
		if list[0] != '[' || json.Unmarshal(list, &items) != nil {
			return claims{}, fmt.Errorf("scopes is not a list: %w", errTokenClaims)
		}
		for _, item := range items {
			s, ok := jsonString(item)
			if !ok {
				return claims{}, fmt.Errorf("scopes holds a non-string: %w", errTokenClaims)
			}
			c.Scopes = append(c.Scopes, s)
		}
	}
	return c, nil
}

// readObject parses data, which must be one JSON object, and returns the
// raw values of the members named in want, by exact, case-sensitive name
// (nil where absent). A duplicate name refuses the object: RFC 7519 §4
// lets a parser take the last instead, and two parsers that disagree
// about one token are how tokens get forged.
func readObject(data []byte, want ...string) ([][]byte, error) {
	if !json.Valid(data) {
		return nil, fmt.Errorf("invalid JSON: %w", errTokenMalformed)
	}
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return nil, fmt.Errorf("not a JSON object: %w", errTokenMalformed)
	}
	values := make([][]byte, len(want))
	var seen [maxMembers][]byte
	for n, i := 0, skipSpace(data, i+1); data[i] == '"'; n, i = n+1, skipSpace(data, i+1) { // i: a member's name
		end := valueEnd(data, i)
		name := data[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			s, _ := jsonString(data[i:end])
			name = []byte(s)
		}
		for _, other := range seen[:n] {
			if bytes.Equal(name, other) {
				return nil, fmt.Errorf("duplicate member: %w", errTokenMalformed)
			}
		}
		if n == maxMembers {
			return nil, fmt.Errorf("over %d members: %w", maxMembers, errTokenMalformed)
		}
		seen[n] = name
		i = skipSpace(data, skipSpace(data, end)+1) // past the ':'
		end = valueEnd(data, i)
		for j, w := range want {
			if string(name) == w {
				values[j] = data[i:end]
			}
		}
		if i = skipSpace(data, end); data[i] == '}' {
			break
		}
	}
	return values, nil
}

// skipSpace returns the index of the first non-space byte at or after i
// (JSON's four white-space bytes, RFC 8259 §2).
func skipSpace(data []byte, i int) int {
	for i < len(data) && strings.IndexByte(" \t\n\r", data[i]) >= 0 {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value that starts at
// data[i]. data has passed json.Valid, so only strings and nesting need
// tracking: a scalar ends at the first delimiter after it.
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
			continue
		case '}', ']':
			if depth == 0 {
				return i // the end of the enclosing object
			}
			depth--
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
			continue
		default:
			continue
		}
		if depth == 0 {
			return i + 1
		}
	}
	return i
}

// jsonString returns raw as a Go string if it is a JSON string, not null.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

// jsonTime reads a NumericDate: a JSON number of seconds since the epoch,
// fractions allowed, saturated far beyond any meaningful token lifetime.
func jsonTime(raw []byte) (time.Time, bool) {
	if len(raw) == 0 || raw[0] != '-' && (raw[0] < '0' || raw[0] > '9') {
		return time.Time{}, false
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return time.Time{}, false
	}
	const limit = 1 << 40 // about 35,000 years
	f = max(-limit, min(limit, f))
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}
