package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// Role is what a credential may do.
type Role string

// Roles.
const (
	RoleAdmin  Role = "admin"  // reads and acts (retry, resolve)
	RoleViewer Role = "viewer" // reads only
)

// MinTokenLen is the shortest credential accepted: a token is the whole
// secret, so it must be long enough that guessing is hopeless (32 random
// characters from `openssl rand -base64 24` are about 190 bits).
const MinTokenLen = 24

// maxSessions bounds the sessions kept in memory; sign-in is refused when
// this many are live (expired ones are dropped first).
const maxSessions = 10_000

// session is a signed-in browser.
type session struct {
	role    Role
	name    string // who signed in, as they typed it: the operator of their actions
	csrf    string // the token every POST of this session carries
	expires time.Time
}

// sessions keeps the live sessions in memory: a restart signs everyone out,
// which for a console that changes money outcomes is a feature.
type sessions struct {
	mu   sync.Mutex
	byID map[string]session
}

func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(now time.Time, ttl time.Duration, role Role, name string) (string, session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, x := range s.byID {
		if !now.Before(x.expires) {
			delete(s.byID, id)
		}
	}
	if len(s.byID) >= maxSessions {
		return "", session{}, errors.New("too many sessions are open; try again later")
	}
	id := newID()
	x := session{role: role, name: name, csrf: newID(), expires: now.Add(ttl)}
	s.byID[id] = x
	return id, x, nil
}

func (s *sessions) get(now time.Time, id string) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x, ok := s.byID[id]
	if !ok {
		return session{}, false
	}
	if !now.Before(x.expires) {
		delete(s.byID, id)
		return session{}, false
	}
	return x, true
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, id)
}

// credentials are the two tokens, kept as SHA-256 digests so that comparing
// a guess costs the same whatever its length.
type credentials struct {
	admin, viewer [sha256.Size]byte
}

// role says which credential token is, comparing against both in constant
// time.
func (c credentials) role(token string) (Role, bool) {
	d := sha256.Sum256([]byte(token))
	isAdmin := subtle.ConstantTimeCompare(d[:], c.admin[:])
	isViewer := subtle.ConstantTimeCompare(d[:], c.viewer[:])
	switch {
	case isAdmin == 1:
		return RoleAdmin, true
	case isViewer == 1:
		return RoleViewer, true
	}
	return "", false
}

// checkOperatorName says what is wrong with a name typed at sign-in.
func checkOperatorName(name string) error {
	switch {
	case name == "":
		return errors.New("your name is required: it goes to the audit trail of every action you take")
	case !utf8.ValidString(name) || utf8.RuneCountInString(name) > 64:
		return errors.New("the name must be at most 64 characters of text")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return errors.New("the name must not hold control characters")
	}
	return nil
}

// bearer is the token of an Authorization: Bearer header, if any.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// sameToken compares two CSRF tokens in constant time.
func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
