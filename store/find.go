package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald"
)

// Filter picks attempts; the zero value picks every attempt. Time ranges are
// half-open, [From, To); a zero bound is open.
type Filter struct {
	Statuses   []reversald.Status // any of these
	Methods    []reversald.Method // any of these
	MchID      string             // exactly; "" matches any
	OutTradeNo string             // exactly; "" matches any
	// Reason matches attempts whose reason contains it, case-insensitively.
	Reason                     string
	FirstSeenFrom, FirstSeenTo time.Time
	DecidedFrom, DecidedTo     time.Time
	IDs                        []int64 // any of these, when set
}

// Validate reports every problem with f.
func (f Filter) Validate() error {
	var errs []error
	for _, s := range f.Statuses {
		if !validStatus(s) {
			errs = append(errs, fmt.Errorf("unknown status %q (one of %s)", s, joinStatuses(reversald.Statuses)))
		}
	}
	for _, m := range f.Methods {
		if !validMethod(m) {
			errs = append(errs, fmt.Errorf("unknown method %q (reversal, close or none)", m))
		}
	}
	if !f.FirstSeenFrom.IsZero() && !f.FirstSeenTo.IsZero() && !f.FirstSeenFrom.Before(f.FirstSeenTo) {
		errs = append(errs, fmt.Errorf("first-seen range is empty: from %s is not before to %s", f.FirstSeenFrom.Format(time.RFC3339), f.FirstSeenTo.Format(time.RFC3339)))
	}
	if !f.DecidedFrom.IsZero() && !f.DecidedTo.IsZero() && !f.DecidedFrom.Before(f.DecidedTo) {
		errs = append(errs, fmt.Errorf("decided range is empty: from %s is not before to %s", f.DecidedFrom.Format(time.RFC3339), f.DecidedTo.Format(time.RFC3339)))
	}
	return errors.Join(errs...)
}

func validStatus(s reversald.Status) bool {
	for _, v := range reversald.Statuses {
		if s == v {
			return true
		}
	}
	return false
}

func validMethod(m reversald.Method) bool {
	for _, v := range reversald.Methods {
		if m == v {
			return true
		}
	}
	return false
}

func joinStatuses(ss []reversald.Status) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = string(s)
	}
	return strings.Join(parts, ", ")
}

// where renders f as SQL over attempts a, appending its arguments to args.
func (f Filter) where(args []any) (string, []any) {
	conds := []string{"true"}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if len(f.Statuses) > 0 {
		ss := make([]string, len(f.Statuses))
		for i, s := range f.Statuses {
			ss[i] = string(s)
		}
		conds = append(conds, "a.status = ANY("+arg(ss)+"::text[])")
	}
	if len(f.Methods) > 0 {
		ms := make([]string, len(f.Methods))
		for i, m := range f.Methods {
			ms[i] = string(m)
		}
		conds = append(conds, "a.method = ANY("+arg(ms)+"::text[])")
	}
	if f.MchID != "" {
		conds = append(conds, "a.mchid = "+arg(f.MchID))
	}
	if f.OutTradeNo != "" {
		conds = append(conds, "a.out_trade_no = "+arg(f.OutTradeNo))
	}
	if f.Reason != "" {
		conds = append(conds, "a.reason ILIKE "+arg("%"+likeEscaper.Replace(f.Reason)+"%")+` ESCAPE '\'`)
	}
	if !f.FirstSeenFrom.IsZero() {
		conds = append(conds, "a.first_seen_at >= "+arg(f.FirstSeenFrom))
	}
	if !f.FirstSeenTo.IsZero() {
		conds = append(conds, "a.first_seen_at < "+arg(f.FirstSeenTo))
	}
	if !f.DecidedFrom.IsZero() {
		conds = append(conds, "a.decided_at >= "+arg(f.DecidedFrom))
	}
	if !f.DecidedTo.IsZero() {
		conds = append(conds, "a.decided_at < "+arg(f.DecidedTo))
	}
	return strings.Join(conds, " AND "), args
}

var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)

// SortKey is what a listing is ordered by; ties are broken by id.
type SortKey string

// Sort keys. SortDecided lists only decided (final) attempts: a pending one
// has no decision time to order by.
const (
	SortID        SortKey = "id"
	SortFirstSeen SortKey = "first_seen_at"
	SortDecided   SortKey = "decided_at"
	SortUpdated   SortKey = "updated_at"
)

// SortKeys lists every sort key.
var SortKeys = []SortKey{SortID, SortFirstSeen, SortDecided, SortUpdated}

// Page is one page of a listing: its order, where it starts and its size.
// Paging is by keyset: After is the Cursor the previous page returned, so a
// page costs the same however deep it is, and rows written meanwhile neither
// repeat nor shift the pages.
type Page struct {
	Sort  SortKey // default SortUpdated
	Desc  bool
	After Cursor // zero: the first page
	Limit int    // at most this many, 1 to MaxPage
}

// MaxPage bounds a page.
const MaxPage = 10_000

// Cursor marks the last row of a page: its sort value and id. Its text form
// (String, ParseCursor) is what the CLI prints and takes.
type Cursor struct {
	At time.Time // the sort value; zero for SortID
	ID int64
}

// IsZero reports whether c is the start of a listing.
func (c Cursor) IsZero() bool { return c.ID == 0 }

// String is the text form: "ID" or "RFC3339Nano,ID".
func (c Cursor) String() string {
	if c.IsZero() {
		return ""
	}
	if c.At.IsZero() {
		return strconv.FormatInt(c.ID, 10)
	}
	return c.At.UTC().Format(time.RFC3339Nano) + "," + strconv.FormatInt(c.ID, 10)
}

// ParseCursor reads the text form of a Cursor for a listing ordered by key.
func ParseCursor(s string, key SortKey) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	at, idText, hasAt := strings.Cut(s, ",")
	if !hasAt {
		idText = at
	}
	if hasAt == (key == SortID) {
		if key == SortID {
			return Cursor{}, fmt.Errorf("cursor %q: a listing by id takes a cursor that is an id alone", s)
		}
		return Cursor{}, fmt.Errorf("cursor %q: a listing by %s takes a cursor TIME,ID", s, key)
	}
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id <= 0 {
		return Cursor{}, fmt.Errorf("cursor %q: %q is not an attempt id", s, idText)
	}
	c := Cursor{ID: id}
	if hasAt {
		if c.At, err = time.Parse(time.RFC3339Nano, at); err != nil {
			return Cursor{}, fmt.Errorf("cursor %q: %q is not an RFC 3339 time", s, at)
		}
	}
	return c, nil
}

// Validate reports every problem with p.
func (p Page) Validate() error {
	var errs []error
	switch p.Sort {
	case "", SortID, SortFirstSeen, SortDecided, SortUpdated:
	default:
		errs = append(errs, fmt.Errorf("unknown sort key %q (id, first_seen_at, decided_at or updated_at)", p.Sort))
	}
	if p.Limit < 1 || p.Limit > MaxPage {
		errs = append(errs, fmt.Errorf("limit must be 1 to %d, got %d", MaxPage, p.Limit))
	}
	return errors.Join(errs...)
}

// Search returns one page of the attempts f picks, in p's order, and the
// cursor of the next page (zero when this one is the last).
func (s *Store) Search(ctx context.Context, f Filter, p Page) ([]reversald.Attempt, Cursor, error) {
	if err := errors.Join(f.Validate(), p.Validate()); err != nil {
		return nil, Cursor{}, fmt.Errorf("search attempts: %w", err)
	}
	if p.Sort == "" {
		p.Sort = SortUpdated
	}
	where, args := f.where(nil)
	col := "a." + string(p.Sort)
	cmp, dir := ">", "ASC"
	if p.Desc {
		cmp, dir = "<", "DESC"
	}
	if p.Sort == SortDecided {
		where += " AND a.decided_at IS NOT NULL"
	}
	if !p.After.IsZero() {
		if p.Sort == SortID {
			args = append(args, p.After.ID)
			where += fmt.Sprintf(" AND a.id %s $%d", cmp, len(args))
		} else {
			args = append(args, p.After.At, p.After.ID)
			where += fmt.Sprintf(" AND (%s, a.id) %s ($%d, $%d)", col, cmp, len(args)-1, len(args))
		}
	}
	order := "a.id " + dir
	if p.Sort != SortID {
		order = col + " " + dir + ", a.id " + dir
	}
	// One more than the page tells whether there is a next one.
	args = append(args, p.Limit+1)
	rows, err := s.pool.Query(ctx, `SELECT `+attemptColumns+` FROM attempts a WHERE `+where+
		` ORDER BY `+order+fmt.Sprintf(` LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, Cursor{}, fmt.Errorf("search attempts: %w", err)
	}
	got, err := pgx.CollectRows(rows, scanAttempt)
	if err != nil {
		return nil, Cursor{}, fmt.Errorf("search attempts: %w", err)
	}
	if len(got) <= p.Limit {
		return got, Cursor{}, nil
	}
	got = got[:p.Limit]
	last := got[len(got)-1]
	next := Cursor{ID: last.ID}
	switch p.Sort {
	case SortID: // the id alone
	case SortFirstSeen:
		next.At = last.FirstSeenAt
	case SortDecided:
		next.At = last.DecidedAt
	case SortUpdated:
		next.At = last.UpdatedAt
	}
	return got, next, nil
}
