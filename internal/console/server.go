package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Config is the console's settings. cmd/reversald reads them from the
// environment (CONSOLE_*).
type Config struct {
	// AdminToken and ViewerToken are the two credentials, each at least
	// MinTokenLen long and different from the other.
	AdminToken, ViewerToken string
	// SessionTTL is how long a sign-in lasts (default 8h).
	SessionTTL time.Duration
	// TLS: the console is served over HTTPS, so its cookie is Secure (and
	// __Host- prefixed) and HSTS is sent.
	TLS bool
	// Log gets a line per action and per refused request (default: discard).
	Log *slog.Logger
	// Now is the clock of sessions and relative filters (default time.Now).
	Now func() time.Time
}

// Validate reports every problem with c.
func (c Config) Validate() error {
	var errs []error
	for _, t := range []struct{ name, v string }{{"the admin token", c.AdminToken}, {"the read-only token", c.ViewerToken}} {
		if len(t.v) < MinTokenLen {
			errs = append(errs, fmt.Errorf("%s is %d characters long; at least %d are required (openssl rand -base64 24)", t.name, len(t.v), MinTokenLen))
		}
	}
	if c.AdminToken != "" && c.AdminToken == c.ViewerToken {
		errs = append(errs, errors.New("the admin and read-only tokens are the same: give each its own"))
	}
	if c.SessionTTL < 0 {
		errs = append(errs, fmt.Errorf("the session lifetime must be positive, got %s", c.SessionTTL))
	}
	return errors.Join(errs...)
}

// Server is the console, an http.Handler.
type Server struct {
	st          *store.Store
	cfg         Config
	creds       credentials
	sessions    sessions
	signInLimit *rate.Limiter
	pages       map[string]*template.Template
	mux         *http.ServeMux
	xorigin     *http.CrossOriginProtection
	cookie      string
}

// New builds the console on st.
func New(st *store.Store, cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = 8 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		st: st, cfg: cfg,
		creds:    credentials{admin: sha256.Sum256([]byte(cfg.AdminToken)), viewer: sha256.Sum256([]byte(cfg.ViewerToken))},
		sessions: sessions{byID: map[string]session{}},
		// Sign-in attempts, all of them together: 10 at once, then one a
		// second. With tokens of 190 bits this is belt and braces.
		signInLimit: rate.NewLimiter(rate.Every(time.Second), 10),
		xorigin:     http.NewCrossOriginProtection(),
		cookie:      "reversald_console",
	}
	if cfg.TLS {
		// __Host-: the browser keeps it only if Secure, for this host, path /.
		s.cookie = "__Host-reversald_console"
	}
	var err error
	if s.pages, err = parsePages(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	m.HandleFunc("GET /signin", s.signinPage)
	m.HandleFunc("POST /signin", s.signin)
	m.HandleFunc("POST /signout", s.authed(RoleViewer, s.signout))
	m.HandleFunc("GET /{$}", s.authed(RoleViewer, s.overview))
	m.HandleFunc("GET /attempts", s.authed(RoleViewer, s.list))
	m.HandleFunc("GET /attempts/{id}", s.authed(RoleViewer, s.attempt))
	m.HandleFunc("POST /attempts/{id}/retry", s.authed(RoleAdmin, s.retry))
	m.HandleFunc("POST /attempts/{id}/resolve", s.authed(RoleAdmin, s.resolve))
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "Not found", "There is no page at this address.")
	})
	s.mux = m
	return s, nil
}

// ServeHTTP sets the security headers every response carries, then serves.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "+
		"form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if s.cfg.TLS {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	s.mux.ServeHTTP(w, r)
}

// who is the caller of an authenticated request.
type who struct {
	Role Role
	Name string
	CSRF string // "" for a bearer token (it cannot post)
	sid  string
}

// Admin reports whether the caller may act.
func (u who) Admin() bool { return u.Role == RoleAdmin }

type ctxKey struct{}

func caller(r *http.Request) who { u, _ := r.Context().Value(ctxKey{}).(who); return u }

// authed serves h to a caller with at least role need. A browser without a
// session is sent to sign in; a POST must come from a session (a bearer
// token reads only), pass the cross-origin check and carry the session's
// CSRF token, all before role is checked, so a viewer's forged post and an
// admin's are refused alike.
func (s *Server) authed(need Role, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var u who
		if tok, ok := bearer(r); ok {
			role, ok := s.creds.role(tok)
			if !ok {
				s.refuse(w, r, http.StatusUnauthorized, "the bearer token is not a console credential")
				return
			}
			u = who{Role: role, Name: "bearer " + string(role)}
		} else if c, err := r.Cookie(s.cookie); err == nil {
			x, ok := s.sessions.get(s.cfg.Now(), c.Value)
			if ok {
				u = who{Role: x.role, Name: x.name, CSRF: x.csrf, sid: c.Value}
			}
		}
		if u.Role == "" {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, "/signin", http.StatusSeeOther)
				return
			}
			s.refuse(w, r, http.StatusUnauthorized, "sign in first")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
			switch {
			case u.sid == "":
				s.refuse(w, r, http.StatusForbidden, "actions need a signed-in session: a bearer token only reads")
				return
			case s.xorigin.Check(r) != nil:
				s.refuse(w, r, http.StatusForbidden, "cross-origin request refused")
				return
			case !sameToken(r.PostFormValue("csrf"), u.CSRF):
				s.refuse(w, r, http.StatusForbidden, "the form's CSRF token is missing or wrong: reload the page and try again")
				return
			}
		}
		if need == RoleAdmin && u.Role != RoleAdmin {
			s.refuse(w, r, http.StatusForbidden, "the read-only credential cannot act")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, u)))
	}
}

// refuse answers a refused request and logs it (never a token).
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, code int, why string) {
	s.cfg.Log.Warn("console: request refused", "method", r.Method, "path", r.URL.Path, "status", code, "why", why,
		"remote", r.RemoteAddr)
	s.fail(w, r, code, http.StatusText(code), why)
}

func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	s.render(w, r, http.StatusOK, "signin", map[string]any{"Title": "Sign in"})
}

func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if s.xorigin.Check(r) != nil {
		s.refuse(w, r, http.StatusForbidden, "cross-origin request refused")
		return
	}
	if !s.signInLimit.Allow() {
		s.refuse(w, r, http.StatusTooManyRequests, "too many sign-in attempts; wait a few seconds")
		return
	}
	name := strings.TrimSpace(r.PostFormValue("name"))
	again := func(code int, msg string) {
		s.render(w, r, code, "signin", map[string]any{"Title": "Sign in", "Error": msg, "Name": name})
	}
	role, ok := s.creds.role(r.PostFormValue("token"))
	if !ok {
		s.cfg.Log.Warn("console: sign-in refused", "remote", r.RemoteAddr)
		again(http.StatusUnauthorized, "That token is not a console credential.")
		return
	}
	if err := checkOperatorName(name); err != nil {
		again(http.StatusBadRequest, err.Error())
		return
	}
	id, x, err := s.sessions.create(s.cfg.Now(), s.cfg.SessionTTL, role, name)
	if err != nil {
		again(http.StatusServiceUnavailable, err.Error())
		return
	}
	// Secure follows TLS: a plain-HTTP console (loopback, or behind a proxy
	// that terminates TLS, CONSOLE_ALLOW_PLAIN_HTTP) could not keep a Secure cookie.
	http.SetCookie(w, &http.Cookie{Name: s.cookie, Value: id, Path: "/", Expires: x.expires, HttpOnly: true, //nolint:gosec // G124: Secure when served over TLS, see above

		Secure: s.cfg.TLS, SameSite: http.SameSiteStrictMode})
	s.cfg.Log.Info("console: signed in", "name", name, "role", role, "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	s.sessions.end(caller(r).sid)
	http.SetCookie(w, &http.Cookie{Name: s.cookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, //nolint:gosec // G124: as at sign-in

		Secure: s.cfg.TLS, SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// merchantRows is how many merchants the overview lists.
const merchantRows = 20

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	b, err := s.st.Backlog(r.Context())
	if err != nil {
		s.internal(w, r, err)
		return
	}
	merchants, more, err := s.st.PendingByMerchant(r.Context(), merchantRows)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	type count struct {
		Status reversald.Status
		N      int64
	}
	var counts []count
	var total int64
	for _, st := range reversald.Statuses {
		counts = append(counts, count{st, b.ByStatus[st]})
		total += b.ByStatus[st]
	}
	s.render(w, r, http.StatusOK, "overview", map[string]any{
		"Title": "Overview", "Backlog": b, "NeedsReview": b.ByStatus[reversald.StatusNeedsReview], "Counts": counts, "Total": total, "Merchants": merchants, "MoreMerchants": more,
	})
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	q, err := parseListQuery(r.URL.RawQuery, s.cfg.Now())
	if err != nil {
		var probs filterErrors
		errors.As(err, &probs)
		s.render(w, r, http.StatusBadRequest, "error", map[string]any{
			"Title": "Bad filter", "Heading": "These filters cannot be used", "Problems": []string(probs), "Back": "/attempts",
		})
		return
	}
	got, next, err := s.st.Search(r.Context(), q.Filter, q.Page)
	if err != nil {
		s.internal(w, r, err)
		return
	}
	data := map[string]any{
		"Title": "Attempts", "Query": q, "Attempts": got, "Statuses": reversald.Statuses, "Methods": reversald.Methods,
		"SortKeys": store.SortKeys, "Paged": !q.Page.After.IsZero(), "First": q.pageURL(""),
	}
	if !next.IsZero() {
		data["Next"] = q.pageURL(next.String())
	}
	s.render(w, r, http.StatusOK, "list", data)
}

// attemptID reads the {id} of the path; false (and a 404 page) when it is
// not an id.
func (s *Server) attemptID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		s.fail(w, r, http.StatusNotFound, "Not found", "An attempt's address is /attempts/ID, ID a positive number.")
		return 0, false
	}
	return id, true
}

func (s *Server) attempt(w http.ResponseWriter, r *http.Request) {
	id, ok := s.attemptID(w, r)
	if !ok {
		return
	}
	h, err := s.st.History(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, http.StatusNotFound, "Not found", fmt.Sprintf("There is no attempt %d (it may have been purged).", id))
		return
	}
	if err != nil {
		s.internal(w, r, err)
		return
	}
	calls := make([]callView, len(h.Calls))
	for i, c := range h.Calls {
		calls[i] = newCallView(c)
	}
	s.render(w, r, http.StatusOK, "attempt", map[string]any{
		"Title": fmt.Sprintf("Attempt %d", id), "H": h, "A": h.Attempt, "Calls": calls,
		"Operable": h.Attempt.Status == reversald.StatusNeedsReview, "ResolveStatuses": store.ResolveStatuses,
		"Done": r.URL.Query().Get("done"),
	})
}

// maxNote bounds an action's note, as the audit trail keeps it.
const maxNote = 2000

// actionNote reads the required note of an action form.
func actionNote(r *http.Request) (string, error) {
	note := strings.TrimSpace(r.PostFormValue("note"))
	switch {
	case note == "":
		return "", errors.New("a note is required: say why, for the audit trail")
	case len([]rune(note)) > maxNote:
		return "", fmt.Errorf("the note is %d characters long; at most %d are kept", len([]rune(note)), maxNote)
	}
	return note, nil
}

func (s *Server) retry(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, "retry", func(ctx context.Context, id int64, op store.Operator) error {
		return s.st.Retry(ctx, id, op)
	})
}

func (s *Server) resolve(w http.ResponseWriter, r *http.Request) {
	status := reversald.Status(r.PostFormValue("status"))
	if !store.CanResolveTo(status) {
		s.fail(w, r, http.StatusBadRequest, "Not resolved", fmt.Sprintf("%s is not a status an operator resolves to.", quote(string(status), 40)))
		return
	}
	s.act(w, r, "resolve", func(ctx context.Context, id int64, op store.Operator) error {
		_, err := s.st.Resolve(ctx, id, status, op)
		return err
	})
}

// act runs an action with the store's own checks and audit, then shows the
// attempt again.
func (s *Server) act(w http.ResponseWriter, r *http.Request, verb string, do func(ctx context.Context, id int64, op store.Operator) error) {
	id, ok := s.attemptID(w, r)
	if !ok {
		return
	}
	note, err := actionNote(r)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "Not done", err.Error())
		return
	}
	u := caller(r)
	op := store.Operator{Name: u.Name + " (console)", Note: note}
	err = do(r.Context(), id, op)
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.fail(w, r, http.StatusNotFound, "Not found", fmt.Sprintf("There is no attempt %d.", id))
		return
	case errors.Is(err, store.ErrNotRetryable), errors.Is(err, store.ErrLeased):
		s.fail(w, r, http.StatusConflict, "Not done", fmt.Sprintf("Attempt %d was not changed: %v.", id, err))
		return
	case err != nil:
		s.internal(w, r, err)
		return
	}
	s.cfg.Log.Info("console: "+verb, "attempt", id, "operator", op.Name, "note", note)
	http.Redirect(w, r, fmt.Sprintf("/attempts/%d?done=%s", id, verb), http.StatusSeeOther)
}

// internal answers a failure of the database: 500, with the detail in the
// log and not on the page.
func (s *Server) internal(w http.ResponseWriter, r *http.Request, err error) {
	s.cfg.Log.Error("console: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	s.fail(w, r, http.StatusInternalServerError, "Something went wrong", "The database did not answer as expected; the console's log has the detail.")
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, code int, title, msg string) {
	s.render(w, r, code, "error", map[string]any{"Title": title, "Heading": title, "Problems": []string{msg}})
}

// render executes page with data into a buffer first, so a template error
// is a clean 500 and not half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, page string, data map[string]any) {
	data["Who"] = caller(r)
	var buf bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&buf, "layout", data); err != nil {
		s.cfg.Log.Error("console: render", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// callView is a gateway call as the timeline shows it.
type callView struct {
	store.CallRecord
	Fields   [][2]string // the signed request fields, sorted by name
	Response string      // pretty-printed when JSON
}

// maxResponse bounds a response shown on the page.
const maxResponse = 16 << 10

func newCallView(c store.CallRecord) callView {
	v := callView{CallRecord: c}
	for k, x := range c.Request {
		v.Fields = append(v.Fields, [2]string{k, x})
	}
	sortPairs(v.Fields)
	var pretty bytes.Buffer
	if json.Indent(&pretty, c.Response, "", "  ") == nil {
		v.Response = pretty.String()
	} else {
		v.Response = string(bytes.ToValidUTF8(c.Response, []byte("\uFFFD")))
	}
	if len(v.Response) > maxResponse {
		v.Response = v.Response[:maxResponse] + "\n… (cut)"
	}
	return v
}

func sortPairs(p [][2]string) {
	for i := 1; i < len(p); i++ {
		for j := i; j > 0 && p[j][0] < p[j-1][0]; j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "–"
		}
		return t.UTC().Format("2006-01-02 15:04:05.000Z")
	},
	"tsp": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05.000Z")
	},
	"age": func(d time.Duration) string {
		if d <= 0 {
			return "–"
		}
		return d.Round(time.Second).String()
	},
	"ms": func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) },
	"statusURL": func(st reversald.Status) string {
		return "/attempts?status=" + string(st)
	},
	"merchantURL": func(mchid string) string {
		return "/attempts?status=pending&mchid=" + template.URLQueryEscaper(mchid)
	},
	"final": func(st reversald.Status) bool { return st.Final() },
}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, p := range []string{"signin", "overview", "list", "attempt", "error"} {
		t, err := template.New(p).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("console templates: %w", err)
		}
		pages[p] = t
	}
	return pages, nil
}
