// Command healthprobe is the container healthcheck for the distroless images built by the
// Dockerfile, which have no shell, curl or wget: it GETs one URL and exits 0 on a 2xx answer
// within the timeout, 1 otherwise. It is not part of the product and is not built by `make build`.
//
//	healthprobe http://127.0.0.1:9090/readyz
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: healthprobe URL")
		os.Exit(2)
	}
	if err := probe(os.Args[1], 3*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "healthprobe:", err)
		os.Exit(1)
	}
}

func probe(url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("build request for %s: %w", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("get %s: HTTP %d", url, resp.StatusCode)
	}
	return nil
}
