// Command scopeguard is an OAuth2 password-grant (RFC 6749 §4.3) token service
// with scope-checked endpoints (RFC 6750): FastAPI's "OAuth2 scopes" in Go.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// config is all the service needs, built once from flags and environment.
type config struct {
	addr, tlsCert, tlsKey string
	tokenTTL              time.Duration
	keys                  []*hmacKey // the signing key, then a retired one
	tokens                tokenCache // verified tokens, remembered
	users                 map[string]*user
	dummyHash             passwordHash // checked for unknown usernames
	hashes                *hashPool
	throttle              *throttle
	now                   func() time.Time
	log                   *slog.Logger
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "scopeguard:", err)
		os.Exit(2)
	}
}

// run is the program; it returns once ctx is done and requests have drained.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "hash-password" {
		return runHashPassword(args[1:], stdin, stdout)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg, err := newConfig(args, getenv, stdout, log)
	if err != nil || cfg == nil { // nil, nil: -h was asked for
		return err
	}
	srv := &http.Server{
		Handler:           newHandler(cfg),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second, // a login may queue for a hash slot
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10, // an 8 KiB token and ordinary headers
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	ln, err := net.Listen("tcp", cfg.addr) // here, so "address in use" is a start-up error
	if err != nil {
		return err
	}
	if !ln.Addr().(*net.TCPAddr).IP.IsLoopback() && srv.TLSConfig == nil {
		log.Warn("listening beyond loopback without TLS: passwords and tokens cross the network in clear")
	} else if srv.TLSConfig != nil {
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	log.Info("listening", "addr", ln.Addr().String(), "tls", srv.TLSConfig != nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	drain, cancel := context.WithTimeout(context.Background(), 10*time.Second) // ctx is done: a fresh one
	defer cancel()
	if err := srv.Shutdown(drain); err != nil {
		log.Warn("requests still in flight after 10 s were cut off")
	}
	log.Info("stopped")
	return nil
}

// newConfig reads flags and environment, or says what is wrong with them.
func newConfig(args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger) (*config, error) {
	fs := flag.NewFlagSet("scopeguard", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // an error is returned, not printed with the usage
	cfg := &config{now: time.Now, log: log, throttle: &throttle{}}
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8000", "listen on `host:port`")
	usersFile := fs.String("users", "", "users `file` (JSON); default: the built-in demo users")
	fs.DurationVar(&cfg.tokenTTL, "token-ttl", 30*time.Minute, "token lifetime, 1s to 24h")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "serve HTTPS with this certificate `file` (PEM)")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "and this private key `file` (PEM)")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	switch {
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	case cfg.tokenTTL < time.Second || cfg.tokenTTL > 24*time.Hour:
		return nil, fmt.Errorf("-token-ttl must be between 1s and 24h, not %s", cfg.tokenTTL)
	case (cfg.tlsCert == "") != (cfg.tlsKey == ""):
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	var err error
	if cfg.keys, err = loadKeys(getenv("SECRET_KEY"), getenv("SECRET_KEY_PREVIOUS"), log); err != nil {
		return nil, err
	}
	data := []byte(demoUsers)
	if *usersFile == "" {
		log.Warn("serving the built-in demo users (johndoe, alice); pass -users for real accounts")
	} else if data, err = os.ReadFile(*usersFile); err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	if cfg.users, err = parseUsers(data, log); err != nil {
		return nil, fmt.Errorf("users file %s: %w", *usersFile, err)
	}
	cfg.dummyHash = dummyHash(cfg.users)
	workers := max(1, runtime.GOMAXPROCS(0)-1) // a core stays free for token checks
	cfg.hashes = newHashPool(workers, 8*workers)
	return cfg, nil
}

// loadKeys returns SECRET_KEY (random if unset), then SECRET_KEY_PREVIOUS,
// which still verifies so rotation logs nobody out; RFC 7518 §3.2: ≥ 256 bits.
func loadKeys(current, previous string, log *slog.Logger) ([]*hmacKey, error) {
	if current == "" {
		log.Warn("SECRET_KEY is not set: using a random key, so tokens will not survive a restart")
		current = rand.Text() + rand.Text() // 2 × 128 bits
	}
	switch {
	case len(current) < 32:
		return nil, errors.New("SECRET_KEY must be at least 32 bytes")
	case previous == "":
		return []*hmacKey{newHMACKey([]byte(current))}, nil
	case len(previous) < 32:
		return nil, errors.New("SECRET_KEY_PREVIOUS must be at least 32 bytes")
	case previous == current:
		return nil, errors.New("SECRET_KEY_PREVIOUS must differ from SECRET_KEY")
	}
	return []*hmacKey{newHMACKey([]byte(current)), newHMACKey([]byte(previous))}, nil
}

// runHashPassword prints the hash of the password line on stdin.
func runHashPassword(args []string, stdin io.Reader, stdout io.Writer) error {
	input, err := io.ReadAll(io.LimitReader(stdin, 4<<10+1))
	line, _, _ := strings.Cut(string(input), "\n")
	password := strings.TrimSuffix(line, "\r")
	if len(args) > 0 || err != nil || len(input) > 4<<10 || password == "" || strings.ContainsRune(password, 0) {
		return errors.New("hash-password reads one password from stdin: one line, not empty, no NUL, under 4 KiB")
	}
	salt := make([]byte, saltBytes)
	rand.Read(salt)
	encoded, err := hashPassword(password, salt, defaultRounds)
	if err == nil {
		_, err = fmt.Fprintln(stdout, encoded)
	}
	return err
}
