package qfpay

import (
	"crypto/md5"
	"encoding/hex"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// QFPay's worked example (QFPAY.md §1).
func TestSignWorkedExample(t *testing.T) {
	t.Parallel()
	p := map[string]string{"txcurrcd": "HKD", "mchid": "ZaMVg12345", "txamt": "100"}
	if got, want := Canonical(p)+"abcd1234", "mchid=ZaMVg12345&txamt=100&txcurrcd=HKDabcd1234"; got != want {
		t.Fatalf("signing string = %q, want %q", got, want)
	}
	tests := []struct {
		typ  SignType
		want string // computed with md5sum / sha256sum in a shell
	}{
		{"", "3CB3AA9C21D818AB4CAFAA8FA3FEACF4"},
		{SignMD5, "3CB3AA9C21D818AB4CAFAA8FA3FEACF4"},
		{SignSHA256, "99D9F7174823928B74C74B1C7A7E1538DF733774DD21C9606A202CB8BB3D74E8"},
	}
	for _, tt := range tests {
		got, err := Sign(p, NewKey("abcd1234"), tt.typ)
		if err != nil || got != tt.want {
			t.Errorf("Sign(%q) = %q, %v; want %q", tt.typ, got, err, tt.want)
		}
	}
}

// The seed's reversal payload, signed with a key of our own, checked against an
// MD5 computed independently (by hand-built string and by md5sum).
func TestSignSeedReversal(t *testing.T) {
	t.Parallel()
	const key = "reversald-golden-key"
	p := map[string]string{
		"txamt":        "2500",
		"out_trade_no": "4MDGEJ7L496LAAU1V1HBY9HMOGWZWLXQ",
		"txdtm":        "2020-03-05 16:50:30",
		"mchid":        "MNxMp11FV35qQN",
		"udid":         "", // empty: left out of the signature
	}
	plain := "mchid=MNxMp11FV35qQN&out_trade_no=4MDGEJ7L496LAAU1V1HBY9HMOGWZWLXQ&txamt=2500&txdtm=2020-03-05 16:50:30" + key
	sum := md5.Sum([]byte(plain))
	independent := strings.ToUpper(hex.EncodeToString(sum[:]))
	const fromShell = "0C25381C2C48C4B96930A28D8758527C" // printf '%s' "$plain" | md5sum
	if independent != fromShell {
		t.Fatalf("test data: md5 %s != md5sum %s", independent, fromShell)
	}
	got, err := Sign(p, NewKey(key), SignMD5)
	if err != nil || got != fromShell {
		t.Fatalf("Sign = %q, %v; want %q", got, err, fromShell)
	}
	got, err = Sign(p, NewKey(key), SignSHA256)
	if want := "E05FB170F1094E9D4B795EDD089B3CE334624BF9436C401C7167027153016E02"; err != nil || got != want {
		t.Fatalf("Sign SHA256 = %q, %v; want %q", got, err, want)
	}
}

func TestSignNonASCIIIsUTF8(t *testing.T) {
	t.Parallel()
	p := map[string]string{"goods_name": "咖啡", "txamt": "100"}
	if got := Canonical(p); got != "goods_name=咖啡&txamt=100" {
		t.Fatalf("Canonical = %q: values must be raw, not URL-encoded", got)
	}
	got, _ := Sign(p, NewKey("k"), SignMD5)
	if want := "8F5D16D76FDAC9D6F0050F31518A98B4"; got != want { // md5sum of the UTF-8 bytes
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestSignErrors(t *testing.T) {
	t.Parallel()
	if _, err := Sign(map[string]string{"a": "b"}, NewKey("k"), "SHA1"); err == nil {
		t.Error("unknown sign type: no error")
	}
	if _, err := Sign(map[string]string{"a": "b"}, Key{}, SignMD5); err == nil {
		t.Error("zero key: no error")
	}
}

func TestResponseSignature(t *testing.T) {
	t.Parallel()
	body := []byte(`{"respcd":"0000"}`)
	k := NewKey("abcd1234")
	sig := SignResponse(body, k, SignMD5)
	sum := md5.Sum(append(slices.Clone(body), "abcd1234"...))
	if want := strings.ToUpper(hex.EncodeToString(sum[:])); sig != want {
		t.Fatalf("SignResponse = %s, want %s", sig, want)
	}
	if !verifyResponse(body, k, SignMD5, strings.ToLower(sig)) {
		t.Error("lower-case signature refused")
	}
	if verifyResponse(append(body, ' '), k, SignMD5, sig) {
		t.Error("changed body accepted")
	}
}

// referenceCanonical is a deliberately different implementation: insertion
// sort by name over byte comparison, then concatenation.
func referenceCanonical(pairs [][2]string) string {
	var kept [][2]string
	for _, p := range pairs {
		if p[1] == "" {
			continue
		}
		i := len(kept)
		kept = append(kept, p)
		for i > 0 && kept[i-1][0] > kept[i][0] {
			kept[i-1], kept[i] = kept[i], kept[i-1]
			i--
		}
	}
	out := ""
	for i, p := range kept {
		if i > 0 {
			out += "&"
		}
		out += p[0] + "=" + p[1]
	}
	return out
}

func FuzzCanonical(f *testing.F) {
	f.Add("mchid", "ZaMVg12345", "txamt", "100", "txcurrcd", "HKD", uint64(1))
	f.Add("out_trade_no", "4MDGEJ7L496LAAU1V1HBY9HMOGWZWLXQ", "txdtm", "2020-03-05 16:50:30", "udid", "", uint64(7))
	f.Add("goods_name", "咖啡 & 茶=", "a", "", "a_b", "x", uint64(3))
	f.Add("a", "1", "a-b", "2", "a=b", "3", uint64(42))
	f.Add("z", "\xff\xfe", "", "empty-name", "Z", "upper", uint64(0))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, k3, v3 string, seed uint64) {
		pairs := [][2]string{{k1, v1}, {k2, v2}, {k3, v3}}
		if k1 == k2 || k1 == k3 || k2 == k3 {
			return // a form cannot carry two parameters of one name: not an input
		}
		m := map[string]string{k1: v1, k2: v2, k3: v3}
		got := Canonical(m)

		// Order of input does not matter.
		r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		shuffled := slices.Clone(pairs)
		r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if want := referenceCanonical(shuffled); got != want {
			t.Fatalf("Canonical = %q, reference over %v = %q", got, shuffled, want)
		}
		// Empty values are left out; non-empty ones appear raw, as their UTF-8 bytes.
		for _, p := range pairs {
			if p[1] == "" && strings.Contains("&"+got+"&", "&"+p[0]+"=&") {
				t.Fatalf("empty %q present in %q", p[0], got)
			}
			if p[1] != "" && !strings.Contains(got, p[0]+"="+p[1]) {
				t.Fatalf("%q=%q missing from %q", p[0], p[1], got)
			}
		}
		// The signature is the hash of exactly those bytes plus the key.
		sig, err := Sign(m, NewKey("k\u00e9y"), SignMD5)
		if err != nil {
			t.Fatal(err)
		}
		sum := md5.Sum([]byte(got + "k\u00e9y"))
		if want := strings.ToUpper(hex.EncodeToString(sum[:])); sig != want {
			t.Fatalf("Sign = %s, want %s", sig, want)
		}
		allValid := true
		for _, s := range []string{k1, v1, k2, v2, k3, v3} {
			allValid = allValid && utf8.ValidString(s)
		}
		if allValid && !utf8.ValidString(got) {
			t.Fatalf("valid UTF-8 input produced invalid output %q", got)
		}
	})
}
