package console_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/console"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	adminToken  = "admin-token-0123456789-abcdefghij"
	viewerToken = "viewer-token-0123456789-abcdefghij"
)

// fixture is a console on its own database, with attempts seeded through
// the store as the daemon would leave them.
type fixture struct {
	t    *testing.T
	st   *store.Store
	srv  *httptest.Server
	base string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st := storetest.New(t)
	h, err := console.New(st, console.Config{AdminToken: adminToken, ViewerToken: viewerToken})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{t: t, st: st, srv: srv, base: srv.URL}
}

// seed records an event for otn and takes its attempt to status through a
// claim and one step with a gateway call, as a worker would.
func (f *fixture) seed(otn string, status reversald.Status) int64 {
	f.t.Helper()
	ctx := context.Background()
	e := reversald.Event{EventID: "e-" + otn, MchID: "MN1", OutTradeNo: otn, TxAmt: 2500, TxCurrCd: "HKD",
		TxDtm: "2026-11-22 09:59:00", PayType: "800101", Source: reversald.Source{Topic: "in", Payload: []byte(`{}`)}}
	if _, err := f.st.Intake(ctx, []reversald.Event{e}); err != nil {
		f.t.Fatal(err)
	}
	a, err := f.st.Find(ctx, "MN1", otn)
	if err != nil {
		f.t.Fatal(err)
	}
	if status == reversald.StatusPending {
		return a.ID
	}
	got, err := f.st.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1, IDs: []int64{a.ID}})
	if err != nil || len(got) != 1 {
		f.t.Fatalf("claim %d: %v %v", a.ID, got, err)
	}
	a = got[0]
	a.Status, a.Step, a.Reason, a.Respcd = status, reversald.StepDone, "QFPay's record shows 999 HKD", "0000"
	a.GatewayCalls++
	call := reversald.Call{Step: reversald.StepQuery, Endpoint: "query", AppCode: "APP1",
		Request: map[string]string{"out_trade_no": otn, "mchid": "MN1"}, HTTPStatus: 200, Respcd: "0000",
		Response: []byte(`{"respcd":"0000","data":[{"out_trade_no":"` + otn + `"}]}`), At: time.Now()}
	if err := f.st.WriteStep(ctx, store.Step{Attempt: a, Calls: []reversald.Call{call}}); err != nil {
		f.t.Fatal(err)
	}
	return a.ID
}

// client is a browser-like HTTP client: a cookie jar, no redirects
// followed.
type client struct {
	f    *fixture
	http *http.Client
	csrf string
}

func (f *fixture) client() *client {
	jar, _ := cookiejar.New(nil)
	return &client{f: f, http: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type answer struct {
	code int
	body string
	h    http.Header
}

func (c *client) do(method, path string, form url.Values, header map[string]string) answer {
	c.f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.f.base+path, body)
	if err != nil {
		c.f.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signIn signs c in and keeps the session's CSRF token.
func (c *client) signIn(name, token string) {
	c.f.t.Helper()
	a := c.do(http.MethodPost, "/signin", url.Values{"name": {name}, "token": {token}}, nil)
	if a.code != http.StatusSeeOther {
		c.f.t.Fatalf("sign in %s: %d\n%s", name, a.code, a.body)
	}
	m := csrfField.FindStringSubmatch(c.do(http.MethodGet, "/", nil, nil).body)
	if m == nil {
		c.f.t.Fatal("no CSRF token on the overview")
	}
	c.csrf = m[1]
}

func (c *client) act(id int64, verb string, form url.Values) answer {
	c.f.t.Helper()
	return c.do(http.MethodPost, fmt.Sprintf("/attempts/%d/%s", id, verb), form, nil)
}

func (f *fixture) actions(id int64) int {
	f.t.Helper()
	h, err := f.st.History(context.Background(), id)
	if err != nil {
		f.t.Fatal(err)
	}
	return len(h.Actions)
}

// TestEveryResponseIsLockedDown: every answer, pages, errors, assets and
// redirects alike, carries the strict CSP and the other headers.
func TestEveryResponseIsLockedDown(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.client()
	c.signIn("alice", adminToken)
	id := f.seed("A1", reversald.StatusNeedsReview)
	anon := f.client()
	for _, r := range []struct {
		c    *client
		path string
		code int
	}{
		{anon, "/", http.StatusSeeOther}, {anon, "/signin", http.StatusOK}, {anon, "/static/console.css", http.StatusOK},
		{anon, "/static/console.js", http.StatusOK}, {anon, "/nope", http.StatusNotFound},
		{c, "/", http.StatusOK}, {c, "/attempts", http.StatusOK}, {c, fmt.Sprintf("/attempts/%d", id), http.StatusOK},
		{c, "/attempts/999999", http.StatusNotFound}, {c, "/attempts/x", http.StatusNotFound},
		{c, "/attempts?limit=x", http.StatusBadRequest},
	} {
		a := r.c.do(http.MethodGet, r.path, nil, nil)
		if a.code != r.code {
			t.Errorf("GET %s: %d, want %d", r.path, a.code, r.code)
		}
		for k, want := range map[string]string{
			"Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
			"X-Content-Type-Options":  "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store", "X-Frame-Options": "DENY",
		} {
			if got := a.h.Get(k); got != want {
				t.Errorf("GET %s: %s %q, want %q", r.path, k, got, want)
			}
		}
		if strings.Contains(a.body, "http://") || strings.Contains(a.body, "https://") || strings.Contains(a.body, "//cdn") {
			t.Errorf("GET %s: the page names another origin", r.path)
		}
	}
}

// TestAccessControl: who may read and who may act, and how a forged post is
// refused. Every refused post leaves the attempt and its audit trail as
// they were.
func TestAccessControl(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.seed("A1", reversald.StatusNeedsReview)
	admin, viewer, anon := f.client(), f.client(), f.client()
	admin.signIn("alice", adminToken)
	viewer.signIn("victor", viewerToken)
	note := func(c *client) url.Values { return url.Values{"note": {"n"}, "csrf": {c.csrf}} }
	list := fmt.Sprintf("/attempts/%d", id)
	for _, r := range []struct {
		what   string
		c      *client
		method string
		path   string
		form   url.Values
		header map[string]string
		code   int
	}{
		{"anonymous reads", anon, http.MethodGet, list, nil, nil, http.StatusSeeOther},
		{"anonymous acts", anon, http.MethodPost, list + "/retry", url.Values{"note": {"n"}}, nil, http.StatusUnauthorized},
		{"viewer reads", viewer, http.MethodGet, list, nil, nil, http.StatusOK},
		{"viewer bearer reads", anon, http.MethodGet, "/attempts", nil, map[string]string{"Authorization": "Bearer " + viewerToken}, http.StatusOK},
		{"wrong bearer", anon, http.MethodGet, "/attempts", nil, map[string]string{"Authorization": "Bearer " + viewerToken + "x"}, http.StatusUnauthorized},
		{"admin bearer acts", anon, http.MethodPost, list + "/retry", url.Values{"note": {"n"}}, map[string]string{"Authorization": "Bearer " + adminToken}, http.StatusForbidden},
		{"viewer retries", viewer, http.MethodPost, list + "/retry", note(viewer), nil, http.StatusForbidden},
		{"viewer resolves", viewer, http.MethodPost, list + "/resolve", url.Values{"note": {"n"}, "status": {"paid"}, "csrf": {viewer.csrf}}, nil, http.StatusForbidden},
		{"admin without CSRF", admin, http.MethodPost, list + "/retry", url.Values{"note": {"n"}}, nil, http.StatusForbidden},
		{"admin with the viewer's CSRF", admin, http.MethodPost, list + "/retry", note(viewer), nil, http.StatusForbidden},
		{"admin cross-site", admin, http.MethodPost, list + "/retry", note(admin), map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"admin other origin", admin, http.MethodPost, list + "/retry", note(admin), map[string]string{"Origin": "https://evil.example"}, http.StatusForbidden},
		{"admin without a note", admin, http.MethodPost, list + "/retry", url.Values{"note": {"  "}, "csrf": {admin.csrf}}, nil, http.StatusBadRequest},
		{"admin, a note too long", admin, http.MethodPost, list + "/retry", url.Values{"note": {strings.Repeat("n", 2001)}, "csrf": {admin.csrf}}, nil, http.StatusBadRequest},
		{"forged sign-in", anon, http.MethodPost, "/signin", url.Values{"name": {"m"}, "token": {adminToken}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
	} {
		if a := r.c.do(r.method, r.path, r.form, r.header); a.code != r.code {
			t.Errorf("%s: %s %s: %d, want %d\n%.300s", r.what, r.method, r.path, a.code, r.code, a.body)
		}
	}
	if n := f.actions(id); n != 0 {
		t.Fatalf("%d operator actions after refused posts, want 0", n)
	}
	// The viewer's page has no action; the admin's has both forms.
	if b := viewer.do(http.MethodGet, list, nil, nil).body; strings.Contains(b, "/retry") || strings.Contains(b, "/resolve") {
		t.Error("the read-only page has an action form")
	}
	if b := admin.do(http.MethodGet, list, nil, nil).body; !strings.Contains(b, "/retry") || !strings.Contains(b, "/resolve") {
		t.Error("the admin's page has no action form")
	}
	// Same origin, with the token: done.
	if a := admin.act(id, "retry", url.Values{"note": {"key rotated"}, "csrf": {admin.csrf}}); a.code != http.StatusSeeOther {
		t.Fatalf("admin retry: %d\n%s", a.code, a.body)
	}
	if n := f.actions(id); n != 1 {
		t.Errorf("%d operator actions after the retry, want 1", n)
	}
	// Signed out, the session and its token are dead.
	if a := admin.do(http.MethodPost, "/signout", url.Values{"csrf": {admin.csrf}}, nil); a.code != http.StatusSeeOther {
		t.Errorf("sign out: %d", a.code)
	}
	if a := admin.do(http.MethodGet, "/", nil, nil); a.code != http.StatusSeeOther {
		t.Errorf("after sign-out: %d, want 303 to sign in", a.code)
	}
}

// TestActionsUseTheStore: resolve from the console writes the audit row and
// queues an outcome marked resolved_by the signed-in operator; an attempt
// that is not needs_review is refused with 409, a status an operator may
// not choose with 400.
func TestActionsUseTheStore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	id := f.seed("A1", reversald.StatusNeedsReview)
	done := f.seed("A2", reversald.StatusReversed)
	c := f.client()
	c.signIn("alice", adminToken)
	form := func(status, note string) url.Values {
		return url.Values{"status": {status}, "note": {note}, "csrf": {c.csrf}}
	}
	if a := c.act(id, "resolve", form("not_found", "x")); a.code != http.StatusBadRequest {
		t.Errorf("resolve to not_found: %d, want 400", a.code)
	}
	if a := c.act(id, "resolve", form("paid", "QFPay console: paid")); a.code != http.StatusSeeOther || a.h.Get("Location") != fmt.Sprintf("/attempts/%d?done=resolve", id) {
		t.Fatalf("resolve: %d %s\n%s", a.code, a.h.Get("Location"), a.body)
	}
	h, err := f.st.History(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Actions) != 1 || h.Actions[0].Operator != "alice (console)" || h.Actions[0].Note != "QFPay console: paid" || h.Actions[0].ToStatus != reversald.StatusPaid {
		t.Errorf("audit: %+v", h.Actions)
	}
	last := h.Outcomes[len(h.Outcomes)-1]
	if h.Attempt.Status != reversald.StatusPaid || last.ResolvedBy != "alice (console)" || last.Status != reversald.StatusPaid || last.PublishedAt != nil {
		t.Errorf("after resolve: attempt %s, last outcome %+v", h.Attempt.Status, last.Outcome)
	}
	page := c.do(http.MethodGet, fmt.Sprintf("/attempts/%d?done=resolve", id), nil, nil).body
	for _, want := range []string{"Resolved: a new outcome", "alice (console)", "QFPay console: paid", "queued"} {
		if !strings.Contains(page, want) {
			t.Errorf("the attempt page does not show %q", want)
		}
	}
	for _, a := range []struct {
		id   int64
		verb string
	}{{id, "retry"}, {id, "resolve"}, {done, "retry"}} {
		if got := c.act(a.id, a.verb, form("paid", "again")); got.code != http.StatusConflict || !strings.Contains(got.body, "not in needs_review") {
			t.Errorf("%s %d (not needs_review): %d, want 409\n%.300s", a.verb, a.id, got.code, got.body)
		}
	}
	if a := c.act(999999, "retry", form("", "n")); a.code != http.StatusNotFound {
		t.Errorf("retry of no attempt: %d, want 404", a.code)
	}
}

// TestHostileValuesAreText: an out_trade_no and a gateway answer carrying
// HTML and script are escaped wherever they show.
func TestHostileValuesAreText(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const hostile = `<script>alert(1)</script>"><img src=x onerror=alert(2)>`
	id := f.seed(hostile, reversald.StatusNeedsReview)
	c := f.client()
	c.signIn(`<b>mallory</b>`, viewerToken)
	for _, path := range []string{"/", "/attempts", "/attempts?out_trade_no=" + url.QueryEscape(hostile), fmt.Sprintf("/attempts/%d", id)} {
		a := c.do(http.MethodGet, path, nil, nil)
		if a.code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, a.code)
		}
		if strings.Contains(a.body, "<script>alert") || strings.Contains(a.body, "<img src=x") || strings.Contains(a.body, "<b>mallory") {
			t.Errorf("GET %s: a hostile value is in the page unescaped", path)
		}
	}
	if b := c.do(http.MethodGet, fmt.Sprintf("/attempts/%d", id), nil, nil).body; !strings.Contains(b, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Error("the attempt page does not show the out_trade_no escaped")
	}
}

// TestSignIn: a wrong token gets no session; a name is required; sign-in
// attempts are rate limited.
func TestSignIn(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c := f.client()
	if a := c.do(http.MethodPost, "/signin", url.Values{"name": {"a"}, "token": {adminToken + "x"}}, nil); a.code != http.StatusUnauthorized || a.h.Get("Set-Cookie") != "" {
		t.Errorf("wrong token: %d, Set-Cookie %q", a.code, a.h.Get("Set-Cookie"))
	}
	if a := c.do(http.MethodPost, "/signin", url.Values{"name": {" "}, "token": {adminToken}}, nil); a.code != http.StatusBadRequest || a.h.Get("Set-Cookie") != "" {
		t.Errorf("no name: %d, Set-Cookie %q", a.code, a.h.Get("Set-Cookie"))
	}
	limited := false
	for range 20 {
		if a := c.do(http.MethodPost, "/signin", url.Values{"name": {"a"}, "token": {"guess"}}, nil); a.code == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Error("20 sign-in attempts at once were not limited")
	}
}

// TestOverviewAndPaging: the overview counts by status and lists pending
// attempts per merchant; the list pages by keyset and its next link keeps
// the filters.
func TestOverviewAndPaging(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for _, otn := range []string{"P1", "P2", "P3"} {
		f.seed(otn, reversald.StatusPending)
	}
	f.seed("N1", reversald.StatusNeedsReview)
	c := f.client()
	c.signIn("victor", viewerToken)
	page := c.do(http.MethodGet, "/", nil, nil).body
	for _, want := range []string{`id="needs-review">1<`, `id="pending">3<`, `id="outbox">1<`,
		`<a href="/attempts?status=pending&amp;mchid=MN1">MN1</a></td><td class="num">3</td>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the overview lacks %s", want)
		}
	}
	rows := regexp.MustCompile(`class="attempt-link">(\d+)<`)
	next := regexp.MustCompile(`href="([^"]+)" id="next"`)
	path, seen := "/attempts?status=pending&sort=id&order=asc&limit=2", []string{}
	for range 3 { // three pages at most: 2 + 1 rows, and no link after the last
		a := c.do(http.MethodGet, path, nil, nil)
		if a.code != http.StatusOK {
			t.Fatalf("GET %s: %d", path, a.code)
		}
		for _, m := range rows.FindAllStringSubmatch(a.body, -1) {
			seen = append(seen, m[1])
		}
		m := next.FindStringSubmatch(a.body)
		if m == nil {
			break
		}
		path = strings.ReplaceAll(m[1], "&amp;", "&")
		if !strings.Contains(path, "status=pending") || !strings.Contains(path, "after=") {
			t.Errorf("next page link %s drops the filters or the cursor", path)
		}
	}
	if strings.Join(seen, ",") != "1,2,3" {
		t.Errorf("paging through the pending attempts by id: %v, want 1,2,3", seen)
	}
}

// TestSessionsExpire: a session ends after CONSOLE_SESSION_TTL, on the
// console's clock.
func TestSessionsExpire(t *testing.T) {
	t.Parallel()
	clock := time.Now()
	var mu sync.Mutex
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	h, err := console.New(storetest.New(t), console.Config{AdminToken: adminToken, ViewerToken: viewerToken, SessionTTL: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	f := &fixture{t: t, srv: srv, base: srv.URL}
	c := f.client()
	c.signIn("alice", adminToken)
	if a := c.do(http.MethodGet, "/attempts", nil, nil); a.code != http.StatusOK {
		t.Fatalf("signed in: %d", a.code)
	}
	mu.Lock()
	clock = clock.Add(time.Hour)
	mu.Unlock()
	if a := c.do(http.MethodGet, "/attempts", nil, nil); a.code != http.StatusSeeOther {
		t.Errorf("an hour later: %d, want 303 to sign in", a.code)
	}
}

// TestConfigRefusesWeakTokens: New refuses tokens that are short or equal.
func TestConfigRefusesWeakTokens(t *testing.T) {
	t.Parallel()
	for _, c := range []console.Config{
		{AdminToken: "short", ViewerToken: viewerToken},
		{AdminToken: adminToken, ViewerToken: ""},
		{AdminToken: adminToken, ViewerToken: adminToken},
	} {
		if _, err := console.New(nil, c); err == nil {
			t.Errorf("accepted %d- and %d-character tokens (equal: %v)", len(c.AdminToken), len(c.ViewerToken), c.AdminToken == c.ViewerToken)
		}
	}
}
