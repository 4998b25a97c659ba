package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// vectors is testdata/vectors.json, minted by PyJWT and passlib
// (testdata/mint.py).
type vectors struct {
	Key    string
	Now    int64
	Tokens []struct {
		Name, Sub, Token string
		Scopes           []string
	}
	Hashes []struct {
		Name, Password, Hash string
		SaltHex              string `json:"salt_hex"`
	}
}

func loadVectors(t testing.TB) vectors {
	t.Helper()
	data, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRFC7515AppendixA1 checks the HS256 example of RFC 7515 Appendix A.1:
// its MAC verifies under its key, and its header (with CR LF and spaces
// inside the JSON) is accepted. The claims lack sub, so the token itself
// is refused, but for its claims, not its signature.
func TestRFC7515AppendixA1(t *testing.T) {
	t.Parallel()
	key, _ := base64.RawURLEncoding.DecodeString("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
	const token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9" +
		".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ" +
		".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	keys := []*hmacKey{newHMACKey(key)}
	i := strings.LastIndexByte(token, '.')
	if !macMatches([]byte(token[:i]), token[i+1:], keys) {
		t.Fatal("the RFC's signature does not verify")
	}
	_, err := verifyToken(token, keys, time.Unix(1300819379, 0))
	if !errors.Is(err, errTokenClaims) {
		t.Errorf("got %v, want %v (no sub)", err, errTokenClaims)
	}
}

// TestPyJWTTokens verifies tokens minted by PyJWT, the FastAPI example's
// library, and checks the claims read from them.
func TestPyJWTTokens(t *testing.T) {
	t.Parallel()
	v := loadVectors(t)
	keys := []*hmacKey{newHMACKey([]byte(v.Key))}
	for _, tt := range v.Tokens {
		c, err := verifyToken(tt.Token, keys, time.Unix(v.Now, 0))
		if err != nil || c.Subject != tt.Sub || !slices.Equal(c.Scopes, tt.Scopes) && len(tt.Scopes)+len(c.Scopes) > 0 {
			t.Errorf("%s: got %+v, %v; want sub %q scopes %v", tt.Name, c, err, tt.Sub, tt.Scopes)
		}
	}
}

// Example_signToken mints a token with a fixed key and clock. PyJWT 2.6's
// jwt.encode({"sub": "johndoe", "scope": "me items", "iat": 1700000000,
// "exp": 1700001800}, "example-key-0123456789-0123456789", algorithm="HS256")
// gives the same bytes, and its jwt.decode reads them back.
func Example_signToken() {
	key := newHMACKey([]byte("example-key-0123456789-0123456789"))
	now := time.Unix(1_700_000_000, 0)
	token := signToken(key, claims{Subject: "johndoe", Scopes: []string{"me", "items"}, IssuedAt: now, ExpiresAt: now.Add(30 * time.Minute)})
	fmt.Println(token)
	// Output: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJqb2huZG9lIiwic2NvcGUiOiJtZSBpdGVtcyIsImlhdCI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAxODAwfQ.1zcCTUW9A9tpU2mUpNb1Njyc4SsTReCsSBDKe1k_GOk
}

// forge builds a token from a raw header and payload, MACed under key with
// crypto/hmac directly (not signToken), so tests can make any token an
// honest key holder could, and many it never would.
func forge(header, payload, key string) string {
	enc := base64.RawURLEncoding.EncodeToString
	input := enc([]byte(header)) + "." + enc([]byte(payload))
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(input))
	return input + "." + enc(mac.Sum(nil))
}

// forgedTokens are the rows of TestVerifyTokenRejects, and the fuzz seeds.
// now is testStart; exp is an hour later.
func forgedTokens() []struct {
	name, token string
	want        error
} {
	const hs256 = `{"alg":"HS256","typ":"JWT"}`
	const claims = `{"sub":"johndoe","scope":"me","exp":1700003600}`
	valid := forge(hs256, claims, testKey)
	h, p, s := splitThree(valid)
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	withClaims := func(c string) string { return forge(hs256, c, testKey) }
	return []struct {
		name, token string
		want        error
	}{
		{"valid", valid, nil},
		{"valid, header members reordered with space", forge(`{ "typ" : "JWT", "alg" : "HS256" }`, claims, testKey), nil},
		{"kid, jku, jwk, x5u, x5c are ignored", forge(`{"alg":"HS256","kid":"../../k","jku":"https://x.example/k","jwk":{"k":"AA"},"x5u":"https://x.example","x5c":["AA"]}`, claims, testKey), nil},
		{"kid pointing elsewhere does not select the key", forge(`{"alg":"HS256","kid":"attacker"}`, claims, "attacker-key-0123456789-01234567"), errTokenSignature},
		{"alg none, no signature", enc(`{"alg":"none","typ":"JWT"}`) + "." + p + ".", errTokenSignature},
		{"alg none, signed with the key", forge(`{"alg":"none","typ":"JWT"}`, claims, testKey), errTokenAlgorithm},
		{"alg None", forge(`{"alg":"None"}`, claims, testKey), errTokenAlgorithm},
		{"alg NONE", forge(`{"alg":"NONE"}`, claims, testKey), errTokenAlgorithm},
		{"alg nOnE", forge(`{"alg":"nOnE"}`, claims, testKey), errTokenAlgorithm},
		{"alg hs256", forge(`{"alg":"hs256"}`, claims, testKey), errTokenAlgorithm},
		{"alg HS384", forge(`{"alg":"HS384","typ":"JWT"}`, claims, testKey), errTokenAlgorithm},
		{"alg HS512", forge(`{"alg":"HS512","typ":"JWT"}`, claims, testKey), errTokenAlgorithm},
		{"alg RS256, a public key as HMAC key", forge(`{"alg":"RS256","typ":"JWT"}`, claims, "-----BEGIN PUBLIC KEY-----\nMIIB"), errTokenSignature},
		{"alg RS256, signed with the key", forge(`{"alg":"RS256","typ":"JWT"}`, claims, testKey), errTokenAlgorithm},
		{"alg ES256", forge(`{"alg":"ES256"}`, claims, testKey), errTokenAlgorithm},
		{"alg missing", forge(`{"typ":"JWT"}`, claims, testKey), errTokenAlgorithm},
		{"alg null", forge(`{"alg":null}`, claims, testKey), errTokenAlgorithm},
		{"alg a list", forge(`{"alg":["HS256"]}`, claims, testKey), errTokenAlgorithm},
		{"alg with a NUL", forge(`{"alg":"HS256\u0000"}`, claims, testKey), errTokenAlgorithm},
		{"Alg instead of alg", forge(`{"Alg":"HS256"}`, claims, testKey), errTokenAlgorithm},
		{"crit", forge(`{"alg":"HS256","crit":["exp"]}`, claims, testKey), errTokenAlgorithm},
		{"crit empty", forge(`{"alg":"HS256","crit":[]}`, claims, testKey), errTokenAlgorithm},
		{"alg twice", forge(`{"alg":"HS256","alg":"none"}`, claims, testKey), errTokenMalformed},
		{"alg twice, escaped", forge(`{"alg":"none","\u0061lg":"HS256"}`, claims, testKey), errTokenMalformed},
		{"header not JSON", forge(`{alg:HS256}`, claims, testKey), errTokenMalformed},
		{"header a list", forge(`["HS256"]`, claims, testKey), errTokenMalformed},
		{"header empty", "." + p + "." + s, errTokenSignature},
		{"header empty (and signed)", signRaw("." + p), errTokenMalformed},
		{"header with data after it", forge(`{"alg":"HS256"}{}`, claims, testKey), errTokenMalformed},
		{"other key", forge(hs256, claims, "another-key-0123456789-012345678"), errTokenSignature},
		{"tampered payload", h + "." + enc(`{"sub":"alice","scope":"me","exp":1700003600}`) + "." + s, errTokenSignature},
		{"signature truncated", valid[:len(valid)-1], errTokenSignature},
		{"signature doubled", valid + s, errTokenSignature},
		{"signature empty", h + "." + p + ".", errTokenSignature},
		{"signature padded", valid + "=", errTokenSignature},
		{"signature non-canonical trailing bits", h + "." + p + "." + flipLastBits(s), errTokenSignature},
		{"signature in standard base64", h + "." + p + "." + strings.NewReplacer("-", "+", "_", "/").Replace(s) + "+/", errTokenSignature},
		{"signature with CR LF", h + "." + p + "." + s[:20] + "\r\n" + s[20:], errTokenSignature},
		{"signature with a space", valid + " ", errTokenSignature},
		{"payload padded (and signed)", signRaw(h + "." + p + "="), errTokenMalformed},
		{"payload with LF (and signed)", signRaw(h + "." + p[:10] + "\n" + p[10:]), errTokenMalformed},
		{"payload with '+' (and signed)", signRaw(h + "." + p[:10] + "+" + p[11:]), errTokenMalformed},
		{"payload non-canonical bits (and signed)", signRaw(h + "." + flipLastBits(enc(claims+" "))), errTokenMalformed},
		{"header with a space", " " + valid, errTokenSignature},
		{"header with a space (and signed)", signRaw(" " + h + "." + p), errTokenMalformed},
		{"header with CR LF", h[:10] + "\r\n" + h[10:] + "." + p + "." + s, errTokenSignature},
		{"header with CR LF (and signed)", signRaw(h[:10] + "\r\n" + h[10:] + "." + p), errTokenMalformed},
		{"header padded (and signed)", signRaw(h + "=." + p), errTokenMalformed},
		{"header with '_' (and signed)", signRaw(enc(`{"alg":"HS256","x":"???"}`) + "." + p), nil},
		{"header with '/' for '_' (and signed)", signRaw(strings.ReplaceAll(enc(`{"alg":"HS256","x":"???"}`), "_", "/") + "." + p), errTokenMalformed},
		{"one segment", h, errTokenMalformed},
		{"two segments", h + "." + p, errTokenMalformed},
		{"four segments", valid + "." + s, errTokenMalformed},
		{"many dots", strings.Repeat(".", 5000), errTokenMalformed},
		{"empty", "", errTokenMalformed},
		{"over 8 KiB", withClaims(`{"sub":"johndoe","exp":1700003600,"pad":"` + strings.Repeat("x", 6<<10) + `"}`), errTokenMalformed},
		{"payload a list", withClaims(`["sub","johndoe"]`), errTokenMalformed},
		{"payload a string", withClaims(`"sub"`), errTokenMalformed},
		{"payload a number", withClaims(`1700003600`), errTokenMalformed},
		{"payload null", withClaims(`null`), errTokenMalformed},
		{"payload empty", withClaims(``), errTokenMalformed},
		{"payload with data after it", withClaims(claims + `{}`), errTokenMalformed},
		{"payload invalid JSON", withClaims(`{"sub":"johndoe",}`), errTokenMalformed},
		{"payload nested 2,000 deep", withClaims(`{"sub":"johndoe","exp":1700003600,"x":` + strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`), nil},
		{"payload unclosed nesting", withClaims(`{"sub":"johndoe","exp":1700003600,"x":` + strings.Repeat("[", 4000) + `}`), errTokenMalformed},
		{"sub twice", withClaims(`{"sub":"alice","sub":"johndoe","exp":1700003600}`), errTokenMalformed},
		{"sub twice, escaped", withClaims(`{"sub":"alice","s\u0075b":"johndoe","exp":1700003600}`), errTokenMalformed},
		{"exp twice", withClaims(`{"sub":"johndoe","exp":1,"exp":1700003600}`), errTokenMalformed},
		{"600 members", withClaims(`{"sub":"johndoe","exp":1700003600` + manyMembers(600) + `}`), nil},
		{"a repeat among 600 members", withClaims(`{"sub":"johndoe","exp":1700003600` + manyMembers(600) + `,"m0":1}`), errTokenMalformed},
		{"SUB and EXP", withClaims(`{"SUB":"johndoe","EXP":1700003600}`), errTokenClaims},
		{"Exp only", withClaims(`{"sub":"johndoe","Exp":1700003600}`), errTokenClaims},
		{"Sub beside sub is another claim", withClaims(`{"sub":"johndoe","Sub":"alice","exp":1700003600}`), nil},
		{"sub missing", withClaims(`{"exp":1700003600}`), errTokenClaims},
		{"sub empty", withClaims(`{"sub":"","exp":1700003600}`), errTokenClaims},
		{"sub a number", withClaims(`{"sub":42,"exp":1700003600}`), errTokenClaims},
		{"sub null", withClaims(`{"sub":null,"exp":1700003600}`), errTokenClaims},
		{"sub a list", withClaims(`{"sub":["johndoe"],"exp":1700003600}`), errTokenClaims},
		{"exp missing", withClaims(`{"sub":"johndoe"}`), errTokenClaims},
		{"exp a numeric string", withClaims(`{"sub":"johndoe","exp":"1700003600"}`), errTokenClaims},
		{"exp null", withClaims(`{"sub":"johndoe","exp":null}`), errTokenClaims},
		{"exp true", withClaims(`{"sub":"johndoe","exp":true}`), errTokenClaims},
		{"exp an object", withClaims(`{"sub":"johndoe","exp":{"v":1700003600}}`), errTokenClaims},
		{"exp beyond float64", withClaims(`{"sub":"johndoe","exp":1e400}`), errTokenClaims},
		{"exp huge", withClaims(`{"sub":"johndoe","exp":1e300}`), nil},
		{"exp negative", withClaims(`{"sub":"johndoe","exp":-1}`), errTokenExpired},
		{"exp hugely negative", withClaims(`{"sub":"johndoe","exp":-1e300}`), errTokenExpired},
		{"exp now", withClaims(`{"sub":"johndoe","exp":1700000000}`), errTokenExpired},
		{"exp a second ago", withClaims(`{"sub":"johndoe","exp":1699999999}`), errTokenExpired},
		{"exp a fraction ahead", withClaims(`{"sub":"johndoe","exp":1700000000.5}`), nil},
		{"exp in exponent form", withClaims(`{"sub":"johndoe","exp":1.7000036e9}`), nil},
		{"nbf in the future", withClaims(`{"sub":"johndoe","exp":1700003600,"nbf":1700000001}`), errTokenNotYetValid},
		{"nbf now", withClaims(`{"sub":"johndoe","exp":1700003600,"nbf":1700000000}`), nil},
		{"nbf a string", withClaims(`{"sub":"johndoe","exp":1700003600,"nbf":"0"}`), errTokenClaims},
		{"iat a string", withClaims(`{"sub":"johndoe","exp":1700003600,"iat":"1700000000"}`), errTokenClaims},
		{"iat in the future is allowed", withClaims(`{"sub":"johndoe","exp":1700003600,"iat":1800000000}`), nil},
		{"scope and scopes", withClaims(`{"sub":"johndoe","exp":1700003600,"scope":"me","scopes":["me"]}`), errTokenClaims},
		{"scope a list", withClaims(`{"sub":"johndoe","exp":1700003600,"scope":["me"]}`), errTokenClaims},
		{"scope null", withClaims(`{"sub":"johndoe","exp":1700003600,"scope":null}`), errTokenClaims},
		{"scopes a string", withClaims(`{"sub":"johndoe","exp":1700003600,"scopes":"me"}`), errTokenClaims},
		{"scopes holding a number", withClaims(`{"sub":"johndoe","exp":1700003600,"scopes":["me",1]}`), errTokenClaims},
		{"scopes holding null", withClaims(`{"sub":"johndoe","exp":1700003600,"scopes":["me",null]}`), errTokenClaims},
		{"scopes null", withClaims(`{"sub":"johndoe","exp":1700003600,"scopes":null}`), errTokenClaims},
	}
}

func splitThree(token string) (string, string, string) {
	parts := strings.SplitN(token, ".", 3)
	return parts[0], parts[1], parts[2]
}

// signRaw appends the correct MAC under testKey to any signing input.
func signRaw(input string) string {
	mac := hmac.New(sha256.New, []byte(testKey))
	mac.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// flipLastBits returns s with its last character replaced by one that
// decodes to the same bytes but sets unused trailing bits.
func flipLastBits(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return s[:len(s)-1] + string(alphabet[strings.IndexByte(alphabet, s[len(s)-1])+1])
}

func manyMembers(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `,"m%d":0`, i)
	}
	return b.String()
}

func TestVerifyTokenRejects(t *testing.T) {
	t.Parallel()
	keys := []*hmacKey{newHMACKey([]byte(testKey))}
	for _, tt := range forgedTokens() {
		c, err := verifyToken(tt.token, keys, testStart)
		if !errors.Is(err, tt.want) || tt.want == nil && err != nil {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
		if err == nil && c.Subject != "johndoe" {
			t.Errorf("%s: accepted with sub %q", tt.name, c.Subject)
		}
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	t.Parallel()
	keys := []*hmacKey{newHMACKey([]byte(testKey))}
	for _, scopes := range [][]string{nil, {"me"}, {"items", "me"}} {
		for _, sub := range []string{"johndoe", `quote " and <tag> & ünïcode`, strings.Repeat("x", 1000)} {
			in := claims{Subject: sub, Scopes: scopes, IssuedAt: testStart, ExpiresAt: testStart.Add(time.Minute)}
			token := signToken(keys[0], in)
			out, err := verifyToken(token, keys, testStart)
			if err != nil || out.Subject != sub || !slices.Equal(out.Scopes, scopes) || !out.ExpiresAt.Equal(in.ExpiresAt) {
				t.Errorf("round trip of %+v: got %+v, %v", in, out, err)
			}
		}
	}
	// The service never mints what it would refuse: the longest username a
	// users file allows, all of it escaped, makes a token well under 8 KiB.
	worst := signToken(keys[0], claims{Subject: strings.Repeat("\x01", 256), Scopes: []string{"me", "items"}, ExpiresAt: testStart.Add(time.Hour)})
	if _, err := verifyToken(worst, keys, testStart); err != nil || len(worst) > maxTokenBytes/2 {
		t.Errorf("longest token: %d bytes, %v", len(worst), err)
	}
}

// FuzzVerifyToken: verifyToken never panics, and whatever it accepts was
// MACed under the key: its third segment is the canonical encoding of the
// HMAC of the first two, its sub is non-empty and it is valid now.
func FuzzVerifyToken(f *testing.F) {
	for _, tt := range forgedTokens() {
		f.Add(tt.token)
	}
	keys := []*hmacKey{newHMACKey([]byte(testKey))}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := verifyToken(token, keys, testStart)
		if err != nil {
			return
		}
		i := strings.LastIndexByte(token, '.')
		mac := hmac.New(sha256.New, []byte(testKey))
		mac.Write([]byte(token[:i]))
		if token[i+1:] != base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) {
			t.Fatalf("accepted %q without its MAC", token)
		}
		if c.Subject == "" || !testStart.Before(c.ExpiresAt) {
			t.Fatalf("accepted %q with claims %+v", token, c)
		}
	})
}

// FuzzParseClaims reaches the claim parser directly (through verifyToken
// only a valid MAC would), and checks it against encoding/json: an
// accepted payload is a JSON object whose sub, read the standard way, is
// the same.
func FuzzParseClaims(f *testing.F) {
	for _, tt := range forgedTokens() {
		if _, p, _ := splitThree(tt.token + ".."); p != "" {
			if b, err := base64.RawURLEncoding.DecodeString(p); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		c, err := parseClaims(base64.RawURLEncoding.EncodeToString(payload))
		if err != nil {
			return
		}
		var std map[string]any
		if err := json.Unmarshal(payload, &std); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", payload, err)
		}
		if std["sub"] != c.Subject || c.Subject == "" {
			t.Fatalf("sub %q, encoding/json reads %q", c.Subject, std["sub"])
		}
	})
}
