package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets tests run this binary as the real program: with
// SCOPEGUARD_AS_MAIN=1 it is main, so exit statuses and signals are real.
func TestMain(m *testing.M) {
	if os.Getenv("SCOPEGUARD_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func envFunc(env map[string]string) func(string) string {
	return func(k string) string { return env[k] }
}

// writeFile writes data to name in a fresh temporary folder.
func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestRunStartupErrors: every start-up problem is an error that names it.
func TestRunStartupErrors(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	users := writeFile(t, "users.json", usersFile(t, testUsers))
	badUsers := writeFile(t, "bad.json", []byte(`[{"username":"bob","hashed_password":"x"}]`))
	key := strings.Repeat("k", 32)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"unknown flag", []string{"-port", "80"}, nil, "flag provided but not defined: -port"},
		{"bad duration", []string{"-token-ttl", "soon"}, nil, `invalid value "soon" for flag -token-ttl`},
		{"zero ttl", []string{"-token-ttl", "0s"}, nil, "-token-ttl must be between 1s and 24h"},
		{"stray argument", []string{"serve"}, nil, `unexpected argument "serve"`},
		{"cert without key", []string{"-tls-cert", "c.pem"}, nil, "-tls-cert and -tls-key go together"},
		{"short key", nil, map[string]string{"SECRET_KEY": "short"}, "SECRET_KEY must be at least 32 bytes"},
		{"31-byte key", nil, map[string]string{"SECRET_KEY": key[:31]}, "SECRET_KEY must be at least 32 bytes"},
		{"short previous key", nil, map[string]string{"SECRET_KEY": key, "SECRET_KEY_PREVIOUS": "old"}, "SECRET_KEY_PREVIOUS must be at least 32 bytes"},
		{"previous key equal", nil, map[string]string{"SECRET_KEY": key, "SECRET_KEY_PREVIOUS": key}, "SECRET_KEY_PREVIOUS must differ from SECRET_KEY"},
		{"missing users file", []string{"-users", "/nonexistent/users.json"}, nil, "users file: open /nonexistent/users.json"},
		{"invalid users file", []string{"-users", badUsers}, nil, `users file ` + badUsers + `: user "bob": hashed_password`},
		{"port in use", []string{"-users", users, "-addr", busy.Addr().String()}, nil, "address already in use"},
		{"bad address", []string{"-users", users, "-addr", "localhost"}, nil, "missing port"},
		{"unreadable TLS files", []string{"-users", users, "-tls-cert", "/nonexistent/c.pem", "-tls-key", "/nonexistent/k.pem"}, nil, "TLS: open /nonexistent/c.pem"},
	}
	for _, tt := range tests {
		err := run(context.Background(), tt.args, envFunc(tt.env), strings.NewReader(""), io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error with %q", tt.name, err, tt.want)
		}
	}
}

// runInBackground starts run and returns the address it listens on, the
// log, and a function that stops it and returns run's error.
func runInBackground(t *testing.T, args []string, env map[string]string) (addr string, log *syncBuffer, stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log = &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, args, envFunc(env), strings.NewReader(""), io.Discard, log) }()
	listening := regexp.MustCompile(`msg=listening addr=(\S+)`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if m := listening.FindStringSubmatch(log.String()); m != nil {
			addr = m[1]
			break
		}
		select {
		case err := <-done:
			t.Fatalf("run returned %v before listening:\n%s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not listening after 10 s:\n%s", log)
		}
	}
	stopped := false
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			return <-done
		}
		return nil
	}
	t.Cleanup(func() { stop() })
	return addr, log, stop
}

// TestRunWarnings: each unsafe default in use is logged, and only those.
func TestRunWarnings(t *testing.T) {
	t.Parallel()
	users := writeFile(t, "users.json", usersFile(t, testUsers[:1]))
	key := map[string]string{"SECRET_KEY": strings.Repeat("k", 32)}
	tests := []struct {
		name      string
		args      []string
		env       map[string]string
		want, not []string
	}{
		{"defaults", []string{"-addr", "127.0.0.1:0"}, nil,
			[]string{"built-in demo users", "SECRET_KEY is not set"}, []string{"beyond loopback", "below 600000"}},
		{"users file and key", []string{"-addr", "127.0.0.1:0", "-users", users}, key,
			[]string{`below 600000 rounds; rehash it with hash-password" user=johndoe`}, []string{"demo users", "SECRET_KEY is not set", "beyond loopback"}},
		{"all interfaces", []string{"-addr", "0.0.0.0:0", "-users", users}, key,
			[]string{"beyond loopback without TLS"}, []string{"demo users"}},
	}
	for _, tt := range tests {
		_, log, stop := runInBackground(t, tt.args, tt.env)
		if err := stop(); err != nil {
			t.Errorf("%s: run returned %v", tt.name, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(log.String(), w) {
				t.Errorf("%s: no %q in log:\n%s", tt.name, w, log)
			}
		}
		for _, n := range tt.not {
			if strings.Contains(log.String(), n) {
				t.Errorf("%s: %q in log:\n%s", tt.name, n, log)
			}
		}
	}
}

// TestRunDrainsOnShutdown: a request in flight when the context is
// cancelled still gets its answer, new connections are refused, and run
// returns nil.
func TestRunDrainsOnShutdown(t *testing.T) {
	t.Parallel()
	users := writeFile(t, "users.json", usersFile(t, testUsers))
	addr, _, stop := runInBackground(t, []string{"-addr", "127.0.0.1:0", "-users", users}, nil)
	const body = "username=johndoe&password=secret"
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: "+formContentType+
		"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body[:10])
	// Connections are accepted in order: once a later one is answered,
	// the first is the server's, in flight, waiting for its body.
	if resp, err := http.Get("http://" + addr + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("/healthz: %v %v", resp, err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break // the listener is closed
		}
		c.Close()
		time.Sleep(5 * time.Millisecond)
	}
	io.WriteString(conn, body[10:])
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("in-flight login: %v %v", resp, err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("run returned %v", err)
	}
}

// TestRunTLS serves HTTPS with a certificate made here.
func TestRunTLS(t *testing.T) {
	t.Parallel()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(priv)
	certFile := writeFile(t, "cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	keyFile := writeFile(t, "key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	addr, _, _ := runInBackground(t, []string{"-addr", "127.0.0.1:0", "-tls-cert", certFile, "-tls-key", keyFile}, nil)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + addr + "/healthz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HTTPS /healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP answered on the TLS port")
	}
}

// TestHashPassword runs the subcommand: its output is a passlib-format
// hash at the production cost that matches the password read.
func TestHashPassword(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	if err := run(context.Background(), []string{"hash-password"}, envFunc(nil), strings.NewReader("pässword 1\r\n"), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	h, err := parseHash(strings.TrimSuffix(out.String(), "\n"))
	if err != nil || h.rounds != defaultRounds || len(h.salt) != saltBytes || !h.matches("pässword 1") {
		t.Errorf("output %q: %+v, %v", out.String(), h, err)
	}
	for name, input := range map[string]string{"empty": "", "empty line": "\n", "NUL": "a\x00b\n", "over 4 KiB": strings.Repeat("x", 5000)} {
		if err := run(context.Background(), []string{"hash-password"}, envFunc(nil), strings.NewReader(input), io.Discard, io.Discard); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if err := run(context.Background(), []string{"hash-password", "pw"}, envFunc(nil), strings.NewReader("x\n"), io.Discard, io.Discard); err == nil {
		t.Error("a password as an argument was accepted")
	}
}

// startMain runs this test binary as the program (see TestMain).
func startMain(t *testing.T, env []string, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), append(env, "SCOPEGUARD_AS_MAIN=1")...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(stderr)
}

// TestMainExitStatus: a start-up error exits 2 with one last stderr line
// naming it, no usage dump or stack trace.
func TestMainExitStatus(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env  []string
		args []string
		last string
	}{
		{[]string{"SECRET_KEY=short"}, nil, "scopeguard: SECRET_KEY must be at least 32 bytes"},
		{nil, []string{"-nope"}, "scopeguard: flag provided but not defined: -nope"},
	} {
		cmd, stderr := startMain(t, tt.env, tt.args...)
		var lines []string
		for stderr.Scan() {
			lines = append(lines, stderr.Text())
		}
		err := cmd.Wait()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 {
			t.Errorf("%v: exit %v, want 2", tt.args, err)
		}
		if len(lines) == 0 || lines[len(lines)-1] != tt.last {
			t.Errorf("%v: stderr %q, want last line %q", tt.args, lines, tt.last)
		}
		if joined := strings.Join(lines, "\n"); strings.Contains(joined, "Usage") || strings.Contains(joined, "goroutine") {
			t.Errorf("%v: usage or stack trace on stderr:\n%s", tt.args, joined)
		}
	}
}

// TestMainSignals: SIGINT and SIGTERM stop the program with status 0.
func TestMainSignals(t *testing.T) {
	t.Parallel()
	for _, sig := range []os.Signal{syscall.SIGTERM, os.Interrupt} {
		cmd, stderr := startMain(t, nil, "-addr", "127.0.0.1:0")
		for stderr.Scan() && !strings.Contains(stderr.Text(), "msg=listening") {
		}
		cmd.Process.Signal(sig)
		for stderr.Scan() { // to EOF, as Wait requires
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("%v: exit %v, want 0", sig, err)
		}
	}
}
