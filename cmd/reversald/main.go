// Command reversald settles payment-uncertain POS payments at QFPay: it reads
// events from Kafka, keeps one idempotent reversal attempt per out_trade_no in
// PostgreSQL, queries and cancels at QFPay, and publishes every outcome.
//
// main only owns signals and the exit code; run does the wiring so that tests
// can call it.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/sethvargo/go-envconfig"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], envconfig.OsLookuper(), os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "reversald: %v\n", err)
		var u usageError
		if errors.As(err, &u) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
