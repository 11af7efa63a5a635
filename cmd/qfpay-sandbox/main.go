package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/reversald/reversald/qfpay/sandbox"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "qfpay-sandbox:", err)
		os.Exit(1)
	}
}

// run parses the configuration, listens, prints the base URL to out, and serves
// until ctx is done.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), out io.Writer) error {
	env := func(name, def string) string {
		if v, ok := lookup(name); ok {
			return v
		}
		return def
	}
	envBool := func(name string) bool {
		b, _ := strconv.ParseBool(env(name, "false"))
		return b
	}
	envInt := func(name string, def int) int {
		if n, err := strconv.Atoi(env(name, "")); err == nil {
			return n
		}
		return def
	}
	fs := flag.NewFlagSet("qfpay-sandbox", flag.ContinueOnError)
	fs.SetOutput(out)
	addr := fs.String("addr", env("QFPAY_SANDBOX_ADDR", "127.0.0.1:8089"), "listen address")
	appCode := fs.String("appcode", env("QFPAY_SANDBOX_APPCODE", "SANDBOXAPPCODE"), "expected X-QF-APPCODE")
	key := fs.String("key", env("QFPAY_SANDBOX_KEY", ""), "client key (default sandbox-key)")
	rate := fs.Bool("rate-limit", envBool("QFPAY_SANDBOX_RATE_LIMIT"), "limit each merchant to 100 calls/s and 400/min (HTTP 429)")
	signResp := fs.Bool("sign-responses", envBool("QFPAY_SANDBOX_SIGN_RESPONSES"), "sign answers with X-QF-SIGN")
	anyMonth := fs.Bool("any-month", envBool("QFPAY_SANDBOX_ANY_MONTH"), "queries without start_time/end_time see every month")
	looseRange := fs.Bool("loose-range", envBool("QFPAY_SANDBOX_LOOSE_RANGE"), "accept a query range that crosses a calendar month (QFPay answers 1150)")
	rules := fs.String("rules", env("QFPAY_SANDBOX_RULES", ""), "JSON file of rules and seeded transactions")
	ledgerLimit := fs.Int("ledger-limit", envInt("QFPAY_SANDBOX_LEDGER_LIMIT", 1_000_000), "ledger entries kept before the older half is forgotten (0: all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" {
		if f, ok := lookup("QFPAY_SANDBOX_KEY_FILE"); ok && f != "" {
			b, err := os.ReadFile(f)
			if err != nil {
				return fmt.Errorf("read key file: %w", err)
			}
			*key = strings.TrimSpace(string(b))
		} else {
			*key = "sandbox-key"
		}
	}
	cfg := sandbox.Config{AppCode: *appCode, Key: *key, RateLimit: *rate, SignResponses: *signResp, AnyMonth: *anyMonth, LooseRange: *looseRange, LedgerLimit: *ledgerLimit}
	if *rules != "" {
		if err := loadRules(*rules, &cfg); err != nil {
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *addr, err)
	}
	fmt.Fprintf(out, "qfpay-sandbox listening on http://%s (app code %s, rate limit %t, strict range %t, %d rules, %d txns)\n",
		ln.Addr(), cfg.AppCode, cfg.RateLimit, !cfg.LooseRange, len(cfg.Rules), len(cfg.Txns))
	return sandbox.New(cfg).Serve(ctx, ln)
}

// loadRules reads a JSON array of rules, or an object with "rules" and "txns".
func loadRules(path string, cfg *sandbox.Config) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read rules %s: %w", path, err)
	}
	var file struct {
		Rules []sandbox.Rule `json:"rules"`
		Txns  []sandbox.Txn  `json:"txns"`
	}
	if trimmed := strings.TrimSpace(string(b)); strings.HasPrefix(trimmed, "[") {
		err = jsonUnmarshalStrict(b, &file.Rules)
	} else {
		err = jsonUnmarshalStrict(b, &file)
	}
	if err != nil {
		return fmt.Errorf("decode rules %s: %w", path, err)
	}
	cfg.Rules, cfg.Txns = file.Rules, file.Txns
	return nil
}
