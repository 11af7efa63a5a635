package qfpay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Endpoint paths (QFPAY.md §2, §3).
const (
	PathQuery    = "/trade/v1/query"
	PathReversal = "/trade/v1/reversal"
	PathClose    = "/trade/v1/close"
)

// Call describes one exchange, for the audit table. It never contains the key
// or the signature.
type Call struct {
	Endpoint   string            // "query" | "reversal" | "close"
	AppCode    string            // the X-QF-APPCODE the call was (or would have been) signed under
	Request    map[string]string // the signed fields, no key, no signature
	Sent       bool              // false when validation stopped it before the network
	HTTPStatus int               // 0 when no response
	Respcd     string
	Resperr    string
	Respmsg    string
	Raw        []byte // response body, bounded (MaxRawBytes)
	Latency    time.Duration
}

// QueryResult is the answer to a query: Data has one record per transaction
// found, and none for a transaction QFPay has not seen.
type QueryResult struct {
	Call     Call
	Data     []Record
	Page     int
	PageSize int
}

// Payment returns the payment record (not a refund) for outTradeNo.
func (q QueryResult) Payment(outTradeNo string) (Record, bool) {
	for _, r := range q.Data {
		if r.OutTradeNo == outTradeNo && r.IsPayment() {
			return r, true
		}
	}
	return Record{}, false
}

// CancelResult is the answer to a reversal or close (QFPAY.md §2). OrigSyssn is
// the payment, Syssn the new reversal/close transaction.
type CancelResult struct {
	Call       Call
	Method     Method
	OrigSyssn  string
	Syssn      string
	OutTradeNo string
	TxAmt      int64
	TxCurrCd   string
	TxDtm      string
	SysDtm     string
	ChnlSn     string
	// Extra holds every response field not named above (surcharge_fee, cardcd, ...).
	Extra map[string]json.RawMessage
}

// Client is a signed QFPay client. It is safe for concurrent use.
type Client struct {
	cfg       Config
	base      string
	routes    Routes
	hc        *http.Client
	transport *http.Transport // ours, when Config.HTTPClient is nil
	idle      *http.Client    // whose idle connections CloseIdleConnections closes (hc without tracing)
}

// New checks cfg and builds a client. Without Config.HTTPClient the client has
// its own connection pool, sized for many concurrent calls to one host.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Client{cfg: cfg, base: strings.TrimRight(cfg.BaseURL, "/"), routes: cfg.Routes}
	if c.routes.IsZero() {
		c.routes = DefaultRoutes()
	}
	if cfg.HTTPClient != nil {
		c.hc = cfg.HTTPClient
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConns = 256
		t.MaxIdleConnsPerHost = 256
		t.IdleConnTimeout = 60 * time.Second
		c.transport = t
		c.hc = &http.Client{Transport: t, CheckRedirect: noRedirects}
	}
	c.idle = c.hc
	if cfg.TracerProvider != nil {
		c.hc = traced(c.hc, cfg.TracerProvider)
	}
	return c, nil
}

// noRedirects stops net/http from following a redirect: a 301/302 would turn
// the POST into a GET without its fields, a 307/308 would send a cancel a
// second time to a host we did not configure. The 3xx comes back as an
// *HTTPError (needs review).
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// String names the client without its key.
func (c *Client) String() string { return "qfpay.Client(" + c.base + ")" }

// GoString names the client without its key.
func (c *Client) GoString() string { return c.String() }

// Format prints the client without its key for every verb.
func (c *Client) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// CloseIdleConnections closes the pooled connections that are idle; call it
// when done with the client.
func (c *Client) CloseIdleConnections() { c.idle.CloseIdleConnections() }

// Route returns the cancel method for payType (see [Routes.For]).
func (c *Client) Route(payType string) (Method, error) { return c.routes.For(payType) }

// Query asks for the state of the transactions in req (QFPAY.md §3).
func (c *Client) Query(ctx context.Context, req QueryRequest) (QueryResult, error) {
	req.MchID = c.mchID(req.MchID)
	res := QueryResult{Call: Call{Endpoint: "query", AppCode: c.cfg.AppCode, Request: params(
		"mchid", req.MchID, "out_trade_no", req.OutTradeNo, "syssn", req.Syssn,
		"start_time", req.StartTime, "end_time", req.EndTime, "txzone", req.TxZone)}}
	wrap := func(err error) error { return fmt.Errorf("qfpay query %s: %w", req.key(), err) }
	if err := req.Validate(); err != nil {
		return res, wrap(err)
	}
	o, err := c.do(ctx, &res.Call, PathQuery)
	if err != nil {
		return res, wrap(err)
	}
	res.Page = int(o.takeInt("page"))
	res.PageSize = int(o.takeInt("page_size"))
	if res.Call.Respcd != "0000" {
		return res, wrap(respError(&res.Call))
	}
	if raw, ok := o["data"]; ok && !isNull(raw) {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return res, wrap(fmt.Errorf("data is not an array: %w", ErrMalformedResponse))
		}
		res.Data = make([]Record, 0, len(items))
		for _, it := range items {
			r, err := decodeRecord(it)
			if err != nil {
				return res, wrap(err)
			}
			res.Data = append(res.Data, r)
		}
	}
	return res, nil
}

// Reverse sends a reversal (POST /trade/v1/reversal).
func (c *Client) Reverse(ctx context.Context, req CancelRequest) (CancelResult, error) {
	return c.cancel(ctx, MethodReversal, req)
}

// Close sends a close (POST /trade/v1/close).
func (c *Client) Close(ctx context.Context, req CancelRequest) (CancelResult, error) {
	return c.cancel(ctx, MethodClose, req)
}

// Cancel picks reversal or close for payType from the routing table and sends
// it. A not-cancellable pay type returns an error that is [ErrNotCancellable]
// and a result with Method == MethodNone and Call.Sent == false.
func (c *Client) Cancel(ctx context.Context, payType string, req CancelRequest) (CancelResult, error) {
	m, err := c.routes.For(payType)
	if err != nil {
		return CancelResult{Method: MethodNone}, fmt.Errorf("qfpay cancel %s: %w", req.key(), err)
	}
	return c.cancel(ctx, m, req)
}

func (c *Client) cancel(ctx context.Context, m Method, req CancelRequest) (CancelResult, error) {
	req.MchID = c.mchID(req.MchID)
	amt := ""
	if req.TxAmt != 0 {
		amt = strconv.FormatInt(req.TxAmt, 10)
	}
	res := CancelResult{Method: m, Call: Call{Endpoint: string(m), AppCode: c.cfg.AppCode, Request: params(
		"mchid", req.MchID, "syssn", req.Syssn, "out_trade_no", req.OutTradeNo,
		"txamt", amt, "txdtm", req.TxDtm, "udid", req.Udid)}}
	wrap := func(err error) error { return fmt.Errorf("qfpay %s %s: %w", m, req.key(), err) }
	if err := req.Validate(); err != nil {
		return res, wrap(err)
	}
	path := PathReversal
	if m == MethodClose {
		path = PathClose
	}
	o, err := c.do(ctx, &res.Call, path)
	if err != nil {
		return res, wrap(err)
	}
	var errs [8]error
	res.OrigSyssn, errs[0] = o.take("orig_syssn")
	res.Syssn, errs[1] = o.take("syssn")
	res.OutTradeNo, errs[2] = o.take("out_trade_no")
	res.TxAmt = o.takeInt("txamt")
	res.TxCurrCd, errs[3] = o.take("txcurrcd")
	res.TxDtm, errs[4] = o.take("txdtm")
	res.SysDtm, errs[5] = o.take("sysdtm")
	res.ChnlSn, errs[6] = o.take("chnlsn")
	res.Extra = o.extra()
	if res.Call.Respcd != "0000" {
		return res, wrap(respError(&res.Call))
	}
	for _, e := range errs {
		if e != nil {
			return res, wrap(e)
		}
	}
	return res, nil
}

// mchID is the mchid a request sends: none when the account has none
// (Config.OmitMchID), else the request's, else Config.MchID.
func (c *Client) mchID(req string) string {
	switch {
	case c.cfg.OmitMchID:
		return ""
	case req == "":
		return c.cfg.MchID
	}
	return req
}

func respError(c *Call) error {
	return &RespError{Endpoint: c.Endpoint, Respcd: c.Respcd, Resperr: c.Resperr, Respmsg: c.Respmsg}
}

// params builds the signed field map from name/value pairs, leaving out
// empty values (QFPAY.md §1: never send an empty parameter).
func params(kv ...string) map[string]string {
	m := make(map[string]string, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			m[kv[i]] = kv[i+1]
		}
	}
	return m
}

// encodeForm URL-encodes the fields in name order.
func encodeForm(p map[string]string) string {
	names := make([]string, 0, len(p))
	for k := range p {
		names = append(names, k)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, k := range names {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(k))
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(p[k]))
	}
	return b.String()
}

// do signs and sends call.Request, reads and checks the answer, and returns the
// decoded top-level object with respcd, resperr and respmsg taken into call.
func (c *Client) do(ctx context.Context, call *Call, path string) (object, error) {
	st := c.cfg.signType()
	sig := signBytes([]byte(Canonical(call.Request)), c.cfg.ClientKey, st)
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout())
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, strings.NewReader(encodeForm(call.Request)))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("X-QF-APPCODE", c.cfg.AppCode)
	hreq.Header.Set("X-QF-SIGN", sig)
	if st == SignSHA256 {
		hreq.Header.Set("X-QF-SIGNTYPE", string(SignSHA256))
	}
	start := time.Now()
	call.Sent = true
	resp, err := c.hc.Do(hreq)
	if err != nil {
		call.Latency = time.Since(start)
		return nil, transportError(call.Endpoint, err)
	}
	defer resp.Body.Close()
	call.HTTPStatus = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodyBytes+1))
	call.Latency = time.Since(start)
	call.Raw = slices.Clone(body[:min(len(body), MaxRawBytes)])
	if err != nil {
		return nil, transportError(call.Endpoint, err)
	}
	if len(body) > MaxBodyBytes {
		return nil, fmt.Errorf("body larger than %d bytes: %w", MaxBodyBytes, ErrMalformedResponse)
	}
	o, derr := decodeObject(body)
	if derr == nil {
		var errs [3]error
		call.Respcd, errs[0] = o.take("respcd")
		call.Resperr, errs[1] = o.take("resperr")
		call.Respmsg, errs[2] = o.take("respmsg")
		derr = errors.Join(errs[:]...)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, &HTTPError{Endpoint: call.Endpoint, Status: resp.StatusCode, RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
	}
	if c.cfg.VerifyResponses {
		if got := resp.Header.Get("X-QF-SIGN"); got != "" {
			rst := SignMD5
			if strings.EqualFold(resp.Header.Get("X-QF-SIGNTYPE"), string(SignSHA256)) {
				rst = SignSHA256
			}
			if !verifyResponse(body, c.cfg.ClientKey, rst, got) {
				return nil, ErrResponseSignature
			}
		}
	}
	if derr != nil {
		return nil, derr
	}
	if call.Respcd == "" {
		return nil, fmt.Errorf("no respcd: %w", ErrMalformedResponse)
	}
	return o, nil
}

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}

func retryAfter(h string) time.Duration {
	if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && n > 0 {
		// A week bounds what a Duration can hold here and what anyone could
		// mean; the executor caps it further at its backoff max.
		return time.Duration(min(n, maxRetryAfterSeconds)) * time.Second
	}
	return 0
}

const maxRetryAfterSeconds = 7 * 24 * 3600

// transportError translates net/http's errors at the seam: the *url.Error
// (which names the URL) is dropped, its cause kept for errors.Is.
func transportError(endpoint string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	timeout := errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
	return &TransportError{Endpoint: endpoint, Timeout: timeout, Err: err}
}

// SendsMchID reports whether this client sends mchid at all. A client that
// does not is one QFPay merchant, known by its app code, whatever mchid an
// event names.
func (c *Client) SendsMchID() bool { return !c.cfg.OmitMchID }
