package reversal

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/reversald/reversald"
	"github.com/reversald/reversald/qfpay"
)

// answer is one thing the gateway can say to a step: a query answer (for the
// query and confirm steps) or a cancel answer.
type answer struct {
	name     string
	query    bool
	obs      func() Observation
	settling bool // a query record that may settle an attempt (any final money status)
}

// modelAlphabet is the whole answer alphabet of QFPAY.md §3-§4, one member
// per family: every documented cancel code class and HTTP/network failure,
// each record state and record code family, the empty query.
func modelAlphabet() []answer {
	q := func(name string, settling bool, recs ...qfpay.Record) answer {
		return answer{name: "query " + name, query: true, settling: settling, obs: func() Observation { return queryOK(recs...) }}
	}
	qerr := func(name string, err error) answer {
		return answer{name: "query " + name, query: true, obs: func() Observation { return queryErr(err) }}
	}
	c := func(code string) answer {
		return answer{name: "cancel " + code, obs: func() Observation { return cancelAns(code) }}
	}
	cerr := func(name string, err error) answer {
		return answer{name: "cancel " + name, obs: func() Observation { return cancelErr(err) }}
	}
	timeout := fmt.Errorf("post: %w", context.DeadlineExceeded)
	out := []answer{
		q("paid", true, rec("0000", "0")),
		q("reversed", true, rec("0000", "1")),
		q("closed", true, rec("0000", "2")),
		q("refunded", true, rec("0000", "3")),
		q("partially refunded", true, rec("0000", "5")),
		q("cancel=4", false, rec("0000", "4")),
		q("in flight 1143", false, rec("1143", "0")),
		q("wait 1161", false, rec("1161", "0")),
		q("network 1296", false, rec("1296", "0")),
		q("unknown record code", false, rec("7777", "0")),
		q("failed 1147", true, rec("1147", "0")),
		q("expired 1181", true, rec("1181", "0")),
		q("amount mismatch", true, amt(rec("0000", "0"), 1, "HKD")),
		q("empty", true),
		qerr("transient 1100", &qfpay.RespError{Endpoint: "query", Respcd: "1100"}),
		qerr("http 503", &qfpay.HTTPError{Endpoint: "query", Status: 503}),
		qerr("timeout", timeout),
		qerr("refused 1294", &qfpay.RespError{Endpoint: "query", Respcd: "1294"}),
		qerr("unknown 7777", &qfpay.RespError{Endpoint: "query", Respcd: "7777"}),
		qerr("no credential", fmt.Errorf("merchant M: %w", qfpay.ErrNoCredential)),
	}
	for _, code := range []string{"0000", "1143", "1102", "1142", "1263", "1125", "1262", "1260",
		"1136", "1268", "1181", "1147", "1111", "1294", "9999"} {
		out = append(out, c(code))
	}
	out = append(out,
		cerr("http 429", &qfpay.HTTPError{Endpoint: "reversal", Status: 429}),
		cerr("http 502", &qfpay.HTTPError{Endpoint: "reversal", Status: 502}),
		cerr("timeout", timeout),
	)
	return out
}

// TestDecisionTableModel is a bounded model check of Decide as the executor
// drives it: it enumerates every sequence of gateway answers up to length 8
// over the whole alphabet (a query answer for a query or confirm step, a
// cancel answer for a cancel step; a step that makes no call, such as a pay
// type with no cancel route, consumes none), and asserts on every sequence:
//   - it ends within the bounds: at most MaxGatewayCalls answers, and final
//     within them;
//   - at most CancelMaxCalls cancels are sent;
//   - a final money status comes only from a settling query record read
//     after the last cancel answer;
//   - never not_found after a cancel that may have reached QFPay (judged by
//     the model from the answers, not from the code's own flag: every cancel
//     answer but "does not exist" 1136/1268, and every lost answer);
//   - every cancel is followed by a query before the attempt ends;
//   - needs_review always carries the last record read.
//
// A crash between the intent write and the cancel's answer leaves the
// attempt as a lost answer (drive.go's recovery step): the timeout member of
// the alphabet is that case. A crash after an answer that decides what comes
// later (a refusal, an unknown code, 1260) loses nothing: drive.go writes
// those at once. Any other answer, lost in a crash, becomes that same lost
// answer, which leads to the same queries (for 1136/1268 more cautiously:
// "may have reached" instead of "not there").
//
// It runs with a small policy, so that every bound is reached within 8
// answers, and with the default one.
func TestDecisionTableModel(t *testing.T) {
	t.Parallel()
	for _, p := range []Policy{
		{NotFoundRechecks: 2, ConfirmRechecks: 2, CancelMaxCalls: 2, MaxGatewayCalls: 8},
		DefaultPolicy,
	} {
		checkModel(t, p)
	}
}

func checkModel(t *testing.T, p Policy) {
	t.Helper()
	const depth = 8
	alpha := modelAlphabet()
	var queries, cancels []answer
	for _, a := range alpha {
		if a.query {
			queries = append(queries, a)
		} else {
			cancels = append(cancels, a)
		}
	}
	for _, payType := range []string{"800101", "801501"} { // cancellable, Hong Kong-only
		// Sequences from a state on are the same whatever path led there:
		// memo counts them once per (state, ghost variables, depth left), so
		// every sequence is checked without walking each one again.
		type key struct {
			a                                 reversald.Attempt
			lastSettling, reachedAny, queried bool
			lastRecord                        string
			left                              int
		}
		memo := map[key][2]int64{} // sequences, of which final
		byStatus := map[reversald.Status]int64{}
		var walk func(a reversald.Attempt, trace []string, lastSettling, reachedAny, queried bool, lastRecord string) (int64, int64)
		walk = func(a reversald.Attempt, trace []string, lastSettling, reachedAny, queried bool, lastRecord string) (int64, int64) {
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("%s: %s\n  sequence: %s\n  reason: %s", payType, fmt.Sprintf(format, args...), strings.Join(trace, " → "), a.Reason)
			}
			if a.CancelCalls > p.CancelMaxCalls {
				fail("%d cancels sent, bound %d", a.CancelCalls, p.CancelMaxCalls)
			}
			if a.Final() {
				switch a.Status {
				case reversald.StatusNeedsReview, reversald.StatusUnsupported:
				default:
					if !lastSettling {
						fail("final %s without a settling query record read after the last cancel answer", a.Status)
					}
				}
				if a.Status == reversald.StatusNotFound && reachedAny {
					fail("not_found after a cancel that may have reached QFPay")
				}
				if a.CancelCalls > 0 && !queried {
					fail("ended %s with no query after the last cancel", a.Status)
				}
				if a.Status == reversald.StatusNeedsReview && lastRecord != "" && !strings.Contains(a.Reason, "last record: respcd "+lastRecord) {
					fail("needs_review does not carry the last record (respcd %s)", lastRecord)
				}
				byStatus[a.Status]++
				return 1, 1
			}
			if a.BudgetCalls >= p.MaxGatewayCalls {
				fail("not final after the whole gateway budget (%d calls)", a.BudgetCalls)
			}
			if a.BudgetCalls == depth { // depth counts answers; a step that makes no call consumes none
				return 1, 0 // still running at the depth bound, within its budget
			}
			k := key{a: a, lastSettling: lastSettling, reachedAny: reachedAny, queried: queried, lastRecord: lastRecord, left: depth - a.BudgetCalls}
			k.a.Reason, k.a.Respcd, k.a.Resperr, k.a.Respmsg = "", "", "", ""
			if v, ok := memo[k]; ok {
				return v[0], v[1]
			}
			var n, f int64
			add := func(dn, df int64) { n, f = n+dn, f+df }
			switch a.Step {
			case reversald.StepCancel:
				switch {
				case payType == "801501":
					// No cancel route: the executor makes no call.
					next, _ := Decide(a, Observation{Err: fmt.Errorf("route %s: %w", payType, qfpay.ErrNotCancellable)}, p)
					add(walk(next, append(slicesClone(trace), "no route"), false, reachedAny, queried, lastRecord))
				case a.CancelCalls >= p.CancelMaxCalls:
					next, _ := Decide(a, Observation{Err: ErrCancelBound}, p)
					add(walk(next, append(slicesClone(trace), "bound"), false, reachedAny, queried, lastRecord))
				default:
					for _, ans := range cancels {
						b := a
						b.CancelCalls++ // the intent write
						b.GatewayCalls++
						b.BudgetCalls++
						next, _ := Decide(b, ans.obs(), p)
						notThere := ans.name == "cancel 1136" || ans.name == "cancel 1268"
						add(walk(next, append(slicesClone(trace), ans.name), false, reachedAny || !notThere, false, lastRecord))
					}
				}
			case reversald.StepQuery, reversald.StepConfirm:
				for _, ans := range queries {
					b := a
					b.GatewayCalls++
					b.BudgetCalls++
					o := ans.obs()
					rec := lastRecord
					if r, ok := o.Query.Payment(otn); ok && o.Err == nil {
						rec = r.Respcd
					}
					next, _ := Decide(b, o, p)
					add(walk(next, append(slicesClone(trace), ans.name), ans.settling && o.Err == nil, reachedAny, true, rec))
				}
			default:
				fail("unexpected step %s", a.Step)
			}
			memo[k] = [2]int64{n, f}
			return n, f
		}
		start := at(reversald.StepQuery, 0)
		start.PayType = payType
		sequences, finals := walk(start, nil, false, false, false, "")
		t.Logf("policy %+v, pay type %s: %d answer sequences checked (every sequence of up to %d answers over %d answers; %d distinct states), %d ended final; distinct final states by status: %v",
			p, payType, sequences, depth, len(alpha), len(memo), finals, byStatus)
		if sequences < 1000 {
			t.Errorf("only %d sequences: the model did not branch", sequences)
		}
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }
