package console

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
)

// The list page's query: its parameters, their bounds, and how they become a
// store.Filter and a store.Page. Every problem is reported at once, as a 400
// page that names each parameter; nothing malformed reaches the database.

const (
	maxQueryLen  = 4096 // the whole query string
	defaultLimit = 50
	maxLimit     = 500
)

// param is one parameter the list takes, with its longest accepted value.
type param struct {
	name  string
	max   int
	multi bool // may repeat or be comma-separated
}

var listParams = []param{
	{"status", 200, true}, {"method", 100, true},
	{"mchid", 64, false}, {"out_trade_no", 128, false}, {"reason", 200, false},
	{"first_seen_from", 40, false}, {"first_seen_to", 40, false}, {"decided_from", 40, false}, {"decided_to", 40, false},
	{"sort", 20, false}, {"order", 4, false}, {"limit", 4, false}, {"after", 80, false},
}

// listQuery is a parsed list query: the form's values as given (to fill the
// form again) and what they mean.
type listQuery struct {
	Values map[string]string // as typed, for the form
	Status map[string]bool   // the statuses ticked
	Filter store.Filter
	Page   store.Page
}

// filterErrors are the problems of a list query, one line each.
type filterErrors []string

func (p filterErrors) Error() string { return strings.Join(p, "\n") }

// parseListQuery reads a list query from raw (the URL's RawQuery) at now.
func parseListQuery(raw string, now time.Time) (listQuery, error) {
	q := listQuery{Values: map[string]string{}, Status: map[string]bool{}}
	if len(raw) > maxQueryLen {
		return q, filterErrors{fmt.Sprintf("the query is %d bytes long; at most %d are accepted", len(raw), maxQueryLen)}
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return q, filterErrors{"the query string is malformed: " + err.Error()}
	}
	var probs filterErrors
	known := map[string]param{}
	for _, p := range listParams {
		known[p.name] = p
	}
	for name := range vals {
		if _, ok := known[name]; !ok {
			probs = append(probs, fmt.Sprintf("unknown parameter %s", quote(name, 40)))
		}
	}
	lists := map[string][]string{}
	for _, p := range listParams {
		vs := vals[p.name]
		if len(vs) > 1 && !p.multi {
			probs = append(probs, fmt.Sprintf("%s is given %d times; give it once", p.name, len(vs)))
			continue
		}
		joined := strings.TrimSpace(strings.Join(vs, ","))
		switch {
		case !utf8.ValidString(joined):
			probs = append(probs, fmt.Sprintf("%s is not valid UTF-8 text", p.name))
			continue
		case utf8.RuneCountInString(joined) > p.max:
			probs = append(probs, fmt.Sprintf("%s is %d characters long; at most %d are accepted", p.name, utf8.RuneCountInString(joined), p.max))
			continue
		case strings.IndexFunc(joined, unicode.IsControl) >= 0:
			probs = append(probs, fmt.Sprintf("%s holds control characters", p.name))
			continue
		}
		q.Values[p.name] = joined
		if p.multi {
			for _, v := range strings.Split(joined, ",") {
				if v = strings.TrimSpace(v); v != "" {
					lists[p.name] = append(lists[p.name], v)
				}
			}
		}
	}
	f := &q.Filter
	for _, s := range lists["status"] {
		f.Statuses = append(f.Statuses, reversald.Status(s))
		q.Status[s] = true
	}
	for _, m := range lists["method"] {
		f.Methods = append(f.Methods, reversald.Method(m))
	}
	f.MchID, f.OutTradeNo, f.Reason = q.Values["mchid"], q.Values["out_trade_no"], q.Values["reason"]
	for _, t := range []struct {
		name string
		to   *time.Time
	}{
		{"first_seen_from", &f.FirstSeenFrom}, {"first_seen_to", &f.FirstSeenTo},
		{"decided_from", &f.DecidedFrom}, {"decided_to", &f.DecidedTo},
	} {
		text := q.Values[t.name]
		if text == "" {
			continue
		}
		v, err := parseTime(text, now)
		if err != nil {
			probs = append(probs, t.name+": "+err.Error())
			continue
		}
		*t.to = v
	}
	if err := f.Validate(); err != nil {
		probs = append(probs, strings.Split(err.Error(), "\n")...)
	}

	p := &q.Page
	p.Sort, p.Desc, p.Limit = store.SortUpdated, true, defaultLimit
	if s := q.Values["sort"]; s != "" {
		p.Sort = store.SortKey(s)
	}
	switch q.Values["order"] {
	case "", "desc":
	case "asc":
		p.Desc = false
	default:
		probs = append(probs, fmt.Sprintf("order must be asc or desc, got %s", quote(q.Values["order"], 10)))
	}
	if l := q.Values["limit"]; l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxLimit {
			probs = append(probs, fmt.Sprintf("limit must be a number from 1 to %d, got %s", maxLimit, quote(l, 10)))
		} else {
			p.Limit = n
		}
	}
	if err := p.Validate(); err != nil {
		probs = append(probs, strings.Split(err.Error(), "\n")...)
	} else if p.After, err = store.ParseCursor(q.Values["after"], p.Sort); err != nil {
		probs = append(probs, "after: "+err.Error())
	}
	if len(probs) > 0 {
		return q, probs
	}
	return q, nil
}

// parseTime reads a time as the CLI's filters take it: RFC 3339, a date
// (midnight UTC), a browser's datetime-local value (YYYY-MM-DDThh:mm, UTC),
// or a duration back from now (90m, 36h, 7d).
func parseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	for _, layout := range []string{time.DateOnly, "2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n <= 36500 {
			return now.UTC().AddDate(0, 0, -n), nil
		}
	} else if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.UTC().Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%s is not a time: give RFC 3339 (2026-11-29T10:00:00Z), a date (2026-11-29), a date and time in UTC (2026-11-29T10:00) or a duration back from now (36h, 7d)", quote(s, 40))
}

// quote shows a value in an error, shortened.
func quote(s string, n int) string {
	if utf8.RuneCountInString(s) > n {
		s = string([]rune(s)[:n]) + "..."
	}
	return strconv.Quote(s)
}

// pageURL is the list URL of q with after set to cursor ("" for the first
// page).
func (q listQuery) pageURL(cursor string) string {
	v := url.Values{}
	for _, p := range listParams {
		if x := q.Values[p.name]; x != "" && p.name != "after" {
			v.Set(p.name, x)
		}
	}
	if cursor != "" {
		v.Set("after", cursor)
	}
	if len(v) == 0 {
		return "/attempts"
	}
	return "/attempts?" + v.Encode()
}
