package qfpay

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func cred(name, appCode, key string, edit func(*Credential)) Credential {
	c := Credential{Name: name, Config: Config{BaseURL: "http://127.0.0.1:1", AppCode: appCode, ClientKey: NewKey(key)}}
	if edit != nil {
		edit(&c)
	}
	return c
}

func TestDirectoryResolve(t *testing.T) {
	t.Parallel()
	d, err := NewDirectory([]Credential{
		cred("hk", "APPHK", "key-hk", func(c *Credential) { c.MchIDs = []string{"M1", "M2", "ABCX1"}; c.RatePerMin = 200 }),
		cred("abc", "APPABC", "key-abc", func(c *Credential) { c.Patterns = []string{"ABC*"} }),
		cred("abcd", "APPABCD", "key-abcd", func(c *Credential) { c.Patterns = []string{"ABCD*", "ZZ*"}; c.RatePerSec = 10 }),
		cred("rest", "APPREST", "key-rest", func(c *Credential) { c.Default = true }),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.CloseIdleConnections)
	for _, tt := range []struct{ mchid, want string }{
		{"M1", "hk"}, {"M2", "hk"},
		{"ABC", "abc"}, {"ABC9", "abc"}, // a pattern matches its prefix itself too
		{"ABCD1", "abcd"},              // the longest prefix wins
		{"ABCX1", "hk"},                // an exact mchid beats every pattern
		{"ZZTOP", "abcd"},              // a credential may give several patterns
		{"M3", "rest"}, {"AB", "rest"}, // no list, no pattern: the default
		{"", "rest"}, // an event with no mchid
	} {
		a, err := d.Resolve(tt.mchid)
		if err != nil || a.Name != tt.want || a.Client == nil {
			t.Errorf("Resolve(%q) = %s, %v; want %s", tt.mchid, a.Name, err, tt.want)
		}
	}
	if a, _ := d.Resolve("M1"); a.AppCode != "APPHK" || a.RatePerMin != 200 || a.RatePerSec != 0 {
		t.Errorf("hk account = %+v, want app code APPHK and the rate override", a)
	}
	if a, _ := d.Resolve("ABCD1"); a.RatePerSec != 10 {
		t.Errorf("abcd account = %+v, want its per-second override", a)
	}
	if got := d.Accounts(); len(got) != 4 || got[0].Name != "hk" || got[3].Name != "rest" {
		t.Errorf("Accounts = %+v, want the four in the order given", got)
	}

	// Without a default, a merchant no credential covers has none.
	d2, err := NewDirectory([]Credential{cred("hk", "APPHK", "key-hk", func(c *Credential) { c.MchIDs = []string{"M1"}; c.Patterns = []string{"HK*"} })})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"M2", "", "H"} {
		_, err := d2.Resolve(m)
		if !errors.Is(err, ErrNoCredential) || Classify(err) != ClassNeedsReview {
			t.Errorf("Resolve(%q) = %v; want ErrNoCredential, classified needs review", m, err)
		}
	}
	if _, err := d2.Resolve("M2"); err == nil || err.Error() != "no QFPay credential for merchant M2" {
		t.Errorf("error = %v; want it to name the merchant", err)
	}
	if _, err := d2.Resolve(""); err == nil || !strings.Contains(err.Error(), "(no mchid)") {
		t.Errorf("error for no mchid = %v", err)
	}
}

// TestValidateCredentialsListsEveryProblem: one bad set, every problem named
// with its credential, and no key in the message.
func TestValidateCredentialsListsEveryProblem(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-key-material"
	creds := []Credential{
		cred("a", "APPA", secret, func(c *Credential) { c.MchIDs = []string{"M1", "M2"}; c.Patterns = []string{"AB*"}; c.Default = true }),
		cred("b", "", secret, func(c *Credential) {
			c.MchIDs = []string{"M2", "bad-mchid"}
			c.Patterns = []string{"AB*", "A*B", "*"}
			c.Config.SignType = "SHA1"
			c.Config.BaseURL = "ftp://qfpay"
			c.Default = true
		}),
		cred("c", "APPC", "", func(c *Credential) { c.RatePerMin = -1; c.Config.MchID = "X"; c.Config.OmitMchID = true }),
		cred("a", "APPA2", secret, func(c *Credential) { c.MchIDs = []string{"M9"} }),
		cred("", "APPE", secret, func(c *Credential) { c.Default = false; c.MchIDs = []string{"M10"} }),
		cred("sp ace", "APPF", secret, func(c *Credential) { c.MchIDs = []string{"M11"} }),
	}
	err := ValidateCredentials(creds)
	if err == nil {
		t.Fatal("a bad set was accepted")
	}
	msg := err.Error()
	for _, want := range []string{
		"credential b: app code is required",
		"credential b: sign type \"SHA1\"",
		"credential b: base url must be an absolute http or https url",
		"credential b: mchid M2 is also listed by credential a",
		`credential b: mchid "bad-mchid" must be up to 16 letters and digits`,
		"credential b: pattern AB* is also given by credential a",
		`credential b: pattern "A*B" must be a prefix`,
		`credential b: pattern "*" must be a prefix`,
		"credential b: is a default, and so is credential a",
		"credential c: client key is required",
		"credential c: covers no merchant",
		"credential c: rate per minute must be a positive number",
		"credential c: mchid is set but mchid is never sent",
		"credential a: name is also given to credential #1",
		"credential #5: name is required",
		"credential sp ace: name must be",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("problems do not name %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, secret) {
		t.Errorf("the key is in the problems:\n%s", msg)
	}
	if _, err := NewDirectory(creds); err == nil {
		t.Error("NewDirectory accepted a bad set")
	}
	if err := ValidateCredentials(nil); err == nil || !strings.Contains(err.Error(), "no credential") {
		t.Errorf("an empty set: %v", err)
	}
}

// recorder is a gateway that answers every call 0000 with no record and
// notes the app code and mchid of each.
type recorder struct {
	mu    sync.Mutex
	calls []string // "APPCODE mchid"
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	_ = req.ParseForm()
	r.mu.Lock()
	r.calls = append(r.calls, req.Header.Get("X-QF-APPCODE")+" "+req.PostForm.Get("mchid"))
	r.mu.Unlock()
	_, _ = w.Write([]byte(`{"respcd":"0000","data":[]}`))
}

func (r *recorder) taken() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.calls
	r.calls = nil
	return out
}

// TestDirectoryReplace: a bad set is refused with every problem and the old
// set is kept; a good one replaces the whole set, and an account handed out
// before keeps signing as it did; mchid is left out where the credential says
// so; Call names the app code.
func TestDirectoryReplace(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	at := func(c Credential) Credential { c.Config.BaseURL = srv.URL; return c }
	d, err := NewDirectory([]Credential{
		at(cred("one", "APP1", "k1", func(c *Credential) { c.MchIDs = []string{"M1"} })),
		at(cred("omit", "APPO", "ko", func(c *Credential) { c.MchIDs = []string{"M2"}; c.Config.OmitMchID = true })),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.CloseIdleConnections)
	ctx := context.Background()
	old, _ := d.Resolve("M1")
	res, err := old.Client.Query(ctx, QueryRequest{MchID: "M1", OutTradeNo: "O1"})
	if err != nil || res.Call.AppCode != "APP1" {
		t.Fatalf("query: %v, call app code %q", err, res.Call.AppCode)
	}
	omit, _ := d.Resolve("M2")
	if res, err := omit.Client.Reverse(ctx, CancelRequest{MchID: "M2", OutTradeNo: "O2", TxAmt: 1, TxDtm: seedTxDtm}); err != nil || res.Call.Request["mchid"] != "" {
		t.Fatalf("reversal: %v, signed fields %v; want no mchid", err, res.Call.Request)
	}
	if got := rec.taken(); fmt.Sprint(got) != "[APP1 M1 APPO ]" {
		t.Errorf("calls = %q; want APP1 with mchid M1, APPO without mchid", got)
	}

	bad := []Credential{at(cred("one", "APP1", "", func(c *Credential) { c.MchIDs = []string{"M1"} })), at(cred("two", "APP2", "k2", nil))}
	if err := d.Replace(bad); err == nil || !strings.Contains(err.Error(), "client key is required") || !strings.Contains(err.Error(), "credential two: covers no merchant") {
		t.Fatalf("Replace(bad) = %v; want both problems", err)
	}
	if a, err := d.Resolve("M2"); err != nil || a.Name != "omit" {
		t.Fatalf("after a refused Replace: %s, %v; want the old set", a.Name, err)
	}

	if err := d.Replace([]Credential{at(cred("one-v2", "APP1B", "k1b", func(c *Credential) { c.MchIDs = []string{"M1"} }))}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Resolve("M2"); !errors.Is(err, ErrNoCredential) {
		t.Errorf("M2 after the replace: %v; want no credential (the whole set is replaced)", err)
	}
	now, _ := d.Resolve("M1")
	if _, err := now.Client.Query(ctx, QueryRequest{MchID: "M1", OutTradeNo: "O1"}); err != nil {
		t.Fatal(err)
	}
	// An account handed out before the replace still works, with what it had.
	if _, err := old.Client.Query(ctx, QueryRequest{MchID: "M1", OutTradeNo: "O1"}); err != nil {
		t.Fatal(err)
	}
	if got := rec.taken(); fmt.Sprint(got) != "[APP1B M1 APP1 M1]" {
		t.Errorf("calls = %q; want the new app code, then the old account's own", got)
	}
}

// TestDirectoryConcurrent: Resolve and Replace from many goroutines (run
// with -race); every Resolve sees one whole set.
func TestDirectoryConcurrent(t *testing.T) {
	t.Parallel()
	set := func(v int) []Credential {
		return []Credential{
			cred("a", fmt.Sprintf("A%d", v), "k", func(c *Credential) { c.MchIDs = []string{"M1"} }),
			cred("b", fmt.Sprintf("B%d", v), "k", func(c *Credential) { c.Default = true }),
		}
	}
	d, err := NewDirectory(set(0))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if g == 0 {
					if err := d.Replace(set(i)); err != nil {
						t.Error(err)
					}
					continue
				}
				a, err := d.Resolve("M1")
				b, err2 := d.Resolve("M9")
				if err != nil || err2 != nil || a.Name != "a" || b.Name != "b" || a.Client == nil {
					t.Errorf("Resolve: %+v %v, %+v %v", a, err, b, err2)
				}
				// One whole set: both accounts from the same version.
				if all := d.Accounts(); len(all) != 2 || all[0].AppCode[1:] != all[1].AppCode[1:] {
					t.Errorf("Accounts mixes sets: %+v", all)
				}
			}
		})
	}
	wg.Wait()
	d.CloseIdleConnections()
}
