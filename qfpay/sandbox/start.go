package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Serve answers on ln until ctx is done, then shuts down: it wakes scripted
// latencies, waits for answers in progress (up to 5 s), and returns after its
// goroutines have exited. A clean shutdown returns nil.
func (s *Sandbox) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("sandbox serve: %w", err)
	case <-ctx.Done():
	}
	s.Close()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	_ = srv.Close()
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && serr != nil {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("sandbox shutdown: %w", err)
	}
	return nil
}

// Start serves a new sandbox on a free loopback port. It returns the sandbox,
// its base URL (http://127.0.0.1:port) and a stop function that shuts it down
// and waits for it.
func Start(cfg Config) (*Sandbox, string, func(), error) {
	if err := cfg.Validate(); err != nil {
		return nil, "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", nil, fmt.Errorf("sandbox listen: %w", err)
	}
	s := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Serve(ctx, ln)
	}()
	stop := func() {
		cancel()
		<-done
	}
	return s, "http://" + ln.Addr().String(), stop, nil
}
