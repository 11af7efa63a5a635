package sandbox

import (
	"crypto/md5"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"hash"
	"sort"
	"strings"
)

// signature computes QFPay's request signature independently of package qfpay:
// every non-empty parameter sorted by name, name=value joined with "&", the key
// appended, hashed, upper-case hex.
func signature(fields map[string]string, key []byte, sha bool) string {
	names := make([]string, 0, len(fields))
	for k, v := range fields {
		if v != "" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var h hash.Hash
	if sha {
		h = sha256.New()
	} else {
		h = md5.New()
	}
	for i, k := range names {
		if i > 0 {
			h.Write([]byte{'&'})
		}
		h.Write([]byte(k))
		h.Write([]byte{'='})
		h.Write([]byte(fields[k]))
	}
	h.Write(key)
	return strings.ToUpper(hex.EncodeToString(h.Sum(nil)))
}

func signatureOK(fields map[string]string, key []byte, sha bool, got string) bool {
	want := signature(fields, key, sha)
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// responseSignature is upper-case MD5 of the raw body followed by the key.
func responseSignature(body, key []byte) string {
	h := md5.New()
	h.Write(body)
	h.Write(key)
	return strings.ToUpper(hex.EncodeToString(h.Sum(nil)))
}
