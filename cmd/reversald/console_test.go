package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"
	"github.com/sethvargo/go-envconfig"

	"github.com/reversald/reversald/internal/kafkatest"
	"github.com/reversald/reversald/qfpay/sandbox"
)

// chromiumMinMajor is the oldest Chromium the browser test accepts; keep it
// in step with CHROMIUM_MIN_MAJOR in scripts/tools.sh.
const chromiumMinMajor = 120

// chromium returns the path of Debian's chromium, or fails the test (never
// skips) saying how to install it.
func chromium(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed: the console's browser test drives Debian's chromium headless. "+
			"Install it with `scripts/tools.sh chromium` (apt; `make test` runs `make tools`, which installs it): %v", err)
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		t.Fatalf("chromium --version: %v", err)
	}
	m := regexp.MustCompile(`Chromium (\d+)\.[0-9.]+`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("chromium --version says %q: not a Chromium version", out)
	}
	if major, _ := strconv.Atoi(string(m[1])); major < chromiumMinMajor {
		t.Fatalf("%s: the console's browser test needs Chromium %d or later (apt-get install chromium)", m[0], chromiumMinMajor)
	}
	t.Logf("browser: %s (%s)", m[0], path)
	return path
}

// consoleTokens are the two credentials of a console under test.
type consoleTokens struct{ admin, viewer, adminFile, viewerFile string }

func newConsoleTokens(t testing.TB) consoleTokens {
	t.Helper()
	dir := t.TempDir()
	tk := consoleTokens{
		admin: "admin-" + kafkatest.RandomName("tok") + "-0123456789", viewer: "viewer-" + kafkatest.RandomName("tok") + "-0123456789",
		adminFile: filepath.Join(dir, "admin"), viewerFile: filepath.Join(dir, "viewer"),
	}
	for path, v := range map[string]string{tk.adminFile: tk.admin + "\n", tk.viewerFile: tk.viewer + "\n"} {
		if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return tk
}

// startConsole runs `reversald console` in process on a free loopback port
// against dbURL (extra adds settings), as main would, until the test ends; it returns its base URL.
func startConsole(t testing.TB, dbURL string, tk consoleTokens, extra map[string]string) string {
	t.Helper()
	env := map[string]string{
		"DATABASE_URL": dbURL, "CONSOLE_ADDR": "127.0.0.1:0",
		"CONSOLE_ADMIN_TOKEN_FILE": tk.adminFile, "CONSOLE_READONLY_TOKEN_FILE": tk.viewerFile,
	}
	for k, v := range extra {
		env[k] = v
	}
	out, logs := &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"console"}, envconfig.MapLookuper(env), out, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("console stopped with %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("the console did not stop within 20s")
		}
		for _, secret := range []string{tk.admin, tk.viewer, secretKey} {
			if strings.Contains(logs.String()+out.String(), secret) {
				t.Errorf("a secret is in the console's output")
			}
		}
		if t.Failed() {
			t.Logf("console logs (tail):\n%s", tail(logs.String(), 30))
		}
	})
	var base string
	kafkatest.WaitFor(t, 30*time.Second, func() bool {
		select {
		case err := <-done:
			t.Fatalf("the console stopped at start-up: %v", err)
		default:
		}
		_, u, ok := strings.Cut(out.String(), "serving on ")
		base = strings.TrimSpace(u)
		return ok && strings.HasSuffix(out.String(), "\n")
	}, "the console to serve")
	return base
}

// screenshotDir is where the browser test writes its screenshots:
// $CONSOLE_SCREENSHOT_DIR, or .console-screenshots at the repository's root
// (git-ignored). It outlives the test, for a reviewer to look at.
func screenshotDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("CONSOLE_SCREENSHOT_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", ".console-screenshots")
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots: %s", dir)
	return dir
}

// browser starts one headless Chromium for the test, with the flags a
// machine without internet needs (nothing phones home), and returns its
// context.
func browser(t testing.TB) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // as root, Chromium's sandbox refuses to start
		chromedp.Flag("headless", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// Start the browser now, on a context without a deadline (a deadline
	// would stop the browser with it).
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// TestConsoleInBrowser drives the console in headless Chromium against a
// running daemon (real PostgreSQL, Kafka and the QFPay sandbox): an admin
// signs in, filters the list down to one needs_review attempt, opens it and
// sees its gateway timeline, retries it with a note (the audit row is
// written, the daemon re-drives it and its new outcome is queued and
// published); a post without the CSRF token is refused; the read-only
// credential sees no action and is refused 403 when it posts anyway; an
// out_trade_no of HTML and script shows as text; bad filters give a clear
// 400 page. Each page's screenshot is written to screenshotDir.
func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	bctx := browser(t) // first: a missing chromium fails before anything starts
	shots := screenshotDir(t)
	s := newStack(t, 1)
	put := func(otn string, recordAmt int64) {
		t.Helper()
		if err := s.sb.Put(sandbox.Txn{MchID: e2eMchID, OutTradeNo: otn, State: sandbox.StatePaid, PayType: "800101", TxAmt: 2500, RecordTxAmt: recordAmt}); err != nil {
			t.Fatal(err)
		}
	}
	const hostile = `<script>document.title="pwned"</script><img src=x onerror=alert(1)><b>HOSTILE</b>"'&`
	put("AMT1", 999) // QFPay's record disagrees with the event's amount: needs_review
	put("AMT2", 999)
	put(hostile, 0) // paid
	s.seed("R1", sandbox.StateInFlight, "800101")
	out := s.collect(s.results)
	s.runInProcess(nil)
	s.produce(s.in, ev{id: "e-AMT1", otn: "AMT1"}.message(), ev{id: "e-AMT2", otn: "AMT2"}.message(),
		ev{id: "e-R1", otn: "R1"}.message(), ev{id: "e-H", otn: hostile}.message())
	got := out.waitOutcomes(t, 4, 90*time.Second)
	for id, want := range map[string]string{"e-AMT1": "needs_review", "e-AMT2": "needs_review", "e-R1": "reversed", "e-H": "paid"} {
		if string(got[id].Status) != want {
			t.Fatalf("%s: %s, want %s", id, got[id].Status, want)
		}
	}
	ctx := context.Background()
	db, err := pgx.Connect(ctx, s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(ctx) })
	idOf := func(otn string) int64 {
		t.Helper()
		var id int64
		if err := db.QueryRow(ctx, `SELECT id FROM attempts WHERE out_trade_no = $1`, otn).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	amt1, amt2 := idOf("AMT1"), idOf("AMT2")

	tk := newConsoleTokens(t)
	base := startConsole(t, s.dbURL, tk, nil)
	start := time.Now()

	// Every window.confirm (the action forms' progressive enhancement) is
	// accepted, and recorded.
	var confirms syncBuffer
	dialogs := chromedp.Events(bctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			fmt.Fprintln(&confirms, ev.Message)
			_, _ = chromedp.Call(bctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	// What the browser reports: a Content-Security-Policy violation (an
	// inline style or script, an asset from elsewhere) or a script error
	// on any page fails the test at the end. Failed loads (the 403 pages
	// the test asks for) are the network's and do not count.
	var reported syncBuffer
	entries := chromedp.Events(bctx, cdplog.EntryAdded)
	go func() {
		for ev, err := range entries {
			if err != nil {
				return
			}
			if e := ev.Entry; e.Source != cdplog.EntrySourceNetwork && (e.Level == cdplog.EntryLevelError || e.Level == cdplog.EntryLevelWarning) {
				fmt.Fprintf(&reported, "%s %s: %s (%s)\n", e.Level, e.Source, e.Text, e.URL)
			}
		}
	}()
	if _, err := chromedp.Call(bctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(bctx, 30*time.Second)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100)) // quality 100: PNG
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	html := func() string { return eval(`document.documentElement.outerHTML`) }
	noSecrets := func(where string) {
		t.Helper()
		h := html()
		for _, secret := range []string{secretKey, tk.admin, tk.viewer} {
			if strings.Contains(h, secret) {
				t.Fatalf("%s: a secret (client key or token) is in the page", where)
			}
		}
	}
	signIn := func(name, token string) {
		t.Helper()
		step("sign in as "+name,
			chromedp.Navigate(base+"/"),
			chromedp.WaitVisible(chromedp.ID("signin")),
			chromedp.SendKeys(chromedp.CSS("input[name=name]"), name),
			chromedp.SendKeys(chromedp.CSS("input[name=token]"), token),
			chromedp.Click(chromedp.ID("signin")),
			chromedp.WaitVisible(chromedp.ID("counts")),
		)
	}

	// Sign in: without a session the console sends the browser to sign in.
	step("open the console", chromedp.Navigate(base+"/attempts"), chromedp.WaitVisible(chromedp.ID("signin")))
	if loc := eval(`location.pathname`); loc != "/signin" {
		t.Fatalf("without a session /attempts went to %s, want /signin", loc)
	}
	shot("01-signin")
	signIn("alice", tk.admin)
	if n := eval(`document.getElementById("needs-review").textContent`); n != "2" {
		t.Errorf("overview: %s needs review, want 2", n)
	}
	if n := eval(`document.querySelector("#merchants") ? "listed" : "none"`); n != "none" {
		t.Errorf("overview: merchants with pending attempts %s, want none (all 4 are decided)", n)
	}
	shot("02-overview")

	// Filter the list down to one attempt, and open it.
	step("filter by out_trade_no",
		chromedp.Navigate(base+"/attempts"),
		chromedp.WaitVisible(chromedp.ID("attempts")),
		chromedp.SendKeys(chromedp.ID("f-out-trade-no"), "AMT1"),
		chromedp.Click(chromedp.ID("apply")),
		chromedp.WaitVisible(chromedp.CSS(`#attempts td.otn`)),
	)
	if rows := eval(`[...document.querySelectorAll("#attempts tbody tr")].map(r => r.querySelector("td.otn").textContent).join(",")`); rows != "AMT1" {
		t.Fatalf("filtered list: %q, want the one attempt AMT1", rows)
	}
	shot("03-list-filtered")
	step("open the attempt", chromedp.Click(chromedp.CSS("a.attempt-link")), chromedp.WaitVisible(chromedp.ID("timeline")))
	if p := eval(`location.pathname`); p != fmt.Sprintf("/attempts/%d", amt1) {
		t.Fatalf("opened %s, want /attempts/%d", p, amt1)
	}
	calls := eval(`[...document.querySelectorAll("#timeline li.call")].map(li => li.querySelector(".endpoint").textContent + " " + li.querySelector(".respcd").textContent).join("; ")`)
	if !strings.Contains(calls, "query respcd 0000") {
		t.Errorf("gateway timeline: %q, want the query answered 0000", calls)
	}
	if r := eval(`document.getElementById("reason").textContent`); !strings.Contains(r, "999") {
		t.Errorf("reason %q does not show QFPay's amount 999", r)
	}
	noSecrets("attempt page")
	step("open a call's request and answer", chromedp.Click(chromedp.CSS("#timeline li.call summary")))
	if resp := eval(`document.querySelector("#timeline pre.response").textContent`); !strings.Contains(resp, `"respcd": "0000"`) {
		t.Errorf("the call's answer: %q", resp)
	}
	shot("04-attempt")

	// CSRF: the same admin session, the retry form without its token, from
	// the browser: refused, nothing changed.
	step("post without the CSRF token",
		chromedp.Evaluate[chromedp.Void](`document.querySelector("#retry-form input[name=csrf]").remove()`),
		chromedp.SendKeys(chromedp.ID("retry-note"), "forged"),
		chromedp.Click(chromedp.ID("retry")),
		chromedp.WaitVisible(chromedp.CSS("ul.problems")),
	)
	if msg := eval(`document.querySelector("ul.problems").textContent`); !strings.Contains(msg, "CSRF") || eval(`document.querySelector("h1").textContent`) != "Forbidden" {
		t.Errorf("a post without the CSRF token: %q", msg)
	}
	shot("05-csrf-refused")

	// Retry it with a note, once QFPay's record is corrected: the daemon
	// re-drives it to paid.
	put("AMT1", 0)
	step("retry with a note",
		chromedp.Navigate(fmt.Sprintf("%s/attempts/%d", base, amt1)),
		chromedp.WaitVisible(chromedp.ID("retry-note")),
		chromedp.SendKeys(chromedp.ID("retry-note"), "QFPay corrected the record's amount"),
		chromedp.Click(chromedp.ID("retry")),
		chromedp.WaitVisible(chromedp.ID("done")),
	)
	if !strings.Contains(confirms.String(), fmt.Sprintf("Retry attempt %d", amt1)) {
		t.Errorf("the retry did not ask for confirmation (dialogs: %q)", confirms.String())
	}
	if a := eval(`document.querySelector("#audit tbody tr").textContent`); !strings.Contains(a, "alice (console)") || !strings.Contains(a, "QFPay corrected") {
		t.Errorf("audit trail on the page: %q", a)
	}
	shot("06-retried")
	var (
		operator, note, from, to string
		n                        int
	)
	if err := db.QueryRow(ctx, `SELECT count(*) OVER (), operator, note, from_status, to_status FROM operator_actions WHERE attempt_id = $1`, amt1).
		Scan(&n, &operator, &note, &from, &to); err != nil {
		t.Fatalf("the retry's audit row: %v", err)
	}
	if n != 1 || operator != "alice (console)" || note != "QFPay corrected the record's amount" || from != "needs_review" || to != "pending" {
		t.Errorf("audit: %d row(s), %s %q %s→%s", n, operator, note, from, to)
	}
	// The daemon re-drives it: a second outcome is queued for its event, and published.
	kafkatest.WaitFor(t, 60*time.Second, func() bool {
		var status string
		err := db.QueryRow(ctx, `SELECT o.status FROM outbox o WHERE o.attempt_id = $1 ORDER BY o.id DESC LIMIT 1`, amt1).Scan(&status)
		return err == nil && status == "paid"
	}, "the re-driven outcome of AMT1 to be queued")
	kafkatest.WaitFor(t, 60*time.Second, func() bool {
		got, _ := out.outcomes(t)
		return got["e-AMT1"].Status == "paid"
	}, "the re-driven outcome of AMT1 on the results topic")
	step("reload the attempt", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("outcomes")))
	if st := eval(`document.getElementById("status").textContent`); st != "paid" {
		t.Errorf("after the retry the page shows %s, want paid", st)
	}
	if n := eval(`String(document.querySelectorAll("#outcomes tbody tr").length)`); n != "2" {
		t.Errorf("%s outcomes on the page, want 2 (needs_review, then paid)", n)
	}
	shot("07-redriven")

	// Posts from outside the browser with the admin's session: no CSRF
	// token, a wrong one, or a cross-site origin are each refused.
	cookie := func() *http.Cookie {
		t.Helper()
		res, err := chromedp.Call(bctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range res.Cookies {
			if c.Name == "reversald_console" {
				if !c.HTTPOnly || c.SameSite != network.CookieSameSiteStrict {
					t.Errorf("session cookie: HttpOnly %v, SameSite %s; want HttpOnly, Strict", c.HTTPOnly, c.SameSite)
				}
				return &http.Cookie{Name: c.Name, Value: c.Value}
			}
		}
		t.Fatal("no session cookie in the browser")
		return nil
	}
	csrf := func() string { return eval(`document.querySelector("input[name=csrf]").value`) }
	post := func(c *http.Cookie, path string, form url.Values, origin string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		req.AddCookie(c)
		noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	adminCookie, adminCSRF := cookie(), csrf()
	retry2 := fmt.Sprintf("/attempts/%d/retry", amt2)
	for _, c := range []struct {
		what   string
		form   url.Values
		origin string
	}{
		{"no CSRF token", url.Values{"note": {"x"}}, ""},
		{"a wrong CSRF token", url.Values{"note": {"x"}, "csrf": {adminCSRF + "x"}}, ""},
		{"a cross-site origin", url.Values{"note": {"x"}, "csrf": {adminCSRF}}, "http://evil.example"},
	} {
		if code, body := post(adminCookie, retry2, c.form, c.origin); code != http.StatusForbidden {
			t.Errorf("admin post with %s: %d, want 403\n%s", c.what, code, body)
		}
	}

	// The read-only credential: no action on the page, 403 when it posts
	// anyway (with its own valid session and CSRF token).
	step("sign out", chromedp.Click(chromedp.CSS("button.link")), chromedp.WaitVisible(chromedp.ID("signin")))
	signIn("victor", tk.viewer)
	step("open a needs_review attempt read-only",
		chromedp.Navigate(fmt.Sprintf("%s/attempts/%d", base, amt2)),
		chromedp.WaitVisible(chromedp.ID("read-only")),
	)
	if n := eval(`String(document.querySelectorAll("#actions form, #actions button, #retry, #resolve").length)`); n != "0" {
		t.Errorf("the read-only credential sees %s action forms or buttons, want 0", n)
	}
	shot("08-read-only")
	viewerCookie, viewerCSRF := cookie(), csrf()
	for _, c := range []struct{ path, status string }{{retry2, ""}, {fmt.Sprintf("/attempts/%d/resolve", amt2), "paid"}} {
		form := url.Values{"note": {"viewer tries"}, "csrf": {viewerCSRF}}
		if c.status != "" {
			form.Set("status", c.status)
		}
		if code, body := post(viewerCookie, c.path, form, ""); code != http.StatusForbidden {
			t.Errorf("read-only post to %s: %d, want 403\n%s", c.path, code, body)
		}
	}
	var status string
	if err := db.QueryRow(ctx, `SELECT a.status || '/' || (SELECT count(*) FROM operator_actions WHERE attempt_id = a.id) FROM attempts a WHERE a.id = $1`, amt2).Scan(&status); err != nil {
		t.Fatal(err)
	}
	if status != "needs_review/0" {
		t.Errorf("AMT2 after refused posts: %s, want needs_review/0 (unchanged, no audit row)", status)
	}

	// Hostile input: an out_trade_no of HTML and script is text, in the list
	// and on the attempt page; the page runs no script of it.
	step("filter by the hostile out_trade_no",
		chromedp.Navigate(base+"/attempts?out_trade_no="+url.QueryEscape(hostile)),
		chromedp.WaitVisible(chromedp.CSS("#attempts td.otn")),
	)
	if otn := eval(`document.querySelector("#attempts td.otn").textContent + (document.querySelector("#attempts td.otn").children.length ? " (with elements)" : "")`); otn != hostile {
		t.Errorf("the list shows the out_trade_no as %q, want it as text %q", otn, hostile)
	}
	if v := eval(`document.getElementById("f-out-trade-no").value`); v != hostile {
		t.Errorf("the filter form holds %q, want %q", v, hostile)
	}
	shot("09-hostile-list")
	step("open the hostile attempt", chromedp.Click(chromedp.CSS("a.attempt-link")), chromedp.WaitVisible(chromedp.ID("otn")))
	if otn := eval(`document.getElementById("otn").textContent`); otn != hostile {
		t.Errorf("the attempt page shows the out_trade_no as %q", otn)
	}
	if n := eval(`String(document.querySelectorAll("script").length) + "/" + String(document.querySelectorAll("img").length + document.getElementById("otn").children.length) + "/" + document.title`); n != "1/0/Attempt "+strconv.FormatInt(idOf(hostile), 10)+" · reversald console" {
		t.Errorf("scripts/injected elements/title: %s; want only the console's one script, no injected element, the title untouched", n)
	}
	if strings.Contains(confirms.String(), "1\n") {
		t.Errorf("an injected alert ran: %q", confirms.String())
	}
	shot("10-hostile-attempt")

	// Bad filters: a clear 400 page naming each problem, not a 500.
	long := strings.Repeat("M", 500)
	step("bad filters",
		chromedp.Navigate(base+"/attempts?mchid="+long+"&first_seen_from=yesterday-ish&status=nope"),
		chromedp.WaitVisible(chromedp.CSS("ul.problems")),
	)
	problems := eval(`[...document.querySelectorAll("ul.problems li")].map(li => li.textContent).join("\n")`)
	for _, want := range []string{"mchid is 500 characters long; at most 64", "first_seen_from: \"yesterday-ish\" is not a time", `unknown status "nope"`} {
		if !strings.Contains(problems, want) {
			t.Errorf("bad filter page: %q does not say %q", problems, want)
		}
	}
	shot("11-bad-filter")
	for _, q := range []string{"mchid=" + long, "first_seen_from=2026-13-45", "limit=0", "after=zz", "%zz", "mchid=a&mchid=b", "sort=amount", "nosuch=1",
		"out_trade_no=" + url.QueryEscape("a\x00b"), "reason=" + url.QueryEscape(strings.Repeat("é", 201)), strings.Repeat("status=pending&", 300)} {
		req, _ := http.NewRequest(http.MethodGet, base+"/attempts?"+q, nil)
		req.AddCookie(viewerCookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "These filters cannot be used") {
			t.Errorf("GET /attempts?%.60s: %d, want 400 with the problems listed", q, resp.StatusCode)
		}
	}
	if r := reported.String(); r != "" {
		t.Errorf("the browser reported errors or CSP violations:\n%s", r)
	}
	t.Logf("browser steps took %s", time.Since(start).Round(time.Millisecond))
	if err := s.sb.CheckInvariants(); err != nil {
		t.Error(err)
	}
}
