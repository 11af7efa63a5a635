package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/internal/testclock"
	"github.com/reversald/reversald/store"
	"github.com/reversald/reversald/store/storetest"
)

// opsEvent is an event of merchant mchid for out_trade_no otn.
func opsEvent(id, mchid, otn string) reversald.Event {
	e := event(id, otn, 2500)
	e.MchID = mchid
	return e
}

// decide takes attempt id through a claim to a final status, with one
// gateway call on the audit, as a worker would.
func decide(t *testing.T, s *store.Store, id int64, status reversald.Status, method reversald.Method, reason string) reversald.Attempt {
	t.Helper()
	ctx := context.Background()
	got, err := s.Claim(ctx, store.Claim{Owner: "w", Lease: time.Minute, Limit: 1, IDs: []int64{id}})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim %d: %v %v", id, got, err)
	}
	a := got[0]
	a.Status, a.Step, a.Method, a.Reason, a.Respcd = status, reversald.StepDone, method, reason, "1143"
	a.GatewayCalls++
	call := reversald.Call{Step: reversald.StepQuery, Endpoint: "query", Request: map[string]string{"out_trade_no": a.OutTradeNo},
		HTTPStatus: 200, Respcd: "0000", Response: []byte(`{"respcd":"0000"}`), At: time.Now()}
	if err := s.WriteStep(ctx, store.Step{Attempt: a, Calls: []reversald.Call{call}}); err != nil {
		t.Fatal(err)
	}
	b, err := s.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSearchFiltersSortAndKeysetPaging: every filter picks exactly the
// attempts it names; a filter that matches nothing gives nothing; paging
// through any order by keyset returns every attempt once, in order.
func TestSearchFiltersSortAndKeysetPaging(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk := newStore(t)
	start := clk.Now()
	var all []reversald.Attempt
	for i := range 24 {
		mchid := fmt.Sprintf("M%d", i%3)
		res, err := s.Intake(ctx, []reversald.Event{opsEvent(fmt.Sprintf("e%d", i), mchid, fmt.Sprintf("OTN-%02d", i))})
		if err != nil {
			t.Fatal(err)
		}
		id := res.NewAttempts[0]
		clk.Advance(time.Minute)
		switch i % 4 {
		case 1:
			decide(t, s, id, reversald.StatusReversed, reversald.MethodReversal, "QFPay confirms the reversal")
		case 2:
			decide(t, s, id, reversald.StatusNeedsReview, reversald.MethodNone, "query refused: respcd 1108 (Signature)")
		case 3:
			decide(t, s, id, reversald.StatusPaid, reversald.MethodNone, "the payment completed: refund 100% of it")
		}
		clk.Advance(time.Minute)
		a, err := s.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, a)
	}
	ids := func(as []reversald.Attempt) []int64 {
		out := make([]int64, len(as))
		for i, a := range as {
			out[i] = a.ID
		}
		return out
	}
	want := func(keep func(a reversald.Attempt) bool) []int64 {
		var out []int64
		for _, a := range all {
			if keep(a) {
				out = append(out, a.ID)
			}
		}
		return out
	}
	minute := func(n int) time.Time { return start.Add(time.Duration(n) * time.Minute) }
	for _, tc := range []struct {
		name string
		f    store.Filter
		keep func(a reversald.Attempt) bool
	}{
		{"all", store.Filter{}, func(reversald.Attempt) bool { return true }},
		{"two statuses", store.Filter{Statuses: []reversald.Status{reversald.StatusPaid, reversald.StatusPending}},
			func(a reversald.Attempt) bool {
				return a.Status == reversald.StatusPaid || a.Status == reversald.StatusPending
			}},
		{"method", store.Filter{Methods: []reversald.Method{reversald.MethodReversal}},
			func(a reversald.Attempt) bool { return a.Method == reversald.MethodReversal }},
		{"merchant", store.Filter{MchID: "M1"}, func(a reversald.Attempt) bool { return a.MchID == "M1" }},
		{"key", store.Filter{MchID: "M2", OutTradeNo: "OTN-05"}, func(a reversald.Attempt) bool { return a.OutTradeNo == "OTN-05" }},
		{"reason, any case", store.Filter{Reason: "SIGNATURE"}, func(a reversald.Attempt) bool { return a.Status == reversald.StatusNeedsReview }},
		{"reason with a LIKE wildcard taken literally", store.Filter{Reason: "100%"}, func(a reversald.Attempt) bool { return a.Status == reversald.StatusPaid }},
		{"reason _ literal", store.Filter{Reason: "respcd_1108"}, func(reversald.Attempt) bool { return false }},
		{"first seen range", store.Filter{FirstSeenFrom: minute(4), FirstSeenTo: minute(10)},
			func(a reversald.Attempt) bool {
				return !a.FirstSeenAt.Before(minute(4)) && a.FirstSeenAt.Before(minute(10))
			}},
		{"decided range", store.Filter{DecidedFrom: minute(10), DecidedTo: minute(30)},
			func(a reversald.Attempt) bool {
				return !a.DecidedAt.IsZero() && !a.DecidedAt.Before(minute(10)) && a.DecidedAt.Before(minute(30))
			}},
		{"nothing matches", store.Filter{MchID: "NOBODY"}, func(reversald.Attempt) bool { return false }},
		{"filters combine", store.Filter{MchID: "M0", Statuses: []reversald.Status{reversald.StatusNeedsReview}},
			func(a reversald.Attempt) bool { return a.MchID == "M0" && a.Status == reversald.StatusNeedsReview }},
	} {
		got, next, err := s.Search(ctx, tc.f, store.Page{Sort: store.SortID, Limit: store.MaxPage})
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if w := want(tc.keep); !slices.Equal(ids(got), w) || !next.IsZero() {
			t.Errorf("%s: got %v (next %v), want %v", tc.name, ids(got), next, w)
		}
	}
	if len(want(func(a reversald.Attempt) bool { return a.Status == reversald.StatusNeedsReview })) == 0 {
		t.Fatal("the fixture has no needs_review attempt")
	}

	// Keyset paging in every order: each attempt once, in order.
	for _, key := range store.SortKeys {
		for _, desc := range []bool{false, true} {
			var got []reversald.Attempt
			p := store.Page{Sort: key, Desc: desc, Limit: 5}
			for pages := 0; ; pages++ {
				page, next, err := s.Search(ctx, store.Filter{}, p)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, page...)
				if next.IsZero() {
					break
				}
				// The cursor survives its text form, as the CLI passes it.
				if p.After, err = store.ParseCursor(next.String(), key); err != nil || p.After.ID != next.ID || !p.After.At.Equal(next.At) {
					t.Fatalf("cursor %v round trip: %v %v", next, p.After, err)
				}
				if pages > 10 {
					t.Fatalf("%s: paging does not end", key)
				}
			}
			exp := slices.Clone(all)
			if key == store.SortDecided {
				exp = slices.DeleteFunc(exp, func(a reversald.Attempt) bool { return a.DecidedAt.IsZero() })
			}
			sortKey := func(a reversald.Attempt) time.Time {
				switch key {
				case store.SortID:
				case store.SortFirstSeen:
					return a.FirstSeenAt
				case store.SortDecided:
					return a.DecidedAt
				case store.SortUpdated:
					return a.UpdatedAt
				}
				return time.Time{}
			}
			sort.SliceStable(exp, func(i, j int) bool {
				ki, kj := sortKey(exp[i]), sortKey(exp[j])
				if desc {
					return kj.Before(ki) || (ki.Equal(kj) && exp[i].ID > exp[j].ID)
				}
				return ki.Before(kj) || (ki.Equal(kj) && exp[i].ID < exp[j].ID)
			})
			if !slices.Equal(ids(got), ids(exp)) {
				t.Errorf("sort %s desc=%v: got %v, want %v", key, desc, ids(got), ids(exp))
			}
		}
	}

	// Malformed filters and pages are refused with every reason.
	_, _, err := s.Search(ctx, store.Filter{Statuses: []reversald.Status{"lost"}, Methods: []reversald.Method{"refund"},
		FirstSeenFrom: minute(5), FirstSeenTo: minute(5)}, store.Page{Sort: "amount", Limit: 0})
	for _, w := range []string{`unknown status "lost"`, `unknown method "refund"`, "first-seen range is empty", `unknown sort key "amount"`, "limit must be"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("malformed search: %v; want it to say %q", err, w)
		}
	}
	for _, c := range []struct {
		text string
		key  store.SortKey
	}{{"12", store.SortUpdated}, {"2026-11-22T10:00:00Z,12", store.SortID}, {"x", store.SortID}, {"yesterday,3", store.SortDecided}, {"2026-11-22T10:00:00Z,-3", store.SortDecided}} {
		if _, err := store.ParseCursor(c.text, c.key); err == nil {
			t.Errorf("cursor %q for %s accepted", c.text, c.key)
		}
	}
}

// TestRetryIsSafeAgainstALeaseHolder: an attempt a worker still holds a
// live lease on is not retried (nothing changes, nothing is audited); once
// the lease has run out, the retry moves the fencing token on, so the old
// worker's late write changes nothing, and exactly one worker claims the
// re-driven attempt. The audit trail keeps the operator, the note and the
// reason the retry cleared.
func TestRetryIsSafeAgainstALeaseHolder(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk := newStore(t)
	res, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500)})
	if err != nil {
		t.Fatal(err)
	}
	id := res.NewAttempts[0]
	got, _ := s.Claim(ctx, store.Claim{Owner: "w1", Lease: time.Minute, Limit: 1})
	a := got[0]
	a.Status, a.Step, a.Reason, a.Respcd = reversald.StatusNeedsReview, reversald.StepDone, "mismatch: QFPay says 2600", "0000"
	// The worker keeps its lease while it writes needs_review (as a worker
	// that goes on at once would).
	if err := s.WriteStep(ctx, store.Step{Attempt: a, KeepLease: true, Lease: time.Minute}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.Get(ctx, id)

	if _, err := s.CheckRetry(ctx, id); !errors.Is(err, store.ErrLeased) {
		t.Fatalf("check retry of a leased attempt: %v, want ErrLeased", err)
	}
	if err := s.Retry(ctx, id, ops); !errors.Is(err, store.ErrLeased) {
		t.Fatalf("retry of a leased attempt: %v, want ErrLeased", err)
	}
	if _, err := s.Resolve(ctx, id, reversald.StatusPaid, ops); !errors.Is(err, store.ErrLeased) {
		t.Fatalf("resolve of a leased attempt: %v, want ErrLeased", err)
	}
	after, _ := s.Get(ctx, id)
	if after.Token != before.Token || after.Status != reversald.StatusNeedsReview {
		t.Fatalf("a refused retry changed the attempt: %+v", after)
	}
	if h, _ := s.History(ctx, id); len(h.Actions) != 0 {
		t.Fatalf("a refused retry was audited: %+v", h.Actions)
	}

	clk.Advance(2 * time.Minute) // the lease runs out; the worker is presumed gone
	if _, err := s.CheckRetry(ctx, id); err != nil {
		t.Fatalf("check retry: %v", err)
	}
	if err := s.Retry(ctx, id, store.Operator{Name: "alice", Note: "QFPay fixed the amount"}); err != nil {
		t.Fatal(err)
	}
	// The old worker wakes up and writes: fenced, nothing changes.
	a.Status, a.Reason = reversald.StatusPaid, "late"
	if err := s.WriteStep(ctx, store.Step{Attempt: a}); !errors.Is(err, store.ErrFenced) {
		t.Fatalf("the old worker's write after the retry: %v, want ErrFenced", err)
	}
	b, _ := s.Get(ctx, id)
	if b.Status != reversald.StatusPending || b.Step != reversald.StepQuery || b.Reason != "" || b.Token != before.Token+1 || b.LeaseOwner != "" {
		t.Fatalf("after retry: %+v", b)
	}
	// Claimers race for it: one gets it.
	claimed := make(chan int, 8)
	for i := range 8 {
		go func() {
			got, err := s.Claim(ctx, store.Claim{Owner: fmt.Sprintf("r%d", i), Lease: time.Minute, Limit: 1})
			if err != nil {
				t.Error(err)
			}
			claimed <- len(got)
		}()
	}
	n := 0
	for range 8 {
		n += <-claimed
	}
	if n != 1 {
		t.Fatalf("%d workers claimed the retried attempt, want 1", n)
	}
	h, err := s.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Actions) != 1 {
		t.Fatalf("audit trail = %+v, want one retry", h.Actions)
	}
	x := h.Actions[0]
	if x.Action != "retry" || x.Operator != "alice" || x.Note != "QFPay fixed the amount" || x.FromStatus != reversald.StatusNeedsReview ||
		x.ToStatus != reversald.StatusPending || x.PreviousReason != "mismatch: QFPay says 2600" || x.PreviousRespcd != "0000" || x.Token != before.Token+1 {
		t.Errorf("audit row %+v", x)
	}
	if err := s.Retry(ctx, id, store.Operator{Name: "alice"}); err == nil || !strings.Contains(err.Error(), "note is required") {
		t.Errorf("retry without a note: %v", err)
	}
}

// TestResolve: only a needs_review attempt, only a status read at QFPay;
// the attempt is final with the operator's reason, a stale worker is fenced
// out, each event but a conflicting one gets a new outcome with resolved_by,
// and the audit trail says who and why.
func TestResolve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t)
	res, err := s.Intake(ctx, []reversald.Event{event("e1", "A", 2500), event("e2", "A", 2500), event("e3", "A", 9999), event("e4", "B", 100)})
	if err != nil {
		t.Fatal(err)
	}
	drain(t, s) // e3's conflict outcome
	idA, idB := res.NewAttempts[0], res.NewAttempts[1]
	if _, err := s.Resolve(ctx, idB, reversald.StatusPaid, ops); !errors.Is(err, store.ErrNotRetryable) {
		t.Fatalf("resolve a pending attempt: %v, want ErrNotRetryable", err)
	}
	if _, err := s.Resolve(ctx, 999999, reversald.StatusPaid, ops); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("resolve a missing attempt: %v, want ErrNotFound", err)
	}
	a := decide(t, s, idA, reversald.StatusNeedsReview, reversald.MethodNone, "the cancel bound (2) is reached")
	drain(t, s) // the needs_review outcomes
	for _, st := range []reversald.Status{reversald.StatusPending, reversald.StatusNeedsReview, reversald.StatusNotFound, reversald.StatusUnsupported, "bogus"} {
		if _, err := s.Resolve(ctx, idA, st, ops); !errors.Is(err, store.ErrNotResolvable) {
			t.Errorf("resolve to %s: %v, want ErrNotResolvable", st, err)
		}
	}
	if _, err := s.CheckResolve(ctx, idA, reversald.StatusReversed); err != nil {
		t.Fatalf("check resolve: %v", err)
	}
	if h, _ := s.History(ctx, idA); len(h.Actions) != 0 || h.Attempt.Status != reversald.StatusNeedsReview {
		t.Fatal("check resolve changed something")
	}
	n, err := s.Resolve(ctx, idA, reversald.StatusReversed, store.Operator{Name: "bob", Note: "QFPay console shows cancel=1"})
	if err != nil || n != 2 {
		t.Fatalf("resolve: %d outcomes, %v; want 2 (e1, e2; not the conflicting e3)", n, err)
	}
	b, _ := s.Get(ctx, idA)
	if b.Status != reversald.StatusReversed || b.Method != reversald.MethodReversal || b.Step != reversald.StepDone ||
		b.Reason != "resolved by bob: QFPay console shows cancel=1" || b.DecidedAt.IsZero() || b.Token != a.Token+1 {
		t.Fatalf("after resolve: %+v", b)
	}
	recs := drain(t, s)
	if len(recs) != 2 {
		t.Fatalf("published %d outcomes, want 2", len(recs))
	}
	for _, r := range recs {
		if r.ResolvedBy != "bob" || r.Status != reversald.StatusReversed || r.Method != reversald.MethodReversal || r.EventID == "e3" {
			t.Errorf("resolved outcome %+v", r.Outcome)
		}
	}
	// A late event for the resolved attempt gets its outcome at once, with
	// resolved_by too; a late conflicting one answers another payment.
	if _, err := s.Intake(ctx, []reversald.Event{event("e5", "A", 2500), event("e6", "A", 7)}); err != nil {
		t.Fatal(err)
	}
	late := drain(t, s)
	for _, r := range late {
		want := map[string]string{"e5": "bob", "e6": ""}[r.EventID]
		if r.ResolvedBy != want {
			t.Errorf("late event %s: resolved_by %q, want %q", r.EventID, r.ResolvedBy, want)
		}
	}
	if len(late) != 2 {
		t.Errorf("late events: %d outcomes, want 2", len(late))
	}
	if b, _ := s.Get(ctx, idA); b.ResolvedBy != "bob" {
		t.Errorf("attempt resolved_by %q", b.ResolvedBy)
	}
	// The daemon's own outcomes carry no resolved_by.
	h, _ := s.History(ctx, idA)
	daemon := 0
	for _, o := range h.Outcomes {
		if o.ResolvedBy == "" {
			daemon++
		}
	}
	if daemon != 4 || len(h.Actions) != 1 || h.Actions[0].Action != "resolve" || h.Actions[0].ToStatus != reversald.StatusReversed ||
		h.Actions[0].PreviousReason != "the cancel bound (2) is reached" || h.Actions[0].Operator != "bob" {
		t.Errorf("history after resolve: %d daemon outcomes, actions %+v", daemon, h.Actions)
	}
	// A resolved attempt is final: neither resolved again nor retried.
	if _, err := s.Resolve(ctx, idA, reversald.StatusPaid, ops); !errors.Is(err, store.ErrNotRetryable) {
		t.Errorf("second resolve: %v", err)
	}
	if err := s.Retry(ctx, idA, ops); !errors.Is(err, store.ErrNotRetryable) {
		t.Errorf("retry after resolve: %v", err)
	}
}

// purgeStore is a store on its own database with a test clock, and a raw
// connection to the same database.
func purgeStore(t *testing.T) (*store.Store, *testclock.Clock, *pgx.Conn) {
	t.Helper()
	url := storetest.URL(t)
	clk := testclock.New(time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC))
	s, err := store.Open(context.Background(), url, store.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return s, clk, conn
}

func count(t *testing.T, conn *pgx.Conn, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPurgeNeverTakesPendingOrUnpublished: an old attempt that is still
// pending, and an old final attempt with an unpublished outcome, survive any
// purge; so do final attempts decided within the age. The old, final,
// published ones go with all their rows, in batches.
func TestPurgeNeverTakesPendingOrUnpublished(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk, conn := purgeStore(t)

	// Old and purgeable: 5 final attempts, published, one resolved by hand
	// (operator actions), one with a conflicting event.
	var old []int64
	for i := range 5 {
		res, err := s.Intake(ctx, []reversald.Event{event(fmt.Sprintf("old-%d", i), fmt.Sprintf("OLD-%d", i), 2500)})
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, res.NewAttempts[0])
	}
	for _, id := range old[1:] {
		decide(t, s, id, reversald.StatusReversed, reversald.MethodReversal, "QFPay confirms the reversal")
	}
	decide(t, s, old[0], reversald.StatusNeedsReview, reversald.MethodNone, "mismatch")
	if _, err := s.Resolve(ctx, old[0], reversald.StatusPaid, ops); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Intake(ctx, []reversald.Event{event("old-conflict", "OLD-1", 1)}); err != nil {
		t.Fatal(err)
	}
	// Old but never decided: pending since long ago.
	pend, err := s.Intake(ctx, []reversald.Event{event("pending", "PENDING", 2500)})
	if err != nil {
		t.Fatal(err)
	}
	drain(t, s) // everything so far is published
	// Old and final, but an outcome is not published yet: a late event for
	// it was just queued.
	unpub, err := s.Intake(ctx, []reversald.Event{event("unpub", "UNPUB", 2500)})
	if err != nil {
		t.Fatal(err)
	}
	decide(t, s, unpub.NewAttempts[0], reversald.StatusPaid, reversald.MethodNone, "paid")
	clk.Advance(100 * 24 * time.Hour)
	// Recent: final and published, decided within the age.
	recent, err := s.Intake(ctx, []reversald.Event{event("recent", "RECENT", 2500)})
	if err != nil {
		t.Fatal(err)
	}
	decide(t, s, recent.NewAttempts[0], reversald.StatusPaid, reversald.MethodNone, "paid")
	// Only RECENT's outcome is published; UNPUB's stays queued.
	if _, err := conn.Exec(ctx, `UPDATE outbox SET published_at = now() WHERE attempt_id = $1`, recent.NewAttempts[0]); err != nil {
		t.Fatal(err)
	}
	if n := count(t, conn, `SELECT count(*) FROM outbox WHERE attempt_id = $1 AND published_at IS NULL`, unpub.NewAttempts[0]); n != 1 {
		t.Fatalf("fixture: UNPUB has %d unpublished outcomes, want 1", n)
	}

	n, _, err := s.CountPurgeable(ctx, 90*24*time.Hour)
	if err != nil || n != 5 {
		t.Fatalf("dry run: %d, %v; want 5", n, err)
	}
	if c := count(t, conn, `SELECT count(*) FROM attempts`); c != 8 {
		t.Fatalf("the dry run deleted: %d attempts left, want 8", c)
	}
	r, err := s.Purge(ctx, 90*24*time.Hour, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	// 5 attempts in batches of 2: 2, 2, 1.
	if r.Attempts != 5 || r.Events != 6 || r.Calls != 5 || r.Outcomes != 7 || r.Actions != 1 || r.Batches != 3 {
		t.Errorf("purge result %+v; want 5 attempts, 6 events, 5 calls, 7 outcomes (5 + 1 resolved + 1 conflict), 1 action, 3 batches", r)
	}
	left := []int64{pend.NewAttempts[0], unpub.NewAttempts[0], recent.NewAttempts[0]}
	if ids := count(t, conn, `SELECT count(*) FROM attempts WHERE id = ANY($1)`, left); ids != 3 || count(t, conn, `SELECT count(*) FROM attempts`) != 3 {
		t.Fatalf("after purge: the pending, unpublished and recent attempts must be all that is left")
	}
	for _, table := range []string{"events", "gateway_calls", "outbox", "operator_actions"} {
		if c := count(t, conn, `SELECT count(*) FROM `+table+` WHERE attempt_id = ANY($1)`, old); c != 0 {
			t.Errorf("%d rows of purged attempts left in %s", c, table)
		}
	}
	// UNPUB's row survives and is still published afterwards; then it goes.
	if recs := drain(t, s); len(recs) != 1 || recs[0].EventID != "unpub" {
		t.Fatalf("the unpublished outcome after purge: %+v", recs)
	}
	if _, err := conn.Exec(ctx, `UPDATE attempts SET first_seen_at = first_seen_at - interval '1 year' WHERE id = $1`, pend.NewAttempts[0]); err != nil {
		t.Fatal(err)
	}
	r, err = s.Purge(ctx, 90*24*time.Hour, 2, 0)
	if err != nil || r.Attempts != 1 {
		t.Fatalf("second purge: %+v, %v; want UNPUB alone", r, err)
	}
	if _, err := s.Get(ctx, pend.NewAttempts[0]); err != nil {
		t.Fatalf("the pending attempt was purged: %v", err)
	}
	if _, err := s.Purge(ctx, 0, 10, 0); err == nil {
		t.Error("a purge of age 0 was accepted")
	}
}

// TestPurgeSkipsLockedAttempts: an attempt that intake holds (FOR SHARE,
// while it adds an event) is skipped, not waited for, and the purge does
// not block intake's hot path.
func TestPurgeSkipsLockedAttempts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk, conn := purgeStore(t)
	var ids []int64
	for i := range 3 {
		res, err := s.Intake(ctx, []reversald.Event{event(fmt.Sprintf("e%d", i), fmt.Sprintf("K%d", i), 2500)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.NewAttempts[0])
		decide(t, s, res.NewAttempts[0], reversald.StatusPaid, reversald.MethodNone, "paid")
	}
	drain(t, s)
	clk.Advance(100 * 24 * time.Hour)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, `SELECT id FROM attempts WHERE id = $1 FOR SHARE`, ids[1]); err != nil {
		t.Fatal(err)
	}
	pctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	r, err := s.Purge(pctx, 90*24*time.Hour, 10, 0)
	if err != nil || r.Attempts != 2 {
		t.Fatalf("purge beside a held attempt: %+v, %v; want the 2 others, at once", r, err)
	}
	if _, err := s.Get(ctx, ids[1]); err != nil {
		t.Fatalf("the held attempt was purged: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Purge(ctx, 90*24*time.Hour, 10, 0); err != nil || r.Attempts != 1 {
		t.Fatalf("purge after release: %+v, %v", r, err)
	}
}
