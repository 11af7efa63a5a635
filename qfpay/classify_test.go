package qfpay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/reversald/reversald/qfpay/sandbox"
)

// liveErrors produces the transport failures for real, on loopback.
func liveErrors(t *testing.T) map[string]error {
	t.Helper()
	out := map[string]error{}
	ctx := context.Background()

	// Refused: a closed loopback port.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	_, out["refused"] = testClient(t, "http://"+addr, nil).Query(ctx, QueryRequest{OutTradeNo: "A"})

	// Reset: a server that hijacks and closes with a TCP reset.
	reset := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		_ = conn.(*net.TCPConn).SetLinger(0)
		_ = conn.Close()
	}))
	t.Cleanup(reset.Close)
	_, out["reset"] = testClient(t, reset.URL, nil).Reverse(ctx, validCancel())

	// Body cut short: headers promise more than arrives.
	short := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		_, _ = io.WriteString(w, `{"respcd":`)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(short.Close)
	_, out["short body"] = testClient(t, short.URL, nil).Query(ctx, QueryRequest{OutTradeNo: "A"})

	// Timeout, a cancelled context, a dropped connection: through the sandbox.
	sb, u := startSandbox(t, nil)
	_ = sb.Script("SLOW", sandbox.Behavior{Latency: sandbox.Latency{Fixed: sandbox.Duration(time.Second)}})
	_ = sb.Script("DROP", sandbox.Behavior{Drop: 1000})
	_, out["timeout"] = testClient(t, u, func(c *Config) { c.Timeout = 20 * time.Millisecond }).Query(ctx, QueryRequest{OutTradeNo: "SLOW"})
	short2, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	t.Cleanup(cancel)
	_, out["caller deadline"] = testClient(t, u, nil).Query(short2, QueryRequest{OutTradeNo: "SLOW"})
	cancelled, cancel2 := context.WithCancel(ctx)
	cancel2()
	_, out["cancelled"] = testClient(t, u, nil).Query(cancelled, QueryRequest{OutTradeNo: "SLOW"})
	_, out["dropped"] = testClient(t, u, nil).Reverse(ctx, cancelReq("DROP"))
	for name, err := range out {
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
	}
	return out
}

// TestClassify is the one table of QFPAY.md §4: every listed code, HTTP
// statuses, transport failures for real and as values, our own errors; each
// bare and wrapped.
func TestClassify(t *testing.T) {
	t.Parallel()
	type row struct {
		name string
		err  error
		want Class
	}
	rows := []row{{"nil", nil, ClassSuccess}}
	codes := []struct {
		class Class
		codes []string
	}{
		{ClassSuccess, []string{"0000"}},
		{ClassInProgress, []string{"1143", "1145", "1298", "1161", "2999"}},
		{ClassDuplicate, []string{"1102"}},
		{ClassAlreadyCancelled, []string{"1142", "1263", "1264"}},
		{ClassRefunded, []string{"1125", "1262"}},
		{ClassPaid, []string{"1260"}},
		{ClassNotFound, []string{"1136", "1268"}},
		{ClassPaymentFailed, []string{"1181", "1147", "1201", "1202", "1203", "1204", "1212", "2005"}},
		{ClassTransient, []string{"1100", "1205", "1252", "1254", "1295", "1296", "1297", "1111", "1127", "2009", "2010"}},
		{ClassNeedsReview, []string{"1101", "1103", "1104", "1105", "1106", "1107", "1108", "1150", "1155",
			"1241", "1242", "1243", "1250", "1251", "1266", "1267", "1294", "2011"}},
		{ClassUnknown, []string{"9999", "", "abcd"}},
	}
	for _, g := range codes {
		for _, c := range g.codes {
			rows = append(rows, row{"respcd " + c, &RespError{Endpoint: "reversal", Respcd: c}, g.class})
			if CodeClass(c) != g.class {
				t.Errorf("CodeClass(%q) = %v, want %v", c, CodeClass(c), g.class)
			}
		}
	}
	for _, st := range []int{429, 500, 502, 503, 504, 599, 408} {
		rows = append(rows, row{fmt.Sprint("http ", st), &HTTPError{Status: st}, ClassTransient})
	}
	for _, st := range []int{400, 401, 403, 404, 301} {
		rows = append(rows, row{fmt.Sprint("http ", st), &HTTPError{Status: st}, ClassNeedsReview})
	}
	rows = append(rows,
		row{"context canceled", context.Canceled, ClassTransient},
		row{"deadline exceeded", context.DeadlineExceeded, ClassTransient},
		row{"econnrefused", syscall.ECONNREFUSED, ClassTransient},
		row{"econnreset", syscall.ECONNRESET, ClassTransient},
		row{"epipe", syscall.EPIPE, ClassTransient},
		row{"eof", io.EOF, ClassTransient},
		row{"unexpected eof", io.ErrUnexpectedEOF, ClassTransient},
		row{"op error", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, ClassTransient},
		row{"dns error", &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, ClassTransient},
		row{"transport", &TransportError{Endpoint: "query", Err: errors.New("x")}, ClassTransient},
		row{"malformed", ErrMalformedResponse, ClassTransient},
		row{"response signature", ErrResponseSignature, ClassNeedsReview},
		row{"validation", &ValidationError{Field: "txdtm", Reason: "x"}, ClassNeedsReview},
		row{"not cancellable", ErrNotCancellable, ClassUnsupported},
		row{"no credential", fmt.Errorf("%w for merchant M1", ErrNoCredential), ClassNeedsReview},
		row{"unknown error", errors.New("something else"), ClassNeedsReview},
	)
	for name, err := range liveErrors(t) {
		rows = append(rows, row{"live " + name, err, ClassTransient})
	}
	for _, r := range rows {
		forms := map[string]error{"bare": r.err}
		if r.err != nil {
			forms["wrapped"] = fmt.Errorf("executor step cancel 4MDG: %w", r.err)
			forms["joined"] = errors.Join(fmt.Errorf("attempt: %w", r.err), errors.New("audit write"))
		}
		for form, err := range forms {
			if got := Classify(err); got != r.want {
				t.Errorf("%s (%s): Classify(%v) = %v, want %v", r.name, form, err, got, r.want)
			}
		}
	}
	if ClassDuplicate.String() != "duplicate" || Class(99).String() != "Class(99)" {
		t.Error("Class.String")
	}
}
