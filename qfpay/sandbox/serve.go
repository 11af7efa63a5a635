package sandbox

// This file takes an API call through its stages, parse → limit →
// authenticate → validate → fault → answer, and writes what QFPay would.
// Every stage that ends a call writes its answer and records it in the ledger.

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ServeHTTP answers /trade/v1/{query,reversal,close} like QFPay, and the admin
// surface under /_sandbox/.
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch p := r.URL.Path; {
	case p == "/trade/v1/query":
		s.serveAPI(w, r, epQuery)
	case p == "/trade/v1/reversal":
		s.serveAPI(w, r, epReversal)
	case p == "/trade/v1/close":
		s.serveAPI(w, r, epClose)
	case strings.HasPrefix(p, "/_sandbox/"):
		s.serveAdmin(w, r)
	default:
		http.NotFound(w, r)
	}
}

var messages = map[string]string{
	"1104": "parameter error",
	"1108": "signature error",
	"1142": "order already closed",
	"1143": "transaction in progress, query later",
	"1147": "payment failed",
	"1260": "order already paid",
	"1262": "order already refunded",
	"1263": "order already reversed",
	"1264": "order already cancelled",
	"1268": "transaction does not exist",
}

// flat is the shape of every answer but a query's: the code, and for a cancel
// the transaction it is about.
type flat struct {
	Respcd     string `json:"respcd"`
	Resperr    string `json:"resperr"`
	Respmsg    string `json:"respmsg"`
	OrigSyssn  string `json:"orig_syssn,omitempty"`
	Syssn      string `json:"syssn,omitempty"`
	OutTradeNo string `json:"out_trade_no,omitempty"`
	TxAmt      any    `json:"txamt,omitempty"`
	TxCurrCd   string `json:"txcurrcd,omitempty"`
	TxDtm      string `json:"txdtm,omitempty"`
	SysDtm     string `json:"sysdtm,omitempty"`
	Chnlsn     string `json:"chnlsn,omitempty"`
	Udid       string `json:"udid,omitempty"`
	Cardcd     string `json:"cardcd,omitempty"`
}

// codeAnswer is a bare answer with respcd and its message (detail, if given).
func codeAnswer(respcd, detail string) flat {
	msg := messages[respcd]
	if detail != "" {
		msg = detail
	}
	return flat{Respcd: respcd, Resperr: msg, Respmsg: msg}
}

// call is one API call on its way through the stages of serveAPI.
type call struct {
	endpoint string
	now      time.Time
	fields   map[string]string // the received form fields, empty ones left out
	key      []byte            // the key that verified the call's signature
	ent      Entry             // what the ledger will keep
	k        tkey              // the transaction the call is about, if single
	single   bool              // the call is about one transaction, k
}

// serveAPI takes a call through its stages; each stage that ends the call
// answers it and reports false.
func (s *Sandbox) serveAPI(w http.ResponseWriter, r *http.Request, endpoint string) {
	c := &call{endpoint: endpoint, now: s.now()}
	c.ent = Entry{Time: c.now, Endpoint: endpoint, AppCode: r.Header.Get("X-QF-APPCODE")}
	if !s.parse(w, r, c) {
		return
	}
	if otn := c.ent.OutTradeNo; otn != "" {
		s.arrived(otn, 1)
		defer s.arrived(otn, -1)
	}
	if s.limit(w, r, c) &&
		s.authenticate(w, r, c) &&
		s.validate(w, c) &&
		s.fault(w, c) {
		s.answer(w, c)
	}
}

// parse reads the form fields (body and URL); an unreadable body answers 1104.
func (s *Sandbox) parse(w http.ResponseWriter, r *http.Request, c *call) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		c.ent.Respcd, c.ent.Fault = "1104", "invalid"
		s.reply(w, c, codeAnswer("1104", "unreadable form body"))
		return false
	}
	c.fields = make(map[string]string, len(r.Form))
	for k, v := range r.Form {
		if len(v) > 0 && v[0] != "" {
			c.fields[k] = v[0]
		}
	}
	c.ent.Fields, c.ent.MchID, c.ent.OutTradeNo, c.ent.Syssn = c.fields, c.fields["mchid"], c.fields["out_trade_no"], c.fields["syssn"]
	return true
}

// limit answers HTTP 429 when rate limiting is on and the merchant (mchid, or
// the app code without one) is over its limits.
func (s *Sandbox) limit(w http.ResponseWriter, r *http.Request, c *call) bool {
	if !s.rateOn.Load() {
		return true
	}
	who := c.ent.MchID
	if who == "" {
		who = "appcode:" + r.Header.Get("X-QF-APPCODE")
	}
	if s.limiter.allow(who, c.now) {
		return true
	}
	c.ent.HTTPStatus, c.ent.Fault = http.StatusTooManyRequests, "rate_limit"
	s.ledger.add(c.ent)
	w.Header().Set("Retry-After", "1")
	http.Error(w, "rate limit exceeded", http.StatusTooManyRequests)
	return false
}

// authenticate checks X-QF-APPCODE and the signature against every accepted
// pair of app code and key; no match answers 1108 in band. The ledger keeps
// the app code the call claimed and, when a key verified it, that key's label.
func (s *Sandbox) authenticate(w http.ResponseWriter, r *http.Request, c *call) bool {
	st, appCode := r.Header.Get("X-QF-SIGNTYPE"), c.ent.AppCode
	if st == "" || st == "MD5" || st == "SHA256" {
		for _, cr := range *s.creds.Load() {
			if cr.AppCode == appCode && signatureOK(c.fields, []byte(cr.Key), st == "SHA256", r.Header.Get("X-QF-SIGN")) {
				c.key, c.ent.KeyLabel = []byte(cr.Key), cr.Label
				return true
			}
		}
	}
	c.ent.Respcd, c.ent.Fault = "1108", "bad_sign"
	s.reply(w, c, codeAnswer("1108", ""))
	return false
}

// validate answers 1104 naming the first bad field.
func (s *Sandbox) validate(w http.ResponseWriter, c *call) bool {
	field, reason := invalidField(c.endpoint, c.fields)
	if field == "" {
		return true
	}
	c.ent.Respcd, c.ent.Fault = "1104", "invalid"
	s.reply(w, c, codeAnswer("1104", "invalid "+field+": "+reason))
	return false
}

// target finds the transaction the call is about: a single-order query names
// one out_trade_no; a cancel names an out_trade_no or a known syssn, and the
// ledger keeps the state it finds the transaction in.
func (s *Sandbox) target(c *call) {
	c.k, c.single = tkey{c.ent.MchID, c.ent.OutTradeNo}, true
	if c.endpoint == epQuery {
		c.single = c.ent.OutTradeNo != "" && c.ent.Syssn == "" && !strings.Contains(c.ent.OutTradeNo, ",")
		return
	}
	if c.ent.OutTradeNo == "" {
		if v, ok := s.syssnIdx.Load(c.ent.Syssn); ok && v.(tkey).mchid == c.ent.MchID {
			c.k = v.(tkey)
			c.ent.OutTradeNo = c.k.otn
		} else {
			c.single = false
			return
		}
	}
	if t, ok := s.Get(c.k.mchid, c.k.otn); ok {
		c.ent.StateBefore = t.State
	}
}

// fault plays the scripted faults of the call's transaction, in order: the
// latency, then drop, HTTP 429, HTTP 5xx (each ends the call), then drop_after
// (noted here, played by answer once the effect is done).
func (s *Sandbox) fault(w http.ResponseWriter, c *call) bool {
	s.target(c)
	if !c.single {
		return true
	}
	b := s.behavior(c.k.otn)
	if b == nil || !b.covers(c.endpoint) {
		return true
	}
	sh := s.shard(c.k.otn)
	sh.mu.Lock()
	e := s.entryLocked(sh, c.k, b, c.fields, c.now)
	e.calls++
	n := e.calls
	sh.mu.Unlock()
	if !s.sleep(b.Latency.sample()) {
		c.ent.HTTPStatus, c.ent.Fault = http.StatusServiceUnavailable, "shutdown"
		s.ledger.add(c.ent)
		http.Error(w, "sandbox closed", http.StatusServiceUnavailable)
		return false
	}
	switch {
	case n <= b.Drop:
		c.ent.Fault = "drop"
		s.ledger.add(c.ent)
		drop(w)
		return false
	case n <= b.Drop+b.HTTP429:
		c.ent.HTTPStatus, c.ent.Fault = http.StatusTooManyRequests, "429"
		s.ledger.add(c.ent)
		b.retryAfter(w)
		http.Error(w, "too many requests", http.StatusTooManyRequests)
		return false
	case n <= b.Drop+b.HTTP429+b.HTTP5xx:
		code := b.Status5xx
		if code == 0 {
			code = http.StatusServiceUnavailable
		}
		c.ent.HTTPStatus, c.ent.Fault = code, "5xx"
		s.ledger.add(c.ent)
		b.retryAfter(w)
		http.Error(w, http.StatusText(code), code)
		return false
	case n <= b.Drop+b.HTTP429+b.HTTP5xx+b.DropAfter:
		c.ent.Fault = "drop_after"
	}
	return true
}

// retryAfter sets the scripted Retry-After header, if any.
func (b *Behavior) retryAfter(w http.ResponseWriter) {
	if b.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.FormatInt(int64(time.Duration(b.RetryAfter)/time.Second), 10))
	}
}

// answer does what the call asks (query or cancel) and writes the answer, or
// drops the connection after the effect when drop_after is due.
func (s *Sandbox) answer(w http.ResponseWriter, c *call) {
	var body any
	switch {
	case c.endpoint == epQuery:
		body = s.query(&c.ent, c.fields, c.now)
	case c.single:
		body = s.cancel(&c.ent, c.k, c.fields, c.endpoint, c.now)
	default:
		c.ent.Respcd = "1268"
		body = codeAnswer("1268", "")
	}
	if c.ent.Fault == "drop_after" {
		c.ent.HTTPStatus = 0
		s.ledger.add(c.ent)
		drop(w)
		return
	}
	s.reply(w, c, body)
}

// reply writes body as JSON (HTTP 200), signs it if configured (with the key
// that verified the call, or the first accepted key before that), and records
// the call in the ledger.
func (s *Sandbox) reply(w http.ResponseWriter, c *call, body any) {
	ent, key := &c.ent, c.key
	if key == nil {
		key = s.key
	}
	b, err := json.Marshal(body)
	if err != nil {
		ent.HTTPStatus = http.StatusInternalServerError
		s.ledger.add(*ent)
		http.Error(w, "encode answer", http.StatusInternalServerError)
		return
	}
	ent.HTTPStatus = http.StatusOK
	s.ledger.add(*ent)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	if s.cfg.SignResponses {
		h.Set("X-QF-SIGN", responseSignature(b, key))
	}
	_, _ = w.Write(b)
}

// sleep waits d, or less if the sandbox is closed (then it reports false).
func (s *Sandbox) sleep(d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-s.done:
		return false
	}
}

// drop closes the connection without an answer, with a TCP reset when it can.
func drop(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		panic(http.ErrAbortHandler)
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
