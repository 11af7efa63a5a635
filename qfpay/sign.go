package qfpay

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strings"
)

// SignType selects the hash of the request signature (QFPAY.md §1).
type SignType string

// Sign types. The zero value means MD5.
const (
	SignMD5    SignType = "MD5"
	SignSHA256 SignType = "SHA256"
)

func (t SignType) valid() bool { return t == "" || t == SignMD5 || t == SignSHA256 }

func (t SignType) newHash() hash.Hash {
	if t == SignSHA256 {
		return sha256.New()
	}
	return md5.New()
}

// Canonical returns the string QFPay signs, without the key: every parameter
// with a non-empty value, sorted by name in byte order, written as name=value and
// joined with "&". Values are raw (not URL-encoded); non-ASCII text is taken as
// its UTF-8 bytes. The signature is the hash of Canonical(params) followed by
// the key.
func Canonical(params map[string]string) string {
	names := make([]string, 0, len(params))
	n := 0
	for k, v := range params {
		if v == "" {
			continue
		}
		names = append(names, k)
		n += len(k) + len(v) + 2
	}
	slices.Sort(names)
	var b strings.Builder
	b.Grow(n)
	for i, k := range names {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(params[k])
	}
	return b.String()
}

// Sign returns the upper-case hex signature of params under key:
// hash(Canonical(params) + key) with MD5 (the default) or SHA256.
func Sign(params map[string]string, key Key, t SignType) (string, error) {
	if !t.valid() {
		return "", fmt.Errorf("qfpay: unknown sign type %q", string(t))
	}
	if key.IsZero() {
		return "", fmt.Errorf("qfpay: sign: no client key")
	}
	return signBytes([]byte(Canonical(params)), key, t), nil
}

func signBytes(msg []byte, key Key, t SignType) string {
	h := t.newHash()
	_, _ = h.Write(msg)
	_, _ = h.Write(key.bytes())
	var sum [sha256.Size]byte
	out := h.Sum(sum[:0])
	return strings.ToUpper(hex.EncodeToString(out))
}

// SignResponse returns the signature QFPay puts in a response's X-QF-SIGN
// header: upper-case hex of hash(raw body + key) (QFPAY.md §5).
func SignResponse(body []byte, key Key, t SignType) string {
	return signBytes(body, key, t)
}

// verifyResponse compares a response signature in constant time. Case of the
// received hex is ignored.
func verifyResponse(body []byte, key Key, t SignType, got string) bool {
	want := signBytes(body, key, t)
	return subtle.ConstantTimeCompare([]byte(want), []byte(strings.ToUpper(got))) == 1
}
