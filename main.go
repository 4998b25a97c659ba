// Command scopeguard is an OAuth2 password-grant token service (RFC 6749
// §4.3) whose HS256 JWTs unlock scope-checked endpoints (RFC 6750): the
// FastAPI "OAuth2 scopes" example in Go, standard library only.
//
//	go run .                   serve the demo users on 127.0.0.1:8000
//	go run . -users users.json serve real ones (see README.md)
//	go run . hash-password     hash a password read from stdin
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

// minKeyBytes is RFC 7518 §3.2's floor for an HS256 key: 256 bits.
const minKeyBytes = 32

// config is everything the service needs, built once in run from flags and
// environment and passed down; nothing reads either after start-up.
type config struct {
	addr            string
	tlsCert, tlsKey string
	tokenTTL        time.Duration
	keys            []*hmacKey // signing key first, then the retired one if any
	users           map[string]*user
	dummyHash       passwordHash // checked for unknown usernames
	hashes          *hashPool
	throttle        *throttle
	now             func() time.Time
	log             *slog.Logger
}

// verify checks a bearer token against the configured keys and clock.
func (cfg *config) verify(token string) (claims, error) {
	return verifyToken(token, cfg.keys, cfg.now())
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "scopeguard:", err)
		os.Exit(2)
	}
}

// run is the whole program: main only supplies the OS. It returns when ctx
// is cancelled and in-flight requests have finished, or with the error that
// stopped start-up.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "hash-password" {
		return runHashPassword(args[1:], stdin, stdout)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	cfg, err := newConfig(args, getenv, stdout, log)
	if err != nil || cfg == nil { // nil, nil: -help was asked for
		return err
	}
	var certs []tls.Certificate
	if cfg.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		certs = append(certs, cert)
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           newHandler(cfg),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second, // a queued login may wait for a hash slot
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10, // room for an 8 KiB token and ordinary headers
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if !ln.Addr().(*net.TCPAddr).IP.IsLoopback() && certs == nil {
		log.Warn("listening beyond loopback without TLS: passwords and tokens cross the network in clear; use -tls-cert/-tls-key or a TLS proxy")
	}
	served := make(chan error, 1)
	go func() {
		if certs != nil {
			srv.TLSConfig = &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12}
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()
	log.Info("listening", "addr", ln.Addr().String(), "tls", certs != nil)
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	// ctx is already cancelled: draining needs a fresh deadline of its own.
	drain, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(drain); err != nil {
		log.Warn("shutdown: requests still in flight were cut off", "err", err)
	}
	log.Info("stopped")
	return nil
}

// newConfig reads flags and environment into a config, or says what is
// wrong with them in one line.
func newConfig(args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger) (*config, error) {
	fs := flag.NewFlagSet("scopeguard", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, not dumped with the usage
	cfg := &config{now: time.Now, log: log}
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8000", "listen on `host:port`")
	usersFile := fs.String("users", "", "users `file` (JSON); default: the built-in demo users")
	fs.DurationVar(&cfg.tokenTTL, "token-ttl", 30*time.Minute, "token lifetime")
	fs.StringVar(&cfg.tlsCert, "tls-cert", "", "TLS certificate `file` (PEM); serve HTTPS")
	fs.StringVar(&cfg.tlsKey, "tls-key", "", "TLS private key `file` (PEM)")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stdout, "usage: scopeguard [flags]\n       scopeguard hash-password < password\nflags:")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if cfg.tokenTTL < time.Second || cfg.tokenTTL > 24*time.Hour {
		return nil, fmt.Errorf("-token-ttl must be between 1s and 24h, not %s", cfg.tokenTTL)
	}
	if (cfg.tlsCert == "") != (cfg.tlsKey == "") {
		return nil, errors.New("-tls-cert and -tls-key go together")
	}
	var err error
	if cfg.keys, err = loadKeys(getenv("SECRET_KEY"), getenv("SECRET_KEY_PREVIOUS")); err != nil {
		return nil, err
	}
	if getenv("SECRET_KEY") == "" {
		log.Warn("SECRET_KEY is not set: using a random key, so tokens will not survive a restart")
	}
	data := []byte(demoUsers)
	if *usersFile == "" {
		log.Warn("serving the built-in demo users (johndoe, alice); pass -users for real accounts")
	} else if data, err = os.ReadFile(*usersFile); err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	if cfg.users, err = parseUsers(data); err != nil {
		return nil, fmt.Errorf("users file %s: %w", *usersFile, err)
	}
	for name, u := range cfg.users {
		if u.hash.rounds < defaultRounds {
			log.Warn("password hash below 600000 rounds; rehash it with hash-password", "user", name)
		}
	}
	cfg.dummyHash = dummyHash(cfg.users)
	workers := max(1, runtime.GOMAXPROCS(0)-1) // one core stays free for token checks
	cfg.hashes = newHashPool(workers, 8*workers)
	cfg.throttle = newThrottle()
	return cfg, nil
}

// loadKeys returns the HMAC keys: SECRET_KEY's bytes as given (or a random
// key when unset), then SECRET_KEY_PREVIOUS's, still accepted so a rotation
// logs nobody out. Keys shorter than RFC 7518 §3.2's 256 bits are refused.
func loadKeys(current, previous string) ([]*hmacKey, error) {
	if current == "" {
		key := make([]byte, minKeyBytes)
		rand.Read(key)
		current = string(key)
	}
	if len(current) < minKeyBytes {
		return nil, fmt.Errorf("SECRET_KEY must be at least %d bytes", minKeyBytes)
	}
	keys := []*hmacKey{newHMACKey([]byte(current))}
	if previous != "" {
		if len(previous) < minKeyBytes {
			return nil, fmt.Errorf("SECRET_KEY_PREVIOUS must be at least %d bytes", minKeyBytes)
		}
		if previous == current {
			return nil, errors.New("SECRET_KEY_PREVIOUS must differ from SECRET_KEY")
		}
		keys = append(keys, newHMACKey([]byte(previous)))
	}
	return keys, nil
}

// runHashPassword reads one password line from stdin and prints its hash
// for the users file.
func runHashPassword(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("hash-password takes no arguments; it reads the password from stdin")
	}
	const limit = 4 << 10
	input, err := io.ReadAll(io.LimitReader(stdin, limit+1))
	if err != nil {
		return fmt.Errorf("hash-password: read stdin: %w", err)
	}
	line, _, _ := strings.Cut(string(input), "\n")
	password := strings.TrimSuffix(line, "\r")
	if len(input) > limit || password == "" || strings.ContainsRune(password, 0) {
		return errors.New("hash-password: give one password on stdin: one line, not empty, no NUL, under 4 KiB")
	}
	salt := make([]byte, saltBytes)
	rand.Read(salt)
	encoded, err := hashPassword(password, salt, defaultRounds)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, encoded)
	return err
}
