package qfpay

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
)

// Credential is one QFPay account (an app code and its key, at one regional
// host) and the merchants it signs for. A set of them makes a [Directory].
type Credential struct {
	// Name names the credential in logs, metrics and errors; unique in a set.
	// Letters, digits, '.', '_' and '-', up to 64.
	Name string
	// Config is the client of this account: base URL, app code, key, sign
	// type, whether mchid is sent (OmitMchID), timeout, routes.
	Config Config
	// MchIDs are the merchants this credential signs for, by exact mchid. An
	// mchid may be listed by one credential only.
	MchIDs []string
	// Patterns are prefix globs, "ABC*": every mchid that starts with ABC.
	// The longest matching prefix wins; an exact MchIDs entry of any
	// credential beats every pattern. A pattern may be given by one
	// credential only.
	Patterns []string
	// Default signs for every merchant no credential names or matches, the
	// empty mchid included. At most one credential of a set is the default.
	Default bool
	// RatePerMin and RatePerSec override the cluster-wide per-merchant call
	// budget for this credential's merchants; 0 keeps the cluster-wide one.
	// They are only carried here, for the pacer.
	RatePerMin float64
	RatePerSec float64
}

// Account is a credential as [Directory.Resolve] hands it out: the client
// that signs for the merchant and what the credential says about it. The
// client's key never prints.
type Account struct {
	Name       string
	AppCode    string
	Client     *Client
	RatePerMin float64 // 0: the cluster-wide budget
	RatePerSec float64 // 0: the cluster-wide budget
}

// Directory resolves a merchant's mchid to the account that signs for it. It
// is safe for concurrent use. [Directory.Replace] swaps the whole set at once:
// a Resolve sees either the old set or the new one, never a mix, and an
// Account handed out before keeps working (its client is not closed, only
// its idle connections are).
type Directory struct {
	set atomic.Pointer[accountSet]
}

// accountSet is one immutable set of accounts, indexed for Resolve.
type accountSet struct {
	byMchID  map[string]*Account
	prefixes []prefixAccount // longest prefix first
	def      *Account
	all      []*Account // in the order given
}

type prefixAccount struct {
	prefix string
	acct   *Account
}

// NewDirectory checks creds (every problem at once, see
// [ValidateCredentials]) and builds a client for each.
func NewDirectory(creds []Credential) (*Directory, error) {
	set, err := buildSet(creds)
	if err != nil {
		return nil, err
	}
	d := &Directory{}
	d.set.Store(set)
	return d, nil
}

// Replace checks creds and, if they are good, makes them the directory's
// whole set at once; otherwise it returns every problem and keeps the set it
// had. Calls already under way keep the client they were given.
func (d *Directory) Replace(creds []Credential) error {
	set, err := buildSet(creds)
	if err != nil {
		return err
	}
	old := d.set.Swap(set)
	if old != nil {
		for _, a := range old.all {
			a.Client.CloseIdleConnections() // in-use connections finish their call
		}
	}
	return nil
}

// Resolve returns the account that signs for mchid: the credential that
// lists it, else the one with the longest matching pattern, else the
// default. Without one it returns an error that is [ErrNoCredential], naming
// the merchant.
func (d *Directory) Resolve(mchid string) (Account, error) {
	set := d.set.Load()
	if set == nil {
		return Account{}, fmt.Errorf("%w for merchant %s", ErrNoCredential, shownMchID(mchid))
	}
	if a, ok := set.byMchID[mchid]; ok {
		return *a, nil
	}
	for _, p := range set.prefixes {
		if strings.HasPrefix(mchid, p.prefix) {
			return *p.acct, nil
		}
	}
	if set.def != nil {
		return *set.def, nil
	}
	return Account{}, fmt.Errorf("%w for merchant %s", ErrNoCredential, shownMchID(mchid))
}

// Accounts returns the current set's accounts in the order they were given.
func (d *Directory) Accounts() []Account {
	set := d.set.Load()
	if set == nil {
		return nil
	}
	out := make([]Account, len(set.all))
	for i, a := range set.all {
		out[i] = *a
	}
	return out
}

// CloseIdleConnections closes the idle connections of every current client;
// call it when done with the directory.
func (d *Directory) CloseIdleConnections() {
	for _, a := range d.Accounts() {
		a.Client.CloseIdleConnections()
	}
}

// shownMchID names a merchant in a message; mchid is not a secret.
func shownMchID(mchid string) string {
	if mchid == "" {
		return "(no mchid)"
	}
	return mchid
}

func buildSet(creds []Credential) (*accountSet, error) {
	if err := ValidateCredentials(creds); err != nil {
		return nil, err
	}
	set := &accountSet{byMchID: map[string]*Account{}}
	for _, c := range creds {
		client, err := New(c.Config)
		if err != nil { // checked above; kept for safety
			return nil, fmt.Errorf("credential %s: %w", c.Name, err)
		}
		a := &Account{Name: c.Name, AppCode: c.Config.AppCode, Client: client, RatePerMin: c.RatePerMin, RatePerSec: c.RatePerSec}
		set.all = append(set.all, a)
		for _, m := range c.MchIDs {
			set.byMchID[m] = a
		}
		for _, p := range c.Patterns {
			set.prefixes = append(set.prefixes, prefixAccount{prefix: strings.TrimSuffix(p, "*"), acct: a})
		}
		if c.Default {
			set.def = a
		}
	}
	slices.SortStableFunc(set.prefixes, func(x, y prefixAccount) int { return len(y.prefix) - len(x.prefix) })
	return set, nil
}

// ValidateCredentials lists every problem with a set of credentials, each
// naming its credential: a bad name or a name given twice, every problem of
// its Config (none of which carries the key), a bad mchid or pattern, an mchid
// or a pattern given by two credentials, two defaults, a credential that
// covers no merchant, a bad rate. An empty set is a problem too.
func ValidateCredentials(creds []Credential) error {
	var errs []error
	if len(creds) == 0 {
		errs = append(errs, errors.New("no credential: give at least one"))
	}
	names := map[string]int{}
	mchids := map[string]string{}   // mchid -> credential
	patterns := map[string]string{} // pattern -> credential
	def := ""
	for i, c := range creds {
		label := c.Name
		if label == "" {
			label = fmt.Sprintf("#%d", i+1)
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("credential %s: %s", label, fmt.Sprintf(format, args...)))
		}
		switch {
		case c.Name == "":
			bad("name is required")
		case !validName(c.Name):
			bad("name must be up to 64 letters, digits, '.', '_' or '-'")
		case names[c.Name] > 0:
			bad("name is also given to credential #%d", names[c.Name])
		default:
			names[c.Name] = i + 1
		}
		for _, err := range c.Config.problems() {
			bad("%v", err)
		}
		for _, m := range c.MchIDs {
			switch {
			case m == "":
				bad("an empty mchid is listed")
			case checkMchID(m) != nil:
				bad("mchid %q must be up to 16 letters and digits", m)
			case mchids[m] == label:
			case mchids[m] != "":
				bad("mchid %s is also listed by credential %s", m, mchids[m])
			default:
				mchids[m] = label
			}
		}
		for _, p := range c.Patterns {
			prefix, ok := strings.CutSuffix(p, "*")
			switch {
			case !ok || prefix == "" || checkMchID(prefix) != nil || len(prefix) >= MaxMchIDBytes:
				bad("pattern %q must be a prefix of letters and digits followed by *, like ABC*", p)
			case patterns[p] == label:
			case patterns[p] != "":
				bad("pattern %s is also given by credential %s", p, patterns[p])
			default:
				patterns[p] = label
			}
		}
		if c.Default {
			if def != "" {
				bad("is a default, and so is credential %s: give one default", def)
			} else {
				def = label
			}
		}
		if len(c.MchIDs) == 0 && len(c.Patterns) == 0 && !c.Default {
			bad("covers no merchant: give mchids, patterns or default")
		}
		for _, r := range []struct {
			name string
			v    float64
		}{{"rate per minute", c.RatePerMin}, {"rate per second", c.RatePerSec}} {
			if r.v < 0 || math.IsNaN(r.v) || math.IsInf(r.v, 0) {
				bad("%s must be a positive number, or 0 for the cluster-wide one", r.name)
			}
		}
	}
	return errors.Join(errs...)
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isAlnum(s[i]) && s[i] != '.' && s[i] != '_' && s[i] != '-' {
			return false
		}
	}
	return true
}
