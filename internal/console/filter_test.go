package console

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/store"
)

var now = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func TestParseListQuery(t *testing.T) {
	t.Parallel()
	good := []struct {
		raw   string
		check func(q listQuery) bool
	}{
		{"", func(q listQuery) bool {
			return q.Page.Sort == store.SortUpdated && q.Page.Desc && q.Page.Limit == defaultLimit && len(q.Filter.Statuses) == 0
		}},
		{"status=needs_review&status=paid,pending&mchid=MN1&out_trade_no=A%3Cb%3E", func(q listQuery) bool {
			return len(q.Filter.Statuses) == 3 && q.Filter.Statuses[2] == reversald.StatusPending && q.Filter.MchID == "MN1" &&
				q.Filter.OutTradeNo == "A<b>" && q.Status["paid"]
		}},
		{"first_seen_from=2026-11-01&first_seen_to=2026-11-29T10:30&decided_from=36h&decided_to=2026-11-29T11:00:00Z", func(q listQuery) bool {
			return q.Filter.FirstSeenFrom.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) &&
				q.Filter.FirstSeenTo.Equal(time.Date(2026, 11, 29, 10, 30, 0, 0, time.UTC)) &&
				q.Filter.DecidedFrom.Equal(now.Add(-36*time.Hour)) && q.Filter.DecidedTo.Equal(now.Add(-time.Hour))
		}},
		{"sort=id&order=asc&limit=500&after=42", func(q listQuery) bool {
			return q.Page.Sort == store.SortID && !q.Page.Desc && q.Page.Limit == 500 && q.Page.After.ID == 42
		}},
		{"mchid=&reason=&method=", func(q listQuery) bool { return q.Filter.MchID == "" && len(q.Filter.Methods) == 0 }},
	}
	for _, c := range good {
		q, err := parseListQuery(c.raw, now)
		if err != nil || !c.check(q) {
			t.Errorf("%q: %+v, %v", c.raw, q, err)
		}
	}
	bad := []struct{ raw, want string }{
		{"mchid=" + strings.Repeat("M", 65), "mchid is 65 characters long; at most 64"},
		{"out_trade_no=" + strings.Repeat("é", 129), "out_trade_no is 129 characters long"},
		{"reason=a%00b", "reason holds control characters"},
		{"reason=%ff", "reason is not valid UTF-8"},
		{"status=lost", `unknown status "lost"`},
		{"method=wire", `unknown method "wire"`},
		{"first_seen_from=tomorrow", `first_seen_from: "tomorrow" is not a time`},
		{"decided_from=2026-11-02&decided_to=2026-11-01", "decided range is empty"},
		{"limit=0", "limit must be a number from 1 to 500"},
		{"limit=501", "limit must be a number from 1 to 500"},
		{"order=up", "order must be asc or desc"},
		{"sort=amount", `unknown sort key "amount"`},
		{"after=7", "after: cursor \"7\": a listing by updated_at takes a cursor TIME,ID"},
		{"mchid=a&mchid=b", "mchid is given 2 times"},
		{"color=red", `unknown parameter "color"`},
		{"a=%zz", "the query string is malformed"},
		{strings.Repeat("x", maxQueryLen+1), "at most 4096 are accepted"},
	}
	for _, c := range bad {
		_, err := parseListQuery(c.raw, now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.80q: %v, want %q", c.raw, err, c.want)
		}
	}
	// Several problems are all reported.
	_, err := parseListQuery("limit=0&order=up&status=lost", now)
	var fe filterErrors
	if !errors.As(err, &fe) || len(fe) != 3 {
		t.Errorf("three problems: %v", err)
	}
}

// TestPageURLKeepsFilters: the next page's link carries every filter and
// the cursor, and reads back as the same query.
func TestPageURLKeepsFilters(t *testing.T) {
	t.Parallel()
	q, err := parseListQuery("status=needs_review,paid&mchid=M%26N&sort=id&limit=10", now)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(q.pageURL("99"))
	if err != nil {
		t.Fatal(err)
	}
	back, err := parseListQuery(u.RawQuery, now)
	if err != nil {
		t.Fatal(err)
	}
	if back.Filter.MchID != "M&N" || len(back.Filter.Statuses) != 2 || back.Page.After.ID != 99 || back.Page.Limit != 10 || back.Page.Sort != store.SortID {
		t.Errorf("next page %s reads back as %+v", u, back)
	}
	if q.pageURL("") != "/attempts?limit=10&mchid=M%26N&sort=id&status=needs_review%2Cpaid" {
		t.Errorf("first page: %s", q.pageURL(""))
	}
}

// FuzzParseListQuery: any query is either refused with problems or gives a
// filter and page the store accepts; it never panics.
func FuzzParseListQuery(f *testing.F) {
	for _, s := range []string{"", "status=paid", "mchid=a&mchid=b", "after=2026-11-29T10:00:00Z,5", "first_seen_from=7d", "%zz", "limit=-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := parseListQuery(raw, now)
		if err != nil {
			var fe filterErrors
			if !errors.As(err, &fe) || len(fe) == 0 {
				t.Fatal("an error without a problem")
			}
			return
		}
		if err := q.Filter.Validate(); err != nil {
			t.Fatalf("accepted a filter the store refuses: %v", err)
		}
		if err := q.Page.Validate(); err != nil {
			t.Fatalf("accepted a page the store refuses: %v", err)
		}
	})
}
