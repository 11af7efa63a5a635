package qfpay

// These tests hold docs/QFPAY.md and the code to each other: §4's code table
// against codeClasses (and Classify for what is not a code), §3's lists of
// failed-payment and wait codes against Record.State. An edit on one side
// only fails here; the fix is to edit both.

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// qfpayDoc is the project's QFPay reference, read from this package's
// directory.
var qfpayDoc = filepath.Join("..", "docs", "QFPAY.md")

// docRowClass is what each row of §4 means in code, keyed by the row's first
// code (or first entry, for a row without codes). A row added to the document
// needs its class here; a class here whose row is gone fails the test too.
var docRowClass = map[string]Class{
	"0000":          ClassSuccess,
	"1143":          ClassInProgress,
	"1102":          ClassDuplicate,
	"1142":          ClassAlreadyCancelled,
	"1125":          ClassRefunded,
	"1260":          ClassPaid,
	"1136":          ClassNotFound,
	"1181":          ClassPaymentFailed, // expired unpaid
	"1147":          ClassPaymentFailed,
	"1100":          ClassTransient,
	"1101":          ClassNeedsReview,
	"anything else": ClassUnknown,
}

// docNonCodes are the entries of §4's code column that are not 4-digit codes,
// each with errors of that kind as the client returns them. "anything else"
// is every 4-digit code the table does not list: it is checked by walking all
// of them.
var docNonCodes = map[string][]error{
	"HTTP 429": {&HTTPError{Endpoint: "query", Status: 429}},
	"HTTP 5xx": http5xx(),
	"network errors": {
		&TransportError{Endpoint: "reversal", Err: syscall.ECONNREFUSED},
		&TransportError{Endpoint: "reversal", Err: syscall.ECONNRESET},
		&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED},
	},
	"timeouts": {
		&TransportError{Endpoint: "query", Timeout: true, Err: context.DeadlineExceeded},
		context.DeadlineExceeded,
	},
	"anything else": nil,
}

func http5xx() []error {
	var out []error
	for st := 500; st <= 599; st++ {
		out = append(out, &HTTPError{Endpoint: "close", Status: st})
	}
	return out
}

// readDoc returns docs/QFPAY.md.
func readDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(qfpayDoc)
	if err != nil {
		t.Fatalf("read the QFPay reference: %v", err)
	}
	return string(b)
}

// docSection returns the lines of section n ("## n. ..." up to the next "## ")
// and the document line number of its first line.
func docSection(t *testing.T, doc string, n int) ([]string, int) {
	t.Helper()
	lines := strings.Split(doc, "\n")
	start := -1
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, fmt.Sprintf("## %d. ", n)):
			start = i + 1
		case start >= 0 && strings.HasPrefix(l, "## "):
			return lines[start:i], start + 1
		}
	}
	if start < 0 {
		t.Fatalf("%s: no section \"## %d.\"", qfpayDoc, n)
	}
	return lines[start:], start + 1
}

// docRow is one row of §4's table.
type docRow struct {
	line   int      // in the document
	first  string   // the first entry of the code column
	codes  []string // its 4-digit codes, ranges expanded
	others []string // its entries that are not codes (see docNonCodes)
}

var (
	codeRe  = regexp.MustCompile(`^\d{4}$`)
	rangeRe = regexp.MustCompile(`^(\d{4})-(\d{4})$`)
	// listRe finds codes and ranges in running text (§3).
	listRe = regexp.MustCompile(`\b(\d{4})(?:-(\d{4}))?\b`)
)

// expand returns the codes lo..hi, both 4 digits.
func expand(t *testing.T, where, lo, hi string) []string {
	t.Helper()
	a, _ := strconv.Atoi(lo)
	b, _ := strconv.Atoi(hi)
	if a >= b || b-a > 99 {
		t.Fatalf("%s: range %s-%s: want a short ascending range", where, lo, hi)
	}
	var out []string
	for c := a; c <= b; c++ {
		out = append(out, fmt.Sprintf("%04d", c))
	}
	return out
}

// parseCodeTable reads §4's table: `| code(s) | meaning | class |` rows.
func parseCodeTable(t *testing.T, doc string) []docRow {
	t.Helper()
	lines, at := docSection(t, doc, 4)
	var rows []docRow
	header := false
	for i, l := range lines {
		where := fmt.Sprintf("%s:%d", qfpayDoc, at+i)
		if !strings.HasPrefix(l, "|") {
			if header && len(rows) > 0 {
				break // the table has ended
			}
			continue
		}
		cells := strings.Split(strings.Trim(l, "|"), "|")
		if len(cells) != 3 {
			t.Fatalf("%s: %d cells, want | code(s) | meaning | class |", where, len(cells))
		}
		col := strings.TrimSpace(cells[0])
		switch {
		case col == "code(s)":
			header = true
			continue
		case strings.Trim(col, "-") == "":
			continue
		case !header:
			t.Fatalf("%s: a row before the table's header", where)
		}
		r := docRow{line: at + i}
		for j, e := range strings.Split(col, ",") {
			e = strings.TrimSpace(e)
			if j == 0 {
				r.first = e
			}
			if m := rangeRe.FindStringSubmatch(e); m != nil {
				r.codes = append(r.codes, expand(t, where, m[1], m[2])...)
				continue
			}
			if codeRe.MatchString(e) {
				r.codes = append(r.codes, e)
				continue
			}
			if _, ok := docNonCodes[e]; !ok {
				t.Fatalf("%s: %q is not a 4-digit code, a range like 1105-1107, nor one of the entries this test knows (%q): teach docNonCodes",
					where, e, slices.Sorted(maps.Keys(docNonCodes)))
			}
			r.others = append(r.others, e)
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no code table in §4", qfpayDoc)
	}
	return rows
}

// TestDocCodeTable checks §4 of docs/QFPAY.md against codeClasses: every
// documented code has its row's class, every code in codeClasses is
// documented, every code the table does not list is unknown, and the entries
// that are not codes (HTTP 429, HTTP 5xx, network errors, timeouts) classify
// as their row says.
func TestDocCodeTable(t *testing.T) {
	t.Parallel()
	rows := parseCodeTable(t, readDoc(t))
	documented := map[string]int{} // code -> document line
	class := map[string]Class{}    // code -> its row's class
	usedRows, usedOthers := map[string]bool{}, map[string]bool{}
	var unknownClass *Class
	for _, r := range rows {
		want, ok := docRowClass[r.first]
		if !ok {
			t.Errorf("%s:%d: row %q has no class in docRowClass: add the row's meaning in code", qfpayDoc, r.line, r.first)
			continue
		}
		if usedRows[r.first] {
			t.Errorf("%s:%d: a second row starts with %q", qfpayDoc, r.line, r.first)
		}
		usedRows[r.first] = true
		for _, c := range r.codes {
			if l, dup := documented[c]; dup {
				t.Errorf("%s:%d: code %s is also on line %d", qfpayDoc, r.line, c, l)
			}
			documented[c], class[c] = r.line, want
		}
		for _, o := range r.others {
			if usedOthers[o] {
				t.Errorf("%s:%d: %q is on two rows", qfpayDoc, r.line, o)
			}
			usedOthers[o] = true
			if o == "anything else" {
				if len(r.codes) > 0 || len(r.others) > 1 {
					t.Errorf("%s:%d: \"anything else\" must be a row of its own", qfpayDoc, r.line)
				}
				unknownClass = &want
				continue
			}
			for _, err := range docNonCodes[o] {
				if got := Classify(err); got != want {
					t.Errorf("%s:%d: %s (%T %v) classifies as %v, the document says %v", qfpayDoc, r.line, o, err, err, got, want)
				}
			}
		}
	}
	for first := range docRowClass {
		if !usedRows[first] {
			t.Errorf("docRowClass has a row %q that §4 no longer has", first)
		}
	}
	for o := range docNonCodes {
		if !usedOthers[o] {
			t.Errorf("§4 does not say what %q is", o)
		}
	}
	for c, want := range class {
		got, ok := codeClasses[c]
		switch {
		case !ok:
			t.Errorf("%s:%d: code %s is documented as %v, but codeClasses does not have it", qfpayDoc, documented[c], c, want)
		case got != want:
			t.Errorf("%s:%d: code %s is documented as %v, codeClasses says %v", qfpayDoc, documented[c], c, want, got)
		}
	}
	for c, got := range codeClasses {
		if _, ok := documented[c]; !ok {
			t.Errorf("codeClasses has %s (%v), which §4 of %s does not list", c, got, qfpayDoc)
		}
	}
	if unknownClass == nil {
		t.Fatalf("§4 has no \"anything else\" row")
	}
	for n := range 10000 {
		c := fmt.Sprintf("%04d", n)
		if _, ok := documented[c]; !ok && CodeClass(c) != *unknownClass {
			t.Errorf("code %s is not in §4, so it is \"anything else\" (%v), but CodeClass says %v", c, *unknownClass, CodeClass(c))
		}
	}
}

// docList returns the codes of the one bullet of §3 that ends in arrow (e.g.
// "→ failed"), read before the arrow, ranges expanded.
func docList(t *testing.T, doc, arrow string) []string {
	t.Helper()
	lines, at := docSection(t, doc, 3)
	var bullets []string
	var starts []int
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "- "):
			bullets, starts = append(bullets, l[2:]), append(starts, at+i)
		case strings.HasPrefix(l, "  ") && len(bullets) > 0:
			bullets[len(bullets)-1] += " " + strings.TrimSpace(l)
		}
	}
	var found []int
	for i, b := range bullets {
		if strings.Contains(b, arrow) {
			found = append(found, i)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s §3: %d bullets say %q, want exactly one", qfpayDoc, len(found), arrow)
	}
	b := bullets[found[0]]
	where := fmt.Sprintf("%s:%d", qfpayDoc, starts[found[0]])
	var out []string
	before, _, _ := strings.Cut(b, arrow)
	for _, m := range listRe.FindAllStringSubmatch(before, -1) {
		if m[2] != "" {
			out = append(out, expand(t, where, m[1], m[2])...)
		} else {
			out = append(out, m[1])
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no codes before %q", where, arrow)
	}
	return out
}

// TestDocRecordCodes checks §3 of docs/QFPAY.md against Record.State: the
// codes it documents as a failed payment are StateFailed, the wait family is
// StateInFlight, and so is every other code but 0000 ("any code this table
// does not know"), so the payment-failed codes hold exactly the documented list. It also
// holds §3's failed list to §4's payment-failed rows.
func TestDocRecordCodes(t *testing.T) {
	t.Parallel()
	doc := readDoc(t)
	failed := docList(t, doc, "→ failed")
	waiting := docList(t, doc, "→ still in flight")
	isFailed := map[string]bool{}
	for _, c := range failed {
		isFailed[c] = true
		for _, cancel := range []string{"0", ""} {
			if got := (Record{Respcd: c, Cancel: cancel}).State(); got != StateFailed {
				t.Errorf("§3 documents %s as a failed payment; Record{respcd %s, cancel %q}.State() = %v", c, c, cancel, got)
			}
		}
	}
	for _, c := range waiting {
		if isFailed[c] {
			t.Errorf("§3 lists %s both as a failed payment and as still in flight", c)
		}
		if got := (Record{Respcd: c, Cancel: "0"}).State(); got != StateInFlight {
			t.Errorf("§3 documents %s as still in flight; Record{respcd %s}.State() = %v", c, c, got)
		}
	}
	for c, cls := range codeClasses {
		if cls == ClassPaymentFailed && !isFailed[c] {
			t.Errorf("codeClasses has %s as a failed payment, which §3 does not document", c)
		}
	}
	for n := 1; n < 10000; n++ { // 0000 is paid
		c := fmt.Sprintf("%04d", n)
		if !isFailed[c] && (Record{Respcd: c, Cancel: "0"}).State() != StateInFlight {
			t.Errorf("§3: %s is not a documented failure, so it is still in flight; State() = %v", c, (Record{Respcd: c}).State())
		}
	}
	var table []string
	for _, r := range parseCodeTable(t, doc) {
		if docRowClass[r.first] == ClassPaymentFailed {
			table = append(table, r.codes...)
		}
	}
	slices.Sort(table)
	failed = slices.Sorted(slices.Values(failed))
	if !slices.Equal(failed, table) {
		t.Errorf("§3's failed payments %v are not §4's payment-failed codes %v", failed, table)
	}
}
